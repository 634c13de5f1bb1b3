'use strict';
// The cross-node flow shared by the standalone-Redis and the Redis-Cluster suites: call inside
// a describe() whose before() fills ctx.nodes (3 chorus nodes on one engine).
const { it } = require('node:test');
const assert = require('node:assert/strict');
const { disconnectAll } = require('../../js/lib/clients');
const {
  uniq, clientOn, subscribeCollect, apiCall, waitFor, once, collect,
} = require('./cluster');

function crossNodeFlow(ctx) {
  const node = (i) => ctx.nodes[i];

  it('clients on 3 nodes exchange messages in a shared room (offsets, publisher info)', async () => {
    const ch = uniq('chat:room');
    const users = ['alice', 'bob', 'carol'];
    const clients = await Promise.all(users.map((u, i) => clientOn(node(i), u)));
    const subs = [];
    for (const c of clients) subs.push(await subscribeCollect(c, ch));
    for (const s of subs) assert.equal(s.ctx.recoverable, true);
    const epoch = subs[0].ctx.streamPosition.epoch;
    assert.ok(epoch.length > 0);
    for (const s of subs) assert.equal(s.ctx.streamPosition.epoch, epoch, 'one stream for the whole cluster');

    // Each user publishes from its own node, one after another.
    for (let i = 0; i < 3; i++) {
      await subs[i].sub.publish({ text: `hi from ${users[i]}`, n: i + 1 });
      await waitFor(() => subs.every((s) => s.pubs.length === i + 1), { timeout: 8000, message: `publication ${i + 1} on every node` });
    }
    // And one through the HTTP API of node 2.
    const r = await apiCall(node(2), 'publish', { channel: ch, data: { text: 'from api', n: 4 } });
    assert.equal(r.offset, 4);
    assert.equal(r.epoch, epoch);
    await waitFor(() => subs.every((s) => s.pubs.length === 4), { timeout: 8000, message: 'api publication on every node' });
    for (const s of subs) {
      assert.deepEqual(s.pubs.map((p) => p.offset), [1, 2, 3, 4]);
      assert.deepEqual(s.pubs.map((p) => p.data), [
        { text: 'hi from alice', n: 1 }, { text: 'hi from bob', n: 2 }, { text: 'hi from carol', n: 3 }, { text: 'from api', n: 4 },
      ]);
      assert.deepEqual(s.pubs.slice(0, 3).map((p) => p.info.user), users);
      assert.deepEqual(s.pubs.slice(0, 3).map((p) => p.info.client), clients.map((c) => c._client));
      assert.equal(s.pubs[3].info, undefined);
    }
  });

  it('join/leave and presence across nodes', async () => {
    const ch = uniq('chat:jl');
    const a = await clientOn(node(0), 'alice');
    const sa = await subscribeCollect(a, ch);
    const c = await clientOn(node(2), 'carol');
    const sc = await subscribeCollect(c, ch);
    await waitFor(() => sa.joins.some((j) => j.info.user === 'carol'), { timeout: 8000, message: 'alice@0 sees carol@2 join' });

    const b = await clientOn(node(1), 'bob');
    const bId = b._client;
    const sb = await subscribeCollect(b, ch);
    await waitFor(() => [sa, sc].every((s) => s.joins.some((j) => j.info.user === 'bob')), { timeout: 8000, message: 'join of bob@1 on nodes 0 and 2' });
    for (const s of [sa, sc]) {
      const j = s.joins.filter((x) => x.info.user === 'bob');
      assert.equal(j.length, 1);
      assert.equal(j[0].channel, ch);
      assert.equal(j[0].info.client, bId);
    }

    // Presence asked on any node sees every node's subscribers.
    for (const i of [0, 1, 2]) {
      const pres = await apiCall(node(i), 'presence', { channel: ch });
      assert.deepEqual(Object.keys(pres.presence).sort(), [a._client, bId, c._client].sort(), `presence via node-${i}`);
      assert.deepEqual(await apiCall(node(i), 'presence_stats', { channel: ch }), { num_clients: 3, num_users: 3 });
    }
    const sdkPres = await sc.sub.presence();
    assert.deepEqual(Object.keys(sdkPres.clients).sort(), [a._client, bId, c._client].sort());

    sb.sub.unsubscribe();
    await waitFor(() => [sa, sc].every((s) => s.leaves.some((l) => l.info.user === 'bob')), { timeout: 8000, message: 'leave of bob on nodes 0 and 2' });
    for (const s of [sa, sc]) {
      const l = s.leaves.filter((x) => x.info.user === 'bob');
      assert.equal(l.length, 1);
      assert.equal(l[0].info.client, bId);
    }
    // Disconnect of carol@2 is a leave on node 0.
    const cId = c._client;
    c.disconnect();
    await waitFor(() => sa.leaves.some((l) => l.info.client === cId), { timeout: 8000, message: 'leave of carol on disconnect' });
    await waitFor(async () => (await apiCall(node(1), 'presence_stats', { channel: ch })).num_clients === 1, { timeout: 8000, message: 'presence shrinks to 1' });
    assert.deepEqual(await apiCall(node(1), 'presence_stats', { channel: ch }), { num_clients: 1, num_users: 1 });
    assert.equal(sa.joins.filter((j) => j.info.user === 'bob').length, 1, 'no duplicate join');
  });

  it('history is shared: published via node 0, read on nodes 1 and 2', async () => {
    const ch = uniq('chat:hist');
    let epoch;
    for (let n = 1; n <= 5; n++) {
      const r = await apiCall(node(n % 3), 'publish', { channel: ch, data: { n } });
      assert.equal(r.offset, n);
      if (epoch === undefined) epoch = r.epoch;
      assert.equal(r.epoch, epoch);
    }
    const h = await apiCall(node(1), 'history', { channel: ch, limit: -1 });
    assert.equal(h.epoch, epoch);
    assert.equal(h.offset, 5);
    assert.deepEqual(h.publications.map((p) => [p.offset, p.data.n]), [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]);
    const c = await clientOn(node(2), 'dave');
    const s = await subscribeCollect(c, ch);
    assert.equal(s.ctx.streamPosition.offset, 5);
    assert.equal(s.ctx.streamPosition.epoch, epoch);
    const h2 = await s.sub.history({ limit: 2, since: { offset: 2, epoch } });
    assert.deepEqual(h2.publications.map((p) => [p.offset, p.data.n]), [[3, 3], [4, 4]]);
    assert.equal(h2.offset, 5);
    assert.equal(h2.epoch, epoch);
  });

  it('recovery across nodes: disconnect from node 0, publish 7, reconnect to node 1 with recover', async () => {
    const ch = uniq('chat:rec');
    const a = await clientOn(node(0), 'erin');
    const s = await subscribeCollect(a, ch);
    const epoch = s.ctx.streamPosition.epoch;
    await apiCall(node(2), 'publish', { channel: ch, data: { n: 0 } });
    await waitFor(() => s.pubs.length === 1, { timeout: 8000, message: 'first publication' });
    assert.equal(s.pubs[0].offset, 1);
    a.disconnect();
    for (let n = 1; n <= 7; n++) {
      const r = await apiCall(node(n % 3), 'publish', { channel: ch, data: { n } });
      assert.equal(r.offset, n + 1);
    }
    const b = await clientOn(node(1), 'erin');
    const s2 = await subscribeCollect(b, ch, { since: { offset: 1, epoch } });
    assert.equal(s2.ctx.wasRecovering, true);
    assert.equal(s2.ctx.recovered, true);
    assert.equal(s2.ctx.streamPosition.epoch, epoch);
    await waitFor(() => s2.pubs.length === 7, { timeout: 8000, message: '7 recovered publications' });
    assert.deepEqual(s2.pubs.map((p) => [p.offset, p.data.n]), [[2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [7, 6], [8, 7]]);
    await apiCall(node(0), 'publish', { channel: ch, data: { n: 8 } });
    await waitFor(() => s2.pubs.length === 8, { timeout: 8000, message: 'live publication after recovery' });
    assert.deepEqual([s2.pubs[7].offset, s2.pubs[7].data.n], [9, 8]);
  });

  it('server API subscribe/unsubscribe/disconnect by user reach the user on every node', async () => {
    const user = uniq('frank');
    const conns = await Promise.all([0, 1, 2].map((i) => clientOn(node(i), user)));
    const other = await clientOn(node(1), uniq('grace'));
    const otherSubs = collect(other, 'subscribed');
    const ch = uniq('chat:srv');
    const subscribedEvts = conns.map((c) => collect(c, 'subscribed'));
    const pubs = conns.map((c) => collect(c, 'publication'));
    const unsubscribed = conns.map((c) => collect(c, 'unsubscribed'));

    assert.deepEqual(await apiCall(node(2), 'subscribe', { user, channel: ch }), {});
    await waitFor(() => subscribedEvts.every((e) => e.some((x) => x.channel === ch)), { timeout: 8000, message: 'server-side subscribe on 3 nodes' });
    const r = await apiCall(node(0), 'publish', { channel: ch, data: { to: 'frank' } });
    assert.equal(r.offset, 1);
    await waitFor(() => pubs.every((p) => p.length === 1), { timeout: 8000, message: 'publication on server-side subs' });
    for (const p of pubs) {
      assert.equal(p[0].channel, ch);
      assert.deepEqual(p[0].data, { to: 'frank' });
      assert.equal(p[0].offset, 1);
    }

    assert.deepEqual(await apiCall(node(1), 'unsubscribe', { user, channel: ch }), {});
    await waitFor(() => unsubscribed.every((u) => u.some((x) => x.channel === ch)), { timeout: 8000, message: 'server-side unsubscribe on 3 nodes' });
    await apiCall(node(0), 'publish', { channel: ch, data: { to: 'nobody' } });

    const disconnected = conns.map((c) => once(c, 'disconnected', 8000));
    assert.deepEqual(await apiCall(node(0), 'disconnect', { user, disconnect: { code: 4501, reason: 'banned' } }), {});
    const ds = await Promise.all(disconnected);
    for (const d of ds) assert.deepEqual([d.code, d.reason], [4501, 'banned']);
    for (const c of conns) assert.equal(c.state, 'disconnected');
    assert.equal(other.state, 'connected', 'other users stay connected');
    assert.equal(otherSubs.length, 0, 'other users were not subscribed');
    // Nothing after the unsubscribe reached the user.
    assert.deepEqual(pubs.map((p) => p.length), [1, 1, 1]);
  });

  it('channels and info answer for the whole cluster', async () => {
    disconnectAll();
    const tag = uniq('chat:cnt');
    const ch1 = `${tag}a`;
    const ch2 = `${tag}b`;
    const c0 = await clientOn(node(0), 'u0');
    const c0b = await clientOn(node(0), 'u0b');
    const c1 = await clientOn(node(1), 'u1');
    await subscribeCollect(c0, ch1);
    await subscribeCollect(c1, ch1);
    await subscribeCollect(c0b, ch1);
    await subscribeCollect(c1, ch2);
    for (const i of [0, 1, 2]) {
      const r = await apiCall(node(i), 'channels', { pattern: `${tag}*` });
      assert.deepEqual(r, { channels: { [ch1]: { num_clients: 3 }, [ch2]: { num_clients: 1 } } }, `channels via node-${i}`);
    }
    // Heartbeats carry counts every few seconds: wait (bounded) for the exact picture.
    const want = [['node-0', 2, 2, 2], ['node-1', 1, 1, 2], ['node-2', 0, 0, 0]];
    let last;
    await waitFor(async () => {
      const info = await apiCall(node(2), 'info', {});
      last = info.nodes.map((n) => [n.name, n.num_clients, n.num_users, n.num_subs]).sort();
      return JSON.stringify(last) === JSON.stringify(want);
    }, { timeout: 12000, interval: 200, message: 'info with every node\'s counts' }).catch((e) => {
      throw new Error(`${e.message}; last info: ${JSON.stringify(last)}`);
    });
    const info = await apiCall(node(0), 'info', {});
    assert.equal(info.nodes.length, 3);
    assert.equal(new Set(info.nodes.map((n) => n.uid)).size, 3);
  });
}

module.exports = { crossNodeFlow };
