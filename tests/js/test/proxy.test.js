'use strict';
// Backend hooks (Centrifugo v6 proxies) end to end: the real chorus binary, a real application
// backend outside Rust (tests/py/proxy_backend.py: aiohttp over HTTP, grpcio over gRPC with
// stubs generated from proto/proxy.proto) and the real centrifuge-js SDK.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const WebSocket = require('ws');

const { startServer } = require('../lib/server');
const { startBackend } = require('../lib/backend');
const { connToken } = require('../lib/jwt');
const { newClient, connectClient, subscribe, disconnectAll, codec } = require('../lib/clients');
const { waitFor, once, collect, sleep } = require('../lib/util');

let seq = 0;
const uniq = (prefix) => `${prefix}${process.pid}x${++seq}`;

/** A `ws` WebSocket class sending `headers` with the upgrade request. */
function withHeaders(headers) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { headers });
    }
  };
}

/** A port nothing listens on (connections are refused). */
async function closedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

const HEADERS = { Cookie: 'sid=abc', Authorization: 'Bearer xyz', 'X-Unlisted': 'secret' };

/** A client connecting without a token through the connect hook as `user`. */
async function hookClient(srv, user, { protocol = 'json', headers = HEADERS, data } = {}) {
  const { enc } = codec(protocol);
  const c = newClient(srv, protocol, {
    websocket: withHeaders(headers),
    data: enc(data || { user }),
  });
  const connected = once(c, 'connected', 8000);
  c.connect();
  const ctx = await connected;
  return { c, ctx };
}

async function rpcError(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('rpc succeeded');
}

async function metrics(srv) {
  return (await fetch(`${srv.url}/metrics`)).text();
}

