//! Typed options the engine runs on: per-namespace channel options (`channel.*`) and the
//! client session options (`client.*`). Key names and defaults follow Centrifugo v6 where it has
//! a counterpart. The gateway's config loader embeds these sections; every field is documented
//! here, once, with its default.

use serde::{Deserialize, Serialize};

use crate::delta::DeltaType;
use crate::duration::ConfigDuration;
use crate::proxy::ProxyName;

/// Options of one channel namespace (or of channels without namespace). All default to off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChannelOptions {
    /// Keep presence (who is subscribed) for channels of this namespace.
    pub presence: bool,
    /// Publish join/leave events when clients subscribe/unsubscribe.
    pub join_leave: bool,
    /// Deliver join/leave to every subscriber (otherwise only to those that asked with
    /// `join_leave: true` in subscribe and may read presence).
    pub force_push_join_leave: bool,
    /// Max publications kept per channel stream; history needs both size and ttl > 0.
    pub history_size: usize,
    /// How long a channel stream is kept after its last publication.
    pub history_ttl: ConfigDuration,
    /// How long stream meta (epoch, top offset) lives after the last publication. 0 = the
    /// global `channel.history_meta_ttl`.
    pub history_meta_ttl: ConfigDuration,
    /// Every subscription is positioned (offset/epoch tracked, gaps detected).
    pub force_positioning: bool,
    /// Clients may ask for positioning with `positioned: true`.
    pub allow_positioning: bool,
    /// Every subscription is recoverable (implies positioning).
    pub force_recovery: bool,
    /// Clients may ask for recovery with `recoverable: true`.
    pub allow_recovery: bool,
    /// Authenticated clients may subscribe without a subscription token.
    pub allow_subscribe_for_client: bool,
    /// Anonymous clients (empty user) may subscribe without a subscription token.
    pub allow_subscribe_for_anonymous: bool,
    /// Subscribers of a channel may publish into it.
    pub allow_publish_for_subscriber: bool,
    /// Any authenticated client may publish (without subscribing).
    pub allow_publish_for_client: bool,
    /// Anonymous clients may publish.
    pub allow_publish_for_anonymous: bool,
    /// Subscribers may call presence/presence_stats.
    pub allow_presence_for_subscriber: bool,
    /// Any authenticated client may call presence/presence_stats.
    pub allow_presence_for_client: bool,
    /// Anonymous clients may call presence/presence_stats.
    pub allow_presence_for_anonymous: bool,
    /// Subscribers may call history.
    pub allow_history_for_subscriber: bool,
    /// Any authenticated client may call history.
    pub allow_history_for_client: bool,
    /// Anonymous clients may call history.
    pub allow_history_for_anonymous: bool,
    /// Allow `name#user1,user2` channels limited to the listed users.
    pub allow_user_limited_channels: bool,
    /// Publication data (and client info) may be any bytes, not only JSON. JSON connections
    /// cannot subscribe to (or read history or presence of) such channels: error 103. Without
    /// it, non-JSON data is refused with 107 — a JSON connection could not carry it.
    pub allow_binary_data: bool,
    /// What a recovering subscribe gets back: `stream` (default) every missed publication, or
    /// "not recovered" when they are gone; `cache` only the channel's latest publication (when
    /// the client does not have it yet), always `recovered: true` — for channels whose latest
    /// publication is the whole state (prices, scores, statuses). Pair `cache` with
    /// `history_size: 1`.
    pub force_recovery_mode: RecoveryMode,
    /// Delta formats a subscribe may negotiate (`delta` field): only `fossil` exists. A
    /// subscribe asking for a type not listed here is simply not in delta mode.
    pub allowed_delta_types: Vec<DeltaType>,
    /// Every publication into the namespace is delta-compressible (client publishes and server
    /// API publishes without `delta`; a publish hook's result decides for itself).
    pub delta_publish: bool,
    /// Client subscribes without a subscription token go to the subscribe hook (after the
    /// private-channel and user-limited checks; it replaces `allow_subscribe_for_*`).
    pub subscribe_proxy_enabled: bool,
    /// Which proxy: `default` (`channel.proxy.subscribe`) or a `proxies[]` name.
    pub subscribe_proxy_name: ProxyName,
    /// Client publishes go to the publish hook, the only permission check then.
    pub publish_proxy_enabled: bool,
    /// Which proxy: `default` (`channel.proxy.publish`) or a `proxies[]` name.
    pub publish_proxy_name: ProxyName,
    /// Expiring subscriptions are refreshed server-side by the sub_refresh hook (instead of
    /// the client's `sub_refresh` with a token).
    pub sub_refresh_proxy_enabled: bool,
    /// Which proxy: `default` (`channel.proxy.sub_refresh`) or a `proxies[]` name.
    pub sub_refresh_proxy_name: ProxyName,
}

