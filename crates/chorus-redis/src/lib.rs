//! chorus-redis: the Redis broker — publications, join/leave and control messages cross nodes
//! through Redis PUB/SUB; channel history lives in Redis streams.
//!
//! Parts:
//! * this file — [`RedisBroker`], the `chorus_core::broker::Broker` implementation;
//! * [`config`] — [`RedisConfig`] with documented defaults;
//! * [`address`] — what an address means: `redis://`, `rediss://` (TLS), `redis+sentinel://`;
//! * [`shard`] — key/channel naming, jump-hash sharding, connections, the publish connection;
//! * [`pubsub`] — the one subscriber connection per shard (batched subscribe, reconnect,
//!   resubscribe, in-order dispatch, liveness probe);
//! * [`scripts`] — the Lua scripts (publish with history, history read);
//! * [`cluster`] — Redis Cluster mode (sharded pub/sub, partitions);
//! * [`envelope`] — the publish frame and `chorus_proto::backplane::Envelope` conversions;
//! * [`metrics`] — metric names.
//!
//! `docs/redis.md` describes the layout, guarantees and failure handling.

pub mod address;
pub mod cluster;
pub mod config;
pub mod envelope;
pub mod metrics;
pub mod pubsub;
pub mod scripts;
pub mod shard;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chorus_core::broker::{
    new_epoch, Broker, BrokerError, BrokerHandler, HistoryPage, HistoryQuery, PublishOptions,
};
use chorus_core::control::ControlMessage;
use chorus_core::sync;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};
use redis::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::RedisConfig;

use crate::address::Address;
use crate::pubsub::{HandlerSlot, Req, SubShared, SubTask};
use crate::shard::{Conn, Naming, Publisher, SentinelTarget, Target};

/// Why the broker could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid redis config: {0}")]
    Config(String),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

struct Shard {
    publisher: Arc<Publisher>,
    sub: Arc<SubShared>,
    reqs: mpsc::UnboundedSender<Req>,
}

