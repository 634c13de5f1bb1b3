//! `api.proto` messages ↔ the typed requests and results of [`chorus_core::api`]. Mapping
//! only: every rule about the values (required fields, base64, ranges) is the core's, so the
//! gRPC API answers a request exactly as the HTTP API does.
//!
//! Payloads are bytes both ways: `data` / `info` / `params` reach the core as sent (JSON text
//! normally; `b64data` / `b64info` are the base64 alternatives the core decodes), and results
//! carry the stored bytes unchanged — unlike the JSON API, a payload that is not JSON is no
//! problem here. Fields of `PublishRequest` / `BroadcastRequest` the core has no use for
//! (`delta`, `version`, `version_epoch`) are ignored, as over HTTP.

use chorus_core::api::{self as core, ApiError, Request, Response};
use chorus_core::auth::SubscribeOverride;
use chorus_core::control::NodeInfo;
use chorus_proto::api;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};

use super::status::to_proto;

// ---- requests --------------------------------------------------------------------------------

fn position(p: Option<api::StreamPosition>) -> Option<StreamPosition> {
    p.map(|p| StreamPosition {
        offset: p.offset,
        epoch: p.epoch,
    })
}

pub fn publish(r: api::PublishRequest) -> core::PublishRequest {
    core::PublishRequest {
        channel: r.channel,
        data: r.data,
        b64data: r.b64data,
        skip_history: r.skip_history,
        tags: r.tags,
        idempotency_key: r.idempotency_key,
        delta: r.delta,
    }
}

pub fn broadcast(r: api::BroadcastRequest) -> core::BroadcastRequest {
    core::BroadcastRequest {
        channels: r.channels,
        data: r.data,
        b64data: r.b64data,
        skip_history: r.skip_history,
        tags: r.tags,
        idempotency_key: r.idempotency_key,
        delta: r.delta,
    }
}

fn override_options(o: Option<api::SubscribeOptionOverride>) -> SubscribeOverride {
    let Some(o) = o else {
        return SubscribeOverride::default();
    };
    let value = |v: Option<api::BoolValue>| v.map(|v| v.value);
    SubscribeOverride {
        presence: value(o.presence),
        join_leave: value(o.join_leave),
        force_push_join_leave: value(o.force_push_join_leave),
        force_positioning: value(o.force_positioning),
        force_recovery: value(o.force_recovery),
    }
}

