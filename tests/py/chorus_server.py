"""Starting the real chorus binary for black-box tests (the py and hostile tiers).

`start_server(config)` runs `chorus serve` on a temp config and returns a `ChorusServer`
(url, ws_url, api_url, grpc_target, api_key, secret, rss_kib(), open_fds(), logs(), stop()). The pytest
fixtures over it live in `tests/py/conftest.py` and `tests/hostile/conftest.py`.

The config dict is deep-merged over a base config (127.0.0.1, port 0, test secrets),
written to a temp JSON file, and passed as `chorus serve --config FILE`. The server prints
`chorus listening on http://IP:PORT` (`https://` with TLS) once it accepts connections; we read that line (bounded)
to learn the port. Binary: env CHORUS_BIN, default target/debug/chorus in the repo root.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import queue
import re
import resource
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import jwt as pyjwt
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("CHORUS_BIN") or REPO_ROOT / "target" / "debug" / "chorus")
if not BIN.is_absolute():
    BIN = REPO_ROOT / BIN

SECRET = "chorus-test-hmac-secret-0123456789"
API_KEY = "chorus-test-api-key"
LISTENING = re.compile(r"^chorus listening on (https?://\S+)\s*$")
GRPC_LISTENING = re.compile(r"^chorus grpc api listening on (\S+)\s*$")

CHAT_OPTIONS: Dict[str, Any] = {
    "presence": True,
    "join_leave": True,
    "force_push_join_leave": True,
    "history_size": 100,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_publish_for_subscriber": True,
    "allow_presence_for_subscriber": True,
    "allow_history_for_subscriber": True,
}


def base_config() -> Dict[str, Any]:
    return {
        "http_server": {"address": "127.0.0.1", "port": 0},
        "client": {
            "token": {"hmac_secret_key": SECRET},
            "allowed_origins": ["*"],
        },
        "http_api": {"key": API_KEY},
        "engine": {"type": "memory"},
    }


def test_config() -> Dict[str, Any]:
    """The channel layout the tests use (same as tests/js/lib/config.js)."""
    return {
        "channel": {
            "without_namespace": dict(CHAT_OPTIONS),
            "namespaces": [
                {"name": "chat", **CHAT_OPTIONS},
                {
                    "name": "small",
                    "history_size": 3,
                    "history_ttl": "300s",
                    "force_recovery": True,
                    "allow_subscribe_for_client": True,
                    "allow_history_for_subscriber": True,
                },
                {"name": "private", "presence": True, "history_size": 10, "history_ttl": "300s"},
                {"name": "nohist", "allow_subscribe_for_client": True},
            ],
        }
    }


test_config.__test__ = False  # not a test, despite the name


def deep_merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_live: List[subprocess.Popen] = []


def _kill_all() -> None:
    for p in _live:
        if p.poll() is None:
            p.kill()


atexit.register(_kill_all)


@dataclass
class ChorusServer:
    url: str
    proc: subprocess.Popen
    config: Optional[Dict[str, Any]]
    _output: List[str] = field(default_factory=list)
    _tmpdir: Optional[tempfile.TemporaryDirectory] = None
    api_key: str = API_KEY
    secret: str = SECRET

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.url.startswith("https://") else "ws"
        return f"{scheme}://{self.host}:{self.port}/connection/websocket"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def grpc_target(self) -> str:
        """`IP:PORT` of the gRPC server API (printed before the HTTP line when it is enabled)."""
        for line in self._output:
            m = GRPC_LISTENING.match(line)
            if m:
                return m.group(1)
        raise RuntimeError("the gRPC API is not enabled (no 'chorus grpc api listening on' line)")

    def logs(self) -> str:
        return "".join(self._output)

    def rss_kib(self) -> int:
        """Resident set size of the server process, from /proc (Linux)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def open_fds(self) -> int:
        """File descriptors the server process holds, from /proc (Linux)."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc in _live:
            _live.remove(self.proc)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        return self.proc.returncode


def start_server(
    config: Optional[Dict[str, Any]] = None,
    *,
    no_config: bool = False,
    env: Optional[Dict[str, str]] = None,
    port: Optional[int] = None,
    timeout: float = 20.0,
    nofile: Optional[int] = None,
) -> ChorusServer:
    """Starts a server. `nofile` sets its open-files limit (soft and hard), as `ulimit -n`."""
    if not BIN.exists():
        pytest.fail(f"chorus binary not found at {BIN} (cargo build -p chorus, or set CHORUS_BIN)")
    proc_env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), **(env or {})}
    tmpdir = None
    full = None
    if no_config:
        args = [str(BIN), "serve"]
        proc_env.setdefault("CHORUS_HTTP_SERVER_PORT", "0")
    else:
        full = deep_merge(base_config(), config or {})
        if port is not None:
            full["http_server"]["port"] = port
        tmpdir = tempfile.TemporaryDirectory(prefix="chorus-test-")
        path = Path(tmpdir.name) / "config.json"
        path.write_text(json.dumps(full, indent=2))
        args = [str(BIN), "serve", "--config", str(path)]

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        args,
        preexec_fn=limit_files if nofile is not None else None,
        env=proc_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    _live.append(proc)
    output: List[str] = []
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if len(output) > 20000:
                del output[:10000]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()

    deadline = time.monotonic() + timeout
    url = None
    while url is None:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            raise RuntimeError(
                f'chorus did not print "chorus listening on" within {timeout}s; output:\n'
                + "".join(output)
            )
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            proc.wait(5)
            raise RuntimeError(
                f"chorus exited with {proc.returncode} before listening; output:\n" + "".join(output)
            )
        m = LISTENING.match(line)
        if m:
            url = m.group(1).rstrip("/")
    return ChorusServer(url=url, proc=proc, config=full, _output=output, _tmpdir=tmpdir)


# ---------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------


def conn_token(sub: str, secret: str = SECRET, **claims: Any) -> str:
    return pyjwt.encode({"sub": sub, **claims}, secret, algorithm="HS256")


def sub_token(sub: str, channel: str, secret: str = SECRET, **claims: Any) -> str:
    return pyjwt.encode({"sub": sub, "channel": channel, **claims}, secret, algorithm="HS256")


_seq = 0


def uniq(prefix: str) -> str:
    global _seq
    _seq += 1
    return f"{prefix}{os.getpid()}p{_seq}"


