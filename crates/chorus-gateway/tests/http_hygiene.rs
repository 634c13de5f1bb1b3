//! HTTP request hygiene over real sockets: the API refuses from the headers alone (401, 413)
//! without reading the body, a body that misses `http_server.request_timeout` gets 408 and the
//! connection closes, unread bodies on other routes do not hold a connection, idle keep-alive
//! and oversized headers are bounded. Also pins what hyper does in those cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chorus_core::api::PublishRequest;
use chorus_core::duration::ConfigDuration;
use common::*;
use tokio::io::AsyncWriteExt;

/// Metric deltas are exact only if no other test of this binary moves them meanwhile.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config() -> chorus_gateway::config::Config {
    let mut config = test_config();
    config.http_api.key = "secret".into();
    config.http_server.max_request_body_size = 64 << 10;
    config.http_server.request_timeout = ConfigDuration::from_secs(1);
    config.http_server.header_read_timeout = ConfigDuration::from_secs(5);
    config
}

fn api_head(path: &str, key: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

#[tokio::test]
async fn wrong_key_gets_401_from_the_headers_alone_and_the_connection_closes() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await;
    let errors = r#"chorus_api_errors_total{method="publish",code="http_401"}"#;
    let before = metric(errors);
    // 1 MiB announced, not a byte of it sent: the answer cannot depend on the body.
    for path in ["/api/publish", "/api"] {
        let started = Instant::now();
        let mut s = raw_send(server.addr, api_head(path, "wrong", 1 << 20).as_bytes()).await;
        let (status, head, body) = read_response(&mut s).await.unwrap();
        assert_eq!((status, body.len()), (401, 0), "{path}: {head}");
        assert_eq!(header(&head, "connection"), Some("close"), "{head}");
        assert!(started.elapsed() < Duration::from_millis(900), "{path}");
        assert!(
            stream_closed_within(&mut s, Duration::from_secs(2)).await,
            "{path}: connection left open"
        );
    }
    // Without any key header, too.
    let head = "POST /api/info HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n";
    let mut s = raw_send(server.addr, head.as_bytes()).await;
    assert_eq!(read_response(&mut s).await.unwrap().0, 401);
    assert_eq!(metric(errors) - before, 1.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_content_length_gets_413_without_reading_and_closes() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await;
    let series = r#"chorus_api_errors_total{method="publish",code="http_413"}"#;
    let before = metric(series);
    let mut s = raw_send(
        server.addr,
        api_head("/api/publish", "secret", (64 << 10) + 1).as_bytes(),
    )
    .await;
    let (status, head, body) = read_response(&mut s).await.unwrap();
    assert_eq!(status, 413, "{head}");
    assert_eq!(body, b"request body too large\n");
    assert_eq!(header(&head, "connection"), Some("close"));
    assert!(stream_closed_within(&mut s, Duration::from_secs(2)).await);
    assert_eq!(metric(series) - before, 1.0);

    // Exactly at the bound is fine.
    let data = format!(
        r#"{{"channel":"news","data":{{"pad":"{}"}}}}"#,
        "x".repeat((64 << 10) - 40)
    );
    let mut exact = data.into_bytes();
    exact.resize(64 << 10, b' ');
    let (status, _, body) = http(
        server.addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", "secret")],
        &exact,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await;
    let head = "POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: secret\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let mut s = raw_send(server.addr, head.as_bytes()).await;
    let chunk = format!("{:x}\r\n{}\r\n", 40 << 10, "x".repeat(40 << 10));
    s.write_all(chunk.as_bytes()).await.unwrap();
    s.write_all(chunk.as_bytes()).await.unwrap();
    let (status, head, _) = read_response(&mut s).await.unwrap();
    assert_eq!(status, 413, "{head}");
    assert_eq!(header(&head, "connection"), Some("close"));
    assert!(stream_closed_within(&mut s, Duration::from_secs(2)).await);
    server.stop().await.unwrap();
}

/// Sends the API request head, then `drip` bytes of the body one every 300 ms; returns the
/// answer, how long after the first byte it came, and whether the socket then closed.
async fn api_408(server: &TestServer, drip: usize) -> (u16, String, Vec<u8>, Duration, bool) {
    let started = Instant::now();
    let s = raw_send(
        server.addr,
        api_head("/api/publish", "secret", 10).as_bytes(),
    )
    .await;
    let (mut rd, mut wr) = s.into_split();
    // The write half stays open (a half-close would end the body early) until aborted.
    let dripper = tokio::spawn(async move {
        for _ in 0..drip {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(b"{").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
        drop(wr);
    });
    let (status, head, body) = read_response(&mut rd).await.unwrap();
    let took = started.elapsed();
    let closed = stream_closed_within(&mut rd, Duration::from_secs(2)).await;
    dripper.abort();
    (status, head, body, took, closed)
}

#[tokio::test]
async fn dripped_or_missing_body_gets_408_at_the_request_deadline_and_closes() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await; // request_timeout = 1 s
    let timeouts = r#"chorus_http_request_timeouts_total{phase="body"}"#;
    let before = metric(timeouts);
    for drip in [0, 8] {
        let (status, head, body, took, closed) = api_408(&server, drip).await;
        assert_eq!(status, 408, "drip {drip}: {head}");
        assert_eq!(body, b"request timeout\n");
        assert_eq!(header(&head, "connection"), Some("close"));
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
            "drip {drip}: answered after {took:?}"
        );
        assert!(closed, "drip {drip}: connection left open");
    }
    assert_eq!(metric(timeouts) - before, 2.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_deadline_counts_from_the_first_byte_of_the_request() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await; // request_timeout 1 s, headers 5 s
    let head = api_head("/api/publish", "secret", 10);
    let started = Instant::now();
    let mut s = raw_send(server.addr, &head.as_bytes()[..10]).await;
    // The rest of the head over 700 ms: the deadline is ~300 ms after it completes.
    for part in head.as_bytes()[10..].chunks(head.len() / 7 + 1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(part).await.unwrap();
    }
    let (status, _, _) = read_response(&mut s).await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 408);
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1600),
        "answered after {took:?}: not counted from the first byte"
    );
    server.stop().await.unwrap();
}

