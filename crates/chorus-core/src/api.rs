//! The server API: one typed service behind every API adapter. Internal services reach it over
//! HTTP (`chorus-gateway`'s JSON API) or gRPC; each adapter only decodes its wire format into
//! a request here, calls [`ServerApi`], and encodes the result or the [`ApiError`] — so both
//! give the same answer to the same request. Validation (107 and the other codes) lives here
//! once, and so do the `chorus_api_*` metrics.
//!
//! Parts:
//! * this file — [`ServerApi`] (the entry point: [`Node::api`]), [`Method`], [`Request`] /
//!   [`Response`] (one variant per method, for [`ServerApi::call`] and batches), [`ApiError`];
//! * [`requests`] — one request type per method;
//! * [`results`] — one result type per method;
//! * `publish.rs` — `publish`, `broadcast` and the payload rules (`b64data` wins);
//! * `users.rs` — `subscribe`, `unsubscribe`, `disconnect`, `refresh`: applied to the user's
//!   connections on this node and sent to every other node over the control channel;
//! * `channels.rs` — `presence`, `presence_stats`, `user_status`, `history`,
//!   `history_remove`, `channels`, `info`, `rpc`;
//! * `batch.rs` — `batch`.
//!
//! Errors and their order within a method are part of the contract (`docs/server-api.md`):
//! 107 for a missing field, invalid base64 or a bad argument comes before 102 (unknown
//! namespace), which comes before 108 (feature off in the namespace).

mod batch;
mod channels;
mod publish;
pub mod requests;
pub mod results;
mod users;

use std::future::Future;
use std::time::Instant;

use chorus_protocol::codes::{self, ErrorCode};

use crate::broker::BrokerError;
use crate::channel;
use crate::metrics;
use crate::node::Node;
use crate::options::ChannelOptions;

pub use requests::*;
pub use results::*;

/// A server API error: `{"error":{"code","message"}}` over HTTP, `Error{code,message}` over
/// gRPC. Codes and messages are the protocol's ([`chorus_protocol::codes`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: u32,
    pub message: String,
}

impl From<ErrorCode> for ApiError {
    fn from(e: ErrorCode) -> Self {
        ApiError {
            code: e.code,
            message: e.message.to_string(),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::UnrecoverablePosition => codes::ERROR_UNRECOVERABLE_POSITION.into(),
            _ => codes::ERROR_INTERNAL.into(),
        }
    }
}

/// 107 "bad request".
pub(crate) fn bad_request() -> ApiError {
    codes::ERROR_BAD_REQUEST.into()
}

/// The methods of the server API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Publish,
    Broadcast,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
    Channels,
    Info,
    Rpc,
    Refresh,
    UserStatus,
    Batch,
}

impl Method {
    /// Every method, in the order a batch entry's keys are tried (Centrifugo's order; chorus's
    /// own `user_status` after Centrifugo's).
    pub const ALL: [Method; 15] = [
        Method::Publish,
        Method::Broadcast,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Disconnect,
        Method::History,
        Method::HistoryRemove,
        Method::Presence,
        Method::PresenceStats,
        Method::Info,
        Method::Rpc,
        Method::Refresh,
        Method::Channels,
        Method::UserStatus,
        Method::Batch,
    ];

    /// The method's name: the HTTP path segment, the batch key, the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Broadcast => "broadcast",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Disconnect => "disconnect",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::HistoryRemove => "history_remove",
            Method::Channels => "channels",
            Method::Info => "info",
            Method::Rpc => "rpc",
            Method::Refresh => "refresh",
            Method::UserStatus => "user_status",
            Method::Batch => "batch",
        }
    }

    /// Exact (case-sensitive) lookup of a name.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Metric label of a batch entry that names no method.
pub const UNKNOWN_METHOD_LABEL: &str = "unknown";

/// A request to any method.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Publish(PublishRequest),
    Broadcast(BroadcastRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    Disconnect(DisconnectRequest),
    Presence(PresenceRequest),
    PresenceStats(PresenceStatsRequest),
    History(HistoryRequest),
    HistoryRemove(HistoryRemoveRequest),
    Channels(ChannelsRequest),
    Info(InfoRequest),
    Rpc(RpcRequest),
    Refresh(RefreshRequest),
    UserStatus(UserStatusRequest),
    Batch(BatchRequest),
}

