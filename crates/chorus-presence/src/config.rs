//! Settings of the service and fixed protocol limits.

use std::time::Duration;

/// Longest channel name, user id or client id accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest node id or session id accepted in `Hello`, in bytes.
pub const MAX_NODE_LEN: usize = 256;
/// Largest `conn_info` or `chan_info` accepted, in bytes.
pub const MAX_INFO_LEN: usize = 64 << 10;
/// Most users in one `UserStatus` call.
pub const MAX_STATUS_USERS: usize = 10_000;
/// Most channels + users in one `Watch` call.
pub const MAX_WATCH_NAMES: usize = 10_000;
/// Events queued for one watcher; a watcher that falls this far behind is dropped.
pub const WATCH_QUEUE: usize = 4096;
/// Messages queued towards one gateway stream (acks and expirations); a gateway that falls
/// this far behind loses its stream and reconnects.
pub const SYNC_QUEUE: usize = 1024;
/// Most entries in one `Expired` message.
pub const EXPIRED_CHUNK: usize = 1000;
/// Time a new stream has to send `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the service needs to run (the binary maps `presence_server.*` onto it).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Expected as `authorization: apikey <key>` metadata on every call. Must not be empty.
    pub key: String,
    /// A node's lease: its entries are dropped when it sent nothing for this long. Default 10s.
    pub lease_ttl: Duration,
    /// Reads (queries and `Watch`) answer UNAVAILABLE for this long after the start, the time
    /// every live gateway needs to reconnect and send its snapshot. Default: `lease_ttl`.
    pub warmup: Duration,
    /// Largest message accepted from a client, in bytes. Default 4 MiB.
    pub max_message_size: usize,
    /// Most entries one node may hold. Default 1,000,000.
    pub max_node_entries: usize,
    /// After the shutdown signal (every stream and watcher is ended at once), how long
    /// connections get to close before the server stops anyway. Default 1s.
    pub shutdown_timeout: Duration,
}

impl ServiceConfig {
    /// Defaults with the given key.
    pub fn new(key: impl Into<String>) -> ServiceConfig {
        ServiceConfig {
            key: key.into(),
            lease_ttl: Duration::from_secs(10),
            warmup: Duration::from_secs(10),
            max_message_size: 4 << 20,
            max_node_entries: 1_000_000,
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    /// How often a node should heartbeat: a quarter of the lease, so three heartbeats may be
    /// lost before it lapses.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease_ttl / 4).max(Duration::from_millis(10))
    }
}
