'use strict';
// 3 chorus gateway processes + a Redis Cluster of 3 masters (started here): the same
// cross-node flow over sharded PUB/SUB; channels land on different masters.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { startRedisCluster } = require('../lib/redis');
const { redisEngine, startNodes, stopNodes, uniq, clientOn, subscribeCollect, apiCall, waitFor } = require('../lib/cluster');
const { crossNodeFlow } = require('../lib/flow');
const { disconnectAll } = require('../../js/lib/clients');

describe('3 nodes + Redis Cluster (3 masters, sharded PUB/SUB)', () => {
  const ctx = { nodes: [] };
  let rc;
  before(async () => {
    rc = await startRedisCluster(3);
    ctx.nodes = await startNodes(3, redisEngine(rc.addresses, { cluster: true }));
  });
  after(async () => {
    disconnectAll();
    await stopNodes(ctx.nodes);
    if (rc) await rc.stop();
  });
  afterEach(() => disconnectAll());

  crossNodeFlow(ctx);

  it('many channels spread over every master: each delivered on every node', async () => {
    const chans = Array.from({ length: 12 }, () => uniq('chat:shard'));
    const clients = await Promise.all([0, 1, 2].map((i) => clientOn(ctx.nodes[i], `s${i}`)));
    const subs = [];
    for (const c of clients) for (const ch of chans) subs.push({ ch, s: await subscribeCollect(c, ch) });
    // Sharded PUB/SUB: the subscriptions are SSUBSCRIBEs spread over more than one master,
    // and no classic (broadcast) SUBSCRIBE carries client channels.
    const perMaster = await Promise.all(rc.nodes.map(async (m) => ({
      sharded: (await m.cli(['PUBSUB', 'SHARDCHANNELS', '*client*'])).split('\n').filter((x) => x.trim()).length,
      classic: (await m.cli(['PUBSUB', 'CHANNELS', '*client*'])).split('\n').filter((x) => x.trim()).length,
    })));
    assert.ok(perMaster.filter((m) => m.sharded > 0).length >= 2, `sharded channels on >= 2 masters: ${JSON.stringify(perMaster)}`);
    assert.deepEqual(perMaster.map((m) => m.classic), [0, 0, 0], 'no classic pub/sub for client channels');
    for (const [i, ch] of chans.entries()) {
      const r = await apiCall(ctx.nodes[i % 3], 'publish', { channel: ch, data: { ch, i } });
      assert.equal(r.offset, 1);
    }
    await waitFor(() => subs.every(({ s }) => s.pubs.length === 1), { timeout: 10000, message: 'one publication per channel on every node' });
    for (const { ch, s } of subs) {
      assert.equal(s.pubs[0].channel, ch);
      assert.equal(s.pubs[0].data.ch, ch);
      assert.equal(s.pubs[0].offset, 1);
    }
  });
});
