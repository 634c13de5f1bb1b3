//! `http_server.tls`: HTTPS and `wss://` on the HTTP listener with a real rustls client
//! trusting a self-signed certificate; ALPN `h2` on the gRPC API; a plain-HTTP client on the
//! TLS port fails its handshake and is counted; replacing the files reloads the certificate
//! for new handshakes; a bad certificate is refused by the config check; permessage-deflate
//! over `wss://` (negotiation, compressed messages both ways, the 1009 / 1007 closes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::deflate::{deflate, inflate};
use common::grpc::{grpc_config, GrpcServer};
use common::*;
use flate2::{Compress, Compression, Decompress};
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

/// A `wss://` upgrade with extra request headers: the response head, the stream and the
/// bytes read past the head.
async fn wss(
    addr: SocketAddr,
    connector: &TlsConnector,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, TlsStream<TcpStream>, Vec<u8>) {
    let mut s = tls_connect(addr, connector).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut s).await.unwrap();
    (head, s, rest)
}

/// One server frame: its first byte (FIN, RSV1-3, opcode) and payload; `None` on EOF.
async fn read_server_frame(
    s: &mut TlsStream<TcpStream>,
    buf: &mut Vec<u8>,
) -> Option<(u8, Vec<u8>)> {
    async fn fill(s: &mut TlsStream<TcpStream>, buf: &mut Vec<u8>, n: usize) -> bool {
        while buf.len() < n {
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }
    let read = async {
        if !fill(s, buf, 2).await {
            return None;
        }
        assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
        let (len, hl) = match buf[1] & 0x7f {
            126 => {
                if !fill(s, buf, 4).await {
                    return None;
                }
                (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if !fill(s, buf, 10).await {
                    return None;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        if !fill(s, buf, hl + len).await {
            return None;
        }
        let b0 = buf[0];
        let payload = buf[hl..hl + len].to_vec();
        buf.drain(..hl + len);
        Some((b0, payload))
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("timed out reading a frame")
}

/// A masked client frame; `rsv1` marks a compressed message.
async fn send(s: &mut TlsStream<TcpStream>, opcode: u8, payload: &[u8], rsv1: bool) {
    let mut frame = encode_frame(true, opcode, payload, true);
    if rsv1 {
        frame[0] |= 0x40;
    }
    s.write_all(&frame).await.unwrap();
}

const RSV1: u8 = 0x40;

#[tokio::test]
async fn permessage_deflate_over_wss() {
    let dir = tempdir();
    let cert = write_cert(&dir);
    let mut config = tls_config(&dir);
    config.websocket.compression = true;
    config.websocket.compression_min_size = 32;
    let server = TestServer::start(config).await;
    let tls = connector(std::slice::from_ref(&cert), b"http/1.1");
    let offer = [(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits",
    )];

    // Not offered: not answered, and RSV1 is a protocol error.
    let (head, mut s, mut buf) = wss(server.addr, &tls, "/connection/echo", &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(header(&head, "sec-websocket-extensions"), None);
    let mut c = Compress::new(Compression::fast(), false);
    send(&mut s, OP_TEXT, &deflate(&mut c, b"hello"), true).await;
    let (b0, close) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!(
        (b0, &close[..2]),
        (0x80 | OP_CLOSE, &1002u16.to_be_bytes()[..])
    );

    // Offered: answered in the 101; compressed echoes both ways with context takeover.
    let (head, mut s, mut buf) = wss(server.addr, &tls, "/connection/echo", &offer).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let mut c = Compress::new(Compression::fast(), false);
    let mut d = Decompress::new(false);
    let msg = "hello over tls ".repeat(20);
    for _ in 0..3 {
        send(&mut s, OP_TEXT, &deflate(&mut c, msg.as_bytes()), true).await;
        let (b0, payload) = read_server_frame(&mut s, &mut buf).await.unwrap();
        assert_eq!(b0, 0x80 | RSV1 | OP_TEXT);
        assert!(payload.len() < msg.len(), "echo not compressed");
        assert_eq!(inflate(&mut d, &payload), msg.as_bytes());
    }
    // Under compression_min_size: out plain (no RSV1), even though it came in compressed.
    send(&mut s, OP_BINARY, &deflate(&mut c, b"short"), true).await;
    let (b0, payload) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!((b0, &payload[..]), (0x80 | OP_BINARY, &b"short"[..]));
    // An uncompressed message is still fine; the echo (long enough) goes out compressed.
    let plain = "plain text message, long enough to compress";
    send(&mut s, OP_TEXT, plain.as_bytes(), false).await;
    let (b0, payload) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!(b0, 0x80 | RSV1 | OP_TEXT);
    assert_eq!(inflate(&mut d, &payload), plain.as_bytes());
    // Control frames go out plain: a ping gets its pong.
    send(&mut s, OP_PING, b"ping!", false).await;
    let (b0, payload) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!((b0, &payload[..]), (0x80 | OP_PONG, &b"ping!"[..]));
    // 200 KB of zeros in a ~200-byte frame: under the 1 KiB limit on the wire, far over it
    // inflated.
    let bomb = deflate(
        &mut Compress::new(Compression::best(), false),
        &vec![0u8; 200_000],
    );
    assert!(bomb.len() < 1024, "{}", bomb.len());
    send(&mut s, OP_BINARY, &bomb, true).await;
    let (b0, close) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!(
        (b0, &close[..2]),
        (0x80 | OP_CLOSE, &1009u16.to_be_bytes()[..])
    );
    assert!(stream_closed_within(&mut s, Duration::from_secs(2)).await);

    // Data that does not inflate: 1007.
    let (_, mut s, mut buf) = wss(server.addr, &tls, "/connection/echo", &offer).await;
    send(&mut s, OP_BINARY, &[0xff, 0xff, 0xff, 0xff], true).await;
    let (b0, close) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!(
        (b0, &close[..2]),
        (0x80 | OP_CLOSE, &1007u16.to_be_bytes()[..])
    );

    // The client protocol: a compressed connect, a compressed reply; the peer's close is
    // echoed and the server closes the connection.
    let (head, mut s, mut buf) = wss(server.addr, &tls, "/connection/websocket", &offer).await;
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let mut c = Compress::new(Compression::fast(), false);
    let mut d = Decompress::new(false);
    send(
        &mut s,
        OP_TEXT,
        &deflate(&mut c, br#"{"id":1,"connect":{}}"#),
        true,
    )
    .await;
    let (b0, payload) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!(b0, 0x80 | RSV1 | OP_TEXT);
    let reply: serde_json::Value = serde_json::from_slice(&inflate(&mut d, &payload)).unwrap();
    assert_eq!(reply["id"], 1, "{reply}");
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    send(&mut s, OP_CLOSE, &1000u16.to_be_bytes(), false).await;
    let (b0, close) = read_server_frame(&mut s, &mut buf).await.unwrap();
    assert_eq!(
        (b0, &close[..]),
        (0x80 | OP_CLOSE, &1000u16.to_be_bytes()[..])
    );
    assert!(stream_closed_within(&mut s, Duration::from_secs(2)).await);

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
