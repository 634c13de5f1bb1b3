//! The subscriber task of a shard: ONE connection that carries every channel this node needs
//! from that shard, plus the control channel (shard 0) and the node's probe channel.
//!
//! * `Broker::subscribe`/`unsubscribe` change the wanted set and wake the task; the task
//!   drains every queued request and reconciles with one batched SUBSCRIBE / UNSUBSCRIBE (at
//!   most 512 channels per command), then answers all waiters.
//! * Messages are decoded and handed to the handler in arrival order, in this one task, so
//!   per-channel order is Redis's publish order. Undecodable frames are counted and dropped.
//! * Liveness: every `liveness_probe_interval` the task publishes `probe:<n>` to its own probe
//!   channel; not receiving it within `liveness_probe_timeout` means the connection is dead
//!   even if TCP says otherwise (failover, SIGSTOP, half-open socket).
//! * On a disconnect, failed command or failed probe: reconnect with backoff, subscribe
//!   everything again, then `on_deliveries_lost()` (the node re-checks positions and sends
//!   2500 where publications may have been missed).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use chorus_core::broker::{BrokerError, BrokerHandler};
use chorus_core::sync;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RedisConfig;
use crate::envelope::{decode_frame, Delivery};
use crate::metrics as m;
use crate::shard::{Conn, Naming, Target};

const BATCH: usize = 512;

/// Where deliveries go.
pub type HandlerSlot = RwLock<Option<Weak<dyn BrokerHandler>>>;

/// A waiter for the next reconcile.
pub type Req = oneshot::Sender<Result<(), BrokerError>>;

/// State shared between the broker and one subscriber task.
pub struct SubShared {
    /// Client channels this node needs from this shard.
    pub wanted: Mutex<HashSet<String>>,
    pub connected: AtomicBool,
    /// Undecodable messages dropped (also counted in the metric).
    pub bad_envelopes: AtomicU64,
}

impl SubShared {
    pub fn new() -> Arc<Self> {
        Arc::new(SubShared {
            wanted: Mutex::new(HashSet::new()),
            connected: AtomicBool::new(false),
            bad_envelopes: AtomicU64::new(0),
        })
    }

    pub fn wants(&self, channel: &str) -> bool {
        sync::lock(&self.wanted).contains(channel)
    }
}

/// Everything the task needs.
pub struct SubTask {
    pub shared: Arc<SubShared>,
    pub handler: Arc<HandlerSlot>,
    pub target: Target,
    pub config: RedisConfig,
    pub naming: Naming,
    /// Carries the control channel.
    pub control: bool,
    pub node_id: String,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

enum Exit {
    Cancelled,
    Reconnect,
}

impl SubTask {
    fn handler(&self) -> Option<Arc<dyn BrokerHandler>> {
        sync::read(&self.handler).as_ref().and_then(|w| w.upgrade())
    }

    /// Redis channels this connection must be subscribed to.
    fn desired(&self) -> HashSet<String> {
        let mut out: HashSet<String> = sync::lock(&self.shared.wanted)
            .iter()
            .map(|c| self.naming.pubsub_channel(c))
            .collect();
        if self.control {
            out.insert(self.naming.control_channel());
        }
        out.insert(self.naming.probe_channel(&self.node_id));
        out
    }

    async fn reconcile(
        &self,
        conn: &mut Conn,
        subscribed: &mut HashSet<String>,
    ) -> redis::RedisResult<()> {
        let desired = self.desired();
        let add: Vec<String> = desired.difference(subscribed).cloned().collect();
        let remove: Vec<String> = subscribed.difference(&desired).cloned().collect();
        for chunk in add.chunks(BATCH) {
            conn.subscribe(chunk).await?;
            subscribed.extend(chunk.iter().cloned());
        }
        for chunk in remove.chunks(BATCH) {
            conn.unsubscribe(chunk).await?;
            for c in chunk {
                subscribed.remove(c);
            }
        }
        if subscribed.capacity() > 1024 && subscribed.len() < subscribed.capacity() / 4 {
            subscribed.shrink_to_fit();
        }
        Ok(())
    }

