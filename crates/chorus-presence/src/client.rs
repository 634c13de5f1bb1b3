//! The gateway's side: [`PresenceClient`] feeds every replica with this node's entries and
//! asks a complete replica when the gateway needs an answer.
//!
//! Contract (docs/presence.md, "The client library"):
//! * [`add`](PresenceClient::add) and [`remove`](PresenceClient::remove) never block on the
//!   network and never fail: they change the local, authoritative set of this node's entries
//!   and mark the key dirty for every connected replica.
//! * One task per endpoint keeps one `Sync` stream: `Hello`, a full snapshot on every
//!   (re)connect, then every `flush_interval` the dirty keys as one `Deltas` batch (the current
//!   value of each key, so ten changes of one key in a tick cost one operation), a `Heartbeat`
//!   when there was nothing to send for the heartbeat interval the replica asked for, and
//!   reconnects with jittered exponential backoff (50 ms doubling to `reconnect_backoff_max`).
//!   While a stream is down nothing is queued for it: the snapshot on reconnect carries the
//!   state, so memory stays bounded by the node's own entries.
//! * Queries go to a replica whose stream from this node is synced (its snapshot
//!   acknowledged), after the replica acknowledged every local change made before the query
//!   (read-your-writes: a client sees itself right after subscribing); a replica answering
//!   UNAVAILABLE (warming up), failing or timing out is skipped for the next one. When none
//!   can answer, [`QueryError::Unavailable`] — never a stale or partial list.
//! * Entries of other nodes that a replica dropped (lease expired or Goodbye) arrive on
//!   [`Expirations`], deduplicated across replicas, for the gateway's `leave` pushes.
//! * [`shutdown`](PresenceClient::shutdown) sends `Goodbye` on every synced stream (the
//!   replicas drop this node's entries at once) and ends the tasks.

mod expired;
mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chorus_proto::presence as pb;
use chorus_proto::presence::presence_client::PresenceClient as RpcClient;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

use crate::auth::ApiKeyHeader;
use crate::config::MAX_NODE_LEN;
use crate::metrics as m;

pub use chorus_proto::presence::{ClientInfo, UserStatus};
pub use expired::{Expiration, Expirations, ExpiryReason};

/// Largest answer accepted from a replica (a presence list of a very large channel).
const MAX_ANSWER_SIZE: usize = 256 << 20;
/// Expiration batches queued for the gateway before new ones are dropped.
const EXPIRATIONS_QUEUE: usize = 1024;

/// Settings of a [`PresenceClient`] (the gateway maps `presence.*` onto it).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// This gateway's node id, unique per process (the stream binds to it).
    pub node: String,
    /// Replica URLs, `http://host:port`, one stream each.
    pub endpoints: Vec<String>,
    /// Service key (`presence.key`), sent as `authorization: apikey <key>`.
    pub key: String,
    /// How often dirty entries are sent as one batch. Default 50 ms.
    pub flush_interval: Duration,
    /// TCP connect deadline per attempt. Default 1 s.
    pub connect_timeout: Duration,
    /// Deadline of one query to one replica (including the wait for the replica to
    /// acknowledge this node's earlier changes). Default 1 s.
    pub query_timeout: Duration,
    /// Longest pause between reconnect attempts. Default 1 s; keep it well below the service's
    /// `lease_ttl` so a restarted replica gets every snapshot within its warm-up.
    pub reconnect_backoff_max: Duration,
    /// Most operations in one `Deltas` or `SnapshotChunk` message. Default 2,000 (well under
    /// the service's 4 MiB message limit for entries of up to ~2 KiB).
    pub max_batch: usize,
}

impl ClientConfig {
    /// Defaults for the given node, endpoints and key.
    pub fn new(node: impl Into<String>, endpoints: Vec<String>, key: impl Into<String>) -> Self {
        ClientConfig {
            node: node.into(),
            endpoints,
            key: key.into(),
            flush_interval: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(1),
            max_batch: 2000,
        }
    }
}

/// Why a client could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("presence client needs at least one endpoint")]
    NoEndpoints,
    #[error("presence endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("presence node id must be 1 to {MAX_NODE_LEN} bytes")]
    Node,
    #[error("presence flush interval and max batch must be greater than 0")]
    Settings,
}

/// Why a query has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No replica could answer exactly (none synced, all warming up, failing or slow). The
    /// gateway answers error 100.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
    /// The service refused the request itself (e.g. more than 10,000 users).
    #[error("invalid presence query: {0}")]
    InvalidArgument(String),
}