impl Request {
    pub fn method(&self) -> Method {
        match self {
            Request::Publish(_) => Method::Publish,
            Request::Broadcast(_) => Method::Broadcast,
            Request::Subscribe(_) => Method::Subscribe,
            Request::Unsubscribe(_) => Method::Unsubscribe,
            Request::Disconnect(_) => Method::Disconnect,
            Request::Presence(_) => Method::Presence,
            Request::PresenceStats(_) => Method::PresenceStats,
            Request::History(_) => Method::History,
            Request::HistoryRemove(_) => Method::HistoryRemove,
            Request::Channels(_) => Method::Channels,
            Request::Info(_) => Method::Info,
            Request::Rpc(_) => Method::Rpc,
            Request::Refresh(_) => Method::Refresh,
            Request::UserStatus(_) => Method::UserStatus,
            Request::Batch(_) => Method::Batch,
        }
    }
}

/// The result of any method (the variant matches the request's).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Publish(PublishResult),
    Broadcast(BroadcastResult),
    Subscribe(SubscribeResult),
    Unsubscribe(UnsubscribeResult),
    Disconnect(DisconnectResult),
    Presence(PresenceResult),
    PresenceStats(PresenceStatsResult),
    History(HistoryResult),
    HistoryRemove(HistoryRemoveResult),
    Channels(ChannelsResult),
    Info(InfoResult),
    Rpc(RpcResult),
    Refresh(RefreshResult),
    UserStatus(UserStatusResult),
    Batch(BatchResult),
}

impl Response {
    pub fn method(&self) -> Method {
        match self {
            Response::Publish(_) => Method::Publish,
            Response::Broadcast(_) => Method::Broadcast,
            Response::Subscribe(_) => Method::Subscribe,
            Response::Unsubscribe(_) => Method::Unsubscribe,
            Response::Disconnect(_) => Method::Disconnect,
            Response::Presence(_) => Method::Presence,
            Response::PresenceStats(_) => Method::PresenceStats,
            Response::History(_) => Method::History,
            Response::HistoryRemove(_) => Method::HistoryRemove,
            Response::Channels(_) => Method::Channels,
            Response::Info(_) => Method::Info,
            Response::Rpc(_) => Method::Rpc,
            Response::Refresh(_) => Method::Refresh,
            Response::UserStatus(_) => Method::UserStatus,
            Response::Batch(_) => Method::Batch,
        }
    }
}

/// The server API of a node ([`Node::api`]); cheap to clone. Every method validates its
/// request, runs it, and counts it in `chorus_api_requests_total`,
/// `chorus_api_command_duration_seconds` and `chorus_api_errors_total` (label `method`).
#[derive(Debug, Clone)]
pub struct ServerApi {
    node: Node,
}

impl Node {
    /// The server API of this node.
    pub fn api(&self) -> ServerApi {
        ServerApi { node: self.clone() }
    }
}

impl ServerApi {
    /// Runs any method.
    pub async fn call(&self, request: Request) -> Result<Response, ApiError> {
        match request {
            Request::Batch(req) => self.batch(req).await.map(Response::Batch),
            other => self.call_one(other).await,
        }
    }

    /// Runs a method other than `batch` (a nested batch answers 104, as an unknown entry).
    async fn call_one(&self, request: Request) -> Result<Response, ApiError> {
        Ok(match request {
            Request::Publish(r) => Response::Publish(self.publish(r).await?),
            Request::Broadcast(r) => Response::Broadcast(self.broadcast(r).await?),
            Request::Subscribe(r) => Response::Subscribe(self.subscribe(r).await?),
            Request::Unsubscribe(r) => Response::Unsubscribe(self.unsubscribe(r).await?),
            Request::Disconnect(r) => Response::Disconnect(self.disconnect(r).await?),
            Request::Presence(r) => Response::Presence(self.presence(r).await?),
            Request::PresenceStats(r) => Response::PresenceStats(self.presence_stats(r).await?),
            Request::History(r) => Response::History(self.history(r).await?),
            Request::HistoryRemove(r) => Response::HistoryRemove(self.history_remove(r).await?),
            Request::Channels(r) => Response::Channels(self.channels(r).await?),
            Request::Info(r) => Response::Info(self.info(r).await?),
            Request::Rpc(r) => Response::Rpc(self.rpc(r).await?),
            Request::Refresh(r) => Response::Refresh(self.refresh(r).await?),
            Request::UserStatus(r) => Response::UserStatus(self.user_status(r).await?),
            Request::Batch(_) => return Err(unknown_entry()),
        })
    }

