'use strict';
// Delta compression (fossil), Centrifugo v6 compatible, against the real binary:
//   * centrifuge-js's own fossil decoder rebuilds every payload from chorus' deltas (realistic
//     and random JSON, unicode, identical, totally different, empty string, 300 KB);
//   * centrifuge-js (JSON and Protobuf) subscribed with `delta: 'fossil'` gets exactly what was
//     published (server API `delta: true`, and client publishes into a `delta_publish`
//     namespace) while the frames on the wire carry `"delta":true` and are smaller;
//   * binary payloads over Protobuf;
//   * recovery after a reconnect gives full publications, then deltas again;
//   * negotiation: not allowed → no delta, unknown type → 3501.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const { startServer } = require('../lib/server');
const { connToken } = require('../lib/jwt');
const { apiCall } = require('../lib/api');
const { RawConn } = require('../lib/raw');
const { connectClient, subscribe, disconnectAll } = require('../lib/clients');
const { waitFor, collect } = require('../lib/util');
const { applyDelta } = require('../lib/fossil');

let seq = 0;
const uniq = (prefix) => `${prefix}${process.pid}d${++seq}`;
const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);

const deltaNs = {
  allow_subscribe_for_client: true,
  allow_publish_for_subscriber: true,
  allowed_delta_types: ['fossil'],
};
const config = {
  channel: {
    namespaces: [
      { name: 'dl', ...deltaNs, history_size: 100, history_ttl: '300s', force_recovery: true },
      { name: 'dp', ...deltaNs, delta_publish: true },
      { name: 'bin', ...deltaNs, allow_binary_data: true },
      { name: 'plain', allow_subscribe_for_client: true },
    ],
  },
};

/** A realistic document: an order whose status, items and timestamps move a little. */
function order(v) {
  return {
    id: 'ord-7f3a9c',
    customer: { name: 'Zoë Ångström', city: '東京', tags: ['vip', '🚚'] },
    status: ['placed', 'paid', 'packed', 'shipped', 'delivered'][v % 5],
    items: Array.from({ length: 12 }, (_, i) => ({ sku: `SKU-${i}`, qty: 1 + ((i + v) % 3), price: 9.99 + i })),
    updated_at: `2026-11-30T14:${String(10 + (v % 50)).padStart(2, '0')}:00Z`,
    note: 'Leave at the "front" door\\side gate',
    version: v,
  };
}

/** A random JSON string value: quotes, backslashes, control characters and non-ASCII text. */
function randomJsonText(rand, n) {
  const alphabet = ['a', 'b', 'c', ' ', '"', '\\', '\n', '\t', 'é', '日', '😀', '{', '}', '\u0001', 'ß'];
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return JSON.stringify(s);
}

/** Mutates a JSON string value's content a little (the result stays a valid JSON string). */
function mutate(rand, text) {
  const chars = [...JSON.parse(text)];
  for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) {
    const at = Math.floor(rand() * (chars.length + 1));
    if (rand() < 0.5) chars.splice(at, 1);
    else chars.splice(at, 0, ...['x', '😀', 'é', '"'][Math.floor(rand() * 4)]);
  }
  return JSON.stringify(chars.join(''));
}

