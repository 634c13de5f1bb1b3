"""Issue 6, HTTP rows (1, 2, 3, 10): request hygiene, connection shedding and WebSocket upgrade
strictness of the real binary, each bounded in time and size.

    cargo build -p chorus && cd tests/hostile && ../../.venv/bin/python -m pytest -q test_http.py

Measurements are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
import urllib.request
from typing import Dict, List, Optional, Tuple

from chorus_server import ChorusServer, conn_token, uniq
from hostile import JsonClient, closed_by_peer, connect_raw, read_response

# 127.0.0.2-127.0.0.11: 100 connections per source address at most, far from exhausting
# ephemeral ports whatever TIME_WAIT earlier tests left.
SOURCES = [f"127.0.0.{i}" for i in range(2, 12)]


def source(i: int) -> str:
    return SOURCES[i % len(SOURCES)]


def api_publish(srv: ChorusServer, channel: str, data: Dict, key: Optional[str] = None) -> int:
    """One publication through the HTTP API on a fresh connection; returns the status."""
    req = urllib.request.Request(
        f"{srv.api_url}/publish",
        data=json.dumps({"channel": channel, "data": data}).encode(),
        headers={"X-API-Key": key or srv.api_key, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def metric(srv: ChorusServer, series: str) -> float:
    """The value of one exact series of /metrics (0 when absent)."""
    with urllib.request.urlopen(f"{srv.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def cpu_seconds(srv: ChorusServer) -> float:
    """User + system CPU time the server has used, from /proc/PID/stat."""
    with open(f"/proc/{srv.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples the server's RSS every 50 ms in a thread; `peak` in KiB."""

    def __init__(self, srv: ChorusServer) -> None:
        self.srv = srv
        self.peak = srv.rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.srv.rss_kib())
            except (OSError, RuntimeError):
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


async def subscribed(srv: ChorusServer, channel: str) -> JsonClient:
    client = await JsonClient.connect(srv.ws_url, token=conn_token(uniq("u")))
    reply = await client.call({"subscribe": {"channel": channel}})
    assert "error" not in reply, reply
    return client


# ---------------------------------------------------------------------------
# row 1: 1,000 x POST /api/publish, wrong key, Content-Length 1 MiB
# ---------------------------------------------------------------------------

ROW1_CONNECTIONS = 1000
ROW1_BODY_SENT = 64 << 10  # of the 1 MiB announced
# Measured on the 2-core dev machine (debug build, 2 runs): baseline 14.0 MiB, peak +2.6 MiB
# during the attack. Before the fix each connection buffered its whole body (1.06 GB for
# 1,000 in the issue); 64 MiB leaves room for allocator noise, not for buffered bodies.
ROW1_RSS_BOUND_KIB = 64 << 10


