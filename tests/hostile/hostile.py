"""Attack tools of the hostile tier: raw sockets, raw HTTP, a minimal JSON-protocol client.

Everything is bounded: every read has a deadline, every loop a count.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, Dict, List, Optional, Tuple

import websockets


def connect_raw(host: str, port: int, source_ip: Optional[str] = None, timeout: float = 5.0):
    """A plain TCP socket to the server (optionally bound to a 127.0.0.x source address, so
    many sockets do not run out of ephemeral ports)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source_ip:
        s.bind((source_ip, 0))
    s.connect((host, port))
    return s


def read_response(s: socket.socket, timeout: float = 5.0, limit: int = 1 << 20) -> Tuple[int, Dict[str, str], bytes]:
    """Reads one HTTP/1.1 response head (and a Content-Length body). Returns (status, headers,
    body); status 0 when the server closed without answering."""
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline or len(buf) > limit:
            raise TimeoutError("no complete response head")
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return 0, {}, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0") or 0)
    while len(rest) < n and time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:n]


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """Whether the server closes the socket (EOF or reset) within `timeout`, discarding data."""
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not chunk:
            return True
    return False


class JsonClient:
    """A minimal client of the JSON protocol (one command per frame), for counting exactly
    what a connection receives. Real SDKs are used where SDK behaviour is the point."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.pushes: List[Dict[str, Any]] = []
        self.close_code: Optional[int] = None

    @classmethod
    async def connect(cls, ws_url: str, token: str = "", **kw: Any) -> "JsonClient":
        # A client that stops reading stops seeing the server's close frame once websockets'
        # receive queue is full: keep closes short.
        kw.setdefault("close_timeout", 2)
        ws = await websockets.connect(ws_url, max_size=64 << 20, **kw)
        c = cls(ws)
        reply = await c.call({"connect": {"token": token} if token else {}})
        assert "connect" in reply, reply
        return c

    async def send(self, commands: List[Dict[str, Any]]) -> List[int]:
        """Sends several commands in one frame; returns their ids."""
        ids = []
        lines = []
        for cmd in commands:
            self.next_id += 1
            ids.append(self.next_id)
            lines.append(json.dumps({"id": self.next_id, **cmd}, separators=(",", ":")))
        await self.ws.send("\n".join(lines))
        return ids

    async def call(self, command: Dict[str, Any], timeout: float = 10.0) -> Dict[str, Any]:
        """Sends one command and returns its reply (pushes met on the way are kept)."""
        (cid,) = await self.send([command])
        deadline = time.monotonic() + timeout
        while True:
            for msg in await self.recv(deadline - time.monotonic()):
                if msg.get("id") == cid:
                    return msg
                self._keep(msg)

    async def recv(self, timeout: float) -> List[Dict[str, Any]]:
        """The messages of the next frame (pings answered and dropped)."""
        try:
            frame = await asyncio.wait_for(self.ws.recv(), max(timeout, 0.001))
        except websockets.ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd else None
            raise
        out = []
        for line in frame.splitlines() if isinstance(frame, str) else []:
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg == {}:
                await self.ws.send("{}")
                continue
            out.append(msg)
        return out

    def _keep(self, msg: Dict[str, Any]) -> None:
        if "push" in msg:
            self.pushes.append(msg["push"])

    async def drain(self, seconds: float) -> None:
        """Collects pushes for `seconds` (or until the connection closes)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                for msg in await self.recv(deadline - time.monotonic()):
                    self._keep(msg)
            except asyncio.TimeoutError:
                return
            except websockets.ConnectionClosed:
                return

    def publications(self, channel: Optional[str] = None) -> List[Dict[str, Any]]:
        return [
            p["pub"]
            for p in self.pushes
            if "pub" in p and (channel is None or p.get("channel") == channel)
        ]

    async def close(self) -> None:
        await self.ws.close()


async def close_all(clients: List["JsonClient"]) -> None:
    await asyncio.gather(*[c.close() for c in clients], return_exceptions=True)
