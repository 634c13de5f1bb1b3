//! JSON request bodies of the server API methods (serde), and their mapping onto the typed
//! requests of [`chorus_core::api`] — decoding only: every rule about the values (required
//! fields, base64, ranges) is the core's.
//!
//! Field names are the proto names of Centrifugo's `api.proto`. Unknown fields are ignored (so
//! `delta`, `version`, PRO fields and newer additions sent by `cent` are accepted); a field with
//! the wrong JSON type fails the whole body (HTTP 400), while `null` reads as "not set", as in
//! Centrifugo's Go decoder. `data`/`info`/`params` keep the exact JSON text ([`RawValue`]) and
//! reach the core as those bytes.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use chorus_core::api::{self, Method, Request};
use chorus_core::auth::SubscribeOverride;
use chorus_protocol::StreamPosition;

/// `null` and missing both read as the type's default.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// Any JSON value, kept verbatim. `null` counts as missing.
    pub data: Option<Box<RawValue>>,
    /// Base64 (standard alphabet, padded) payload; wins over `data` when non-empty.
    #[serde(deserialize_with = "nullable")]
    pub b64data: String,
    #[serde(deserialize_with = "nullable")]
    pub skip_history: bool,
    #[serde(deserialize_with = "nullable")]
    pub tags: HashMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub idempotency_key: String,
    #[serde(deserialize_with = "nullable")]
    pub delta: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BroadcastRequest {
    #[serde(deserialize_with = "nullable")]
    pub channels: Vec<String>,
    pub data: Option<Box<RawValue>>,
    #[serde(deserialize_with = "nullable")]
    pub b64data: String,
    #[serde(deserialize_with = "nullable")]
    pub skip_history: bool,
    #[serde(deserialize_with = "nullable")]
    pub tags: HashMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub idempotency_key: String,
    #[serde(deserialize_with = "nullable")]
    pub delta: bool,
}

/// `{offset, epoch}`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct StreamPositionRequest {
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    #[serde(deserialize_with = "nullable")]
    pub epoch: String,
}

/// `{"value": bool}` (protobuf `BoolValue`).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct BoolValue {
    #[serde(deserialize_with = "nullable")]
    pub value: bool,
}

/// `SubscribeOptionOverride`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SubscribeOverrideRequest {
    pub presence: Option<BoolValue>,
    pub join_leave: Option<BoolValue>,
    pub force_recovery: Option<BoolValue>,
    pub force_positioning: Option<BoolValue>,
    pub force_push_join_leave: Option<BoolValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    #[serde(deserialize_with = "nullable")]
    pub session: String,
    /// Channel info (`chan_info` in presence/join/leave), any JSON.
    pub info: Option<Box<RawValue>>,
    #[serde(deserialize_with = "nullable")]
    pub b64info: String,
    pub data: Option<Box<RawValue>>,
    #[serde(deserialize_with = "nullable")]
    pub b64data: String,
    #[serde(deserialize_with = "nullable")]
    pub expire_at: i64,
    pub recover_since: Option<StreamPositionRequest>,
    #[serde(rename = "override")]
    pub override_options: Option<SubscribeOverrideRequest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    #[serde(deserialize_with = "nullable")]
    pub session: String,
}

/// `{code, reason}` of the `disconnect` method.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct DisconnectSpec {
    #[serde(deserialize_with = "nullable")]
    pub code: u32,
    #[serde(deserialize_with = "nullable")]
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DisconnectRequest {
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    #[serde(deserialize_with = "nullable")]
    pub session: String,
    /// Client ids of the user that stay connected.
    #[serde(deserialize_with = "nullable")]
    pub whitelist: Vec<String>,
    pub disconnect: Option<DisconnectSpec>,
}

/// Body of `presence`, `presence_stats` and `history_remove`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChannelRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    #[serde(deserialize_with = "nullable")]
    pub channel: String,
    /// 0 (default) = only the stream position, -1 = everything kept, N = N publications.
    #[serde(deserialize_with = "nullable")]
    pub limit: i32,
    pub since: Option<StreamPositionRequest>,
    #[serde(deserialize_with = "nullable")]
    pub reverse: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChannelsRequest {
    /// Glob over channel names (`*`, `?`, `[...]`); empty = all channels.
    #[serde(deserialize_with = "nullable")]
    pub pattern: String,
}

