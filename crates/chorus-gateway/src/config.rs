//! Typed, layered configuration of a chorus node.
//!
//! Layers, lowest first: built-in defaults ([`Config::default`] for file configs,
//! [`Config::embedded_default`] when no file is given) < the config file (JSON, YAML or TOML by
//! extension) < `CHORUS_*` environment variables < `--set key=value` flags. Merging happens on
//! `serde_json::Value` (see [`load`]); the result is deserialized into [`Config`] and checked by
//! [`Config::validate`] (see [`validate`]). Key names follow Centrifugo's where a counterpart
//! exists. Every field documents its default; `docs/config.md` is the user-facing reference.

use serde::{Deserialize, Serialize};

use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelOptions, ClientOptions, Namespace};

mod admin;
mod choice;
mod load;
mod presence;
pub mod proxy;
mod redis;
pub(crate) mod token;
mod validate;

pub use admin::{AdminConfig, ADMIN_PREFIX, MIN_ADMIN_PASSWORD_BYTES};
pub use choice::{Choice, EngineType, GrpcErrorMode, LogFormat};
pub use load::{env_name, ConfigError, Loaded, Location, ENV_CONFIG_FILE, ENV_PREFIX};
pub use presence::{PresenceConfig, PresenceServerConfig, MIN_PRESENCE_MESSAGE_SIZE};
pub use redis::{RedisEngineConfig, RedisTlsConfig, SentinelTlsConfig};
pub use token::{SubscriptionTokenConfig, TokenConfig, MAX_JWKS_ATTEMPTS};
pub use validate::{is_loopback_address, valid_namespace_name, MIN_BUFFER_SIZE};

/// The whole configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    /// `http_server.*`: the listening socket and HTTP-level bounds.
    pub http_server: HttpServerConfig,
    /// `client.*`: client session options, token keys, allowed origins.
    pub client: ClientConfig,
    /// `channel.*`: channel naming rules and namespaces, and `channel.proxy` (the default
    /// subscribe/publish/sub_refresh hooks). Derefs to the engine's [`ChannelConfig`].
    pub channel: proxy::ChannelSection,
    /// `rpc.*`: routing of client `rpc` calls (namespaces, ping) and `rpc.proxy`.
    pub rpc: proxy::RpcSection,
    /// `proxies`: named backend hooks that namespaces reference by name. Default empty.
    pub proxies: Vec<proxy::NamedProxy>,
    /// `websocket.*`: the WebSocket transport.
    pub websocket: WebsocketConfig,
    /// `http_stream.*`: the HTTP-streaming fallback transport (bidirectional emulation).
    pub http_stream: HttpStreamConfig,
    /// `sse.*`: the Server-Sent Events fallback transport (bidirectional emulation).
    pub sse: SseConfig,
    /// `emulation.*`: the endpoint carrying commands of `http_stream`/`sse` sessions.
    pub emulation: EmulationConfig,
    /// `http_api.*`: the HTTP server API.
    pub http_api: HttpApiConfig,
    /// `grpc_api.*`: the gRPC server API (Centrifugo's `CentrifugoApi` service).
    pub grpc_api: GrpcApiConfig,
    /// `engine.*`: where publications, history and presence live.
    pub engine: EngineConfig,
    /// `node.*`: identity of this node.
    pub node: NodeConfig,
    /// `shutdown.*`: graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// `log.*`: logging.
    pub log: LogConfig,
    /// `demo.*`: the embedded demo page.
    pub demo: DemoConfig,
    /// `admin.*`: the web console at `/admin` (off by default).
    pub admin: AdminConfig,
    /// `presence.*`: a gateway's link to the presence service (empty endpoints: in-process).
    pub presence: PresenceConfig,
    /// `presence_server.*`: the presence service run by `chorus presence`.
    pub presence_server: PresenceServerConfig,
}

