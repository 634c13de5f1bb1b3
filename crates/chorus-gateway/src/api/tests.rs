//! Unit tests of the server API against a real in-memory [`Node`]: auth, parsing, and the exact
//! JSON of every answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;

use chorus_core::auth::NoTokens;
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelConfig, ChannelOptions, Namespace, NodeOptions};
use chorus_core::Node;

use super::*;
use crate::config::Config;
use chorus_core::api::Request;

mod clients;
mod shapes;

pub(super) fn node() -> Node {
    node_with(Arc::new(NoTokens))
}

/// The test node with a chosen token verifier.
pub(super) fn node_with(tokens: Arc<dyn chorus_core::auth::TokenVerifier>) -> Node {
    let options = NodeOptions {
        name: "test-node".into(),
        version: "0.0.0-test".into(),
        channel: ChannelConfig {
            namespaces: vec![Namespace {
                name: "chat".into(),
                options: ChannelOptions {
                    history_size: 10,
                    history_ttl: ConfigDuration::from_secs(300),
                    presence: true,
                    ..ChannelOptions::default()
                },
            }],
            ..ChannelConfig::default()
        },
        ..NodeOptions::default()
    };
    Node::new(
        "test-node-id",
        options,
        MemoryBroker::new(),
        chorus_core::presence::memory::MemoryPresence::new(),
        tokens,
    )
}

pub(super) fn config() -> Config {
    let mut config = Config::default();
    config.http_api.key = "secret".into();
    config
}

pub(super) fn with_key() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_static("secret"));
    headers
}

pub(super) async fn call_with(
    node: &Node,
    config: &Config,
    headers: &HeaderMap,
    method: &str,
    body: &str,
) -> (StatusCode, String) {
    let response = handle(node, config, method, headers, Bytes::from(body.to_owned())).await;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

pub(super) async fn call(node: &Node, method: &str, body: &str) -> (StatusCode, String) {
    call_with(node, &config(), &with_key(), method, body).await
}

/// The epoch of a publish/history answer.
pub(super) fn epoch_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v.pointer("/result/epoch")
        .or_else(|| v.pointer("/replies/0/publish/epoch"))
        .and_then(|e| e.as_str())
        .unwrap()
        .to_owned()
}

// ---- auth ------------------------------------------------------------------------------------

#[test]
fn presented_key_sources() {
    let mut h = HeaderMap::new();
    assert_eq!(presented_key(&h), None);
    h.insert("x-api-key", HeaderValue::from_static("k1"));
    assert_eq!(presented_key(&h), Some("k1"));
    h.insert("authorization", HeaderValue::from_static("ApiKey k2"));
    assert_eq!(
        presented_key(&h),
        Some("k2"),
        "Authorization wins, scheme case-insensitive"
    );
    h.insert("authorization", HeaderValue::from_static("Bearer k3"));
    assert_eq!(
        presented_key(&h),
        Some("k1"),
        "other schemes fall back to X-API-Key"
    );
    h.insert("authorization", HeaderValue::from_static("apikey"));
    assert_eq!(presented_key(&h), Some("k1"));
    let mut only_auth = HeaderMap::new();
    only_auth.insert("authorization", HeaderValue::from_static("APIKEY   k4 "));
    assert_eq!(presented_key(&only_auth), Some("k4"));
}

#[test]
fn key_comparison() {
    let c = config();
    let with = |key: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static(key));
        h
    };
    assert!(authorized(&c, &with("secret")));
    assert!(
        !authorized(&c, &with("secreT")),
        "same length, one byte off"
    );
    assert!(!authorized(&c, &with("secret1")), "a longer key");
    assert!(!authorized(&c, &with("secre")), "a prefix");
}

#[test]
fn authorization_rules() {
    let mut c = config();
    assert!(authorized(&c, &with_key()));
    let mut wrong = HeaderMap::new();
    wrong.insert("x-api-key", HeaderValue::from_static("nope"));
    assert!(!authorized(&c, &wrong));
    assert!(!authorized(&c, &HeaderMap::new()));
    c.http_api.key = String::new();
    assert!(!authorized(&c, &with_key()), "empty key refuses everything");
    let mut empty = HeaderMap::new();
    empty.insert("x-api-key", HeaderValue::from_static(""));
    assert!(!authorized(&c, &empty));
    c.http_api.insecure = true;
    assert!(
        authorized(&c, &HeaderMap::new()),
        "insecure accepts everything"
    );
}

