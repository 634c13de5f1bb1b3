//! The presence port: who is subscribed to a channel, and which users are online, across the
//! cluster.
//!
//! The node adds a client when it subscribes to a channel with presence enabled and removes it
//! on unsubscribe or disconnect; the node is the source of truth for its own connections.
//! Implementations: [`memory::MemoryPresence`] (this node's connections only — the node
//! surveys the other nodes to answer for the cluster) and the presence service client
//! (`chorus-presence`, adapted by the gateway: cluster-wide answers, and leaves of other
//! nodes' connections when their lease expires, delivered through [`PresenceHandler`]).
//!
//! [`conformance`] (feature `testing`) is the behavioural suite every store passes.

pub mod memory;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::collections::HashMap;
use std::sync::Weak;

use async_trait::async_trait;
use chorus_protocol::{ClientInfo, PresenceStatsResult};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// No exact answer can be given now (a presence service nobody can reach, or still
    /// warming up): callers answer error 100, never a stale or partial list.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
}

/// One user's presence: online when at least one of its connections is present in a channel
/// with presence enabled.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UserStatus {
    pub user: String,
    pub online: bool,
    /// Connections of the user present in at least one channel.
    pub num_clients: u32,
    /// Channels the user is present in, sorted.
    pub channels: Vec<String>,
}

impl UserStatus {
    /// An offline user.
    pub fn offline(user: &str) -> Self {
        UserStatus {
            user: user.to_string(),
            ..Default::default()
        }
    }

    /// Merges another node's view of the same user (connections are per node, so counts add).
    pub fn merge(&mut self, other: &UserStatus) {
        self.online |= other.online;
        self.num_clients = self.num_clients.saturating_add(other.num_clients);
        for ch in &other.channels {
            if let Err(at) = self.channels.binary_search(ch) {
                self.channels.insert(at, ch.clone());
            }
        }
    }
}

/// Receives what a cluster-wide store learns about other nodes' connections. Implemented by
/// the node; must not block (it only enqueues).
pub trait PresenceHandler: Send + Sync + 'static {
    /// A connection of another node left the channel without that node saying so (its lease
    /// expired): local subscribers get a `leave` push, per the namespace's join/leave options.
    fn on_remote_leave(&self, channel: &str, info: ClientInfo);
}

#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds (or replaces) the client's entry in the channel.
    async fn add(&self, channel: &str, info: ClientInfo) -> Result<(), PresenceError>;
    /// Removes the client's entry. Removing an absent entry is not an error.
    async fn remove(&self, channel: &str, client: &str) -> Result<(), PresenceError>;
    /// Client id → info of everyone present.
    async fn get(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, PresenceError>;
    /// Counts of clients and distinct users.
    async fn stats(&self, channel: &str) -> Result<PresenceStatsResult, PresenceError>;
    /// The status of each user, in request order (unknown users are offline).
    async fn user_status(&self, users: &[String]) -> Result<Vec<UserStatus>, PresenceError>;
    /// Whether `get`, `stats` and `user_status` answer for the whole cluster (a presence
    /// service) rather than for this node's connections only (then the node asks the others).
    fn cluster_wide(&self) -> bool {
        false
    }
    /// For a presence service: how many of its replicas this node's stream is synced with,
    /// and how many are configured. `None` for a store in the node's own memory.
    fn replicas_synced(&self) -> Option<(usize, usize)> {
        None
    }
    /// Registers where leaves of other nodes' connections go (cluster-wide stores only).
    fn set_handler(&self, _handler: Weak<dyn PresenceHandler>) {}
    /// The node is shutting down (called when its drain starts): stop background work and let
    /// the cluster know at once — a presence service drops this node's entries and tells the
    /// other nodes, which announce the leaves; the node then publishes no leave of its own for
    /// presence channels (see `Client::remove_subscription`).
    async fn shutdown(&self) {}
}