/// `http_server.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpServerConfig {
    /// Address to bind. Default `"0.0.0.0"` (`"127.0.0.1"` in the embedded default).
    pub address: String,
    /// Port to bind. Default 8000; 0 = any free port (the bound port is logged).
    pub port: u16,
    /// Time a client has to send complete request headers (slowloris bound); also how long a
    /// keep-alive connection may sit idle between requests (hyper starts the same timer when a
    /// connection goes idle). Past it the connection is closed without an answer. Default 10s.
    pub header_read_timeout: ConfigDuration,
    /// Max size of a request's start line and headers in bytes; over it → 431 and the
    /// connection closed. Default 32 KiB; at least 1024.
    pub max_header_size: usize,
    /// Deadline of a whole request, headers and body, counted from its first byte. A body not
    /// complete by then is answered `408 Request Timeout` and the connection closed; a response
    /// write blocked this long (the client stopped reading) closes the connection. Default 10s;
    /// must be > 0.
    pub request_timeout: ConfigDuration,
    /// Max body size of HTTP API requests in bytes; over it → 413 and the connection closed.
    /// Default 1 MiB.
    pub max_request_body_size: usize,
    /// Max TCP connections held at once (HTTP requests, upgrades in progress and WebSocket
    /// sessions). At the bound a new connection sheds the oldest one that has not completed a
    /// request, else the oldest idle keep-alive one; when only busy requests and sessions are
    /// left it gets 503. Default 0 = automatic: the open-files soft limit (`ulimit -n`) minus
    /// 256 descriptors kept for Redis, files and the listener, at least 64.
    pub max_connections: usize,
    /// Listen backlog of the TCP socket. Default 4096.
    pub tcp_backlog: u32,
    /// Port of the internal listener. When set (not 0), the HTTP server API, `/metrics`,
    /// `/health`, `/ready` and the admin console (`/admin`) are served on it only, and `port`
    /// serves only the client transports and the demo page (anything else there is 404).
    /// Default 0: no internal listener, everything on `port`.
    pub internal_port: u16,
    /// Address of the internal listener. Default `""`: the same as `address`.
    pub internal_address: String,
    /// `http_server.tls.*`: TLS on the external and internal listeners and the gRPC API.
    pub tls: TlsConfig,
    /// Max TCP connections the internal listener holds at once, a budget of its own so that
    /// probes and scrapes get through when client connections fill `max_connections`. Same
    /// shedding rules. Default 256.
    pub internal_max_connections: usize,
}

/// `http_server.tls.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain (leaf first). Set together with `key_pem_file`;
    /// both empty (the default): no TLS.
    pub cert_pem_file: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem_file: String,
    /// How often the files' modification times are checked; a change reloads them for new
    /// handshakes (SIGHUP reloads at once). Default 10s; 0: on SIGHUP only.
    pub reload_interval: ConfigDuration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_pem_file: String::new(),
            key_pem_file: String::new(),
            reload_interval: ConfigDuration::from_secs(10),
        }
    }
}

impl HttpServerConfig {
    /// Where the internal listener binds (`internal_address`, else `address`).
    pub fn internal_address(&self) -> &str {
        if self.internal_address.is_empty() {
            &self.address
        } else {
            &self.internal_address
        }
    }
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            address: "0.0.0.0".into(),
            port: 8000,
            header_read_timeout: ConfigDuration::from_secs(10),
            max_header_size: 32 << 10,
            request_timeout: ConfigDuration::from_secs(10),
            max_request_body_size: 1 << 20,
            max_connections: 0,
            tcp_backlog: 4096,
            internal_port: 0,
            internal_address: String::new(),
            internal_max_connections: 256,
            tls: TlsConfig::default(),
        }
    }
}

/// `client.*`: the core's session options (flattened: `client.ping_interval`, …) plus what the
/// gateway needs to admit a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClientConfig {
    /// Session options (`client.insecure`, `client.ping_interval`, `client.queue_max_size`, …);
    /// documented with their defaults on [`ClientOptions`].
    #[serde(flatten)]
    pub options: ClientOptions,
    /// `client.token.*`: keys verifying connection tokens (and subscription tokens unless
    /// `client.subscription_token.enabled`). All empty by default.
    pub token: TokenConfig,
    /// `client.subscription_token.*`: with `enabled: true`, its own keys, JWKS endpoint and
    /// claim rules verify subscription tokens; else the whole `client.token` block does.
    pub subscription_token: SubscriptionTokenConfig,
    /// `client.proxy.*`: the connect and refresh hooks (off by default).
    pub proxy: proxy::ClientProxies,
    /// Origins allowed to open WebSocket connections, as globs (`https://*.example.com`,
    /// `http://localhost:*`). Requests without an `Origin` header are always allowed (non-browser
    /// clients). Default empty = only requests without `Origin`.
    pub allowed_origins: Vec<String>,
}

