"""The presence service (`chorus presence`, the real binary) from a Python gRPC client
generated from proto/presence.proto at test time (grpcio-tools into a temp dir).

Python plays a gateway over Sync (Hello, snapshot, deltas) and a query client (Presence,
PresenceStats, UserStatus, Watch), with the key as `authorization: apikey <key>` metadata.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time

import grpc
import pytest

from chorus_server import BIN
from presence_procs import presence_pb

KEY = "py-presence-key"
LISTENING = re.compile(r"^chorus presence listening on http://(\S+) ")


@pytest.fixture(scope="module")
def pb():
    return presence_pb()


@pytest.fixture
def service():
    if not BIN.exists():
        pytest.fail(f"chorus binary not found at {BIN}")
    proc = subprocess.Popen(
        [str(BIN), "presence", "-p", "0", "--metrics-port", "0", "-a", "127.0.0.1",
         "--set", "presence_server.lease_ttl=1s"],
        env={**os.environ, "CHORUS_PRESENCE_SERVER_KEY": KEY, "RUST_LOG": "warn"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    m = LISTENING.match(line)
    assert m, line
    yield m.group(1)
    proc.terminate()
    assert proc.wait(5) == 0


def auth():
    return (("authorization", f"apikey {KEY}"),)


def test_python_client_feeds_and_queries_the_service(pb, service):
    m, s = pb
    channel = grpc.insecure_channel(service)
    stub = s.PresenceStub(channel)

    # Wrong key: UNAUTHENTICATED.
    with pytest.raises(grpc.RpcError) as e:
        stub.PresenceStats(m.PresenceStatsRequest(channel="room"), metadata=(("authorization", "apikey no"),))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # A gateway: Hello, a snapshot, then deltas fed from a queue.
    outbound: "queue.Queue" = queue.Queue()
    outbound.put(m.NodeMessage(hello=m.Hello(node="py-gw", session="py")))
    snap = [m.Entry(channel="room", info=m.ClientInfo(user="alice", client="c1", conn_info=b'{"n":1}'))]
    outbound.put(m.NodeMessage(snapshot=m.SnapshotChunk(entries=snap, last=True, seq=1)))

    def requests():
        while True:
            item = outbound.get()
            if item is None:
                return
            yield item

    inbound = stub.Sync(requests(), metadata=auth())
    received: "queue.Queue" = queue.Queue()
    reader = threading.Thread(target=lambda: [received.put(x) for x in inbound], daemon=True)
    reader.start()
    first = received.get(timeout=3)
    assert first.WhichOneof("kind") == "welcome"
    assert first.welcome.lease_ttl_ms == 1000
    assert received.get(timeout=3).ack.seq == 1
    seq = 1

    def send_and_ack(**kind):
        nonlocal seq
        seq += 1
        name, msg = next(iter(kind.items()))
        msg.seq = seq
        outbound.put(m.NodeMessage(**{name: msg}))
        assert received.get(timeout=3).ack.seq == seq

    # Reads answer UNAVAILABLE during the warm-up (one lease), then exactly. The node
    # heartbeats meanwhile (its lease is one second too).
    deadline = time.monotonic() + 5
    while True:
        send_and_ack(heartbeat=m.Heartbeat())
        try:
            resp = stub.Presence(m.PresenceRequest(channel="room"), metadata=auth())
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert set(resp.presence) == {"c1"}
    assert resp.presence["c1"].user == "alice"
    assert resp.presence["c1"].node == "py-gw"
    assert resp.presence["c1"].conn_info == b'{"n":1}'

    # Watch the room and bob, then add bob.
    events: "queue.Queue" = queue.Queue()
    watch = stub.Watch(m.WatchRequest(channels=["room"], users=["bob"]), metadata=auth())

    def follow():
        try:
            for ev in watch:
                events.put(ev)
        except grpc.RpcError as err:  # cancelled at the end of the test
            assert err.code() == grpc.StatusCode.CANCELLED

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.2)
    add = m.Delta(add=m.Entry(channel="room", info=m.ClientInfo(user="bob", client="c2")))
    send_and_ack(deltas=m.Deltas(deltas=[add]))
    got = [events.get(timeout=3), events.get(timeout=3)]
    kinds = [(m.PresenceEvent.Kind.Name(ev.kind), ev.channel, ev.info.client) for ev in got]
    assert kinds == [("JOIN", "room", "c2"), ("USER_ONLINE", "room", "c2")]

    stats = stub.PresenceStats(m.PresenceStatsRequest(channel="room"), metadata=auth())
    assert (stats.num_clients, stats.num_users) == (2, 2)
    users = [f"user{i}" for i in range(998)] + ["bob", "alice"]
    st = stub.UserStatus(m.UserStatusRequest(users=users), metadata=auth()).statuses
    assert [x.user for x in st] == users
    assert [x.user for x in st if x.online] == ["bob", "alice"]
    assert list(st[-1].channels) == ["room"]

    # Goodbye: the node's entries go at once, the watcher sees the leaves.
    outbound.put(m.NodeMessage(goodbye=m.Goodbye()))
    outbound.put(None)
    reader.join(3)
    assert not reader.is_alive()
    resp = stub.Presence(m.PresenceRequest(channel="room"), metadata=auth())
    assert len(resp.presence) == 0
    left = sorted(
        (m.PresenceEvent.Kind.Name(ev.kind), ev.info.client)
        for ev in [events.get(timeout=3) for _ in range(3)]
    )
    assert left == [("LEAVE", "c1"), ("LEAVE", "c2"), ("USER_OFFLINE", "c2")]
    watch.cancel()
    channel.close()
