'use strict';
// examples/ticker's page in headless Chromium, as its README runs it: chorus with the example
// config, the example's web server (serve.js: the page, centrifuge-js from the example's own
// node_modules, a token endpoint) and its publisher. The page on 3 symbols shows prices that
// keep updating. Screenshot: tests/artifacts/ticker.png.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { launchChromium } = require('./lib/chromium');
const { startServer, REPO_ROOT } = require('../js/lib/server');

const EXAMPLE = path.join(REPO_ROOT, 'examples', 'ticker');
const ARTIFACTS = process.env.CHORUS_TEST_ARTIFACTS || path.join(REPO_ROOT, 'tests', 'artifacts');
const config = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'config.json'), 'utf8'));

/** Starts a node script of the example; resolves once `ready` matches its output. */
function startScript(file, env, ready) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(EXAMPLE, file)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const t = setTimeout(() => reject(new Error(`${file} did not start: ${out}`)), 10000);
    const onData = (d) => {
      out += d;
      const m = ready && ready.exec(out);
      if (m) { clearTimeout(t); resolve({ proc: p, match: m, out: () => out }); }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', (d) => { out += d; });
    p.once('exit', (code) => { clearTimeout(t); if (!ready || !ready.exec(out)) reject(new Error(`${file} exited ${code}: ${out}`)); });
    if (!ready) resolve({ proc: p, out: () => out });
  });
}

describe('examples/ticker page in Chromium', () => {
  let srv;
  let web;
  let publisher;
  let browser;

  before(async () => {
    srv = await startServer({
      ...config,
      http_server: { address: '127.0.0.1', port: 0 },
      client: { ...config.client, allowed_origins: ['http://127.0.0.1:*'] },
    });
    web = await startScript('serve.js', { PORT: '0', CHORUS_WS: srv.wsUrl }, /on (http:\/\/127\.0\.0\.1:\d+)\//);
    publisher = await startScript('publisher.js', { CHORUS_API: srv.apiUrl, CHORUS_API_KEY: config.http_api.key, SECONDS: '30' }, null);
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close();
    for (const p of [publisher, web]) if (p) p.proc.kill('SIGKILL');
    if (srv) await srv.stop();
  });

  it('shows live prices for the symbols it subscribed to', async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${web.match[1]}/?symbols=S000,S042,S099`);
    await page.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: 10000 });
    await page.waitForFunction(
      () => [...document.querySelectorAll('#rows tr')].every((tr) => Number(tr.querySelector('.ticks').textContent) >= 20),
      null, { timeout: 15000 },
    );
    const rows = await page.$$eval('#rows tr', (trs) => trs.map((tr) => ({
      symbol: tr.dataset.symbol, price: Number(tr.querySelector('.price').textContent),
    })));
    assert.deepEqual(rows.map((r) => r.symbol), ['S000', 'S042', 'S099']);
    for (const r of rows) assert.ok(r.price > 0, `${r.symbol} has a price`);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'ticker.png') });
    assert.deepEqual(errors, []);
  });
});
