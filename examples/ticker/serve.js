#!/usr/bin/env node
'use strict';
// The ticker page's web server (stands in for your site): serves index.html and app.js, the
// browser build of centrifuge-js from node_modules (`npm ci` first: the SDK comes from npm,
// unchanged), and GET /token — a connection token for an anonymous visitor, signed with the
// example config's HMAC key, the way your backend would sign one.
//
//   npm ci && PORT=8080 CHORUS_WS=ws://127.0.0.1:8000/connection/websocket node serve.js

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const PORT = Number(process.env.PORT || 8080);
const WS = process.env.CHORUS_WS || 'ws://127.0.0.1:8000/connection/websocket';
const config = JSON.parse(fs.readFileSync(path.join(__dirname, 'config.json'), 'utf8'));
const SECRET = process.env.CHORUS_SECRET || config.client.token.hmac_secret_key;

const FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/vendor/centrifuge.js': [path.join('node_modules', 'centrifuge', 'dist', 'centrifuge.js'), 'text/javascript; charset=utf-8'],
};

const b64url = (b) => Buffer.from(b).toString('base64url');
function token(sub) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = crypto.createHmac('sha256', SECRET).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/token') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ token: token(`visitor-${crypto.randomUUID().slice(0, 8)}`) }));
    return;
  }
  if (url.pathname === '/config.json') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ws: WS }));
    return;
  }
  const f = FILES[url.pathname];
  if (!f) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  fs.readFile(path.join(__dirname, f[0]), (err, body) => {
    if (err) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${f[0]}: ${err.code} (run npm ci in examples/ticker)\n`);
      return;
    }
    res.writeHead(200, { 'content-type': f[1] });
    res.end(body);
  });
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`ticker page on http://127.0.0.1:${server.address().port}/ (chorus at ${WS})`);
});
