//! `presence_server.*` (the presence service, `chorus presence`) and `presence.*` (a gateway's
//! link to it). See `docs/presence.md`.

use serde::{Deserialize, Serialize};

use chorus_core::duration::ConfigDuration;

/// `presence_server.*`: settings of `chorus presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceServerConfig {
    /// Address to bind the gRPC API and the metrics endpoint. Default `"0.0.0.0"`.
    pub address: String,
    /// gRPC port (the `Presence` API and `grpc.health.v1`). Default 10100; 0 = any free port.
    pub port: u16,
    /// Service key: every call must carry the metadata `authorization: apikey <key>`,
    /// gateways included. Required by `chorus presence`. Default empty.
    pub key: String,
    /// A gateway's lease: its entries are dropped (and the other gateways told) when it sent
    /// nothing for this long. Also the warm-up of a (re)started replica, during which reads
    /// answer UNAVAILABLE. Default 10s; must be > 0.
    pub lease_ttl: ConfigDuration,
    /// Port of the Prometheus `/metrics` endpoint. Default 10101; 0 = any free port.
    pub metrics_port: u16,
    /// Largest message accepted from a client, in bytes. Default 4 MiB; at least 64 KiB.
    pub max_message_size: usize,
    /// Most entries one gateway node may hold; a stream going over it is closed with
    /// RESOURCE_EXHAUSTED. Default 1000000; at least 1.
    pub max_node_entries: usize,
}

impl Default for PresenceServerConfig {
    fn default() -> Self {
        PresenceServerConfig {
            address: "0.0.0.0".into(),
            port: 10100,
            key: String::new(),
            lease_ttl: ConfigDuration::from_secs(10),
            metrics_port: 10101,
            max_message_size: 4 << 20,
            max_node_entries: 1_000_000,
        }
    }
}

/// `presence.*`: where a gateway keeps presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    /// Presence service replicas, `http://host:port` each; the gateway streams to every one.
    /// Default empty = in-process presence (each node its own connections, cluster answers by
    /// survey). Env: `CHORUS_PRESENCE_ENDPOINTS=http://a:10100,http://b:10100`.
    #[serde(deserialize_with = "super::one_or_many")]
    pub endpoints: Vec<String>,
    /// The service's key (`presence_server.key`). Required when `endpoints` is set.
    pub key: String,
    /// Joins and leaves are sent to the replicas as one batch per tick of this interval.
    /// Default 50ms; between 1ms and 1s.
    pub flush_interval: ConfigDuration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            endpoints: Vec::new(),
            key: String::new(),
            flush_interval: ConfigDuration::from_millis(50),
        }
    }
}

/// Smallest accepted `presence_server.max_message_size`.
pub const MIN_PRESENCE_MESSAGE_SIZE: usize = 64 << 10;

impl PresenceServerConfig {
    /// Problems of `presence_server.*`, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.address.trim().is_empty() {
            p.push("presence_server.address must not be empty".into());
        }
        if self.lease_ttl.is_zero() {
            p.push("presence_server.lease_ttl must be greater than 0".into());
        }
        if self.port != 0 && self.port == self.metrics_port {
            p.push(format!(
                "presence_server.port and presence_server.metrics_port are both {}",
                self.port
            ));
        }
        if self.max_message_size < MIN_PRESENCE_MESSAGE_SIZE {
            p.push(format!(
                "presence_server.max_message_size ({}) must be at least {MIN_PRESENCE_MESSAGE_SIZE} bytes",
                self.max_message_size
            ));
        }
        if self.max_node_entries == 0 {
            p.push("presence_server.max_node_entries must be at least 1".into());
        }
        p
    }
}

impl PresenceConfig {
    /// Problems of `presence.*`, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (n, e) in self.endpoints.iter().enumerate() {
            let ok = e
                .strip_prefix("http://")
                .map(|rest| rest.trim_end_matches('/'))
                .and_then(|hostport| hostport.rsplit_once(':'))
                .is_some_and(|(host, port)| {
                    !host.is_empty()
                        && !host.contains('/')
                        && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
            if !ok {
                p.push(format!(
                    "presence.endpoints[{n}] ({e:?}) must be http://host:port"
                ));
            }
        }
        if !self.endpoints.is_empty() && self.key.is_empty() {
            p.push("presence.key must be set when presence.endpoints is (the service refuses calls without its key)".into());
        }
        let f = self.flush_interval.get();
        if f < std::time::Duration::from_millis(1) || f > std::time::Duration::from_secs(1) {
            p.push(format!(
                "presence.flush_interval ({}) must be between 1ms and 1s",
                self.flush_interval
            ));
        }
        p
    }
}
