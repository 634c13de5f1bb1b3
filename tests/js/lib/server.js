'use strict';
// Starts the real chorus binary for black-box tests.
//
//   const { startServer } = require('./lib/server');
//   const srv = await startServer({ channel: { namespaces: [...] } });
//   srv.url / srv.wsUrl / srv.apiUrl / srv.port / srv.proc / srv.logs() / await srv.stop()
//   srv.grpcTarget: `IP:PORT` of the gRPC server API when `grpc_api.enabled` (the server prints
//   `chorus grpc api listening on IP:PORT` before its HTTP line), else null
//
// The config object is deep-merged over a base config (127.0.0.1, port 0, test secrets),
// written to a temp JSON file and passed as `chorus serve --config FILE`. The server prints
// `chorus listening on http://IP:PORT` on stdout once it accepts connections; we wait for
// that line (bounded) to learn the port. `{ noConfig: true }` starts `chorus serve` with no
// config at all (the embedded default), with CHORUS_HTTP_SERVER_PORT=0 so it picks a free port.
// Every server started here is killed when the test process exits.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.CHORUS_BIN
  ? path.resolve(REPO_ROOT, process.env.CHORUS_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'chorus');

const SECRET = 'chorus-test-hmac-secret-0123456789';
const API_KEY = 'chorus-test-api-key';

const live = new Set();
function killAll() {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { killAll(); process.exit(130); });
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function deepMerge(base, over) {
  const out = { ...base };
  for (const [k, v] of Object.entries(over || {})) {
    out[k] = isPlainObject(v) && isPlainObject(base[k]) ? deepMerge(base[k], v) : v;
  }
  return out;
}

function baseConfig() {
  return {
    http_server: { address: '127.0.0.1', port: 0 },
    client: {
      token: { hmac_secret_key: SECRET },
      allowed_origins: ['*'],
    },
    http_api: { key: API_KEY },
    engine: { type: 'memory' },
  };
}

async function startServer(config = {}, opts = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`chorus binary not found at ${BIN} (build it with: cargo build -p chorus, or set CHORUS_BIN)`);
  }
  const timeoutMs = opts.timeoutMs || 20000;
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...(opts.env || {}) };
  let args;
  let tmpDir = null;
  let fullConfig = null;
  if (opts.noConfig) {
    args = ['serve'];
    if (env.CHORUS_HTTP_SERVER_PORT === undefined) env.CHORUS_HTTP_SERVER_PORT = '0';
  } else {
    fullConfig = deepMerge(baseConfig(), config);
    if (opts.port !== undefined) fullConfig.http_server.port = opts.port;
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-test-'));
    const file = path.join(tmpDir, 'config.json');
    fs.writeFileSync(file, JSON.stringify(fullConfig, null, 2));
    args = ['serve', '--config', file];
  }
  args.push(...(opts.args || []));

  const proc = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let output = '';
  const append = (chunk) => {
    output += chunk.toString();
    if (output.length > 1 << 20) output = output.slice(-(1 << 19));
  };
  proc.stderr.on('data', append);

  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    });
  });

  const addr = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      finish(new Error(`chorus did not print "chorus listening on" within ${timeoutMs} ms; output:\n${output}`));
    }, timeoutMs);
    function finish(err, value) {
      clearTimeout(timer);
      proc.stdout.off('data', onData);
      proc.off('exit', onExit);
      if (err) {
        try { proc.kill('SIGKILL'); } catch (_) { /* gone */ }
        reject(err);
      } else {
        resolve(value);
      }
    }
    function onData(chunk) {
      append(chunk);
      buf += chunk.toString();
      const m = buf.match(/^chorus listening on (https?:\/\/[^\s]+)\s*$/m);
      if (m) {
        const grpc = buf.match(/^chorus grpc api listening on (\S+)\s*$/m);
        finish(null, { url: m[1], grpcTarget: grpc ? grpc[1] : null });
      }
    }
    function onExit(code, signal) {
      finish(new Error(`chorus exited (code ${code}, signal ${signal}) before listening; output:\n${output}`));
    }
    proc.stdout.on('data', onData);
    proc.once('exit', onExit);
  });
  // Keep draining stdout so the server never blocks on a full pipe.
  proc.stdout.on('data', append);

  const url = addr.url.replace(/\/$/, '');
  const u = new URL(url);
  const server = {
    url,
    host: u.hostname,
    port: Number(u.port),
    wsUrl: `${u.protocol === 'https:' ? 'wss' : 'ws'}://${u.host}/connection/websocket`,
    apiUrl: `${url}/api`,
    grpcTarget: addr.grpcTarget,
    apiKey: API_KEY,
    secret: SECRET,
    config: fullConfig,
    proc,
    exited,
    logs: () => output,
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill(signal);
        const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch (_) { /* gone */ } }, graceMs);
        await exited;
        clearTimeout(t);
      }
      if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
      return exited;
    },
  };
  return server;
}

module.exports = { startServer, deepMerge, REPO_ROOT, BIN, SECRET, API_KEY };
