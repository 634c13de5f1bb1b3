//! WebSocket transport over real sockets: echo, limits, malformed frames, handshake rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn echo_round_trip_text_binary_fragmented_and_ping() {
    let server = TestServer::start(test_config()).await;
    let (status, _, ws) = server.ws("/connection/echo", &[]).await;
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();

    ws.send_text("hello").await;
    let f = ws.read_data().await.unwrap();
    assert_eq!(
        (f.fin, f.opcode, f.masked, f.payload.as_slice()),
        (true, OP_TEXT, false, &b"hello"[..])
    );

    ws.send_frame(true, OP_BINARY, &[0, 1, 2, 255], true).await;
    let f = ws.read_data().await.unwrap();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_BINARY, &[0u8, 1, 2, 255][..])
    );

    // A fragmented message with a ping in the middle comes back whole, after the pong.
    ws.send_frame(false, OP_TEXT, b"ab", true).await;
    ws.send_frame(true, OP_PING, b"p1", true).await;
    ws.send_frame(true, OP_CONT, b"cd", true).await;
    let pong = ws.read_frame().await.unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (OP_PONG, &b"p1"[..])
    );
    let f = ws.read_data().await.unwrap();
    assert_eq!(
        (f.fin, f.opcode, f.payload.as_slice()),
        (true, OP_TEXT, &b"abcd"[..])
    );

    // Client close is echoed with the same code, then the server closes TCP.
    ws.send_frame(true, OP_CLOSE, &[0x03, 0xe8, b'b', b'y', b'e'], true)
        .await;
    assert_eq!(ws.read_close().await, Some((1000, String::new())));
    assert!(ws.closed_within(Duration::from_secs(2)).await);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversize_single_frame_closes_1009() {
    let server = TestServer::start(test_config()).await;
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_text(&"x".repeat(1024)).await; // exactly the limit: fine
    assert_eq!(ws.read_data().await.unwrap().payload.len(), 1024);
    ws.send_frame(true, OP_BINARY, &vec![7u8; 1025], true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1009));
    assert!(ws.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn oversize_across_fragments_closes_1009() {
    let server = TestServer::start(test_config()).await;
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(false, OP_BINARY, &[1u8; 256], true).await;
    for _ in 0..3 {
        ws.send_frame(false, OP_CONT, &[1u8; 256], true).await; // 1024 so far
    }
    ws.send_frame(true, OP_CONT, &[1u8; 1], true).await; // 1025 in total
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1009));
}

#[tokio::test]
async fn invalid_utf8_closes_1007() {
    let server = TestServer::start(test_config()).await;
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(true, OP_TEXT, b"ok \xff\xfe", true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1007));

    // Also when the bad bytes are in a later fragment.
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(false, OP_TEXT, b"fine", true).await;
    ws.send_frame(true, OP_CONT, b"\xc0\xaf", true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1007));
}

#[tokio::test]
async fn unmasked_frame_closes_1002() {
    let server = TestServer::start(test_config()).await;
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(true, OP_TEXT, b"no mask", false).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1002));
    let (_, _, body) = http(server.addr, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("chorus_transport_protocol_errors_total{kind=\"unmasked\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn framing_violations_close_1002() {
    let server = TestServer::start(test_config()).await;
    // Continuation without a start.
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(true, OP_CONT, b"x", true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1002));
    // Reserved opcode.
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(true, 0x3, b"x", true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1002));
    // Oversized control frame.
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(true, OP_PONG, &[0u8; 126], true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1002));
    // Invalid close code.
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_frame(true, OP_CLOSE, &[0x03, 0xed], true).await; // 1005
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1002));
}

#[tokio::test]
async fn garbage_after_upgrade_closes_and_server_keeps_serving() {
    let server = TestServer::start(test_config()).await;
    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.stream.write_all(&[0xff; 64]).await.unwrap();
    assert!(ws.closed_within(Duration::from_secs(5)).await);

    let mut ws = server.ws("/connection/websocket", &[]).await.2.unwrap();
    ws.stream
        .write_all(b"GET / HTTP/1.1\r\n\r\n garbage")
        .await
        .unwrap();
    assert!(ws.closed_within(Duration::from_secs(5)).await);

    let mut ws = server.ws("/connection/echo", &[]).await.2.unwrap();
    ws.send_text("still here").await;
    assert_eq!(ws.read_data().await.unwrap().payload, b"still here");
}

