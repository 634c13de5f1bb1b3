//! The node: one chorus engine instance. It owns the hub, the broker and presence ports and
//! the token verifier, receives broker deliveries, and offers the server API
//! ([`Node::api`], see [`crate::api`]). Cheap to clone.
//!
//! Parts: this file (construction, ports, broker subscriptions, drain), [`cluster`]
//! (heartbeats, control commands, surveys), `users.rs` (server API user operations applied
//! to local connections).

pub mod cluster;
mod presence;
mod users;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chorus_protocol::{ClientInfo, Publication};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenVerifier;
use crate::broker::{Broker, BrokerError, BrokerHandler, HistoryOptions, PublishOptions};
use crate::client::{Client, ClientParams};
use crate::hub::Hub;
use crate::metrics;
use crate::options::{ChannelOptions, NodeOptions};
use crate::presence::{PresenceHandler, PresenceStore};

/// Why a new connection was refused (the transport answers HTTP 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientLimitError {
    #[error("connection limit reached")]
    ConnectionLimit,
    #[error("node is shutting down")]
    Draining,
}

pub(crate) struct NodeInner {
    id: String,
    options: NodeOptions,
    broker: Arc<dyn Broker>,
    presence: Arc<dyn PresenceStore>,
    tokens: Arc<dyn TokenVerifier>,
    /// Backend hooks; set once at start ([`Node::set_proxies`]), empty when never set.
    proxies: std::sync::OnceLock<crate::proxy::Proxies>,
    /// The emulation transports' sessions, for commands forwarded from other nodes; set once
    /// at start ([`Node::set_session_sink`]).
    sessions: std::sync::OnceLock<Arc<dyn crate::emulation::SessionSink>>,
    hub: Hub,
    started: Instant,
    draining: AtomicBool,
    tasks: TaskTracker,
    cancel: CancellationToken,
    cluster: cluster::Cluster,
    /// Every connection's timers (pings, pong and stale deadlines, expiry checks).
    wheel: crate::wheel::Wheel<Arc<str>>,
    me: Weak<NodeInner>,
}

#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("hub", &self.inner.hub)
            .finish()
    }
}

impl BrokerHandler for NodeInner {
    fn on_publication(&self, channel: &str, publication: Publication, epoch: &str) {
        metrics::node_received(metrics::MessageType::Publication);
        self.hub.broadcast_publication(channel, publication, epoch);
    }
    fn on_join(&self, channel: &str, info: ClientInfo) {
        metrics::node_received(metrics::MessageType::Join);
        let rate = self.options.channel.join_leave_max_rate;
        self.hub.broadcast_join(channel, info, rate);
    }
    fn on_leave(&self, channel: &str, info: ClientInfo) {
        metrics::node_received(metrics::MessageType::Leave);
        let rate = self.options.channel.join_leave_max_rate;
        self.hub.broadcast_leave(channel, info, rate);
    }
    fn on_control(&self, message: crate::control::ControlMessage) {
        metrics::node_received(metrics::MessageType::Control);
        if let Some(inner) = self.me.upgrade() {
            Node { inner }.handle_control(message);
        }
    }
    fn on_deliveries_lost(&self) {
        if let Some(inner) = self.me.upgrade() {
            Node { inner }.handle_deliveries_lost();
        }
    }
}

impl PresenceHandler for NodeInner {
    /// A connection of another node vanished from presence (its node's lease expired): local
    /// subscribers get the `leave` that node could not send, if the namespace announces them.
    fn on_remote_leave(&self, channel: &str, info: ClientInfo) {
        let announces =
            crate::channel::resolve(&self.options.channel, channel).is_ok_and(|o| o.join_leave);
        if announces {
            let rate = self.options.channel.join_leave_max_rate;
            self.hub.broadcast_leave(channel, info, rate);
        }
    }
}

