'use strict';
// The fallback transports across two gateways on one Redis: centrifuge-js (npm, unchanged)
// holds its HTTP-streaming or SSE stream on node-0 while every command after the connect goes
// to node-1's `/emulation` (the SDK's `emulationEndpoint`), which forwards it over the broker
// to node-0. Then the failure answers: a node nobody knows (404), a node that stopped (404),
// a node that does not answer (SIGSTOP: 503), and a request in the wrong encoding (400), each
// counted in `chorus_transport_emulation_forwarded_total` on the forwarding node.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { EventSource } = require('../../js/node_modules/eventsource');

const { startRedis } = require('../lib/redis');
const {
  redisEngine, startNodes, stopNodes, uniq, clientOn, subscribeCollect, metrics, apiCall, waitFor,
  once, collect, connToken,
} = require('../lib/cluster');
const { newClient, disconnectAll, codec } = require('../../js/lib/clients');

const FALLBACKS = { http_stream: { enabled: true }, sse: { enabled: true } };
const FORWARDED = 'chorus_transport_emulation_forwarded_total';

/** POST /emulation on `node` with a JSON body; returns the HTTP status. */
async function emulate(node, body, contentType = 'application/json') {
  const res = await fetch(`${node.url}/emulation`, {
    method: 'POST',
    headers: { 'Content-Type': contentType },
    body,
    signal: AbortSignal.timeout(10000),
  });
  await res.arrayBuffer();
  return res.status;
}

/** The node ids of the cluster by node name (from `info`). */
async function nodeIds(node) {
  const info = await apiCall(node, 'info', {});
  return Object.fromEntries(info.nodes.map((n) => [n.name, n.uid]));
}

