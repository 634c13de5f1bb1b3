//! The node over a cluster-wide presence store (what the presence service client gives the
//! gateway): reads go to the store without surveying, an unavailable store answers 100 (never
//! a partial list) while subscribes keep working, and leaves of other nodes' connections
//! reported by the store reach local subscribers as `leave` pushes where the namespace
//! announces them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use chorus_core::api::{PresenceRequest, UserStatusRequest};
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::presence::memory::MemoryPresence;
use chorus_core::presence::{PresenceError, PresenceHandler, PresenceStore, UserStatus};
use chorus_core::Node;
use chorus_protocol::{ClientInfo, PresenceStatsResult};
use common::{options, TestClient, TestTokens};

/// A cluster-wide store for the test: an in-memory store that can be switched unavailable and
/// that reports other nodes' leaves through the node's handler, as the service client does.
#[derive(Default)]
struct ClusterWide {
    inner: MemoryPresence,
    down: AtomicBool,
    handler: Mutex<Option<Weak<dyn PresenceHandler>>>,
}

impl ClusterWide {
    fn check(&self) -> Result<(), PresenceError> {
        if self.down.load(Ordering::SeqCst) {
            Err(PresenceError::Unavailable("no replica".into()))
        } else {
            Ok(())
        }
    }

    fn remote_leave(&self, channel: &str, info: ClientInfo) {
        let handler = self.handler.lock().unwrap().clone();
        if let Some(h) = handler.and_then(|w| w.upgrade()) {
            h.on_remote_leave(channel, info);
        }
    }
}

#[async_trait]
impl PresenceStore for ClusterWide {
    async fn add(&self, channel: &str, info: ClientInfo) -> Result<(), PresenceError> {
        // Writes never fail: the service client keeps them locally and syncs later.
        self.inner.add(channel, info).await
    }
    async fn remove(&self, channel: &str, client: &str) -> Result<(), PresenceError> {
        self.inner.remove(channel, client).await
    }
    async fn get(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, PresenceError> {
        self.check()?;
        self.inner.get(channel).await
    }
    async fn stats(&self, channel: &str) -> Result<PresenceStatsResult, PresenceError> {
        self.check()?;
        self.inner.stats(channel).await
    }
    async fn user_status(&self, users: &[String]) -> Result<Vec<UserStatus>, PresenceError> {
        self.check()?;
        self.inner.user_status(users).await
    }
    fn cluster_wide(&self) -> bool {
        true
    }
    fn set_handler(&self, handler: Weak<dyn PresenceHandler>) {
        *self.handler.lock().unwrap() = Some(handler);
    }
}

fn node(store: Arc<ClusterWide>) -> Node {
    Node::new(
        "node-a",
        options(),
        MemoryBroker::new(),
        store,
        Arc::new(TestTokens),
    )
}

fn errors(replies: &[chorus_protocol::Reply]) -> Vec<(u32, u32)> {
    replies
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| (r.id, e.code)))
        .collect()
}

#[tokio::test]
async fn reads_go_to_the_store_and_fail_with_100_when_it_is_down() {
    let store = Arc::new(ClusterWide::default());
    let node = node(store.clone());
    let mut c = TestClient::connect(&node, "ann").await;
    c.send(r#"{"id":2,"subscribe":{"channel":"chat:room"}}"#)
        .await;
    c.drain().await;
    let api = node.api();
    let presence = api
        .presence(PresenceRequest {
            channel: "chat:room".into(),
        })
        .await
        .unwrap()
        .presence;
    assert_eq!(presence.len(), 1);
    store.down.store(true, Ordering::SeqCst);
    // Subscribes still succeed; every presence read is 100 — API and client alike.
    c.send(r#"{"id":3,"subscribe":{"channel":"chat:other"}}"#)
        .await;
    c.send(r#"{"id":4,"presence":{"channel":"chat:room"}}"#)
        .await;
    c.send(r#"{"id":5,"presence_stats":{"channel":"chat:room"}}"#)
        .await;
    let replies = c.drain().await;
    assert!(replies.iter().any(|r| r.id == 3 && r.subscribe.is_some()));
    assert_eq!(errors(&replies), vec![(4, 100), (5, 100)]);
    let api_err = api
        .presence(PresenceRequest {
            channel: "chat:room".into(),
        })
        .await
        .map_err(|e| e.code);
    assert_eq!(api_err.err(), Some(100));
    let status = api
        .user_status(UserStatusRequest {
            users: vec!["ann".into()],
        })
        .await
        .map_err(|e| e.code);
    assert_eq!(status.err(), Some(100));
    store.down.store(false, Ordering::SeqCst);
    let status = api
        .user_status(UserStatusRequest {
            users: vec!["ann".into()],
        })
        .await
        .unwrap()
        .statuses;
    assert_eq!(status[0].channels, vec!["chat:other", "chat:room"]);
}

#[tokio::test]
async fn leaves_of_other_nodes_reach_local_subscribers_where_announced() {
    let store = Arc::new(ClusterWide::default());
    let node = node(store.clone());
    let mut c = TestClient::connect(&node, "ann").await;
    // chat announces join/leave to everyone; news does not announce them.
    c.send(r#"{"id":2,"subscribe":{"channel":"chat:room"}}"#)
        .await;
    c.send(r#"{"id":3,"subscribe":{"channel":"news:room"}}"#)
        .await;
    c.drain().await;
    let gone = ClientInfo {
        user: "bob".into(),
        client: "client-of-a-dead-node".into(),
        ..Default::default()
    };
    store.remote_leave("chat:room", gone.clone());
    store.remote_leave("news:room", gone.clone());
    let leaves: Vec<(String, String)> = c
        .drain()
        .await
        .into_iter()
        .filter_map(|r| {
            let p = r.push?;
            Some((p.channel, p.leave?.info?.client))
        })
        .collect();
    assert_eq!(
        leaves,
        vec![("chat:room".to_string(), "client-of-a-dead-node".to_string())]
    );
}
