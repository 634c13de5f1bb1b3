"""Presence across a real cluster: redis-server, two `chorus presence` replicas and three
gateways (`chorus serve` with `presence.endpoints`), centrifuge-python users, and the Python
gRPC client generated from proto/presence.proto asking the replicas directly.

Covers issue 7 §3 with real processes: room presence and user status exact on both replicas
with users on three gateways; Watch (join, leave, online, offline); kill -9 and SIGTERM of a
gateway (queries and leave pushes); kill and restart of a replica; the service absent when a
gateway starts.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Dict, List, Optional

import grpc
import pytest
import requests

from chorus_server import API_KEY, ChorusServer, conn_token, deep_merge, start_server, test_config, uniq
from helpers import SubEvents, connect, run, subscribe, wait_for
from presence_procs import PRESENCE_KEY, Redis, Replica, auth, free_port, presence_pb

LEASE = "1s"
LEASE_S = 1.0


def gateway(redis: Redis, replicas: List[Replica], extra: Optional[Dict[str, Any]] = None, prefix: str = "pc") -> ChorusServer:
    config = deep_merge(
        test_config(),
        {
            "engine": {"type": "redis", "redis": {"address": f"127.0.0.1:{redis.port}", "prefix": prefix}},
            "presence": {
                "endpoints": [r.url for r in replicas],
                "key": PRESENCE_KEY,
                "flush_interval": "20ms",
            },
            "shutdown": {"drain_window": "3s", "timeout": "10s"},
        },
    )
    return start_server(deep_merge(config, extra or {}))


@pytest.fixture
def cluster():
    """Redis, two replicas (ready) and three gateways; everything stopped after the test."""
    redis = Redis()
    replicas = [Replica(free_port(), LEASE).start() for _ in range(2)]
    for r in replicas:
        r.wait_ready()
    prefix = uniq("pc")
    gateways = [gateway(redis, replicas, prefix=prefix) for _ in range(3)]
    yield redis, replicas, gateways
    for g in gateways:
        g.stop(grace=3)
    for r in replicas:
        r.stop()
    redis.stop()


def room_users(replica: Replica, channel: str) -> List[str]:
    m, _ = presence_pb()
    resp = replica.stub().Presence(m.PresenceRequest(channel=channel), metadata=auth(), timeout=3)
    return sorted(info.user for info in resp.presence.values())


def api(srv: ChorusServer, method: str, body: Dict[str, Any]) -> Dict[str, Any]:
    r = requests.post(f"{srv.api_url}/{method}", json=body, headers={"X-API-Key": API_KEY}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


async def eventually(what: str, check, timeout: float = 5.0) -> None:
    await wait_for(check, timeout=timeout, message=what)


def test_presence_and_user_status_exact_on_both_replicas(cluster):
    _, replicas, gws = cluster
    ch, other = uniq("chat:room"), uniq("chat:other")
    m, _ = presence_pb()

    async def body():
        clients = []
        for user, gw, channels in (
            ("alice", gws[0], [ch]),
            ("bob", gws[1], [ch]),
            ("carol", gws[2], [ch, other]),
        ):
            c, _ = await connect(gw.ws_url, conn_token(user, info={"name": user}))
            for channel in channels:
                await subscribe(c, channel)
            clients.append(c)
        try:
            for r in replicas:
                # Each subscription reaches the replicas in its gateway's next batch: wait for
                # carol's second channel too, not only for the room.
                await eventually(f"room on {r.url}", lambda r=r: room_users(r, ch) == ["alice", "bob", "carol"])
                await eventually(f"carol's other channel on {r.url}", lambda r=r: room_users(r, other) == ["carol"])
                stub = r.stub()
                resp = stub.Presence(m.PresenceRequest(channel=ch), metadata=auth())
                nodes = {info.node for info in resp.presence.values()}
                assert len(nodes) == 3, nodes  # one entry per gateway node
                stats = stub.PresenceStats(m.PresenceStatsRequest(channel=ch), metadata=auth())
                assert (stats.num_clients, stats.num_users) == (3, 3)
                st = stub.UserStatus(m.UserStatusRequest(users=["carol", "dave", "alice"]), metadata=auth()).statuses
                assert [(s.user, s.online, s.num_clients, sorted(s.channels)) for s in st] == [
                    ("carol", True, 1, sorted([ch, other])),
                    ("dave", False, 0, []),
                    ("alice", True, 1, [ch]),
                ]
            # The gateways answer from the service: the same list from any of them.
            for gw in gws:
                presence = api(gw, "presence", {"channel": ch})["result"]["presence"]
                assert sorted(i["user"] for i in presence.values()) == ["alice", "bob", "carol"]
            statuses = api(gws[1], "user_status", {"users": ["alice", "zed"]})["result"]["statuses"]
            assert statuses == [
                {"user": "alice", "online": True, "num_clients": 1, "channels": [ch]},
                {"user": "zed", "online": False, "num_clients": 0, "channels": []},
            ]
        finally:
            for c in clients:
                await c.disconnect()

    run(body())


def test_watch_sees_join_leave_online_offline(cluster):
    _, replicas, gws = cluster
    ch = uniq("chat:watch")
    m, _ = presence_pb()
    events: "queue.Queue" = queue.Queue()
    stream = replicas[1].stub().Watch(m.WatchRequest(channels=[ch], users=["erin"]), metadata=auth())

    def follow():
        try:
            for ev in stream:
                events.put((m.PresenceEvent.Kind.Name(ev.kind), ev.channel, ev.info.user))
        except grpc.RpcError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.3)

    async def body():
        c, _ = await connect(gws[2].ws_url, conn_token("erin"))
        sub, _ = await subscribe(c, ch)
        got = sorted(events.get(timeout=5) for _ in range(2))
        assert got == [("JOIN", ch, "erin"), ("USER_ONLINE", ch, "erin")]
        await sub.unsubscribe()
        got = sorted(events.get(timeout=5) for _ in range(2))
        assert got == [("LEAVE", ch, "erin"), ("USER_OFFLINE", ch, "erin")]
        await c.disconnect()

    run(body())
    stream.cancel()


def kill_or_stop_gateway(signal_kind: str, cluster) -> float:
    """A member on gateway 0, a victim on gateway 2; `signal_kind` ends gateway 2. Returns how
    long after the signal the victim was gone from both replicas; asserts the member's leave."""
    _, replicas, gws = cluster
    ch = uniq("chat:crash")
    result: Dict[str, float] = {}

    async def body():
        member, _ = await connect(gws[0].ws_url, conn_token("member"))
        victim, _ = await connect(gws[2].ws_url, conn_token("victim"))
        try:
            _, member_ev = await subscribe(member, ch)
            await subscribe(victim, ch)
            for r in replicas:
                await eventually("both present", lambda r=r: room_users(r, ch) == ["member", "victim"])
            member_ev.leaves.clear()
            started = time.monotonic()
            if signal_kind == "kill":
                gws[2].proc.kill()
            else:
                gws[2].proc.terminate()
            for r in replicas:
                await eventually("victim gone", lambda r=r: room_users(r, ch) == ["member"], timeout=LEASE_S + 4)
            result["gone_after"] = time.monotonic() - started
            await eventually("leave push", lambda: len(member_ev.leaves) >= 1, timeout=5)
            assert [l.info.user for l in member_ev.leaves] == ["victim"]
            # Exactly one leave for the victim, whatever path announced it.
            time.sleep(1.5)
            assert [l.info.user for l in member_ev.leaves] == ["victim"]
        finally:
            await member.disconnect()
            await victim.disconnect()

    run(body())
    return result["gone_after"]


