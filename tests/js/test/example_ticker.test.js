'use strict';
// examples/ticker, run as its README says: the example's config and its publisher
// (100 symbols × 50 updates/s through the HTTP API's batch method) against the real binary,
// with centrifuge-js clients:
//   * a client on 3 symbols gets every tick of each, in order, without a gap or a duplicate,
//     while a slow client next to it is cut off;
//   * a client that was away while ticks flowed gets, on resubscribe, exactly the latest tick
//     of its symbol (force_recovery_mode "cache", history_size 1) and `recovered: true`;
//   * a client subscribed to all 100 symbols that stops reading is closed with 3008 "slow"
//     once its queue (client.queue_max_size 64 KiB) is full.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');

const { startServer, REPO_ROOT } = require('../lib/server');
const { connToken } = require('../lib/jwt');
const { connectClient, disconnectAll } = require('../lib/clients');
const { waitFor, once } = require('../lib/util');

const EXAMPLE = path.join(REPO_ROOT, 'examples', 'ticker');
const config = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'config.json'), 'utf8'));
const SECRET = config.client.token.hmac_secret_key;
const KEY = config.http_api.key;
const { symbols } = require(path.join(EXAMPLE, 'publisher.js'));

/** Runs the example's publisher for `seconds`; resolves with its output. */
function runPublisher(srv, seconds) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(EXAMPLE, 'publisher.js')], {
      env: { ...process.env, CHORUS_API: srv.apiUrl, CHORUS_API_KEY: KEY, SECONDS: String(seconds) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`publisher exited ${code}: ${out}`))));
  });
}

/** Subscribes `client` to `channel`, collecting every publication's tick number `n`. */
async function collect(client, channel) {
  const sub = client.newSubscription(channel);
  const ns = [];
  const events = [];
  sub.on('publication', (ctx) => ns.push(ctx.data.n));
  sub.on('subscribed', (ctx) => events.push(ctx));
  sub.on('error', () => {});
  const subscribed = once(sub, 'subscribed', 8000);
  sub.subscribe();
  await subscribed;
  return { sub, ns, events };
}

/** `chorus_client_slow_total` of the server. */
async function slowCount(srv) {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const m = /^chorus_client_slow_total (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('examples/ticker', () => {
  let srv;
  before(async () => {
    srv = await startServer({ ...config, http_server: { address: '127.0.0.1', port: 0 } });
  });
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
  });

  it('every tick in order for a fast client, the latest tick after a lag, 3008 for a slow one', async () => {
    const syms = symbols();
    assert.equal(syms.length, 100);
    const fast = await connectClient(srv, 'json', { token: connToken('fast', {}, SECRET) });
    const watched = await Promise.all(syms.slice(0, 3).map((s) => collect(fast, `ticker:${s}`)));

    const laggard = await connectClient(srv, 'json', { token: connToken('laggard', {}, SECRET) });
    const lagging = await collect(laggard, 'ticker:S050');

    // The slow client: raw WebSocket, subscribes to every symbol, then stops reading.
    const slow = new WebSocket(srv.wsUrl);
    await once(slow, 'open', 5000);
    const slowClosed = new Promise((resolve) => slow.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    slow.send([{ id: 1, connect: { token: connToken('slow', {}, SECRET) } },
      ...syms.map((s, i) => ({ id: i + 2, subscribe: { channel: `ticker:${s}` } }))]
      .map((c) => JSON.stringify(c)).join('\n'));
    let slowReplies = 0;
    slow.on('message', (m) => { slowReplies += String(m).split('\n').filter((l) => l.includes('"subscribe"')).length; });
    await waitFor(() => slowReplies === 100, { timeout: 8000, message: 'the slow client is subscribed to 100 symbols' });
    slow._socket.pause();

    const slowBefore = await slowCount(srv);
    const publishing = runPublisher(srv, 8);
    // The laggard leaves after a second of ticks and comes back once the publisher is done.
    await waitFor(() => lagging.ns.length >= 20, { timeout: 8000, message: 'the laggard sees ticks' });
    laggard.disconnect();
    const seenBeforeLeaving = lagging.ns.length;
    const out = await publishing;
    const done = /done: sent (\d+), failed (\d+)/.exec(out);
    assert.ok(done, out);
    assert.equal(Number(done[2]), 0, `no publish failed: ${out}`);
    const perSymbol = Number(done[1]) / 100;
    assert.ok(Number.isInteger(perSymbol) && perSymbol >= 100, `ticks per symbol: ${perSymbol}`);

    // The fast client: every tick of its 3 symbols, 1..perSymbol, in order.
    const expected = Array.from({ length: perSymbol }, (_, i) => i + 1);
    await waitFor(() => watched.every((w) => w.ns.length >= perSymbol), { timeout: 10000, message: 'the fast client has every tick' });
    for (const w of watched) assert.deepEqual(w.ns, expected);

    // The slow client was cut off with 3008 while the fast one got everything. Its socket
    // buffers were full, so the close frame may never reach it: the client sees 3008 or an
    // abnormal close (1006); the server counts exactly one slow-client disconnect.
    assert.equal(await slowCount(srv), slowBefore + 1, 'one client cut off as slow');
    slow._socket.resume();
    const closed = await Promise.race([slowClosed, new Promise((r) => setTimeout(() => r(null), 5000))]);
    assert.ok(closed, 'the slow client is closed');
    assert.ok([3008, 1006].includes(closed.code), `close code ${closed.code}`);

    // Back after the publisher stopped: only recovery can bring a tick now.
    const before = lagging.ns.length;
    assert.equal(before, seenBeforeLeaving);
    laggard.connect();
    await waitFor(() => lagging.events.length === 2, { timeout: 8000, message: 'the laggard resubscribed' });
    await waitFor(() => lagging.ns.length === before + 1, { timeout: 3000, message: 'the recovered tick' });
    const again = lagging.events[1];
    assert.equal(again.wasRecovering, true);
    assert.equal(again.recovered, true);
    assert.deepEqual(lagging.ns.slice(before), [perSymbol], 'exactly the latest tick, not the backlog');
  });
});
