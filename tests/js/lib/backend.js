'use strict';
// Starts tests/py/proxy_backend.py: an application backend implementing the backend hooks over
// HTTP (aiohttp) and gRPC (grpcio, stubs generated from proto/proxy.proto).
//
//   const b = await startBackend();
//   b.httpUrl / b.grpcTarget / await b.seen() / await b.reset() / await b.stop()
//
// Python: $VENV/bin/python (scripts/test exports VENV), else the repo's .venv, else python3.
// The backend is killed when the test process exits.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { REPO_ROOT } = require('./server');

const SCRIPT = path.join(REPO_ROOT, 'tests', 'py', 'proxy_backend.py');

function python() {
  for (const venv of [process.env.VENV, path.join(REPO_ROOT, '.venv')]) {
    if (venv && fs.existsSync(path.join(venv, 'bin', 'python'))) return path.join(venv, 'bin', 'python');
  }
  return 'python3';
}

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch (_) { /* gone */ }
  }
});

async function startBackend({ timeoutMs = 30000 } = {}) {
  const proc = spawn(python(), [SCRIPT], {
    cwd: path.dirname(SCRIPT),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let output = '';
  proc.stderr.on('data', (c) => { output += c.toString(); });
  const exited = new Promise((resolve) => proc.once('exit', (code) => { live.delete(proc); resolve(code); }));
  const ports = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`proxy backend did not start: ${output}`)), timeoutMs);
    proc.stdout.on('data', (c) => {
      buf += c.toString();
      const h = buf.match(/^http (\d+)$/m);
      const g = buf.match(/^grpc (\d+)$/m);
      if (h && g) {
        clearTimeout(timer);
        resolve({ http: Number(h[1]), grpc: Number(g[1]) });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`proxy backend exited (${code}): ${output}`));
    });
  });
  const httpUrl = `http://127.0.0.1:${ports.http}`;
  return {
    httpUrl,
    grpcTarget: `127.0.0.1:${ports.grpc}`,
    /** Every request the backend got: {event, via, path, body, headers}. */
    async seen(event) {
      const res = await fetch(`${httpUrl}/seen`);
      const all = await res.json();
      return event ? all.filter((s) => s.event === event) : all;
    },
    async reset() {
      await fetch(`${httpUrl}/reset`, { method: 'POST' });
    },
    logs: () => output,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}

module.exports = { startBackend };
