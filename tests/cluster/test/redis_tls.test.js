'use strict';
// TLS to Redis against a real redis-server with a TLS port: rediss:// addresses and
// engine.redis.tls.enabled, verified with engine.redis.tls.server_ca_pem_file; mutual TLS
// (tls-auth-clients yes) with engine.redis.tls.cert_pem_file/key_pem_file; a Redis Cluster over
// TLS; and a server certificate from the wrong CA leaving the gateway not ready with an ERROR.
// The servers keep a plain port too, only for the test's own PINGs; the gateways dial the
// TLS port.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { startRedis, freePort, redisCli } = require('../lib/redis');
const { makeCerts } = require('../lib/certs');
const {
  redisEngine, startNodes, stopNodes, uniq, clientOn, subscribeCollect, apiCall, waitFor,
} = require('../lib/cluster');
const { startServer } = require('../../js/lib/server');
const { disconnectAll } = require('../../js/lib/clients');

async function readyVerbose(node) {
  const res = await fetch(`${node.url}/ready?verbose`);
  return { status: res.status, body: await res.json() };
}

/** A publication on one node reaches a subscriber on the last node. */
async function roundTrip(nodes) {
  const ch = uniq('chat:tls');
  const client = await clientOn(nodes[nodes.length - 1], 'tls-user');
  const sub = await subscribeCollect(client, ch);
  await apiCall(nodes[0], 'publish', { channel: ch, data: { over: 'tls' } });
  await waitFor(() => sub.pubs.length === 1, { timeout: 8000, message: 'the publication arrives' });
  assert.deepEqual(sub.pubs[0].data, { over: 'tls' });
  const h = await apiCall(nodes[0], 'history', { channel: ch, limit: 10 });
  assert.equal(h.publications.length, 1, 'history is kept in Redis over TLS');
}

function tlsArgs(certs, tlsPort, { authClients = 'no', cluster = false } = {}) {
  const a = ['--tls-port', String(tlsPort), '--tls-cert-file', certs.serverCert,
    '--tls-key-file', certs.serverKey, '--tls-ca-cert-file', certs.ca,
    '--tls-auth-clients', authClients];
  if (cluster) a.push('--tls-cluster', 'yes', '--tls-replication', 'yes');
  return a;
}

/** The number of clients connected to `redis` over TLS (CLIENT LIST on the plain port). */
async function tlsClients(redis, tlsPort) {
  const list = await redis.cli(['CLIENT', 'LIST']);
  return list.split('\n').filter((l) => l.includes(`laddr=127.0.0.1:${tlsPort}`)).length;
}

describe('Redis over TLS', () => {
  let certs;
  let redis;
  let tlsPort;
  const started = [];
  before(async () => {
    certs = makeCerts();
    tlsPort = await freePort();
    redis = await startRedis({ extraArgs: tlsArgs(certs, tlsPort, { authClients: 'optional' }) });
  });
  after(async () => {
    disconnectAll();
    for (const n of started) await stopNodes(n);
    if (redis) await redis.stop();
    if (certs) certs.remove();
  });

  it('rediss:// with the CA file: two gateways deliver and keep history', async () => {
    const nodes = await startNodes(2, redisEngine(`rediss://127.0.0.1:${tlsPort}`, {
      extra: { tls: { server_ca_pem_file: certs.ca } },
    }));
    started.push(nodes);
    assert.equal((await readyVerbose(nodes[0])).body.engine.up, true);
    await roundTrip(nodes);
    // Each gateway holds a publish and a subscriber connection on the TLS port.
    assert.ok(await tlsClients(redis, tlsPort) >= 4, 'the gateways dial the TLS port');
  });

  it('tls.enabled turns a host:port address into TLS (localhost, verified by name)', async () => {
    const nodes = await startNodes(1, redisEngine(`localhost:${tlsPort}`, {
      extra: { tls: { enabled: true, server_ca_pem_file: certs.ca } },
    }));
    started.push(nodes);
    await roundTrip(nodes);
  });

  it('a certificate from another CA: not ready, an ERROR naming the address', async () => {
    const node = await startServer({
      engine: redisEngine(`rediss://127.0.0.1:${tlsPort}`, { extra: { tls: { server_ca_pem_file: certs.otherCa } } }),
    });
    try {
      const r = await readyVerbose(node);
      assert.equal(r.status, 503);
      assert.equal(r.body.reason, 'not_initialised');
      await waitFor(() => /ERROR .*redis unreachable/.test(node.logs()), {
        timeout: 5000, interval: 50, message: 'an ERROR about the refused certificate',
      });
      assert.match(node.logs(), new RegExp(`redis=127\\.0\\.0\\.1:${tlsPort}`));
    } finally {
      await node.stop('SIGKILL', 1000).catch(() => {});
    }
  });

  it('a plain connection to the TLS port fails rather than sending data in clear', async () => {
    const node = await startServer({ engine: redisEngine(`127.0.0.1:${tlsPort}`) });
    try {
      assert.equal((await readyVerbose(node)).status, 503);
    } finally {
      await node.stop('SIGKILL', 1000).catch(() => {});
    }
  });
});

