//! Rendering of the typed results of [`chorus_core::api`] as the JSON of Centrifugo's API:
//! snake_case names, zero values omitted except the always-emitted fields that `cent`'s models
//! and centrifuge-js require (`presence`, `channels`, `nodes[].uid/name/...`, the presence
//! counters, `publications`/`epoch`/`offset` of history). Results are serialized from typed
//! views (never through `serde_json::Value`), so raw JSON payloads come back byte-for-byte as
//! they were published.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use chorus_core::api::{self, ApiError, BatchResult, Response};
use chorus_core::control::NodeInfo;
use chorus_protocol::codes::ERROR_INTERNAL;
use chorus_protocol::{ClientInfo, Publication};

use super::{error_json, record_error, ErrorBody};

/// The result object of `response` as JSON text. A payload that is not valid JSON (published
/// with `b64data`) cannot be embedded in a JSON answer: that is error 100.
pub fn render(response: &Response) -> Result<Box<RawValue>, ApiError> {
    match response {
        Response::Publish(r) => to_raw(&PublishResult::from(r)),
        Response::Broadcast(r) => to_raw(&BroadcastResult {
            responses: r
                .responses
                .iter()
                .map(|r| match r {
                    Ok(result) => PublishResponse {
                        result: Some(PublishResult::from(result)),
                        error: None,
                    },
                    Err(e) => PublishResponse {
                        result: None,
                        error: Some(ErrorBody::from(e)),
                    },
                })
                .collect(),
        }),
        Response::Subscribe(_)
        | Response::Unsubscribe(_)
        | Response::Disconnect(_)
        | Response::HistoryRemove(_)
        | Response::Refresh(_) => empty_object(),
        Response::Presence(r) => to_raw(&PresenceResult {
            presence: r.presence.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        }),
        Response::PresenceStats(r) => to_raw(&PresenceStatsResult {
            num_clients: r.num_clients,
            num_users: r.num_users,
        }),
        Response::History(r) => to_raw(&HistoryResult {
            publications: &r.publications,
            epoch: &r.epoch,
            offset: r.offset,
        }),
        Response::Channels(r) => to_raw(&ChannelsResult {
            channels: r
                .channels
                .iter()
                .map(|(name, info)| {
                    let info = ChannelInfo {
                        num_clients: info.num_clients,
                    };
                    (name.as_str(), info)
                })
                .collect(),
        }),
        Response::Info(r) => to_raw(&InfoResult {
            nodes: r.nodes.iter().map(NodeResult::from).collect(),
        }),
        Response::UserStatus(r) => to_raw(&UserStatusResult {
            statuses: &r.statuses,
        }),
        Response::Rpc(r) => to_raw(&chorus_protocol::RpcResult {
            data: r.data.clone(),
        }),
        Response::Batch(r) => RawValue::from_string(batch_json(r)).map_err(|_| internal()),
    }
}

/// `{"statuses":[{"user","online","num_clients","channels"}]}`: every field always present.
#[derive(Serialize)]
struct UserStatusResult<'a> {
    statuses: &'a [chorus_core::presence::UserStatus],
}

/// `{"replies":[…]}`: each reply keyed by its method name, or `{"error":{…}}`. A reply that
/// cannot be rendered is error 100, counted under its method.
pub fn batch_json(batch: &BatchResult) -> String {
    let mut out = String::from("{\"replies\":[");
    for (i, reply) in batch.replies.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let rendered = reply.as_ref().map_err(Clone::clone).and_then(|response| {
            let name = response.method().name();
            render(response)
                .map(|raw| (name, raw))
                .inspect_err(|e| record_error(name, e.code.to_string()))
        });
        match rendered {
            Ok((name, raw)) => {
                out.push_str("{\"");
                out.push_str(name);
                out.push_str("\":");
                out.push_str(raw.get());
                out.push('}');
            }
            Err(e) => out.push_str(&error_json(&e)),
        }
    }
    out.push_str("]}");
    out
}

fn internal() -> ApiError {
    ApiError::from(ERROR_INTERNAL)
}

fn to_raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, ApiError> {
    serde_json::to_string(value)
        .and_then(RawValue::from_string)
        .map_err(|_| internal())
}

fn empty_object() -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string("{}".to_owned()).map_err(|_| internal())
}

/// `{}` for a channel without history, else `{"offset":N,"epoch":"…"}`.
#[derive(Serialize)]
struct PublishResult<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    epoch: &'a str,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl<'a> From<&'a api::PublishResult> for PublishResult<'a> {
    fn from(r: &'a api::PublishResult) -> Self {
        match &r.position {
            Some(p) => PublishResult {
                offset: p.offset,
                epoch: &p.epoch,
            },
            None => PublishResult {
                offset: 0,
                epoch: "",
            },
        }
    }
}

/// One entry of `broadcast` `responses`: `{"result":{…}}` or `{"error":{…}}`.
#[derive(Serialize)]
struct PublishResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<PublishResult<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
struct BroadcastResult<'a> {
    responses: Vec<PublishResponse<'a>>,
}

#[derive(Serialize)]
struct PresenceResult<'a> {
    /// Always present, `{}` when nobody is there; sorted by client id.
    presence: BTreeMap<&'a str, &'a ClientInfo>,
}

#[derive(Serialize)]
struct PresenceStatsResult {
    num_clients: u32,
    num_users: u32,
}

/// Publications as the client protocol writes them (`data` raw, `info`/`tags` when set).
#[derive(Serialize)]
struct HistoryResult<'a> {
    publications: &'a [Publication],
    epoch: &'a str,
    offset: u64,
}

#[derive(Serialize)]
struct ChannelInfo {
    num_clients: u32,
}

#[derive(Serialize)]
struct ChannelsResult<'a> {
    /// Always present; sorted by name.
    channels: BTreeMap<&'a str, ChannelInfo>,
}

/// `info`: one entry per node (no `metrics`/`process` sections).
#[derive(Serialize)]
struct InfoResult<'a> {
    nodes: Vec<NodeResult<'a>>,
}

/// One node of `info`; every field is always present (`cent` requires `uid` and `name`).
#[derive(Serialize)]
struct NodeResult<'a> {
    uid: &'a str,
    name: &'a str,
    version: &'a str,
    num_clients: u32,
    num_users: u32,
    num_subs: u32,
    num_channels: u32,
    uptime: u32,
}

impl<'a> From<&'a NodeInfo> for NodeResult<'a> {
    fn from(n: &'a NodeInfo) -> Self {
        NodeResult {
            uid: &n.uid,
            name: &n.name,
            version: &n.version,
            num_clients: n.num_clients,
            num_users: n.num_users,
            num_subs: n.num_subs,
            num_channels: n.num_channels,
            uptime: n.uptime,
        }
    }
}