    pub async fn run(self, mut reqs: mpsc::UnboundedReceiver<Req>) {
        let mut attempt = 0u32;
        let mut ever_connected = false;
        loop {
            let (tx, rx) = mpsc::unbounded_channel();
            let connected = tokio::select! {
                () = self.cancel.cancelled() => return,
                r = self.target.connect(&self.config, Some(tx)) => r,
            };
            let mut conn = match connected {
                Ok(c) => c,
                Err(e) => {
                    m::error("subscribe_connect");
                    if chorus_core::retry::log_failure(attempt) {
                        tracing::error!(
                            redis = %self.target,
                            error = %e,
                            failures = attempt + 1,
                            "redis unreachable: subscriber connection failed; retrying with backoff"
                        );
                    }
                    let delay = self.config.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            let mut subscribed = HashSet::new();
            match tokio::time::timeout(
                self.config.command_timeout.saturating_mul(4),
                self.reconcile(&mut conn, &mut subscribed),
            )
            .await
            {
                Ok(Ok(())) => {}
                _ => {
                    m::error("subscribe");
                    let delay = self.config.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            }
            attempt = 0;
            self.shared.connected.store(true, Ordering::Release);
            metrics::gauge!(m::SUBSCRIBER_CONNECTIONS).increment(1.0);
            tracing::info!(
                channels = subscribed.len(),
                "redis subscriber connection up"
            );
            if ever_connected {
                metrics::counter!(m::RESUBSCRIBES).increment(1);
                if let Some(h) = self.handler() {
                    h.on_deliveries_lost();
                }
            }
            ever_connected = true;
            let exit = self.serve(conn, rx, &mut reqs, subscribed).await;
            self.shared.connected.store(false, Ordering::Release);
            metrics::gauge!(m::SUBSCRIBER_CONNECTIONS).decrement(1.0);
            match exit {
                Exit::Cancelled => return,
                Exit::Reconnect => tracing::warn!("redis subscriber connection lost; reconnecting"),
            }
        }
    }

    async fn serve(
        &self,
        mut conn: Conn,
        mut rx: mpsc::UnboundedReceiver<PushInfo>,
        reqs: &mut mpsc::UnboundedReceiver<Req>,
        mut subscribed: HashSet<String>,
    ) -> Exit {
        let probe_channel = self.naming.probe_channel(&self.node_id);
        let mut tick = tokio::time::interval(self.config.liveness_probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending_probe: Option<Instant> = None;
        let mut seq = 0u64;
        loop {
            let deadline = pending_probe
                .map(|t| t + self.config.liveness_probe_timeout)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            // Not biased: a steady message flow must not starve subscribe requests or probes.
            tokio::select! {
                () = self.cancel.cancelled() => return Exit::Cancelled,
                push = rx.recv() => {
                    let Some(push) = push else { return Exit::Reconnect };
                    match push.kind {
                        PushKind::Disconnection => return Exit::Reconnect,
                        // Dispatches; a probe coming back clears the pending one.
                        PushKind::Message | PushKind::SMessage
                            if self.dispatch(&push.data, &probe_channel) =>
                        {
                            pending_probe = None;
                        }
                        _ => {}
                    }
                }
                req = reqs.recv() => {
                    let Some(first) = req else { return Exit::Cancelled };
                    let mut waiters = vec![first];
                    while let Ok(r) = reqs.try_recv() {
                        waiters.push(r);
                    }
                    let res = tokio::time::timeout(
                        self.config.command_timeout,
                        self.reconcile(&mut conn, &mut subscribed),
                    )
                    .await;
                    let (answer, broken) = match res {
                        Ok(Ok(())) => (Ok(()), false),
                        Ok(Err(e)) => (Err(BrokerError::Unavailable(e.to_string())), true),
                        Err(_) => (Err(BrokerError::Timeout), true),
                    };
                    for w in waiters {
                        let _ = w.send(answer.clone());
                    }
                    if broken {
                        m::error("subscribe");
                        return Exit::Reconnect;
                    }
                }
                _ = tick.tick() => {
                    if pending_probe.is_none() {
                        seq += 1;
                        pending_probe = Some(Instant::now());
                        self.send_probe(&conn, &probe_channel, seq);
                    }
                }
                () = tokio::time::sleep_until(deadline), if pending_probe.is_some() => {
                    metrics::counter!(m::PROBE_FAILURES).increment(1);
                    tracing::warn!("redis liveness probe not received in time");
                    return Exit::Reconnect;
                }
            }
        }
    }

    fn send_probe(&self, conn: &Conn, channel: &str, seq: u64) {
        let mut conn = conn.clone();
        let cmd = {
            let mut c = redis::cmd(self.naming.publish_command());
            c.arg(channel).arg(format!("probe:{seq}"));
            c
        };
        let timeout = self.config.liveness_probe_timeout;
        self.tracker.spawn(async move {
            let _ = tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut conn)).await;
        });
    }

    fn bad_envelope(&self) {
        metrics::counter!(m::BAD_ENVELOPES).increment(1);
        self.shared.bad_envelopes.fetch_add(1, Ordering::Relaxed);
    }

    /// Handles one message; returns true if it was this node's probe.
    fn dispatch(&self, data: &[Value], probe_channel: &str) -> bool {
        let (Some(Value::BulkString(ch)), Some(Value::BulkString(payload))) =
            (data.first(), data.get(1))
        else {
            self.bad_envelope();
            return false;
        };
        if ch.as_slice() == probe_channel.as_bytes() {
            return true;
        }
        let delivery = match decode_frame(payload) {
            Ok(d) => d,
            Err(e) => {
                self.bad_envelope();
                tracing::debug!(error = %e, "bad envelope dropped");
                return false;
            }
        };
        let from_control =
            self.control && ch.as_slice() == self.naming.control_channel().as_bytes();
        let Some(handler) = self.handler() else {
            return false;
        };
        match delivery {
            Delivery::Control(msg) if from_control => handler.on_control(msg),
            Delivery::Publication {
                channel,
                publication,
                epoch,
                time_ms,
            } if !from_control && self.shared.wants(&channel) => {
                let lag = (chorus_core::clock::unix_now_ms() - time_ms).max(0) as f64 / 1000.0;
                metrics::histogram!(m::PUBSUB_LAG).record(lag);
                handler.on_publication(&channel, publication, &epoch);
            }
            Delivery::Join { channel, info } if !from_control && self.shared.wants(&channel) => {
                handler.on_join(&channel, info);
            }
            Delivery::Leave { channel, info } if !from_control && self.shared.wants(&channel) => {
                handler.on_leave(&channel, info);
            }
            _ => {}
        }
        false
    }
}
