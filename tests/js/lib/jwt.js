'use strict';
// HS256 JWTs signed by hand with node:crypto (no dependency), as a backend would sign them.
const crypto = require('node:crypto');
const { SECRET } = require('./server');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function sign(claims, secret = SECRET, header = { alg: 'HS256', typ: 'JWT' }) {
  const head = b64url(JSON.stringify(header));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

const now = () => Math.floor(Date.now() / 1000);

/** Connection token: `sub` plus any extra claims (info, channels, exp, ...). */
function connToken(sub, extra = {}, secret = SECRET) {
  return sign({ sub, ...extra }, secret);
}

/** Subscription token for `channel`. */
function subToken(sub, channel, extra = {}, secret = SECRET) {
  return sign({ sub, channel, ...extra }, secret);
}

module.exports = { sign, connToken, subToken, now };
