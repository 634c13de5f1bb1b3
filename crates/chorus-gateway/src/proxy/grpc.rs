//! gRPC proxies: one unary call of `centrifugal.centrifugo.proxy.CentrifugoProxy` per event
//! (`proto/proxy.proto`) on a lazily connected tonic channel, with the proxy's `timeout` as
//! the call's deadline (`grpc-timeout`). Metadata, later winning: `grpc.static_metadata`,
//! allowed emulated headers, allowed upgrade-request headers (`http_headers`, lower-case keys),
//! then `grpc.credentials_key: credentials_value`. Any gRPC status but OK is a failure
//! (status transforms are HTTP-only). Payloads travel as raw bytes, or in the `b64*` fields
//! with `binary_encoding`. `grpc.tls.enabled`: TLS through the same rustls connector as
//! HTTP hooks (ALPN `h2`); `grpc.compression`: gzip requests, gzip responses accepted.

use async_trait::async_trait;
use bytes::Bytes;
use chorus_core::auth::{ServerSubOptions, SubscribeOverride};
use chorus_core::proxy::{
    Caller, ConnectRequest, ConnectResult, HookError, HookReply, Proxy, ProxyError, PublishRequest,
    PublishResult, RefreshRequest, RefreshResult, RpcRequest, RpcResult, SubRefreshRequest,
    SubRefreshResult, SubscribeRequest, SubscribeResult,
};
use chorus_proto::proxy as pb;
use chorus_proto::proxy::centrifugo_proxy_client::CentrifugoProxyClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::{b64, encoding, meta, pick};
use crate::config::proxy::{LoadedTls, ProxyConfig};

/// One gRPC proxy.
pub struct GrpcProxy {
    client: CentrifugoProxyClient<Channel>,
    cfg: ProxyConfig,
    /// `grpc.static_metadata`.
    statics: Vec<Pair>,
    /// `grpc.credentials_key: credentials_value`.
    credentials: Option<Pair>,
}

impl std::fmt::Debug for GrpcProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcProxy")
            .field("endpoint", &self.cfg.endpoint)
            .finish()
    }
}

type Pair = (MetadataKey<Ascii>, MetadataValue<Ascii>);

fn metadata_pair(k: &str, v: &str) -> Option<Pair> {
    let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()).ok()?;
    let value = MetadataValue::try_from(v).ok()?;
    Some((key, value))
}

/// The common request fields and the payload pair of one request.
struct Common {
    client: String,
    transport: String,
    protocol: String,
    encoding: String,
}

impl GrpcProxy {
    /// A lazily connecting client of `target` (`host:port`); `tls`: `grpc.tls` loaded, when
    /// enabled.
    pub fn new(cfg: &ProxyConfig, target: &str, tls: Option<LoadedTls>) -> Result<Self, String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{target}"))
            .map_err(|e| format!("endpoint {target:?}: {e}"))?
            .connect_timeout(cfg.timeout.get())
            .tcp_nodelay(true);
        let channel = match tls {
            None => endpoint.connect_lazy(),
            Some(tls) => {
                endpoint.connect_with_connector_lazy(super::connector(cfg, Some(tls), true))
            }
        };
        let mut client =
            CentrifugoProxyClient::new(channel).max_decoding_message_size(cfg.max_response_size);
        if cfg.grpc.compression {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        let mut statics = Vec::new();
        for (k, v) in &cfg.grpc.static_metadata {
            let pair = metadata_pair(k, v)
                .ok_or_else(|| format!("grpc.static_metadata: {k:?} is not valid"))?;
            statics.push(pair);
        }
        let g = &cfg.grpc;
        let credentials = match g.credentials_key.is_empty() {
            true => None,
            false => Some(
                metadata_pair(&g.credentials_key, &g.credentials_value)
                    .ok_or("grpc.credentials_key / credentials_value are not valid metadata")?,
            ),
        };
        Ok(GrpcProxy {
            client,
            cfg: cfg.clone(),
            statics,
            credentials,
        })
    }

    fn common(&self, caller: &Caller) -> Common {
        Common {
            client: caller.client.to_string(),
            transport: caller.transport.to_string(),
            protocol: caller.protocol_name().to_string(),
            encoding: encoding(&self.cfg).to_string(),
        }
    }