impl ClientConfig {
    /// The token settings that verify subscription tokens: `subscription_token` if enabled,
    /// else `token`.
    pub fn subscription_token_config(&self) -> &TokenConfig {
        if self.subscription_token.enabled {
            &self.subscription_token.token
        } else {
            &self.token
        }
    }

    /// Whether any token key or JWKS endpoint (connection, or enabled subscription block) is
    /// configured.
    pub fn has_token_key(&self) -> bool {
        self.token.has_key()
            || (self.subscription_token.enabled && self.subscription_token.has_key())
    }
}

/// `websocket.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebsocketConfig {
    /// Max inbound message size in bytes, cumulative across fragments; over it the connection
    /// is closed with 1009. Default 65536; at least 1024.
    pub message_size_limit: usize,
    /// Deadline of one socket write; on expiry the client is closed (3009). Default 1s.
    pub write_timeout: ConfigDuration,
    /// Serve an echo WebSocket at `/connection/echo` (for Autobahn conformance runs). Default
    /// false.
    pub echo_endpoint: bool,
    /// Path of the client protocol endpoint. Default `"/connection/websocket"`.
    pub handler_prefix: String,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it, on plain and
    /// `http_server.tls` connections alike. Default false.
    pub compression: bool,
    /// zlib compression level 0–9 of outgoing messages. Default 1.
    pub compression_level: u32,
    /// Outgoing messages shorter than this (bytes) are sent uncompressed. Default 0.
    pub compression_min_size: usize,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            message_size_limit: 65536,
            write_timeout: ConfigDuration::from_secs(1),
            echo_endpoint: false,
            handler_prefix: "/connection/websocket".into(),
            compression: false,
            compression_level: 1,
            compression_min_size: 0,
        }
    }
}

/// `http_stream.*` and `sse.*`: a fallback transport whose server-to-client half is a
/// streaming HTTP response (the connect command comes in the opening request, later commands
/// through `emulation.handler_prefix`). The two differ only in the default path.
macro_rules! stream_transport_config {
    ($name:ident, $key:literal, $path:literal) => {
        #[doc = concat!("`", $key, ".*`")]
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            /// Serve the endpoint. Default false (on in the embedded default).
            pub enabled: bool,
            #[doc = concat!("Path of the endpoint. Default `\"", $path, "\"`.")]
            pub handler_prefix: String,
            /// Max bytes of the opening request's body (the connect command); over it 413.
            /// Default 65536.
            pub max_request_body_size: usize,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    enabled: false,
                    handler_prefix: $path.into(),
                    max_request_body_size: 65536,
                }
            }
        }
    };
}

stream_transport_config!(HttpStreamConfig, "http_stream", "/connection/http_stream");
stream_transport_config!(SseConfig, "sse", "/connection/sse");

/// `emulation.*`: mounted when `http_stream` or `sse` is enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmulationConfig {
    /// Path of the endpoint. Default `"/emulation"`.
    pub handler_prefix: String,
    /// Max bytes of one request body; over it 413. Default 65536.
    pub max_request_body_size: usize,
}

impl Default for EmulationConfig {
    fn default() -> Self {
        EmulationConfig {
            handler_prefix: "/emulation".into(),
            max_request_body_size: 65536,
        }
    }
}

/// `http_api.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpApiConfig {
    /// API key expected as `Authorization: apikey <key>` (or `X-API-Key`). Default empty: with
    /// `insecure` false every API request is refused.
    pub key: String,
    /// Accept API requests without a key. Default false. Never expose such a port.
    pub insecure: bool,
    /// Path prefix of the server API (`POST <prefix>/<method>`). Default `"/api"`.
    pub handler_prefix: String,
    /// Log every HTTP API request at INFO (target `chorus::access`): API method, HTTP method,
    /// status, duration, response bytes and peer. Default false.
    pub access_log: bool,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            key: String::new(),
            insecure: false,
            handler_prefix: "/api".into(),
            access_log: false,
        }
    }
}

