'use strict';
// centrifuge-js (npm, unchanged) over the fallback transports: WebSocket points at a closed
// port, so the SDK falls back to `http_stream` (JSON and Protobuf) or `sse` (JSON; Node 20 has
// no global EventSource, the `eventsource` package provides it) and sends its commands after
// the connect through `/emulation`. Each run: connect, subscribe, client publish to another
// client, presence, history, recovery after a reconnect under the SDK, and the server closing
// the session (presence leave seen by another client).
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { startServer } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { apiCall } = require('../lib/api');
const { subscribe, disconnectAll, codec } = require('../lib/clients');
const { CASES, closedPort, fallbackConnected } = require('../lib/fallback');
const { waitFor, once, collect } = require('../lib/util');

let seq = 0;
const uniq = (prefix) => `${prefix}${process.pid}f${++seq}`;

for (const kase of CASES) {
  const { transport, protocol } = kase;
  describe(`centrifuge-js ${protocol} falling back to ${transport}`, () => {
    const { enc, dec } = codec(protocol);
    let srv;
    let deadPort;
    before(async () => {
      srv = await startServer(
        testConfig({ http_stream: { enabled: true }, sse: { enabled: true } }),
      );
      deadPort = await closedPort();
    });
    after(async () => {
      disconnectAll();
      if (srv) await srv.stop();
    });
    afterEach(() => disconnectAll());

    const connected = (user, opts) => fallbackConnected(srv, deadPort, kase, user, opts);

    it('connects, subscribes, publishes to another client, reads presence and history', async () => {
      const { c: a, ctx: actx } = await connected('alice');
      const { c: b } = await connected('bob');
      const ch = uniq('chat:fb');
      const { sub: subA } = await subscribe(a, ch);
      const { sub: subB } = await subscribe(b, ch);
      const got = collect(subB, 'publication');
      await subA.publish(enc({ text: 'hi' }));
      await waitFor(() => got.length === 1, { message: 'publication over the fallback' });
      assert.deepEqual(dec(got[0].data), { text: 'hi' });
      assert.equal(got[0].offset, 1);
      assert.equal(got[0].info.user, 'alice');
      assert.equal(got[0].info.client, actx.client);

      const pres = await a.presence(ch);
      assert.deepEqual(
        Object.values(pres.clients).map((i) => i.user).sort(),
        ['alice', 'bob'],
      );
      const stats = await a.presenceStats(ch);
      assert.equal(stats.numClients, 2);
      assert.equal(stats.numUsers, 2);

      await apiCall(srv, 'publish', { channel: ch, data: { n: 2 } });
      await waitFor(() => got.length === 2, { message: 'API publication' });
      const h = await a.history(ch, { limit: 10 });
      assert.deepEqual(h.publications.map((p) => p.offset), [1, 2]);
      assert.deepEqual(dec(h.publications[1].data), { n: 2 });

      // An RPC-less command round trip with an error reply: publish to a channel not allowed.
      await assert.rejects(a.publish(uniq('private:x'), enc({})), (e) => e.code === 103);
    });

    it('recovers the missed publications after the stream is closed under the SDK', async () => {
      const { c } = await connected('carol', { minReconnectDelay: 300, maxReconnectDelay: 600 });
      const ch = uniq('chat:fbrec');
      const { sub, ctx: first } = await subscribe(c, ch);
      const pubs = collect(sub, 'publication');
      const subscribedEvents = collect(sub, 'subscribed');
      await apiCall(srv, 'publish', { channel: ch, data: { n: 1 } });
      await waitFor(() => pubs.length === 1, { message: 'first publication' });

      const connecting = once(c, 'connecting', 5000);
      c._transport.close();
      await connecting;
      for (let n = 2; n <= 4; n++) await apiCall(srv, 'publish', { channel: ch, data: { n } });
      await waitFor(() => subscribedEvents.length === 1, { timeout: 10000, message: 'resubscribed' });
      assert.equal(subscribedEvents[0].wasRecovering, true);
      assert.equal(subscribedEvents[0].recovered, true);
      assert.equal(subscribedEvents[0].streamPosition.epoch, first.streamPosition.epoch);
      await waitFor(() => pubs.length === 4, { message: '3 recovered publications' });
      await apiCall(srv, 'publish', { channel: ch, data: { n: 5 } });
      await waitFor(() => pubs.length === 5, { message: 'live publication after recovery' });
      assert.deepEqual(pubs.map((p) => dec(p.data).n), [1, 2, 3, 4, 5]);
      assert.deepEqual(pubs.map((p) => p.offset), [1, 2, 3, 4, 5]);
    });

    it('ends the session on a server disconnect: the code reaches the SDK, presence leaves', async () => {
      const { c: watcher } = await connected('dave');
      const { c: victim, ctx } = await connected('erin');
      const ch = uniq('chat:fbleave');
      const { sub: ws } = await subscribe(watcher, ch);
      await subscribe(victim, ch);
      const leaves = collect(ws, 'leave');
      const disconnected = once(victim, 'disconnected', 8000);
      await apiCall(srv, 'disconnect', {
        user: 'erin',
        disconnect: { code: 4501, reason: 'go away' },
      });
      const d = await disconnected;
      assert.equal(d.code, 4501, 'a terminal code: no reconnect');
      assert.equal(d.reason, 'go away');
      await waitFor(() => leaves.length === 1, { message: 'leave of the closed session' });
      assert.equal(leaves[0].info.client, ctx.client);
      const pres = await watcher.presence(ch);
      assert.deepEqual(Object.values(pres.clients).map((i) => i.user), ['dave']);
    });
  });
}
