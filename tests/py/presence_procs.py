"""Real processes for presence tests: the presence service (`chorus presence`), redis-server,
and the Python gRPC client generated from proto/presence.proto at test time (grpcio-tools)."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import grpc
from grpc_tools import protoc

from chorus_server import BIN, REPO_ROOT, _live

PRESENCE_KEY = "py-presence-key"
LISTENING = re.compile(r"^chorus presence listening on http://(\S+) ")
_generated: Optional[Tuple[Any, Any]] = None


def presence_pb() -> Tuple[Any, Any]:
    """(messages, services) modules generated from proto/presence.proto, once per process."""
    global _generated
    if _generated is None:
        out = tempfile.mkdtemp(prefix="chorus-presence-py-")
        proto_dir = REPO_ROOT / "proto"
        include = Path(protoc.__file__).parent / "_proto"
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_dir}",
                f"-I{include}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                str(proto_dir / "presence.proto"),
            ]
        )
        assert rc == 0, "protoc failed"
        sys.path.insert(0, out)
        _generated = (
            importlib.import_module("presence_pb2"),
            importlib.import_module("presence_pb2_grpc"),
        )
    return _generated


def auth() -> Tuple[Tuple[str, str], ...]:
    return (("authorization", f"apikey {PRESENCE_KEY}"),)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Replica:
    """One `chorus presence` process."""

    port: int
    lease: str
    proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "Replica":
        self.proc = subprocess.Popen(
            [str(BIN), "presence", "-a", "127.0.0.1", "-p", str(self.port), "--metrics-port", "0",
             "--set", f"presence_server.lease_ttl={self.lease}"],
            env={**os.environ, "CHORUS_PRESENCE_SERVER_KEY": PRESENCE_KEY, "RUST_LOG": "warn"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        _live.append(self.proc)
        line = self.proc.stdout.readline()
        assert LISTENING.match(line), f"presence did not start: {line!r}"
        return self

    def stub(self):
        m, s = presence_pb()
        return s.PresenceStub(grpc.insecure_channel(f"127.0.0.1:{self.port}"))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until reads stop answering UNAVAILABLE (the warm-up of one lease is over)."""
        m, _ = presence_pb()
        stub = self.stub()
        deadline = time.monotonic() + timeout
        while True:
            try:
                stub.PresenceStats(m.PresenceStatsRequest(channel="-"), metadata=auth(), timeout=1)
                return
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                assert time.monotonic() < deadline, "replica never became ready"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Redis:
    """A throwaway redis-server on a free port."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server not installed (scripts/test installs it)"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="chorus-redis-")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _live.append(self.proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