/// `info` takes no parameters; any object is accepted.
#[derive(Debug, Default, Deserialize)]
pub struct InfoRequest {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    #[serde(deserialize_with = "nullable")]
    pub session: String,
    #[serde(deserialize_with = "nullable")]
    pub expired: bool,
    #[serde(deserialize_with = "nullable")]
    pub expire_at: i64,
    pub info: Option<Box<RawValue>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    #[serde(deserialize_with = "nullable")]
    pub method: String,
    pub params: Option<Box<RawValue>>,
}

/// The envelope of `batch`: commands stay raw until [`parse`] decodes each one.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BatchRequest {
    #[serde(deserialize_with = "nullable")]
    commands: Vec<BTreeMap<String, Box<RawValue>>>,
    #[serde(deserialize_with = "nullable")]
    parallel: bool,
}

/// An empty (or all-whitespace) body reads as `{}`, so `POST /api/info` needs no body.
fn or_empty_object(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    }
}

/// Decodes the body of `method` into a request. Errors are syntax errors or wrong field types
/// (HTTP 400); a batch entry naming no known method becomes `None` (the core answers 104).
pub fn parse(method: Method, body: &[u8]) -> Result<Request, serde_json::Error> {
    let body = or_empty_object(body);
    if method == Method::Batch {
        let batch: BatchRequest = serde_json::from_slice(body)?;
        let mut commands = Vec::with_capacity(batch.commands.len());
        for entry in &batch.commands {
            commands.push(parse_batch_entry(entry)?);
        }
        return Ok(Request::Batch(api::BatchRequest {
            commands,
            parallel: batch.parallel,
        }));
    }
    parse_command(method, body)
}

/// Like Centrifugo, the first key (in method-table order) that names a known method and is not
/// `null` is the command; nested `batch` is not a command.
fn parse_batch_entry(
    entry: &BTreeMap<String, Box<RawValue>>,
) -> Result<Option<Request>, serde_json::Error> {
    for method in Method::ALL {
        if method == Method::Batch {
            continue;
        }
        if let Some(raw) = entry.get(method.name()) {
            if raw.get() != "null" {
                return parse_command(method, raw.get().as_bytes()).map(Some);
            }
        }
    }
    Ok(None)
}

/// Decodes one non-batch command body (`method` must not be [`Method::Batch`]; a batch body
/// would be read as `info`-like empty parameters).
pub fn parse_command(method: Method, body: &[u8]) -> Result<Request, serde_json::Error> {
    fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
        serde_json::from_slice(body)
    }
    let body = or_empty_object(body);
    Ok(match method {
        Method::Publish => Request::Publish(decode::<PublishRequest>(body)?.into()),
        Method::Broadcast => Request::Broadcast(decode::<BroadcastRequest>(body)?.into()),
        Method::Subscribe => Request::Subscribe(decode::<SubscribeRequest>(body)?.into()),
        Method::Unsubscribe => Request::Unsubscribe(decode::<UnsubscribeRequest>(body)?.into()),
        Method::Disconnect => Request::Disconnect(decode::<DisconnectRequest>(body)?.into()),
        Method::Presence => Request::Presence(api::PresenceRequest {
            channel: decode::<ChannelRequest>(body)?.channel,
        }),
        Method::PresenceStats => Request::PresenceStats(api::PresenceStatsRequest {
            channel: decode::<ChannelRequest>(body)?.channel,
        }),
        Method::History => Request::History(decode::<HistoryRequest>(body)?.into()),
        Method::HistoryRemove => Request::HistoryRemove(api::HistoryRemoveRequest {
            channel: decode::<ChannelRequest>(body)?.channel,
        }),
        Method::Channels => Request::Channels(api::ChannelsRequest {
            pattern: decode::<ChannelsRequest>(body)?.pattern,
        }),
        Method::Info | Method::Batch => {
            decode::<InfoRequest>(body)?;
            Request::Info(api::InfoRequest {})
        }
        Method::Refresh => Request::Refresh(decode::<RefreshRequest>(body)?.into()),
        Method::Rpc => Request::Rpc(decode::<RpcRequest>(body)?.into()),
        Method::UserStatus => Request::UserStatus(api::UserStatusRequest {
            users: decode::<UserStatusRequest>(body)?.users,
        }),
    })
}