#[tokio::test]
async fn unauthorized_is_401_with_empty_body() {
    let node = node();
    let (status, body) = call_with(&node, &config(), &HeaderMap::new(), "info", "{}").await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, ""));
    let mut c = config();
    c.http_api.key = String::new();
    let (status, body) = call_with(&node, &c, &with_key(), "publish", "{}").await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, ""));
    // Unknown methods and the legacy endpoint are behind the key too.
    let (status, _) = call_with(&node, &config(), &HeaderMap::new(), "nope", "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call_with(&node, &config(), &HeaderMap::new(), "", "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---- routing and parsing ---------------------------------------------------------------------

#[test]
fn method_names_round_trip() {
    for m in Method::ALL {
        assert_eq!(Method::from_name(m.name()), Some(m));
    }
    assert_eq!(Method::from_name("Publish"), None);
    assert_eq!(Method::from_name("connections"), None);
}

#[tokio::test]
async fn unknown_method_is_404() {
    let (status, body) = call(&node(), "connections", "{}").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "unknown API method\n")
    );
}

#[tokio::test]
async fn malformed_json_is_400() {
    let node = node();
    let (status, body) = call(&node, "publish", "oops").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        "invalid JSON body: expected value at line 1 column 1\n"
    );
    let (status, body) = call(&node, "publish", r#"{"channel":"a""#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("invalid JSON body: EOF while parsing"),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_field_type_is_400() {
    let node = node();
    let (status, body) = call(&node, "publish", r#"{"channel":1,"data":{}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("invalid request body: invalid type: integer `1`, expected a string"),
        "{body}"
    );
    let (status, _) = call(&node, "history", r#"{"channel":"chat:a","limit":"5"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&node, "broadcast", r#"{"channels":"chat:a","data":1}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn request_parsing_keeps_raw_data_and_reads_null_as_unset() {
    let body = br#"{"channel":"chat:a","data":{"b": 1,  "a":[1.50, "x"]},"tags":{"k":"v"},
        "skip_history":null,"idempotency_key":null,"delta":true,"version":3}"#;
    let Ok(Request::Publish(p)) = requests::parse(Method::Publish, body) else {
        panic!("not a publish");
    };
    assert_eq!(p.channel, "chat:a");
    assert_eq!(&p.data[..], br#"{"b": 1,  "a":[1.50, "x"]}"#);
    assert_eq!(p.tags.get("k").map(String::as_str), Some("v"));
    assert!(!p.skip_history);
    assert!(p.delta, "delta reaches the core request");
    let Ok(Request::Broadcast(b)) = requests::parse(
        Method::Broadcast,
        br#"{"channels":["a"],"data":1,"delta":true}"#,
    ) else {
        panic!("not a broadcast");
    };
    assert!(b.delta);
    // Empty body reads as {}.
    assert!(matches!(
        requests::parse(Method::Info, b""),
        Ok(Request::Info(_))
    ));
    let Ok(Request::Subscribe(s)) = requests::parse(
        Method::Subscribe,
        br#"{"user":"u","channel":"c","override":{"presence":{"value":false}},"recover_since":{"offset":5,"epoch":"e"}}"#,
    ) else {
        panic!("not a subscribe");
    };
    assert_eq!(s.override_options.presence, Some(false));
    assert_eq!(s.recover_since.unwrap().offset, 5);
}

// ---- legacy endpoint -------------------------------------------------------------------------

#[tokio::test]
async fn legacy_endpoint() {
    let node = node();
    let body = "{\"method\":\"publish\",\"params\":{\"channel\":\"plain\",\"data\":{\"a\":1}}}\n\
                {\"id\":2,\"method\":\"PRESENCE_STATS\",\"params\":{\"channel\":\"chat:a\"}}\n\
                {\"id\":3,\"method\":4,\"params\":{\"channel\":\"plain\"}}\n\
                {\"id\":4,\"method\":\"publish\",\"params\":{\"channel\":7}}\n\
                {\"id\":5,\"method\":\"batch\",\"params\":{}}";
    let (status, replies) = call(&node, "", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        replies,
        "{\"result\":{}}\n\
         {\"id\":2,\"result\":{\"num_clients\":0,\"num_users\":0}}\n\
         {\"id\":3,\"error\":{\"code\":108,\"message\":\"not available\"}}\n\
         {\"id\":4,\"error\":{\"code\":107,\"message\":\"bad request\"}}\n\
         {\"id\":5,\"error\":{\"code\":104,\"message\":\"method not found\"}}"
    );
    assert_eq!(call(&node, "", "").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&node, "", "{\"method\":").await.0,
        StatusCode::BAD_REQUEST
    );
}
