'use strict';
// permessage-deflate with the real SDK: centrifuge-js over Node's `ws`, which offers
// permessage-deflate by default; chorus with websocket.compression on (and off).
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');

const { startServer } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { connToken } = require('../lib/jwt');
const { apiCall } = require('../lib/api');
const { connectClient, subscribe, disconnectAll } = require('../lib/clients');
const { waitFor, collect } = require('../lib/util');

/** A `ws` WebSocket that remembers every instance, to read what was negotiated. */
function recordingWebSocket() {
  const sockets = [];
  class Recording extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { perMessageDeflate: { threshold: 0 } });
      sockets.push(this);
    }
  }
  return { Recording, sockets };
}

/** ~120 KB of JSON that compresses well but is not trivial. */
function bigData() {
  const rows = [];
  for (let i = 0; i < 2000; i++) rows.push({ id: i, name: `user-${i}`, text: 'the quick brown fox jumps' });
  return { rows };
}

for (const compression of [true, false]) {
  describe(`centrifuge-js json with websocket.compression ${compression}`, () => {
    let srv;
    before(async () => {
      srv = await startServer(testConfig({ websocket: { compression, compression_min_size: 64 } }));
    });
    after(async () => {
      disconnectAll();
      if (srv) await srv.stop();
    });
    afterEach(() => disconnectAll());

    it('exchanges large publications both ways', async () => {
      const { Recording, sockets } = recordingWebSocket();
      const c = await connectClient(srv, 'json', { token: connToken('alice'), websocket: Recording });
      assert.equal(sockets.length, 1);
      assert.equal(sockets[0].extensions, compression ? 'permessage-deflate' : '');

      const ch = `chat:deflate${process.pid}${compression}`;
      const { sub } = await subscribe(c, ch);
      const got = collect(sub, 'publication');
      const data = bigData();
      // Server → client (compressed when negotiated).
      const res = await apiCall(srv, 'publish', { channel: ch, data });
      assert.equal(res.offset, 1);
      await waitFor(() => got.length === 1, { message: 'API publication' });
      assert.deepEqual(got[0].data, data);
      // Client → server: `ws` compresses it (threshold 0), chorus inflates it; inflated it
      // must stay under websocket.message_size_limit (64 KiB by default).
      const small = { rows: data.rows.slice(0, 500) };
      await c.publish(ch, small);
      await waitFor(() => got.length === 2, { message: 'client publication' });
      assert.deepEqual(got[1].data, small);
      assert.equal(got[1].offset, 2);
    });
  });
}
