'use strict';
// examples/order-status, run as its README says: chorus with the example's config (every
// connection subscribed server-side to its user's personal channel), the shop backend
// (examples/order-status/shop.py, gRPC stubs generated from proto/api.proto with the test
// venv's grpcio-tools) publishing an order's steps, and the user's two tabs as centrifuge-js
// clients:
//   * both tabs get `paid`;
//   * tab 2 is offline during `shipped`: tab 1 gets it, tab 2 recovers it on reconnect;
//   * both get `delivered`; each tab saw every step once, in order.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { startServer, REPO_ROOT } = require('../lib/server');
const { connToken } = require('../lib/jwt');
const { connectClient, disconnectAll } = require('../lib/clients');
const { waitFor, once } = require('../lib/util');

const EXAMPLE = path.join(REPO_ROOT, 'examples', 'order-status');
const config = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'config.json'), 'utf8'));
const PYTHON = process.env.CHORUS_PYTHON || path.join(REPO_ROOT, '.venv', 'bin', 'python');

describe('examples/order-status', () => {
  let srv;
  let work;
  before(async () => {
    srv = await startServer({
      ...config,
      http_server: { address: '127.0.0.1', port: 0 },
      grpc_api: { ...config.grpc_api, port: 0 },
    });
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-shop-'));
    fs.copyFileSync(path.join(EXAMPLE, 'shop.py'), path.join(work, 'shop.py'));
    const proto = path.join(REPO_ROOT, 'proto');
    execFileSync(PYTHON, ['-m', 'grpc_tools.protoc', `-I${proto}`, '--python_out=.', '--grpc_python_out=.',
      path.join(proto, 'api.proto')], { cwd: work, timeout: 60000 });
  });
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const shop = (...steps) => execFileSync(PYTHON, ['shop.py', 'alice', '1001', ...steps], {
    cwd: work,
    env: { ...process.env, CHORUS_GRPC: srv.grpcTarget, CHORUS_GRPC_API_KEY: config.grpc_api.key, STEP_INTERVAL: '0' },
    timeout: 30000,
  }).toString();

  /** A tab of alice: every order status it is told, and its server-side subscribe events. */
  async function tab() {
    const token = connToken('alice', {}, config.client.token.hmac_secret_key);
    const c = await connectClient(srv, 'json', { token });
    const t = { client: c, statuses: [], subscribed: [] };
    c.on('publication', (ctx) => {
      if (ctx.channel === 'personal:#alice') t.statuses.push(ctx.data.status);
    });
    c.on('subscribed', (ctx) => { if (ctx.channel === 'personal:#alice') t.subscribed.push(ctx); });
    return t;
  }

  it('both tabs get every step; the tab offline during shipped recovers it', async () => {
    const one = await tab();
    const two = await tab();
    assert.match(shop('paid'), /order 1001 of alice: paid \(offset 1\)/);
    await waitFor(() => one.statuses.length === 1 && two.statuses.length === 1, { timeout: 5000, message: 'paid in both tabs' });

    const gone = once(two.client, 'disconnected', 5000);
    two.client.disconnect();
    await gone;
    shop('shipped');
    await waitFor(() => one.statuses.length === 2, { timeout: 5000, message: 'shipped in tab 1' });
    assert.deepEqual(two.statuses, ['paid']);

    two.client.connect();
    await waitFor(() => two.statuses.length === 2, { timeout: 8000, message: 'tab 2 recovers shipped' });
    const back = two.subscribed[two.subscribed.length - 1];
    assert.equal(back.wasRecovering, true);
    assert.equal(back.recovered, true);

    shop('delivered');
    await waitFor(() => one.statuses.length === 3 && two.statuses.length === 3, { timeout: 5000, message: 'delivered in both' });
    assert.deepEqual(one.statuses, ['paid', 'shipped', 'delivered']);
    assert.deepEqual(two.statuses, ['paid', 'shipped', 'delivered']);
  });
});
