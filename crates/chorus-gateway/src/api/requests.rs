//! Request bodies of the server API methods (serde), and parsing of a method's body into a
//! [`Command`].
//!
//! Field names are the proto names of Centrifugo's `api.proto`. Unknown fields are ignored (so
//! `delta`, `version`, PRO fields and newer additions sent by `cent` are accepted); a field with
//! the wrong JSON type fails the whole body (HTTP 400), while `null` reads as "not set", as in
//! Centrifugo's Go decoder. `data`/`info`/`params` keep the exact JSON text ([`RawValue`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::Method;

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

/// One decoded API command (every method except `batch`).
#[derive(Debug)]
pub enum Command {
    Publish(PublishRequest),
    Broadcast(BroadcastRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    Disconnect(DisconnectRequest),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    HistoryRemove(ChannelRequest),
    Channels(ChannelsRequest),
    Info(InfoRequest),
    Refresh(RefreshRequest),
    Rpc(RpcRequest),
}

impl Command {
    pub fn method(&self) -> Method {
        match self {
            Command::Publish(_) => Method::Publish,
            Command::Broadcast(_) => Method::Broadcast,
            Command::Subscribe(_) => Method::Subscribe,
            Command::Unsubscribe(_) => Method::Unsubscribe,
            Command::Disconnect(_) => Method::Disconnect,
            Command::Presence(_) => Method::Presence,
            Command::PresenceStats(_) => Method::PresenceStats,
            Command::History(_) => Method::History,
            Command::HistoryRemove(_) => Method::HistoryRemove,
            Command::Channels(_) => Method::Channels,
            Command::Info(_) => Method::Info,
            Command::Refresh(_) => Method::Refresh,
            Command::Rpc(_) => Method::Rpc,
        }
    }
}

/// A parsed request body.
#[derive(Debug)]
pub enum Request {
    One(Command),
    /// `None` marks a batch entry naming no known method (answered with error 104).
    Batch {
        commands: Vec<Option<Command>>,
        parallel: bool,
    },
}

/// An empty (or all-whitespace) body reads as `{}`, so `POST /api/info` needs no body.
fn or_empty_object(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    }
}

/// Decodes the body of `method`. Errors are syntax errors or wrong field types (HTTP 400).
pub fn parse(method: Method, body: &[u8]) -> Result<Request, serde_json::Error> {
    let body = or_empty_object(body);
    if method == Method::Batch {
        let batch: BatchRequest = serde_json::from_slice(body)?;
        let mut commands = Vec::with_capacity(batch.commands.len());
        for entry in &batch.commands {
            commands.push(parse_batch_entry(entry)?);
        }
        return Ok(Request::Batch {
            commands,
            parallel: batch.parallel,
        });
    }
    parse_command(method, body).map(Request::One)
}

/// Like Centrifugo, the first key (in method-table order) that names a known method and is not
/// `null` is the command; nested `batch` is not a command.
fn parse_batch_entry(
    entry: &BTreeMap<String, Box<RawValue>>,
) -> Result<Option<Command>, serde_json::Error> {
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
pub fn parse_command(method: Method, body: &[u8]) -> Result<Command, serde_json::Error> {
    let body = or_empty_object(body);
    Ok(match method {
        Method::Publish => Command::Publish(serde_json::from_slice(body)?),
        Method::Broadcast => Command::Broadcast(serde_json::from_slice(body)?),
        Method::Subscribe => Command::Subscribe(serde_json::from_slice(body)?),
        Method::Unsubscribe => Command::Unsubscribe(serde_json::from_slice(body)?),
        Method::Disconnect => Command::Disconnect(serde_json::from_slice(body)?),
        Method::Presence => Command::Presence(serde_json::from_slice(body)?),
        Method::PresenceStats => Command::PresenceStats(serde_json::from_slice(body)?),
        Method::History => Command::History(serde_json::from_slice(body)?),
        Method::HistoryRemove => Command::HistoryRemove(serde_json::from_slice(body)?),
        Method::Channels => Command::Channels(serde_json::from_slice(body)?),
        Method::Info | Method::Batch => Command::Info(serde_json::from_slice(body)?),
        Method::Refresh => Command::Refresh(serde_json::from_slice(body)?),
        Method::Rpc => Command::Rpc(serde_json::from_slice(body)?),
    })
}
