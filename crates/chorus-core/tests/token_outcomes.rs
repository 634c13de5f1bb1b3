//! Token outcomes as the client sees them (Centrifugo v6, `backend-integration.md` §5.3), and
//! the verifier's key fetch (`TokenVerifier::prepare_*`) awaited before every token check:
//! connect, refresh, subscribe and sub_refresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_core::auth::{
    ConnectionClaims, KeyFetch, SubscriptionClaims, TokenError, TokenVerifier,
};
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::clock::unix_now;
use chorus_core::presence::memory::MemoryPresence;
use chorus_core::Node;
use chorus_protocol::Protocol;
use common::{options, TestClient};

/// Connection tokens `user:NAME[;expire_at=UNIX]`, `expired`; subscription tokens
/// `sub:USER:CHANNEL[:CLIENT]`, `sub-expired`, `sub-past:USER:CHANNEL` (expire_at in the
/// past). A token starting with `late-` verifies only once its key was fetched: `prepare_*`
/// returns a fetch that takes 20 ms and then marks the key present (unless `fetch_fails`).
#[derive(Default)]
struct FetchingTokens {
    key_fetched: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
    fetch_fails: bool,
}

impl FetchingTokens {
    fn fetch(&self, token: &str) -> Option<KeyFetch> {
        if !token.starts_with("late-") || self.key_fetched.load(Ordering::SeqCst) {
            return None;
        }
        let (fetched, fetches) = (self.key_fetched.clone(), self.fetches.clone());
        let fails = self.fetch_fails;
        Some(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            fetches.fetch_add(1, Ordering::SeqCst);
            fetched.store(!fails, Ordering::SeqCst);
        }))
    }

    /// The token without `late-`, or an error when its key is not there.
    fn key<'a>(&self, token: &'a str) -> Result<&'a str, TokenError> {
        match token.strip_prefix("late-") {
            Some(_) if !self.key_fetched.load(Ordering::SeqCst) => {
                Err(TokenError::Invalid("unknown key".into()))
            }
            Some(rest) => Ok(rest),
            None => Ok(token),
        }
    }
}

impl TokenVerifier for FetchingTokens {
    fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, TokenError> {
        let token = self.key(token)?;
        if token == "expired" {
            return Err(TokenError::Expired);
        }
        let rest = token
            .strip_prefix("user:")
            .ok_or_else(|| TokenError::Invalid("bad".into()))?;
        let mut parts = rest.split(';');
        let mut claims = ConnectionClaims {
            user: parts.next().unwrap_or_default().to_string(),
            ..Default::default()
        };
        for p in parts {
            if let Some(t) = p.strip_prefix("expire_at=") {
                claims.expire_at = t.parse().ok();
            }
        }
        Ok(claims)
    }

    fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, TokenError> {
        let token = self.key(token)?;
        if token == "sub-expired" {
            return Err(TokenError::Expired);
        }
        let parts: Vec<&str> = token.split(':').collect();
        let claims = |user: &str, channel: &str| SubscriptionClaims {
            user: user.into(),
            channel: channel.into(),
            ..Default::default()
        };
        match parts.as_slice() {
            ["sub", user, ns, ch] => Ok(claims(user, &format!("{ns}:{ch}"))),
            ["sub", user, ns, ch, client] => Ok(SubscriptionClaims {
                client: (*client).into(),
                ..claims(user, &format!("{ns}:{ch}"))
            }),
            ["sub-past", user, ns, ch] => Ok(SubscriptionClaims {
                expire_at: Some(unix_now() - 10),
                ..claims(user, &format!("{ns}:{ch}"))
            }),
            _ => Err(TokenError::Invalid("bad".into())),
        }
    }

    fn prepare_connection(&self, token: &str) -> Option<KeyFetch> {
        self.fetch(token)
    }

    fn prepare_subscription(&self, token: &str) -> Option<KeyFetch> {
        self.fetch(token)
    }
}

fn node_where(fetch_fails: bool) -> (Node, Arc<AtomicUsize>) {
    let tokens = FetchingTokens {
        fetch_fails,
        ..Default::default()
    };
    let fetches = tokens.fetches.clone();
    let node = Node::new(
        "test-node",
        options(),
        MemoryBroker::new(),
        MemoryPresence::new(),
        Arc::new(tokens),
    );
    (node, fetches)
}

fn node() -> (Node, Arc<AtomicUsize>) {
    node_where(false)
}

