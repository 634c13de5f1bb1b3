'use strict';
// Bytes on the wire and server CPU per delivery, with and without permessage-deflate and
// fossil delta compression, for a chat-like and a ticker-like stream.
//
//   CHORUS_BIN=target/release/chorus node loadtest/bandwidth/bandwidth.js \
//     --payload ticker --mode deflate+delta [--subscribers 500] [--messages 200] [--rate 20]
//
// One run: a fresh chorus (memory engine) with `websocket.compression` on; N centrifuge-js
// (npm, JSON) subscribers over Node's `ws` in one channel, offering permessage-deflate only in
// the deflate modes and subscribing with `delta: 'fossil'` only in the delta modes; M
// publications through the HTTP API at a fixed rate (payloads from a seeded generator, so every
// mode sees the same bytes). Measured over the publishing phase only (after every subscriber is
// subscribed, until every delivery arrived or the deadline passed):
//   * wire bytes per delivery: the bytes the subscribers' sockets read (WebSocket frame headers
//     included, TCP/IP not), divided by the deliveries;
//   * server CPU per delivery: utime+stime of the chorus process (from /proc, 10 ms ticks);
//   * correctness: every subscriber must see exactly the published data, in order (a mismatch
//     fails the run: the savings of a broken delta would mean nothing).
// Prints one JSON line (appended to --out when given). Bounded: a run ends by itself.
const path = require('node:path');
const fs = require('node:fs');

const ROOT = path.resolve(__dirname, '../..');
const NM = path.join(ROOT, 'tests/js/node_modules');
const WebSocket = require(path.join(NM, 'ws'));
const { Centrifuge } = require(path.join(NM, 'centrifuge'));
const { startServer } = require(path.join(ROOT, 'tests/js/lib/server'));
const { connToken } = require(path.join(ROOT, 'tests/js/lib/jwt'));
const { apiCall } = require(path.join(ROOT, 'tests/js/lib/api'));

const MODES = ['plain', 'deflate', 'delta', 'deflate+delta'];
const PAYLOADS = ['chat', 'ticker'];

function parseArgs(argv) {
  const a = { subscribers: 500, messages: 200, rate: 20, payload: 'chat', mode: 'plain', out: '', label: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in a)) throw new Error(`unknown option --${k}`);
    a[k] = typeof a[k] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!MODES.includes(a.mode)) throw new Error(`--mode: one of ${MODES.join(', ')}`);
  if (!PAYLOADS.includes(a.payload)) throw new Error(`--payload: one of ${PAYLOADS.join(', ')}`);
  return a;
}

/** mulberry32: a small seeded PRNG, so every mode publishes the same payloads. */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ('the a we you they it is was will can see meet lunch today tomorrow deploy build '
  + 'review merge branch ticket done thanks great sounds good later coffee call standup fix bug '
  + 'release notes check this please ok sure why how when where what room team plan idea ship')
  .split(' ');

/** Chat: independent messages of 8–30 words from one of 50 users (~150–300 B of JSON). */
function chatStream(n) {
  const r = rng(42);
  const out = [];
  for (let i = 1; i <= n; i++) {
    const words = Array.from({ length: 8 + Math.floor(r() * 23) }, () => WORDS[Math.floor(r() * WORDS.length)]);
    out.push({
      id: `m${i.toString(36)}${Math.floor(r() * 1e9).toString(36)}`,
      user: `user${Math.floor(r() * 50)}`,
      text: words.join(' '),
      ts: 1764500000000 + i * 50,
    });
  }
  return out;
}

/** Ticker: a board of 20 symbols (~1.3 KB of JSON); each tick moves 1–3 of them. */
function tickerStream(n) {
  const r = rng(7);
  const symbols = ['AAPL', 'MSFT', 'GOOG', 'AMZN', 'META', 'NVDA', 'TSLA', 'NFLX', 'ORCL', 'INTC',
    'AMD', 'IBM', 'CSCO', 'ADBE', 'CRM', 'QCOM', 'TXN', 'AVGO', 'SHOP', 'UBER'];
  const board = symbols.map((s) => ({ s, bid: 100 + Math.floor(r() * 400), ask: 0, last: 0, vol: Math.floor(r() * 1e6) }));
  const fmt = (v) => (v / 100).toFixed(2);
  const out = [];
  for (let i = 1; i <= n; i++) {
    const moves = 1 + Math.floor(r() * 3);
    for (let k = 0; k < moves; k++) {
      const q = board[Math.floor(r() * board.length)];
      q.bid += Math.floor(r() * 21) - 10;
      q.vol += Math.floor(r() * 500);
    }
    out.push({
      seq: i,
      ts: 1764500000000 + i * 50,
      quotes: board.map((q) => ({
        s: q.s, bid: fmt(q.bid * 100 + 12), ask: fmt(q.bid * 100 + 37), last: fmt(q.bid * 100 + 25), vol: q.vol,
      })),
    });
  }
  return out;
}

