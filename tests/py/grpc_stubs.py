"""Python gRPC stubs of the server API, generated at test time from the repo's `proto/api.proto`
with grpcio-tools (`grpc_tools.protoc`), as a user of Centrifugo's published schema would.

    api_pb2, api_pb2_grpc = generate()          # cached per process
    stub = api_pb2_grpc.CentrifugoApiStub(grpc.insecure_channel(target))
    proxy_pb2, proxy_pb2_grpc = generate("proxy")   # the backend hooks (proxy_backend.py)

Used by `test_grpc_api.py` and by the cluster tier's `tests/cluster/lib/grpc_publish.py`.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"

_cache: Dict[str, Tuple[ModuleType, ModuleType]] = {}
_outdirs: List[tempfile.TemporaryDirectory] = []


def generate(name: str = "api") -> Tuple[ModuleType, ModuleType]:
    """Runs protoc on proto/<name>.proto into a temp dir and imports (<name>_pb2,
    <name>_pb2_grpc): `api` (the server API, the default) or `proxy` (the backend hooks)."""
    if name in _cache:
        return _cache[name]
    from grpc_tools import protoc

    outdir = tempfile.TemporaryDirectory(prefix="chorus-grpc-stubs-")
    _outdirs.append(outdir)
    out = outdir.name
    source = PROTO_DIR / f"{name}.proto"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(source),
        ]
    )
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with {rc} on {source}")
    sys.path.insert(0, out)
    try:
        pb2 = importlib.import_module(f"{name}_pb2")
        pb2_grpc = importlib.import_module(f"{name}_pb2_grpc")
    finally:
        sys.path.remove(out)
    _cache[name] = (pb2, pb2_grpc)
    return _cache[name]
