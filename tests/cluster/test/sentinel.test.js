'use strict';
// Redis Sentinel against real processes: a master, a replica and three Sentinels (quorum 2),
// the master and the Sentinels each with a password. Two gateways find the master through the
// Sentinels, one configured with the engine.redis.sentinel_* keys, one with a
// redis+sentinel:// address. The master is killed (SIGKILL): the Sentinels promote the
// replica, both gateways reconnect to it, and every publication the API acknowledged reaches
// a centrifuge-js subscriber on the other gateway exactly once and in order.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { startSentinelSet } = require('../lib/sentinel');
const {
  nodeConfig, startNodes, stopNodes, uniq, clientOn, subscribeCollect, apiCall, waitFor,
} = require('../lib/cluster');
const { startServer } = require('../../js/lib/server');
const { disconnectAll } = require('../../js/lib/clients');

const PASSWORD = 'master pw/1';
const SENTINEL_PASSWORD = 'sentinel&pw';

async function readyVerbose(node) {
  const res = await fetch(`${node.url}/ready?verbose`);
  return { status: res.status, body: await res.json() };
}

describe('Redis Sentinel', () => {
  let set;
  let nodes = [];
  before(async () => {
    set = await startSentinelSet({ password: PASSWORD, sentinelPassword: SENTINEL_PASSWORD });
  });
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    if (set) await set.stop();
  });

  it('two gateways (keys and URL form) follow a failover without losing an acknowledged publication', async () => {
    const byKeys = {
      type: 'redis',
      redis: {
        sentinel_address: set.sentinelAddresses.join(','),
        sentinel_master_name: set.name,
        sentinel_password: SENTINEL_PASSWORD,
        password: PASSWORD,
      },
    };
    const url = `redis+sentinel://:${encodeURIComponent(PASSWORD)}@${set.sentinelAddresses.join(',')}/${set.name}`
      + `?sentinel_password=${encodeURIComponent(SENTINEL_PASSWORD)}`;
    const byUrl = { type: 'redis', redis: { address: url } };
    nodes = [
      (await startNodes(1, byKeys, { names: ['sentinel-keys'] }))[0],
      (await startNodes(1, byUrl, { names: ['sentinel-url'] }))[0],
    ];
    for (const [i, n] of nodes.entries()) {
      // The first lookup asks a Sentinel, then checks the master's ROLE, then connects.
      const r = await waitFor(async () => {
        const v = await readyVerbose(n);
        return v.status === 200 && v;
      }, { timeout: 10000, interval: 50, message: `gateway ${i} ready through the Sentinels` });
      assert.equal(r.body.engine.up, true);
    }

    const ch = uniq('chat:sentinel');
    const client = await clientOn(nodes[1], 'sentinel-user');
    const sub = await subscribeCollect(client, ch);
    const acked = [];
    let n = 0;
    const publish = async () => {
      n += 1;
      try {
        await apiCall(nodes[0], 'publish', { channel: ch, data: { n } });
        acked.push(n);
        return true;
      } catch (_) {
        return false; // error 100 while the master is gone
      }
    };
    for (let i = 0; i < 5; i++) assert.ok(await publish());
    await waitFor(() => sub.pubs.length === 5, { timeout: 8000, message: 'the first 5 publications' });
    await waitFor(() => set.inSync(), { timeout: 5000, message: 'the replica has every write' });

    const oldMaster = set.master.port;
    await set.master.kill();
    const killedAt = Date.now();
    let firstOkAfter = null;
    let okAfter = 0;
    while (okAfter < 10) {
      assert.ok(Date.now() - killedAt < 30000, `publishing works again within 30 s (acked ${acked.length})`);
      if (await publish()) {
        okAfter += 1;
        if (firstOkAfter === null) firstOkAfter = Date.now() - killedAt;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await set.masterPort(), set.replica.port, 'the Sentinels promoted the replica');
    assert.notEqual(set.replica.port, oldMaster);
    console.log(`# publishing resumed ${firstOkAfter} ms after the master was killed`);

    await waitFor(() => acked.every((x) => sub.pubs.some((p) => p.data.n === x)), {
      timeout: 15000, message: 'every acknowledged publication at the subscriber',
    });
    const got = sub.pubs.map((p) => p.data.n);
    for (let i = 1; i < got.length; i++) {
      assert.ok(got[i] > got[i - 1], `in order, no duplicates: ${got.join(',')}`);
    }
    for (const node of nodes) {
      const r = await readyVerbose(node);
      assert.equal(r.body.engine.up, true);
      assert.doesNotMatch(node.logs(), /master pw|sentinel&pw/, 'passwords are never logged');
    }
    assert.match(nodes[0].logs(), /sentinel chorusmaster via 127\.0\.0\.1:\d+/);
  });

  it('a wrong Sentinel password: not ready, an ERROR naming the Sentinels only', async () => {
    const node = await startServer(nodeConfig({
      type: 'redis',
      redis: {
        sentinel_address: set.sentinelAddresses,
        sentinel_master_name: set.name,
        sentinel_password: 'wrong-sentinel-secret',
        password: PASSWORD,
      },
    }, 'sentinel-bad'));
    try {
      assert.equal((await readyVerbose(node)).status, 503);
      await waitFor(() => /ERROR .*redis unreachable.*|redis unreachable.*ERROR/.test(node.logs()), {
        timeout: 5000, interval: 50, message: 'an ERROR about the Sentinels',
      });
      assert.match(node.logs(), /redis=sentinel chorusmaster via/);
      assert.doesNotMatch(node.logs(), /wrong-sentinel-secret/);
    } finally {
      await node.stop('SIGKILL', 1000).catch(() => {});
    }
  });
});
