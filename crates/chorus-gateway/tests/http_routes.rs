//! HTTP routes of the server: health, readiness, metrics, API plumbing, demo, 404.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn health_ready_metrics_and_not_found() {
    let server = TestServer::start(test_config()).await;
    let (status, head, body) = http(server.addr, "GET", "/health", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    let (status, _, body) = http(server.addr, "GET", "/ready", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
    let (status, _, _) = http(server.addr, "GET", "/nope", &[], b"").await;
    assert_eq!(status, 404);
    let (status, head, body) = http(server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(header(&head, "content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("chorus_http_requests_total{route=\"not_found\",status=\"404\"}"),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn api_routing_method_and_body_limit() {
    let mut config = test_config();
    config.http_api.key = "secret".into();
    config.http_server.max_request_body_size = 64;
    let server = TestServer::start(config).await;
    let auth = [("Authorization", "apikey secret")];

    let (status, head, _) = http(server.addr, "GET", "/api/info", &auth, b"").await;
    assert_eq!(status, 405);
    assert_eq!(header(&head, "allow"), Some("POST"));

    let (status, _, body) = http(server.addr, "POST", "/api/info", &auth, b"{}").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["result"]["nodes"].is_array(), "{v}");

    let (status, _, _) = http(server.addr, "POST", "/api/info", &[], b"{}").await;
    assert_eq!(status, 401);

    let big = vec![b' '; 65];
    let (status, _, _) = http(server.addr, "POST", "/api/info", &auth, &big).await;
    assert_eq!(status, 413);

    // Legacy single endpoint.
    let legacy = br#"{"method":"info","params":{}}"#;
    let (status, _, _) = http(server.addr, "POST", "/api", &auth, legacy).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn demo_page_and_token() {
    let server = TestServer::start(test_config()).await;
    let (status, head, body) = http(server.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(header(&head, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(!body.is_empty());
    let (status, _, _) = http(server.addr, "GET", "/app.js", &[], b"").await;
    assert_eq!(status, 200);

    let (status, _, body) = http(server.addr, "GET", "/demo/token?name=Ann+Lee", &[], b"").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let token = v["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);

    let (status, _, _) = http(
        server.addr,
        "GET",
        "/demo/token?name=%3Cscript%3E",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = http(server.addr, "GET", "/demo/token", &[], b"").await;
    assert_eq!(status, 400);

    // Disabled demo: 404 everywhere.
    let mut config = test_config();
    config.demo.enabled = false;
    let server = TestServer::start(config).await;
    let (status, _, _) = http(server.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 404);
    let (status, _, _) = http(server.addr, "GET", "/demo/token?name=a", &[], b"").await;
    assert_eq!(status, 404);
}

/// `http_server.internal_port`: the server API, `/metrics`, `/health` and `/ready` on the
/// internal listener only; client transports and the demo page on the external one only;
/// the internal listener keeps answering through the drain (`/ready` → 503 there).
#[tokio::test]
async fn internal_listener_splits_the_routes() {
    let mut config = test_config();
    config.http_api.key = "k".into();
    config.shutdown.drain_window = chorus_core::duration::ConfigDuration::from_secs(1);
    let mut srv = TestServer::start_split(config).await;
    let (ext, int) = (srv.addr, srv.internal.unwrap());
    let auth = [("X-API-Key", "k")];

    // Internal: API, metrics, health, ready — and nothing for clients.
    for path in ["/health", "/ready", "/metrics"] {
        let (status, _, _) = http(int, "GET", path, &[], b"").await;
        assert_eq!(status, 200, "internal {path}");
    }
    let (status, _, body) = http(int, "POST", "/api/info", &auth, b"{}").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = http(int, "GET", "/", &[], b"").await;
    assert_eq!(status, 404, "internal demo page");
    let (status, _, ws) = RawWs::connect(int, "/connection/websocket", &[])
        .await
        .unwrap();
    assert_eq!((status, ws.is_none()), (404, true), "internal websocket");

    // External: the demo page and WebSockets — and none of the internal routes.
    for path in ["/health", "/ready", "/metrics"] {
        let (status, _, _) = http(ext, "GET", path, &[], b"").await;
        assert_eq!(status, 404, "external {path}");
    }
    let (status, _, _) = http(ext, "POST", "/api/info", &auth, b"{}").await;
    assert_eq!(status, 404, "external API");
    let (status, _, _) = http(ext, "GET", "/", &[], b"").await;
    assert_eq!(status, 200, "external demo page");
    let (status, _, ws) = RawWs::connect(ext, "/connection/websocket", &[])
        .await
        .unwrap();
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();
    ws.send_text(r#"{"id":1,"connect":{}}"#).await;
    assert!(ws.read_data().await.is_some(), "connect reply");

    // Drain: the client gets 3001, the internal listener answers /ready with 503.
    srv.begin_shutdown();
    let mut saw_503 = false;
    for _ in 0..100 {
        let (status, _, _) = http(int, "GET", "/ready", &[], b"").await;
        if status == 503 {
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        saw_503,
        "/ready on the internal listener never answered 503 during the drain"
    );
    assert_eq!(ws.read_close().await, Some((3001, "shutdown".to_owned())));
    ws.send_frame(true, OP_CLOSE, &[0x0b, 0xb9], true).await;
    srv.stop().await.unwrap();
}
