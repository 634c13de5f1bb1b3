"""Python gRPC stubs of the server API, generated at test time from the repo's `proto/api.proto`
with grpcio-tools (`grpc_tools.protoc`), as a user of Centrifugo's published schema would.

    api_pb2, api_pb2_grpc = generate()          # cached per process
    stub = api_pb2_grpc.CentrifugoApiStub(grpc.insecure_channel(target))

Used by `test_grpc_api.py` and by the cluster tier's `tests/cluster/lib/grpc_publish.py`.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"

_cache: Optional[Tuple[ModuleType, ModuleType]] = None
_outdir: Optional[tempfile.TemporaryDirectory] = None


def generate() -> Tuple[ModuleType, ModuleType]:
    """Runs protoc on proto/api.proto into a temp dir and imports (api_pb2, api_pb2_grpc)."""
    global _cache, _outdir
    if _cache is not None:
        return _cache
    from grpc_tools import protoc

    _outdir = tempfile.TemporaryDirectory(prefix="chorus-grpc-stubs-")
    out = _outdir.name
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "api.proto"),
        ]
    )
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with {rc} on {PROTO_DIR / 'api.proto'}")
    sys.path.insert(0, out)
    try:
        api_pb2 = importlib.import_module("api_pb2")
        api_pb2_grpc = importlib.import_module("api_pb2_grpc")
    finally:
        sys.path.remove(out)
    _cache = (api_pb2, api_pb2_grpc)
    return _cache