/// `force_recovery_mode`: how missed publications are recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryMode {
    /// Replay every missed publication from the stream, or answer "not recovered".
    #[default]
    Stream,
    /// Deliver the latest publication only.
    Cache,
}

impl ChannelOptions {
    /// History is on when both bounds are set.
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}

/// A named namespace: channels `name:…` use these options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Namespace {
    /// Namespace name, `^[-a-zA-Z0-9_]{2,}$`.
    pub name: String,
    #[serde(flatten)]
    pub options: ChannelOptions,
}

/// `channel.*`: channel naming rules and namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelConfig {
    /// Options of channels without a `ns:` prefix.
    pub without_namespace: ChannelOptions,
    /// Configured namespaces. A channel `x:…` with no namespace `x` is unknown (error 102).
    pub namespaces: Vec<Namespace>,
    /// Max channel name length in bytes (error 107 over it). Default 255.
    pub max_length: usize,
    /// Private channel prefix: subscribing needs a subscription token (default `$`).
    pub private_prefix: String,
    /// Namespace boundary (default `:`).
    pub namespace_boundary: String,
    /// User boundary for user-limited channels (default `#`).
    pub user_boundary: String,
    /// Separator of users in user-limited channels (default `,`).
    pub user_separator: String,
    /// Default stream meta TTL (epoch, top offset). Default 720h.
    pub history_meta_ttl: ConfigDuration,
    /// Max entries a `presence` call returns: a channel with more present clients answers
    /// error 106 "limit exceeded" instead of a reply of unbounded size (`presence_stats` still
    /// counts them). Default 10000; 0 = no limit.
    pub presence_max_clients: usize,
    /// Max join and leave pushes per second per channel on this node. The excess is held and
    /// coalesced per client (a join and a leave of the same client cancel out) and sent in
    /// later seconds, in order. Default 100; 0 = no limit.
    pub join_leave_max_rate: u32,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            without_namespace: ChannelOptions::default(),
            namespaces: Vec::new(),
            max_length: 255,
            private_prefix: "$".into(),
            namespace_boundary: ":".into(),
            user_boundary: "#".into(),
            user_separator: ",".into(),
            history_meta_ttl: ConfigDuration::from_secs(720 * 3600),
            presence_max_clients: 10_000,
            join_leave_max_rate: 100,
        }
    }
}

