'use strict';
// Bounded waiting helpers: no fixed sleeps in tests, every wait has a deadline.

async function waitFor(predicate, { timeout = 5000, interval = 10, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await predicate();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${last instanceof Error ? `: ${last.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Resolves with the first event `name` emitted by `emitter` (args[0]), rejects after `timeout`. */
function once(emitter, name, timeout = 5000, filter = () => true) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      emitter.off ? emitter.off(name, handler) : emitter.removeListener(name, handler);
      reject(new Error(`timed out after ${timeout} ms waiting for event '${name}'`));
    }, timeout);
    function handler(ctx) {
      if (!filter(ctx)) return;
      clearTimeout(t);
      emitter.off ? emitter.off(name, handler) : emitter.removeListener(name, handler);
      resolve(ctx);
    }
    emitter.on(name, handler);
  });
}

/** Collects every `name` event of `emitter` into an array. */
function collect(emitter, name) {
  const items = [];
  emitter.on(name, (ctx) => items.push(ctx));
  return items;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { waitFor, once, collect, sleep };