async fn connect(node: &Node, token: &str) -> TestClient {
    let mut c = TestClient::new(node, Protocol::Json);
    c.send(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#))
        .await;
    let r = c.next().await.expect("connect reply");
    assert!(r.connect.is_some(), "connect failed: {r:?}");
    c
}

async fn error_code(c: &mut TestClient, command: &str) -> u32 {
    c.send(command).await;
    let reply = c.next().await.expect("a reply");
    match &reply.error {
        Some(e) => e.code,
        None => panic!("expected an error: {reply:?}"),
    }
}

#[tokio::test]
async fn connect_awaits_the_key_fetch_and_maps_outcomes() {
    let (node, fetches) = node();
    let c = connect(&node, "late-user:alice").await;
    assert_eq!(&*c.client.user(), "alice");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // The key is there now: no second fetch.
    connect(&node, "late-user:bob").await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    let mut c = TestClient::new(&node, Protocol::Json);
    assert_eq!(
        error_code(&mut c, r#"{"id":1,"connect":{"token":"expired"}}"#).await,
        109
    );
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(r#"{"id":1,"connect":{"token":"garbage"}}"#).await;
    assert_eq!(c.close_code().await, Some(3500));
}

#[tokio::test]
async fn a_failed_fetch_leaves_the_token_invalid() {
    let (node, fetches) = node_where(true);
    // Connect: disconnect 3500 (a JWKS outage is terminal for new clients, as in Centrifugo).
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(r#"{"id":1,"connect":{"token":"late-user:x"}}"#)
        .await;
    assert_eq!(c.close_code().await, Some(3500));
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Subscribe: error 103, the connection stays.
    let mut c = connect(&node, "user:u").await;
    let cmd = r#"{"id":2,"subscribe":{"channel":"news:a","token":"late-sub:u:news:a"}}"#;
    assert_eq!(error_code(&mut c, cmd).await, 103);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    c.send(r#"{"id":3,"subscribe":{"channel":"news:a","token":"sub:u:news:a"}}"#)
        .await;
    assert!(c.next().await.unwrap().subscribe.is_some());
}

#[tokio::test]
async fn refresh_outcomes() {
    let (node, fetches) = node();
    let mut c = connect(&node, "user:u").await;
    // A key fetched on the way: accepted.
    c.send(r#"{"id":2,"refresh":{"token":"late-user:u"}}"#)
        .await;
    assert!(c.next().await.unwrap().refresh.is_some());
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // `expire_at` in the past: error 110, the connection stays.
    let past = unix_now() - 10;
    let cmd = format!(r#"{{"id":3,"refresh":{{"token":"user:u;expire_at={past}"}}}}"#);
    assert_eq!(error_code(&mut c, &cmd).await, 110);
    // Expired: close 3005.
    c.send(r#"{"id":4,"refresh":{"token":"expired"}}"#).await;
    assert_eq!(c.close_code().await, Some(3005));

    let mut c = connect(&node, "user:u").await;
    c.send(r#"{"id":2,"refresh":{"token":"user:other"}}"#).await;
    assert_eq!(c.close_code().await, Some(3500));
    let mut c = connect(&node, "user:u").await;
    c.send(r#"{"id":2,"refresh":{"token":"garbage"}}"#).await;
    assert_eq!(c.close_code().await, Some(3500));
}

#[tokio::test]
async fn subscribe_and_sub_refresh_outcomes() {
    let (node, fetches) = node();
    let mut c = connect(&node, "user:u").await;
    // Subscribe: fetched key accepted; expired → 109; invalid → 103.
    c.send(r#"{"id":2,"subscribe":{"channel":"news:a","token":"late-sub:u:news:a"}}"#)
        .await;
    assert!(c.next().await.unwrap().subscribe.is_some());
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    let cmd = r#"{"id":3,"subscribe":{"channel":"news:b","token":"sub-expired"}}"#;
    assert_eq!(error_code(&mut c, cmd).await, 109);
    let cmd = r#"{"id":4,"subscribe":{"channel":"news:b","token":"garbage"}}"#;
    assert_eq!(error_code(&mut c, cmd).await, 103);

    // sub_refresh: ok; expired or past expire_at → 110; the connection stays.
    c.send(r#"{"id":5,"sub_refresh":{"channel":"news:a","token":"sub:u:news:a"}}"#)
        .await;
    assert!(c.next().await.unwrap().sub_refresh.is_some());
    let cmd = r#"{"id":6,"sub_refresh":{"channel":"news:a","token":"sub-expired"}}"#;
    assert_eq!(error_code(&mut c, cmd).await, 110);
    let cmd = r#"{"id":7,"sub_refresh":{"channel":"news:a","token":"sub-past:u:news:a"}}"#;
    assert_eq!(error_code(&mut c, cmd).await, 110);
    // Invalid → 3500.
    c.send(r#"{"id":8,"sub_refresh":{"channel":"news:a","token":"garbage"}}"#)
        .await;
    assert_eq!(c.close_code().await, Some(3500));

    // A token bound to another client → 3500.
    let mut c = connect(&node, "user:u").await;
    c.send(r#"{"id":2,"subscribe":{"channel":"news:a","token":"sub:u:news:a"}}"#)
        .await;
    assert!(c.next().await.unwrap().subscribe.is_some());
    c.send(r#"{"id":3,"sub_refresh":{"channel":"news:a","token":"sub:u:news:a:someone-else"}}"#)
        .await;
    assert_eq!(c.close_code().await, Some(3500));
}
