//! The JSON bodies of HTTP proxies, Centrifugo's shapes: requests carry the common fields
//! (`client`, `transport`, `protocol`, `encoding`), `user` (always, even `""`, except in
//! connect) and the event's fields; `data`/`info`/`meta` are raw JSON embedded as they are,
//! or — with `binary_encoding` — standard base64 in `b64data`/`b64info`. Empty fields are
//! omitted. Responses are `{"result":…}`, `{"error":{code,message,temporary}}` or
//! `{"disconnect":{code,reason}}`, checked in the order disconnect, error, result; unknown
//! keys are ignored.

use std::collections::HashMap;

use bytes::Bytes;
use chorus_core::auth::{ServerSubOptions, SubscribeOverride};
use chorus_core::disconnect::Disconnect;
use chorus_core::proxy::{
    Caller, ConnectRequest, ConnectResult, HookError, HookReply, ProxyError, PublishRequest,
    PublishResult, RefreshRequest, RefreshResult, RpcRequest, RpcResult, SubRefreshRequest,
    SubRefreshResult, SubscribeRequest, SubscribeResult,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{b64, encoding, meta, pick};
use crate::config::proxy::ProxyConfig;

/// A payload as a raw JSON value or base64 text.
#[derive(Default)]
struct Payload<'a> {
    raw: Option<&'a RawValue>,
    b64: Option<String>,
}

/// The client's payload in this proxy's encoding; not JSON without `binary_encoding` is
/// [`ProxyError::BadRequest`] (the body would not be JSON).
fn payload<'a>(bytes: &'a [u8], cfg: &ProxyConfig) -> Result<Payload<'a>, ProxyError> {
    if bytes.is_empty() {
        return Ok(Payload::default());
    }
    if cfg.binary_encoding {
        return Ok(Payload {
            raw: None,
            b64: Some(b64(bytes)),
        });
    }
    let raw = serde_json::from_slice::<&RawValue>(bytes).map_err(|_| {
        ProxyError::BadRequest("payload is not JSON (set binary_encoding on the proxy)".into())
    })?;
    Ok(Payload {
        raw: Some(raw),
        b64: None,
    })
}

/// Connection meta as raw JSON; meta that is not JSON (from a gRPC backend) is left out.
fn raw_meta<'a>(cfg: &ProxyConfig, caller: &'a Caller) -> Option<&'a RawValue> {
    meta(cfg, caller).and_then(|m| serde_json::from_slice::<&RawValue>(m).ok())
}

#[derive(Serialize)]
struct ConnectBody<'a> {
    client: &'a str,
    transport: &'a str,
    protocol: &'a str,
    encoding: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64data: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    channels: &'a [String],
}

/// The body of every non-connect request: the common fields, `user`, `meta` and the event's
/// optional fields (omitted when empty).
#[derive(Serialize)]
struct EventBody<'a> {
    client: &'a str,
    transport: &'a str,
    protocol: &'a str,
    encoding: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    channel: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    method: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64data: Option<String>,
}

impl<'a> EventBody<'a> {
    fn new(cfg: &ProxyConfig, caller: &'a Caller) -> Self {
        EventBody {
            client: &caller.client,
            transport: caller.transport,
            protocol: caller.protocol_name(),
            encoding: encoding(cfg),
            user: &caller.user,
            channel: "",
            method: "",
            token: "",
            meta: raw_meta(cfg, caller),
            data: None,
            b64data: None,
        }
    }

    fn with_data(mut self, p: Payload<'a>) -> Self {
        self.data = p.raw;
        self.b64data = p.b64;
        self
    }

