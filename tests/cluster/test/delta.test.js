'use strict';
// Delta compression across two gateways on one Redis: each node keeps the previous
// publication of its own delta channels, so subscribers on both nodes (centrifuge-js JSON and
// Protobuf, `delta: 'fossil'`) get deltas for publications made through either node, and
// exactly the published documents after applying them.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { startRedis } = require('../lib/redis');
const {
  chatOptions, redisEngine, startNodes, stopNodes, uniq, apiCall, waitFor, collect, connToken,
} = require('../lib/cluster');
const { connectClient, subscribe, disconnectAll } = require('../../js/lib/clients');

const EXTRA = {
  channel: {
    without_namespace: { ...chatOptions },
    namespaces: [
      { name: 'dl', ...chatOptions, allowed_delta_types: ['fossil'], delta_publish: true },
    ],
  },
};

/** A document that changes a little per version (what deltas are for). */
function doc(v) {
  return {
    id: 'board-1',
    version: v,
    rows: Array.from({ length: 20 }, (_, i) => ({ k: `row-${i}`, v: i === v % 20 ? v * 7 : i })),
  };
}

describe('delta compression across 2 nodes + standalone Redis', () => {
  let nodes = [];
  let redis;
  before(async () => {
    redis = await startRedis();
    nodes = await startNodes(2, redisEngine(redis.address), { extra: EXTRA });
  });
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    if (redis) await redis.stop();
  });
  afterEach(() => disconnectAll());

  it('subscribers on both nodes get deltas of publications made on either node', async () => {
    const ch = uniq('dl:board');
    const subs = [];
    for (const [i, protocol] of [[0, 'json'], [1, 'json'], [0, 'protobuf'], [1, 'protobuf']]) {
      const c = await connectClient(nodes[i], protocol, { token: connToken(`u${subs.length}`) });
      const { sub } = await subscribe(c, ch, { delta: 'fossil' });
      subs.push({ sub, protocol, node: i, got: collect(sub, 'publication') });
    }
    const N = 10;
    for (let v = 1; v <= N; v++) {
      await apiCall(nodes[v % 2], 'publish', { channel: ch, data: doc(v) });
    }
    await waitFor(() => subs.every((s) => s.got.length === N), { timeout: 10000, message: `${N} publications everywhere` });
    for (const s of subs) {
      const label = `${s.protocol} subscriber on node-${s.node}`;
      assert.deepEqual(s.got.map((p) => p.offset), Array.from({ length: N }, (_, i) => i + 1), label);
      const data = s.got.map((p) => (s.protocol === 'json' ? p.data : JSON.parse(new TextDecoder().decode(p.data))));
      assert.deepEqual(data, Array.from({ length: N }, (_, i) => doc(i + 1)), label);
      const stats = s.sub.deltaStats();
      assert.equal(stats.numFullPayloads, 1, `${label}: ${JSON.stringify(stats)}`);
      assert.equal(stats.numDeltaPayloads, N - 1, `${label}: ${JSON.stringify(stats)}`);
      assert.ok(stats.bytesReceived < stats.bytesDecoded / 3, `${label}: ${JSON.stringify(stats)}`);
    }
  });
});
