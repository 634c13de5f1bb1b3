'use strict';
// 3 chorus nodes on 2 independent Redis instances (`engine.redis.address` as a list):
// channels are spread over the shards by name, identically on every node.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { startRedis } = require('../lib/redis');
const { redisEngine, startNodes, stopNodes, uniq, clientOn, subscribeCollect, apiCall, waitFor } = require('../lib/cluster');
const { disconnectAll } = require('../../js/lib/clients');

describe('3 nodes + 2 independent Redis shards', () => {
  let shards = [];
  let nodes = [];
  before(async () => {
    shards = [await startRedis(), await startRedis()];
    nodes = await startNodes(3, redisEngine(shards.map((s) => s.address)));
  });
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    await Promise.all(shards.map((s) => s.stop()));
  });
  afterEach(() => disconnectAll());

  it('channels on both shards: delivery, history and recovery across nodes', async () => {
    const chans = Array.from({ length: 10 }, () => uniq('chat:sh'));
    const clients = await Promise.all([0, 1, 2].map((i) => clientOn(nodes[i], `sh${i}`)));
    const subs = [];
    for (const c of clients) for (const ch of chans) subs.push({ ch, s: await subscribeCollect(c, ch) });
    for (const [i, ch] of chans.entries()) {
      for (let n = 1; n <= 2; n++) {
        const r = await apiCall(nodes[(i + n) % 3], 'publish', { channel: ch, data: { ch, n } });
        assert.equal(r.offset, n);
      }
    }
    await waitFor(() => subs.every(({ s }) => s.pubs.length === 2), { timeout: 10000, message: '2 publications per channel on every node' });
    for (const { ch, s } of subs) assert.deepEqual(s.pubs.map((p) => [p.offset, p.data.ch, p.data.n]), [[1, ch, 1], [2, ch, 2]]);

    // Each channel's PUB/SUB lives on exactly one shard, and both shards are used.
    const where = [];
    for (const ch of chans) {
      const on = [];
      for (const [k, sh] of shards.entries()) {
        if ((await sh.cli(['PUBSUB', 'CHANNELS', `*${ch}`])).trim()) on.push(k);
      }
      assert.equal(on.length, 1, `${ch} subscribed on exactly one shard, got ${JSON.stringify(on)}`);
      where.push(on[0]);
    }
    assert.deepEqual([...new Set(where)].sort(), [0, 1], 'both shards carry channels');

    // History and cross-node recovery for a channel on each shard.
    for (const k of [0, 1]) {
      const ch = chans[where.indexOf(k)];
      const h = await apiCall(nodes[k + 1], 'history', { channel: ch, limit: -1 });
      assert.deepEqual(h.publications.map((p) => p.data.n), [1, 2]);
      const c = await clientOn(nodes[2 - k], `rec${k}`);
      await apiCall(nodes[0], 'publish', { channel: ch, data: { ch, n: 3 } });
      const s = await subscribeCollect(c, ch, { since: { offset: 1, epoch: h.epoch } });
      assert.equal(s.ctx.recovered, true);
      await waitFor(() => s.pubs.length === 2, { timeout: 8000, message: 'recovered 2' });
      assert.deepEqual(s.pubs.map((p) => [p.offset, p.data.n]), [[2, 2], [3, 3]]);
    }
  });
});