    /// `(data, b64data)` of a request payload in this proxy's encoding.
    fn payload(&self, data: &Bytes) -> (Bytes, String) {
        if self.cfg.binary_encoding && !data.is_empty() {
            (Bytes::new(), b64(data))
        } else {
            (data.clone(), String::new())
        }
    }

    fn meta(&self, caller: &Caller) -> Bytes {
        meta(&self.cfg, caller).cloned().unwrap_or_default()
    }

    /// Wraps `msg` with the metadata for `caller` and the deadline.
    fn request<T>(&self, caller: &Caller, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.cfg.timeout.get());
        let md = req.metadata_mut();
        for (k, v) in &self.statics {
            md.insert(k.clone(), v.clone());
        }
        for (k, v) in super::forwarded(&self.cfg, caller) {
            if let Some((k, v)) = metadata_pair(k, v) {
                md.insert(k, v);
            }
        }
        if let Some((k, v)) = &self.credentials {
            md.insert(k.clone(), v.clone());
        }
        req
    }
}

fn status(s: tonic::Status) -> ProxyError {
    ProxyError::Unavailable(format!("grpc status {:?}: {}", s.code(), s.message()))
}

/// The response envelope: disconnect, else error, else result.
fn envelope<R, T>(
    disconnect: Option<pb::Disconnect>,
    error: Option<pb::Error>,
    result: Option<R>,
    convert: impl FnOnce(R) -> Result<T, ProxyError>,
) -> Result<HookReply<T>, ProxyError> {
    if let Some(d) = disconnect {
        return Ok(HookReply::Disconnect(super::json::disconnect(
            d.code, d.reason,
        )?));
    }
    if let Some(e) = error {
        return Ok(HookReply::Error(HookError {
            code: e.code,
            message: e.message,
            temporary: e.temporary,
        }));
    }
    Ok(HookReply::Result(result.map(convert).transpose()?))
}

fn raw(b: Bytes) -> Option<Bytes> {
    (!b.is_empty()).then_some(b)
}

fn override_options(o: Option<pb::SubscribeOptionOverride>) -> SubscribeOverride {
    let Some(o) = o else {
        return SubscribeOverride::default();
    };
    let v = |b: Option<pb::BoolValue>| b.map(|b| b.value);
    SubscribeOverride {
        presence: v(o.presence),
        join_leave: v(o.join_leave),
        force_push_join_leave: v(o.force_push_join_leave),
        force_positioning: v(o.force_positioning),
        force_recovery: v(o.force_recovery),
    }
}

#[async_trait]
impl Proxy for GrpcProxy {
    async fn connect(&self, req: &ConnectRequest) -> Result<HookReply<ConnectResult>, ProxyError> {
        let c = self.common(&req.caller);
        let (data, b64data) = self.payload(&req.data);
        let msg = pb::ConnectRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            encoding: c.encoding,
            data,
            b64data,
            name: req.name.clone(),
            version: req.version.clone(),
            channels: req.channels.clone(),
        };
        let r = self
            .client
            .clone()
            .connect(self.request(&req.caller, msg))
            .await
            .map_err(status)?
            .into_inner();
        envelope(r.disconnect, r.error, r.result, |r| {
            let mut subs = std::collections::HashMap::with_capacity(r.subs.len());
            for (channel, o) in r.subs {
                let options = ServerSubOptions {
                    info: pick(raw(o.info), &o.b64info, false)?.unwrap_or_default(),
                    data: pick(raw(o.data), &o.b64data, false)?.unwrap_or_default(),
                    override_options: override_options(o.r#override),
                };
                subs.insert(channel, options);
            }
            Ok(ConnectResult {
                user: r.user,
                expire_at: r.expire_at,
                info: pick(raw(r.info), &r.b64info, false)?.unwrap_or_default(),
                data: pick(raw(r.data), &r.b64data, false)?.unwrap_or_default(),
                channels: r.channels,
                subs,
                meta: raw(r.meta),
            })
        })
    }

