'use strict';
// centrifuge-js forced onto a fallback transport: its WebSocket endpoint is a closed port, so
// the SDK falls back to `http_stream` (JSON or Protobuf) or `sse` (JSON; Node has no global
// EventSource, the `eventsource` package provides it), sending its commands after the
// connect through `/emulation`.
const assert = require('node:assert/strict');
const net = require('node:net');
const { EventSource } = require('eventsource');

const { connToken } = require('./jwt');
const { newClient } = require('./clients');
const { once } = require('./util');

/** Every fallback transport with the protocols it carries. */
const CASES = [
  { transport: 'http_stream', protocol: 'json' },
  { transport: 'http_stream', protocol: 'protobuf' },
  { transport: 'sse', protocol: 'json' },
];

/** A port nothing listens on (bound, then closed). */
async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** A client of `srv` that will fall back to `transport` (`opts` override the token). */
function fallbackClient(srv, deadPort, { transport, protocol }, user, opts = {}) {
  const base = `http://127.0.0.1:${srv.port}`;
  return newClient(
    {
      ...srv,
      wsUrl: [
        { transport: 'websocket', endpoint: `ws://127.0.0.1:${deadPort}/connection/websocket` },
        { transport, endpoint: `${base}/connection/${transport}` },
      ],
    },
    protocol,
    {
      token: connToken(user),
      emulationEndpoint: `${base}/emulation`,
      eventsource: EventSource,
      ...opts,
    },
  );
}

/** A connected fallback client and its `connected` context (the fallback checked). */
async function fallbackConnected(srv, deadPort, kase, user, opts) {
  const c = fallbackClient(srv, deadPort, kase, user, opts);
  const p = once(c, 'connected', 8000);
  c.connect();
  const ctx = await p;
  assert.equal(ctx.transport, kase.transport, 'the SDK fell back');
  return { c, ctx };
}

module.exports = { CASES, closedPort, fallbackClient, fallbackConnected };
