'use strict';
// centrifuge-js (the npm package's browser build, unchanged) in real headless Chromium with
// WebSocket forced to fail (its endpoint is a closed port): the SDK falls back to HTTP
// streaming, or to SSE when that is the only fallback listed, and does everything over it —
// connect, subscribe, publish, presence, history, recovery after a reconnect. The server runs
// with NO config (the embedded default has both fallbacks on); the page is the demo page's
// origin, so `/emulation` is same-origin.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { launchChromium } = require('./lib/chromium');
const { startServer, REPO_ROOT } = require('../js/lib/server');
const { closedPort } = require('../js/lib/fallback');

const SDK = path.join(REPO_ROOT, 'tests', 'js', 'node_modules', 'centrifuge', 'dist', 'centrifuge.js');


/** Runs in the page: the whole scenario over the fallback, returns what it saw. */
async function scenario({ transports, ch }) {
  const opts = { minReconnectDelay: 100, maxReconnectDelay: 300, timeout: 5000 };
  const waitFor = async (cond, what) => {
    const until = Date.now() + 8000;
    while (!cond()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const connect = async () => {
    const c = new Centrifuge(transports, opts);
    const connected = new Promise((r) => c.once('connected', r));
    c.connect();
    return { c, ctx: await connected };
  };
  const { c: a, ctx } = await connect();
  const { c: b } = await connect();
  const subA = a.newSubscription(ch);
  const pubs = [];
  const subscribedEvents = [];
  subA.on('publication', (p) => pubs.push({ n: p.data.n, offset: p.offset }));
  subA.on('subscribed', (s) => subscribedEvents.push(s));
  subA.subscribe();
  await waitFor(() => subscribedEvents.length === 1, 'subscribed');
  const subB = b.newSubscription(ch);
  const subscribedB = new Promise((r) => subB.once('subscribed', r));
  subB.subscribe();
  await subscribedB;

  await subB.publish({ n: 1 });
  await waitFor(() => pubs.length === 1, 'publication');
  const presence = await a.presence(ch);
  const history = await a.history(ch, { limit: 10 });

  // Recovery: A goes away, B publishes twice, A comes back.
  a.disconnect();
  await subB.publish({ n: 2 });
  await subB.publish({ n: 3 });
  a.connect();
  await waitFor(() => subscribedEvents.length === 2, 'resubscribed');
  await waitFor(() => pubs.length === 3, 'recovered publications');
  const again = subscribedEvents[1];
  const result = {
    transport: ctx.transport,
    transportAfter: a._transport && a._transport.name(),
    pubs,
    presenceClients: Object.keys(presence.clients).length,
    historyOffsets: history.publications.map((p) => p.offset),
    recovered: again.recovered,
    wasRecovering: again.wasRecovering,
  };
  a.disconnect();
  b.disconnect();
  return result;
}

describe('centrifuge-js fallbacks in Chromium (WebSocket blocked)', () => {
  let srv;
  let browser;
  let deadPort;

  before(async () => {
    srv = await startServer({}, { noConfig: true, env: { CHORUS_HTTP_SERVER_PORT: '0' } });
    browser = await launchChromium();
    deadPort = await closedPort();
  });

  after(async () => {
    if (browser) await browser.close();
    if (srv) await srv.stop();
  });

  const run = async (fallbacks, ch) => {
    const page = await browser.newPage();
    page.setDefaultTimeout(15000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const res = await page.goto(`${srv.url}/`, { waitUntil: 'load' });
    assert.equal(res.status(), 200);
    await page.addScriptTag({ path: SDK });
    const transports = [
      { transport: 'websocket', endpoint: `ws://127.0.0.1:${deadPort}/connection/websocket` },
      ...fallbacks.map((t) => ({ transport: t, endpoint: `${srv.url}/connection/${t}` })),
    ];
    const out = await page.evaluate(scenario, { transports, ch });
    await page.close();
    assert.deepEqual(errors, []);
    return out;
  };

  for (const [fallbacks, want] of [
    [['http_stream', 'sse'], 'http_stream'],
    [['sse'], 'sse'],
  ]) {
    it(`falls back to ${want} and does everything over it`, async () => {
      const out = await run(fallbacks, `chat:browser_${want}_${process.pid}`);
      assert.equal(out.transport, want);
      assert.equal(out.transportAfter, want);
      assert.deepEqual(out.pubs, [
        { n: 1, offset: 1 },
        { n: 2, offset: 2 },
        { n: 3, offset: 3 },
      ]);
      assert.equal(out.presenceClients, 2);
      assert.deepEqual(out.historyOffsets, [1]);
      assert.equal(out.wasRecovering, true);
      assert.equal(out.recovered, true);
    });
  }
});