describe('Redis over mutual TLS', () => {
  let certs;
  let redis;
  let tlsPort;
  let nodes = [];
  before(async () => {
    certs = makeCerts();
    tlsPort = await freePort();
    redis = await startRedis({ extraArgs: tlsArgs(certs, tlsPort, { authClients: 'yes' }) });
  });
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    if (redis) await redis.stop();
    if (certs) certs.remove();
  });

  it('presents tls.cert_pem_file and delivers', async () => {
    nodes = await startNodes(1, redisEngine(`rediss://127.0.0.1:${tlsPort}`, {
      extra: {
        tls: { server_ca_pem_file: certs.ca, cert_pem_file: certs.clientCert, key_pem_file: certs.clientKey },
      },
    }));
    await roundTrip(nodes);
  });

  it('without a client certificate Redis refuses the handshake', async () => {
    const node = await startServer({
      engine: redisEngine(`rediss://127.0.0.1:${tlsPort}`, { extra: { tls: { server_ca_pem_file: certs.ca } } }),
    });
    try {
      assert.equal((await readyVerbose(node)).status, 503);
      await waitFor(() => /ERROR .*redis unreachable/.test(node.logs()), { timeout: 5000, interval: 50 });
    } finally {
      await node.stop('SIGKILL', 1000).catch(() => {});
    }
  });
});

describe('Redis Cluster over TLS', () => {
  let certs;
  const servers = [];
  let nodes = [];
  after(async () => {
    disconnectAll();
    await stopNodes(nodes);
    await Promise.all(servers.map((s) => s.stop()));
    if (certs) certs.remove();
  });

  it('3 masters with tls-cluster: gateways in cluster mode deliver over TLS', async () => {
    certs = makeCerts();
    // Cluster nodes announce their TLS port (tls-cluster yes), so the gateway must only ever
    // reach them over TLS: the plain ports are for redis-cli's cluster setup.
    const tlsPorts = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort({ bus: true });
      const tp = await freePort({ bus: true });
      tlsPorts.push(tp);
      servers.push(await startRedis({
        port,
        extraArgs: [...tlsArgs(certs, tp, { cluster: true }), '--cluster-enabled', 'yes',
          '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '5000'],
      }));
    }
    await redisCli(servers[0].port, ['--tls', '--cacert', certs.ca, '-p', String(tlsPorts[0]),
      '--cluster', 'create', ...tlsPorts.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
    { timeout: 30000 });
    await waitFor(async () => {
      const infos = await Promise.all(servers.map((s) => s.cli(['cluster', 'info']).catch(() => '')));
      return infos.every((s) => /cluster_state:ok/.test(s) && /cluster_known_nodes:3\b/.test(s));
    }, { timeout: 30000, interval: 100, message: 'the TLS cluster is ok' });
    nodes = await startNodes(2, redisEngine(tlsPorts.map((p) => `rediss://127.0.0.1:${p}`), {
      cluster: true, extra: { tls: { server_ca_pem_file: certs.ca } },
    }));
    await roundTrip(nodes);
  });
});
