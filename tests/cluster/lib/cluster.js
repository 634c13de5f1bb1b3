'use strict';
// N chorus gateway processes sharing one Redis engine (standalone, shards or Redis Cluster),
// plus small helpers the cluster tests share. Reuses tests/js/lib (server launcher, SDK
// clients, JWTs, API client, bounded waits).
//
//   const nodes = await startNodes(3, redisEngine(r.address));
//   nodes[i].url / wsUrl / apiUrl / proc ... (see tests/js/lib/server.js); await stopNodes(nodes)

const assert = require('node:assert/strict');
const { startServer } = require('../../js/lib/server');
const { connectClient, subscribe } = require('../../js/lib/clients');
const { connToken } = require('../../js/lib/jwt');
const { apiCall } = require('../../js/lib/api');
const { waitFor, once, collect, sleep } = require('../../js/lib/util');

const chatOptions = {
  presence: true,
  join_leave: true,
  force_push_join_leave: true,
  history_size: 1000,
  history_ttl: '300s',
  force_recovery: true,
  allow_subscribe_for_client: true,
  allow_publish_for_subscriber: true,
  allow_history_for_subscriber: true,
  allow_presence_for_subscriber: true,
};

/** `engine` section: one address (string), independent shards (array), or a Redis Cluster. */
function redisEngine(address, { cluster = false, extra = {} } = {}) {
  const redis = { address, ...extra };
  if (cluster) redis.cluster = true;
  return { type: 'redis', redis };
}

function nodeConfig(engine, name, extra = {}) {
  return {
    node: { name },
    engine,
    client: { ping_interval: '25s', pong_timeout: '8s' },
    channel: {
      without_namespace: { ...chatOptions },
      namespaces: [{ name: 'chat', ...chatOptions }],
    },
    ...extra,
  };
}

/** Starts `n` nodes named node-0..node-(n-1) in parallel. */
async function startNodes(n, engine, { extra = {}, names } = {}) {
  const started = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => startServer(nodeConfig(engine, names ? names[i] : `node-${i}`, extra))),
  );
  const ok = started.filter((s) => s.status === 'fulfilled').map((s) => s.value);
  const bad = started.find((s) => s.status === 'rejected');
  if (bad) {
    await stopNodes(ok);
    throw bad.reason;
  }
  ok.forEach((s, i) => { s.name = names ? names[i] : `node-${i}`; });
  try {
    await waitClusterFormed(ok);
  } catch (e) {
    await stopNodes(ok);
    throw e;
  }
  return ok;
}

/**
 * Waits until every node's `info` lists all `nodes` (heartbeats every 3 s): before that a
 * node does not know its peers and cluster-wide surveys (presence, channels) leave them out.
 */
async function waitClusterFormed(nodes, timeout = 12000) {
  let last;
  await waitFor(async () => {
    last = await Promise.all(nodes.map(async (n) => (await apiCall(n, 'info', {})).nodes.length));
    return last.every((k) => k === nodes.length);
  }, { timeout, interval: 100, message: `every node's info lists ${nodes.length} nodes` }).catch((e) => {
    throw new Error(`${e.message}; last counts ${JSON.stringify(last)}`);
  });
}

async function stopNodes(nodes) {
  await Promise.all((nodes || []).filter(Boolean).map((s) => s.stop('SIGKILL', 1000).catch(() => {})));
}

/** kill -9 a node and wait for it to be gone. */
async function kill9(node) {
  if (node.proc.exitCode === null && node.proc.signalCode === null) node.proc.kill('SIGKILL');
  await node.exited;
}

let seq = 0;
const uniq = (prefix) => `${prefix}${process.pid}x${Date.now() % 100000}x${++seq}`;

/** JSON centrifuge-js client of `user` connected to `node`. */
function clientOn(node, user, opts = {}) {
  return connectClient(node, 'json', { token: connToken(user), ...opts });
}

/** Subscribes and starts collecting publications right away (no gap). */
async function subscribeCollect(client, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  sub.on('error', () => {});
  const pubs = collect(sub, 'publication');
  const joins = collect(sub, 'join');
  const leaves = collect(sub, 'leave');
  const subscribedEvents = collect(sub, 'subscribed');
  const subscribed = once(sub, 'subscribed', 10000);
  sub.subscribe();
  const ctx = await subscribed;
  return { sub, ctx, pubs, joins, leaves, subscribedEvents };
}

/** Publish through the HTTP API, retrying temporary errors (code 100 / network) until `deadline`. */
async function publishRetry(node, body, { timeout = 30000, onError } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await apiCall(typeof node === 'function' ? node() : node, 'publish', body);
    } catch (e) {
      if (onError) onError(e);
      if (e.code !== undefined && e.code !== 100) throw e;
      if (Date.now() > deadline) throw new Error(`publish ${JSON.stringify(body)} did not succeed within ${timeout} ms: ${e.message}`);
      await sleep(50);
    }
  }
}

/** Parsed Prometheus text of a node: { 'name{labels}': value, ... } and a sum-by-name helper. */
async function metrics(node) {
  const res = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  const text = await res.text();
  const samples = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^(\S+)\s+(\S+)/);
    if (m) samples[m[1]] = Number(m[2]);
  }
  const sum = (name) => Object.entries(samples)
    .filter(([k]) => k === name || k.startsWith(`${name}{`))
    .reduce((a, [, v]) => a + v, 0);
  return { text, samples, sum };
}

/** Asserts the publications carry seq 1..n exactly once and in order (no dedupe here). */
function assertSeq(pubs, n, label) {
  const got = pubs.map((p) => p.data.seq);
  const want = Array.from({ length: n }, (_, i) => i + 1);
  if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
    const dups = got.filter((v, i) => got.indexOf(v) !== i);
    const missing = want.filter((v) => !got.includes(v));
    const outOfOrder = got.findIndex((v, i) => i > 0 && v <= got[i - 1]);
    assert.fail(`${label}: got ${got.length} publications, want ${n}; duplicates ${JSON.stringify(dups.slice(0, 20))}; `
      + `missing ${JSON.stringify(missing.slice(0, 20))}; first out-of-order index ${outOfOrder}`);
  }
}

module.exports = {
  chatOptions, redisEngine, nodeConfig, startNodes, waitClusterFormed, stopNodes, kill9, uniq, clientOn,
  subscribeCollect, publishRetry, metrics, assertSeq, apiCall, waitFor, once, collect, sleep, connToken, subscribe,
};
