'use strict';
// The real npm centrifuge SDK (JSON and Protobuf builds) over the `ws` WebSocket.
const WebSocket = require('ws');
const { Centrifuge: CentrifugeJson } = require('centrifuge');
const { Centrifuge: CentrifugeProto } = require('centrifuge/build/protobuf');
const assert = require('node:assert/strict');
const { once } = require('./util');

const PROTOCOLS = {
  json: CentrifugeJson,
  protobuf: CentrifugeProto,
};

const opened = new Set();

/** New (not yet connected) client. */
function newClient(server, protocol, options = {}) {
  const Centrifuge = PROTOCOLS[protocol];
  const c = new Centrifuge(server.wsUrl, {
    websocket: WebSocket,
    minReconnectDelay: 50,
    maxReconnectDelay: 300,
    timeout: 5000,
    ...options,
  });
  opened.add(c);
  // Unhandled 'error' events must not crash the test process.
  c.on('error', () => {});
  return c;
}

/** Connected client. */
async function connectClient(server, protocol, options = {}) {
  const c = newClient(server, protocol, options);
  const connected = once(c, 'connected', 8000);
  c.connect();
  await connected;
  return c;
}

/** Subscribed subscription, returns { sub, ctx } with ctx the `subscribed` context. */
async function subscribe(client, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  sub.on('error', () => {});
  const subscribed = once(sub, 'subscribed', 8000);
  sub.subscribe();
  const ctx = await subscribed;
  return { sub, ctx };
}

/**
 * Payload codec of a protocol: JSON clients carry payloads as JSON values, Protobuf clients
 * as raw bytes (the SDK hands the app a Uint8Array and expects one for publish).
 */
function codec(protocol) {
  if (protocol === 'json') return { enc: (v) => v, dec: (v) => v };
  return {
    enc: (v) => new TextEncoder().encode(JSON.stringify(v)),
    dec: (v) => {
      if (v === undefined || v === null) return v;
      assert(v instanceof Uint8Array, `protobuf payload must be bytes, got ${typeof v}`);
      return JSON.parse(Buffer.from(v).toString('utf8'));
    },
  };
}

function disconnectAll() {
  for (const c of opened) {
    try { c.disconnect(); } catch (_) { /* ignore */ }
  }
  opened.clear();
}

module.exports = { newClient, connectClient, subscribe, disconnectAll, codec, PROTOCOLS };
