//! Upgrade strictness over real sockets: every malformed or contradictory opening handshake is
//! refused with its status, a plain-text reason and its own metric label, and the connection
//! ends; well-formed ones still switch protocols.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Metric deltas are exact only if no other test of this binary moves them meanwhile.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A handshake with every header given (so each can be broken on purpose).
fn handshake(version: &str, path: &str, key: &str, ws_version: &str, extra: &str) -> String {
    format!(
        "GET {path} {version}\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {ws_version}\r\n{extra}\r\n"
    )
}

async fn refused(server: &TestServer, request: &str) -> (u16, String, String) {
    let mut s = raw_send(server.addr, request.as_bytes()).await;
    let (status, head, body) = read_response(&mut s).await.unwrap();
    assert_ne!(status, 101, "{request}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; charset=utf-8"),
        "{head}"
    );
    assert!(
        stream_closed_within(&mut s, Duration::from_secs(2)).await,
        "{request}: connection left open"
    );
    (status, head, String::from_utf8(body).unwrap())
}

fn rejected(reason: &str) -> f64 {
    metric(&format!(
        "chorus_transport_upgrade_rejected_total{{reason=\"{reason}\"}}"
    ))
}

#[tokio::test]
async fn malformed_handshakes_are_refused_with_a_reason() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(test_config()).await;
    let ws = "/connection/websocket";
    let labels = ["http_version", "ws_version", "bad_key", "protocol"];
    let before: Vec<f64> = labels.iter().map(|l| rejected(l)).collect();

    // HTTP/1.0 (hyper would never hand such a connection over).
    let (status, _, body) = refused(&server, &handshake("HTTP/1.0", ws, KEY, "13", "")).await;
    assert_eq!((status, body.as_str()), (400, "HTTP/1.1 required\n"));

    // Version other than 13, or none: 426 naming the version we speak (RFC 6455 §4.4).
    for v in ["8", "14", ""] {
        let (status, head, body) = refused(&server, &handshake("HTTP/1.1", ws, KEY, v, "")).await;
        assert_eq!(
            (status, body.as_str()),
            (426, "Sec-WebSocket-Version 13 required\n"),
            "version {v:?}"
        );
        assert_eq!(header(&head, "sec-websocket-version"), Some("13"), "{head}");
    }

    // Keys that are not base64 of 16 bytes.
    for key in [
        "abc",
        "dGhlIHNhbXBsZSBub25jZQ",
        "AAAAAAAAAAAAAAAAAAAAAAAA",
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ] {
        let (status, _, body) = refused(&server, &handshake("HTTP/1.1", ws, key, "13", "")).await;
        assert_eq!(
            (status, body.as_str()),
            (400, "invalid Sec-WebSocket-Key\n"),
            "{key}"
        );
    }

    // The query and the subprotocol disagree; or the query is not understood.
    let conflicts = [
        ("?cf_protocol=protobuf", "centrifuge-json"),
        ("?format=json", "centrifuge-protobuf"),
        ("?cf_protocol=json&format=protobuf", ""),
    ];
    for (query, offered) in conflicts {
        let extra = if offered.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {offered}\r\n")
        };
        let path = format!("{ws}{query}");
        let (status, _, body) =
            refused(&server, &handshake("HTTP/1.1", &path, KEY, "13", &extra)).await;
        assert_eq!(
            (status, body.as_str()),
            (400, "conflicting protocol selection\n"),
            "{query} {offered}"
        );
    }
    let path = format!("{ws}?cf_protocol=xml");
    let (status, _, body) = refused(&server, &handshake("HTTP/1.1", &path, KEY, "13", "")).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "unknown protocol in query (json or protobuf)\n")
    );

    // A body on the handshake.
    let (status, _, body) = refused(
        &server,
        &handshake("HTTP/1.1", ws, KEY, "13", "Content-Length: 10\r\n"),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (400, "websocket upgrade must not have a body\n")
    );

    let after: Vec<f64> = labels.iter().map(|l| rejected(l)).collect();
    let moved: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(moved, [1.0, 3.0, 4.0, 4.0], "{labels:?}");
    // Nothing was registered with the node.
    assert_eq!(server.node.num_clients(), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_echo_endpoint_is_as_strict() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(test_config()).await;
    let (status, _, body) = refused(
        &server,
        &handshake("HTTP/1.1", "/connection/echo", "short", "13", ""),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (400, "invalid Sec-WebSocket-Key\n")
    );
    let (status, _, _) = refused(
        &server,
        &handshake("HTTP/1.0", "/connection/echo", KEY, "13", ""),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn agreeing_selections_switch_protocols() {
    let server = TestServer::start(test_config()).await;
    let ws = "/connection/websocket";
    for (query, offered, answered) in [
        (
            "?cf_protocol=protobuf",
            "centrifuge-protobuf",
            Some("centrifuge-protobuf"),
        ),
        ("?format=json", "centrifuge-json", Some("centrifuge-json")),
        (
            "?cf_protocol=json",
            "centrifuge-protobuf, centrifuge-json",
            Some("centrifuge-json"),
        ),
        ("?cf_protocol=protobuf", "", None),
        ("", "centrifuge-json", Some("centrifuge-json")),
    ] {
        let mut headers = Vec::new();
        if !offered.is_empty() {
            headers.push(("Sec-WebSocket-Protocol", offered));
        }
        let (status, head, _) = server.ws(&format!("{ws}{query}"), &headers).await;
        assert_eq!(status, 101, "{query} {offered}: {head}");
        assert_eq!(header(&head, "sec-websocket-protocol"), answered, "{head}");
    }
}
