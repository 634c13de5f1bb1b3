//! One request type per server API method. Fields and names are those of Centrifugo's
//! `api.proto` (what both the HTTP JSON API and the gRPC API carry); the service validates
//! them, an adapter only fills them in. Empty strings and zero values mean "not set".
//!
//! Payloads (`data`, `info`) are bytes: raw JSON from the HTTP API, any bytes from gRPC. The
//! `b64data` / `b64info` alternatives are base64 text (standard alphabet, padded) that wins
//! over the raw field when non-empty, as in Centrifugo; invalid base64 is 107.

use std::collections::HashMap;

use bytes::Bytes;
use chorus_protocol::StreamPosition;

use super::Request;
use crate::auth::SubscribeOverride;

/// `publish`: one publication into a channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishRequest {
    pub channel: String,
    pub data: Bytes,
    pub b64data: String,
    /// Publish without keeping the publication in the channel's history.
    pub skip_history: bool,
    /// Delivered with the publication.
    pub tags: HashMap<String, String>,
    /// Publishing twice with the same key (per channel, for a few minutes) publishes once.
    pub idempotency_key: String,
    /// Delta-compressible for subscribers in delta mode (also on with the namespace's
    /// `delta_publish`).
    pub delta: bool,
}

impl PublishRequest {
    /// A publish of `data` into `channel`, every option at its default.
    pub fn new(channel: impl Into<String>, data: impl Into<Bytes>) -> Self {
        PublishRequest {
            channel: channel.into(),
            data: data.into(),
            ..Default::default()
        }
    }
}

/// `broadcast`: the same publication into several channels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BroadcastRequest {
    pub channels: Vec<String>,
    pub data: Bytes,
    pub b64data: String,
    pub skip_history: bool,
    pub tags: HashMap<String, String>,
    pub idempotency_key: String,
    /// As [`PublishRequest::delta`].
    pub delta: bool,
}

/// `subscribe`: subscribe a user's connections (all, or one `client`) on every node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeRequest {
    pub user: String,
    pub channel: String,
    /// Only this connection ("" = every connection of the user).
    pub client: String,
    /// Connections have no session on the WebSocket transport: selects nothing more.
    pub session: String,
    /// Channel info (`chan_info` in presence and join/leave).
    pub info: Bytes,
    pub b64info: String,
    /// Data of the `subscribe` push the connections get.
    pub data: Bytes,
    pub b64data: String,
    /// Carried to the other nodes; subscriptions made by the server API do not expire.
    pub expire_at: i64,
    /// Recover the subscription from this position (when the channel is recoverable).
    pub recover_since: Option<StreamPosition>,
    /// Namespace options overridden for this subscription.
    pub override_options: SubscribeOverride,
}

/// `unsubscribe`: end a user's subscriptions to a channel on every node (push code 2000).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeRequest {
    pub user: String,
    pub channel: String,
    pub client: String,
    pub session: String,
}

/// The close frame of a `disconnect`, as requested (validated by the service).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectSpec {
    /// 0 = the default code 3503; otherwise 3001–4999.
    pub code: u32,
    /// At most 123 bytes (what a close frame carries).
    pub reason: String,
}

/// `disconnect`: close a user's connections on every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectRequest {
    pub user: String,
    pub client: String,
    pub session: String,
    /// Connection ids that stay connected.
    pub whitelist: Vec<String>,
    /// `None` = 3503 "force disconnect".
    pub disconnect: Option<DisconnectSpec>,
}

/// `refresh`: change the expiry or info of a user's connections on every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshRequest {
    pub user: String,
    pub client: String,
    pub session: String,
    /// The connections are expired now: closed with 3005 "connection expired".
    pub expired: bool,
    /// New expiry, unix seconds: the connections close with 3005 once it (plus
    /// `client.expired_close_delay`) has passed, unless the client refreshes its token. A time
    /// not in the future expires them now; 0 = unchanged; negative is 107.
    pub expire_at: i64,
    /// New connection info (`conn_info`), JSON; empty = unchanged.
    pub info: Bytes,
}

/// `presence`: who is subscribed to a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceRequest {
    pub channel: String,
}

/// `presence_stats`: how many clients and distinct users are subscribed to a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceStatsRequest {
    pub channel: String,
}

/// `user_status`: whether each user is online (present in some channel with presence), with
/// how many connections and in which channels — a contact list in one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserStatusRequest {
    pub users: Vec<String>,
}

/// `history`: read a channel's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub channel: String,
    /// 0 = only the stream position, negative = everything kept, N = the first N after
    /// `since` (the last N with `reverse`).
    pub limit: i32,
    /// Exclusive; its epoch must match the stream's (else 112).
    pub since: Option<StreamPosition>,
    /// Newest first.
    pub reverse: bool,
}

/// `history_remove`: drop a channel's publications (its position stays).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRemoveRequest {
    pub channel: String,
}

/// `channels`: channels with at least one subscriber on some node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsRequest {
    /// A glob over channel names (`*`, `?`, `[abc]`, `[!a-z]`); empty = every channel.
    pub pattern: String,
}

/// `info`: the live nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoRequest {}

/// `rpc`: a server-side RPC extension (chorus registers none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcRequest {
    pub method: String,
    pub params: Bytes,
}

/// `batch`: several commands in one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchRequest {
    /// The commands, in order; `None` is an entry naming no method this server knows
    /// (answered with 104, like a nested `batch`).
    pub commands: Vec<Option<Request>>,
    /// Run the commands concurrently (the replies stay in order).
    pub parallel: bool,
}
