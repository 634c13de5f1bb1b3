//! Per-method logic: validation (error 107), the call into [`Node`], and the JSON result.
//!
//! Every method yields an [`Outcome`]: the result object as exact JSON text, or an [`ApiError`].
//! Results are serialized from typed structs (never through `serde_json::Value`), so raw JSON
//! payloads come back byte-for-byte as they were published.

use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::value::RawValue;

use chorus_core::auth::SubscribeOverride;
use chorus_core::control::SubscribeUser;
use chorus_core::{ApiError, Disconnect, Node, PublishOpts};
use chorus_protocol::codes::{
    DisconnectCode, ErrorCode, DISCONNECT_FORCE_NO_RECONNECT, ERROR_BAD_REQUEST, ERROR_INTERNAL,
    ERROR_METHOD_NOT_FOUND, ERROR_NOT_AVAILABLE,
};
use chorus_protocol::StreamPosition;

use super::requests::{
    BroadcastRequest, ChannelRequest, ChannelsRequest, Command, DisconnectRequest, HistoryRequest,
    PublishRequest, RefreshRequest, RpcRequest, StreamPositionRequest, SubscribeOverrideRequest,
    SubscribeRequest, UnsubscribeRequest,
};
use super::results::{
    BroadcastResult, ChannelInfo, ChannelsResult, InfoResult, NodeResult, PresenceResult,
    PublishResponse, PublishResult,
};
use super::{record_error, ErrorBody, METRIC_DURATION, METRIC_REQUESTS};

/// A method's result object as JSON text, or its error.
pub type Outcome = Result<Box<RawValue>, ApiError>;

/// Longest close reason a WebSocket close frame can carry (125-byte payload minus the code).
const MAX_CLOSE_REASON: usize = 123;

fn api_error(code: ErrorCode) -> ApiError {
    ApiError::from(code)
}

fn bad_request() -> ApiError {
    api_error(ERROR_BAD_REQUEST)
}

/// Serializes a result. A payload that is not valid JSON (published with `b64data`) cannot be
/// embedded in a JSON answer: that is reported as error 100.
fn to_raw<T: Serialize>(value: &T) -> Outcome {
    serde_json::to_string(value)
        .and_then(RawValue::from_string)
        .map_err(|_| api_error(ERROR_INTERNAL))
}

fn empty_result() -> Outcome {
    RawValue::from_string("{}".to_owned()).map_err(|_| api_error(ERROR_INTERNAL))
}

/// Runs one command, with its metrics (request count, duration, error count by code).
pub async fn run(node: &Node, command: Command) -> Outcome {
    let method = command.method().name();
    metrics::counter!(METRIC_REQUESTS, "method" => method).increment(1);
    let started = Instant::now();
    let outcome = execute(node, command).await;
    metrics::histogram!(METRIC_DURATION, "method" => method)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = &outcome {
        record_error(method, e.code.to_string());
    }
    outcome
}

async fn execute(node: &Node, command: Command) -> Outcome {
    match command {
        Command::Publish(req) => publish(node, req).await,
        Command::Broadcast(req) => broadcast(node, req).await,
        Command::Subscribe(req) => subscribe(node, req).await,
        Command::Unsubscribe(req) => unsubscribe(node, req).await,
        Command::Disconnect(req) => disconnect(node, req).await,
        Command::Presence(req) => presence(node, req).await,
        Command::PresenceStats(req) => presence_stats(node, req).await,
        Command::History(req) => history(node, req).await,
        Command::HistoryRemove(req) => history_remove(node, req).await,
        Command::Channels(req) => channels(node, req).await,
        Command::Info(_) => info(node).await,
        Command::Refresh(req) => refresh(req),
        Command::Rpc(req) => rpc(req),
    }
}