impl Node {
    /// Builds a node and connects the broker's deliveries to it. Call inside a tokio runtime.
    ///
    /// `id` names the node in the cluster (`info`, heartbeats, control routing); the
    /// composition root mints it once and gives the same id to a broker that needs one.
    pub fn new(
        id: impl Into<String>,
        options: NodeOptions,
        broker: Arc<dyn Broker>,
        presence: Arc<dyn PresenceStore>,
        tokens: Arc<dyn TokenVerifier>,
    ) -> Node {
        let c = &options.client;
        let horizon = c
            .ping_interval
            .get()
            .max(c.pong_timeout.get())
            .max(c.stale_close_delay.get());
        let wheel = crate::wheel::Wheel::new(c.ping_interval.get(), horizon);
        let inner = Arc::new_cyclic(|me| NodeInner {
            me: me.clone(),
            wheel,
            cluster: cluster::Cluster::default(),
            id: id.into(),
            options,
            broker,
            presence,
            tokens,
            proxies: std::sync::OnceLock::new(),
            sessions: std::sync::OnceLock::new(),
            hub: Hub::default(),
            started: Instant::now(),
            draining: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        let handler: Weak<dyn BrokerHandler> = Arc::downgrade(&inner) as Weak<dyn BrokerHandler>;
        inner.broker.set_handler(handler);
        let handler: Weak<dyn PresenceHandler> =
            Arc::downgrade(&inner) as Weak<dyn PresenceHandler>;
        inner.presence.set_handler(handler);
        let node = Node { inner };
        node.start_cluster_tasks();
        node.start_join_leave_ticker();
        node.start_flusher();
        node.start_wheel();
        node
    }

    /// The timer wheel's task: one turn per step runs the connection timers that are due
    /// (see [`crate::wheel`]). Owned by the node, ends on shutdown.
    fn start_wheel(&self) {
        let node = self.clone();
        self.spawn(async move {
            let inner = &node.inner;
            loop {
                tokio::time::sleep_until(inner.wheel.next_turn()).await;
                let due = inner.wheel.take_due(tokio::time::Instant::now());
                for (tick, id) in due {
                    if let Some(client) = inner.hub.client(&id) {
                        client.on_wheel(tick);
                    }
                }
            }
        });
    }

    pub(crate) fn wheel(&self) -> &crate::wheel::Wheel<Arc<str>> {
        &self.inner.wheel
    }

    /// The flusher: runs the flush passes of big broadcasts (see [`crate::outbound`]), apart
    /// from the broadcasting task. Owned by the node, ends on shutdown (connections still
    /// scheduled then are flushed by their own writers as they close).
    fn start_flusher(&self) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<crate::outbound::Round>();
        let opts = &self.inner.options.client;
        let (max_messages, max_bytes) = (
            opts.write_batch_max_messages.max(1),
            opts.write_batch_max_bytes.max(1),
        );
        self.inner.hub.set_flusher(crate::hub::Flusher {
            tx,
            max_messages,
            max_bytes,
        });
        self.spawn(async move {
            while let Some(round) = rx.recv().await {
                round.flush(max_messages, max_bytes);
            }
        });
    }

    /// Releases join/leave events held by `channel.join_leave_max_rate` (owned by the node,
    /// ends on shutdown; idle when nothing waits).
    fn start_join_leave_ticker(&self) {
        let rate = self.inner.options.channel.join_leave_max_rate;
        if rate == 0 {
            return;
        }
        let node = self.clone();
        self.spawn(async move {
            let mut tick = tokio::time::interval(crate::hub::join_leave::TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                node.inner.hub.release_join_leave(rate);
            }
        });
    }

    pub(crate) fn cluster(&self) -> &cluster::Cluster {
        &self.inner.cluster
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn options(&self) -> &NodeOptions {
        &self.inner.options
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    pub fn presence_store(&self) -> &Arc<dyn PresenceStore> {
        &self.inner.presence
    }

    pub(crate) fn tokens(&self) -> &Arc<dyn TokenVerifier> {
        &self.inner.tokens
    }

    /// Installs the node's backend hooks. Call once, before the first connection: the first
    /// look at them ([`Node::proxies`]) fixes them. False (nothing changed) when too late.
    pub fn set_proxies(&self, proxies: crate::proxy::Proxies) -> bool {
        self.inner.proxies.set(proxies).is_ok()
    }

    /// Installs the table of the emulation transports' sessions, which commands other nodes
    /// forward here are delivered to. Call once, at start. False (nothing changed) when one
    /// was installed already.
    pub fn set_session_sink(&self, sink: Arc<dyn crate::emulation::SessionSink>) -> bool {
        self.inner.sessions.set(sink).is_ok()
    }

    pub(crate) fn session_sink(&self) -> Option<&dyn crate::emulation::SessionSink> {
        self.inner.sessions.get().map(|s| s.as_ref())
    }

    /// The node's backend hooks (none unless [`Node::set_proxies`] installed some).
    pub fn proxies(&self) -> &crate::proxy::Proxies {
        self.inner.proxies.get_or_init(Default::default)
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Ready to take connections: not draining and the broker is usable.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.inner.broker.is_ready()
    }

    /// Whether the engine (broker) is usable, draining or not.
    pub fn engine_ready(&self) -> bool {
        self.inner.broker.is_ready()
    }

    pub fn num_clients(&self) -> usize {
        self.inner.hub.num_clients()
    }

    /// Creates the state of a new connection (before its `connect` command).
    pub fn try_new_client(&self, params: ClientParams) -> Result<Arc<Client>, ClientLimitError> {
        if self.is_draining() {
            return Err(ClientLimitError::Draining);
        }
        let limit = self.inner.options.client.connection_limit;
        if limit > 0 && self.inner.hub.num_clients() >= limit {
            return Err(ClientLimitError::ConnectionLimit);
        }
        let client = Client::new(self.clone(), params);
        self.inner.hub.add_client(client.clone());
        client.start_timers();
        metrics::clients(self.inner.hub.num_clients());
        Ok(client)
    }

    pub(crate) fn unregister_client(&self, id: &str, user: &Arc<str>) {
        self.inner.hub.remove_client(id, user);
        metrics::clients(self.inner.hub.num_clients());
    }

    /// Spawns a task owned by the node (cancelled and awaited on shutdown).
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = fut => {}
            }
        });
    }

    /// Makes sure the broker delivers `channel` to this node.
    pub(crate) async fn ensure_broker_subscribed(&self, channel: &str) -> Result<(), BrokerError> {
        let lock = self.inner.hub.broker_lock(channel);
        let mut subscribed = lock.lock().await;
        if !*subscribed {
            self.inner.broker.subscribe(channel).await?;
            *subscribed = true;
        }
        Ok(())
    }

    /// The last local subscriber left: unsubscribe the broker after a short delay, unless
    /// someone subscribed again meanwhile (no churn when people flap).
    pub(crate) fn schedule_broker_unsubscribe(&self, channel: &str) {
        let node = self.clone();
        let channel = channel.to_string();
        let delay = self.inner.options.client.channel_unsubscribe_delay.get();
        self.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let lock = node.inner.hub.broker_lock(&channel);
            let mut subscribed = lock.lock().await;
            if node.inner.hub.remove_channel_if_empty(&channel) && *subscribed {
                match node.inner.broker.unsubscribe(&channel).await {
                    Ok(()) => *subscribed = false,
                    Err(e) => tracing::warn!(%channel, error = %e, "broker unsubscribe failed"),
                }
            }
            drop(subscribed);
            drop(lock);
            node.inner.hub.forget_broker_lock(&channel);
        });
    }

    pub(crate) fn meta_ttl(&self, options: &ChannelOptions) -> Duration {
        if options.history_meta_ttl.is_zero() {
            self.inner.options.channel.history_meta_ttl.get()
        } else {
            options.history_meta_ttl.get()
        }
    }

    pub(crate) fn publish_options(
        &self,
        options: &ChannelOptions,
        skip_history: bool,
        idempotency_key: Option<String>,
    ) -> PublishOptions {
        PublishOptions {
            history: (options.history_enabled() && !skip_history).then(|| HistoryOptions {
                size: options.history_size,
                ttl: options.history_ttl.get(),
                meta_ttl: self.meta_ttl(options),
            }),
            idempotency_key,
        }
    }

    /// Graceful drain: readiness goes false, the presence store is told the node is leaving
    /// (with a presence service its connections vanish from presence at once and the other
    /// nodes announce their leaves), every connection is closed with 3001 "shutdown",
    /// spread evenly over `drain_window` (clients reconnect elsewhere without a thundering
    /// herd), then waits for connections to clean up and node tasks to end, at most `grace`.
    pub async fn shutdown(&self, drain_window: Duration, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.inner.draining.store(true, Ordering::Release);
        self.announce_shutdown().await;
        // Presence first: a cluster-wide store drops this node's connections at once and the
        // other nodes push their leaves (the drain below takes up to `drain_window`, and
        // presence must not list connections that are on their way out).
        let _ = tokio::time::timeout_at(deadline, self.inner.presence.shutdown()).await;
        let clients = self.inner.hub.all_clients();
        let n = clients.len().max(1) as u32;
        let start = tokio::time::Instant::now();
        for (i, client) in clients.iter().enumerate() {
            let at = start + drain_window.mul_f64(f64::from(i as u32) / f64::from(n));
            tokio::time::sleep_until(at.min(deadline)).await;
            client.disconnect(chorus_protocol::codes::DISCONNECT_SHUTDOWN.into());
        }
        drop(clients);
        while self.inner.hub.num_clients() > 0 && tokio::time::Instant::now() < deadline {
            // A connection that registered while the drain began (it passed the draining
            // check just before) is closed too: transports rely on the node for this.
            for client in self.inner.hub.all_clients() {
                client.disconnect(chorus_protocol::codes::DISCONNECT_SHUTDOWN.into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout_at(deadline, self.inner.tasks.wait()).await;
    }
}