describe('fallback transports across 2 nodes + standalone Redis', () => {
  let nodes = [];
  let redis;
  before(async () => {
    redis = await startRedis();
    nodes = await startNodes(2, redisEngine(redis.address), { extra: FALLBACKS });
  });
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    if (redis) await redis.stop();
  });
  afterEach(() => disconnectAll());

  const CASES = [
    { transport: 'http_stream', protocol: 'json' },
    { transport: 'http_stream', protocol: 'protobuf' },
    { transport: 'sse', protocol: 'json' },
  ];
  for (const { transport, protocol } of CASES) {
    it(`${transport} ${protocol}: stream on node-0, commands through node-1`, async () => {
      const { enc, dec } = codec(protocol);
      const [n0, n1] = nodes;
      const before1 = (await metrics(n1)).samples[`${FORWARDED}{result="ok"}`] || 0;
      const c = newClient(
        { ...n0, wsUrl: [{ transport, endpoint: `${n0.url}/connection/${transport}` }] },
        protocol,
        { token: connToken('alice'), emulationEndpoint: `${n1.url}/emulation`, eventsource: EventSource },
      );
      const connected = once(c, 'connected', 8000);
      c.connect();
      const ctx = await connected;
      assert.equal(ctx.transport, transport);

      const ch = uniq('chat:emu');
      // A WebSocket client on node-1 in the same channel.
      const bob = await clientOn(n1, 'bob');
      const b = await subscribeCollect(bob, ch);
      const sub = c.newSubscription(ch);
      sub.on('error', () => {});
      const pubs = collect(sub, 'publication');
      const subscribed = once(sub, 'subscribed', 8000);
      sub.subscribe();
      await subscribed;

      // Client publish through node-1 → node-0 → Redis → bob on node-1.
      await sub.publish(enc({ text: 'from the stream' }));
      await waitFor(() => b.pubs.length === 1, { message: 'bob got the forwarded publish' });
      assert.deepEqual(b.pubs[0].data, { text: 'from the stream' });
      assert.equal(b.pubs[0].info.client, ctx.client);

      // Delivery to the stream on node-0 from an API publish on node-1.
      await apiCall(n1, 'publish', { channel: ch, data: { n: 2 } });
      await waitFor(() => pubs.length === 2, { message: 'both publications on the stream' });
      assert.deepEqual(pubs.map((p) => p.offset), [1, 2]);
      assert.deepEqual(dec(pubs[1].data), { n: 2 });

      // Presence and history answered through the forwarded commands.
      const pres = await c.presence(ch);
      assert.deepEqual(Object.values(pres.clients).map((i) => i.user).sort(), ['alice', 'bob']);
      const h = await c.history(ch, { limit: 10 });
      assert.deepEqual(h.publications.map((p) => p.offset), [1, 2]);
      // An error reply travels back too: publishing where it is not allowed.
      await assert.rejects(c.publish(uniq('nosuchns:x'), enc({})), (e) => { assert.equal(e.code, 102, JSON.stringify(e)); return true; });

      // subscribe, publish, presence, history, the refused publish: at least 5 requests. A
      // reply reaches the SDK on the stream before node-1 has the survey answer and counts
      // the request, so the last count may trail the SDK by a broker round trip.
      let forwarded = 0;
      await waitFor(async () => {
        forwarded = ((await metrics(n1)).samples[`${FORWARDED}{result="ok"}`] || 0) - before1;
        return forwarded >= 5;
      }, { timeout: 5000, interval: 50, message: 'forwarded requests counted on node-1' });
      c.disconnect();
    });
  }

  it('answers 404 for a node nobody knows, 400 for a wrong encoding, both counted', async () => {
    const [n0, n1] = nodes;
    const before = await metrics(n1);
    const status = await emulate(n1, JSON.stringify({ node: 'no-such-node', session: 'x', data: '{}' }));
    assert.equal(status, 404);

    // A JSON session on node-0, addressed through node-1 in Protobuf.
    const c = newClient(
      { ...n0, wsUrl: [{ transport: 'http_stream', endpoint: `${n0.url}/connection/http_stream` }] },
      'json',
      { token: connToken('carol') },
    );
    const connected = once(c, 'connected', 8000);
    c.connect();
    await connected;
    const ids = await nodeIds(n1);
    const session = c._session;
    assert.ok(session, 'the SDK kept the session id');
    // EmulationRequest { node = 1, session = 2, data = 3 } by hand.
    const str = (tag, s) => {
      const b = Buffer.from(s);
      return Buffer.concat([Buffer.from([tag << 3 | 2, b.length]), b]);
    };
    const pb = Buffer.concat([str(1, ids['node-0']), str(2, session), str(3, '')]);
    assert.equal(await emulate(n1, pb, 'application/octet-stream'), 400);
    const after = await metrics(n1);
    const delta = (r) => (after.samples[`${FORWARDED}{result="${r}"}`] || 0) - (before.samples[`${FORWARDED}{result="${r}"}`] || 0);
    assert.equal(delta('unknown_node'), 1);
    assert.equal(delta('refused'), 1);
    c.disconnect();
  });

  it('answers 503 while the session\'s node does not answer, and 404 once it stopped', async () => {
    const [n0, n1] = nodes;
    const ids = await nodeIds(n1);
    const body = JSON.stringify({ node: ids['node-0'], session: 'gone', data: '' });
    assert.equal(await emulate(n1, body), 204, 'an unknown session on a live node is dropped: 204');

    n0.proc.kill('SIGSTOP');
    try {
      const t0 = Date.now();
      assert.equal(await emulate(n1, body), 503);
      const took = Date.now() - t0;
      assert.ok(took >= 2500 && took < 6000, `waited ${took} ms for the answer (the bound is 3 s)`);
    } finally {
      n0.proc.kill('SIGCONT');
    }
    const m = await metrics(n1);
    assert.ok((m.samples[`${FORWARDED}{result="no_answer"}`] || 0) >= 1);

    // A graceful stop announces itself: node-1 forgets node-0 at once.
    await n0.stop('SIGTERM', 10000);
    await waitFor(async () => (await emulate(n1, body)) === 404, { timeout: 8000, interval: 200, message: '404 once node-0 stopped' });
  });
});
