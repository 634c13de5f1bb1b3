//! The typed requests and results of the six hooks, as the engine sees them: payloads are the
//! bytes the client sent or the backend returned (an adapter decodes `b64*` fields and raw
//! JSON into them), codes and reasons are checked by nobody but the client.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use chorus_protocol::Protocol;

use crate::auth::{ServerSubOptions, SubscribeOverride};
use crate::disconnect::Disconnect;

/// Request headers kept for forwarding: (lower-case name, value) pairs.
pub type Headers = Vec<(String, String)>;

/// The transport name of WebSocket connections (`transport` in every request).
pub const TRANSPORT_WEBSOCKET: &str = "websocket";

/// What every request says about the connection making it (Centrifugo's common fields 1–4,
/// `user`, `meta`) plus the headers an adapter may forward.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Connection id (`client`).
    pub client: Arc<str>,
    /// `transport`: [`TRANSPORT_WEBSOCKET`].
    pub transport: &'static str,
    /// The client protocol (`protocol`: `json` or `protobuf`).
    pub protocol: Protocol,
    /// The connection's user; `""` before connect and for anonymous connections.
    pub user: Arc<str>,
    /// Connection meta from the connect hook (sent only by proxies with
    /// `include_connection_meta`).
    pub meta: Option<Bytes>,
    /// Headers of the connection's upgrade request whose names some proxy forwards
    /// (`http_headers`); each adapter picks its own.
    pub headers: Option<Arc<Headers>>,
    /// The client's connect-frame `headers` (emulated headers; a proxy forwards those named in
    /// its `emulated_headers`).
    pub emulated_headers: Option<Arc<Headers>>,
}

impl Caller {
    /// `"json"` / `"protobuf"`.
    pub fn protocol_name(&self) -> &'static str {
        match self.protocol {
            Protocol::Json => "json",
            Protocol::Protobuf => "protobuf",
        }
    }
}

/// `connect`: a client connecting without a token.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub caller: Caller,
    /// The connect command's `data`.
    pub data: Bytes,
    /// Client SDK `name` and `version`.
    pub name: String,
    pub version: String,
    /// Keys of the connect command's `subs` (channels the client wants to recover).
    pub channels: Vec<String>,
}

/// `refresh`: the connection's `expire_at` was reached.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    pub caller: Caller,
}

/// `subscribe`: a client subscribing without a subscription token.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub caller: Caller,
    pub channel: String,
    /// The subscribe command's `token` (always empty: a subscribe with a token never reaches
    /// the proxy).
    pub token: String,
    /// The subscribe command's `data`.
    pub data: Bytes,
}

/// `publish`: a client publishing into a namespace with `publish_proxy_enabled`.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub caller: Caller,
    pub channel: String,
    pub data: Bytes,
}

/// `rpc`: a client `rpc` whose method maps to a namespace with `proxy_enabled`.
#[derive(Debug, Clone)]
pub struct RpcRequest {
    pub caller: Caller,
    /// The full method, namespace prefix included.
    pub method: String,
    pub data: Bytes,
}

/// `sub_refresh`: a subscription's `expire_at` was reached in a namespace with
/// `sub_refresh_proxy_enabled`.
#[derive(Debug, Clone)]
pub struct SubRefreshRequest {
    pub caller: Caller,
    pub channel: String,
}

/// An `error` object of a response: answered to the client's command as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookError {
    pub code: u32,
    pub message: String,
    pub temporary: bool,
}

/// A decoded response: `disconnect`, else `error`, else `result` (`None` when absent), in the
/// order Centrifugo checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookReply<T> {
    Disconnect(Disconnect),
    Error(HookError),
    Result(Option<T>),
}

impl<T> HookReply<T> {
    /// The result, ignoring `error` and `disconnect` (what `refresh` and `sub_refresh` do).
    pub fn into_result(self) -> Option<T> {
        match self {
            HookReply::Result(r) => r,
            HookReply::Error(_) | HookReply::Disconnect(_) => None,
        }
    }
}

/// `ConnectResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectResult {
    /// The user id; `""` = anonymous.
    pub user: String,
    /// Unix seconds; 0 = never expires.
    pub expire_at: i64,
    /// Connection info.
    pub info: Bytes,
    /// Returned to the client in the connect reply.
    pub data: Bytes,
    /// Server-side subscriptions with namespace defaults.
    pub channels: Vec<String>,
    /// Server-side subscriptions with options.
    pub subs: HashMap<String, ServerSubOptions>,
    /// Connection meta (never sent to the client).
    pub meta: Option<Bytes>,
}

/// `RefreshResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshResult {
    pub expired: bool,
    pub expire_at: i64,
    /// Replaces the connection info when set.
    pub info: Option<Bytes>,
    /// Replaces the connection meta when set.
    pub meta: Option<Bytes>,
}

/// `SubscribeResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeResult {
    /// Subscription expiry (unix seconds); 0 = never.
    pub expire_at: i64,
    /// Channel info.
    pub info: Bytes,
    /// Returned in the subscribe reply.
    pub data: Bytes,
    pub override_options: SubscribeOverride,
}

/// `PublishResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishResult {
    /// Replaces the client's data when set.
    pub data: Option<Bytes>,
    pub skip_history: bool,
    pub tags: HashMap<String, String>,
    /// Empty: none.
    pub idempotency_key: String,
    /// Delta-compressible (the namespace's `delta_publish` is not consulted on this path, as
    /// in Centrifugo).
    pub delta: bool,
}

/// `RPCResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcResult {
    pub data: Bytes,
}

/// `SubRefreshResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubRefreshResult {
    pub expired: bool,
    pub expire_at: i64,
    /// Replaces the channel info when set.
    pub info: Option<Bytes>,
}
