'use strict';
// The binary's own commands as a user runs them: `chorus gentoken` makes a token the server
// accepts; `chorus serve` with no config serves the demo page and its token endpoint.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');

const { startServer, BIN, SECRET } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { connectClient, subscribe, disconnectAll, newClient } = require('../lib/clients');
const { once } = require('../lib/util');

function gentoken(args) {
  return execFileSync(BIN, ['gentoken', ...args], { encoding: 'utf8', timeout: 10000 }).trim();
}

function claims(token) {
  const parts = token.split('.');
  assert.equal(parts.length, 3, `a JWT has 3 parts: ${token}`);
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString());
}

describe('chorus gentoken', () => {
  let srv;
  before(async () => { srv = await startServer(testConfig()); });
  after(async () => { disconnectAll(); if (srv) await srv.stop(); });

  it('prints an HS256 token with sub, exp and info that the server accepts', async () => {
    const token = gentoken(['--secret', SECRET, '--user', 'cli-user', '--ttl', '120', '--info', '{"via":"cli"}']);
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
    assert.equal(header.alg, 'HS256');
    const c = claims(token);
    assert.equal(c.sub, 'cli-user');
    const now = Math.floor(Date.now() / 1000);
    assert.ok(c.exp >= now + 110 && c.exp <= now + 130, `exp ${c.exp} ~ now+120`);
    assert.deepEqual(c.info, { via: 'cli' });

    const client = await connectClient(srv, 'json', { token });
    const { sub } = await subscribe(client, 'chat:cli');
    const pres = await sub.presence();
    const me = pres.clients[client._client];
    assert.equal(me.user, 'cli-user');
    assert.deepEqual(me.connInfo, { via: 'cli' });
  });

  it('signs with a secret the server does not know -> 3500', async () => {
    const token = gentoken(['--secret', 'some-other-secret-entirely-0123456789', '--user', 'x']);
    const c = newClient(srv, 'json', { token });
    const disconnected = once(c, 'disconnected', 8000);
    c.connect();
    assert.equal((await disconnected).code, 3500);
  });
});

describe('chorus serve with the embedded default', () => {
  let srv;
  before(async () => { srv = await startServer({}, { noConfig: true }); });
  after(async () => { if (srv) await srv.stop(); });

  it('binds 127.0.0.1, serves the demo page, a demo token and health', async () => {
    assert.equal(srv.host, '127.0.0.1');
    const page = await fetch(`${srv.url}/`, { signal: AbortSignal.timeout(5000) });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /text\/html/);
    assert.match(await page.text(), /id="messages"/);
    const tok = await fetch(`${srv.url}/demo/token?name=Ada`, { signal: AbortSignal.timeout(5000) });
    assert.equal(tok.status, 200);
    const body = await tok.text();
    const token = (body.trim().startsWith('{') ? JSON.parse(body).token : body).trim();
    assert.equal(typeof token, 'string');
    assert.equal(token.split('.').length, 3);
    const health = await fetch(`${srv.url}/health`, { signal: AbortSignal.timeout(5000) });
    assert.equal(health.status, 200);
  });
});

describe('chorus serve with http_server.internal_port', () => {
  let srv;
  let internalPort;
  before(async () => {
    const net = require('node:net');
    internalPort = await new Promise((resolve) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    });
    srv = await startServer(testConfig({ http_server: { internal_port: internalPort } }));
  });
  after(async () => { disconnectAll(); if (srv) await srv.stop(); });

  it('announces the internal listener and serves API, metrics and probes there only', async () => {
    assert.match(srv.logs(), new RegExp(`^chorus internal listening on http://127\\.0\\.0\\.1:${internalPort}$`, 'm'));
    const internal = `http://127.0.0.1:${internalPort}`;
    for (const path of ['/health', '/ready', '/metrics']) {
      assert.equal((await fetch(`${internal}${path}`)).status, 200, `internal ${path}`);
      assert.equal((await fetch(`${srv.url}${path}`)).status, 404, `external ${path}`);
    }
    const info = (base) => fetch(`${base}/api/info`, {
      method: 'POST', headers: { 'X-API-Key': srv.apiKey }, body: '{}',
    });
    assert.equal((await info(internal)).status, 200);
    assert.equal((await info(srv.url)).status, 404);
    // Clients still connect on the external port.
    const { connToken } = require('../lib/jwt');
    const client = await connectClient(srv, 'json', { token: connToken('internal-user') });
    const { sub } = await subscribe(client, 'chat:internal');
    assert.ok(sub);
  });
});

