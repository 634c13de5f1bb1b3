//! HTTP routes of the server: health, readiness, metrics, API plumbing, demo, 404.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
