'use strict';
// examples/chat in headless Chromium, as its README runs it: chorus with the example config
// (hook endpoints pointed at the backend's port), the backend examples/chat/chat.py (the page,
// login, the connect/subscribe/publish/rpc hooks, SQLite in a temp file) from the test venv,
// and three browser contexts (own cookie jars) as alice, bob and carol:
//   * alice and bob see each other online; alice's message reaches bob with the id and time
//     the publish hook added, and is the row in SQLite; bob typing shows on alice's page;
//   * an empty and a too-long message are refused by the hook (codes 1001, 1002): on nobody's
//     page, not in SQLite;
//   * after more messages than the room's history_size (50), carol joins late: she gets the
//     last 50 from chorus's history, and "load older" brings the rest from SQLite via rpc.
// Screenshot: tests/artifacts/chat.png.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { launchChromium } = require('./lib/chromium');
const { startServer, REPO_ROOT } = require('../js/lib/server');

const EXAMPLE = path.join(REPO_ROOT, 'examples', 'chat');
const ARTIFACTS = process.env.CHORUS_TEST_ARTIFACTS || path.join(REPO_ROOT, 'tests', 'artifacts');
const PYTHON = process.env.CHORUS_PYTHON || path.join(process.env.VENV || path.join(REPO_ROOT, '.venv'), 'bin', 'python');
const CONFIG_TEXT = fs.readFileSync(path.join(EXAMPLE, 'config.json'), 'utf8');
const HISTORY = JSON.parse(CONFIG_TEXT).channel.namespaces.find((n) => n.name === 'room').history_size;
const TOTAL = HISTORY + 6; // messages in #general by the late join: 6 fall out of chorus's history

/** chorus must know the backend's port before the backend can know chorus's: pick it here. */
async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Starts chat.py; resolves with its URL once it prints it. */
function startBackend(port, env) {
  return new Promise((resolve, reject) => {
    const proc = spawn(PYTHON, [path.join(EXAMPLE, 'chat.py'), '--port', String(port)], {
      env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const t = setTimeout(() => reject(new Error(`chat.py did not start: ${out}`)), 15000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /chat on (http:\/\/\S+?)\/\s/.exec(out);
      if (m) { clearTimeout(t); resolve({ proc, url: m[1], out: () => out }); }
    });
    proc.stderr.on('data', (d) => { out += d; });
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`chat.py exited ${code}: ${out}`)); });
  });
}

/** Rows of the messages table, straight from the SQLite file. */
function dbRows(db) {
  const script = 'import json,sqlite3,sys; c=sqlite3.connect(sys.argv[1]);'
    + 'print(json.dumps(c.execute("SELECT id,room,user,text,time FROM messages ORDER BY id").fetchall()))';
  return JSON.parse(execFileSync(PYTHON, ['-c', script, db], { timeout: 10000 }).toString())
    .map(([id, room, user, text, time]) => ({ id, room, user, text, time }));
}

const messages = (page) => page.$$eval('#messages li', (lis) => lis.map((li) => ({
  id: Number(li.dataset.id), user: li.dataset.user, time: Number(li.dataset.time),
  text: li.querySelector('.text').textContent,
})));
const online = (page) => page.$$eval('#presence li', (lis) => lis.map((li) => li.textContent));