    async fn refresh(&self, req: &RefreshRequest) -> Result<HookReply<RefreshResult>, ProxyError> {
        let c = self.common(&req.caller);
        let msg = pb::RefreshRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            encoding: c.encoding,
            user: req.caller.user.to_string(),
            meta: self.meta(&req.caller),
            labels: Default::default(),
        };
        let r = self
            .client
            .clone()
            .refresh(self.request(&req.caller, msg))
            .await
            .map_err(status)?
            .into_inner();
        envelope(r.disconnect, r.error, r.result, |r| {
            Ok(RefreshResult {
                expired: r.expired,
                expire_at: r.expire_at,
                info: pick(raw(r.info), &r.b64info, false)?,
                meta: raw(r.meta),
            })
        })
    }

    async fn subscribe(
        &self,
        req: &SubscribeRequest,
    ) -> Result<HookReply<SubscribeResult>, ProxyError> {
        let c = self.common(&req.caller);
        let (data, b64data) = self.payload(&req.data);
        let msg = pb::SubscribeRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            encoding: c.encoding,
            user: req.caller.user.to_string(),
            channel: req.channel.clone(),
            token: req.token.clone(),
            meta: self.meta(&req.caller),
            data,
            b64data,
            labels: Default::default(),
        };
        let r = self
            .client
            .clone()
            .subscribe(self.request(&req.caller, msg))
            .await
            .map_err(status)?
            .into_inner();
        envelope(r.disconnect, r.error, r.result, |r| {
            Ok(SubscribeResult {
                expire_at: r.expire_at,
                info: pick(raw(r.info), &r.b64info, false)?.unwrap_or_default(),
                data: pick(raw(r.data), &r.b64data, false)?.unwrap_or_default(),
                override_options: override_options(r.r#override),
            })
        })
    }

    async fn publish(&self, req: &PublishRequest) -> Result<HookReply<PublishResult>, ProxyError> {
        let c = self.common(&req.caller);
        let (data, b64data) = self.payload(&req.data);
        let msg = pb::PublishRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            encoding: c.encoding,
            user: req.caller.user.to_string(),
            channel: req.channel.clone(),
            data,
            b64data,
            meta: self.meta(&req.caller),
            labels: Default::default(),
        };
        let r = self
            .client
            .clone()
            .publish(self.request(&req.caller, msg))
            .await
            .map_err(status)?
            .into_inner();
        envelope(r.disconnect, r.error, r.result, |r| {
            Ok(PublishResult {
                data: pick(raw(r.data), &r.b64data, true)?,
                skip_history: r.skip_history,
                tags: r.tags,
                idempotency_key: r.idempotency_key,
                delta: r.delta,
            })
        })
    }

    async fn sub_refresh(
        &self,
        req: &SubRefreshRequest,
    ) -> Result<HookReply<SubRefreshResult>, ProxyError> {
        let c = self.common(&req.caller);
        let msg = pb::SubRefreshRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            encoding: c.encoding,
            user: req.caller.user.to_string(),
            channel: req.channel.clone(),
            meta: self.meta(&req.caller),
            labels: Default::default(),
        };
        let r = self
            .client
            .clone()
            .sub_refresh(self.request(&req.caller, msg))
            .await
            .map_err(status)?
            .into_inner();
        envelope(r.disconnect, r.error, r.result, |r| {
            Ok(SubRefreshResult {
                expired: r.expired,
                expire_at: r.expire_at,
                info: pick(raw(r.info), &r.b64info, false)?,
            })
        })
    }

    async fn rpc(&self, req: &RpcRequest) -> Result<HookReply<RpcResult>, ProxyError> {
        let c = self.common(&req.caller);
        let (data, b64data) = self.payload(&req.data);
        let msg = pb::RpcRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            encoding: c.encoding,
            user: req.caller.user.to_string(),
            method: req.method.clone(),
            data,
            b64data,
            meta: self.meta(&req.caller),
            labels: Default::default(),
        };
        let r = self
            .client
            .clone()
            .rpc(self.request(&req.caller, msg))
            .await
            .map_err(status)?
            .into_inner();
        envelope(r.disconnect, r.error, r.result, |r| {
            Ok(RpcResult {
                data: pick(raw(r.data), &r.b64data, false)?.unwrap_or_default(),
            })
        })
    }
}
