//! One result type per server API method. An adapter renders them in its wire format (the
//! HTTP API as Centrifugo's JSON, the gRPC API as `api.proto` messages).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};

use super::{ApiError, Response};
use crate::control::NodeInfo;

/// `publish`: the publication's position, `None` when the channel keeps no history (or
/// `skip_history` was set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishResult {
    pub position: Option<StreamPosition>,
}

/// `broadcast`: one outcome per channel, in the request's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastResult {
    pub responses: Vec<Result<PublishResult, ApiError>>,
}

/// `subscribe` has no result data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeResult {}

/// `unsubscribe` has no result data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnsubscribeResult {}

/// `disconnect` has no result data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DisconnectResult {}

/// `refresh` has no result data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshResult {}

/// `history_remove` has no result data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryRemoveResult {}

/// `presence`: client id → who it is, over every live node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceResult {
    pub presence: HashMap<String, ClientInfo>,
}

/// `presence_stats`: counts over every live node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceStatsResult {
    pub num_clients: u32,
    pub num_users: u32,
}

/// `user_status`: one status per requested user, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserStatusResult {
    pub statuses: Vec<crate::presence::UserStatus>,
}

/// `history`: the publications read and the stream's current top position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryResult {
    pub publications: Vec<Publication>,
    pub epoch: String,
    pub offset: u64,
}

/// One channel of `channels`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Subscribed clients, over every live node.
    pub num_clients: u32,
}

/// `channels`: channels with at least one subscriber, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsResult {
    pub channels: BTreeMap<String, ChannelInfo>,
}

/// `info`: every live node, this one first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoResult {
    pub nodes: Vec<NodeInfo>,
}

/// `rpc`: what an extension answered (never produced: chorus registers none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcResult {
    pub data: Bytes,
}

/// `batch`: one reply per command, in the request's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    pub replies: Vec<Result<Response, ApiError>>,
}
