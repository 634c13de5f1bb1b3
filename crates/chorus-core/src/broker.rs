//! The broker port: how a node publishes into channels, learns about publications of other
//! nodes, and reads channel history.
//!
//! A broker delivers every publication, join and leave of a channel that this node subscribed
//! to back through the [`BrokerHandler`] — in publish order per channel, once. Implementations:
//! [`memory::MemoryBroker`] (single node, in-process) and the Redis broker (`chorus-redis`).

pub mod memory;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};

use crate::control::ControlMessage;

/// Why a broker operation failed. All variants answer error 100 (temporary) to clients,
/// except `UnrecoverablePosition` (112).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker timeout")]
    Timeout,
    #[error("unrecoverable position: epoch mismatch")]
    UnrecoverablePosition,
    #[error("broker error: {0}")]
    Other(String),
}

/// History bounds of a channel stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Max publications kept.
    pub size: usize,
    /// Stream lifetime after the last publication.
    pub ttl: Duration,
    /// Lifetime of the stream meta (epoch, top offset) after the last publication.
    pub meta_ttl: Duration,
}

/// Options of one publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Keep the publication in the channel stream (and give it an offset).
    pub history: Option<HistoryOptions>,
    /// Publishing twice with the same key within 5 minutes publishes once and returns the
    /// first result.
    pub idempotency_key: Option<String>,
}

/// A history read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only publications strictly after (or, with `reverse`, before) this offset; the epoch
    /// must match the stream's (else [`BrokerError::UnrecoverablePosition`]). An empty epoch
    /// matches any.
    pub since: Option<StreamPosition>,
    /// `Some(0)`: position only. `None`: everything kept.
    pub limit: Option<usize>,
    /// Newest first.
    pub reverse: bool,
    /// Meta lifetime to apply when the read creates the stream meta.
    pub meta_ttl: Duration,
}

/// The one check of a history read's arguments (client `history` and server API `history`):
/// `reverse` from `since.offset` 0 asks for what comes before the first publication — a bad
/// request (107), as in Centrifugo.
pub fn check_history_since(
    reverse: bool,
    since: Option<&StreamPosition>,
) -> Result<(), chorus_protocol::codes::ErrorCode> {
    if reverse && since.is_some_and(|s| s.offset == 0) {
        return Err(chorus_protocol::codes::ERROR_BAD_REQUEST);
    }
    Ok(())
}

/// The result of a history read: publications and the stream's current top position.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub publications: Vec<Publication>,
    pub position: StreamPosition,
}

/// Receives what a broker delivers. Implemented by the node; must not block (it only enqueues).
pub trait BrokerHandler: Send + Sync + 'static {
    /// A publication of a subscribed channel; `epoch` is empty when the channel keeps no
    /// history (then `publication.offset` is 0).
    fn on_publication(&self, channel: &str, publication: Publication, epoch: &str);
    fn on_join(&self, channel: &str, info: ClientInfo);
    fn on_leave(&self, channel: &str, info: ClientInfo);
    /// A control command from some node (possibly this one).
    fn on_control(&self, message: ControlMessage);
    /// Deliveries may have been lost (the broker's subscriber connection dropped and came
    /// back, or stopped answering): the node re-checks every local channel's position and
    /// tells subscribers who may have missed publications to resubscribe (unsubscribe 2500).
    fn on_deliveries_lost(&self);
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Registers where deliveries go. Called once by the node before use.
    fn set_handler(&self, handler: Weak<dyn BrokerHandler>);
    /// Starts delivering the channel to this node. Idempotent for delivery; a node calls it
    /// once per channel and pairs it with one `unsubscribe` (the hub's broker state), which
    /// the memory broker counts to know which channels are still in use.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError>;
    /// Stops delivering the channel to this node. Idempotent.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError>;
    /// Publishes; with history the publication gets the next offset of the stream. Returns the
    /// new top position (offset 0 and empty epoch without history).
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, BrokerError>;
    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError>;
    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError>;
    /// Reads the channel stream. Creates the stream meta (a new epoch) if it does not exist.
    async fn history(&self, channel: &str, query: HistoryQuery)
        -> Result<HistoryPage, BrokerError>;
    /// Drops the channel's publications (the epoch and top offset stay).
    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError>;
    /// Sends a control command to every node (including this one).
    async fn publish_control(&self, message: ControlMessage) -> Result<(), BrokerError>;
    /// Whether the broker is currently usable (readiness).
    fn is_ready(&self) -> bool {
        true
    }
}

/// A new random epoch: 8 ASCII letters.
pub fn new_epoch() -> String {
    use rand::Rng;
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}