    fn encode(&self) -> Vec<u8> {
        // Strings, raw JSON values and options of them always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

pub fn connect_body(cfg: &ProxyConfig, req: &ConnectRequest) -> Result<Vec<u8>, ProxyError> {
    let p = payload(&req.data, cfg)?;
    let body = ConnectBody {
        client: &req.caller.client,
        transport: req.caller.transport,
        protocol: req.caller.protocol_name(),
        encoding: encoding(cfg),
        data: p.raw,
        b64data: p.b64,
        name: &req.name,
        version: &req.version,
        channels: &req.channels,
    };
    Ok(serde_json::to_vec(&body).unwrap_or_default())
}

pub fn refresh_body(cfg: &ProxyConfig, req: &RefreshRequest) -> Vec<u8> {
    EventBody::new(cfg, &req.caller).encode()
}

pub fn subscribe_body(cfg: &ProxyConfig, req: &SubscribeRequest) -> Result<Vec<u8>, ProxyError> {
    let mut body = EventBody::new(cfg, &req.caller).with_data(payload(&req.data, cfg)?);
    body.channel = &req.channel;
    body.token = &req.token;
    Ok(body.encode())
}

pub fn publish_body(cfg: &ProxyConfig, req: &PublishRequest) -> Result<Vec<u8>, ProxyError> {
    let mut body = EventBody::new(cfg, &req.caller).with_data(payload(&req.data, cfg)?);
    body.channel = &req.channel;
    Ok(body.encode())
}

pub fn rpc_body(cfg: &ProxyConfig, req: &RpcRequest) -> Result<Vec<u8>, ProxyError> {
    let mut body = EventBody::new(cfg, &req.caller).with_data(payload(&req.data, cfg)?);
    body.method = &req.method;
    Ok(body.encode())
}

pub fn sub_refresh_body(cfg: &ProxyConfig, req: &SubRefreshRequest) -> Vec<u8> {
    let mut body = EventBody::new(cfg, &req.caller);
    body.channel = &req.channel;
    body.encode()
}

// ---- responses -------------------------------------------------------------------------

type Raw = Option<Box<RawValue>>;

fn raw_bytes(raw: Raw) -> Option<Bytes> {
    raw.map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
}

#[derive(Deserialize)]
struct Envelope<T> {
    result: Option<T>,
    error: Option<ErrorBody>,
    disconnect: Option<DisconnectBody>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    code: u32,
    message: String,
    temporary: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DisconnectBody {
    code: u32,
    reason: String,
}

/// A close code from a response: must fit a WebSocket close code.
pub(crate) fn disconnect(code: u32, reason: String) -> Result<Disconnect, ProxyError> {
    let code = u16::try_from(code)
        .map_err(|_| ProxyError::BadResponse(format!("disconnect code {code} out of range")))?;
    Ok(Disconnect::new(code, reason))
}

/// Decodes a response body and maps its result with `convert`.
fn decode<B, T>(
    body: &[u8],
    convert: impl FnOnce(B) -> Result<T, ProxyError>,
) -> Result<HookReply<T>, ProxyError>
where
    B: DeserializeOwned,
{
    let env: Envelope<B> = serde_json::from_slice(body)
        .map_err(|e| ProxyError::BadResponse(format!("not a proxy response: {e}")))?;
    if let Some(d) = env.disconnect {
        return Ok(HookReply::Disconnect(disconnect(d.code, d.reason)?));
    }
    if let Some(e) = env.error {
        return Ok(HookReply::Error(HookError {
            code: e.code,
            message: e.message,
            temporary: e.temporary,
        }));
    }
    Ok(HookReply::Result(env.result.map(convert).transpose()?))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BoolValue {
    value: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OverrideBody {
    presence: Option<BoolValue>,
    join_leave: Option<BoolValue>,
    force_recovery: Option<BoolValue>,
    force_positioning: Option<BoolValue>,
    force_push_join_leave: Option<BoolValue>,
}

impl OverrideBody {
    fn into_core(self) -> SubscribeOverride {
        let v = |b: Option<BoolValue>| b.map(|b| b.value);
        SubscribeOverride {
            presence: v(self.presence),
            join_leave: v(self.join_leave),
            force_push_join_leave: v(self.force_push_join_leave),
            force_positioning: v(self.force_positioning),
            force_recovery: v(self.force_recovery),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SubOptionsBody {
    info: Raw,
    b64info: String,
    data: Raw,
    b64data: String,
    #[serde(rename = "override")]
    override_options: OverrideBody,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConnectResultBody {
    user: String,
    expire_at: i64,
    info: Raw,
    b64info: String,
    data: Raw,
    b64data: String,
    channels: Vec<String>,
    subs: HashMap<String, SubOptionsBody>,
    meta: Raw,
}

pub fn connect_reply(body: &[u8]) -> Result<HookReply<ConnectResult>, ProxyError> {
    decode(body, |r: ConnectResultBody| {
        let mut subs = HashMap::with_capacity(r.subs.len());
        for (channel, o) in r.subs {
            let options = ServerSubOptions {
                info: pick(raw_bytes(o.info), &o.b64info, false)?.unwrap_or_default(),
                data: pick(raw_bytes(o.data), &o.b64data, false)?.unwrap_or_default(),
                override_options: o.override_options.into_core(),
            };
            subs.insert(channel, options);
        }
        Ok(ConnectResult {
            user: r.user,
            expire_at: r.expire_at,
            info: pick(raw_bytes(r.info), &r.b64info, false)?.unwrap_or_default(),
            data: pick(raw_bytes(r.data), &r.b64data, false)?.unwrap_or_default(),
            channels: r.channels,
            subs,
            meta: raw_bytes(r.meta),
        })
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefreshResultBody {
    expired: bool,
    expire_at: i64,
    info: Raw,
    b64info: String,
    meta: Raw,
}

pub fn refresh_reply(body: &[u8]) -> Result<HookReply<RefreshResult>, ProxyError> {
    decode(body, |r: RefreshResultBody| {
        Ok(RefreshResult {
            expired: r.expired,
            expire_at: r.expire_at,
            info: pick(raw_bytes(r.info), &r.b64info, false)?,
            meta: raw_bytes(r.meta),
        })
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SubscribeResultBody {
    expire_at: i64,
    info: Raw,
    b64info: String,
    data: Raw,
    b64data: String,
    #[serde(rename = "override")]
    override_options: OverrideBody,
}

pub fn subscribe_reply(body: &[u8]) -> Result<HookReply<SubscribeResult>, ProxyError> {
    decode(body, |r: SubscribeResultBody| {
        Ok(SubscribeResult {
            expire_at: r.expire_at,
            info: pick(raw_bytes(r.info), &r.b64info, false)?.unwrap_or_default(),
            data: pick(raw_bytes(r.data), &r.b64data, false)?.unwrap_or_default(),
            override_options: r.override_options.into_core(),
        })
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PublishResultBody {
    data: Raw,
    b64data: String,
    skip_history: bool,
    tags: HashMap<String, String>,
    idempotency_key: String,
    delta: bool,
}

pub fn publish_reply(body: &[u8]) -> Result<HookReply<PublishResult>, ProxyError> {
    decode(body, |r: PublishResultBody| {
        Ok(PublishResult {
            data: pick(raw_bytes(r.data), &r.b64data, true)?,
            skip_history: r.skip_history,
            tags: r.tags,
            idempotency_key: r.idempotency_key,
            delta: r.delta,
        })
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RpcResultBody {
    data: Raw,
    b64data: String,
}

pub fn rpc_reply(body: &[u8]) -> Result<HookReply<RpcResult>, ProxyError> {
    decode(body, |r: RpcResultBody| {
        Ok(RpcResult {
            data: pick(raw_bytes(r.data), &r.b64data, false)?.unwrap_or_default(),
        })
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SubRefreshResultBody {
    expired: bool,
    expire_at: i64,
    info: Raw,
    b64info: String,
}

pub fn sub_refresh_reply(body: &[u8]) -> Result<HookReply<SubRefreshResult>, ProxyError> {
    decode(body, |r: SubRefreshResultBody| {
        Ok(SubRefreshResult {
            expired: r.expired,
            expire_at: r.expire_at,
            info: pick(raw_bytes(r.info), &r.b64info, false)?,
        })
    })
}