/// The Redis broker. Its background tasks end when it is dropped or [`RedisBroker::shutdown`]
/// is called.
pub struct RedisBroker {
    config: RedisConfig,
    node_id: String,
    naming: Naming,
    shards: Vec<Shard>,
    handler: Arc<HandlerSlot>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("addresses", &self.config.addresses)
            .field("cluster", &self.config.cluster)
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// One target per shard (standalone), or the cluster's seeds.
fn targets(config: &RedisConfig) -> Result<Vec<Target>, RedisError> {
    let parsed = config
        .addresses
        .iter()
        .map(|a| address::parse(a, &config.tls))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RedisError::Config)?;
    if config.cluster {
        let urls = parsed
            .into_iter()
            .map(|a| match a {
                Address::Direct(url) => Ok(url),
                Address::Sentinel(_) => Err(RedisError::Config(
                    "cluster mode takes the cluster's node addresses, not redis+sentinel://".into(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(vec![Target::Cluster(urls)]);
    }
    parsed
        .into_iter()
        .map(|a| match a {
            Address::Direct(url) => {
                let client = match config.tls.certificates() {
                    Some(certs) if url.starts_with("rediss://") => {
                        redis::Client::build_with_tls(url.as_str(), certs)?
                    }
                    _ => redis::Client::open(url.as_str())?,
                };
                Ok(Target::Single(Box::new(client)))
            }
            Address::Sentinel(s) => Ok(Target::Sentinel(Arc::new(SentinelTarget::new(
                s,
                &config.tls,
            )?))),
        })
        .collect()
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl RedisBroker {
    /// Starts the broker and waits up to `connect_timeout` for Redis. Unreachable Redis is not
    /// an error: the broker keeps retrying in the background and is not ready meanwhile.
    pub async fn connect(config: RedisConfig, node_id: String) -> Result<Arc<Self>, RedisError> {
        let timeout = config.connect_timeout;
        let broker = Self::start(config, node_id)?;
        broker.wait_ready(timeout).await;
        Ok(broker)
    }

    /// Starts the broker without waiting (must run inside a tokio runtime). Fails only on an
    /// invalid config.
    pub fn start(config: RedisConfig, node_id: String) -> Result<Arc<Self>, RedisError> {
        crate::metrics::describe();
        if config.addresses.is_empty() {
            return Err(RedisError::Config("no address".into()));
        }
        if config.partitions == 0 {
            return Err(RedisError::Config("partitions must be at least 1".into()));
        }
        let targets = targets(&config)?;
        let naming = Naming {
            prefix: config.prefix.clone(),
            cluster: config.cluster,
            partitions: config.partitions,
            shards: u32::try_from(targets.len()).unwrap_or(u32::MAX),
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let handler: Arc<HandlerSlot> = Arc::new(RwLock::new(None));
        let mut shards = Vec::with_capacity(targets.len());
        for (i, target) in targets.into_iter().enumerate() {
            let publisher = Publisher::new();
            tracker.spawn(publisher.clone().run(
                target.clone(),
                config.clone(),
                cancel.child_token(),
            ));
            let sub = SubShared::new();
            let (tx, rx) = mpsc::unbounded_channel();
            let task = SubTask {
                shared: sub.clone(),
                handler: handler.clone(),
                target,
                config: config.clone(),
                naming: naming.clone(),
                control: i == 0,
                node_id: node_id.clone(),
                cancel: cancel.child_token(),
                tracker: tracker.clone(),
            };
            tracker.spawn(task.run(rx));
            shards.push(Shard {
                publisher,
                sub,
                reqs: tx,
            });
        }
        Ok(Arc::new(RedisBroker {
            config,
            node_id,
            naming,
            shards,
            handler,
            cancel,
            tracker,
        }))
    }

    /// Waits until every connection is up, at most `timeout`. Returns readiness.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_ready() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the background tasks and waits for them (at most 2 s).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tracker.wait()).await;
    }

    /// Undecodable pub/sub messages dropped so far by this broker.
    pub fn bad_envelopes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                s.sub
                    .bad_envelopes
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    }

    /// Client channels this node currently asks Redis to deliver, over all shards. The node
    /// keeps no other per-channel state: history and stream meta live in Redis.
    pub fn wanted_channels(&self) -> usize {
        self.shards
            .iter()
            .map(|s| sync::lock(&s.sub.wanted).len())
            .sum()
    }

    /// The key/channel naming in use (tests and tools).
    pub fn naming(&self) -> &Naming {
        &self.naming
    }

    fn shard(&self, channel: &str) -> &Shard {
        let i = self.naming.shard_of(channel);
        &self.shards[i.min(self.shards.len() - 1)]
    }

    fn conn(&self, shard: &Shard, op: &'static str) -> Result<Conn, BrokerError> {
        shard.publisher.get().ok_or_else(|| {
            crate::metrics::error(op);
            BrokerError::Unavailable("redis connection down".into())
        })
    }

    /// Runs one command future with the command deadline; connection-level failures drop the
    /// publish connection so later calls fail fast until it is back.
    async fn guard<T>(
        &self,
        shard: &Shard,
        op: &'static str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.config.command_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                crate::metrics::error(op);
                if e.is_timeout() {
                    shard.publisher.broken();
                    Err(BrokerError::Timeout)
                } else if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                    || e.code() == Some("READONLY")
                {
                    // READONLY: the node was demoted to a replica (a Sentinel failover);
                    // reconnecting asks the Sentinels for the new master.
                    shard.publisher.broken();
                    Err(BrokerError::Unavailable(e.to_string()))
                } else {
                    Err(BrokerError::Other(e.to_string()))
                }
            }
            Err(_) => {
                crate::metrics::error(op);
                shard.publisher.broken();
                Err(BrokerError::Timeout)
            }
        }
    }

    async fn publish_frame(
        &self,
        shard: &Shard,
        op: &'static str,
        channel: String,
        envelope: &[u8],
    ) -> Result<(), BrokerError> {
        let mut conn = self.conn(shard, op)?;
        let mut cmd = redis::cmd(self.naming.publish_command());
        cmd.arg(channel).arg(envelope::frame(envelope));
        self.guard(shard, op, cmd.query_async::<Value>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn sync_sub(&self, shard: &Shard) -> Result<(), BrokerError> {
        if !shard
            .sub
            .connected
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(BrokerError::Unavailable("redis subscriber down".into()));
        }
        let (tx, rx) = oneshot::channel();
        shard
            .reqs
            .send(tx)
            .map_err(|_| BrokerError::Unavailable("broker stopped".into()))?;
        match tokio::time::timeout(self.config.command_timeout.saturating_mul(2), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(BrokerError::Unavailable("subscriber reconnecting".into())),
            Err(_) => Err(BrokerError::Timeout),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Broker for RedisBroker {
    fn set_handler(&self, handler: Weak<dyn BrokerHandler>) {
        *sync::write(&self.handler) = Some(handler);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let shard = self.shard(channel);
        let added = sync::lock(&shard.sub.wanted).insert(channel.to_string());
        let res = self.sync_sub(shard).await;
        if res.is_err() && added {
            crate::metrics::error("subscribe");
            sync::lock(&shard.sub.wanted).remove(channel);
        }
        res
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let shard = self.shard(channel);
        let removed = {
            let mut wanted = sync::lock(&shard.sub.wanted);
            let removed = wanted.remove(channel);
            // Give the table back after churn (a set sized for 300k channels holds ~10 MB).
            if wanted.capacity() > 1024 && wanted.len() < wanted.capacity() / 4 {
                wanted.shrink_to_fit();
            }
            removed
        };
        if !removed
            || !shard
                .sub
                .connected
                .load(std::sync::atomic::Ordering::Acquire)
        {
            // Not subscribed, or the reconnect will not subscribe it again.
            return Ok(());
        }
        self.sync_sub(shard).await
    }

    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let shard = self.shard(channel);
        let env = envelope::encode_publication(&self.node_id, channel, publication);
        let start = Instant::now();
        let res = match opts.history {
            None => self
                .publish_frame(shard, "publish", self.naming.pubsub_channel(channel), &env)
                .await
                .map(|()| StreamPosition::default()),
            Some(h) => {
                let key = opts.idempotency_key.as_deref().filter(|k| !k.is_empty());
                let mut conn = self.conn(shard, "publish")?;
                let mut inv = scripts::PUBLISH.prepare_invoke();
                inv.key(self.naming.meta_key(channel))
                    .key(self.naming.stream_key(channel))
                    .key(self.naming.result_key(channel, key.unwrap_or("")))
                    .arg(self.naming.pubsub_channel(channel))
                    .arg(env.as_slice())
                    .arg(h.size.max(1))
                    .arg(ms(h.ttl))
                    .arg(ms(h.meta_ttl.max(h.ttl)))
                    .arg(new_epoch())
                    .arg(if key.is_some() { "1" } else { "0" })
                    .arg(self.naming.publish_command());
                let out: Vec<String> = self
                    .guard(shard, "publish", inv.invoke_async(&mut conn))
                    .await?;
                match out.as_slice() {
                    [offset, epoch] => Ok(StreamPosition {
                        offset: offset
                            .parse()
                            .map_err(|_| BrokerError::Other("bad offset".into()))?,
                        epoch: epoch.clone(),
                    }),
                    _ => Err(BrokerError::Other("unexpected publish reply".into())),
                }
            }
        };
        ::metrics::histogram!(crate::metrics::PUBLISH_DURATION)
            .record(start.elapsed().as_secs_f64());
        res
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let env = envelope::encode_join(&self.node_id, channel, info);
        self.publish_frame(
            self.shard(channel),
            "join",
            self.naming.pubsub_channel(channel),
            &env,
        )
        .await
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let env = envelope::encode_leave(&self.node_id, channel, info);
        self.publish_frame(
            self.shard(channel),
            "leave",
            self.naming.pubsub_channel(channel),
            &env,
        )
        .await
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        let shard = self.shard(channel);
        let (read, from, to, count) = scripts::history_range(&query);
        let mut conn = self.conn(shard, "history")?;
        let mut inv = scripts::HISTORY.prepare_invoke();
        inv.key(self.naming.meta_key(channel))
            .key(self.naming.stream_key(channel))
            .arg(new_epoch())
            .arg(ms(query.meta_ttl))
            .arg(if read { "1" } else { "0" })
            .arg(if query.reverse { "1" } else { "0" })
            .arg(from)
            .arg(to)
            .arg(count);
        let value: Value = self
            .guard(shard, "history", inv.invoke_async(&mut conn))
            .await?;
        let (top, epoch, publications) = scripts::parse_history(value)?;
        if let Some(since) = &query.since {
            if !since.epoch.is_empty() && since.epoch != epoch {
                return Err(BrokerError::UnrecoverablePosition);
            }
        }
        Ok(HistoryPage {
            publications: if read { publications } else { Vec::new() },
            position: StreamPosition { offset: top, epoch },
        })
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let shard = self.shard(channel);
        let mut conn = self.conn(shard, "remove_history")?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.naming.stream_key(channel));
        self.guard(shard, "remove_history", cmd.query_async::<Value>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn publish_control(&self, message: ControlMessage) -> Result<(), BrokerError> {
        let env = envelope::encode_control(message);
        self.publish_frame(
            &self.shards[0],
            "control",
            self.naming.control_channel(),
            &env,
        )
        .await
    }

    fn is_ready(&self) -> bool {
        self.shards.iter().all(|s| {
            s.publisher.is_up() && s.sub.connected.load(std::sync::atomic::Ordering::Acquire)
        })
    }
}
