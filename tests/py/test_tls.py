"""`http_server.tls` on the real binary: HTTPS with `requests`, a real gRPC call over TLS with
grpcio (`ssl_channel_credentials`), and a certificate replaced on disk and picked up on SIGHUP
(`reload_interval: 0`, so the signal is the only trigger). Certificates come from the openssl
command line."""
from __future__ import annotations

import signal
import ssl
import subprocess
import time
from pathlib import Path

import grpc
import requests

from chorus_server import deep_merge, start_server, test_config
from grpc_stubs import generate

GRPC_KEY = "chorus-test-grpc-key-0123456789abcdef"
pb, pb_grpc = generate()


def make_cert(dir: Path, cn: str) -> str:
    """A self-signed P-256 certificate for localhost / 127.0.0.1 in dir/cert.pem, key.pem."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(dir / "key.pem"), "-out", str(dir / "cert.pem"), "-days", "1",
         "-subj", f"/CN={cn}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return (dir / "cert.pem").read_text()


def served_cert(port: int) -> str:
    """The certificate a new handshake presents (no verification: just fetch it)."""
    return ssl.get_server_certificate(("127.0.0.1", port))


def same_cert(a: str, b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b)


def test_https_grpc_over_tls_and_sighup_reload(tmp_path: Path) -> None:
    first = make_cert(tmp_path, "first")
    config = deep_merge(test_config(), {
        "http_server": {"tls": {"cert_pem_file": str(tmp_path / "cert.pem"),
                                "key_pem_file": str(tmp_path / "key.pem"),
                                "reload_interval": "0s"}},
        "grpc_api": {"enabled": True, "port": 0, "key": GRPC_KEY},
    })
    srv = start_server(config)
    try:
        assert srv.url.startswith("https://")  # the announced scheme follows http_server.tls
        port = int(srv.url.rsplit(":", 1)[1])
        https = f"https://localhost:{port}"
        r = requests.get(f"{https}/health", verify=str(tmp_path / "cert.pem"), timeout=5)
        assert r.status_code == 200

        creds = grpc.ssl_channel_credentials(root_certificates=first.encode())
        grpc_port = srv.grpc_target.rsplit(":", 1)[1]
        with grpc.secure_channel(f"localhost:{grpc_port}", creds) as channel:
            stub = pb_grpc.CentrifugoApiStub(channel)
            reply = stub.Info(pb.InfoRequest(), metadata=(("authorization", f"apikey {GRPC_KEY}"),),
                              timeout=5)
            assert len(reply.result.nodes) == 1

        second = make_cert(tmp_path, "second")
        assert same_cert(served_cert(port), first)  # no reload without the signal
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not same_cert(served_cert(port), second):
            assert time.monotonic() < deadline, "SIGHUP did not reload the certificate"
            time.sleep(0.05)
        assert srv.alive()
        assert "TLS certificate reloaded" in srv.logs()
        r = requests.get(f"{https}/health", verify=str(tmp_path / "cert.pem"), timeout=5)
        assert r.status_code == 200
    finally:
        srv.stop()
