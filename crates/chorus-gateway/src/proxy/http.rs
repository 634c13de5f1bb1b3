//! HTTP proxies: every event is a `POST` of a JSON body ([`super::json`]) to the proxy's
//! `endpoint`, on a pooled hyper 1 client (keep-alive, up to 255 idle connections per host as
//! Centrifugo). Only status 200 is a success; any other status is a failure
//! ([`ProxyError::Unavailable`]) unless `http.status_to_code_transforms` turns it into an
//! `error` or `disconnect` answer. Headers, later winning: `http.static_headers`, allowed
//! emulated headers, allowed upgrade-request headers (`http_headers`), then
//! `Content-Type: application/json`. The body read stops at `max_response_size`.
//! `https://` endpoints go through rustls (hyper-rustls): the system's roots, or with
//! `http.tls.enabled` a private CA, a client certificate (mutual TLS) and `server_name`.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chorus_core::proxy::{
    Caller, ConnectRequest, ConnectResult, HookError, HookReply, Proxy, ProxyError, PublishRequest,
    PublishResult, RefreshRequest, RefreshResult, RpcRequest, RpcResult, SubRefreshRequest,
    SubRefreshResult, SubscribeRequest, SubscribeResult,
};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::json;
use crate::config::proxy::{LoadedTls, ProxyConfig, StatusTransform};

/// Idle keep-alive connections kept per backend host (Centrifugo's figure).
const IDLE_PER_HOST: usize = 255;
/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What a `POST` brought back.
#[derive(Debug)]
enum Answer {
    /// A 200 body.
    Body(Bytes),
    /// A status turned into an `error` answer.
    Error(HookError),
    /// A status turned into a `disconnect` answer.
    Disconnect(chorus_core::disconnect::Disconnect),
}

impl Answer {
    fn decode<T>(
        self,
        decode: fn(&[u8]) -> Result<HookReply<T>, ProxyError>,
    ) -> Result<HookReply<T>, ProxyError> {
        match self {
            Answer::Body(b) => decode(&b),
            Answer::Error(e) => Ok(HookReply::Error(e)),
            Answer::Disconnect(d) => Ok(HookReply::Disconnect(d)),
        }
    }
}

/// One HTTP proxy.
pub struct HttpProxy {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    cfg: ProxyConfig,
    static_headers: HeaderMap,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy").field("uri", &self.uri).finish()
    }
}

impl HttpProxy {
    /// A client for `url` (an `http://` or `https://` URL) with `cfg`'s headers, bounds and
    /// TLS settings (`tls`: `http.tls` loaded, when enabled; else the system's roots).
    pub fn new(cfg: &ProxyConfig, url: &str, tls: Option<LoadedTls>) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("endpoint {url:?}: {e}"))?;
        let mut static_headers = HeaderMap::new();
        for (k, v) in &cfg.http.static_headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("http.static_headers: {k:?} is not a header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("http.static_headers: the value of {k:?} is not valid"))?;
            static_headers.insert(name, value);
        }
        let connector = super::connector(cfg, tls, false);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Ok(HttpProxy {
            client,
            uri,
            cfg: cfg.clone(),
            static_headers,
        })
    }

    /// The request headers for `caller`.
    fn headers(&self, caller: &Caller) -> HeaderMap {
        let mut headers = self.static_headers.clone();
        for (k, v) in super::forwarded(&self.cfg, caller) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(name, value);
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers
    }

    async fn post(&self, caller: &Caller, body: Vec<u8>) -> Result<Answer, ProxyError> {
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers(caller);
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| ProxyError::Unavailable(error_chain(&e)))?;
        let status = resp.status();
        if status != StatusCode::OK {
            return match self.transform(status) {
                Some(answer) => Ok(answer),
                None => Err(ProxyError::Unavailable(format!(
                    "status {}",
                    status.as_u16()
                ))),
            };
        }
        let limited = Limited::new(resp.into_body(), self.cfg.max_response_size);
        let body = limited.collect().await.map_err(|e| {
            ProxyError::BadResponse(format!(
                "reading the body (max_response_size {}): {e}",
                self.cfg.max_response_size
            ))
        })?;
        Ok(Answer::Body(body.to_bytes()))
    }

    /// `http.status_to_code_transforms` for a non-200 status.
    fn transform(&self, status: StatusCode) -> Option<Answer> {
        let t: &StatusTransform = self
            .cfg
            .http
            .status_to_code_transforms
            .iter()
            .find(|t| t.status_code == status.as_u16())?;
        if t.to_disconnect.code > 0 {
            let d = json::disconnect(t.to_disconnect.code, t.to_disconnect.reason.clone()).ok()?;
            return Some(Answer::Disconnect(d));
        }
        Some(Answer::Error(HookError {
            code: t.to_error.code,
            message: t.to_error.message.clone(),
            temporary: t.to_error.temporary,
        }))
    }
}

/// An error and its sources in one line ("connection refused" is a source of hyper's error).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[async_trait]
impl Proxy for HttpProxy {
    async fn connect(&self, req: &ConnectRequest) -> Result<HookReply<ConnectResult>, ProxyError> {
        let body = json::connect_body(&self.cfg, req)?;
        self.post(&req.caller, body)
            .await?
            .decode(json::connect_reply)
    }

    async fn refresh(&self, req: &RefreshRequest) -> Result<HookReply<RefreshResult>, ProxyError> {
        let body = json::refresh_body(&self.cfg, req);
        self.post(&req.caller, body)
            .await?
            .decode(json::refresh_reply)
    }

    async fn subscribe(
        &self,
        req: &SubscribeRequest,
    ) -> Result<HookReply<SubscribeResult>, ProxyError> {
        let body = json::subscribe_body(&self.cfg, req)?;
        self.post(&req.caller, body)
            .await?
            .decode(json::subscribe_reply)
    }

    async fn publish(&self, req: &PublishRequest) -> Result<HookReply<PublishResult>, ProxyError> {
        let body = json::publish_body(&self.cfg, req)?;
        self.post(&req.caller, body)
            .await?
            .decode(json::publish_reply)
    }

    async fn sub_refresh(
        &self,
        req: &SubRefreshRequest,
    ) -> Result<HookReply<SubRefreshResult>, ProxyError> {
        let body = json::sub_refresh_body(&self.cfg, req);
        self.post(&req.caller, body)
            .await?
            .decode(json::sub_refresh_reply)
    }

    async fn rpc(&self, req: &RpcRequest) -> Result<HookReply<RpcResult>, ProxyError> {
        let body = json::rpc_body(&self.cfg, req)?;
        self.post(&req.caller, body).await?.decode(json::rpc_reply)
    }
}
