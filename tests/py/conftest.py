"""Shared pytest fixtures: start the real chorus binary for black-box tests.

    def test_x(chorus):                 # the session's server (standard test config)
        chorus.url, chorus.ws_url, chorus.api_url, chorus.api_key, chorus.secret

    def test_y(start_chorus):           # a server of its own, stopped after the test
        srv = start_chorus({"client": {"ping_interval": "2s"}})

How a server is started (temp config, port 0, the `chorus listening on` line) is in
`chorus_server.py`, shared with the hostile tier (`tests/hostile/`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import pytest

from chorus_server import (  # noqa: F401  (re-exported for the test modules)
    API_KEY,
    SECRET,
    ChorusServer,
    base_config,
    conn_token,
    deep_merge,
    start_server,
    sub_token,
    test_config,
    uniq,
)

# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chorus() -> ChorusServer:
    srv = start_server(test_config())
    yield srv
    srv.stop()


@pytest.fixture
def start_chorus() -> Callable[..., ChorusServer]:
    started: List[ChorusServer] = []

    def start(config: Optional[Dict[str, Any]] = None, **kwargs: Any) -> ChorusServer:
        merged = deep_merge(test_config(), config or {}) if not kwargs.get("no_config") else None
        srv = start_server(merged, **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def cent_client(chorus: ChorusServer):
    import cent

    client = cent.Client(chorus.api_url, chorus.api_key, timeout=10)
    yield client
    client.close()
