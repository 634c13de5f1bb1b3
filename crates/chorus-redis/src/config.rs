//! [`RedisConfig`]: where the Redis engine connects and how it times out. Every field documents
//! its default; the gateway maps `engine.redis.*` onto it.

use std::time::Duration;

/// Settings of the Redis broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Redis addresses (`host:port` or `redis://…` URLs). Standalone mode: every address is an
    /// independent shard; channels are spread over them by jump consistent hash of the channel
    /// name (the same on every node, so keep the list identical and in the same order).
    /// Cluster mode: seed nodes of one Redis Cluster. Default `["127.0.0.1:6379"]`.
    pub addresses: Vec<String>,
    /// Redis Cluster mode (sharded pub/sub, hash-tagged keys). Explicit, never auto-detected.
    /// Default false.
    pub cluster: bool,
    /// Prefix of every key and channel. Default `"chorus"`.
    pub prefix: String,
    /// Cluster mode only: number of partitions channels are hashed into; a node holds at most
    /// one sharded subscription per partition. Default 64.
    pub partitions: u32,
    /// TCP connect plus handshake deadline. Default 1 s.
    pub connect_timeout: Duration,
    /// Deadline of one command (publish, history, subscribe); past it the call fails with a
    /// temporary error and the connection is re-established. Default 1 s.
    pub command_timeout: Duration,
    /// How often each subscriber connection publishes a probe to itself. Default 5 s.
    pub liveness_probe_interval: Duration,
    /// A probe not received back within this time marks the subscriber connection dead (it is
    /// reconnected and `on_deliveries_lost` fires). Default 3 s.
    pub liveness_probe_timeout: Duration,
    /// First reconnect delay; doubles per failed attempt (with jitter). Default 50 ms.
    pub reconnect_backoff_min: Duration,
    /// Reconnect delay cap. Default 2 s.
    pub reconnect_backoff_max: Duration,
    /// TLS to Redis. Default: off (an address written `rediss://` uses TLS regardless).
    pub tls: RedisTls,
}

/// TLS settings of the connections to Redis (and to Sentinels asked for it).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RedisTls {
    /// Every address uses TLS, as if written `rediss://`. Default false.
    pub enabled: bool,
    /// PEM bundle of the CAs that verify the server's certificate. `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and its key, for Redis's `tls-auth-clients yes`. Both or
    /// neither.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// Accept any server certificate. For tests only; `checkconfig` warns. Default false.
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for RedisTls {
    /// Without key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("enabled", &self.enabled)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(Vec::len),
            )
            .field("client_key", &self.client_key_pem.is_some())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

impl RedisTls {
    /// The certificates for the redis crate, when a CA or a client certificate is configured
    /// (`None`: the system's roots and no client certificate).
    pub(crate) fn certificates(&self) -> Option<redis::TlsCertificates> {
        let client_tls = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            _ => None,
        };
        if client_tls.is_none() && self.ca_pem.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls,
            root_cert: self.ca_pem.clone(),
        })
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            addresses: vec!["127.0.0.1:6379".into()],
            cluster: false,
            prefix: "chorus".into(),
            partitions: 64,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            liveness_probe_interval: Duration::from_secs(5),
            liveness_probe_timeout: Duration::from_secs(3),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            tls: RedisTls::default(),
        }
    }
}

impl RedisConfig {
    /// Delay before reconnect attempt `attempt` (0-based): exponential with full jitter.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let min = self.reconnect_backoff_min.max(Duration::from_millis(1));
        let exp = min.saturating_mul(1u32 << attempt.min(16));
        let cap = exp.min(self.reconnect_backoff_max.max(min));
        let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2))
    }
}