/// Runs the commands of a batch and renders `{"replies":[…]}`: each reply is keyed by its
/// method name, or is `{"error":{…}}`. `parallel` runs them concurrently (in this task);
/// otherwise strictly in order.
pub async fn batch(node: &Node, commands: Vec<Option<Command>>, parallel: bool) -> String {
    let run_entry = |command: Option<Command>| async move {
        match command {
            Some(command) => {
                let name = command.method().name();
                (name, run(node, command).await)
            }
            None => {
                record_error("unknown", ERROR_METHOD_NOT_FOUND.code.to_string());
                ("unknown", Err(api_error(ERROR_METHOD_NOT_FOUND)))
            }
        }
    };
    let outcomes = if parallel {
        join_all(commands.into_iter().map(run_entry)).await
    } else {
        let mut outcomes = Vec::with_capacity(commands.len());
        for command in commands {
            outcomes.push(run_entry(command).await);
        }
        outcomes
    };
    let mut out = String::from("{\"replies\":[");
    for (i, (name, outcome)) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match outcome {
            Ok(raw) => {
                out.push_str("{\"");
                out.push_str(name);
                out.push_str("\":");
                out.push_str(raw.get());
                out.push('}');
            }
            Err(e) => out.push_str(&super::error_json(e)),
        }
    }
    out.push_str("]}");
    out
}

/// `b64` (when non-empty) wins over `raw`, as in Centrifugo. Invalid base64 → 107.
fn payload(raw: Option<&RawValue>, b64: &str) -> Result<Bytes, ApiError> {
    if !b64.is_empty() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|_| bad_request());
    }
    Ok(raw
        .map(|raw| Bytes::copy_from_slice(raw.get().as_bytes()))
        .unwrap_or_default())
}

fn position(since: Option<StreamPositionRequest>) -> Option<StreamPosition> {
    since.map(|p| StreamPosition {
        offset: p.offset,
        epoch: p.epoch,
    })
}

async fn publish(node: &Node, req: PublishRequest) -> Outcome {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    let data = payload(req.data.as_deref(), &req.b64data)?;
    if data.is_empty() {
        return Err(bad_request());
    }
    let opts = PublishOpts {
        skip_history: req.skip_history,
        tags: req.tags,
        idempotency_key: req.idempotency_key,
    };
    let position = node.publish(&req.channel, data, opts).await?;
    to_raw(&PublishResult::from(position))
}

/// Publishes into every channel concurrently; per-channel failures go into `responses`, the
/// method itself fails only on an empty channel list or missing/invalid data.
async fn broadcast(node: &Node, req: BroadcastRequest) -> Outcome {
    if req.channels.is_empty() {
        return Err(bad_request());
    }
    let data = payload(req.data.as_deref(), &req.b64data)?;
    if data.is_empty() {
        return Err(bad_request());
    }
    let results = join_all(req.channels.iter().map(|channel| {
        let opts = PublishOpts {
            skip_history: req.skip_history,
            tags: req.tags.clone(),
            idempotency_key: req.idempotency_key.clone(),
        };
        let data = data.clone();
        async move {
            if channel.is_empty() {
                return Err(bad_request());
            }
            node.publish(channel, data, opts).await
        }
    }))
    .await;
    let responses = results
        .iter()
        .map(|r| match r {
            Ok(position) => PublishResponse {
                result: Some(PublishResult::from(position.clone())),
                error: None,
            },
            Err(e) => {
                record_error("broadcast", e.code.to_string());
                PublishResponse {
                    result: None,
                    error: Some(ErrorBody::from(e)),
                }
            }
        })
        .collect();
    to_raw(&BroadcastResult { responses })
}

fn override_options(o: Option<SubscribeOverrideRequest>) -> SubscribeOverride {
    let o = o.unwrap_or_default();
    SubscribeOverride {
        presence: o.presence.map(|v| v.value),
        join_leave: o.join_leave.map(|v| v.value),
        force_push_join_leave: o.force_push_join_leave.map(|v| v.value),
        force_positioning: o.force_positioning.map(|v| v.value),
        force_recovery: o.force_recovery.map(|v| v.value),
    }
}

async fn subscribe(node: &Node, req: SubscribeRequest) -> Outcome {
    if req.user.is_empty() || req.channel.is_empty() {
        return Err(bad_request());
    }
    let info = payload(req.info.as_deref(), &req.b64info)?;
    let data = payload(req.data.as_deref(), &req.b64data)?;
    let sub = SubscribeUser {
        user: req.user,
        channel: req.channel,
        client: req.client,
        session: req.session,
        info,
        data,
        expire_at: req.expire_at,
        recover_since: position(req.recover_since),
        override_options: override_options(req.override_options),
    };
    node.subscribe_user(sub).await?;
    empty_result()
}