/// `grpc_api.*`: the gRPC server API on its own listener (off by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcApiConfig {
    /// Serve the gRPC server API. Default false.
    pub enabled: bool,
    /// Address to bind. Default empty = the address of `http_server.address`.
    pub address: String,
    /// Port to bind. Default 10000 (Centrifugo's); 0 = any free port (the bound port is
    /// printed and logged). Must differ from `http_server.port` on the same address.
    pub port: u16,
    /// API key expected as metadata `authorization: apikey <key>` on every call; a missing or
    /// wrong key is status UNAUTHENTICATED. Default empty = no authentication (as in
    /// Centrifugo): keep such a port private.
    pub key: String,
    /// `""` (default): errors travel in the response's `error` field, with status OK.
    /// `"transport"`: errors are gRPC statuses (see `docs/server-api.md` for the code map).
    /// A call can ask for transport mode with metadata `x-centrifugo-error-mode: transport`.
    pub error_mode: GrpcErrorMode,
    /// Serve gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) for tools such as
    /// grpcurl. Default false. Behind the key like every other call.
    pub reflection: bool,
    /// Max size of one request message in bytes; a bigger one is refused with status
    /// RESOURCE_EXHAUSTED. Default 4194304 (4 MiB); at least 1024.
    pub max_receive_message_size: usize,
}

impl Default for GrpcApiConfig {
    fn default() -> Self {
        GrpcApiConfig {
            enabled: false,
            address: String::new(),
            port: 10000,
            key: String::new(),
            error_mode: GrpcErrorMode::Body,
            reflection: false,
            max_receive_message_size: 4 << 20,
        }
    }
}

impl GrpcApiConfig {
    /// The address to bind: `address`, or `http_server.address` when it is empty.
    pub fn bind_address<'a>(&'a self, http: &'a HttpServerConfig) -> &'a str {
        match self.address.trim() {
            "" => http.address.trim(),
            address => address,
        }
    }
}

/// `engine.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// `engine.type`: `"memory"` (single node; default) or `"redis"` (several nodes share
    /// publications and history through Redis; presence stays per node for now).
    #[serde(rename = "type")]
    pub kind: EngineType,
    /// `engine.memory.*`: node-wide bounds of the memory engine (used when `type` is
    /// `"memory"`).
    pub memory: MemoryEngineConfig,
    /// `engine.redis.*`: used when `type` is `"redis"`.
    pub redis: RedisEngineConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kind: EngineType::Memory,
            memory: MemoryEngineConfig::default(),
            redis: RedisEngineConfig::default(),
        }
    }
}

/// `engine.memory.*`: bounds of the history the memory engine keeps in the node's RAM.
/// Defaults come from `chorus_core::broker::memory::MemoryBrokerOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryEngineConfig {
    /// Max channel streams kept (a stream = a channel's epoch and top offset, with or without
    /// publications). Over it the least recently used stream (use = publish or history read)
    /// is evicted: its next publish starts a new epoch and its subscribers recover with
    /// `recovered: false`. Default 100000; at least 1.
    pub max_streams: usize,
    /// Max bytes of kept publications (data + info + tags + ≈230 bytes per publication) and
    /// idempotency results (key + 64 bytes). Over it the least recently used streams are
    /// evicted; a single stream over it alone loses its oldest publications. Default
    /// 268435456 (256 MiB); at least 1.
    pub max_history_bytes: usize,
    /// Stream meta created by a read of a channel nobody published to (a positioned or
    /// recovering subscribe, a `history` call) is dropped once no connection on the node
    /// subscribes to the channel and nobody read it for this long. Default 60s.
    pub idle_meta_ttl: ConfigDuration,
}

impl Default for MemoryEngineConfig {
    fn default() -> Self {
        let core = chorus_core::broker::memory::MemoryBrokerOptions::default();
        MemoryEngineConfig {
            max_streams: core.max_streams,
            max_history_bytes: core.max_history_bytes,
            idle_meta_ttl: ConfigDuration(core.idle_meta_ttl),
        }
    }
}

