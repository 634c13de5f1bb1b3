'use strict';
// JWKS (client.token.jwks_public_endpoint) with the real chorus binary and the real npm
// centrifuge SDK: keys served by a local HTTP endpoint that this test rotates; tokens signed
// with RS256, ES256 and EdDSA by node:crypto, as an identity provider would sign them.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');

const { startServer } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { now } = require('../lib/jwt');
const { newClient, connectClient, subscribe, disconnectAll } = require('../lib/clients');
const { once, collect } = require('../lib/util');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A key pair with its public JWK (`kid`, `use: "sig"`, `alg`). */
function keyPair(kid, alg) {
  const [type, options] = {
    RS256: ['rsa', { modulusLength: 2048 }],
    ES256: ['ec', { namedCurve: 'P-256' }],
    EdDSA: ['ed25519', {}],
  }[alg];
  const { publicKey, privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg };
  return { kid, alg, privateKey, jwk };
}

/** A JWT signed by `key` (header `alg` and `kid` from the key unless overridden). */
function sign(key, claims, kid = key.kid) {
  const head = b64url(JSON.stringify({ alg: key.alg, kid, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const data = Buffer.from(`${head}.${body}`);
  let sig;
  if (key.alg === 'RS256') sig = crypto.sign('sha256', data, key.privateKey);
  else if (key.alg === 'ES256') sig = crypto.sign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  else sig = crypto.sign(null, data, key.privateKey);
  return `${head}.${body}.${b64url(sig)}`;
}

/** The identity provider's JWKS endpoint: serves `keys`, counts requests. */
async function startJwks() {
  const idp = { keys: [], hits: 0, up: true };
  idp.server = http.createServer((req, res) => {
    idp.hits++;
    if (!idp.up) {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ keys: idp.keys.map((k) => k.jwk) }));
  });
  await new Promise((resolve) => idp.server.listen(0, '127.0.0.1', resolve));
  idp.url = `http://127.0.0.1:${idp.server.address().port}/.well-known/jwks.json`;
  return idp;
}

for (const protocol of ['json', 'protobuf']) {
  describe(`JWKS with centrifuge-js ${protocol}`, () => {
    let srv;
    let idp;
    const rsa = keyPair('rsa-2026-01', 'RS256');
    const ec = keyPair('ec-2026-02', 'ES256');
    const ed = keyPair('ed-2026-03', 'EdDSA');

    before(async () => {
      idp = await startJwks();
      idp.keys = [rsa, ed];
      srv = await startServer(testConfig({
        client: {
          token: {
            hmac_secret_key: '',
            jwks_public_endpoint: idp.url,
            jwks_refetch_interval: '100ms',
            audience: 'chorus-tests',
          },
        },
      }));
    });
    after(async () => {
      disconnectAll();
      if (srv) await srv.stop();
      if (idp) idp.server.close();
    });
    afterEach(() => disconnectAll());

    const claims = (sub, extra = {}) => ({ sub, aud: 'chorus-tests', exp: now() + 3600, ...extra });

    it('connects with RS256 and subscribes to a private channel with an EdDSA token', async () => {
      const hits = idp.hits;
      const c = await connectClient(srv, protocol, { token: sign(rsa, claims('alice')) });
      // The first token fetched the document; every key in it is cached.
      assert.equal(idp.hits, hits + 1);
      const fetched = idp.hits;
      const ch = `private:jwks-${protocol}`;
      const { ctx } = await subscribe(c, ch, { token: sign(ed, claims('alice', { channel: ch })) });
      assert.equal(ctx.channel, ch);
      assert.equal(idp.hits, fetched);
    });

    it('picks up a rotated-in key on first sight and refuses unknown kids with 3500', async () => {
      idp.keys = [ec];
      const hits = idp.hits;
      await connectClient(srv, protocol, { token: sign(ec, claims('bob')) });
      assert.equal(idp.hits, hits + 1);

      // A kid the endpoint does not publish: one more fetch, then terminal 3500.
      const c = newClient(srv, protocol, { token: sign(ec, claims('mallory'), 'no-such-kid') });
      const disconnected = once(c, 'disconnected', 8000);
      c.connect();
      assert.equal((await disconnected).code, 3500);
      assert.equal(idp.hits, hits + 2);
      // The rotated-out RSA key was dropped by those fetches.
      const old = newClient(srv, protocol, { token: sign(rsa, claims('alice')) });
      const oldDisconnected = once(old, 'disconnected', 8000);
      old.connect();
      assert.equal((await oldDisconnected).code, 3500);
      idp.keys = [rsa, ec, ed];
    });

    it('answers an expired JWKS token with 109 and connects with the refreshed one', async () => {
      let calls = 0;
      const c = newClient(srv, protocol, {
        token: sign(ec, claims('carol', { exp: now() - 60 })),
        getToken: async () => {
          calls++;
          return sign(ec, claims('carol'));
        },
      });
      const errors = collect(c, 'error');
      const connected = once(c, 'connected', 8000);
      c.connect();
      await connected;
      assert.equal(calls, 1);
      assert.deepEqual(errors.filter((e) => e.type === 'connect').map((e) => e.error.code), [109]);
    });

    it('refuses a wrong audience and, with the endpoint down, a new kid with 3500', async () => {
      const wrongAud = newClient(srv, protocol, { token: sign(ec, claims('dave', { aud: 'other' })) });
      const d1 = once(wrongAud, 'disconnected', 8000);
      wrongAud.connect();
      assert.equal((await d1).code, 3500);

      idp.up = false;
      const fresh = keyPair(`ec-down-${protocol}`, 'ES256');
      idp.keys.push(fresh);
      const c = newClient(srv, protocol, { token: sign(fresh, claims('erin')) });
      const d2 = once(c, 'disconnected', 8000);
      c.connect();
      assert.equal((await d2).code, 3500);
      // Cached keys keep working while the endpoint is down.
      await connectClient(srv, protocol, { token: sign(ec, claims('frank')) });
      idp.up = true;
    });
  });
}
