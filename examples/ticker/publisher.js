#!/usr/bin/env node
'use strict';
// Streams price ticks to chorus: SYMBOLS symbols (default 100), RATE updates per second each
// (default 50), one channel per symbol (`ticker:<SYM>`), through the HTTP server API's `batch`
// method — one request every 1000/RATE ms carrying one publish per symbol. Each tick is
// {"s": symbol, "p": price, "t": unix ms, "n": sequence number of that symbol}.
//
//   CHORUS_API=http://127.0.0.1:8000/api CHORUS_API_KEY=ticker-example-api-key node publisher.js
//   SECONDS=10 node publisher.js        # stop after 10 s (default: run until Ctrl-C)
//
// Prints the achieved rate every second. No dependencies (Node 18+ fetch).

const API = process.env.CHORUS_API || 'http://127.0.0.1:8000/api';
const KEY = process.env.CHORUS_API_KEY || 'ticker-example-api-key';
const SYMBOLS = Number(process.env.SYMBOLS || 100);
const RATE = Number(process.env.RATE || 50);
const SECONDS = Number(process.env.SECONDS || 0);

/** The symbols: S000 … S099 (the page and the tests use the same names). */
function symbols(n = SYMBOLS) {
  return Array.from({ length: n }, (_, i) => `S${String(i).padStart(3, '0')}`);
}

async function main() {
  const syms = symbols();
  const price = Object.fromEntries(syms.map((s, i) => [s, 100 + i]));
  const seq = Object.fromEntries(syms.map((s) => [s, 0]));
  const period = 1000 / RATE;
  const started = Date.now();
  let sent = 0;
  let failed = 0;
  let lastReport = started;
  let lastSent = 0;
  for (let tick = 0; ; tick++) {
    if (SECONDS && Date.now() - started >= SECONDS * 1000) break;
    const commands = syms.map((s) => {
      price[s] = Math.max(1, price[s] * (1 + (Math.random() - 0.5) / 500));
      seq[s] += 1;
      return { publish: { channel: `ticker:${s}`, data: { s, p: Number(price[s].toFixed(4)), t: Date.now(), n: seq[s] } } };
    });
    try {
      const res = await fetch(`${API}/batch`, {
        method: 'POST',
        headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ commands }),
      });
      const body = await res.json();
      const errors = res.ok ? (body.replies || []).filter((r) => r.error).length : commands.length;
      sent += commands.length - errors;
      failed += errors;
    } catch (e) {
      failed += commands.length;
    }
    const now = Date.now();
    if (now - lastReport >= 1000) {
      const rate = ((sent - lastSent) * 1000) / (now - lastReport);
      console.log(`ticks/s ${rate.toFixed(0)} (target ${SYMBOLS * RATE}), sent ${sent}, failed ${failed}`);
      lastReport = now;
      lastSent = sent;
    }
    // Keep the schedule: the next batch at started + (tick + 1) * period.
    const wait = started + (tick + 1) * period - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  console.log(`done: sent ${sent}, failed ${failed}`);
}

module.exports = { symbols };

if (require.main === module) {
  main().catch((e) => { console.error(e); process.exit(1); });
}