/// hyper: when a handler answers without reading the body, hyper drains what of it is already
/// buffered and, if the body is not complete, closes the connection after the answer instead
/// of waiting for a body that may never come.
#[tokio::test]
async fn unread_bodies_on_other_routes_do_not_hold_the_connection() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await;
    for request in [
        "GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{\"a\"",
        "GET /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        "GET /api/info HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n",
    ] {
        let mut s = raw_send(server.addr, request.as_bytes()).await;
        let (status, head, _) = read_response(&mut s).await.unwrap();
        assert!(matches!(status, 200 | 404 | 405), "{request:?}: {head}");
        let started = Instant::now();
        assert!(
            stream_closed_within(&mut s, Duration::from_secs(3)).await,
            "{request:?}: still open"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{request:?}: closed only after {:?}",
            started.elapsed()
        );
    }
    server.stop().await.unwrap();
}

/// hyper 1 restarts `header_read_timeout` when a keep-alive connection goes idle, so the same
/// bound closes idle connections between requests: no separate idle key is needed.
#[tokio::test]
async fn idle_keep_alive_is_closed_after_header_read_timeout() {
    let _serial = SERIAL.lock().await;
    let mut config = config();
    config.http_server.header_read_timeout = ConfigDuration::from_millis(600);
    let server = TestServer::start(config).await;
    let mut s = raw_send(server.addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(read_response(&mut s).await.unwrap().0, 200);
    let idle_since = Instant::now();
    assert!(stream_closed_within(&mut s, Duration::from_secs(3)).await);
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(550) && idle < Duration::from_millis(1500),
        "idle connection closed after {idle:?}"
    );
    // A request within the bound keeps it alive, and the clock restarts.
    let mut c = Http::connect(server.addr).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.request("GET", "/health", &[], b"").await.unwrap().0, 200);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await; // max_header_size 32 KiB
    let big = "y".repeat(40 << 10);
    let request = format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    let mut s = raw_send(server.addr, request.as_bytes()).await;
    let (status, head, _) = read_response(&mut s).await.unwrap();
    assert_eq!(status, 431, "{head}");
    assert!(stream_closed_within(&mut s, Duration::from_secs(2)).await);
    // Below the bound: fine.
    let ok = "y".repeat(16 << 10);
    let (status, _, _) = http(server.addr, "GET", "/health", &[("X-Ok", &ok)], b"").await;
    assert_eq!(status, 200);
    server.stop().await.unwrap();
}

/// A client that sends a request and never reads the answer: once the server's write has been
/// blocked for `request_timeout`, the connection is closed (hyper has no write deadline).
#[tokio::test]
async fn a_client_that_stops_reading_the_answer_is_closed() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(config()).await; // request_timeout = 1 s
                                                    // 80 × 64 KiB of history: a ~5 MiB answer, far more than the socket buffers of a client
                                                    // with a 4 KiB receive buffer that does not read.
    let pad = "x".repeat(64 << 10);
    for n in 0..80 {
        let data = bytes::Bytes::from(format!("{{\"n\":{n},\"pad\":\"{pad}\"}}"));
        server
            .node
            .api()
            .publish(PublishRequest::new("chat:big", data))
            .await
            .unwrap();
    }
    let request = |len: usize| {
        format!(
            "POST /api/history HTTP/1.1\r\nHost: t\r\nX-API-Key: secret\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    let body = r#"{"channel":"chat:big","limit":100}"#;

    // A reading client gets all of it.
    let (status, _, answer) = http(
        server.addr,
        "POST",
        "/api/history",
        &[("X-API-Key", "secret")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["result"]["publications"].as_array().unwrap().len(), 80);

    let stalls = r#"chorus_http_request_timeouts_total{phase="response"}"#;
    let before = metric(stalls);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr).await.unwrap();
    s.write_all(format!("{}{body}", request(body.len())).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    while metric(stalls) - before < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stalled response was not cut"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(950), "cut after {took:?}");
    // What the kernel buffered arrives, then the end: far less than the whole answer.
    let mut got = 0usize;
    let read_all = async {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match tokio::io::AsyncReadExt::read(&mut s, &mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .expect("connection not closed");
    assert!(got < answer.len(), "{got} of {} bytes", answer.len());
    server.stop().await.unwrap();
}