describe('backend hooks over HTTP', () => {
  let backend;
  let srv;
  before(async () => {
    backend = await startBackend();
    const down = `http://127.0.0.1:${await closedPort()}/`;
    const hook = (event, extra = {}) => ({
      endpoint: `${backend.httpUrl}/${event}`,
      http_headers: ['Cookie', 'Authorization'],
      ...extra,
    });
    srv = await startServer({
      client: {
        proxy: {
          connect: { enabled: true, ...hook('connect') },
          refresh: { enabled: true, ...hook('refresh') },
        },
      },
      channel: {
        proxy: { subscribe: hook('subscribe'), publish: hook('publish') },
        namespaces: [
          {
            name: 'hooked',
            subscribe_proxy_enabled: true,
            presence: true,
            join_leave: true,
            force_push_join_leave: true,
            allow_presence_for_subscriber: true,
          },
          {
            name: 'mod',
            subscribe_proxy_enabled: true,
            publish_proxy_enabled: true,
            history_size: 10,
            history_ttl: '300s',
            allow_history_for_subscriber: true,
          },
          { name: 'down', subscribe_proxy_enabled: true, subscribe_proxy_name: 'down' },
          { name: 'slow', subscribe_proxy_enabled: true, subscribe_proxy_name: 'slow' },
          { name: 'garbage', subscribe_proxy_enabled: true, subscribe_proxy_name: 'garbage' },
        ],
      },
      rpc: {
        proxy: hook('rpc', { include_connection_meta: true }),
        without_namespace: { proxy_enabled: true },
        ping: { enabled: true },
        namespaces: ['down', 'slow', 'garbage', 'status'].map((name) => ({
          name,
          proxy_enabled: true,
          proxy_name: name,
        })).concat([{ name: 'off' }]),
      },
      proxies: [
        { name: 'down', endpoint: down },
        { name: 'slow', endpoint: `${backend.httpUrl}/slow/`, timeout: '300ms' },
        { name: 'garbage', endpoint: `${backend.httpUrl}/garbage/` },
        {
          name: 'status',
          endpoint: `${backend.httpUrl}/status/403/`,
          http: {
            status_to_code_transforms: [
              { status_code: 403, to_error: { code: 4031, message: 'forbidden by status' } },
            ],
          },
        },
      ],
    });
  });
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
    if (backend) await backend.stop();
  });
  afterEach(() => disconnectAll());

  it('connects a client without a token through the connect hook, forwarding only the named headers', async () => {
    await backend.reset();
    const { ctx } = await hookClient(srv, 'alice');
    assert.deepEqual(ctx.data, { welcome: 'alice' });
    const [req] = await backend.seen('connect');
    assert.equal(req.body.client, ctx.client);
    assert.equal(req.body.transport, 'websocket');
    assert.equal(req.body.protocol, 'json');
    assert.equal(req.body.encoding, 'json');
    assert.deepEqual(req.body.data, { user: 'alice' });
    assert.equal(req.body.name, 'js');
    assert.equal(req.body.user, undefined, 'connect requests carry no user');
    assert.equal(req.headers.cookie, 'sid=abc');
    assert.equal(req.headers.authorization, 'Bearer xyz');
    assert.equal(req.headers['x-unlisted'], undefined);
    assert.equal(req.headers['content-type'], 'application/json');
  });

  it('answers the hook\'s error and disconnect, and a JWT never reaches the hook', async () => {
    const rejected = newClient(srv, 'json', { data: { reject: true } });
    const err = once(rejected, 'disconnected', 8000);
    rejected.connect();
    const d = await err;
    assert.equal(d.code, 4001);
    assert.equal(d.reason, 'go away');

    const banned = newClient(srv, 'json', { data: { ban: true } });
    const gone = once(banned, 'disconnected', 8000);
    banned.connect();
    assert.deepEqual(await gone, { code: 4501, reason: 'banned' });

    await backend.reset();
    const jwt = await connectClient(srv, 'json', { token: connToken('tok') });
    assert.equal(jwt.state, 'connected');
    assert.deepEqual(await backend.seen('connect'), []);
  });

  it('subscribes through the subscribe hook: info in presence and join, rejection as an error', async () => {
    const { c: alice, ctx: actx } = await hookClient(srv, 'alice');
    const ch = uniq('hooked:room');
    const { sub, ctx } = await subscribe(alice, ch, { data: { why: 'chat' } });
    assert.deepEqual(ctx.data, { motd: `hi ${ch}` });
    const joins = collect(sub, 'join');
    const { c: bob, ctx: bctx } = await hookClient(srv, 'bob');
    await subscribe(bob, ch);
    const join = await waitFor(() => joins.find((j) => j.info.client === bctx.client), { message: "bob's join" });
    assert.deepEqual(join.info.chanInfo, { role: 'member', user: 'bob' });
    assert.deepEqual(join.info.connInfo, { name: 'bob' });
    assert.equal(join.info.user, 'bob');
    const presence = await alice.presence(ch);
    assert.deepEqual(presence.clients[actx.client].chanInfo, { role: 'member', user: 'alice' });
    const [req] = (await backend.seen('subscribe')).filter((s) => s.body.channel === ch && s.body.user === 'alice');
    assert.deepEqual(req.body.data, { why: 'chat' });
    assert.equal(req.body.client, actx.client);

    const denied = alice.newSubscription(uniq('hooked:private'));
    denied.on('error', () => {});
    const unsub = once(denied, 'unsubscribed', 8000);
    denied.subscribe();
    const u = await unsub;
    assert.equal(u.code, 4030);
    assert.equal(u.reason, 'not a member');
  });

  it('publishes through the publish hook: every subscriber sees the changed data, a rejected one is never delivered', async () => {
    const { c: alice } = await hookClient(srv, 'alice');
    const { c: bob } = await hookClient(srv, 'bob');
    const ch = uniq('mod:room');
    const { sub: sa } = await subscribe(alice, ch);
    const { sub: sb } = await subscribe(bob, ch);
    const ga = collect(sa, 'publication');
    const gb = collect(sb, 'publication');
    await alice.publish(ch, { text: 'hello' });
    const e = await rpcError(alice.publish(ch, { text: 'buy spam' }));
    assert.equal(e.code, 4003);
    assert.equal(e.message, 'moderated');
    await bob.publish(ch, { text: 'quiet one' });
    await bob.publish(ch, { text: 'bye' });
    await waitFor(() => ga.length === 3 && gb.length === 3, { message: 'three publications each' });
    for (const got of [ga, gb]) {
      assert.deepEqual(got.map((p) => p.data), [
        { text: 'HELLO', by: 'alice' },
        { text: 'QUIET ONE', by: 'bob' },
        { text: 'BYE', by: 'bob' },
      ]);
    }
    await sleep(100);
    assert.equal(ga.length, 3, 'the rejected publication never arrives');
    // skip_history: the quiet one is not in history.
    const history = await alice.history(ch, { limit: 10 });
    assert.deepEqual(history.publications.map((p) => p.data.text), ['HELLO', 'BYE']);
  });

  it('answers rpc from the hook, the built-in ping and the documented codes', async () => {
    const { c } = await hookClient(srv, 'carol');
    const r = await c.rpc('echo', { n: 1 });
    assert.deepEqual(r.data, { echo: { n: 1 }, user: 'carol', meta: { plan: 'gold' } });
    assert.equal((await c.rpc('ping', {})).data, undefined);
    assert.equal((await rpcError(c.rpc('fail', {}))).code, 4040);
    assert.equal((await rpcError(c.rpc('nosuchns:x', {}))).code, 104);
    assert.equal((await rpcError(c.rpc('off:x', {}))).code, 108);
    assert.equal((await rpcError(c.rpc('status:x', {}))).code, 4031);
  });

  it('a hook that is down, slow or answers garbage gives error 100 and never holds other clients', async () => {
    const { c: victim } = await hookClient(srv, 'victim');
    const { c: other } = await hookClient(srv, 'other');
    for (const ns of ['down', 'garbage']) {
      const e = await rpcError(victim.rpc(`${ns}:x`, {}));
      assert.equal(e.code, 100, ns);
    }
    const started = Date.now();
    const slow = rpcError(victim.rpc('slow:x', {}));
    // Meanwhile another connection's hook calls go through at once.
    const t0 = Date.now();
    const r = await other.rpc('echo', { during: true });
    const otherTook = Date.now() - t0;
    assert.deepEqual(r.data.echo, { during: true });
    assert.ok(otherTook < 250, `other client waited ${otherTook} ms`);
    const e = await slow;
    const slowTook = Date.now() - started;
    assert.equal(e.code, 100);
    assert.ok(slowTook >= 290 && slowTook < 3000, `slow hook answered after ${slowTook} ms`);

    for (const ns of ['down', 'slow', 'garbage']) {
      const sub = victim.newSubscription(uniq(`${ns}:room`));
      const failed = once(sub, 'error', 8000);
      sub.subscribe();
      const ctx = await failed;
      assert.equal(ctx.type, 'subscribe');
      assert.equal(ctx.error.code, 100, ns);
      sub.unsubscribe();
    }
    // The node is up and serves new clients.
    const { ctx } = await hookClient(srv, 'late');
    assert.deepEqual(ctx.data, { welcome: 'late' });
    assert.equal(srv.proc.exitCode, null);
    const text = await metrics(srv);
    assert.match(text, /chorus_proxy_errors_total\{[^}]*proxy="slow"[^}]*\} [1-9]/);
    assert.match(text, /chorus_proxy_errors_total\{[^}]*kind="unavailable"[^}]*proxy="down"[^}]*\} [1-9]|chorus_proxy_errors_total\{[^}]*proxy="down"[^}]*kind="unavailable"[^}]*\} [1-9]/);
    assert.match(text, /chorus_proxy_duration_seconds_count\{[^}]*proxy="rpc.proxy"[^}]*\} [1-9]/);
    assert.match(text, /chorus_proxy_in_flight\{proxy="slow"\} 0/);
  });

  it('refreshes an expiring connection through the refresh hook', async () => {
    await backend.reset();
    const { c, ctx } = await hookClient(srv, 'short', { data: { user: 'short', expire_in: 1 } });
    await waitFor(async () => (await backend.seen('refresh')).length >= 1, { timeout: 5000, message: 'refresh call' });
    const [req] = await backend.seen('refresh');
    assert.equal(req.body.user, 'short');
    assert.equal(req.body.client, ctx.client);
    assert.equal(req.headers.cookie, 'sid=abc');
    await sleep(200);
    assert.equal(c.state, 'connected');
    assert.deepEqual((await c.rpc('echo', 1)).data.echo, 1);
  });

  it('serves Protobuf clients through the same hooks', async () => {
    const { enc, dec } = codec('protobuf');
    const { c, ctx } = await hookClient(srv, 'pb', { protocol: 'protobuf' });
    assert.deepEqual(dec(ctx.data), { welcome: 'pb' });
    const r = await c.rpc('echo', enc({ bin: false }));
    assert.deepEqual(dec(r.data), { echo: { bin: false }, user: 'pb', meta: { plan: 'gold' } });
  });
});

