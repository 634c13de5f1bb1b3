//! The HTTP hardening rules on the fallback endpoints (`http_stream`, `sse`, `/emulation`): a
//! stalled opening or `/emulation` request is answered 408 and closed at
//! `http_server.request_timeout`, bodies over the endpoint's limit get 413 however they are
//! framed, the content type picks the encoding (and a mismatch is a clear 400), stalled
//! requests are shed at `http_server.max_connections` while open streams never are, and the
//! `chorus_transport_*{transport}` series count the traffic exactly.
//!
//! The process-wide metrics are asserted exactly: tests that open sessions, time out or shed
//! hold [`SERIAL`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_core::duration::ConfigDuration;
use common::emu::{EmuClient, Transport, TRANSPORTS};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Nothing at all comes back before the server closes the socket (within 5 s).
async fn closed_silently(tcp: &mut tokio::net::TcpStream) {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the socket stayed open");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "",
        "an answer to a stalled request"
    );
}

#[tokio::test]
async fn stalled_requests_get_408_at_the_request_deadline() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.http_server.request_timeout = ConfigDuration::from_millis(300);
    let server = TestServer::start(config).await;
    let timeouts = r#"chorus_http_request_timeouts_total{phase="body"}"#;
    let before = metric(timeouts);
    let paths = ["/connection/http_stream", "/connection/sse", "/emulation"];
    for path in paths {
        // Headers complete, 10 of the 100 body bytes announced, then nothing.
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"id\":1,\"c"
        );
        let started = tokio::time::Instant::now();
        let mut tcp = raw_send(server.addr, req.as_bytes()).await;
        let (status, head, body) = read_response(&mut tcp).await.unwrap();
        let waited = started.elapsed();
        assert_eq!(
            (status, body.as_slice()),
            (408, &b"request timeout\n"[..]),
            "{path}"
        );
        assert_eq!(header(&head, "connection"), Some("close"), "{path}");
        assert!(waited >= Duration::from_millis(250), "{path}: {waited:?}");
        assert!(stream_closed_within(&mut tcp, Duration::from_secs(2)).await);
    }
    assert_eq!(metric(timeouts) - before, 3.0);

    // An opening request whose headers never complete (the SSE GET has no body): closed
    // without an answer at `header_read_timeout` (500 ms here).
    let mut tcp = raw_send(
        server.addr,
        b"GET /connection/sse?cf_connect=%7B%7D HTTP/1.1\r\nHost: t\r\n",
    )
    .await;
    closed_silently(&mut tcp).await;
    assert_eq!(
        server.node.num_clients(),
        0,
        "no session from a stalled request"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_413_however_framed() {
    let mut config = test_config();
    config.http_stream.max_request_body_size = 100;
    config.sse.max_request_body_size = 100;
    config.emulation.max_request_body_size = 100;
    let server = TestServer::start(config).await;
    let big = format!(r#"{{"id":1,"connect":{{"name":"{}"}}}}"#, "n".repeat(100));
    let chunked = |path: &str| {
        // Two 60-byte chunks: past the limit only with the second.
        let chunk = "x".repeat(60);
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n3c\r\n{chunk}\r\n3c\r\n{chunk}\r\n0\r\n\r\n"
        )
    };
    let sse_get = format!(
        "GET /connection/sse?cf_connect={} HTTP/1.1\r\nHost: t\r\n\r\n",
        form_urlencoded::byte_serialize(big.as_bytes()).collect::<String>()
    );
    let sse_post = format!(
        "POST /connection/sse HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    let cases = [
        ("sse GET", sse_get, false),
        ("sse POST", sse_post, true),
        ("sse chunked", chunked("/connection/sse"), true),
        (
            "http_stream chunked",
            chunked("/connection/http_stream"),
            true,
        ),
        ("emulation chunked", chunked("/emulation"), true),
    ];
    for (name, req, closes) in cases {
        let mut tcp = raw_send(server.addr, req.as_bytes()).await;
        let (status, head, _) = read_response(&mut tcp).await.unwrap();
        assert_eq!(status, 413, "{name}");
        if closes {
            // The rest of the body is never read: the connection cannot be reused.
            assert_eq!(header(&head, "connection"), Some("close"), "{name}");
            assert!(stream_closed_within(&mut tcp, Duration::from_secs(2)).await);
        }
    }
    assert_eq!(server.node.num_clients(), 0);
    server.stop().await.unwrap();
}

/// `EmulationRequest { node = 1; session = 2; data = 3 }` (all shorter than 128 bytes).
fn emulation_protobuf(node: &str, session: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, value) in [
        (0x0a, node.as_bytes()),
        (0x12, session.as_bytes()),
        (0x1a, data),
    ] {
        out.push(tag);
        out.push(u8::try_from(value.len()).unwrap());
        out.extend_from_slice(value);
    }
    out
}