#[tokio::test]
async fn slowloris_handshake_is_closed_after_header_read_timeout() {
    let server = TestServer::start(test_config()).await; // header_read_timeout = 500ms
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /connection/websocket HT")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(
        stream_closed_within(&mut stream, Duration::from_secs(3)).await,
        "not closed"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed too early: {waited:?}"
    );
}

#[tokio::test]
async fn origin_check() {
    let mut config = test_config();
    config.client.allowed_origins = vec!["https://*.example.com".into()];
    let server = TestServer::start(config).await;
    // No Origin header: allowed (non-browser clients).
    assert_eq!(server.ws("/connection/websocket", &[]).await.0, 101);
    // Matching glob, case-insensitive.
    let ok = server
        .ws(
            "/connection/websocket",
            &[("Origin", "https://Chat.Example.com")],
        )
        .await;
    assert_eq!(ok.0, 101);
    let denied = server
        .ws("/connection/websocket", &[("Origin", "https://evil.test")])
        .await;
    assert_eq!(denied.0, 403);
    let (_, _, body) = http(server.addr, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("chorus_transport_upgrade_rejected_total{reason=\"origin\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn subprotocol_negotiation() {
    let server = TestServer::start(test_config()).await;
    let (status, head, _) = server
        .ws(
            "/connection/websocket",
            &[(
                "Sec-WebSocket-Protocol",
                "centrifuge-json, centrifuge-protobuf",
            )],
        )
        .await;
    assert_eq!(status, 101);
    assert_eq!(
        header(&head, "sec-websocket-protocol"),
        Some("centrifuge-protobuf")
    );

    let (_, head, _) = server
        .ws(
            "/connection/websocket",
            &[("Sec-WebSocket-Protocol", "centrifuge-json")],
        )
        .await;
    assert_eq!(
        header(&head, "sec-websocket-protocol"),
        Some("centrifuge-json")
    );

    let (_, head, _) = server.ws("/connection/websocket", &[]).await;
    assert_eq!(header(&head, "sec-websocket-protocol"), None);

    // A protobuf connection gets a text frame → 3501.
    let (_, _, ws) = server
        .ws(
            "/connection/websocket",
            &[("Sec-WebSocket-Protocol", "centrifuge-protobuf")],
        )
        .await;
    let mut ws = ws.unwrap();
    ws.send_text("{}").await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(3501));
    // The legacy query selects Protobuf too.
    let (_, head, ws) = server
        .ws("/connection/websocket?cf_protocol=protobuf", &[])
        .await;
    assert_eq!(header(&head, "sec-websocket-protocol"), None);
    let mut ws = ws.unwrap();
    ws.send_text("{}").await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(3501));
    // And a JSON connection gets binary → 3501.
    let mut ws = server.ws("/connection/websocket", &[]).await.2.unwrap();
    ws.send_frame(true, OP_BINARY, b"\x00", true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(3501));
}

#[tokio::test]
async fn not_an_upgrade_is_400() {
    let server = TestServer::start(test_config()).await;
    let (status, _, _) = http(server.addr, "GET", "/connection/websocket", &[], b"").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn connection_limit_answers_503() {
    let mut config = test_config();
    config.client.options.connection_limit = 1;
    let server = TestServer::start(config).await;
    let first = server.ws("/connection/websocket", &[]).await;
    assert_eq!(first.0, 101);
    let second = server.ws("/connection/websocket", &[]).await;
    assert_eq!(second.0, 503);
    // Closing the first frees the slot.
    let mut ws = first.2.unwrap();
    ws.send_frame(true, OP_CLOSE, &[0x03, 0xe8], true).await;
    assert_eq!(ws.read_close().await.map(|c| c.0), Some(1000));
    let mut ok = false;
    for _ in 0..50 {
        if server.ws("/connection/websocket", &[]).await.0 == 101 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "slot not freed");
}