/// Counts of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceStats {
    pub num_clients: u32,
    pub num_users: u32,
}

/// Key of a local entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) channel: Arc<str>,
    pub(crate) client: Arc<str>,
}

/// The node's own entries, authoritative, and what each stream has not sent yet.
#[derive(Debug, Default)]
pub(crate) struct Local {
    pub(crate) entries: HashMap<Key, ClientInfo>,
    /// Bumped by every change.
    pub(crate) write_seq: u64,
    /// Per endpoint: keys changed since the last batch; `None` while the stream is down
    /// (its next snapshot carries everything).
    pub(crate) dirty: Vec<Option<HashSet<Key>>>,
}

type Rpc = RpcClient<InterceptedService<Channel, ApiKeyHeader>>;

/// One replica as seen by this client.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) rpc: Rpc,
    /// The stream's snapshot is acknowledged and the stream is up.
    pub(crate) synced: AtomicBool,
    /// Highest `write_seq` the replica acknowledged.
    pub(crate) acked: watch::Sender<u64>,
    /// Asks the stream task to send the dirty keys now (a query waits for them).
    pub(crate) flush_now: Notify,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) session: String,
    pub(crate) local: Mutex<Local>,
    pub(crate) endpoints: Vec<Endpoint>,
    /// Index of the replica that answered last (asked first next time).
    preferred: AtomicUsize,
    pub(crate) expired: expired::Dedup,
    /// Set before cancelling: the streams say Goodbye.
    pub(crate) goodbye: AtomicBool,
}

impl Inner {
    pub(crate) fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The presence client of one gateway node. Create it inside a tokio runtime.
#[derive(Debug)]
pub struct PresenceClient {
    inner: Arc<Inner>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl PresenceClient {
    /// Validates the settings, starts one stream task per endpoint and returns the client and
    /// the receiver of remote expirations (drop it if unused).
    pub fn start(config: ClientConfig) -> Result<(PresenceClient, Expirations), ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        if config.node.is_empty() || config.node.len() > MAX_NODE_LEN {
            return Err(ClientError::Node);
        }
        if config.flush_interval.is_zero() || config.max_batch == 0 {
            return Err(ClientError::Settings);
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for url in &config.endpoints {
            let error = |reason: String| ClientError::Endpoint {
                endpoint: url.clone(),
                reason,
            };
            if !url.starts_with("http://") {
                return Err(error("must start with http://".into()));
            }
            let channel = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| error(e.to_string()))?
                .connect_timeout(config.connect_timeout)
                .tcp_nodelay(true)
                .connect_lazy();
            let rpc = RpcClient::with_interceptor(channel, ApiKeyHeader::new(&config.key))
                .max_decoding_message_size(MAX_ANSWER_SIZE);
            endpoints.push(Endpoint {
                url: url.clone(),
                rpc,
                synced: AtomicBool::new(false),
                acked: watch::Sender::new(0),
                flush_now: Notify::new(),
            });
        }
        let (tx, rx) = mpsc::channel(EXPIRATIONS_QUEUE);
        let n = endpoints.len();
        let inner = Arc::new(Inner {
            session: uuid::Uuid::new_v4().to_string(),
            local: Mutex::new(Local {
                dirty: vec![None; n],
                ..Local::default()
            }),
            endpoints,
            preferred: AtomicUsize::new(0),
            expired: expired::Dedup::new(tx),
            goodbye: AtomicBool::new(false),
            config,
        });
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        for i in 0..n {
            let inner = Arc::clone(&inner);
            let cancel = cancel.clone();
            tasks.spawn(async move { stream::run(inner, i, cancel).await });
        }
        Ok((
            PresenceClient {
                inner,
                cancel,
                tasks,
            },
            Expirations::new(rx),
        ))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    /// Adds or replaces this node's entry (channel, `info.client`). Never blocks on the
    /// network, never fails. `info.node` is ignored.
    pub fn add(&self, channel: &str, mut info: ClientInfo) {
        info.node = String::new();
        let key = Key {
            channel: channel.into(),
            client: info.client.as_str().into(),
        };
        let mut local = self.inner.local();
        local.write_seq += 1;
        for dirty in local.dirty.iter_mut().flatten() {
            dirty.insert(key.clone());
        }
        local.entries.insert(key, info);
    }

    /// Removes this node's entry (channel, client); removing an absent entry does nothing.
    pub fn remove(&self, channel: &str, client: &str) {
        let key = Key {
            channel: channel.into(),
            client: client.into(),
        };
        let mut local = self.inner.local();
        if local.entries.remove(&key).is_none() {
            return;
        }
        local.write_seq += 1;
        for dirty in local.dirty.iter_mut().flatten() {
            dirty.insert(key.clone());
        }
    }

    /// Entries this node holds locally.
    pub fn local_len(&self) -> usize {
        self.inner.local().entries.len()
    }

    /// Replicas whose stream is synced right now.
    pub fn synced_endpoints(&self) -> usize {
        self.inner
            .endpoints
            .iter()
            .filter(|e| e.synced.load(Ordering::Acquire))
            .count()
    }

    /// Everyone present in the channel, cluster-wide, keyed by client id.
    pub async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, QueryError> {
        let req = pb::PresenceRequest {
            channel: channel.to_string(),
        };
        self.query(move |mut rpc| {
            let req = req.clone();
            async move { rpc.presence(req).await.map(|r| r.into_inner().presence) }
        })
        .await
    }

    /// Clients and distinct users present in the channel, cluster-wide.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, QueryError> {
        let req = pb::PresenceStatsRequest {
            channel: channel.to_string(),
        };
        self.query(move |mut rpc| {
            let req = req.clone();
            async move {
                rpc.presence_stats(req).await.map(|r| {
                    let r = r.into_inner();
                    PresenceStats {
                        num_clients: r.num_clients,
                        num_users: r.num_users,
                    }
                })
            }
        })
        .await
    }

