'use strict';
// A raw WebSocket connection (npm `ws`) speaking the JSON protocol by hand, for byte-level tests.
const WebSocket = require('ws');
const { waitFor } = require('./util');

class RawConn {
  constructor(ws) {
    this.ws = ws;
    this.messages = []; // every decoded reply/push, in arrival order
    this.frames = []; // raw frames: { data, isBinary }
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
      });
    });
    ws.on('error', (e) => { this.error = e; });
    ws.on('message', (data, isBinary) => {
      this.frames.push({ data, isBinary });
      if (isBinary) return;
      const text = data.toString();
      for (const line of text.trim().split('\n')) {
        this.messages.push(JSON.parse(line));
      }
    });
  }

  static open(url, { protocols, timeout = 5000, ...options } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols, { handshakeTimeout: timeout, ...options });
      const conn = new RawConn(ws);
      ws.once('open', () => resolve(conn));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} on upgrade`)));
    });
  }

  /** Sends commands (objects) joined by '\n' in one text frame. */
  send(...commands) {
    this.ws.send(commands.map((c) => JSON.stringify(c)).join('\n'));
  }

  sendRaw(data, opts = { binary: false }) {
    this.ws.send(data, opts);
  }

  /** Waits for the reply with this id. */
  reply(id, timeout = 5000) {
    return waitFor(() => this.messages.find((m) => m.id === id), { timeout, message: `reply ${id}` });
  }

  /** Waits for a message matching predicate (searching from index `from`). */
  next(predicate, { timeout = 5000, from = 0, message = 'message' } = {}) {
    return waitFor(() => this.messages.slice(from).find(predicate), { timeout, message });
  }

  async waitClosed(timeout = 5000) {
    let t;
    const timer = new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`connection not closed within ${timeout} ms`)), timeout);
    });
    try {
      return await Promise.race([this.closed, timer]);
    } finally {
      clearTimeout(t);
    }
  }

  close() {
    try { this.ws.terminate(); } catch (_) { /* ignore */ }
  }
}

module.exports = { RawConn };
