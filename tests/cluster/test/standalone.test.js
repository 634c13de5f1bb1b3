'use strict';
// 3 chorus gateway processes + 1 standalone Redis: the cross-node flow, a hand-written bad
// envelope on the broker's PUB/SUB channel, and `info` dropping a node killed with -9.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { startRedis } = require('../lib/redis');
const {
  redisEngine, startNodes, stopNodes, kill9, uniq, clientOn, subscribeCollect, metrics, apiCall, waitFor,
} = require('../lib/cluster');
const { crossNodeFlow } = require('../lib/flow');
const { disconnectAll } = require('../../js/lib/clients');

describe('3 nodes + standalone Redis', () => {
  const ctx = { nodes: [] };
  let redis;
  before(async () => {
    redis = await startRedis();
    ctx.nodes = await startNodes(3, redisEngine(redis.address));
  });
  after(async () => {
    disconnectAll();
    await stopNodes(ctx.nodes);
    if (redis) await redis.stop();
  });
  afterEach(() => disconnectAll());

  crossNodeFlow(ctx);

  it('an envelope that fails to decode is counted and dropped; nodes keep serving', async () => {
    const ch = uniq('chat:bad');
    const clients = await Promise.all([0, 1, 2].map((i) => clientOn(ctx.nodes[i], `bad${i}`)));
    const subs = [];
    for (const c of clients) subs.push(await subscribeCollect(c, ch));
    // The broker's PUB/SUB channel for `ch`, as Redis sees it (whatever the prefix).
    const names = (await redis.cli(['PUBSUB', 'CHANNELS', `*${ch}*`])).split('\n').map((s) => s.trim()).filter(Boolean);
    assert.equal(names.length, 1, `one PUB/SUB channel for ${ch}, got ${JSON.stringify(names)}`);
    const before0 = await Promise.all(ctx.nodes.map(async (n) => (await metrics(n)).sum('chorus_redis_bad_envelopes_total')));

    for (const garbage of ['garbage', '__p1:notanumber:xx__\u0001\u0002', '__j__\u00ff\u00ff\u00ff']) {
      const receivers = Number((await redis.cli(['PUBLISH', names[0], garbage])).trim());
      assert.equal(receivers, 3, 'every node is subscribed to the channel');
    }
    await waitFor(async () => {
      const now = await Promise.all(ctx.nodes.map(async (n) => (await metrics(n)).sum('chorus_redis_bad_envelopes_total')));
      return now.every((v, i) => v >= before0[i] + 3);
    }, { timeout: 8000, interval: 100, message: 'chorus_redis_bad_envelopes_total +3 on every node' });

    for (const n of ctx.nodes) {
      assert.equal(n.proc.exitCode, null, 'node still running');
      assert.equal(n.proc.signalCode, null, 'node still running');
    }
    for (const s of subs) assert.equal(s.pubs.length, 0, 'nothing delivered from garbage');
    const r = await apiCall(ctx.nodes[1], 'publish', { channel: ch, data: { after: 'garbage' } });
    assert.equal(r.offset, 1);
    await waitFor(() => subs.every((s) => s.pubs.length === 1), { timeout: 8000, message: 'next publication on every node' });
    for (const s of subs) {
      assert.deepEqual(s.pubs[0].data, { after: 'garbage' });
      assert.equal(s.pubs[0].offset, 1);
      assert.equal(s.sub.state, 'subscribed');
    }
    for (const c of clients) assert.equal(c.state, 'connected');
  });

  it('info drops a node killed with -9 within ~10 s', async () => {
    await waitFor(async () => (await apiCall(ctx.nodes[0], 'info', {})).nodes.length === 3, { timeout: 8000, interval: 200, message: 'info lists 3 nodes' });
    const victim = ctx.nodes[2];
    await kill9(victim);
    const t0 = Date.now();
    let last;
    await waitFor(async () => {
      last = await apiCall(ctx.nodes[0], 'info', {});
      return last.nodes.length === 2;
    }, { timeout: 15000, interval: 200, message: 'info lists 2 nodes' });
    const took = Date.now() - t0;
    assert.ok(took <= 12000, `dead node dropped after ${took} ms (want <= 12000)`);
    assert.deepEqual(last.nodes.map((n) => n.name).sort(), ['node-0', 'node-1']);
    const via1 = await apiCall(ctx.nodes[1], 'info', {});
    assert.deepEqual(via1.nodes.map((n) => n.name).sort(), ['node-0', 'node-1']);
    // channels keeps answering (survey without the dead node, bounded).
    const t1 = Date.now();
    const r = await apiCall(ctx.nodes[0], 'channels', { pattern: 'chat:none-such-*' });
    assert.deepEqual(r, { channels: {} });
    assert.ok(Date.now() - t1 < 5000, 'channels answered in < 5 s with a dead node');
  });
});
