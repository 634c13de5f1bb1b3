'use strict';
// The demo page in real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// two people join the same room, one sends a message, the other sees it, and both appear
// in the presence list. The server runs with NO config (the embedded default), on a free
// port via CHORUS_HTTP_SERVER_PORT=0. Screenshot: tests/artifacts/demo.png.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { launchChromium } = require('./lib/chromium');
const { startServer, REPO_ROOT } = require('../js/lib/server');

const ARTIFACTS = process.env.CHORUS_TEST_ARTIFACTS || path.join(REPO_ROOT, 'tests', 'artifacts');

describe('demo page in Chromium', () => {
  let srv;
  let browser;

  before(async () => {
    srv = await startServer({}, { noConfig: true, env: { CHORUS_HTTP_SERVER_PORT: '0' } });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close();
    if (srv) await srv.stop();
  });

  it('two people chat and see each other in presence', async () => {
    const consoleErrors = [];
    const open = async (name) => {
      const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
      const page = await ctx.newPage();
      page.setDefaultTimeout(10000);
      page.on('pageerror', (e) => consoleErrors.push(`${name}: ${e.message}`));
      const res = await page.goto(`${srv.url}/`, { waitUntil: 'load' });
      assert.equal(res.status(), 200);
      await page.fill('#name', name);
      await page.click('#join');
      await page.waitForSelector('#status[data-state="connected"]');
      return page;
    };

    const ada = await open('Ada');
    const bob = await open('Bob');

    // Both users listed on both pages.
    for (const page of [ada, bob]) {
      await page.waitForFunction(() => {
        const users = [...document.querySelectorAll('#presence .presence-user')].map((e) => e.textContent.trim());
        return users.includes('Ada') && users.includes('Bob');
      });
      const users = await page.$$eval('#presence .presence-user', (els) => els.map((e) => e.textContent.trim()).sort());
      assert.deepEqual(users, ['Ada', 'Bob']);
    }

    const text = `hello from Ada ${Date.now()}`;
    await ada.waitForSelector('#send:not([disabled])');
    await ada.fill('#message', text);
    await ada.click('#send');

    await bob.waitForFunction(
      (t) => [...document.querySelectorAll('#messages .message')].some((e) => e.textContent.includes(t)),
      text,
    );
    const got = await bob.$$eval('#messages .message', (els) =>
      els.map((e) => ({ author: e.getAttribute('data-author'), text: e.querySelector('.text')?.textContent })),
    );
    const mine = got.filter((m) => m.text === text);
    assert.equal(mine.length, 1, `exactly one copy of the message on Bob's page: ${JSON.stringify(got)}`);
    assert.equal(mine[0].author, 'Ada');
    // The sender sees it too, once.
    await ada.waitForFunction(
      (t) => [...document.querySelectorAll('#messages .message .text')].filter((e) => e.textContent === t).length === 1,
      text,
    );

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await bob.screenshot({ path: path.join(ARTIFACTS, 'demo.png'), fullPage: true });
    assert.ok(fs.statSync(path.join(ARTIFACTS, 'demo.png')).size > 1000);
    assert.deepEqual(consoleErrors, []);
  });
});
