"""Fixtures of the hostile tier: each test starts its own real chorus binary (so RSS and open
files are the server's alone) and attacks it, bounded in time and size.

    def test_x(start_chorus):
        srv = start_chorus({"client": {...}}, nofile=1024)   # config merged over test_config()
        srv.rss_kib(), srv.open_fds(), srv.alive()

Server launching is shared with the py tier (`tests/py/chorus_server.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "py"))

from chorus_server import (  # noqa: E402
    ChorusServer,
    deep_merge,
    start_server,
    test_config,
)


@pytest.fixture
def start_chorus() -> Callable[..., ChorusServer]:
    started: List[ChorusServer] = []

    def start(config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> ChorusServer:
        srv = start_server(deep_merge(test_config(), config or {}), **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        still_up = srv.alive()
        srv.stop()
        # Every attack must leave the node running: a crash fails the test that caused it.
        assert still_up, "chorus exited during the test:\n" + srv.logs()[-4000:]