#[tokio::test]
async fn the_content_type_picks_the_encoding_and_a_mismatch_is_400() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(test_config()).await;
    let addr = server.addr;
    let connect = br#"{"id":1,"connect":{}}"#;
    let open = |content_type: &'static str, path: &'static str| async move {
        let headers: Vec<(&str, &str)> = match content_type {
            "" => vec![],
            t => vec![("Content-Type", t)],
        };
        let mut tcp = raw_send(addr, b"").await;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n",
            connect.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        tcp.write_all(connect).await.unwrap();
        let (head, body) = read_head(&mut tcp).await.unwrap();
        (parse_status(&head).unwrap(), head, body, tcp)
    };
    // Anything but application/octet-stream is JSON (as in Centrifugo); SSE is JSON only.
    for (content_type, path) in [
        ("text/plain", "/connection/http_stream"),
        ("", "/connection/http_stream"),
        ("application/json; charset=utf-8", "/connection/http_stream"),
        ("application/octet-stream", "/connection/sse"),
    ] {
        let (status, head, mut body, mut tcp) = open(content_type, path).await;
        assert_eq!(status, 200, "{content_type:?} {path}: {head}");
        while !String::from_utf8_lossy(&body).contains("{\"id\":1,\"connect\":{") {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "{content_type:?} {path}: EOF");
            body.extend_from_slice(&chunk[..n]);
        }
    }
    // Octet-stream selects Protobuf: a JSON connect is not a varint-delimited command.
    let (status, _, _, _) = open("application/octet-stream", "/connection/http_stream").await;
    assert_eq!(status, 400);

    // /emulation: the body's encoding must be the session's.
    let mut c = EmuClient::open(addr, Transport::HttpStream).await;
    let data = br#"{"id":2,"presence_stats":{"channel":"chat:ct"}}"#;
    let pb = emulation_protobuf(&c.node, &c.session, data);
    let octet = [("Content-Type", "application/octet-stream")];
    let (status, _, body) = http(addr, "POST", "/emulation", &octet, &pb).await;
    assert_eq!(
        (status, body.as_slice()),
        (400, &b"encoding does not match the session\n"[..])
    );
    // A JSON body without a content type is JSON.
    let json = serde_json::json!({"session": c.session, "node": c.node, "data": "{\"id\":3,\"presence_stats\":{\"channel\":\"chat:ct\"}}"});
    let (status, _, _) = http(addr, "POST", "/emulation", &[], json.to_string().as_bytes()).await;
    assert_eq!(status, 204);
    let replies = c.until(|v| v["id"] == 3).await;
    assert!(
        replies.iter().all(|v| v["id"] != 2),
        "the refused request ran: {replies:?}"
    );
    drop(c);
    wait_for("sessions left", || server.node.num_clients() == 0).await;
    server.stop().await.unwrap();
}

fn series(name: &str, transport: Transport) -> String {
    format!("{name}{{transport=\"{}\"}}", transport.label())
}

#[tokio::test]
async fn transport_metrics_count_the_fallback_traffic_exactly() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(test_config()).await;
    let names = [
        "chorus_transport_connections_accepted_total",
        "chorus_transport_connections",
        "chorus_transport_messages_received_total",
        "chorus_transport_bytes_received_total",
        "chorus_transport_frames_sent_total",
        "chorus_transport_bytes_sent_total",
    ];
    for transport in TRANSPORTS {
        let read = || names.map(|n| metric(&series(n, transport)));
        let before = read();
        let connect = r#"{"id":1,"connect":{}}"#;
        let mut c = EmuClient::open_with(server.addr, transport, connect).await;
        let data = r#"{"id":2,"presence_stats":{"channel":"chat:metrics"}}"#;
        assert_eq!(c.send(data).await, 204);
        c.until(|v| v["id"] == 2).await;
        let after = read();
        let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        let expected = [
            1.0,
            1.0,
            2.0,
            (connect.len() + data.len()) as f64,
            // Every chunk of the body is one frame (SSE's opening `\r\n` included).
            c.chunks as f64,
            c.body_bytes as f64,
        ];
        assert_eq!(delta, expected, "{transport:?}: {names:?}");
        // The connect reply, the presence_stats reply (and SSE's `\r\n`).
        assert_eq!(c.chunks, 2 + usize::from(transport == Transport::Sse));
        drop(c);
        let gauge = series("chorus_transport_connections", transport);
        wait_for("the gauge did not drop", || metric(&gauge) == before[1]).await;
        assert_eq!(metric(&series(names[0], transport)), after[0]);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn stalled_requests_are_shed_at_the_budget_open_streams_never() {
    let _serial = SERIAL.lock().await;
    let mut config = test_config();
    config.http_server.max_connections = 3;
    // Stalled connections must stay until shed, not be closed by a timeout.
    config.http_server.header_read_timeout = ConfigDuration::from_secs(30);
    config.http_server.request_timeout = ConfigDuration::from_secs(30);
    let server = TestServer::start(config).await;
    let shed = r#"chorus_http_connections_shed_total{state="pending"}"#;
    let before = metric(shed);
    let mut streams = Vec::new();
    for transport in TRANSPORTS {
        streams.push(EmuClient::open(server.addr, transport).await);
    }
    // The third connection: an opening request stalled in its body.
    let mut stalled = raw_send(
        server.addr,
        b"POST /connection/http_stream HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n{",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A fourth: the stalled one makes room, the streams stay.
    let (status, _, _) = http(server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(status, 200);
    closed_silently(&mut stalled).await;
    assert_eq!(metric(shed) - before, 1.0);
    for (i, c) in streams.iter_mut().enumerate() {
        let id = 10 + i;
        let cmd = format!(r#"{{"id":{id},"presence_stats":{{"channel":"chat:shed"}}}}"#);
        assert_eq!(c.send(&cmd).await, 204);
        let reply = c.until(|v| v["id"] == id).await.pop().unwrap();
        assert!(reply.get("error").is_none(), "{reply}");
    }
    assert_eq!(server.node.num_clients(), 2);
    drop(streams);
    server.stop().await.unwrap();
}
