//! Shards: where a channel lives and the connections that reach it.
//!
//! * [`Naming`] — every key and channel name, and the channel → shard / partition mapping
//!   (jump consistent hash of the FNV-1a 64 hash of the channel name; identical on every node).
//! * [`Conn`] — a multiplexed (pipelined) connection to one Redis, or a cluster connection.
//! * [`Publisher`] — the publish connection of a shard: used by every request concurrently,
//!   dropped on an I/O error or timeout and re-established by its task with backoff; while it is
//!   down requests fail at once (temporary error, SDKs retry).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_core::retry::log_failure;
use chorus_core::sync;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, TlsMode,
    Value,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::address::SentinelAddress;
use crate::config::{RedisConfig, RedisTls};

/// 64-bit FNV-1a.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Jump consistent hash (Lamping & Veach): bucket in `0..buckets` for `key`.
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    let n = i64::from(buckets.max(1));
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let shifted = (key >> 33).wrapping_add(1) as f64;
        j = ((b.wrapping_add(1) as f64) * ((1u64 << 31) as f64 / shifted)) as i64;
    }
    u32::try_from(b).unwrap_or(0)
}

/// Key and channel names.
#[derive(Debug, Clone)]
pub struct Naming {
    pub prefix: String,
    pub cluster: bool,
    pub partitions: u32,
    pub shards: u32,
}

impl Naming {
    /// Standalone: the shard (address index) of a channel. Cluster: always 0.
    pub fn shard_of(&self, channel: &str) -> usize {
        if self.cluster {
            0
        } else {
            jump_hash(fnv1a(channel), self.shards) as usize
        }
    }

    /// Cluster: the partition of a channel.
    pub fn partition_of(&self, channel: &str) -> u32 {
        jump_hash(fnv1a(channel), self.partitions)
    }

    /// The part every key of a channel shares: `{prefix.idx}` in cluster mode (one slot per
    /// partition), `prefix` otherwise.
    fn base(&self, channel: &str) -> String {
        if self.cluster {
            format!("{{{}.{}}}", self.prefix, self.partition_of(channel))
        } else {
            self.prefix.clone()
        }
    }

    /// The pub/sub channel carrying a client channel (cluster: its partition's channel).
    pub fn pubsub_channel(&self, channel: &str) -> String {
        if self.cluster {
            format!("{}.client", self.base(channel))
        } else {
            format!("{}.client.{channel}", self.prefix)
        }
    }

    pub fn meta_key(&self, channel: &str) -> String {
        format!("{}.meta.{channel}", self.base(channel))
    }

    pub fn stream_key(&self, channel: &str) -> String {
        format!("{}.stream.{channel}", self.base(channel))
    }

    pub fn result_key(&self, channel: &str, key: &str) -> String {
        format!("{}.result.{channel}.{key}", self.base(channel))
    }

    /// Node-wide control channel (standalone: on shard 0).
    pub fn control_channel(&self) -> String {
        if self.cluster {
            format!("{{{}.control}}.control", self.prefix)
        } else {
            format!("{}.control", self.prefix)
        }
    }

    /// Where a node sends liveness probes to itself.
    pub fn probe_channel(&self, node: &str) -> String {
        if self.cluster {
            format!("{{{}.probe.{node}}}.probe", self.prefix)
        } else {
            format!("{}.probe.{node}", self.prefix)
        }
    }

    pub fn publish_command(&self) -> &'static str {
        if self.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

/// One connection: standalone Redis or a Redis Cluster.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// (S)SUBSCRIBE; cluster mode one channel per call (different slots).
    pub async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.subscribe(channels).await,
            Conn::Cluster(c) => {
                for ch in channels {
                    c.ssubscribe(ch).await?;
                }
                Ok(())
            }
        }
    }

    pub async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.unsubscribe(channels).await,
            Conn::Cluster(c) => {
                for ch in channels {
                    c.sunsubscribe(ch).await?;
                }
                Ok(())
            }
        }
    }
}

/// What a shard connects to.
#[derive(Clone)]
pub enum Target {
    Single(Box<redis::Client>),
    Cluster(Vec<String>),
    /// The current master of a Sentinel-managed set, looked up at every (re)connect.
    Sentinel(Arc<SentinelTarget>),
}

/// A Sentinel-managed master: its address (for logs) and the redis crate's Sentinel client,
/// which asks the Sentinels in order and checks with `ROLE` that the node it names is the
/// master. The lookup runs under the lock: at most one per shard at a time.
pub struct SentinelTarget {
    address: SentinelAddress,
    client: tokio::sync::Mutex<SentinelClient>,
}