/// `client.*` options used by the session state machine. (Token keys and allowed origins live
/// in the same config section but belong to the gateway.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientOptions {
    /// Development mode: no token needed, every channel may be subscribed, published to and
    /// read. Never in production.
    pub insecure: bool,
    /// Server ping interval (sent to clients in the connect reply). Default 25s; 0 disables.
    pub ping_interval: ConfigDuration,
    /// Time a client has to answer a ping before disconnect 3012. Default 8s; 0 disables.
    pub pong_timeout: ConfigDuration,
    /// Bound in bytes of the pushes (publications, join/leave, …) queued for a connection; over
    /// it the client is closed with 3008 "slow". Replies to the client's own commands do not
    /// count (see `reply_max_size`). Default 1 MiB.
    pub queue_max_size: usize,
    /// Largest reply to one command (history, presence, recovered publications): delivered
    /// even when bigger than `queue_max_size`; a bigger one answers error 106 "limit exceeded"
    /// (a subscribe recovery answers `recovered: false` instead). Also bounds the replies
    /// queued but not yet written: the connection's next command waits until they fit.
    /// Default 16 MiB.
    pub reply_max_size: usize,
    /// Max nesting depth of JSON payloads (publication data, client info, connect and
    /// subscribe data of JSON connections); deeper → error 107. Default 64; 1..=128.
    pub json_max_depth: usize,
    /// Per-connection command rate limit; off (rate 0) by default.
    pub command_rate_limit: CommandRateLimit,
    /// Max channels per connection (error 106 for client subscribes). Default 128.
    pub channel_limit: usize,
    /// A connection must send `connect` within this delay, else 3502 "stale". Default 10s.
    pub stale_close_delay: ConfigDuration,
    /// Grace after token expiry before 3005 when the client does not refresh. Default 25s.
    pub expired_close_delay: ConfigDuration,
    /// Max publications a client `history` call returns. Default 300.
    pub history_max_publication_limit: usize,
    /// Max publications recovered on resubscribe; more missed → `recovered: false`. Default 300.
    pub recovery_max_publication_limit: usize,
    /// Max connections of one user on this node (3504 over it); 0 = no limit. Default 0.
    pub user_connection_limit: usize,
    /// Max connections on this node (new upgrades get HTTP 503). Default 100000.
    pub connection_limit: usize,
    /// Include server time (unix ms) in the connect reply. Default false.
    pub connect_include_server_time: bool,
    /// Max messages packed into one WebSocket frame by the writer. Default 64.
    pub write_batch_max_messages: usize,
    /// Max bytes packed into one WebSocket frame by the writer. Default 64 KiB.
    pub write_batch_max_bytes: usize,
    /// A push is written straight to the socket by the pushing task only when the
    /// connection wrote nothing for this long; busier connections go through the queue and
    /// their writer, which packs what piled up into one frame. Chat rates (a message every
    /// 100 ms) write direct; 100 msgs/s per connection batch. Default 20ms; 0 = always direct
    /// when nothing is queued.
    pub direct_write_min_interval: ConfigDuration,
    /// Delay before a node unsubscribes the broker from a channel whose last local subscriber
    /// left (avoids churn when people flap). Default 1s.
    pub channel_unsubscribe_delay: ConfigDuration,
    /// `client.subscribe_to_user_personal_channel.*`: every connection of a user subscribed
    /// server-side to the user's own channel.
    pub subscribe_to_user_personal_channel: PersonalChannel,
}

/// `client.subscribe_to_user_personal_channel.*`: a server-side subscription of every
/// connection with a non-empty user to `<namespace>:#<user>` (`#<user>` without a namespace),
/// with the namespace's options — so a backend reaches all of a user's tabs and devices with
/// one publish, and a reconnecting one recovers what it missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PersonalChannel {
    /// Default false.
    pub enabled: bool,
    /// Namespace of the personal channels; it must exist. Default empty: `without_namespace`.
    pub personal_channel_namespace: String,
    /// One connection per user: a new connection closes the user's other connections, on
    /// every node, with 3504 "connection limit" (it looks them up in the personal channel's
    /// presence, which the namespace must keep). Best effort. Default false.
    pub single_connection: bool,
}

impl PersonalChannel {
    /// The personal channel of `user` under `channel`'s boundaries.
    pub fn channel(&self, channel: &ChannelConfig, user: &str) -> String {
        if self.personal_channel_namespace.is_empty() {
            format!("{}{user}", channel.user_boundary)
        } else {
            format!(
                "{}{}{}{user}",
                self.personal_channel_namespace, channel.namespace_boundary, channel.user_boundary
            )
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            ping_interval: ConfigDuration::from_secs(25),
            pong_timeout: ConfigDuration::from_secs(8),
            queue_max_size: 1 << 20,
            reply_max_size: 16 << 20,
            json_max_depth: 64,
            command_rate_limit: CommandRateLimit::default(),
            channel_limit: 128,
            stale_close_delay: ConfigDuration::from_secs(10),
            expired_close_delay: ConfigDuration::from_secs(25),
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            user_connection_limit: 0,
            connection_limit: 100_000,
            connect_include_server_time: false,
            write_batch_max_messages: 64,
            direct_write_min_interval: ConfigDuration::from_millis(20),
            write_batch_max_bytes: 64 << 10,
            channel_unsubscribe_delay: ConfigDuration::from_secs(1),
            subscribe_to_user_personal_channel: PersonalChannel::default(),
        }
    }
}

