'use strict';
// Throwaway certificates for TLS tests, made with the openssl CLI in a temp dir:
//
//   const c = makeCerts();   // c.dir, c.ca, c.serverCert, c.serverKey, c.clientCert,
//                            // c.clientKey, c.otherCa (a CA that signed nothing here)
//
// The server certificate names localhost and 127.0.0.1; the client certificate is signed by
// the same CA. Keys are EC P-256 (fast to make). Everything is removed by c.remove().

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const OPENSSL = process.env.OPENSSL || 'openssl';

function ossl(args, cwd) {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir, name) {
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=chorus test ${name}`], dir);
  return path.join(dir, `${name}.crt`);
}

function makeLeaf(dir, name, ca, ext) {
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`,
    '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`], dir);
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-certs-'));
  const ca = makeCa(dir, 'ca');
  const otherCa = makeCa(dir, 'other-ca');
  const server = makeLeaf(dir, 'server', 'ca',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  const client = makeLeaf(dir, 'client', 'ca', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    ca,
    otherCa,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: client.cert,
    clientKey: client.key,
    remove() { fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

module.exports = { makeCerts };
