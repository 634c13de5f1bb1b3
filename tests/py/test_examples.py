"""The gRPC client examples under examples/, run as their READMEs say, against the binary."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chorus_server import REPO_ROOT, deep_merge, test_config
from conftest import uniq

KEY = "chorus-example-key"
EXAMPLE_BIN = REPO_ROOT / "target" / "debug" / "chorus-grpc-example"


@pytest.fixture
def grpc_server(start_chorus):
    return start_chorus(deep_merge(test_config(), {"grpc_api": {"enabled": True, "port": 0, "key": KEY}}))


def test_python_example(grpc_server, tmp_path):
    example = REPO_ROOT / "examples" / "grpc-python"
    shutil.copy(example / "client.py", tmp_path / "client.py")
    proto = REPO_ROOT / "proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto}", "--python_out=.",
         "--grpc_python_out=.", str(proto / "api.proto")],
        cwd=tmp_path, check=True, timeout=60,
    )
    ch = uniq("chat:expy")
    env = {**os.environ, "CHORUS_GRPC_API_KEY": KEY}
    for text in ("one", "two"):
        out = subprocess.run(
            [sys.executable, "client.py", grpc_server.grpc_target, ch, f'{{"text":"{text}"}}'],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"published into {ch}: offset 2 epoch ")
    assert lines[1:] == [
        f"history of {ch} (newest first, top offset 2):",
        '  2 {"text":"two"}',
        '  1 {"text":"one"}',
    ]
    bad = subprocess.run(
        [sys.executable, "client.py", grpc_server.grpc_target, uniq("nosuchns:x")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 1
    assert "publish: error 102: unknown channel" in bad.stderr


@pytest.mark.skipif(
    not EXAMPLE_BIN.exists(),
    reason="build it first: cargo build -p chorus-grpc-example (scripts/test's build step does)",
)
def test_rust_example(grpc_server):
    ch = uniq("chat:exrs")
    out = subprocess.run(
        [str(EXAMPLE_BIN), f"http://{grpc_server.grpc_target}", ch, '{"text":"hi"}'],
        env={**os.environ, "CHORUS_GRPC_API_KEY": KEY}, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"published into {ch}: offset 1 epoch ")
    assert lines[1:] == [f"history of {ch} (newest first, top offset 1):", '  1 {"text":"hi"}']
    denied = subprocess.run(
        [str(EXAMPLE_BIN), f"http://{grpc_server.grpc_target}", ch],
        env={**os.environ, "CHORUS_GRPC_API_KEY": "wrong", "RUST_BACKTRACE": "0"},
        capture_output=True, text=True, timeout=60,
    )
    assert denied.returncode != 0
    assert "invalid or missing API key" in denied.stderr