def row1_attack(srv: ChorusServer) -> List[int]:
    """Opens every connection, sends the head and the first 64 KiB of the body, then reads
    every answer. Returns the statuses (0 = closed without an answer)."""
    head = (
        "POST /api/publish HTTP/1.1\r\nHost: chorus\r\nX-API-Key: wrong-key\r\n"
        "Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    ).encode()
    part = b'{"channel":"chat:x","data":"' + b"x" * (ROW1_BODY_SENT - 28)
    socks = []
    for i in range(ROW1_CONNECTIONS):
        s = connect_raw(srv.host, srv.port, source_ip=source(i), timeout=10)
        s.sendall(head)
        socks.append(s)
    for s in socks:
        # The server may already have answered and closed: a failed write is expected.
        try:
            s.settimeout(0.5)
            s.sendall(part)
        except OSError:
            pass
    statuses = []
    for s in socks:
        try:
            status, _, _ = read_response(s, timeout=10)
        except (TimeoutError, OSError):
            status = -1
        statuses.append(status)
        s.close()
    return statuses


def test_row1_wrong_key_is_refused_from_the_headers_without_buffering_bodies(start_chorus):
    srv = start_chorus()
    started = time.monotonic()

    async def scenario() -> Tuple[List[int], int, int, List[int]]:
        bystander = await subscribed(srv, "chat:bystander")
        assert api_publish(srv, "chat:bystander", {"n": 0}) == 200
        await bystander.drain(0.5)
        baseline = srv.rss_kib()
        sampler = RssSampler(srv)
        attack = asyncio.ensure_future(asyncio.to_thread(row1_attack, srv))
        n = 0
        while not attack.done():
            n += 1
            assert await asyncio.to_thread(api_publish, srv, "chat:bystander", {"n": n}) == 200
            await bystander.drain(0.1)
        statuses = await attack
        for _ in range(5):
            n += 1
            assert await asyncio.to_thread(api_publish, srv, "chat:bystander", {"n": n}) == 200
        await bystander.drain(1.0)
        peak = sampler.stop()
        received = [p["data"]["n"] for p in bystander.publications("chat:bystander")]
        await bystander.close()
        return statuses, baseline, peak, received + [n]

    statuses, baseline, peak, received = asyncio.run(scenario())
    last = received.pop()
    took = time.monotonic() - started
    print(
        f"\nrow 1: {len(statuses)} connections, statuses {sorted(set(statuses))}, "
        f"RSS baseline {baseline} KiB, peak {peak} KiB (+{peak - baseline} KiB), "
        f"bystander got {len(received)} publications, {took:.1f} s"
    )
    assert statuses == [401] * ROW1_CONNECTIONS, {s: statuses.count(s) for s in set(statuses)}
    assert peak - baseline <= ROW1_RSS_BOUND_KIB, (baseline, peak)
    # Every publication, in order, during and after the attack.
    assert received == list(range(0, last + 1)), received
    assert metric(srv, 'chorus_api_errors_total{method="publish",code="http_401"}') == ROW1_CONNECTIONS
    assert took < 120


# ---------------------------------------------------------------------------
# row 2: dripped body, Content-Length without body
# ---------------------------------------------------------------------------


def test_row2_slow_bodies_get_408_at_request_timeout(start_chorus):
    srv = start_chorus({"http_server": {"request_timeout": "2s"}})
    head = (
        f"POST /api/publish HTTP/1.1\r\nHost: chorus\r\nX-API-Key: {srv.api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n"
    ).encode()

    def one(drip: bool) -> Tuple[int, bytes, float, bool]:
        s = connect_raw(srv.host, srv.port)
        started = time.monotonic()
        s.sendall(head)
        stop = threading.Event()

        def dripper() -> None:
            # One byte every 2 s — the attack of the issue — until answered.
            while not stop.wait(2.0 if drip else 60):
                try:
                    s.send(b"{")
                except OSError:
                    return

        if drip:
            s.send(b"{")
            threading.Thread(target=dripper, daemon=True).start()
        status, headers, body = read_response(s, timeout=15)
        took = time.monotonic() - started
        closed = closed_by_peer(s, 5)
        stop.set()
        s.close()
        assert headers.get("connection") == "close", headers
        return status, body, took, closed

    for drip in (True, False):
        status, body, took, closed = one(drip)
        print(f"\nrow 2: drip={drip}: {status} after {took:.2f} s, closed={closed}")
        assert (status, body) == (408, b"request timeout\n"), (drip, status, body)
        assert 1.9 <= took < 5.0, took  # the issue saw > 80 s
        assert closed

    # Another route with an announced body that never comes: answered and closed at once.
    s = connect_raw(srv.host, srv.port)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: chorus\r\nContent-Length: 10\r\n\r\n")
    status, _, _ = read_response(s, timeout=5)
    started = time.monotonic()
    assert status == 200
    assert closed_by_peer(s, 5)
    assert time.monotonic() - started < 1.0
    s.close()
    assert metric(srv, 'chorus_http_request_timeouts_total{phase="body"}') == 2


# ---------------------------------------------------------------------------
# row 3: stalled connections at the open-files limit
# ---------------------------------------------------------------------------

ROW3_NOFILE = 1024
ROW3_STALLED = 1200


def open_stalled(srv: ChorusServer, n: int) -> List[socket.socket]:
    """Connections that never complete a request: half send nothing, half half a header."""
    socks = []
    for i in range(n):
        try:
            s = connect_raw(srv.host, srv.port, source_ip=source(i), timeout=5)
            if i % 2:
                s.sendall(b"GET /connection/websocket HTTP/1.1\r\nHost: ch")
        except OSError:
            continue
        socks.append(s)
    return socks


def real_client_gets_through(srv: ChorusServer, channel: str) -> List[Dict]:
    async def go() -> List[Dict]:
        client = await subscribed(srv, channel)
        status = await asyncio.to_thread(api_publish, srv, channel, {"hello": "through"})
        assert status == 200
        await client.drain(1.0)
        pubs = client.publications(channel)
        await client.close()
        return pubs

    return asyncio.run(asyncio.wait_for(go(), 30))


def test_row3_stalled_connections_are_shed_and_real_clients_get_in(start_chorus):
    srv = start_chorus(nofile=ROW3_NOFILE)
    budget = metric(srv, "chorus_http_connections_max")
    assert budget == ROW3_NOFILE - 256
    started = time.monotonic()

    async def established() -> JsonClient:
        return await subscribed(srv, "chat:before")

    loop = asyncio.new_event_loop()
    try:
        before = loop.run_until_complete(established())
        stalled = open_stalled(srv, ROW3_STALLED)
        fds = srv.open_fds()
        pubs = real_client_gets_through(srv, "chat:row3")
        fds_after = srv.open_fds()
        # The session established before the attack was never shed: it still gets publications.
        assert api_publish(srv, "chat:before", {"still": "here"}) == 200
        loop.run_until_complete(before.drain(1.0))
        survived = before.publications("chat:before")
        loop.run_until_complete(before.close())
    finally:
        loop.close()
    shed = metric(srv, 'chorus_http_connections_shed_total{state="pending"}')
    refused = metric(srv, "chorus_http_connections_refused_total")
    closed = sum(1 for s in stalled if peer_closed_now(s))
    took = time.monotonic() - started
    print(
        f"\nrow 3: budget {budget:.0f}, {len(stalled)} stalled opened, server fds {fds} "
        f"(then {fds_after}), "
        f"{shed:.0f} shed, {refused:.0f} refused, {closed} seen closed, {took:.1f} s"
    )
    for s in stalled:
        s.close()
    assert [p["data"] for p in pubs] == [{"hello": "through"}]
    assert [p["data"] for p in survived] == [{"still": "here"}]
    assert shed >= ROW3_STALLED - budget, shed
    assert closed >= ROW3_STALLED - budget, closed
    assert refused == 0
    # Shed sockets close before more are accepted: never near the open-files limit.
    assert fds <= budget + 32, fds
    # Steady state: the budget, plus the listener, stdio, epoll and the like.
    assert fds_after <= budget + 32, fds_after
    assert srv.alive()
    assert took < 60


def peer_closed_now(s: socket.socket) -> bool:
    """Whether the server has closed `s` already (EOF or reset), without waiting."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_row3_accept_errors_back_off_and_shed(start_chorus):
    """A budget above the open-files limit: accept itself fails (EMFILE). The server sheds
    and backs off instead of spinning, and real clients still get in."""
    srv = start_chorus({"http_server": {"max_connections": 5000}}, nofile=ROW3_NOFILE)
    cpu_before = cpu_seconds(srv)
    started = time.monotonic()
    stalled = open_stalled(srv, ROW3_STALLED)
    pubs = real_client_gets_through(srv, "chat:emfile")
    wall = time.monotonic() - started
    cpu = cpu_seconds(srv) - cpu_before
    errors = metric(srv, 'chorus_http_accept_errors_total{kind="emfile"}')
    shed = metric(srv, 'chorus_http_connections_shed_total{state="pending"}')
    fds = srv.open_fds()
    print(
        f"\nrow 3 (EMFILE): {errors:.0f} accept errors, {shed:.0f} shed, server CPU "
        f"{cpu:.2f} s over {wall:.1f} s, {fds} fds"
    )
    for s in stalled:
        s.close()
    assert [p["data"] for p in pubs] == [{"hello": "through"}]
    assert errors >= 1
    assert shed >= 1
    # A busy loop on EMFILE would burn a core for the whole run.
    assert cpu < 0.5 * wall + 2.0, (cpu, wall)
    assert srv.alive()
    assert wall < 60
    log = srv.logs()
    assert re.search(r"accept failing; backing off", log), log[-2000:]


# ---------------------------------------------------------------------------
# row 10: upgrade strictness
# ---------------------------------------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(srv: ChorusServer, version: str, path: str, key: str, extra: str = "") -> Tuple[int, Dict[str, str], bytes]:
    s = connect_raw(srv.host, srv.port)
    s.sendall(
        (
            f"GET {path} {version}\r\nHost: chorus\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    try:
        status, headers, body = read_response(s, timeout=5)
        assert closed_by_peer(s, 5), "connection left open"
    finally:
        s.close()
    return status, headers, body


def test_row10_upgrade_strictness(start_chorus):
    srv = start_chorus()
    ws = "/connection/websocket"
    # Conflicting protocol selection: Protobuf in the query, JSON as the subprotocol.
    status, _, body = upgrade(
        srv, "HTTP/1.1", f"{ws}?cf_protocol=protobuf", KEY, "Sec-WebSocket-Protocol: centrifuge-json\r\n"
    )
    assert (status, body) == (400, b"conflicting protocol selection\n")
    # A key that is not base64 of 16 bytes.
    status, _, body = upgrade(srv, "HTTP/1.1", ws, "not-a-valid-key")
    assert (status, body) == (400, b"invalid Sec-WebSocket-Key\n")
    # HTTP/1.0.
    status, _, body = upgrade(srv, "HTTP/1.0", ws, KEY)
    assert (status, body) == (400, b"HTTP/1.1 required\n")
    # A version other than 13.
    s = connect_raw(srv.host, srv.port)
    s.sendall(
        (
            f"GET {ws} HTTP/1.1\r\nHost: chorus\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
        ).encode()
    )
    status, headers, body = read_response(s, timeout=5)
    s.close()
    assert (status, headers.get("sec-websocket-version"), body) == (
        426,
        "13",
        b"Sec-WebSocket-Version 13 required\n",
    )
    for reason, count in [("protocol", 1), ("bad_key", 1), ("http_version", 1), ("ws_version", 1)]:
        series = f'chorus_transport_upgrade_rejected_total{{reason="{reason}"}}'
        assert metric(srv, series) == count, reason
    # And a well-formed Protobuf upgrade still works.
    status, headers, _ = upgrade_ok(srv, f"{ws}?cf_protocol=protobuf", "centrifuge-protobuf")
    assert (status, headers.get("sec-websocket-protocol")) == (101, "centrifuge-protobuf")


def upgrade_ok(srv: ChorusServer, path: str, subprotocol: str) -> Tuple[int, Dict[str, str], bytes]:
    s = connect_raw(srv.host, srv.port)
    try:
        s.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: chorus\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
            ).encode()
        )
        return read_response(s, timeout=5)
    finally:
        s.close()