impl SentinelTarget {
    /// Builds the Sentinel client; TLS to the master when `tls.enabled`, to the Sentinels when
    /// the address asks for it (`sentinel_tls`), both with `tls`'s CA and client certificate.
    pub fn new(address: SentinelAddress, tls: &RedisTls) -> RedisResult<SentinelTarget> {
        let mode = if tls.insecure_skip_verify {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        };
        let sentinels = address.sentinels.iter().map(|(host, port)| {
            if address.sentinel_tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: tls.insecure_skip_verify,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut b =
            SentinelClientBuilder::new(sentinels, &address.master, SentinelServerType::Master)?
                .set_client_to_redis_protocol(ProtocolVersion::RESP3)
                .set_client_to_redis_db(address.db);
        if !address.user.is_empty() {
            b = b.set_client_to_redis_username(&address.user);
        }
        if !address.password.is_empty() {
            b = b.set_client_to_redis_password(&address.password);
        }
        if !address.sentinel_user.is_empty() {
            b = b.set_client_to_sentinel_username(&address.sentinel_user);
        }
        if !address.sentinel_password.is_empty() {
            b = b.set_client_to_sentinel_password(&address.sentinel_password);
        }
        if tls.enabled {
            b = b.set_client_to_redis_tls_mode(mode);
            if let Some(certs) = tls.certificates() {
                b = b.set_client_to_redis_certificates(certs);
            }
        }
        if address.sentinel_tls {
            b = b.set_client_to_sentinel_tls_mode(mode);
            if let Some(certs) = tls.certificates() {
                b = b.set_client_to_sentinel_certificates(certs);
            }
        }
        Ok(SentinelTarget {
            address,
            client: tokio::sync::Mutex::new(b.build()?),
        })
    }

    /// A client for the master the Sentinels name now.
    async fn master(&self) -> RedisResult<redis::Client> {
        self.client.lock().await.async_get_client().await
    }
}

impl std::fmt::Display for Target {
    /// The address(es) for logs, without credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Single(client) => write!(f, "{}", client.get_connection_info().addr()),
            Target::Cluster(urls) => {
                let hosts: Vec<&str> = urls
                    .iter()
                    .map(|u| {
                        let u = u.split("://").nth(1).unwrap_or(u);
                        u.rsplit_once('@').map_or(u, |(_, host)| host)
                    })
                    .collect();
                write!(f, "cluster {}", hosts.join(","))
            }
            Target::Sentinel(s) => write!(f, "{}", s.address),
        }
    }
}

impl Target {
    /// Opens a connection; `push` receives pub/sub messages (RESP3 push).
    pub async fn connect(
        &self,
        config: &RedisConfig,
        push: Option<UnboundedSender<PushInfo>>,
    ) -> RedisResult<Conn> {
        let fut = async {
            match self {
                Target::Single(client) => {
                    let conn = client
                        .get_multiplexed_async_connection_with_config(&single_config(config, push))
                        .await?;
                    Ok(Conn::Single(conn))
                }
                Target::Sentinel(s) => {
                    let client = s.master().await?;
                    let conn = client
                        .get_multiplexed_async_connection_with_config(&single_config(config, push))
                        .await?;
                    tracing::debug!(redis = %s.address, master = %client.get_connection_info().addr(), "sentinel named the master");
                    Ok(Conn::Single(conn))
                }
                Target::Cluster(urls) => crate::cluster::connect(urls, config, push).await,
            }
        };
        match tokio::time::timeout(config.connect_timeout.saturating_mul(2), fut).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timeout",
            ))),
        }
    }
}

/// Timeouts and the push sender of a connection to one node.
fn single_config(
    config: &RedisConfig,
    push: Option<UnboundedSender<PushInfo>>,
) -> redis::AsyncConnectionConfig {
    let mut c = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.command_timeout));
    if let Some(tx) = push {
        c = c.set_push_sender(tx);
    }
    c
}

/// The shared publish connection of a shard.
pub struct Publisher {
    slot: Mutex<Option<Conn>>,
    wake: Notify,
}

impl Publisher {
    pub fn new() -> Arc<Self> {
        Arc::new(Publisher {
            slot: Mutex::new(None),
            wake: Notify::new(),
        })
    }

    /// The current connection, if up.
    pub fn get(&self) -> Option<Conn> {
        sync::lock(&self.slot).clone()
    }

    pub fn is_up(&self) -> bool {
        sync::lock(&self.slot).is_some()
    }

    /// Drops the connection after an I/O error or timeout; the task reconnects.
    pub fn broken(&self) {
        sync::lock(&self.slot).take();
        self.wake.notify_one();
    }

    /// Keeps the connection up until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        target: Target,
        config: RedisConfig,
        cancel: CancellationToken,
    ) {
        let mut attempt = 0u32;
        loop {
            if self.is_up() {
                attempt = 0;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = self.wake.notified() => continue,
                }
            }
            match target.connect(&config, None).await {
                Ok(conn) => {
                    *sync::lock(&self.slot) = Some(conn);
                    tracing::info!("redis publish connection up");
                }
                Err(e) => {
                    crate::metrics::error("connect");
                    if log_failure(attempt) {
                        tracing::error!(
                            redis = %target,
                            error = %e,
                            failures = attempt + 1,
                            "redis unreachable: publish connection failed; retrying with backoff"
                        );
                    }
                    let delay: Duration = config.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets_print_without_credentials() {
        let cluster = Target::Cluster(vec!["redis://user:pw@h1:7000".into(), "h2:7001".into()]);
        assert_eq!(cluster.to_string(), "cluster h1:7000,h2:7001");
        let single = Target::Single(Box::new(
            redis::Client::open("redis://:pw@h3:6379/").unwrap(),
        ));
        assert_eq!(single.to_string(), "h3:6379");
    }
}