function seeded(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Publishes `text` (exact JSON text) through the HTTP API. */
async function publishText(srv, channel, text, delta = true) {
  const body = `{"channel":${JSON.stringify(channel)},"delta":${delta},"data":${text}}`;
  return apiCall(srv, 'publish', body);
}

describe('delta compression (fossil)', () => {
  let srv;
  const conns = [];
  const raw = async (user = 'raw') => {
    const c = await RawConn.open(srv.wsUrl);
    conns.push(c);
    c.send({ id: 1, connect: { token: connToken(user), name: 'raw' } });
    assert.ok((await c.reply(1)).connect);
    return c;
  };
  /** Publications of `channel` a raw connection received, from message index `from`. */
  const rawPubs = (c, channel) => c.messages.filter((m) => m.push && m.push.channel === channel && m.push.pub).map((m) => m.push.pub);

  before(async () => {
    srv = await startServer(config);
  });
  afterEach(() => {
    disconnectAll();
    for (const c of conns.splice(0)) c.close();
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  it("centrifuge-js's fossil decoder rebuilds every payload from chorus' deltas", async () => {
    const c = await raw();
    const ch = uniq('dl:corpus');
    c.send({ id: 2, subscribe: { channel: ch, delta: 'fossil' } });
    assert.equal((await c.reply(2)).subscribe.delta, true);

    const rand = seeded(42);
    const texts = [];
    for (let v = 1; v <= 30; v++) texts.push(JSON.stringify(order(v)));
    texts.push(texts[texts.length - 1]); // identical
    texts.push('""'); // empty string
    texts.push('""');
    texts.push(JSON.stringify({ totally: 'different', n: [1, 2, 3] }));
    let r = randomJsonText(rand, 400);
    for (let i = 0; i < 60; i++) {
      texts.push(r);
      r = rand() < 0.2 ? randomJsonText(rand, Math.floor(rand() * 600)) : mutate(rand, r);
    }
    const big = { rows: Array.from({ length: 3000 }, (_, i) => ({ i, name: `row ${i}`, v: i * 7 })) };
    texts.push(JSON.stringify(big));
    big.rows[1500].v = -1;
    big.rows.push({ i: 3000, name: 'last', v: 0 });
    texts.push(JSON.stringify(big));
    assert.ok(texts[texts.length - 1].length > 90000);

    for (const t of texts) await publishText(srv, ch, t);
    await waitFor(() => rawPubs(c, ch).length === texts.length, { message: `${texts.length} publications` });
    const pubs = rawPubs(c, ch);
    let prev = new Uint8Array(0);
    let deltas = 0;
    pubs.forEach((p, i) => {
      assert.equal(typeof p.data, 'string', 'delta-mode JSON data is a JSON string');
      prev = p.delta ? applyDelta(prev, enc(p.data)) : enc(p.data);
      if (p.delta) deltas++;
      assert.equal(dec(prev), texts[i], `publication ${i + 1} (offset ${p.offset}) decodes exactly`);
      if (p.delta) assert.ok(enc(p.data).length < enc(texts[i]).length, `delta ${i + 1} is smaller`);
    });
    assert.equal(pubs[0].delta, undefined, 'the first publication is full');
    assert.ok(deltas >= 70, `most publications are deltas (${deltas}/${texts.length})`);
    // The big one changed in two places: a tiny delta.
    assert.equal(pubs[pubs.length - 1].delta, true);
    assert.ok(enc(pubs[pubs.length - 1].data).length < 200);
  });

  for (const protocol of ['json', 'protobuf']) {
    it(`centrifuge-js ${protocol}: exact data, smaller delta frames on the wire`, async () => {
      const ch = uniq('dl:sdk');
      const c = await connectClient(srv, protocol, { token: connToken('alice') });
      const { sub } = await subscribe(c, ch, { delta: 'fossil' });
      const got = collect(sub, 'publication');
      // Raw JSON observers of the same channel: one in delta mode, one not.
      const rd = await raw('observer');
      rd.send({ id: 2, subscribe: { channel: ch, delta: 'fossil' } });
      assert.equal((await rd.reply(2)).subscribe.delta, true);
      const rn = await raw('plain');
      rn.send({ id: 2, subscribe: { channel: ch } });
      assert.equal((await rn.reply(2)).subscribe.delta, undefined);

      const docs = [1, 2, 3, 4, 5].map(order);
      for (const d of docs) await apiCall(srv, 'publish', { channel: ch, data: d, delta: true });
      await waitFor(() => got.length === 5 && rawPubs(rd, ch).length === 5 && rawPubs(rn, ch).length === 5, { message: '5 publications everywhere' });

      const data = got.map((p) => (protocol === 'json' ? p.data : JSON.parse(dec(p.data))));
      assert.deepEqual(data, docs);
      assert.deepEqual(got.map((p) => p.offset), [1, 2, 3, 4, 5]);
      const stats = sub.deltaStats();
      assert.equal(stats.numFullPayloads, 1);
      assert.equal(stats.numDeltaPayloads, 4);
      assert.ok(stats.bytesReceived < stats.bytesDecoded / 2, JSON.stringify(stats));

      // On the wire (JSON): the delta observer's frames say delta and are much smaller.
      const frameOf = (conn, offset) => conn.frames.map((f) => f.data.toString()).find((t) => t.includes(`"channel":"${ch}"`) && t.includes(`"offset":${offset}`));
      for (let off = 2; off <= 5; off++) {
        const d = frameOf(rd, off);
        const n = frameOf(rn, off);
        assert.ok(d.includes('"delta":true'), d);
        assert.ok(!n.includes('"delta"'), n);
        assert.ok(d.length * 2 < n.length, `delta frame ${d.length} B vs full ${n.length} B`);
      }
      // The non-delta observer gets the publication as a JSON value, unchanged.
      assert.deepEqual(rawPubs(rn, ch).map((p) => p.data), docs);
    });
  }

  it('client publishes into a delta_publish namespace reach delta subscribers as deltas', async () => {
    const ch = uniq('dp:room');
    const reader = await connectClient(srv, 'json', { token: connToken('reader') });
    const { sub } = await subscribe(reader, ch, { delta: 'fossil' });
    const got = collect(sub, 'publication');
    const writer = await connectClient(srv, 'protobuf', { token: connToken('writer') });
    const { sub: wsub } = await subscribe(writer, ch);
    const docs = [10, 11, 12, 13].map(order);
    for (const d of docs) await wsub.publish(enc(JSON.stringify(d)));
    await waitFor(() => got.length === 4, { message: '4 publications' });
    assert.deepEqual(got.map((p) => p.data), docs);
    assert.deepEqual(got.map((p) => p.info && p.info.user), ['writer', 'writer', 'writer', 'writer']);
    assert.equal(sub.deltaStats().numDeltaPayloads, 3);
  });

  it('binary payloads over Protobuf decode to the exact bytes', async () => {
    const ch = uniq('bin:blob');
    const c = await connectClient(srv, 'protobuf', { token: connToken('bob') });
    const { sub } = await subscribe(c, ch, { delta: 'fossil' });
    const got = collect(sub, 'publication');
    const rand = seeded(7);
    const blobs = [];
    let b = crypto.randomBytes(2000);
    for (let i = 0; i < 40; i++) {
      blobs.push(b);
      const next = Buffer.from(b);
      for (let k = 0; k < 3; k++) next[Math.floor(rand() * next.length)] = Math.floor(rand() * 256);
      b = rand() < 0.1 ? crypto.randomBytes(Math.floor(rand() * 3000) + 1) : next;
    }
    for (const blob of blobs) {
      await apiCall(srv, 'publish', { channel: ch, b64data: blob.toString('base64'), delta: true });
    }
    await waitFor(() => got.length === blobs.length, { message: `${blobs.length} publications` });
    got.forEach((p, i) => assert.ok(Buffer.from(p.data).equals(blobs[i]), `blob ${i} exact`));
    assert.ok(sub.deltaStats().numDeltaPayloads >= 30, JSON.stringify(sub.deltaStats()));
  });

  it('recovery after a reconnect: full publications, then deltas again', async () => {
    const ch = uniq('dl:rec');
    const c = await connectClient(srv, 'json', { token: connToken('carol') });
    const { sub } = await subscribe(c, ch, { delta: 'fossil' });
    const got = collect(sub, 'publication');
    const subscribed = collect(sub, 'subscribed');
    for (const v of [1, 2]) await apiCall(srv, 'publish', { channel: ch, data: order(v), delta: true });
    await waitFor(() => got.length === 2, { message: '2 live publications' });
    assert.deepEqual(sub.deltaStats().numDeltaPayloads, 1);

    c.disconnect();
    for (const v of [3, 4, 5]) await apiCall(srv, 'publish', { channel: ch, data: order(v), delta: true });
    c.connect();
    await waitFor(() => subscribed.length === 1 && got.length === 5, { message: 'recovered publications' });
    assert.equal(subscribed[0].recovered, true);
    const afterRecovery = sub.deltaStats();
    for (const v of [6, 7]) await apiCall(srv, 'publish', { channel: ch, data: order(v), delta: true });
    await waitFor(() => got.length === 7, { message: 'live publications after recovery' });
    assert.deepEqual(got.map((p) => p.data), [1, 2, 3, 4, 5, 6, 7].map(order));
    assert.deepEqual(got.map((p) => p.offset), [1, 2, 3, 4, 5, 6, 7]);
    const end = sub.deltaStats();
    // Recovered 3, 4, 5 and the first live one (6) full; 7 a delta again.
    assert.equal(afterRecovery.numFullPayloads, 1 + 3);
    assert.equal(afterRecovery.numDeltaPayloads, 1);
    assert.equal(end.numFullPayloads, 1 + 3 + 1);
    assert.equal(end.numDeltaPayloads, 2);
  });

  it('negotiation: a namespace without fossil answers without delta, an unknown type is 3501', async () => {
    const c = await raw();
    c.send({ id: 2, subscribe: { channel: uniq('plain:x'), delta: 'fossil' } });
    const r = await c.reply(2);
    assert.equal(r.error, undefined);
    assert.equal(r.subscribe.delta, undefined);
    c.send({ id: 3, subscribe: { channel: uniq('dl:x'), delta: 'vcdiff' } });
    const closed = await c.waitClosed();
    assert.equal(closed.code, 3501);
  });
});
