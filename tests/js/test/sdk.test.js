'use strict';
// The real npm `centrifuge` SDK (5.x) against the chorus binary, JSON and Protobuf.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { startServer } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { connToken, subToken, now } = require('../lib/jwt');
const { apiCall } = require('../lib/api');
const { newClient, connectClient, subscribe, disconnectAll, codec } = require('../lib/clients');
const { waitFor, once, collect } = require('../lib/util');

let seq = 0;
const uniq = (prefix) => `${prefix}${process.pid}x${++seq}`;

for (const protocol of ['json', 'protobuf']) {
  describe(`centrifuge-js ${protocol}`, () => {
    const { enc, dec } = codec(protocol);
    let srv;
    before(async () => {
      srv = await startServer(testConfig());
    });
    after(async () => {
      disconnectAll();
      if (srv) await srv.stop();
    });
    afterEach(() => disconnectAll());

    const client = (user, extra = {}, opts = {}) =>
      connectClient(srv, protocol, { token: connToken(user, extra), ...opts });

    it('connects with an HS256 JWT and carries sub + info into presence', async () => {
      const c = newClient(srv, protocol, { token: connToken('alice', { info: { name: 'Alice' } }) });
      const connected = once(c, 'connected', 8000);
      c.connect();
      const ctx = await connected;
      assert.equal(typeof ctx.client, 'string');
      assert.ok(ctx.client.length > 0, 'client id must be non-empty');
      assert.equal(c.state, 'connected');

      const ch = uniq('chat:who');
      await subscribe(c, ch);
      const pres = await c.presence(ch);
      assert.deepEqual(Object.keys(pres.clients), [ctx.client]);
      assert.equal(pres.clients[ctx.client].user, 'alice');
      assert.equal(pres.clients[ctx.client].client, ctx.client);
      assert.deepEqual(dec(pres.clients[ctx.client].connInfo), { name: 'Alice' });
    });

    it('subscribes and receives a publication from the HTTP API with its offset', async () => {
      const c = await client('alice');
      const ch = uniq('chat:api');
      const { sub, ctx } = await subscribe(c, ch);
      assert.equal(ctx.channel, ch);
      assert.equal(ctx.recoverable, true);
      assert.equal(ctx.positioned, true);
      assert.equal(ctx.wasRecovering, false);
      assert.equal(ctx.recovered, false);
      assert.equal(ctx.streamPosition.offset, 0);
      assert.equal(typeof ctx.streamPosition.epoch, 'string');
      assert.ok(ctx.streamPosition.epoch.length > 0);

      const got = collect(sub, 'publication');
      const res = await apiCall(srv, 'publish', { channel: ch, data: { text: 'hello', n: 1 } });
      assert.equal(res.offset, 1);
      assert.equal(res.epoch, ctx.streamPosition.epoch);
      await waitFor(() => got.length === 1, { message: 'publication' });
      assert.equal(got[0].channel, ch);
      assert.deepEqual(dec(got[0].data), { text: 'hello', n: 1 });
      assert.equal(got[0].offset, 1);
      assert.equal(got[0].info, undefined, 'API publications carry no publisher info');

      const res2 = await apiCall(srv, 'publish', { channel: ch, data: [1, 'two', null] });
      assert.equal(res2.offset, 2);
      await waitFor(() => got.length === 2, { message: 'second publication' });
      assert.deepEqual(dec(got[1].data), [1, 'two', null]);
      assert.equal(got[1].offset, 2);
    });

    it('delivers a client-side publish to another client with publisher info', async () => {
      const a = await client('alice');
      const b = await client('bob', { info: { name: 'Bob' } });
      const ch = uniq('chat:pub');
      const { sub: subA } = await subscribe(a, ch);
      const { sub: subB } = await subscribe(b, ch);
      const gotA = collect(subA, 'publication');
      const gotB = collect(subB, 'publication');

      const res = await subB.publish(enc({ text: 'from bob' }));
      assert.deepEqual(res, {});
      await waitFor(() => gotA.length === 1 && gotB.length === 1, { message: 'publication on both' });
      for (const p of [gotA[0], gotB[0]]) {
        assert.deepEqual(dec(p.data), { text: 'from bob' });
        assert.equal(p.offset, 1);
        assert.equal(p.info.user, 'bob');
        assert.equal(p.info.client, b._client);
        assert.deepEqual(dec(p.info.connInfo), { name: 'Bob' });
      }
      // Client.publish (not via the subscription) too.
      await a.publish(ch, enc({ text: 'from alice' }));
      await waitFor(() => gotB.length === 2, { message: 'second publication' });
      assert.deepEqual(dec(gotB[1].data), { text: 'from alice' });
      assert.equal(gotB[1].offset, 2);
      assert.equal(gotB[1].info.user, 'alice');
    });

    it('pushes join and leave events between two clients', async () => {
      const a = await client('alice');
      const ch = uniq('chat:jl');
      const { sub: subA } = await subscribe(a, ch);
      const joins = collect(subA, 'join');
      const leaves = collect(subA, 'leave');

      const b = await client('bob', { info: { name: 'Bob' } });
      const bClient = b._client;
      const { sub: subB } = await subscribe(b, ch);
      await waitFor(() => joins.some((j) => j.info.user === 'bob'), { message: 'join of bob' });
      const j = joins.find((x) => x.info.user === 'bob');
      assert.equal(j.channel, ch);
      assert.equal(j.info.client, bClient);
      assert.deepEqual(dec(j.info.connInfo), { name: 'Bob' });

      subB.unsubscribe();
      await waitFor(() => leaves.some((l) => l.info.user === 'bob'), { message: 'leave of bob' });
      const l = leaves.find((x) => x.info.user === 'bob');
      assert.equal(l.channel, ch);
      assert.equal(l.info.client, bClient);
      assert.equal(joins.filter((x) => x.info.user === 'bob').length, 1);
      assert.equal(leaves.filter((x) => x.info.user === 'bob').length, 1);

      // A disconnect is a leave too.
      const c = await client('carol');
      const cClient = c._client;
      await subscribe(c, ch);
      await waitFor(() => joins.some((x) => x.info.user === 'carol'), { message: 'join of carol' });
      c.disconnect();
      await waitFor(() => leaves.some((x) => x.info.user === 'carol' && x.info.client === cClient), {
        message: 'leave of carol on disconnect',
      });
    });

    it('answers presence and presence_stats with exact clients and users', async () => {
      const a = await client('alice', { info: { n: 'a' } });
      const b1 = await client('bob');
      const b2 = await client('bob');
      const ch = uniq('chat:pres');
      const { sub } = await subscribe(a, ch);
      await subscribe(b1, ch);
      await subscribe(b2, ch);

      const pres = await sub.presence();
      const ids = [a._client, b1._client, b2._client].sort();
      assert.deepEqual(Object.keys(pres.clients).sort(), ids);
      assert.equal(pres.clients[a._client].user, 'alice');
      assert.deepEqual(dec(pres.clients[a._client].connInfo), { n: 'a' });
      assert.equal(pres.clients[b1._client].user, 'bob');
      assert.equal(pres.clients[b2._client].user, 'bob');

      const stats = await sub.presenceStats();
      assert.deepEqual(stats, { numClients: 3, numUsers: 2 });

      b2.disconnect();
      await waitFor(async () => (await a.presenceStats(ch)).numClients === 2, { message: 'presence shrinks' });
      assert.deepEqual(await a.presenceStats(ch), { numClients: 2, numUsers: 2 });
    });

    it('returns history with limit, reverse and since', async () => {
      const ch = uniq('chat:hist');
      let epoch;
      for (let n = 1; n <= 5; n++) {
        const r = await apiCall(srv, 'publish', { channel: ch, data: { n } });
        assert.equal(r.offset, n);
        epoch = r.epoch;
      }
      const c = await client('alice');
      const { sub } = await subscribe(c, ch);
      const offsets = (h) => h.publications.map((p) => p.offset);
      const datas = (h) => h.publications.map((p) => dec(p.data).n);

      const h0 = await sub.history({ limit: 0 });
      assert.deepEqual(h0.publications, []);
      assert.equal(h0.offset, 5);
      assert.equal(h0.epoch, epoch);

      const h1 = await sub.history({ limit: 2 });
      assert.deepEqual(offsets(h1), [1, 2]);
      assert.deepEqual(datas(h1), [1, 2]);
      assert.equal(h1.offset, 5);
      assert.equal(h1.epoch, epoch);

      const h2 = await sub.history({ limit: 2, reverse: true });
      assert.deepEqual(offsets(h2), [5, 4]);

      const h3 = await sub.history({ limit: 10, since: { offset: 2, epoch } });
      assert.deepEqual(offsets(h3), [3, 4, 5]);
      assert.deepEqual(datas(h3), [3, 4, 5]);

      const h4 = await sub.history({ limit: -1 });
      assert.deepEqual(offsets(h4), [1, 2, 3, 4, 5]);

      const h5 = await c.history(ch, { limit: 2, since: { offset: 4, epoch }, reverse: true });
      assert.deepEqual(offsets(h5), [3, 2]);
    });

    it('recovers exactly the missed publications after disconnect + reconnect', async () => {
      const c = await client('alice');
      const ch = uniq('chat:rec');
      const { sub, ctx: first } = await subscribe(c, ch);
      const pubs = collect(sub, 'publication');
      const subscribedEvents = collect(sub, 'subscribed');
      await apiCall(srv, 'publish', { channel: ch, data: { n: 1 } });
      await waitFor(() => pubs.length === 1, { message: 'first publication' });

      c.disconnect();
      assert.equal(sub.state, 'subscribing');
      for (let n = 2; n <= 4; n++) {
        const r = await apiCall(srv, 'publish', { channel: ch, data: { n } });
        assert.equal(r.offset, n);
      }
      c.connect();
      await waitFor(() => subscribedEvents.length === 1, { message: 'resubscribed' });
      const ctx = subscribedEvents[0];
      assert.equal(ctx.wasRecovering, true);
      assert.equal(ctx.recovered, true);
      assert.equal(ctx.hasRecoveredPublications, true);
      assert.equal(ctx.streamPosition.epoch, first.streamPosition.epoch);
      await waitFor(() => pubs.length === 4, { message: '3 recovered publications' });
      // A live one after the recovered ones, then nothing else.
      await apiCall(srv, 'publish', { channel: ch, data: { n: 5 } });
      await waitFor(() => pubs.length === 5, { message: 'live publication after recovery' });
      assert.deepEqual(pubs.map((p) => dec(p.data).n), [1, 2, 3, 4, 5]);
      assert.deepEqual(pubs.map((p) => p.offset), [1, 2, 3, 4, 5]);
    });

    it('recovers after the transport is closed under the SDK (automatic reconnect)', async () => {
      const c = await client('alice', {}, { minReconnectDelay: 400, maxReconnectDelay: 800 });
      const ch = uniq('chat:rec2');
      const { sub } = await subscribe(c, ch);
      const pubs = collect(sub, 'publication');
      const subscribedEvents = collect(sub, 'subscribed');
      await apiCall(srv, 'publish', { channel: ch, data: { n: 1 } });
      await waitFor(() => pubs.length === 1, { message: 'first publication' });

      const connecting = once(c, 'connecting', 5000);
      c._transport.close();
      const cctx = await connecting;
      assert.equal(cctx.code, 1, 'connecting code 1 = transport closed');
      for (let n = 2; n <= 6; n++) await apiCall(srv, 'publish', { channel: ch, data: { n } });
      await waitFor(() => subscribedEvents.length === 1, { timeout: 8000, message: 'resubscribed' });
      assert.equal(subscribedEvents[0].wasRecovering, true);
      assert.equal(subscribedEvents[0].recovered, true);
      await waitFor(() => pubs.length === 6, { message: '5 missed publications' });
      await apiCall(srv, 'publish', { channel: ch, data: { n: 7 } });
      await waitFor(() => pubs.length === 7, { message: 'live publication' });
      assert.deepEqual(pubs.map((p) => dec(p.data).n), [1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(pubs.map((p) => p.offset), [1, 2, 3, 4, 5, 6, 7]);
    });

    it('reports recovered:false when the history window was exceeded', async () => {
      const c = await client('alice');
      const ch = uniq('small:win');
      const { sub } = await subscribe(c, ch);
      const pubs = collect(sub, 'publication');
      const subscribedEvents = collect(sub, 'subscribed');
      await apiCall(srv, 'publish', { channel: ch, data: { n: 1 } });
      await waitFor(() => pubs.length === 1, { message: 'first publication' });
      c.disconnect();
      for (let n = 2; n <= 6; n++) await apiCall(srv, 'publish', { channel: ch, data: { n } });
      c.connect();
      await waitFor(() => subscribedEvents.length === 1, { message: 'resubscribed' });
      const ctx = subscribedEvents[0];
      assert.equal(ctx.wasRecovering, true);
      assert.equal(ctx.recovered, false);
      assert.equal(ctx.hasRecoveredPublications, false);
      assert.equal(ctx.streamPosition.offset, 6);
      await apiCall(srv, 'publish', { channel: ch, data: { n: 7 } });
      await waitFor(() => pubs.length === 2, { message: 'live publication' });
      assert.deepEqual(pubs.map((p) => p.offset), [1, 7], 'nothing partial is recovered');
    });

    it('reports recovered:false when the epoch differs', async () => {
      const ch = uniq('chat:epoch');
      const r = await apiCall(srv, 'publish', { channel: ch, data: { n: 1 } });
      const c = await client('alice');
      const { sub, ctx } = await subscribe(c, ch, { since: { offset: 1, epoch: 'notthis1' } });
      assert.equal(ctx.wasRecovering, true);
      assert.equal(ctx.recovered, false);
      assert.equal(ctx.streamPosition.epoch, r.epoch);
      assert.equal(ctx.streamPosition.offset, 1);
      const pubs = collect(sub, 'publication');
      await apiCall(srv, 'publish', { channel: ch, data: { n: 2 } });
      await waitFor(() => pubs.length === 1, { message: 'live publication' });
      assert.equal(pubs[0].offset, 2);

      // Same epoch and offset: recovered with nothing missed.
      const c2 = await client('bob');
      const { ctx: ctx2 } = await subscribe(c2, ch, { since: { offset: 2, epoch: r.epoch } });
      assert.equal(ctx2.wasRecovering, true);
      assert.equal(ctx2.recovered, true);
      assert.equal(ctx2.hasRecoveredPublications, false);
    });

    it('rejects a subscribe to an unknown namespace with 102', async () => {
      const c = await client('alice');
      const sub = c.newSubscription(uniq('nosuchns:x'));
      const unsubscribed = once(sub, 'unsubscribed', 5000);
      sub.subscribe();
      const ctx = await unsubscribed;
      assert.equal(ctx.code, 102);
      assert.equal(sub.state, 'unsubscribed');
    });

    it('rejects a subscribe without permission with 103', async () => {
      const c = await client('alice');
      const sub = c.newSubscription(uniq('private:x'));
      const unsubscribed = once(sub, 'unsubscribed', 5000);
      sub.subscribe();
      assert.equal((await unsubscribed).code, 103);
    });

    it('rejects history where history is off with 108', async () => {
      const c = await client('alice');
      const ch = uniq('nohist:x');
      await subscribe(c, ch);
      await assert.rejects(c.history(ch, { limit: 10 }), (e) => e.code === 108);
    });

    it('rejects a client subscribe to a server-side subscribed channel with 105', async () => {
      const ch = uniq('chat:dup');
      const c = await client('alice', { channels: [ch] });
      assert.ok(c._serverSubs[ch], 'server-side subscription established at connect');
      const sub = c.newSubscription(ch);
      const unsubscribed = once(sub, 'unsubscribed', 5000);
      sub.subscribe();
      assert.equal((await unsubscribed).code, 105);
    });

    it('subscribes server-side from the JWT channels claim', async () => {
      const ch1 = uniq('chat:srv');
      const ch2 = uniq('srvplain');
      const c = newClient(srv, protocol, { token: connToken('carol', { channels: [ch1, ch2] }) });
      const subscribed = collect(c, 'subscribed');
      const pubs = collect(c, 'publication');
      const connected = once(c, 'connected', 8000);
      c.connect();
      await connected;
      await waitFor(() => subscribed.length === 2, { message: 'two server-side subscribed events' });
      assert.deepEqual(subscribed.map((s) => s.channel).sort(), [ch1, ch2].sort());
      const s1 = subscribed.find((s) => s.channel === ch1);
      assert.equal(s1.recoverable, true);

      await apiCall(srv, 'publish', { channel: ch1, data: { to: 1 } });
      await apiCall(srv, 'publish', { channel: ch2, data: { to: 2 } });
      await waitFor(() => pubs.length === 2, { message: 'server-side publications' });
      const byCh = Object.fromEntries(pubs.map((p) => [p.channel, p]));
      assert.deepEqual(dec(byCh[ch1].data), { to: 1 });
      assert.equal(byCh[ch1].offset, 1);
      assert.deepEqual(dec(byCh[ch2].data), { to: 2 });

      const stats = await apiCall(srv, 'presence_stats', { channel: ch1 });
      assert.deepEqual(stats, { num_clients: 1, num_users: 1 });
    });

    it('accepts a subscription token and carries its info as chan_info', async () => {
      const c = await client('alice');
      const ch = uniq('private:tok');
      const { ctx } = await subscribe(c, ch, { token: subToken('alice', ch, { info: { role: 'admin' } }) });
      assert.equal(ctx.channel, ch);
      const pres = await apiCall(srv, 'presence', { channel: ch });
      assert.deepEqual(Object.keys(pres.presence), [c._client]);
      assert.equal(pres.presence[c._client].user, 'alice');
      assert.deepEqual(pres.presence[c._client].chan_info, { role: 'admin' });
    });

    it('gets a new subscription token through getToken when the first one expired', async () => {
      const c = await client('alice');
      const ch = uniq('private:exp');
      let calls = 0;
      const { ctx } = await subscribe(c, ch, {
        token: subToken('alice', ch, { exp: now() - 60 }),
        getToken: async (tctx) => {
          calls++;
          assert.equal(tctx.channel, ch);
          return subToken('alice', ch, { exp: now() + 3600 });
        },
        minResubscribeDelay: 10,
        maxResubscribeDelay: 50,
      });
      assert.equal(ctx.channel, ch);
      assert.equal(calls, 1);
    });

    it('refreshes an expired connection token through getToken (109 path)', async () => {
      let calls = 0;
      const c = newClient(srv, protocol, {
        token: connToken('alice', { exp: now() - 60 }),
        getToken: async () => {
          calls++;
          return connToken('alice', { exp: now() + 3600 });
        },
      });
      const errors = collect(c, 'error');
      const connected = once(c, 'connected', 8000);
      c.connect();
      await connected;
      assert.equal(calls, 1);
      const connectErrors = errors.filter((e) => e.type === 'connect');
      assert.equal(connectErrors.length, 1);
      assert.equal(connectErrors[0].error.code, 109);
    });

    it('disconnects a client with an invalid token with code 3500', async () => {
      const c = newClient(srv, protocol, { token: connToken('mallory', {}, 'not-the-secret') });
      const disconnected = once(c, 'disconnected', 8000);
      c.connect();
      const ctx = await disconnected;
      assert.equal(ctx.code, 3500);
      assert.equal(c.state, 'disconnected');
    });

    it('disconnects on a subscription token for another channel with 3500', async () => {
      const c = await client('alice');
      const ch = uniq('private:mismatch');
      const disconnected = once(c, 'disconnected', 8000);
      const sub = c.newSubscription(ch, { token: subToken('alice', `${ch}other`) });
      sub.on('error', () => {});
      sub.subscribe();
      assert.equal((await disconnected).code, 3500);
    });
  });
}

describe('recovery across a server restart (new epoch)', () => {
  let srv;
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
  });

  it('subscribes with recovered:false and a new epoch after the server restarted', async () => {
    srv = await startServer(testConfig());
    const port = srv.port;
    const c = await connectClient(srv, 'json', { token: connToken('alice') });
    const ch = uniq('chat:restart');
    const { sub, ctx: first } = await subscribe(c, ch);
    const pubs = collect(sub, 'publication');
    const subscribedEvents = collect(sub, 'subscribed');
    await apiCall(srv, 'publish', { channel: ch, data: { n: 1 } });
    await waitFor(() => pubs.length === 1, { message: 'first publication' });
    const connecting = once(c, 'connecting', 10000);
    await srv.stop();
    await connecting;

    srv = await startServer(testConfig(), { port });
    await waitFor(() => subscribedEvents.length === 1, { timeout: 10000, message: 'resubscribed to new server' });
    const ctx = subscribedEvents[0];
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, false);
    assert.notEqual(ctx.streamPosition.epoch, first.streamPosition.epoch);
    assert.equal(ctx.streamPosition.offset, 0);
    const r = await apiCall(srv, 'publish', { channel: ch, data: { n: 2 } });
    assert.equal(r.offset, 1);
    await waitFor(() => pubs.length === 2, { message: 'publication from new server' });
    assert.deepEqual(pubs.map((p) => [p.data.n, p.offset]), [[1, 1], [2, 1]]);
  });
});
