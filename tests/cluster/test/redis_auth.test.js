'use strict';
// engine.redis.password and engine.redis.user against a real redis-server with requirepass and
// with an ACL user (the default user switched off): the gateway authenticates, publications
// reach a centrifuge-js subscriber, and a wrong password leaves the gateway not ready with an
// ERROR naming the Redis address (never the password).
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');

const { startRedis } = require('../lib/redis');
const {
  redisEngine, startNodes, stopNodes, uniq, clientOn, subscribeCollect, apiCall, waitFor,
} = require('../lib/cluster');
const { startServer } = require('../../js/lib/server');
const { disconnectAll } = require('../../js/lib/clients');

// Characters that must be percent-encoded in a URL's userinfo.
const PASSWORD = 'p@ss w/rd:#1';

async function readyVerbose(node) {
  const res = await fetch(`${node.url}/ready?verbose`);
  return { status: res.status, body: await res.json() };
}

async function roundTrip(node) {
  const ch = uniq('chat:auth');
  const client = await clientOn(node, 'auth-user');
  const sub = await subscribeCollect(client, ch);
  await apiCall(node, 'publish', { channel: ch, data: { n: 1 } });
  await waitFor(() => sub.pubs.length === 1, { timeout: 8000, message: 'the publication arrives' });
  assert.deepEqual(sub.pubs[0].data, { n: 1 });
}

describe('Redis with requirepass', () => {
  let redis;
  let nodes = [];
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    if (redis) await redis.stop();
  });

  it('connects with engine.redis.password and delivers', async () => {
    redis = await startRedis({ extraArgs: ['--requirepass', PASSWORD] });
    nodes = await startNodes(1, redisEngine(redis.address, { extra: { password: PASSWORD } }));
    const r = await readyVerbose(nodes[0]);
    assert.equal(r.status, 200);
    assert.equal(r.body.engine.up, true);
    await roundTrip(nodes[0]);
    assert.doesNotMatch(nodes[0].logs(), /p@ss w\/rd/, 'the password is never logged');
  });

  it('is not ready with a wrong password, with an ERROR that names the address only', async () => {
    const node = await startServer({ engine: redisEngine(redis.address, { extra: { password: 'wrong' } }) });
    try {
      const r = await readyVerbose(node);
      assert.equal(r.status, 503);
      assert.equal(r.body.reason, 'not_initialised');
      await waitFor(() => /ERROR .*redis unreachable/.test(node.logs()), {
        timeout: 5000, interval: 50, message: 'an ERROR about the refused authentication',
      });
      assert.match(node.logs(), new RegExp(`redis=127\\.0\\.0\\.1:${redis.port}`));
      assert.doesNotMatch(node.logs(), /wrong/);
    } finally {
      await node.stop('SIGKILL', 1000).catch(() => {});
    }
  });
});

describe('Redis with an ACL user', () => {
  let redis;
  let nodes = [];
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    if (redis) await redis.stop();
  });

  it('connects as engine.redis.user with its password and delivers', async () => {
    redis = await startRedis({
      extraArgs: ['--user', 'default', 'off', '--user', 'chorus', 'on', `>${PASSWORD}`, '~*', '&*', '+@all'],
    });
    nodes = await startNodes(1, redisEngine(redis.address, { extra: { user: 'chorus', password: PASSWORD } }));
    assert.equal((await readyVerbose(nodes[0])).body.engine.up, true);
    await roundTrip(nodes[0]);
  });
});
