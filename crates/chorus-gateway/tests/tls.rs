//! `http_server.tls`: HTTPS and `wss://` on the HTTP listener with a real rustls client
//! trusting a self-signed certificate; ALPN `h2` on the gRPC API; a plain-HTTP client on the
//! TLS port fails its handshake and is counted; replacing the files reloads the certificate
//! for new handshakes; a bad certificate is refused by the config check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::grpc::{grpc_config, GrpcServer};
use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A self-signed certificate for localhost / 127.0.0.1, written as PEM files in `dir`.
fn write_cert(dir: &Path) -> CertificateDer<'static> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    // Key first: the reloader reads both once either changed.
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    ck.cert.der().clone()
}

fn connector(trusted: &[CertificateDer<'static>], alpn: &[u8]) -> TlsConnector {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

async fn https_get(addr: SocketAddr, connector: &TlsConnector, path: &str) -> String {
    let mut s = tls_connect(addr, connector).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn tls_config(dir: &Path) -> chorus_gateway::config::Config {
    let mut config = grpc_config();
    let path = |f: &str| -> String { dir.join(f).to_string_lossy().into_owned() };
    config.http_server.tls.cert_pem_file = path("cert.pem");
    config.http_server.tls.key_pem_file = path("key.pem");
    config.http_server.tls.reload_interval = chorus_core::duration::ConfigDuration::from_millis(50);
    config
}

#[tokio::test]
async fn https_wss_grpc_alpn_and_reload() {
    let dir = tempdir();
    let first = write_cert(&dir);
    let config = tls_config(&dir);
    config.validate().unwrap();
    let server = TestServer::start(config.clone()).await;
    let grpc = GrpcServer::start(&config, server.node.clone()).await;
    let trusts_first = connector(std::slice::from_ref(&first), b"http/1.1");

    // HTTPS.
    let resp = https_get(server.addr, &trusts_first, "/health").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // wss://: the upgrade and a connect command over TLS.
    let mut s = tls_connect(server.addr, &trusts_first).await.unwrap();
    s.write_all(
        b"GET /connection/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, mut rest) = read_head(&mut s).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&encode_frame(true, 0x1, br#"{"id":1,"connect":{}}"#, true))
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&rest).contains(r#""client""#) {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the connect reply");
        rest.extend_from_slice(&buf[..n]);
    }

    // The gRPC API negotiates h2 over TLS with the same certificate.
    let g = tls_connect(grpc.addr, &connector(std::slice::from_ref(&first), b"h2"))
        .await
        .unwrap();
    assert_eq!(g.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // Plain HTTP on the TLS port: no answer but a failed, counted handshake.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    let metrics = https_get(server.addr, &trusts_first, "/metrics").await;
    assert!(
        metrics.contains("chorus_tls_handshake_errors_total"),
        "{metrics}"
    );

    // New files: new handshakes get the new certificate (a client trusting only the first
    // one fails), connections already open keep working.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = write_cert(&dir);
    let trusts_second = connector(std::slice::from_ref(&second), b"http/1.1");
    let mut reloaded = false;
    for _ in 0..100 {
        if let Ok(mut s) = tls_connect(server.addr, &trusts_second).await {
            let peer = s.get_ref().1.peer_certificates().unwrap()[0].clone();
            assert_eq!(peer, second);
            let _ = s.shutdown().await;
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new certificate was not picked up");
    // A fresh client (no session to resume) that trusts only the first certificate fails.
    let fresh_first = connector(std::slice::from_ref(&first), b"http/1.1");
    assert!(tls_connect(server.addr, &fresh_first).await.is_err());
    let metrics = https_get(server.addr, &trusts_second, "/metrics").await;
    assert!(
        metrics.contains(r#"chorus_tls_reloads_total{result="ok"}"#),
        "{metrics}"
    );

    // A broken file: the reload fails and the second certificate stays in use.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    let mut failed = false;
    for _ in 0..100 {
        let m = https_get(server.addr, &trusts_second, "/metrics").await;
        if m.contains(r#"chorus_tls_reloads_total{result="error"}"#) {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "the failed reload was not counted");
    let resp = https_get(server.addr, &trusts_second, "/health").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // The config check refuses a certificate it cannot load.
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
    let mut half = grpc_config();
    half.http_server.tls.cert_pem_file = dir.join("cert.pem").to_string_lossy().into_owned();
    let err = half.validate().unwrap_err().to_string();
    assert!(err.contains("must be set together"), "{err}");

    drop(rest);
    server.stop().await.unwrap();
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chorus-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