    pub async fn publish(&self, req: PublishRequest) -> Result<PublishResult, ApiError> {
        measured(Method::Publish, publish::publish(&self.node, req)).await
    }

    pub async fn broadcast(&self, req: BroadcastRequest) -> Result<BroadcastResult, ApiError> {
        measured(Method::Broadcast, publish::broadcast(&self.node, req)).await
    }

    pub async fn subscribe(&self, req: SubscribeRequest) -> Result<SubscribeResult, ApiError> {
        measured(Method::Subscribe, users::subscribe(&self.node, req)).await
    }

    pub async fn unsubscribe(
        &self,
        req: UnsubscribeRequest,
    ) -> Result<UnsubscribeResult, ApiError> {
        measured(Method::Unsubscribe, users::unsubscribe(&self.node, req)).await
    }

    pub async fn disconnect(&self, req: DisconnectRequest) -> Result<DisconnectResult, ApiError> {
        measured(Method::Disconnect, users::disconnect(&self.node, req)).await
    }

    pub async fn refresh(&self, req: RefreshRequest) -> Result<RefreshResult, ApiError> {
        measured(Method::Refresh, users::refresh(&self.node, req)).await
    }

    pub async fn presence(&self, req: PresenceRequest) -> Result<PresenceResult, ApiError> {
        measured(Method::Presence, channels::presence(&self.node, req)).await
    }

    pub async fn presence_stats(
        &self,
        req: PresenceStatsRequest,
    ) -> Result<PresenceStatsResult, ApiError> {
        measured(
            Method::PresenceStats,
            channels::presence_stats(&self.node, req),
        )
        .await
    }

    pub async fn history(&self, req: HistoryRequest) -> Result<HistoryResult, ApiError> {
        measured(Method::History, channels::history(&self.node, req)).await
    }

    pub async fn history_remove(
        &self,
        req: HistoryRemoveRequest,
    ) -> Result<HistoryRemoveResult, ApiError> {
        measured(
            Method::HistoryRemove,
            channels::history_remove(&self.node, req),
        )
        .await
    }

    pub async fn channels(&self, req: ChannelsRequest) -> Result<ChannelsResult, ApiError> {
        measured(Method::Channels, channels::channels(&self.node, req)).await
    }

    pub async fn info(&self, req: InfoRequest) -> Result<InfoResult, ApiError> {
        measured(Method::Info, channels::info(&self.node, req)).await
    }

    pub async fn user_status(&self, req: UserStatusRequest) -> Result<UserStatusResult, ApiError> {
        measured(Method::UserStatus, channels::user_status(&self.node, req)).await
    }

    pub async fn rpc(&self, req: RpcRequest) -> Result<RpcResult, ApiError> {
        measured(Method::Rpc, channels::rpc(req)).await
    }

    /// Runs the commands of a batch (strictly in order, or concurrently with `parallel`) and
    /// answers one reply per command, in order. The batch itself never fails.
    pub async fn batch(&self, req: BatchRequest) -> Result<BatchResult, ApiError> {
        measured(Method::Batch, batch::batch(self, req)).await
    }
}

/// Runs `fut` as one command of `method`, with its metrics.
async fn measured<T>(
    method: Method,
    fut: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let result = fut.await;
    metrics::api_request(method.name(), Some(started.elapsed()));
    if let Err(e) = &result {
        metrics::api_error(method.name(), e.code.to_string());
    }
    result
}

/// The answer to a batch entry that names no method (or names `batch`): 104, counted under
/// the `unknown` label.
fn unknown_entry() -> ApiError {
    metrics::api_error(
        UNKNOWN_METHOD_LABEL,
        codes::ERROR_METHOD_NOT_FOUND.code.to_string(),
    );
    codes::ERROR_METHOD_NOT_FOUND.into()
}

/// The options of `channel`: 107 for an empty or too long name, 102 for an unknown namespace.
fn channel_options(node: &Node, channel: &str) -> Result<ChannelOptions, ApiError> {
    Ok(channel::resolve(&node.options().channel, channel)?.clone())
}
