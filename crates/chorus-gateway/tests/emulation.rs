//! The HTTP-streaming and SSE fallbacks and `/emulation` over real sockets: the stream's
//! headers and framing, commands through `/emulation` answered on the stream, the session
//! ending with its stream, and the status of every kind of bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// An open stream: the response head and what was read of the body so far.
struct Stream {
    tcp: TcpStream,
    head: String,
    body: Vec<u8>,
}

impl Stream {
    async fn open(addr: std::net::SocketAddr, request: &str) -> Stream {
        let mut tcp = raw_send(addr, request.as_bytes()).await;
        let (head, body) = read_head(&mut tcp).await.unwrap();
        Stream { tcp, head, body }
    }

    /// Reads until the body holds `needle`; returns the body as text.
    async fn until(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8_lossy(&self.body).into_owned();
            if text.contains(needle) {
                return text;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in {text:?}"))
                .unwrap();
            assert!(n > 0, "EOF before {needle:?} in {text:?}");
            self.body.extend_from_slice(&chunk[..n]);
        }
    }
}

fn http_stream_request(body: &str, extra: &str) -> String {
    format!(
        "POST /connection/http_stream HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// The string value of `"key":"…"` in `text`.
fn field(text: &str, key: &str) -> String {
    let start = text.find(&format!("\"{key}\":\"")).unwrap() + key.len() + 4;
    text[start..].split('"').next().unwrap().to_owned()
}

async fn emulate(addr: std::net::SocketAddr, session: &str, node: &str, data: &str) -> u16 {
    let body = serde_json::json!({"session": session, "node": node, "data": data}).to_string();
    let headers = [("Content-Type", "application/json")];
    http(addr, "POST", "/emulation", &headers, body.as_bytes())
        .await
        .0
}

#[tokio::test]
async fn http_stream_session_commands_and_end() {
    let server = TestServer::start(test_config()).await;
    let mut stream = Stream::open(
        server.addr,
        &http_stream_request(
            r#"{"id":1,"connect":{}}"#,
            "Origin: http://localhost:3000\r\n",
        ),
    )
    .await;
    assert_eq!(parse_status(&stream.head).unwrap(), 200);
    for (name, value) in [
        (
            "cache-control",
            "private, no-cache, no-store, must-revalidate, max-age=0",
        ),
        ("pragma", "no-cache"),
        ("expire", "0"),
        ("x-accel-buffering", "no"),
        ("access-control-allow-origin", "http://localhost:3000"),
        ("access-control-allow-credentials", "true"),
    ] {
        assert_eq!(header(&stream.head, name), Some(value), "{name}");
    }
    let text = stream.until("\"session\"").await;
    let session = field(&text, "session");
    let node = field(&text, "node");
    let client = field(&text, "client");
    assert_eq!(node, server.node.id());
    assert_eq!(session.len(), 36);
    assert_ne!(
        session, client,
        "the session id is not the (public) client id"
    );
    // Process-wide metrics, other tests run beside this one: at least this stream.
    assert!(metric("chorus_transport_connections{transport=\"http_stream\"}") >= 1.0);

    // Commands through /emulation; their replies come on the stream, JSON lines.
    let cmds = "{\"id\":2,\"subscribe\":{\"channel\":\"chat:emu\"}}\n{\"id\":3,\"presence\":{\"channel\":\"chat:emu\"}}";
    assert_eq!(emulate(server.addr, &session, &node, cmds).await, 204);
    let text = stream.until("\"id\":3").await;
    assert!(text.contains("{\"id\":2,\"subscribe\":{"), "{text}");
    assert!(text.contains(&format!("\"{client}\"")), "presence: {text}");
    // Each reply ends with a newline (inside the chunked framing).
    assert!(text.contains("}}\r\n") || text.contains("}\n"), "{text}");

    // Another node's session: 404; an unknown session here: dropped, 204.
    assert_eq!(
        emulate(server.addr, &session, "other-node", "{}").await,
        404
    );
    assert_eq!(
        emulate(
            server.addr,
            "nope",
            &node,
            "{\"id\":9,\"presence\":{\"channel\":\"chat:emu\"}}"
        )
        .await,
        204
    );

    // The stream ending is the connection closing: the session is cleaned up.
    drop(stream);
    wait_for(|| server.node.num_clients() == 0).await;
    assert_eq!(
        emulate(
            server.addr,
            &session,
            &node,
            "{\"id\":4,\"presence\":{\"channel\":\"chat:emu\"}}"
        )
        .await,
        204
    );
    server.stop().await.unwrap();
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn drain_ends_the_stream_with_a_disconnect_push() {
    let mut server = TestServer::start(test_config()).await;
    let mut stream = Stream::open(
        server.addr,
        &http_stream_request(r#"{"id":1,"connect":{}}"#, ""),
    )
    .await;
    stream.until("\"session\"").await;
    server.begin_shutdown();
    let text = stream.until("\"disconnect\"").await;
    assert!(
        text.contains("{\"push\":{\"disconnect\":{\"code\":3001,"),
        "{text}"
    );
    // Then the chunked body ends.
    stream.until("\r\n0\r\n\r\n").await;
    wait_for(|| server.node.num_clients() == 0).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sse_stream_framing() {
    let server = TestServer::start(test_config()).await;
    let connect = "%7B%22id%22%3A1%2C%22connect%22%3A%7B%7D%7D";
    let mut stream = Stream::open(
        server.addr,
        &format!("GET /connection/sse?cf_connect={connect} HTTP/1.1\r\nHost: t\r\n\r\n"),
    )
    .await;
    assert_eq!(parse_status(&stream.head).unwrap(), 200);
    assert_eq!(
        header(&stream.head, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let text = stream.until("\"session\"").await;
    // Chunked: "2\r\n\r\n\r\n" carries the initial CRLF, then one event per reply.
    assert!(text.starts_with("2\r\n\r\n\r\n"), "{text:?}");
    assert!(text.contains("data: {\"id\":1,\"connect\":{"), "{text:?}");
    let session = field(&text, "session");
    let node = field(&text, "node");
    let cmd = "{\"id\":2,\"subscribe\":{\"channel\":\"chat:sse\"}}";
    assert_eq!(emulate(server.addr, &session, &node, cmd).await, 204);
    let text = stream.until("data: {\"id\":2,").await;
    assert!(text.contains("\n\n"), "{text:?}");
    server.stop().await.unwrap();
}

/// Method, path, headers, body, expected status.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Vec<u8>,
    u16,
);

#[tokio::test]
async fn bad_input_statuses() {
    let mut config = test_config();
    config.http_stream.max_request_body_size = 100;
    config.emulation.max_request_body_size = 100;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];
    let json = JSON;
    let cases: Vec<Case> = vec![
        ("GET", "/connection/http_stream", &[], vec![], 405),
        ("PUT", "/emulation", json, vec![], 405),
        ("GET", "/emulation", &[], vec![], 405),
        (
            "POST",
            "/connection/http_stream",
            json,
            b"garbage".to_vec(),
            400,
        ),
        // Not a connect, or more than the connect.
        (
            "POST",
            "/connection/http_stream",
            json,
            br#"{"id":1,"presence":{"channel":"a"}}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/connection/http_stream",
            json,
            b"{\"id\":1,\"connect\":{}}\n{\"id\":2,\"connect\":{}}".to_vec(),
            400,
        ),
        (
            "POST",
            "/connection/http_stream",
            json,
            vec![b' '; 101],
            413,
        ),
        ("GET", "/connection/sse", &[], vec![], 400),
        ("GET", "/connection/sse?cf_connect=%7B", &[], vec![], 400),
        ("DELETE", "/connection/sse", &[], vec![], 405),
        ("POST", "/emulation", json, b"garbage".to_vec(), 400),
        (
            "POST",
            "/emulation",
            json,
            br#"{"session":"s","node":"n","data":7}"#.to_vec(),
            400,
        ),
        ("POST", "/emulation", json, vec![b' '; 101], 413),
        (
            "POST",
            "/emulation",
            json,
            br#"{"session":"s","node":"n","data":""}"#.to_vec(),
            404,
        ),
        // Protobuf EmulationRequest: a truncated field.
        (
            "POST",
            "/emulation",
            &[("Content-Type", "application/octet-stream")],
            vec![0x0a, 9, b'x'],
            400,
        ),
    ];
    for (method, path, headers, body, want) in cases {
        let (status, _, _) = http(addr, method, path, headers, &body).await;
        assert_eq!(
            status,
            want,
            "{method} {path} {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    // Preflight: 204, CORS for an allowed origin only.
    let preflight = |origin: &'static str| async move {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Headers", "content-type"),
        ];
        http(addr, "OPTIONS", "/connection/http_stream", &headers, b"").await
    };
    let (status, head, _) = preflight("http://localhost:5173").await;
    assert_eq!(status, 204);
    assert_eq!(header(&head, "access-control-max-age"), Some("300"));
    assert_eq!(
        header(&head, "access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(
        header(&head, "access-control-allow-headers"),
        Some("content-type")
    );
    let (status, head, _) = preflight("https://evil.example").await;
    assert_eq!(status, 204);
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    assert_eq!(
        server.node.num_clients(),
        0,
        "no refused request left a client"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn off_by_default() {
    let mut config = chorus_gateway::config::Config::default();
    config.http_server.address = "127.0.0.1".into();
    config.http_server.port = 0;
    let server = TestServer::start(config).await;
    for (method, path) in [
        ("POST", "/connection/http_stream"),
        ("GET", "/connection/sse"),
        ("POST", "/emulation"),
    ] {
        let (status, _, _) = http(server.addr, method, path, &[], b"").await;
        assert_eq!(status, 404, "{method} {path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connection_limit_refuses_a_stream() {
    let mut config = test_config();
    config.client.options.connection_limit = 1;
    let server = TestServer::start(config).await;
    let mut first = Stream::open(
        server.addr,
        &http_stream_request(r#"{"id":1,"connect":{}}"#, ""),
    )
    .await;
    first.until("\"session\"").await;
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/connection/http_stream",
        &[("Content-Type", "application/json")],
        br#"{"id":1,"connect":{}}"#,
    )
    .await;
    assert_eq!(status, 503);
    drop(first);
    server.stop().await.unwrap();
}

#[test]
fn endpoint_paths_are_validated() {
    let mut config = test_config();
    assert!(config.validate().is_ok());
    config.sse.handler_prefix = "/connection/http_stream".into();
    config.emulation.handler_prefix = "emulation".into();
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("sse.handler_prefix"), "{error}");
    assert!(error.contains("must start with '/'"), "{error}");
    // Disabled endpoints are not checked.
    config.sse.enabled = false;
    config.http_stream.enabled = false;
    assert!(config.validate().is_ok());
}
