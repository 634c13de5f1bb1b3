'use strict';
// Real redis-server processes for the cluster tier: standalone (optionally persistent, so a
// restart keeps history) and a 3-master Redis Cluster. Free ports only; every process started
// here is SIGKILLed when the test process exits (also when it is SIGSTOPped).
//
//   const r = await startRedis();                    // r.port, r.address, r.stop(), r.restart()
//   const r = await startRedis({ persist: true });   // AOF (fsync always) in a temp dir
//   const c = await startRedisCluster(3);            // c.addresses, c.nodes[i], c.stop()
//   await ping(port)                                 // tiny RESP client over net.Socket
//   await redisCli(port, ['PUBLISH', 'ch', 'x'])     // stdout of redis-cli

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';
const REDIS_CLI = process.env.REDIS_CLI || 'redis-cli';

const live = new Set();
function killAll() {
  for (const p of live) {
    try { p.kill('SIGCONT'); } catch (_) { /* gone */ }
    try { p.kill('SIGKILL'); } catch (_) { /* gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { killAll(); process.exit(130); });
}

function listenOn(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

const handedOut = new Set();
/** A free TCP port on 127.0.0.1 (not handed out before by this process). With `bus`, port+10000 is free too (Redis Cluster bus). */
async function freePort({ bus = false } = {}) {
  for (let i = 0; i < 200; i++) {
    let p;
    if (bus) {
      p = await listenOn(20000 + Math.floor(Math.random() * 35000));
      if (!p || !(await listenOn(p + 10000))) continue;
    } else {
      p = await listenOn(0);
    }
    if (p && !handedOut.has(p)) {
      handedOut.add(p);
      return p;
    }
  }
  throw new Error('no free port found');
}

/** Sends one RESP command, resolves with the raw reply text (first reply only, bounded). */
function command(port, args, timeout = 2000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`redis :${port} ${args[0]} timed out`)); }, timeout);
    sock.once('error', (e) => { clearTimeout(t); reject(e); });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) { clearTimeout(t); sock.destroy(); resolve(buf); }
    });
    sock.on('connect', () => {
      let out = `*${args.length}\r\n`;
      for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`;
      sock.write(out);
    });
  });
}

async function ping(port, timeout = 1000) {
  try {
    // A server with requirepass (or the default user off) answers NOAUTH: it is up.
    const reply = await command(port, ['PING'], timeout);
    return reply.startsWith('+PONG') || reply.startsWith('-NOAUTH');
  } catch (_) {
    return false;
  }
}

async function waitPing(port, proc, timeoutMs, output) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`redis-server :${port} exited (${proc.exitCode ?? proc.signalCode}): ${output()}`);
    }
    if (await ping(port)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server :${port} did not answer PING within ${timeoutMs} ms: ${output()}`);
}

/** redis-cli with args; resolves with stdout (rejects on non-zero exit). */
function redisCli(port, args, { timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * Starts redis-server on a free port (or `port`). `persist: true` = AOF with fsync always in
 * a temp dir that survives restart(); otherwise no persistence. `extraArgs` are appended.
 */
async function startRedis({ port, persist = false, extraArgs = [], dir, timeoutMs = 10000 } = {}) {
  port = port || await freePort();
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir,
    '--protected-mode', 'no', '--loglevel', 'warning'];
  if (persist) args.push('--appendonly', 'yes', '--appendfsync', 'always');
  else args.push('--appendonly', 'no');
  args.push(...extraArgs);

  const r = {
    port,
    dir,
    address: `127.0.0.1:${port}`,
    proc: null,
    exited: null,
    output: '',
    logs() { return this.output; },
    async spawn() {
      const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
      live.add(proc);
      const append = (c) => { r.output = (r.output + c.toString()).slice(-65536); };
      proc.stdout.on('data', append);
      proc.stderr.on('data', append);
      r.exited = new Promise((res) => proc.once('exit', (code, signal) => { live.delete(proc); res({ code, signal }); }));
      r.proc = proc;
      await waitPing(port, proc, timeoutMs, () => r.output);
    },
    alive() { return r.proc && r.proc.exitCode === null && r.proc.signalCode === null; },
    /** SIGKILL (default) or another signal; waits for the exit. */
    async kill(signal = 'SIGKILL') {
      if (!r.alive()) return;
      try { r.proc.kill('SIGCONT'); } catch (_) { /* gone */ }
      r.proc.kill(signal);
      await r.exited;
    },
    /** Kill and start again on the same port and dir, after `downMs` of outage. */
    async restart(signal = 'SIGKILL', downMs = 0) {
      await r.kill(signal);
      if (downMs > 0) await new Promise((res) => setTimeout(res, downMs));
      await r.spawn();
    },
    pause() { r.proc.kill('SIGSTOP'); },
    resume() { r.proc.kill('SIGCONT'); },
    async stop() {
      await r.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
    cli(a, o) { return redisCli(port, a, o); },
  };
  await r.spawn();
  return r;
}

/** Redis Cluster of `n` masters (no replicas), all slots assigned, state ok. */
async function startRedisCluster(n = 3, { timeoutMs = 30000 } = {}) {
  const nodes = [];
  try {
    for (let i = 0; i < n; i++) {
      const port = await freePort({ bus: true });
      nodes.push(await startRedis({
        port,
        extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
          '--cluster-node-timeout', '5000'],
      }));
    }
    await redisCli(nodes[0].port, ['--cluster', 'create', ...nodes.map((x) => x.address),
      '--cluster-replicas', '0', '--cluster-yes'], { timeout: timeoutMs });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const infos = await Promise.all(nodes.map((x) => x.cli(['cluster', 'info']).catch(() => '')));
      if (infos.every((s) => /cluster_state:ok/.test(s) && /cluster_slots_assigned:16384/.test(s)
        && new RegExp(`cluster_known_nodes:${n}\\b`).test(s))) break;
      if (Date.now() > deadline) throw new Error(`redis cluster not ok within ${timeoutMs} ms: ${infos.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await Promise.all(nodes.map((x) => x.stop()));
    throw e;
  }
  return {
    nodes,
    addresses: nodes.map((x) => x.address),
    async stop() { await Promise.all(nodes.map((x) => x.stop())); },
  };
}

module.exports = { startRedis, startRedisCluster, redisCli, ping, command, freePort };
