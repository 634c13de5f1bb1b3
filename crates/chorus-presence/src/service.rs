//! The `chorus.presence.v1.Presence` gRPC service of one replica.
//!
//! All state sits in one [`State`] under an `RwLock`: the [`Model`], the gateway streams
//! ([`Peer`]s, one per node) and the watchers. Writes (a whole batch, a snapshot, an expiry)
//! take the write lock once and never await under it: messages to streams and watchers are
//! queued with `try_send`, and a receiver too slow to keep up is dropped instead of waited for.
//! Queries take the read lock. Parts: [`sync`] (the gateway stream), [`watch`] (watchers),
//! this file (shared state, queries, leases, shutdown).

mod sync;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chorus_proto::presence as pb;
use chorus_proto::presence::presence_server::Presence;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::config::{ServiceConfig, EXPIRED_CHUNK, MAX_NAME_LEN, MAX_STATUS_USERS};
use crate::metrics as m;
use crate::model::{Model, NodeId};

pub(crate) use watch::Watchers;

/// A message queued towards a gateway stream.
type SyncItem = Result<pb::ServiceMessage, Status>;

/// The current stream of a node on this replica.
#[derive(Debug)]
pub(crate) struct Peer {
    stream: u64,
    tx: mpsc::Sender<SyncItem>,
    cancel: CancellationToken,
}

impl Peer {
    /// Ends the stream with `status` (queued after what is already queued).
    fn close(&self, status: Status, reason: &'static str) {
        let _ = self.tx.try_send(Err(status));
        self.cancel.cancel();
        metrics::counter!(m::STREAMS_CLOSED, "reason" => reason).increment(1);
    }

    /// Queues a message; a stream that cannot take it (the gateway stopped reading) is closed.
    fn send(&self, msg: pb::service_message::Kind) -> bool {
        // Keep one slot for the closing status.
        if self.tx.capacity() <= 1 {
            self.close(
                Status::resource_exhausted("gateway reads too slowly: stream closed"),
                "slow",
            );
            return false;
        }
        self.tx
            .try_send(Ok(pb::ServiceMessage { kind: Some(msg) }))
            .is_ok()
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) model: Model,
    pub(crate) peers: HashMap<NodeId, Peer>,
    pub(crate) watchers: Watchers,
}

impl State {
    /// Tells every node but `expired` which entries of `expired` were dropped.
    fn notify_expired(
        &mut self,
        expired: NodeId,
        node_name: &str,
        reason: pb::expired::Reason,
        removed: Vec<(String, pb::ClientInfo)>,
    ) {
        if removed.is_empty() {
            return;
        }
        let chunks: Vec<pb::Expired> = removed
            .chunks(EXPIRED_CHUNK)
            .map(|chunk| pb::Expired {
                node: node_name.to_string(),
                reason: reason as i32,
                entries: chunk
                    .iter()
                    .map(|(channel, info)| pb::Entry {
                        channel: channel.clone(),
                        info: Some(info.clone()),
                    })
                    .collect(),
            })
            .collect();
        for (node, peer) in &self.peers {
            if *node == expired {
                continue;
            }
            for chunk in &chunks {
                if !peer.send(pb::service_message::Kind::Expired(chunk.clone())) {
                    break;
                }
            }
        }
        self.peers.retain(|_, p| !p.cancel.is_cancelled());
    }

    /// Drops the node (entries and stream) and tells the others.
    fn drop_node(&mut self, node: NodeId, reason: pb::expired::Reason) -> usize {
        let name = self.model.node_name(node).to_string();
        if let Some(peer) = self.peers.remove(&node) {
            if reason == pb::expired::Reason::LeaseExpired {
                peer.close(Status::aborted("lease expired"), "lease");
            }
        }
        let mut removed = Vec::new();
        let State {
            model, watchers, ..
        } = self;
        let mut sink = watchers.sink();
        model.drop_node(node, &mut removed, &mut sink);
        let n = removed.len();
        self.watchers.prune();
        self.notify_expired(node, &name, reason, removed);
        metrics::counter!(m::ENTRIES_EXPIRED).increment(n as u64);
        n
    }

    fn publish_gauges(&self) {
        let c = self.model.counts();
        metrics::gauge!(m::ENTRIES).set(c.entries as f64);
        metrics::gauge!(m::CHANNELS).set(c.channels as f64);
        metrics::gauge!(m::USERS).set(c.users as f64);
        metrics::gauge!(m::NODES).set(c.nodes as f64);
        metrics::gauge!(m::STREAMS).set(self.peers.len() as f64);
        metrics::gauge!(m::WATCHERS).set(self.watchers.len() as f64);
    }
}

