'use strict';
// A Sentinel-managed Redis on one machine: a master, a replica and three real Sentinels
// (`redis-server <conf> --sentinel`, the same program Debian's redis-sentinel runs), quorum 2,
// down-after 1 s, so a killed master is replaced in a few seconds.
//
//   const s = await startSentinelSet({ password, sentinelPassword });
//   s.master / s.replica (see lib/redis.js), s.sentinels[i].port, s.sentinelAddresses,
//   await s.masterPort()   // what the Sentinels say now
//   await s.inSync()       // the replica has every write of the master
//   await s.stop()

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { startRedis, freePort } = require('./redis');

const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';
const MASTER = 'chorusmaster';

/** Parses one RESP2 reply at `i`: `{ v, i }` (next index), or null when incomplete. */
function parseReply(buf, i = 0) {
  const eol = buf.indexOf('\r\n', i);
  if (eol < 0) return null;
  const type = buf[i];
  const line = buf.slice(i + 1, eol);
  let next = eol + 2;
  if (type === '+' || type === ':') return { v: line, i: next };
  if (type === '-') return { v: new Error(line), i: next };
  if (type === '$') {
    const n = Number(line);
    if (n < 0) return { v: null, i: next };
    if (buf.length < next + n + 2) return null;
    return { v: buf.slice(next, next + n), i: next + n + 2 };
  }
  if (type === '*') {
    const n = Number(line);
    const out = [];
    for (let k = 0; k < n; k++) {
      const r = parseReply(buf, next);
      if (!r) return null;
      out.push(r.v);
      next = r.i;
    }
    return { v: out, i: next };
  }
  throw new Error(`bad RESP reply: ${JSON.stringify(buf.slice(i, i + 40))}`);
}

/**
 * Sends `args` (after AUTH when `password` is set) and resolves with the parsed reply:
 * a string, an array, null, or rejects with the server's error.
 */
function call(port, password, args, timeout = 2000) {
  const net = require('node:net');
  const cmds = password ? [['AUTH', password], args] : [args];
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`:${port} ${args[0]} timed out`)); }, timeout);
    sock.once('error', (e) => { clearTimeout(t); reject(e); });
    const enc = (a) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(String(x))}\r\n${x}\r\n`).join('')}`;
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      let r = { i: 0 };
      const replies = [];
      for (let k = 0; k < cmds.length; k++) {
        r = parseReply(buf, r.i);
        if (!r) return;
        replies.push(r.v);
      }
      clearTimeout(t);
      sock.destroy();
      const last = replies[replies.length - 1];
      const err = replies.find((x) => x instanceof Error);
      if (err) reject(err); else resolve(last);
    });
    sock.on('connect', () => sock.write(cmds.map(enc).join('')));
  });
}

/** A flat [k1, v1, k2, v2, …] reply as an object. */
function pairs(list) {
  const o = {};
  for (let k = 0; k + 1 < list.length; k += 2) o[list[k]] = list[k + 1];
  return o;
}

async function startSentinel({ masterPort, password, sentinelPassword, quorum }) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-sentinel-'));
  const conf = [
    `port ${port}`,
    'bind 127.0.0.1',
    'protected-mode no',
    `dir ${dir}`,
    `sentinel monitor ${MASTER} 127.0.0.1 ${masterPort} ${quorum}`,
    `sentinel down-after-milliseconds ${MASTER} 1000`,
    `sentinel failover-timeout ${MASTER} 5000`,
    `sentinel parallel-syncs ${MASTER} 1`,
  ];
  // Config-file strings in double quotes (passwords may hold spaces).
  const q = (v) => JSON.stringify(v);
  if (password) conf.push(`sentinel auth-pass ${MASTER} ${q(password)}`);
  if (sentinelPassword) conf.push(`requirepass ${q(sentinelPassword)}`, `sentinel sentinel-pass ${q(sentinelPassword)}`);
  const file = path.join(dir, 'sentinel.conf');
  fs.writeFileSync(file, `${conf.join('\n')}\n`);
  const proc = spawn(REDIS_SERVER, [file, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const append = (c) => { output = (output + c.toString()).slice(-65536); };
  proc.stdout.on('data', append);
  proc.stderr.on('data', append);
  const exited = new Promise((res) => proc.once('exit', res));
  process.on('exit', () => { try { proc.kill('SIGKILL'); } catch (_) { /* gone */ } });
  const s = {
    port,
    address: `127.0.0.1:${port}`,
    logs: () => output,
    cmd: (args) => call(port, sentinelPassword, args),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited; }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      if ((await s.cmd(['PING'])) === 'PONG') return s;
    } catch (_) { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`sentinel :${port} did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startSentinelSet({ password = '', sentinelPassword = '', sentinels = 3 } = {}) {
  const auth = password ? ['--requirepass', password, '--masterauth', password] : [];
  const master = await startRedis({ extraArgs: auth });
  const replica = await startRedis({ extraArgs: [...auth, '--replicaof', '127.0.0.1', String(master.port)] });
  const set = {
    name: MASTER,
    master,
    replica,
    sentinels: [],
    get sentinelAddresses() { return set.sentinels.map((s) => s.address); },
    /** The master's port as the first answering Sentinel reports it. */
    async masterPort() {
      for (const s of set.sentinels) {
        try {
          const r = await s.cmd(['SENTINEL', 'get-master-addr-by-name', MASTER]);
          if (Array.isArray(r)) return Number(r[1]);
        } catch (_) { /* try the next */ }
      }
      return null;
    },
    /** Whether the replica has acknowledged every byte the master wrote. */
    async inSync() {
      const info = await call(master.port, password, ['INFO', 'replication']);
      const off = /master_repl_offset:(\d+)/.exec(info);
      const ack = /slave0:[^\r\n]*offset=(\d+)/.exec(info);
      return Boolean(off && ack && off[1] === ack[1]);
    },
    async stop() {
      await Promise.all(set.sentinels.map((s) => s.stop()));
      await Promise.all([master.stop(), replica.stop()]);
    },
  };
  try {
    for (let i = 0; i < sentinels; i++) {
      set.sentinels.push(await startSentinel({
        masterPort: master.port, password, sentinelPassword, quorum: Math.min(2, sentinels),
      }));
    }
    // Ready when every Sentinel knows the replica and the other Sentinels.
    const deadline = Date.now() + 20000;
    for (;;) {
      const views = await Promise.all(set.sentinels.map((s) => s.cmd(['SENTINEL', 'master', MASTER]).then(pairs).catch(() => ({}))));
      const ok = views.every((v) => Number(v['num-slaves']) >= 1 && Number(v['num-other-sentinels']) >= sentinels - 1);
      if (ok && await set.inSync()) break;
      if (Date.now() > deadline) throw new Error(`sentinels not converged: ${JSON.stringify(views)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await set.stop();
    throw e;
  }
  return set;
}

module.exports = { startSentinelSet, call };