def test_kill_9_of_a_gateway(cluster):
    gone_after = kill_or_stop_gateway("kill", cluster)
    # No query lists its clients after lease_ttl + 1 s.
    assert gone_after <= LEASE_S + 1.0, gone_after


def test_sigterm_of_a_gateway(cluster):
    gone_after = kill_or_stop_gateway("term", cluster)
    # At once (<= 1 s), although the gateway drains its connections over 3 s.
    assert gone_after <= 1.0, gone_after


def test_replica_killed_and_restarted(cluster):
    _, replicas, gws = cluster
    ch = uniq("chat:ha")

    async def body():
        a, _ = await connect(gws[0].ws_url, conn_token("ann"))
        b, _ = await connect(gws[1].ws_url, conn_token("ben"))
        try:
            await subscribe(a, ch)
            await subscribe(b, ch)
            await eventually("present", lambda: room_users(replicas[0], ch) == ["ann", "ben"])
            replicas[0].kill()
            # The gateways fail over to the other replica: still exact.
            for gw in gws:
                presence = api(gw, "presence", {"channel": ch})["result"]["presence"]
                assert sorted(i["user"] for i in presence.values()) == ["ann", "ben"]
            # Restarted on the same port: complete again within one lease (its warm-up).
            started = time.monotonic()
            replicas[0].start()
            replicas[0].wait_ready(timeout=LEASE_S + 5)
            assert room_users(replicas[0], ch) == ["ann", "ben"]
            assert time.monotonic() - started <= LEASE_S + 2
        finally:
            await a.disconnect()
            await b.disconnect()

    run(body())


def test_service_absent_when_a_gateway_starts():
    redis = Redis()
    port = free_port()
    absent = Replica(port, LEASE)
    gw = gateway(redis, [absent], prefix=uniq("pc"))
    ch = uniq("chat:early")

    async def body():
        c, ev = await connect(gw.ws_url, conn_token("early"))
        try:
            # Subscribes work without any replica; presence answers 100 (never a partial list).
            await subscribe(c, ch)
            assert api(gw, "presence", {"channel": ch})["error"]["code"] == 100
            assert api(gw, "user_status", {"users": ["early"]})["error"]["code"] == 100
            absent.start()
            absent.wait_ready(timeout=LEASE_S + 5)
            await eventually("present once the service is up", lambda: "result" in api(gw, "presence", {"channel": ch}), timeout=LEASE_S + 3)
            presence = api(gw, "presence", {"channel": ch})["result"]["presence"]
            assert [i["user"] for i in presence.values()] == ["early"]
            assert ev.disconnected == []
        finally:
            await c.disconnect()

    try:
        run(body())
    finally:
        gw.stop()
        absent.stop()
        redis.stop()