pub fn subscribe(r: api::SubscribeRequest) -> core::SubscribeRequest {
    core::SubscribeRequest {
        user: r.user,
        channel: r.channel,
        client: r.client,
        session: r.session,
        info: r.info,
        b64info: r.b64info,
        data: r.data,
        b64data: r.b64data,
        expire_at: r.expire_at,
        recover_since: position(r.recover_since),
        override_options: override_options(r.r#override),
    }
}

pub fn unsubscribe(r: api::UnsubscribeRequest) -> core::UnsubscribeRequest {
    core::UnsubscribeRequest {
        user: r.user,
        channel: r.channel,
        client: r.client,
        session: r.session,
    }
}

pub fn disconnect(r: api::DisconnectRequest) -> core::DisconnectRequest {
    core::DisconnectRequest {
        user: r.user,
        client: r.client,
        session: r.session,
        whitelist: r.whitelist,
        disconnect: r.disconnect.map(|d| core::DisconnectSpec {
            code: d.code,
            reason: d.reason,
        }),
    }
}

pub fn refresh(r: api::RefreshRequest) -> core::RefreshRequest {
    core::RefreshRequest {
        user: r.user,
        client: r.client,
        session: r.session,
        expired: r.expired,
        expire_at: r.expire_at,
        info: r.info,
    }
}

pub fn presence(r: api::PresenceRequest) -> core::PresenceRequest {
    core::PresenceRequest { channel: r.channel }
}

pub fn presence_stats(r: api::PresenceStatsRequest) -> core::PresenceStatsRequest {
    core::PresenceStatsRequest { channel: r.channel }
}

pub fn history(r: api::HistoryRequest) -> core::HistoryRequest {
    core::HistoryRequest {
        channel: r.channel,
        limit: r.limit,
        since: position(r.since),
        reverse: r.reverse,
    }
}

pub fn history_remove(r: api::HistoryRemoveRequest) -> core::HistoryRemoveRequest {
    core::HistoryRemoveRequest { channel: r.channel }
}

pub fn channels(r: api::ChannelsRequest) -> core::ChannelsRequest {
    core::ChannelsRequest { pattern: r.pattern }
}

pub fn rpc(r: api::RpcRequest) -> core::RpcRequest {
    core::RpcRequest {
        method: r.method,
        params: r.params,
    }
}

/// The request of one batch command: its first set field in the order the HTTP API tries a
/// batch entry's keys (`Method::ALL`: publish, broadcast, subscribe, unsubscribe, disconnect,
/// history, history_remove, presence, presence_stats, info, rpc, refresh, channels). `None` —
/// no field chorus knows is set, e.g. a PRO method's field (unknown fields are dropped when
/// decoding) — answers 104, as over HTTP.
pub fn command(c: api::Command) -> Option<Request> {
    let api::Command {
        publish: p,
        broadcast: b,
        subscribe: s,
        unsubscribe: u,
        disconnect: d,
        presence: pr,
        presence_stats: ps,
        history: h,
        history_remove: hr,
        info: i,
        rpc: r,
        refresh: rf,
        channels: ch,
    } = c;
    p.map(|x| Request::Publish(publish(x)))
        .or_else(|| b.map(|x| Request::Broadcast(broadcast(x))))
        .or_else(|| s.map(|x| Request::Subscribe(subscribe(x))))
        .or_else(|| u.map(|x| Request::Unsubscribe(unsubscribe(x))))
        .or_else(|| d.map(|x| Request::Disconnect(disconnect(x))))
        .or_else(|| h.map(|x| Request::History(history(x))))
        .or_else(|| hr.map(|x| Request::HistoryRemove(history_remove(x))))
        .or_else(|| pr.map(|x| Request::Presence(presence(x))))
        .or_else(|| ps.map(|x| Request::PresenceStats(presence_stats(x))))
        .or_else(|| i.map(|_| Request::Info(core::InfoRequest {})))
        .or_else(|| r.map(|x| Request::Rpc(rpc(x))))
        .or_else(|| rf.map(|x| Request::Refresh(refresh(x))))
        .or_else(|| ch.map(|x| Request::Channels(channels(x))))
}

pub fn batch(r: api::BatchRequest) -> core::BatchRequest {
    core::BatchRequest {
        commands: r.commands.into_iter().map(command).collect(),
        parallel: r.parallel,
    }
}

// ---- results ---------------------------------------------------------------------------------

pub fn publish_result(r: core::PublishResult) -> api::PublishResult {
    match r.position {
        Some(p) => api::PublishResult {
            offset: p.offset,
            epoch: p.epoch,
        },
        None => api::PublishResult::default(),
    }
}

pub fn broadcast_result(r: core::BroadcastResult) -> api::BroadcastResult {
    api::BroadcastResult {
        responses: r
            .responses
            .into_iter()
            .map(|r| match r {
                Ok(result) => api::PublishResponse {
                    error: None,
                    result: Some(publish_result(result)),
                },
                Err(e) => api::PublishResponse {
                    error: Some(to_proto(&e)),
                    result: None,
                },
            })
            .collect(),
    }
}

fn client_info(c: ClientInfo) -> api::ClientInfo {
    api::ClientInfo {
        user: c.user,
        client: c.client,
        conn_info: c.conn_info,
        chan_info: c.chan_info,
    }
}

pub fn presence_result(r: core::PresenceResult) -> api::PresenceResult {
    api::PresenceResult {
        presence: r
            .presence
            .into_iter()
            .map(|(id, info)| (id, client_info(info)))
            .collect(),
    }
}

pub fn presence_stats_result(r: core::PresenceStatsResult) -> api::PresenceStatsResult {
    api::PresenceStatsResult {
        num_clients: r.num_clients,
        num_users: r.num_users,
    }
}

fn publication(p: Publication) -> api::Publication {
    api::Publication {
        data: p.data,
        info: p.info.map(client_info),
        offset: p.offset,
        tags: p.tags,
    }
}

pub fn history_result(r: core::HistoryResult) -> api::HistoryResult {
    api::HistoryResult {
        publications: r.publications.into_iter().map(publication).collect(),
        epoch: r.epoch,
        offset: r.offset,
    }
}

pub fn channels_result(r: core::ChannelsResult) -> api::ChannelsResult {
    api::ChannelsResult {
        channels: r
            .channels
            .into_iter()
            .map(|(name, info)| {
                let info = api::ChannelInfo {
                    num_clients: info.num_clients,
                };
                (name, info)
            })
            .collect(),
    }
}

/// One node of `info` (no `metrics` / `process` sections, as over HTTP).
fn node_result(n: NodeInfo) -> api::NodeResult {
    api::NodeResult {
        uid: n.uid,
        name: n.name,
        version: n.version,
        num_clients: n.num_clients,
        num_users: n.num_users,
        num_channels: n.num_channels,
        uptime: n.uptime,
        metrics: None,
        process: None,
        num_subs: n.num_subs,
    }
}

pub fn info_result(r: core::InfoResult) -> api::InfoResult {
    api::InfoResult {
        nodes: r.nodes.into_iter().map(node_result).collect(),
    }
}

pub fn rpc_result(r: core::RpcResult) -> api::RpcResult {
    api::RpcResult { data: r.data }
}

/// One reply of a batch: the result in the field of its method, or `error`.
pub fn reply(r: Result<Response, ApiError>) -> api::Reply {
    let mut reply = api::Reply::default();
    match r {
        Err(e) => reply.error = Some(to_proto(&e)),
        Ok(Response::Publish(r)) => reply.publish = Some(publish_result(r)),
        Ok(Response::Broadcast(r)) => reply.broadcast = Some(broadcast_result(r)),
        Ok(Response::Subscribe(_)) => reply.subscribe = Some(api::SubscribeResult {}),
        Ok(Response::Unsubscribe(_)) => reply.unsubscribe = Some(api::UnsubscribeResult {}),
        Ok(Response::Disconnect(_)) => reply.disconnect = Some(api::DisconnectResult {}),
        Ok(Response::Presence(r)) => reply.presence = Some(presence_result(r)),
        Ok(Response::PresenceStats(r)) => reply.presence_stats = Some(presence_stats_result(r)),
        Ok(Response::History(r)) => reply.history = Some(history_result(r)),
        Ok(Response::HistoryRemove(_)) => {
            reply.history_remove = Some(api::HistoryRemoveResult {});
        }
        Ok(Response::Channels(r)) => reply.channels = Some(channels_result(r)),
        Ok(Response::Info(r)) => reply.info = Some(info_result(r)),
        Ok(Response::Rpc(r)) => reply.rpc = Some(rpc_result(r)),
        Ok(Response::Refresh(_)) => reply.refresh = Some(api::RefreshResult {}),
        // A batch is never a batch command (the core answers 104 for one), and a method
        // added to the core later has no field in `Reply`: 104 as well.
        #[allow(unreachable_patterns)]
        Ok(_) => {
            reply.error = Some(to_proto(&ApiError::from(
                chorus_protocol::codes::ERROR_METHOD_NOT_FOUND,
            )));
        }
    }
    reply
}

pub fn batch_response(r: core::BatchResult) -> api::BatchResponse {
    api::BatchResponse {
        replies: r.replies.into_iter().map(reply).collect(),
    }
}