describe('chorus checkconfig', () => {
  const { spawnSync } = require('node:child_process');
  const path = require('node:path');
  const { REPO_ROOT } = require('../lib/server');
  // Without the test harness's own CHORUS_* variables (an unknown one is a warning too).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHORUS_')));
  const run = (args) => spawnSync(BIN, ['checkconfig', ...args], { encoding: 'utf8', timeout: 10000, env });
  const production = path.join(REPO_ROOT, 'deploy', 'config.production.json');

  it('warns about the production template\'s placeholder secrets, and --strict refuses it', () => {
    const loose = run(['--config', production]);
    assert.equal(loose.status, 0, loose.stderr);
    assert.match(loose.stdout, /config ok/);
    assert.match(loose.stderr, /warning: client\.token\.hmac_secret_key looks like a placeholder/);
    assert.match(loose.stderr, /warning: http_api\.key looks like a placeholder/);

    const strict = run(['--strict', '--config', production]);
    assert.equal(strict.status, 1, strict.stdout);
    assert.match(strict.stderr, /--strict: the config has 2 warning\(s\)/);

    const filled = run(['--strict', '--config', production,
      '--set', 'client.token.hmac_secret_key=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b',
      '--set', 'http_api.key=b5bb9d8014a0f9b1d61e21e796d78dcc']);
    assert.equal(filled.status, 0, filled.stderr);
  });

  it('refuses an unsupported Redis scheme, a missing CA file and a bad log level before serving', () => {
    const redis = run(['--set', 'engine.type=redis', '--set', 'engine.redis.address=["unix:///run/redis.sock"]']);
    assert.equal(redis.status, 1);
    assert.match(redis.stderr, /unsupported scheme unix:\/\//);
    const tls = run(['--set', 'engine.type=redis', '--set', 'engine.redis.address=["rediss://r:6380"]']);
    assert.equal(tls.status, 0, tls.stderr);
    const ca = run(['--set', 'engine.type=redis', '--set', 'engine.redis.tls.enabled=true',
      '--set', 'engine.redis.tls.server_ca_pem_file=/nonexistent/ca.pem']);
    assert.equal(ca.status, 1);
    assert.match(ca.stderr, /engine\.redis\.tls\.server_ca_pem_file "\/nonexistent\/ca\.pem"/);
    const level = run(['--set', 'log.level=debug,hyper=loud']);
    assert.equal(level.status, 1);
    assert.match(level.stderr, /log\.level/);
  });
});

describe('http_api.access_log', () => {
  let srv;
  before(async () => { srv = await startServer(testConfig({ http_api: { access_log: true } })); });
  after(async () => { if (srv) await srv.stop(); });

  it('logs each API request with its method, status and duration', async () => {
    const res = await fetch(`${srv.apiUrl}/info`, {
      method: 'POST', headers: { 'X-API-Key': srv.apiKey }, body: '{}',
    });
    assert.equal(res.status, 200);
    const bad = await fetch(`${srv.apiUrl}/info`, { method: 'POST', body: '{}' });
    assert.equal(bad.status, 401);
    const { waitFor } = require('../lib/util');
    await waitFor(() => /http api request.*status=401/.test(srv.logs()), { timeout: 5000, message: 'access log lines' });
    const lines = srv.logs().split('\n').filter((l) => l.includes('http api request'));
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[0], /chorus::access: http api request api_method=info http_method=POST status=200 duration_ms=[0-9.]+ response_bytes=[0-9]+ peer=127\.0\.0\.1:[0-9]+/);
    assert.match(lines[1], /api_method=info http_method=POST status=401/);
  });
});