    /// Status of each user, in request order (at most 10,000 users).
    pub async fn user_status(&self, users: &[String]) -> Result<Vec<UserStatus>, QueryError> {
        let req = pb::UserStatusRequest {
            users: users.to_vec(),
        };
        self.query(move |mut rpc| {
            let req = req.clone();
            async move { rpc.user_status(req).await.map(|r| r.into_inner().statuses) }
        })
        .await
    }

    async fn query<T, F, Fut>(&self, call: F) -> Result<T, QueryError>
    where
        F: Fn(Rpc) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let inner = &self.inner;
        let target = inner.local().write_seq;
        let n = inner.endpoints.len();
        let first = inner.preferred.load(Ordering::Relaxed) % n;
        let timeout = inner.config.query_timeout;
        let mut why: Vec<String> = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let ep = &inner.endpoints[i];
            if !ep.synced.load(Ordering::Acquire) {
                why.push(format!("{}: not synced", ep.url));
                continue;
            }
            let deadline = tokio::time::Instant::now() + timeout;
            if *ep.acked.borrow() < target {
                ep.flush_now.notify_one();
                let mut acked = ep.acked.subscribe();
                let caught_up = tokio::time::timeout_at(deadline, acked.wait_for(|a| *a >= target));
                if !matches!(caught_up.await, Ok(Ok(_))) {
                    why.push(format!(
                        "{}: local changes not acknowledged in time",
                        ep.url
                    ));
                    continue;
                }
            }
            match tokio::time::timeout_at(deadline, call(ep.rpc.clone())).await {
                Ok(Ok(answer)) => {
                    inner.preferred.store(i, Ordering::Relaxed);
                    return Ok(answer);
                }
                Ok(Err(status)) if status.code() == Code::InvalidArgument => {
                    return Err(QueryError::InvalidArgument(status.message().to_string()));
                }
                Ok(Err(status)) => {
                    why.push(format!(
                        "{}: {:?} {}",
                        ep.url,
                        status.code(),
                        status.message()
                    ));
                }
                Err(_) => why.push(format!("{}: no answer within {timeout:?}", ep.url)),
            }
        }
        metrics::counter!(m::CLIENT_QUERIES_FAILED).increment(1);
        Err(QueryError::Unavailable(why.join("; ")))
    }

    /// Says Goodbye on every synced stream (the replicas drop this node's entries at once and
    /// tell the other gateways), then ends the tasks; waits at most about 2 s.
    pub async fn shutdown(&self) {
        self.inner.goodbye.store(true, Ordering::Release);
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }
}

impl PresenceClient {
    /// Stops the tasks without Goodbye, as if the process were killed: the replicas keep this
    /// node's entries until its lease expires (tests of that path; what `Drop` does too).
    pub fn abort(&self) {
        self.cancel.cancel();
    }
}

impl Drop for PresenceClient {
    fn drop(&mut self) {
        // Without shutdown(): stop the tasks without Goodbye (the lease will expire).
        self.cancel.cancel();
    }
}