describe('backend hooks over gRPC', () => {
  let backend;
  let srv;
  before(async () => {
    backend = await startBackend();
    const grpc = (extra = {}) => ({
      endpoint: `grpc://${backend.grpcTarget}`,
      http_headers: ['Cookie'],
      ...extra,
    });
    srv = await startServer({
      client: { proxy: { connect: { enabled: true, ...grpc({ grpc: { credentials_key: 'x-backend-key', credentials_value: 'k1' } }) } } },
      channel: {
        proxy: { subscribe: grpc(), publish: grpc() },
        namespaces: [
          { name: 'gr', subscribe_proxy_enabled: true, publish_proxy_enabled: true, presence: true, allow_presence_for_subscriber: true },
        ],
      },
      rpc: { proxy: grpc({ include_connection_meta: true, binary_encoding: true }), without_namespace: { proxy_enabled: true } },
    });
  });
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
    if (backend) await backend.stop();
  });

  it('connects, subscribes, publishes and calls rpc through a gRPC backend', async () => {
    await backend.reset();
    const { c: alice, ctx } = await hookClient(srv, 'alice');
    assert.deepEqual(ctx.data, { welcome: 'alice' });
    const [connect] = await backend.seen('connect');
    assert.equal(connect.via, 'grpc');
    assert.equal(connect.body.client, ctx.client);
    assert.equal(connect.headers.cookie, 'sid=abc');
    assert.equal(connect.headers['x-backend-key'], 'k1');
    assert.equal(connect.headers.authorization, undefined);
    assert.equal(connect.headers['x-unlisted'], undefined);

    const { c: bob } = await hookClient(srv, 'bob');
    const ch = uniq('gr:room');
    const { sub: sa, ctx: sctx } = await subscribe(alice, ch);
    assert.deepEqual(sctx.data, { motd: `hi ${ch}` });
    const { sub: sb } = await subscribe(bob, ch);
    const presence = await alice.presence(ch);
    assert.deepEqual(presence.clients[ctx.client].chanInfo, { role: 'member', user: 'alice' });
    const ga = collect(sa, 'publication');
    const gb = collect(sb, 'publication');
    await bob.publish(ch, { text: 'hi all' });
    const e = await rpcError(bob.publish(ch, { text: 'spam' }));
    assert.equal(e.code, 4003);
    await waitFor(() => ga.length === 1 && gb.length === 1, { message: 'publication' });
    assert.deepEqual(ga[0].data, { text: 'HI ALL', by: 'bob' });
    assert.deepEqual(gb[0].data, { text: 'HI ALL', by: 'bob' });

    const denied = alice.newSubscription(uniq('gr:private'));
    denied.on('error', () => {});
    const unsub = once(denied, 'unsubscribed', 8000);
    denied.subscribe();
    assert.equal((await unsub).code, 4030);

    const r = await alice.rpc('echo', { n: 2 });
    assert.deepEqual(r.data, { echo: { n: 2 }, user: 'alice', meta: { plan: 'gold' } });
    const [rpc] = await backend.seen('rpc');
    assert.equal(rpc.body.encoding, 'binary');
    assert.equal((await rpcError(alice.rpc('fail', {}))).code, 4040);
  });
});

describe('connect hook down', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      client: { proxy: { connect: { enabled: true, endpoint: `http://127.0.0.1:${await closedPort()}/connect` } } },
    });
  });
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
  });

  it('answers connect with error 100 (the SDK retries) while token clients connect', async () => {
    const c = newClient(srv, 'json', { data: { user: 'x' } });
    const errors = [];
    c.on('error', (ctx) => errors.push(ctx));
    c.connect();
    await waitFor(() => errors.some((e) => e.type === 'connect'), { timeout: 8000, message: 'connect error' });
    const e = errors.find((x) => x.type === 'connect');
    assert.equal(e.error.code, 100);
    assert.equal(e.error.temporary, true);
    assert.equal(c.state, 'connecting', 'the SDK keeps trying');
    c.disconnect();
    const ok = await connectClient(srv, 'json', { token: connToken('tok') });
    assert.equal(ok.state, 'connected');
  });
});
