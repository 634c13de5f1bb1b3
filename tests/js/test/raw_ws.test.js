'use strict';
// The JSON protocol spoken by hand over a raw WebSocket (npm `ws`) and over raw TCP:
// batching, ping/pong, and how the server treats bad input.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const crypto = require('node:crypto');

const { startServer } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { connToken } = require('../lib/jwt');
const { apiCall } = require('../lib/api');
const { RawConn } = require('../lib/raw');
const { waitFor } = require('../lib/util');

let seq = 0;
const uniq = (prefix) => `${prefix}${process.pid}r${++seq}`;
const isPing = (m) => Object.keys(m).length === 0;

describe('raw WebSocket protocol', () => {
  let srv;
  const conns = [];
  const open = async (opts) => {
    const c = await RawConn.open(srv.wsUrl, opts);
    conns.push(c);
    return c;
  };
  const connected = async (user = 'alice', extra = {}) => {
    const c = await open();
    c.send({ id: 1, connect: { token: connToken(user, extra), name: 'raw' } });
    const r = await c.reply(1);
    assert.ok(r.connect, `connect reply expected, got ${JSON.stringify(r)}`);
    return c;
  };

  before(async () => {
    srv = await startServer(testConfig({ client: { ping_interval: '2s', pong_timeout: '1s' } }));
  });
  afterEach(() => {
    for (const c of conns.splice(0)) c.close();
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  it('processes JSON commands batched in one frame in order', async () => {
    const c = await open();
    const ch = uniq('chat:batch');
    c.send(
      { id: 1, connect: { token: connToken('alice', { info: { a: 1 } }), name: 'raw' } },
      { id: 2, subscribe: { channel: ch, flag: 1 } },
      { id: 3, publish: { channel: ch, data: { text: 'batched' } } },
      { id: 4, presence_stats: { channel: ch } },
      { id: 5, history: { channel: ch, limit: 10 } },
      { id: 6, unsubscribe: { channel: ch } },
    );
    await c.reply(6);
    const replies = c.messages.filter((m) => m.id);
    assert.deepEqual(replies.map((m) => m.id), [1, 2, 3, 4, 5, 6], 'replies in command order');
    for (const r of replies) assert.equal(r.error, undefined, `no error in ${JSON.stringify(r)}`);

    const [conn, sub, pub, stats, hist, unsub] = replies;
    assert.equal(typeof conn.connect.client, 'string');
    assert.ok(conn.connect.client.length > 0);
    assert.equal(conn.connect.ping, 2);
    assert.equal(conn.connect.pong, true);
    assert.equal(sub.subscribe.recoverable, true);
    assert.equal(sub.subscribe.positioned, true);
    assert.equal(typeof sub.subscribe.epoch, 'string');
    assert.equal(sub.subscribe.offset ?? 0, 0);
    assert.deepEqual(pub.publish, {});
    assert.deepEqual(stats.presence_stats, { num_clients: 1, num_users: 1 });
    assert.equal(hist.history.offset, 1);
    assert.equal(hist.history.epoch, sub.subscribe.epoch);
    assert.equal(hist.history.publications.length, 1);
    assert.deepEqual(hist.history.publications[0].data, { text: 'batched' });
    assert.equal(hist.history.publications[0].offset, 1);
    assert.equal(hist.history.publications[0].info.user, 'alice');
    assert.deepEqual(hist.history.publications[0].info.conn_info, { a: 1 });
    assert.deepEqual(unsub.unsubscribe, {});

    // The publication push reached the subscriber, exactly once.
    const pushes = c.messages.filter((m) => m.push && m.push.pub);
    assert.equal(pushes.length, 1);
    assert.equal(pushes[0].push.channel, ch);
    assert.deepEqual(pushes[0].push.pub.data, { text: 'batched' });
    assert.equal(pushes[0].push.pub.offset, 1);
    // The subscribe reply came before the push of that channel.
    assert.ok(c.messages.indexOf(sub) < c.messages.indexOf(pushes[0]));
  });

  it('sends {} pings that a {} pong answers, and keeps the connection open', async () => {
    const c = await connected();
    const first = c.messages.length;
    const ping1 = await c.next(isPing, { from: first, timeout: 3500, message: 'first ping' });
    assert.deepEqual(ping1, {});
    c.sendRaw('{}');
    const after1 = c.messages.length;
    await c.next(isPing, { from: after1, timeout: 3500, message: 'second ping' });
    c.sendRaw('{}');
    assert.equal(c.closeInfo, null, 'still open after two ping/pong rounds');
    // Still serving commands.
    c.send({ id: 2, subscribe: { channel: uniq('chat:alive') } });
    const r = await c.reply(2);
    assert.equal(r.error, undefined);
    assert.equal(r.subscribe.recoverable, true);
  });

  it('closes with 3012 when pings go unanswered', async () => {
    const c = await connected();
    await c.next(isPing, { timeout: 3500, message: 'ping' });
    const info = await c.waitClosed(4000);
    assert.equal(info.code, 3012);
  });

  it('closes with 3501 on malformed JSON', async () => {
    const c = await connected();
    c.sendRaw('{"id":2,"presence":{"channel":');
    assert.equal((await c.waitClosed()).code, 3501);
  });

  it('closes with 3501 on malformed JSON as the first frame', async () => {
    const c = await open();
    c.sendRaw('this is not json');
    assert.equal((await c.waitClosed()).code, 3501);
  });

  it('closes with 3501 on an unknown command', async () => {
    const c = await connected();
    c.send({ id: 2, no_such_command: { channel: 'x' } });
    assert.equal((await c.waitClosed()).code, 3501);
  });

  it('closes with 3501 on a command before connect', async () => {
    const c = await open();
    c.send({ id: 1, subscribe: { channel: uniq('chat:early') } });
    const info = await c.waitClosed();
    assert.equal(info.code, 3501);
    assert.equal(c.messages.filter((m) => m.id === 1).length, 0, 'no reply to the early command');
  });

  it('closes with 3501 on a second connect', async () => {
    const c = await connected();
    c.send({ id: 2, connect: { token: connToken('alice') } });
    assert.equal((await c.waitClosed()).code, 3501);
  });

  it('closes with 1009 on a message over websocket.message_size_limit', async () => {
    const c = await connected();
    const big = JSON.stringify({ id: 2, publish: { channel: uniq('chat:big'), data: { s: 'x'.repeat(70000) } } });
    c.sendRaw(big);
    assert.equal((await c.waitClosed()).code, 1009);
  });

  it('closes with 1007 on invalid UTF-8 in a text frame', async () => {
    const c = await connected();
    c.sendRaw(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
    assert.equal((await c.waitClosed()).code, 1007);
  });

  for (const [name, garbage] of [
    // Random bytes whose first frame header is invalid for sure (RSV bits, reserved opcode):
    // fully random ones could announce a long frame and leave the server waiting for it.
    ['random bytes', () => { const b = crypto.randomBytes(4096); b[0] = 0xf3; return b; }],
    ['reserved opcode + RSV bits', () => Buffer.alloc(64, 0xff)],
    ['a 2^63 length header', () => Buffer.from([0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4])],
    ['an unmasked client frame', () => Buffer.from([0x81, 0x02, 0x7b, 0x7d])],
  ]) {
    it(`drops a connection that sends ${name} after the upgrade; the node keeps serving`, async () => {
      const ch = uniq('chat:survivor');
      const watcher = await connected('watcher');
      watcher.send({ id: 2, subscribe: { channel: ch } });
      await watcher.reply(2);

      const sock = await rawUpgrade(srv);
      const closed = new Promise((resolve) => sock.once('close', resolve));
      sock.on('error', () => {});
      sock.write(garbage());
      let timer;
      await Promise.race([
        closed,
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('socket not closed within 5 s')), 5000); }),
      ]);
      clearTimeout(timer);

      const r = await apiCall(srv, 'publish', { channel: ch, data: { still: 'here' } });
      const push = await watcher.next((m) => m.push && m.push.pub, { message: 'publication after garbage' });
      assert.deepEqual(push.push.pub.data, { still: 'here' });
      assert.equal(push.push.pub.offset, r.offset);
      assert.equal(watcher.closeInfo, null);
      const health = await fetch(`${srv.url}/health`, { signal: AbortSignal.timeout(5000) });
      assert.equal(health.status, 200);
    });
  }

  it('answers a protobuf client over the centrifuge-protobuf subprotocol', async () => {
    const c = await open({ protocols: ['centrifuge-protobuf'] });
    assert.equal(c.ws.protocol, 'centrifuge-protobuf');
    // Command{id:1, connect:{token}} varint-length-delimited.
    const token = Buffer.from(connToken('alice'));
    const connectReq = Buffer.concat([Buffer.from([0x0a]), varint(token.length), token]);
    const cmd = Buffer.concat([Buffer.from([0x08, 0x01, 0x22]), varint(connectReq.length), connectReq]);
    c.sendRaw(Buffer.concat([varint(cmd.length), cmd]), { binary: true });
    await waitFor(() => c.frames.length > 0, { message: 'protobuf reply' });
    const frame = c.frames[0];
    assert.equal(frame.isBinary, true);
    const buf = Buffer.from(frame.data);
    // Reply: len, then field 1 (id) = 1, then field 5 (connect).
    const [len, off] = readVarint(buf, 0);
    assert.equal(off + len, buf.length, 'one length-delimited reply');
    assert.deepEqual([...buf.subarray(off, off + 3)], [0x08, 0x01, 0x2a]);
  });

  it('pings a protobuf client with a 0x00 byte and keeps it open when it answers', async () => {
    const c = await open({ protocols: ['centrifuge-protobuf'] });
    const token = Buffer.from(connToken('alice'));
    const connectReq = Buffer.concat([Buffer.from([0x0a]), varint(token.length), token]);
    const cmd = Buffer.concat([Buffer.from([0x08, 0x01, 0x22]), varint(connectReq.length), connectReq]);
    c.sendRaw(Buffer.concat([varint(cmd.length), cmd]), { binary: true });
    await waitFor(() => c.frames.length >= 1, { message: 'connect reply' });
    const isPbPing = (f) => f.isBinary && Buffer.from(f.data).equals(Buffer.from([0x00]));
    await waitFor(() => c.frames.slice(1).some(isPbPing), { timeout: 3500, message: 'protobuf ping 0x00' });
    c.sendRaw(Buffer.from([0x00]), { binary: true });
    const seen = c.frames.length;
    await waitFor(() => c.frames.slice(seen).some(isPbPing), { timeout: 3500, message: 'second protobuf ping' });
    c.sendRaw(Buffer.from([0x00]), { binary: true });
    assert.equal(c.closeInfo, null, 'answered pings keep the connection open');
  });
});

function varint(n) {
  const out = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

function readVarint(buf, off) {
  let n = 0;
  let shift = 0;
  for (;;) {
    const b = buf[off++];
    n |= (b & 0x7f) << shift;
    if (!(b & 0x80)) return [n, off];
    shift += 7;
  }
}

/** Opens a TCP socket and completes a WebSocket upgrade by hand. */
function rawUpgrade(srv) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, srv.host);
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('upgrade timed out')); }, 5000);
    sock.once('error', (e) => { clearTimeout(timer); reject(e); });
    sock.on('connect', () => {
      sock.write(
        'GET /connection/websocket HTTP/1.1\r\n' +
          `Host: ${srv.host}:${srv.port}\r\n` +
          'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    sock.on('data', function onData(chunk) {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      clearTimeout(timer);
      const head = buf.subarray(0, end).toString();
      if (!/^HTTP\/1\.1 101/.test(head)) {
        sock.destroy();
        reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
        return;
      }
      const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      if (!head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
        sock.destroy();
        reject(new Error(`bad Sec-WebSocket-Accept in ${head}`));
        return;
      }
      resolve(sock);
    });
  });
}
