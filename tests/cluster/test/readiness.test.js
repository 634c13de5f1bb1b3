'use strict';
// /health and /ready against a real Redis (semantics in crates/chorus-gateway/src/server/readiness.rs
// and docs/metrics.md): a Redis outage does not fail readiness (every pod would leave the Service
// at once) but shows in `/ready?verbose` and `chorus_engine_up`; a gateway that never reached
// its Redis is not ready (reason not_initialised). (503 with reason `draining` during a
// shutdown: crates/chorus-gateway/tests/ws_session.rs.)
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { startRedis, freePort } = require('../lib/redis');
const { redisEngine, startNodes, stopNodes, waitFor } = require('../lib/cluster');
const { startServer } = require('../../js/lib/server');

async function get(node, path) {
  const res = await fetch(`${node.url}${path}`);
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}

function engineUp(metrics) {
  const m = metrics.match(/^chorus_engine_up (\d+)$/m);
  return m ? Number(m[1]) : null;
}

describe('readiness with a Redis engine', () => {
  let redis;
  let nodes = [];
  before(async () => {
    redis = await startRedis();
    nodes = await startNodes(1, redisEngine(redis.address));
  });
  after(async () => {
    await stopNodes(nodes);
    if (redis) await redis.stop();
  });

  it('is ready with Redis up, and stays ready (engine down in the verbose body) while Redis is stopped', async () => {
    const [node] = nodes;
    let r = await get(node, '/ready?verbose');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json(), {
      ready: true,
      reason: null,
      draining: false,
      initialised: true,
      engine: { type: 'redis', up: true },
      presence: { type: 'local' },
    });
    assert.equal((await get(node, '/ready')).text, '{}');
    assert.equal(engineUp((await get(node, '/metrics')).text), 1);

    redis.pause();
    try {
      await waitFor(async () => !(await get(node, '/ready?verbose')).json().engine.up, {
        timeout: 15000, interval: 100, message: 'the gateway notices Redis is gone',
      });
      r = await get(node, '/ready?verbose');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json().ready, true);
      assert.equal(r.json().reason, null);
      assert.equal((await get(node, '/ready')).status, 200);
      assert.equal((await get(node, '/health')).status, 200);
      assert.equal(engineUp((await get(node, '/metrics')).text), 0);
    } finally {
      redis.resume();
    }
    await waitFor(async () => (await get(node, '/ready?verbose')).json().engine.up, {
      timeout: 20000, interval: 100, message: 'the gateway sees Redis again',
    });
    assert.equal(engineUp((await get(node, '/metrics')).text), 1);
  });
});

describe('readiness before the engine was ever reachable', () => {
  it('is not ready (not_initialised) when Redis was never reachable', async () => {
    const port = await freePort();
    const node = await startServer({ engine: redisEngine(`127.0.0.1:${port}`) });
    try {
      const r = await get(node, '/ready?verbose');
      assert.equal(r.status, 503, r.text);
      const body = r.json();
      assert.equal(body.ready, false);
      assert.equal(body.reason, 'not_initialised');
      assert.equal(body.initialised, false);
      assert.deepEqual(body.engine, { type: 'redis', up: false });
      assert.equal((await get(node, '/health')).status, 200);
      // A clear ERROR names the unreachable Redis (repeated with backoff, not per retry).
      await waitFor(async () => /ERROR .*redis unreachable/.test(node.logs()), {
        timeout: 5000, interval: 50, message: 'an ERROR line about the unreachable Redis',
      });
      assert.match(node.logs(), new RegExp(`redis=127\\.0\\.0\\.1:${port}`));
    } finally {
      await node.stop('SIGKILL', 1000).catch(() => {});
    }
  });

});