function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const deflate = a.mode.includes('deflate');
  const delta = a.mode.includes('delta');
  const data = a.payload === 'chat' ? chatStream(a.messages) : tickerStream(a.messages);
  const texts = data.map((d) => JSON.stringify(d));
  const ns = {
    name: 'bench',
    allow_subscribe_for_client: true,
    history_size: 100,
    history_ttl: '300s',
    force_recovery: true,
  };
  if (delta) Object.assign(ns, { allowed_delta_types: ['fossil'], delta_publish: true });
  const srv = await startServer({
    client: { ping_interval: '25s', pong_timeout: '8s', queue_max_size: 4 << 20 },
    websocket: { compression: true },
    channel: { namespaces: [ns] },
  }, { env: { RUST_LOG: 'warn' } });
  const sockets = [];
  class Ws extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { perMessageDeflate: deflate });
      sockets.push(this);
    }
  }
  const ch = 'bench:room';
  const clients = [];
  const received = [];
  let deliveries = 0;
  let mismatches = 0;
  try {
    for (let i = 0; i < a.subscribers; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, a.subscribers - i) }, async (_, k) => {
        const idx = i + k;
        const c = new Centrifuge(srv.wsUrl, { websocket: Ws, token: connToken(`sub${idx}`) });
        clients.push(c);
        const got = [];
        received[idx] = got;
        const sub = c.newSubscription(ch, delta ? { delta: 'fossil' } : {});
        sub.on('publication', (ctx) => {
          const want = texts[got.length];
          if (JSON.stringify(ctx.data) !== want) mismatches++;
          got.push(ctx.offset);
          deliveries++;
        });
        const subscribed = new Promise((resolve, reject) => {
          sub.once('subscribed', resolve);
          sub.once('error', (e) => reject(new Error(`subscribe: ${JSON.stringify(e.error)}`)));
          setTimeout(() => reject(new Error('subscribe timeout')), 15000);
        });
        c.connect();
        sub.subscribe();
        await subscribed;
      }));
    }
    const negotiated = sockets.filter((s) => s.extensions.includes('permessage-deflate')).length;
    await sleep(300);
    const bytes0 = sockets.reduce((n, s) => n + s._socket.bytesRead, 0);
    const cpu0 = cpuTicks(srv.proc.pid);
    const t0 = Date.now();
    const want = a.subscribers * a.messages;
    for (let i = 0; i < a.messages; i++) {
      const due = t0 + (i * 1000) / a.rate;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      await apiCall(srv, 'publish', { channel: ch, data: data[i] });
    }
    const deadline = Date.now() + 20000;
    while (deliveries < want && Date.now() < deadline) await sleep(20);
    const cpu1 = cpuTicks(srv.proc.pid);
    const bytes1 = sockets.reduce((n, s) => n + s._socket.bytesRead, 0);
    const payloadBytes = texts.reduce((n, t) => n + t.length, 0) / texts.length;
    const result = {
      label: a.label,
      payload: a.payload,
      mode: a.mode,
      subscribers: a.subscribers,
      messages: a.messages,
      rate: a.rate,
      deflate_negotiated: negotiated,
      deliveries,
      lost: want - deliveries,
      mismatches,
      payload_bytes_avg: Math.round(payloadBytes),
      wire_bytes_per_delivery: Math.round(((bytes1 - bytes0) / Math.max(deliveries, 1)) * 10) / 10,
      server_cpu_us_per_delivery: Math.round((((cpu1 - cpu0) * 10000) / Math.max(deliveries, 1)) * 100) / 100,
      server_cpu_s: (cpu1 - cpu0) / 100,
    };
    const line = JSON.stringify(result);
    console.log(line);
    if (a.out) fs.appendFileSync(a.out, `${line}\n`);
    if (result.lost || result.mismatches || (deflate && negotiated !== a.subscribers)) process.exitCode = 1;
  } finally {
    for (const c of clients) c.disconnect();
    await srv.stop('SIGTERM', 3000);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