/// State shared by the RPC handlers and the service's tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServiceConfig,
    /// Random id of this replica process.
    pub(crate) replica: String,
    started: Instant,
    state: RwLock<State>,
    next_id: AtomicU64,
    /// Cancelled at shutdown: every stream and watcher ends.
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl Shared {
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        // A panic under the lock leaves plain data behind; keep serving it.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether this replica may answer reads: its warm-up is over, so every live gateway has
    /// had the time to connect and send its snapshot.
    pub(crate) fn ready(&self) -> bool {
        Instant::now().saturating_duration_since(self.started) >= self.config.warmup
    }

    fn check_ready(&self, method: &'static str) -> Result<(), Status> {
        if self.ready() {
            Ok(())
        } else {
            metrics::counter!(m::QUERIES_UNAVAILABLE, "method" => method).increment(1);
            Err(Status::unavailable(
                "presence replica warming up (waiting for every gateway's snapshot): ask another replica",
            ))
        }
    }

    /// Drops every node whose lease lapsed at `now`. Returns how many were dropped.
    pub(crate) fn expire_lapsed(&self, now: Instant) -> usize {
        let mut state = self.write();
        let lapsed = state.model.lapsed(now, self.config.lease_ttl);
        for &node in &lapsed {
            let name = state.model.node_name(node).to_string();
            let n = state.drop_node(node, pb::expired::Reason::LeaseExpired);
            tracing::info!(node = %name, entries = n, "node lease expired");
            metrics::counter!(m::LEASE_EXPIRIES).increment(1);
        }
        if !lapsed.is_empty() {
            state.publish_gauges();
        }
        lapsed.len()
    }

    /// Ends every stream and watcher (shutdown). Entries stay: the process is going away.
    pub(crate) fn close_all(&self) {
        let mut state = self.write();
        for (_, peer) in state.peers.drain() {
            peer.close(
                Status::unavailable("presence replica shutting down"),
                "shutdown",
            );
        }
        state.watchers.close_all();
        state.publish_gauges();
    }
}

/// The service implementation; cheap to clone.
#[derive(Debug, Clone)]
pub struct PresenceService {
    pub(crate) shared: Arc<Shared>,
}

impl PresenceService {
    /// A replica with empty state, starting its warm-up now.
    pub fn new(config: ServiceConfig) -> PresenceService {
        let model = Model::new(config.max_node_entries);
        PresenceService {
            shared: Arc::new(Shared {
                config,
                replica: uuid::Uuid::new_v4().to_string(),
                started: Instant::now(),
                state: RwLock::new(State {
                    model,
                    peers: HashMap::new(),
                    watchers: Watchers::default(),
                }),
                next_id: AtomicU64::new(1),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Whether this replica answers reads (its warm-up is over).
    pub fn ready(&self) -> bool {
        self.shared.ready()
    }

    /// When the warm-up ends.
    pub fn ready_at(&self) -> Instant {
        self.shared.started + self.shared.config.warmup
    }

    /// Runs the lease clock until shutdown: every tick (a tenth of the lease, 10–500 ms)
    /// drops the nodes whose lease lapsed.
    pub async fn run_leases(&self) {
        let tick = (self.shared.config.lease_ttl / 10)
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shared.cancel.cancelled() => return,
                _ = interval.tick() => {
                    self.shared.expire_lapsed(Instant::now());
                }
            }
        }
    }

    /// Ends every stream and watcher and stops the service's tasks.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.close_all();
        self.shared.tasks.close();
    }

    /// Waits for the stream and watcher tasks to end.
    pub async fn wait(&self) {
        self.shared.tasks.wait().await;
    }
}

fn check_name(what: &str, name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Status::invalid_argument(format!(
            "{what} is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

struct Timer {
    method: &'static str,
    start: std::time::Instant,
}

impl Timer {
    fn new(method: &'static str) -> Timer {
        Timer {
            method,
            start: std::time::Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::histogram!(m::QUERY_DURATION, "method" => self.method)
            .record(self.start.elapsed().as_secs_f64());
    }
}

#[tonic::async_trait]
impl Presence for PresenceService {
    async fn presence(
        &self,
        request: Request<pb::PresenceRequest>,
    ) -> Result<Response<pb::PresenceResponse>, Status> {
        let _t = Timer::new("presence");
        let req = request.into_inner();
        check_name("channel", &req.channel)?;
        self.shared.check_ready("presence")?;
        let presence = self.shared.read().model.presence(&req.channel);
        Ok(Response::new(pb::PresenceResponse { presence }))
    }

    async fn presence_stats(
        &self,
        request: Request<pb::PresenceStatsRequest>,
    ) -> Result<Response<pb::PresenceStatsResponse>, Status> {
        let _t = Timer::new("presence_stats");
        let req = request.into_inner();
        check_name("channel", &req.channel)?;
        self.shared.check_ready("presence_stats")?;
        let (num_clients, num_users) = self.shared.read().model.stats(&req.channel);
        Ok(Response::new(pb::PresenceStatsResponse {
            num_clients,
            num_users,
        }))
    }

    async fn user_status(
        &self,
        request: Request<pb::UserStatusRequest>,
    ) -> Result<Response<pb::UserStatusResponse>, Status> {
        let _t = Timer::new("user_status");
        let req = request.into_inner();
        if req.users.len() > MAX_STATUS_USERS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_STATUS_USERS} users per call"
            )));
        }
        for user in &req.users {
            if user.len() > MAX_NAME_LEN {
                return Err(Status::invalid_argument(format!(
                    "user is longer than {MAX_NAME_LEN} bytes"
                )));
            }
        }
        self.shared.check_ready("user_status")?;
        let state = self.shared.read();
        let statuses = req
            .users
            .iter()
            .map(|u| state.model.user_status(u))
            .collect();
        Ok(Response::new(pb::UserStatusResponse { statuses }))
    }

    type WatchStream = ReceiverStream<Result<pb::PresenceEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        watch::watch(&self.shared, request.into_inner())
    }

    type SyncStream = ReceiverStream<SyncItem>;

    async fn sync(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        sync::sync(&self.shared, request.into_inner()).await
    }
}
