'use strict';
// The session timers of centrifuge-js on the fallback transports (`http_stream` JSON and
// Protobuf, `sse`): the server's pings arrive on the stream and the SDK's pongs go back
// through `/emulation`, so a client stays connected across several ping intervals; an
// expiring connection token is renewed by the SDK (`getToken`, then a `refresh` command
// through `/emulation`) before the server would close the session with 3005. The three
// transports run side by side in each test, against one server.
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { startServer } = require('../lib/server');
const { testConfig } = require('../lib/config');
const { connToken, now } = require('../lib/jwt');
const { disconnectAll, subscribe } = require('../lib/clients');
const { CASES, closedPort, fallbackConnected } = require('../lib/fallback');
const { waitFor, sleep } = require('../lib/util');

/** The value of one exposition series on `srv`'s /metrics (0 when absent). */
async function metric(srv, series) {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('centrifuge-js session timers on the fallback transports', () => {
  let srv;
  let deadPort;
  before(async () => {
    srv = await startServer(
      testConfig({
        client: { ping_interval: '1s', pong_timeout: '500ms', expired_close_delay: '1s' },
        http_stream: { enabled: true },
        sse: { enabled: true },
      }),
    );
    deadPort = await closedPort();
  });
  after(async () => {
    disconnectAll();
    if (srv) await srv.stop();
  });
  afterEach(() => disconnectAll());

  /** Watches a connected client: every state change after `connected` is a failure. */
  const watch = (c) => {
    const events = [];
    for (const name of ['connecting', 'disconnected']) {
      c.on(name, (ctx) => events.push({ name, code: ctx.code, reason: ctx.reason }));
    }
    return events;
  };

  it('stays connected across pings: the pongs travel through /emulation', async () => {
    const pingsBefore = await metric(srv, 'chorus_client_messages_sent_total{type="ping"}');
    const clients = await Promise.all(
      CASES.map((k) => fallbackConnected(srv, deadPort, k, `pinger-${k.transport}-${k.protocol}`)),
    );
    const events = clients.map(({ c }) => watch(c));
    // First ping within [0.5, 1] s, then every second; each pong due within 500 ms.
    await sleep(3600);
    CASES.forEach((k, i) => {
      assert.deepEqual(events[i], [], `${k.transport} ${k.protocol}: stayed connected`);
      assert.equal(clients[i].c.state, 'connected');
    });
    const pings = (await metric(srv, 'chorus_client_messages_sent_total{type="ping"}')) - pingsBefore;
    assert.ok(pings >= 3 * CASES.length, `at least 3 pings per client, got ${pings}`);
    assert.equal(await metric(srv, 'chorus_client_disconnects_total{code="3012"}'), 0);
    // Still served: a round trip through /emulation.
    for (const [i, { c }] of clients.entries()) await subscribe(c, `chat:pings${i}`);
  });

  it('refreshes an expiring token through /emulation instead of being closed (3005)', async () => {
    const clients = await Promise.all(
      CASES.map(async (k) => {
        const user = `refresher-${k.transport}-${k.protocol}`;
        const issued = [];
        // Each token lives 2 s: the SDK is told ttl 2 and asks for the next one then.
        const getToken = async () => {
          issued.push(Date.now());
          return connToken(user, { exp: now() + 2 });
        };
        const { c, ctx } = await fallbackConnected(srv, deadPort, k, user, {
          token: '',
          getToken,
        });
        return { c, ctx, issued, k };
      }),
    );
    const events = clients.map(({ c }) => watch(c));
    const refreshesBefore = await metric(srv, 'chorus_client_commands_total{method="refresh"}');
    // Two refreshes each: past the first token's expiry plus the 1 s grace.
    await waitFor(() => clients.every(({ issued }) => issued.length >= 3), {
      timeout: 9000,
      message: 'two token refreshes per client',
    });
    for (const [i, { c, ctx, k }] of clients.entries()) {
      assert.equal(ctx.transport, k.transport);
      assert.deepEqual(events[i], [], `${k.transport} ${k.protocol}: never disconnected`);
      assert.equal(c.state, 'connected');
    }
    const refreshes = async () =>
      (await metric(srv, 'chorus_client_commands_total{method="refresh"}')) - refreshesBefore;
    await waitFor(async () => (await refreshes()) >= 2 * CASES.length, {
      interval: 50,
      message: 'two refresh commands per client at the server',
    });
    assert.equal(await metric(srv, 'chorus_client_disconnects_total{code="3005"}'), 0);
    // The refreshed sessions still answer.
    for (const [i, { c }] of clients.entries()) await subscribe(c, `chat:refresh${i}`);
  });
});
