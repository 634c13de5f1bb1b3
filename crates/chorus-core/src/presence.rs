//! The presence port: who is subscribed to a channel, across the cluster.
//!
//! The node adds a client when it subscribes to a channel with presence enabled and removes it
//! on unsubscribe or disconnect. Implementations: [`memory::MemoryPresence`] (single node) and
//! the presence service client (`chorus-presence`).

pub mod memory;

use std::collections::HashMap;

use async_trait::async_trait;
use chorus_protocol::{ClientInfo, PresenceStatsResult};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("presence unavailable: {0}")]
    Unavailable(String),
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
}