/// `client.command_rate_limit.*`: a token bucket per connection. Every command but the pong
/// takes a token; without one the command is answered with error 111 "too many requests"
/// (temporary: SDKs retry with backoff); after `disconnect_after` refusals in a row the
/// connection is closed with 3013 "too many requests" (clients reconnect with backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandRateLimit {
    /// Commands per second refilled. Default 0 = no limit.
    pub rate: u32,
    /// Bucket size: commands a connection may send at once (a reconnect resubscribing to many
    /// channels sends them together). Default 0 = same as `rate`.
    pub burst: u32,
    /// Refused commands in a row before disconnect 3013. Default 50; 0 = never disconnect.
    pub disconnect_after: u32,
}

impl Default for CommandRateLimit {
    fn default() -> Self {
        CommandRateLimit {
            rate: 0,
            burst: 0,
            disconnect_after: 50,
        }
    }
}

impl CommandRateLimit {
    pub fn enabled(&self) -> bool {
        self.rate > 0
    }

    /// The bucket size in effect.
    pub fn bucket(&self) -> u32 {
        if self.burst == 0 {
            self.rate
        } else {
            self.burst
        }
    }
}

/// Options of one RPC namespace (or of methods without namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RpcOptions {
    /// Client `rpc` calls of this namespace go to the rpc hook; off, they answer 108.
    pub proxy_enabled: bool,
    /// Which proxy: `default` (`rpc.proxy`) or a `proxies[]` name.
    pub proxy_name: ProxyName,
}

/// A named RPC namespace: methods `name:…` use these options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RpcNamespace {
    /// Namespace name, `^[-a-zA-Z0-9_.]{2,}$`.
    pub name: String,
    #[serde(flatten)]
    pub options: RpcOptions,
}

/// `rpc.ping.*`: a built-in method answered with an empty result before any hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcPing {
    /// Answer `method` locally. Default false.
    pub enabled: bool,
    /// The method name. Default `"ping"`.
    pub method: String,
}

impl Default for RpcPing {
    fn default() -> Self {
        RpcPing {
            enabled: false,
            method: "ping".into(),
        }
    }
}

/// `rpc.*`: how client `rpc` calls are routed. Without any handler (no namespace with
/// `proxy_enabled`, no ping) every call answers 108 "not available"; otherwise an unknown
/// namespace answers 104 "method not found" and a namespace without a proxy 108.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcConfig {
    /// Options of methods without a `ns:` prefix.
    pub without_namespace: RpcOptions,
    /// Configured RPC namespaces.
    pub namespaces: Vec<RpcNamespace>,
    /// Separates namespace and method. Default `":"`.
    pub namespace_boundary: String,
    pub ping: RpcPing,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            without_namespace: RpcOptions::default(),
            namespaces: Vec::new(),
            namespace_boundary: ":".into(),
            ping: RpcPing::default(),
        }
    }
}

/// Where an rpc method goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcRoute<'a> {
    /// The built-in ping: an empty result.
    Ping,
    /// The hook `proxy_name`.
    Proxy(&'a ProxyName),
    /// No handler at all, or a namespace without a proxy: 108.
    NotAvailable,
    /// Unknown namespace: 104.
    NotFound,
}

impl RpcConfig {
    /// Whether any rpc handler exists (a namespace with a proxy, or ping).
    pub fn has_handler(&self) -> bool {
        self.ping.enabled
            || self.without_namespace.proxy_enabled
            || self.namespaces.iter().any(|n| n.options.proxy_enabled)
    }

    /// Routes `method` (see [`RpcConfig`] for the codes).
    pub fn route(&self, method: &str) -> RpcRoute<'_> {
        if !self.has_handler() {
            return RpcRoute::NotAvailable;
        }
        if self.ping.enabled && method == self.ping.method {
            return RpcRoute::Ping;
        }
        let options = match method.split_once(self.namespace_boundary.as_str()) {
            Some((ns, _)) if !self.namespace_boundary.is_empty() => {
                match self.namespaces.iter().find(|n| n.name == ns) {
                    Some(n) => &n.options,
                    None => return RpcRoute::NotFound,
                }
            }
            _ => &self.without_namespace,
        };
        if options.proxy_enabled {
            RpcRoute::Proxy(&options.proxy_name)
        } else {
            RpcRoute::NotAvailable
        }
    }
}

/// Everything the engine of one node needs.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Node name shown in `info` (default: host name or "chorus").
    pub name: String,
    /// Version string sent in connect replies and `info`.
    pub version: String,
    pub client: ClientOptions,
    pub channel: ChannelConfig,
    pub rpc: RpcConfig,
}
