'use strict';
// permessage-deflate with the real SDK: centrifuge-js over Node's `ws`, which offers
// permessage-deflate by default; chorus with websocket.compression on (and off), over ws://
// and over wss:// with chorus' own TLS (http_server.tls).
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const https = require('node:https');
const WebSocket = require('ws');

const { startServer } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { connToken } = require('../lib/jwt');
const { apiCall } = require('../lib/api');
const { connectClient, subscribe, disconnectAll } = require('../lib/clients');
const { waitFor, collect } = require('../lib/util');
const { makeCerts } = require('../../cluster/lib/certs');

/**
 * A `ws` WebSocket that remembers every instance, to read what was negotiated; `options` go
 * to `ws` (e.g. `ca` to trust a test certificate).
 */
function recordingWebSocket(options = {}) {
  const sockets = [];
  class Recording extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { perMessageDeflate: { threshold: 0 }, ...options });
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

/** GET over https trusting `ca`; resolves to the body. */
function httpsGet(url, ca) {
  return new Promise((resolve, reject) => {
    https.get(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** The value of one exposition series in Prometheus text (0 when absent). */
function series(text, name) {
  const m = text.match(new RegExp(`^${name}\\{transport="websocket"\\} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

describe('centrifuge-js json over wss:// (http_server.tls) with websocket.compression', () => {
  let srv;
  let certs;
  before(async () => {
    certs = makeCerts();
    srv = await startServer(testConfig({
      http_server: { tls: { cert_pem_file: certs.serverCert, key_pem_file: certs.serverKey } },
      websocket: { compression: true, compression_min_size: 64 },
    }));
  });
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
    if (certs) certs.remove();
  });

  it('negotiates permessage-deflate and exchanges large publications both ways', async () => {
    assert.match(srv.wsUrl, /^wss:\/\//);
    const ca = fs.readFileSync(certs.ca);
    const { Recording, sockets } = recordingWebSocket({ ca });
    const c = await connectClient(srv, 'json', { token: connToken('alice'), websocket: Recording });
    assert.equal(sockets.length, 1);
    assert.equal(sockets[0].extensions, 'permessage-deflate');

    const ch = `chat:deflatetls${process.pid}`;
    const { sub } = await subscribe(c, ch);
    const got = collect(sub, 'publication');
    // Client → server compressed by `ws` (threshold 0) and inflated by chorus (under the
    // 64 KiB message_size_limit once inflated); server → client compressed by chorus, with
    // context takeover across the three.
    const rows = bigData().rows;
    const sent = [rows.slice(0, 400), rows.slice(400, 800), rows.slice(0, 400)].map((r) => ({ rows: r }));
    for (const [i, data] of sent.entries()) {
      await c.publish(ch, data);
      await waitFor(() => got.length === i + 1, { message: `publication ${i + 1}` });
      assert.deepEqual(got[i].data, data);
      assert.equal(got[i].offset, i + 1);
    }

    // chorus compressed what it sent: at least the three publications went through deflate,
    // and came out smaller.
    const metrics = await httpsGet(`${srv.url}/metrics`, ca);
    const before = series(metrics, 'chorus_transport_deflate_bytes_in_total');
    const after = series(metrics, 'chorus_transport_deflate_bytes_out_total');
    const published = sent.reduce((n, d) => n + JSON.stringify(d).length, 0);
    assert.ok(before >= published, `deflate input ${before} < ${published}`);
    assert.ok(after > 0 && after < before / 4, `deflate output ${after} of ${before}`);
  });
});
