'use strict';
// The admin console in real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core), against the real binary with `admin.enabled`: a wrong password is refused
// on the page and counted exactly once on /metrics; after login the nodes view shows the one
// node; a centrifuge-js subscriber (npm `centrifuge` over `ws`, JWT-authenticated) receives
// exactly the data published from the Publish form; the channel lookup lists that subscriber
// in presence and the publication in history; Disconnect closes the subscriber's connection
// (3503). Screenshot: ${CHORUS_TEST_ARTIFACTS:-tests/artifacts}/admin.png.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { launchChromium } = require('./lib/chromium');
const { startServer, REPO_ROOT } = require('../js/lib/server');
const { connectClient, subscribe, disconnectAll } = require('../js/lib/clients');
const { connToken } = require('../js/lib/jwt');
const { once } = require('../js/lib/util');

const ARTIFACTS = process.env.CHORUS_TEST_ARTIFACTS || path.join(REPO_ROOT, 'tests', 'artifacts');

const PASSWORD = 'console-test-password-0123';
const SECRET = 'console-test-session-secret-0123456789abcdef';
const CHANNEL = 'ops:room';
const USER = 'ops-user-1';

/** The value of one series on the server's /metrics (0 when it is not rendered yet). */
async function metric(srv, series) {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return 0;
}

describe('admin console in Chromium', () => {
  let srv;
  let browser;

  before(async () => {
    srv = await startServer({
      admin: { enabled: true, password: PASSWORD, secret: SECRET },
      channel: {
        namespaces: [{
          name: 'ops',
          presence: true,
          history_size: 10,
          history_ttl: '300s',
          allow_subscribe_for_client: true,
        }],
      },
    });
    browser = await launchChromium();
  });

  after(async () => {
    disconnectAll();
    if (browser) await browser.close();
    if (srv) await srv.stop();
  });

  it('logs in, publishes to a subscriber, looks it up and disconnects it', async () => {
    const pageErrors = [];
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 820 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(10000);
    page.on('pageerror', (e) => pageErrors.push(e.message));

    // A real SDK client of user USER, subscribed to CHANNEL.
    const client = await connectClient(srv, 'json', { token: connToken(USER) });
    const { sub } = await subscribe(client, CHANNEL);

    // `/admin` redirects to the page.
    const res = await page.goto(`${srv.url}/admin`, { waitUntil: 'load' });
    assert.equal(res.status(), 200);
    assert.ok(page.url().endsWith('/admin/'), page.url());

    // A wrong password: refused on the page, counted exactly once.
    const wrong = 'chorus_admin_logins_total{result="wrong_password"}';
    const before = await metric(srv, wrong);
    await page.fill('#password', 'not-the-password');
    await page.click('#login');
    await page.waitForSelector('#login-error[data-state="error"]');
    assert.equal((await page.textContent('#login-error')).trim(), 'Wrong password.');
    assert.equal(await page.isVisible('#console'), false);
    assert.equal(await metric(srv, wrong), before + 1);

    // The right one.
    await page.fill('#password', PASSWORD);
    await page.click('#login');
    await page.waitForSelector('#console', { state: 'visible' });
    assert.equal(await page.isVisible('#login-view'), false);

    // Nodes: one node, with the subscriber counted.
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#nodes tr.node');
      return rows.length === 1 && rows[0].querySelector('.clients').textContent === '1';
    });
    const node = await page.$eval('#nodes tr.node', (row) => ({
      users: row.querySelector('.users').textContent,
      channels: row.querySelector('.channels').textContent,
      uptime: row.querySelector('.uptime').textContent,
    }));
    assert.equal(node.users, '1');
    assert.equal(node.channels, '1');
    assert.match(node.uptime, /^\d+(s|m \d+s)$/);
    assert.equal((await page.textContent('#nodes-count')).trim(), '(1)');

    // Publish from the console: the subscriber gets exactly that data.
    const data = { text: `from the console ${Date.now()}`, n: 42, nested: { ok: true, list: [1, 'two'] } };
    const received = once(sub, 'publication', 8000);
    await page.click('#tab-publish');
    await page.fill('#pub-channel', CHANNEL);
    await page.fill('#pub-data', JSON.stringify(data, null, 2));
    await page.click('#publish');
    await page.waitForSelector('#publish-result[data-state="ok"]');
    const pub = await received;
    assert.deepEqual(pub.data, data);
    assert.match(await page.textContent('#publish-result'), /^Published to ops:room \(offset 1, epoch /);

    // Bad JSON is refused on the page, nothing is sent.
    await page.fill('#pub-data', '{"oops": ');
    await page.click('#publish');
    await page.waitForSelector('#publish-result[data-state="error"]');
    assert.match(await page.textContent('#publish-result'), /^Data is not valid JSON/);

    // Channels: listed; the lookup shows the subscriber in presence and the publication.
    await page.click('#tab-channels');
    await page.waitForSelector(`#channels tr.channel >> text=${CHANNEL}`);
    await page.click(`#channels tr.channel button:has-text("${CHANNEL}")`);
    await page.waitForSelector(`#presence tr.client[data-user="${USER}"]`);
    const clients = await page.$$eval('#presence tr.client', (rows) => rows.map((r) => r.dataset.user));
    assert.deepEqual(clients, [USER]);
    assert.equal((await page.textContent('#stats')).trim(), `${CHANNEL}: 1 client(s), 1 user(s)`);
    const history = await page.$$eval('#history li.publication .data', (els) => els.map((e) => e.textContent));
    assert.deepEqual(history.map((t) => JSON.parse(t)), [data]);

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'admin.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 1000);

    // Disconnect the subscriber's user: its client sees the server's 3503.
    const disconnected = once(client, 'disconnected', 8000);
    await page.click('#tab-disconnect');
    await page.fill('#dc-user', USER);
    await page.click('#disconnect');
    await page.waitForSelector('#disconnect-result[data-state="ok"]');
    const dc = await disconnected;
    assert.equal(dc.code, 3503);
    assert.equal(client.state, 'disconnected');

    // Nobody left: the node shows no clients.
    await page.click('#tab-nodes');
    await page.waitForFunction(
      () => document.querySelector('#nodes tr.node .clients')?.textContent === '0',
      null,
      { timeout: 10000 },
    );
    assert.deepEqual(pageErrors, []);
    await ctx.close();
  });
});