/// `user_status` body: `{"users": ["…", …]}` (chorus's own method, not Centrifugo's).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UserStatusRequest {
    pub users: Vec<String>,
}

// ---- JSON → typed requests -------------------------------------------------------------------

/// The exact JSON text of a raw field as bytes; missing (or `null`) is empty.
fn raw_bytes(raw: Option<Box<RawValue>>) -> Bytes {
    raw.map(|raw| Bytes::copy_from_slice(raw.get().as_bytes()))
        .unwrap_or_default()
}

fn position(p: Option<StreamPositionRequest>) -> Option<StreamPosition> {
    p.map(|p| StreamPosition {
        offset: p.offset,
        epoch: p.epoch,
    })
}

impl From<PublishRequest> for api::PublishRequest {
    fn from(r: PublishRequest) -> Self {
        api::PublishRequest {
            channel: r.channel,
            data: raw_bytes(r.data),
            b64data: r.b64data,
            skip_history: r.skip_history,
            tags: r.tags,
            idempotency_key: r.idempotency_key,
            delta: r.delta,
        }
    }
}

impl From<BroadcastRequest> for api::BroadcastRequest {
    fn from(r: BroadcastRequest) -> Self {
        api::BroadcastRequest {
            channels: r.channels,
            data: raw_bytes(r.data),
            b64data: r.b64data,
            skip_history: r.skip_history,
            tags: r.tags,
            idempotency_key: r.idempotency_key,
            delta: r.delta,
        }
    }
}

impl From<SubscribeOverrideRequest> for SubscribeOverride {
    fn from(o: SubscribeOverrideRequest) -> Self {
        SubscribeOverride {
            presence: o.presence.map(|v| v.value),
            join_leave: o.join_leave.map(|v| v.value),
            force_push_join_leave: o.force_push_join_leave.map(|v| v.value),
            force_positioning: o.force_positioning.map(|v| v.value),
            force_recovery: o.force_recovery.map(|v| v.value),
        }
    }
}

impl From<SubscribeRequest> for api::SubscribeRequest {
    fn from(r: SubscribeRequest) -> Self {
        api::SubscribeRequest {
            user: r.user,
            channel: r.channel,
            client: r.client,
            session: r.session,
            info: raw_bytes(r.info),
            b64info: r.b64info,
            data: raw_bytes(r.data),
            b64data: r.b64data,
            expire_at: r.expire_at,
            recover_since: position(r.recover_since),
            override_options: r.override_options.unwrap_or_default().into(),
        }
    }
}

impl From<UnsubscribeRequest> for api::UnsubscribeRequest {
    fn from(r: UnsubscribeRequest) -> Self {
        api::UnsubscribeRequest {
            user: r.user,
            channel: r.channel,
            client: r.client,
            session: r.session,
        }
    }
}

impl From<DisconnectRequest> for api::DisconnectRequest {
    fn from(r: DisconnectRequest) -> Self {
        api::DisconnectRequest {
            user: r.user,
            client: r.client,
            session: r.session,
            whitelist: r.whitelist,
            disconnect: r.disconnect.map(|d| api::DisconnectSpec {
                code: d.code,
                reason: d.reason,
            }),
        }
    }
}

impl From<HistoryRequest> for api::HistoryRequest {
    fn from(r: HistoryRequest) -> Self {
        api::HistoryRequest {
            channel: r.channel,
            limit: r.limit,
            since: position(r.since),
            reverse: r.reverse,
        }
    }
}

impl From<RefreshRequest> for api::RefreshRequest {
    fn from(r: RefreshRequest) -> Self {
        api::RefreshRequest {
            user: r.user,
            client: r.client,
            session: r.session,
            expired: r.expired,
            expire_at: r.expire_at,
            info: raw_bytes(r.info),
        }
    }
}

impl From<RpcRequest> for api::RpcRequest {
    fn from(r: RpcRequest) -> Self {
        api::RpcRequest {
            method: r.method,
            params: raw_bytes(r.params),
        }
    }
}