impl MemoryEngineConfig {
    /// The memory broker's options.
    pub fn broker_options(&self) -> chorus_core::broker::memory::MemoryBrokerOptions {
        chorus_core::broker::memory::MemoryBrokerOptions {
            max_streams: self.max_streams,
            max_history_bytes: self.max_history_bytes,
            idle_meta_ttl: self.idle_meta_ttl.get(),
        }
    }
}

/// A string (split on commas) or a list of strings.
pub(crate) fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => split_addresses(&s),
        OneOrMany::Many(v) => v,
    })
}

/// Splits a comma-separated address list, keeping a `redis+sentinel://a,b,c/master` URL's
/// own host list in one piece: a piece without `://` continues a Sentinel URL whose
/// authority is still open (no `/` or `?` after its `://` yet).
pub(crate) fn split_addresses(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in s.split(',').map(str::trim) {
        let continues = out.last().is_some_and(|prev| {
            !piece.contains("://")
                && prev
                    .split_once("+sentinel://")
                    .is_some_and(|(_, rest)| !rest.contains(['/', '?']))
        });
        match out.last_mut() {
            Some(prev) if continues => {
                prev.push(',');
                prev.push_str(piece);
            }
            _ if piece.is_empty() => {}
            _ => out.push(piece.to_string()),
        }
    }
    out
}

/// `node.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeConfig {
    /// Node name shown in `info`. Default empty = the host name, or `"chorus"` when unknown.
    pub name: String,
}

/// `shutdown.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShutdownConfig {
    /// Grace period after SIGTERM/SIGINT before remaining work is abandoned. Default 30s.
    pub timeout: ConfigDuration,
    /// Clients are closed with 3001 "shutdown" spread over this window, so they do not all
    /// reconnect at once. Default 5s; must not exceed `timeout`.
    pub drain_window: ConfigDuration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: ConfigDuration::from_secs(30),
            drain_window: ConfigDuration::from_secs(5),
        }
    }
}

/// `log.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Level or `tracing` filter directives (`"info"`, `"debug,hyper=warn"`). Default `"info"`.
    /// `RUST_LOG`, when set, wins.
    pub level: String,
    /// `"text"` (default) or `"json"` (one object per line).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `demo.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DemoConfig {
    /// Serve the demo page at `/` and its token endpoint. Default false (true in the embedded
    /// default). The token endpoint signs tokens with `client.token.hmac_secret_key`.
    pub enabled: bool,
}

impl Config {
    /// What `chorus serve` runs with when no config file is given: a local development node on
    /// `127.0.0.1:8000` with the demo page, a fresh random HMAC secret (so the demo can mint
    /// tokens), `client.insecure` on, and a `chat` namespace with presence, join/leave, history
    /// and recovery. The server API stays closed (no key, not insecure).
    pub fn embedded_default() -> Config {
        let mut config = Config::default();
        config.http_server.address = "127.0.0.1".into();
        config.http_server.port = 8000;
        config.engine.kind = EngineType::Memory;
        config.client.options.insecure = true;
        config.client.token.hmac_secret_key = random_hex_secret();
        config.client.allowed_origins = vec![
            "http://127.0.0.1:*".into(),
            "http://localhost:*".into(),
            "http://[::1]:*".into(),
        ];
        config.channel.namespaces = vec![Namespace {
            name: "chat".into(),
            options: ChannelOptions {
                presence: true,
                join_leave: true,
                force_push_join_leave: true,
                history_size: 100,
                history_ttl: ConfigDuration::from_secs(300),
                force_recovery: true,
                allow_subscribe_for_client: true,
                allow_publish_for_subscriber: true,
                allow_publish_for_client: true,
                allow_presence_for_subscriber: true,
                allow_history_for_subscriber: true,
                ..ChannelOptions::default()
            },
        }];
        config.demo.enabled = true;
        config.http_stream.enabled = true;
        config.sse.enabled = true;
        config.http_api.key = String::new();
        config.http_api.insecure = false;
        config
    }
}

/// 32 random bytes, hex encoded (64 characters).
fn random_hex_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut out = String::with_capacity(64);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests;