async fn unsubscribe(node: &Node, req: UnsubscribeRequest) -> Outcome {
    if req.user.is_empty() || req.channel.is_empty() {
        return Err(bad_request());
    }
    node.unsubscribe_user(&req.user, &req.channel, &req.client, &req.session)
        .await?;
    empty_result()
}

/// The close frame to send: default 3503 "force disconnect"; a custom code must be a
/// server-sendable close code (3001–4999) and the reason must fit a close frame.
pub fn disconnect_advice(
    spec: Option<&super::requests::DisconnectSpec>,
) -> Result<Disconnect, ApiError> {
    let default: DisconnectCode = DISCONNECT_FORCE_NO_RECONNECT;
    let Some(spec) = spec else {
        return Ok(Disconnect::from(default));
    };
    if spec.reason.len() > MAX_CLOSE_REASON {
        return Err(bad_request());
    }
    if spec.code == 0 {
        let reason = if spec.reason.is_empty() {
            default.reason.to_owned()
        } else {
            spec.reason.clone()
        };
        return Ok(Disconnect {
            code: default.code,
            reason,
        });
    }
    match u16::try_from(spec.code) {
        Ok(code @ 3001..=4999) => Ok(Disconnect {
            code,
            reason: spec.reason.clone(),
        }),
        _ => Err(bad_request()),
    }
}

async fn disconnect(node: &Node, req: DisconnectRequest) -> Outcome {
    if req.user.is_empty() {
        return Err(bad_request());
    }
    let advice = disconnect_advice(req.disconnect.as_ref())?;
    node.disconnect_user(&req.user, &req.client, &req.session, &req.whitelist, advice)
        .await?;
    empty_result()
}

async fn presence(node: &Node, req: ChannelRequest) -> Outcome {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    let clients = node.presence(&req.channel).await?;
    to_raw(&PresenceResult {
        presence: clients.iter().map(|(k, v)| (k.as_str(), v)).collect(),
    })
}

async fn presence_stats(node: &Node, req: ChannelRequest) -> Outcome {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    to_raw(&node.presence_stats(&req.channel).await?)
}

async fn history(node: &Node, req: HistoryRequest) -> Outcome {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    let since = position(req.since);
    if req.reverse && since.as_ref().is_some_and(|s| s.offset == 0) {
        return Err(bad_request());
    }
    to_raw(
        &node
            .history(&req.channel, req.limit, since, req.reverse)
            .await?,
    )
}

async fn history_remove(node: &Node, req: ChannelRequest) -> Outcome {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    node.history_remove(&req.channel).await?;
    empty_result()
}

async fn channels(node: &Node, req: ChannelsRequest) -> Outcome {
    let pattern = if req.pattern.is_empty() {
        None
    } else {
        Some(glob::Pattern::new(&req.pattern).map_err(|_| bad_request())?)
    };
    let channels = node
        .channels()
        .await?
        .into_iter()
        .filter(|(name, _)| pattern.as_ref().is_none_or(|p| p.matches(name)))
        .map(|(name, num_clients)| (name, ChannelInfo { num_clients }))
        .collect();
    to_raw(&ChannelsResult { channels })
}

async fn info(node: &Node) -> Outcome {
    let nodes = node.info().await?;
    to_raw(&InfoResult {
        nodes: nodes.iter().map(NodeResult::from).collect(),
    })
}

/// Connection refresh is not in the core (no server-side expiry extension yet): 108.
fn refresh(req: RefreshRequest) -> Outcome {
    if req.user.is_empty() {
        return Err(bad_request());
    }
    Err(api_error(ERROR_NOT_AVAILABLE))
}

/// No RPC extensions are registered: every named method is unknown (104).
fn rpc(req: RpcRequest) -> Outcome {
    if req.method.is_empty() {
        return Err(bad_request());
    }
    Err(api_error(ERROR_METHOD_NOT_FOUND))
}
