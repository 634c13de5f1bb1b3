'use strict';
// scripts/cluster up|status|down as an operator runs it: Redis, 3 gateways and 2 presence
// replicas on local ports; clients on two gateways see a publication made through the third and
// each other in presence (the presence service), `status` reports every process, and `down`
// stops exactly the processes `up` started.
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { REPO_ROOT, BIN } = require('../../js/lib/server');
const { connToken } = require('../../js/lib/jwt');
const { connectClient, disconnectAll } = require('../../js/lib/clients');
const { subscribeCollect, apiCall, waitFor } = require('../lib/cluster');

const SCRIPT = path.join(REPO_ROOT, 'scripts', 'cluster');

function run(args) {
  const r = spawnSync(SCRIPT, args, {
    encoding: 'utf8', timeout: 120000, env: { ...process.env, CHORUS_BIN: BIN },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function readEnv(dir) {
  const env = {};
  for (const line of fs.readFileSync(path.join(dir, 'cluster.env'), 'utf8').split('\n')) {
    const m = line.match(/^([A-Z_]+)='(.*)'$/);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch (_) { return false; }
}

describe('scripts/cluster', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-cluster-'));
  after(() => {
    disconnectAll();
    run(['down', '--dir', dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('up starts a working cluster, status reports it, down stops exactly it', async () => {
    const up = run(['up', '--dir', dir]);
    assert.equal(up.status, 0, up.out);
    assert.match(up.out, /^gateway-2 +http:\/\/127\.0\.0\.1:\d+/m);
    const env = readEnv(dir);
    const gateways = env.GATEWAY_URLS.split(' ').map((url) => ({
      url, apiUrl: `${url}/api`, wsUrl: `${url.replace('http://', 'ws://')}/connection/websocket`, apiKey: env.API_KEY,
    }));
    assert.equal(gateways.length, 3);
    assert.equal(env.PRESENCE_URLS.split(' ').length, 2);

    const again = run(['up', '--dir', dir]);
    assert.notEqual(again.status, 0);
    assert.match(again.out, /a cluster is running/);

    const ch = `chat:scripts${process.pid}`;
    const a = await connectClient(gateways[0], 'json', { token: connToken('ann', {}, env.TOKEN_SECRET) });
    const b = await connectClient(gateways[2], 'json', { token: connToken('bob', {}, env.TOKEN_SECRET) });
    const subA = await subscribeCollect(a, ch);
    const subB = await subscribeCollect(b, ch);
    await apiCall(gateways[1], 'publish', { channel: ch, data: { via: 'gateway-1' } });
    await waitFor(() => subA.pubs.length === 1 && subB.pubs.length === 1, {
      timeout: 8000, message: 'the publication reaches both gateways',
    });
    await waitFor(async () => {
      const p = await apiCall(gateways[1], 'presence', { channel: ch });
      return Object.keys(p.presence || {}).length === 2;
    }, { timeout: 8000, interval: 100, message: 'presence lists both users from a third gateway' });

    const status = run(['status', '--dir', dir]);
    assert.equal(status.status, 0, status.out);
    for (const name of ['redis', 'presence-0', 'presence-1', 'gateway-0', 'gateway-1', 'gateway-2']) {
      assert.match(status.out, new RegExp(`^${name} +up \\(pid \\d+\\)`, 'm'), status.out);
    }
    const pids = fs.readdirSync(dir).filter((f) => f.endsWith('.pid'))
      .map((f) => Number(fs.readFileSync(path.join(dir, f), 'utf8')));
    assert.equal(pids.length, 6);
    disconnectAll();

    const down = run(['down', '--dir', dir]);
    assert.equal(down.status, 0, down.out);
    assert.match(down.out, /stopped 6 process/);
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still alive`);
    assert.notEqual(run(['status', '--dir', dir]).status, 0);
  });
});