describe('examples/chat in Chromium', () => {
  let srv;
  let backend;
  let browser;
  let work;
  let db;
  const errors = [];
  const pages = {};

  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-chat-'));
    db = path.join(work, 'chat.db');
    const port = await freePort();
    const config = JSON.parse(CONFIG_TEXT.replaceAll('http://127.0.0.1:8080/', `http://127.0.0.1:${port}/`));
    srv = await startServer({
      ...config,
      http_server: { address: '127.0.0.1', port: 0 },
      client: { ...config.client, allowed_origins: [`http://127.0.0.1:${port}`] },
    });
    backend = await startBackend(port, {
      CHORUS_WS: srv.wsUrl, CHORUS_API: srv.apiUrl, CHORUS_API_KEY: config.http_api.key, CHAT_DB: db,
    });
    browser = await launchChromium();
  });

  after(async () => {
    if (browser) await browser.close();
    if (backend) backend.proc.kill('SIGKILL');
    if (srv) await srv.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** A user's own browser context (cookie jar): log in, wait until online in #general. */
  async function open(name) {
    const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => errors.push(`${name}: ${e}`));
    await page.goto(`${backend.url}/`);
    await page.fill('#name', name);
    await page.click('#login button');
    await page.waitForFunction((n) => document.getElementById('state').textContent === `online as ${n}`, name, { timeout: 10000 });
    assert.equal(await page.isHidden('#login'), true, 'the login form is gone');
    pages[name] = page;
    return page;
  }

  async function send(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
  }

  const waitText = (page, text, timeout = 10000) => page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === t), text, { timeout },
  );

  it('two users chat: presence, backend-added fields, SQLite, typing', async () => {
    const alice = await open('alice');
    const bob = await open('bob');
    for (const p of [alice, bob]) {
      await p.waitForFunction(() => document.querySelectorAll('#presence li').length === 2, null, { timeout: 10000 });
      assert.deepEqual(await online(p), ['alice', 'bob']);
    }
    const t0 = Date.now();
    await send(alice, 'hello bob');
    await waitText(bob, 'hello bob');
    const [seen] = await messages(bob);
    const [row] = dbRows(db);
    assert.deepEqual(row, { id: seen.id, room: 'general', user: 'alice', text: 'hello bob', time: seen.time });
    assert.ok(Number.isInteger(seen.id) && seen.id > 0);
    assert.ok(seen.time >= t0 - 1000 && seen.time <= Date.now() + 1000, `server time ${seen.time}`);

    await bob.fill('#text', 'typ');
    await alice.waitForFunction(() => document.getElementById('typing').textContent === 'bob is typing…', null, { timeout: 5000 });
    assert.ok(!(await bob.textContent('#typing')).includes('bob'), 'own typing is not shown');
    await bob.fill('#text', '');
  });

  it('the publish hook refuses empty and too long messages', async () => {
    const { alice, bob } = pages;
    await send(alice, '   ');
    await alice.waitForFunction(() => document.getElementById('error').textContent.includes('(1001)'), null, { timeout: 5000 });
    await send(alice, 'x'.repeat(501));
    await alice.waitForFunction(() => document.getElementById('error').textContent.includes('(1002)'), null, { timeout: 5000 });
    await send(alice, 'after the refused ones');
    // Each page shows it when its own subscription delivers it (the sender's too).
    for (const p of [alice, bob]) await waitText(p, 'after the refused ones');
    for (const p of [alice, bob]) {
      assert.deepEqual((await messages(p)).map((m) => m.text), ['hello bob', 'after the refused ones']);
    }
    assert.deepEqual(dbRows(db).map((r) => r.text), ['hello bob', 'after the refused ones']);
  });

  it('a late joiner gets chorus history, then older messages from SQLite', async () => {
    const { alice, bob } = pages;
    const last = TOTAL - 2; // two are in already
    for (let i = 1; i <= last; i++) await send(alice, `m${i}`);
    await waitText(bob, `m${last}`, 20000);
    const rows = dbRows(db);
    assert.equal(rows.length, TOTAL);
    assert.deepEqual((await messages(bob)).map((m) => m.id), rows.map((r) => r.id));

    const carol = await open('carol');
    await carol.waitForFunction((n) => document.querySelectorAll('#messages li').length === n, HISTORY, { timeout: 10000 });
    assert.deepEqual((await messages(carol)).map((m) => m.id), rows.slice(-HISTORY).map((r) => r.id));
    await alice.waitForFunction(() => document.querySelectorAll('#presence li').length === 3, null, { timeout: 10000 });
    assert.deepEqual(await online(alice), ['alice', 'bob', 'carol']);

    await carol.click('#older');
    await carol.waitForFunction((n) => document.querySelectorAll('#messages li').length === n, rows.length, { timeout: 10000 });
    assert.deepEqual(await messages(carol), rows.map(({ id, user, text, time }) => ({ id, user, text, time })));
    assert.equal(await carol.textContent('#older'), 'start of the room');
    assert.equal(await carol.isDisabled('#older'), true);

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await carol.screenshot({ path: path.join(ARTIFACTS, 'chat.png') });
  });

  it('rooms are separate', async () => {
    const { alice, bob } = pages;
    await alice.click('#rooms li[data-room="random"] button');
    await alice.waitForFunction(() => document.getElementById('presence').textContent === 'alice', null, { timeout: 10000 });
    assert.deepEqual(await messages(alice), []);
    await send(alice, 'in random');
    await waitText(alice, 'in random');
    await send(bob, 'in general');
    await waitText(bob, 'in general');
    assert.deepEqual((await messages(alice)).map((m) => m.text), ['in random']);
    assert.ok(!(await messages(bob)).some((m) => m.text === 'in random'));
    await bob.waitForFunction(() => document.querySelectorAll('#presence li').length === 2, null, { timeout: 10000 });
    assert.deepEqual(await online(bob), ['bob', 'carol']);
    assert.deepEqual(dbRows(db).filter((r) => r.room === 'random').map((r) => r.text), ['in random']);
    assert.deepEqual(errors, []);
  });
});
