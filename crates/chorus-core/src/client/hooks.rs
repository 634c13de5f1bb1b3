//! The connection's side of the backend hooks ([`crate::proxy`]): what a request says about
//! the connection, the mapping of hook answers and failures to the protocol, and the hooks
//! that are not part of one command's flow — `rpc`, and the server-side `refresh` and
//! `sub_refresh` run from the expiry timer.
//!
//! Failures (see docs/backend.md): connect, subscribe, publish and rpc answer error 100
//! "internal server error" (temporary: SDKs retry with backoff); refresh and sub_refresh
//! prolong the expiry by [`RETRY_AFTER_FAILURE`] and call again then. A hook's `error` is the
//! command's error reply; its `disconnect` closes the connection with that code.

use std::sync::Arc;

use bytes::Bytes;
use chorus_protocol::codes;
use chorus_protocol::{Reply, RpcRequest as ClientRpc, RpcResult as ClientRpcResult};

use super::{Client, Fail};
use crate::auth::ConnectionClaims;
use crate::clock::unix_now;
use crate::options::{ChannelOptions, RpcRoute};
use crate::payload::{self, Source};
use crate::proxy::{
    Caller, ConnectRequest, ConnectResult, Headers, HookReply, ProxyError, ProxyEvent, ProxyHandle,
    ProxyName, PublishRequest, PublishResult, RefreshRequest, RpcRequest, SubRefreshRequest,
    SubscribeRequest, SubscribeResult, TRANSPORT_WEBSOCKET,
};

/// Seconds a connection or subscription is prolonged when its refresh hook failed (Centrifugo:
/// 60 s); the hook is called again then. Also the expiry in force while a refresh call runs.
pub(crate) const RETRY_AFTER_FAILURE: i64 = 60;

/// Longest connection lifetime a connect or refresh hook may grant (Centrifugo caps
/// `expire_at` at now + 365 days).
const MAX_EXPIRE_SECS: i64 = 365 * 24 * 3600;

/// What a connection keeps for its hooks; allocated only when there is something to keep.
#[derive(Debug, Default)]
pub(crate) struct HookState {
    /// Upgrade-request headers some proxy forwards.
    headers: Option<Arc<Headers>>,
    /// The connect frame's `headers` (emulated headers).
    emulated: Option<Arc<Headers>>,
    /// Connection meta from the connect (or refresh) hook.
    meta: Option<Bytes>,
}

/// A failed hook call as the client sees it: 107 when the request could not be encoded,
/// else 100.
pub(super) fn failure(e: &ProxyError) -> Fail {
    match e {
        ProxyError::BadRequest(_) => codes::ERROR_BAD_REQUEST.into(),
        _ => codes::ERROR_INTERNAL.into(),
    }
}

/// A hook's `error` / `disconnect` as the command's outcome; `Ok` carries the result.
pub(super) fn outcome<T>(reply: HookReply<T>) -> Result<Option<T>, Fail> {
    match reply {
        HookReply::Disconnect(d) => Err(Fail::Disconnect(d)),
        HookReply::Error(e) => Err(Fail::Error(chorus_protocol::Error {
            code: e.code,
            message: e.message,
            temporary: e.temporary,
        })),
        HookReply::Result(r) => Ok(r),
    }
}

fn cap_expiry(expire_at: i64) -> i64 {
    expire_at.min(unix_now().saturating_add(MAX_EXPIRE_SECS))
}

impl Client {
    /// Keeps the upgrade request's headers for the hooks (the transport calls this before the
    /// first command, with the headers named by [`crate::proxy::Proxies::header_names`]).
    pub fn set_forward_headers(&self, headers: Headers) {
        if headers.is_empty() {
            return;
        }
        let mut st = self.lock_state();
        st.hooks.get_or_insert_with(Default::default).headers = Some(Arc::new(headers));
    }

    /// The connection as hook requests describe it.
    pub(super) fn caller(&self) -> Caller {
        let st = self.lock_state();
        let hooks = st.hooks.as_deref();
        Caller {
            client: self.id.clone(),
            transport: TRANSPORT_WEBSOCKET,
            protocol: self.params.protocol,
            user: st.user.clone(),
            meta: hooks.and_then(|h| h.meta.clone()),
            headers: hooks.and_then(|h| h.headers.clone()),
            emulated_headers: hooks.and_then(|h| h.emulated.clone()),
        }
    }

    /// Keeps the connect frame's `headers` (emulated headers) for later hook calls, when the
    /// node has hooks at all.
    pub(super) fn keep_connect_headers(&self, req: &chorus_protocol::ConnectRequest) {
        if req.headers.is_empty() || self.node.proxies().is_empty() {
            return;
        }
        let mut headers: Headers = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        headers.sort();
        self.lock_state()
            .hooks
            .get_or_insert_with(Default::default)
            .emulated = Some(Arc::new(headers));
    }

    pub(super) fn set_meta(&self, meta: Bytes) {
        self.lock_state()
            .hooks
            .get_or_insert_with(Default::default)
            .meta = Some(meta);
    }

    /// Runs a hook call; a connection that closes meanwhile abandons it (the call is
    /// cancelled, its result discarded).
    pub(super) async fn hook<T>(
        &self,
        proxy: &ProxyHandle,
        event: ProxyEvent,
        call: impl std::future::Future<Output = Result<T, ProxyError>>,
    ) -> Result<T, ProxyError> {
        tokio::select! {
            biased;
            r = call => r,
            () = self.closed() => {
                crate::metrics::proxy_error(proxy.label(), event, ProxyError::Cancelled.kind());
                Err(ProxyError::Cancelled)
            }
        }
    }

    /// The proxy `name` of `event`; a name the registry does not know (the config check
    /// refuses such configs) fails like an unreachable proxy.
    pub(super) fn proxy_named(
        &self,
        event: ProxyEvent,
        name: &ProxyName,
    ) -> Result<ProxyHandle, Fail> {
        self.node
            .proxies()
            .get(event, name)
            .cloned()
            .ok_or_else(|| {
                tracing::warn!(event = event.as_str(), proxy = %name, "no such proxy");
                Fail::from(codes::ERROR_INTERNAL)
            })
    }

    /// Backend bytes for this client's own reply: a JSON connection embeds them raw, so they
    /// must be JSON (else the answer is error 100, as for an undecodable response).
    pub(super) fn reply_payload(&self, data: Bytes) -> Result<Bytes, Fail> {
        if self.params.protocol == chorus_protocol::Protocol::Json && !data.is_empty() {
            let depth = self.node.options().client.json_max_depth;
            if payload::check_json(&data, depth).is_err() {
                tracing::debug!(client = %self.id, "proxy returned a payload a JSON client cannot carry");
                return Err(codes::ERROR_INTERNAL.into());
            }
        }
        Ok(data)
    }

    /// `connect` without a token: asks the connect hook. Returns the claims the connection
    /// runs on and the `data` of the connect reply.
    pub(super) async fn connect_via_proxy(
        &self,
        proxy: &ProxyHandle,
        req: &chorus_protocol::ConnectRequest,
    ) -> Result<(ConnectionClaims, Bytes), Fail> {
        let mut channels: Vec<String> = req.subs.keys().cloned().collect();
        channels.sort();
        let request = ConnectRequest {
            caller: self.caller(),
            data: req.data.clone(),
            name: req.name.clone(),
            version: req.version.clone(),
            channels,
        };
        let reply = self
            .hook(proxy, ProxyEvent::Connect, proxy.connect(&request))
            .await
            .map_err(|e| failure(&e))?;
        let Some(result) = outcome(reply)? else {
            // No credentials from the backend: anonymous only where anonymous is allowed.
            if self.node.options().client.insecure {
                return Ok((ConnectionClaims::default(), Bytes::new()));
            }
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        };
        let ConnectResult {
            user,
            expire_at,
            info,
            data,
            channels,
            subs,
            meta,
        } = result;
        if expire_at > 0 && expire_at <= unix_now() {
            return Err(codes::ERROR_EXPIRED.into());
        }
        let data = self.reply_payload(data)?;
        let claims = ConnectionClaims {
            user,
            exp: None,
            // 0 = never expires (`ConnectionClaims::expires_at`).
            expire_at: Some(if expire_at > 0 {
                cap_expiry(expire_at)
            } else {
                0
            }),
            info,
            channels,
            subs,
            meta,
        };
        Ok((claims, data))
    }

    /// A client subscribe without a token in a namespace with `subscribe_proxy_enabled`: the
    /// hook's result (`None`: allowed with the namespace's defaults).
    pub(super) async fn subscribe_via_proxy(
        &self,
        options: &ChannelOptions,
        req: &chorus_protocol::SubscribeRequest,
    ) -> Result<Option<SubscribeResult>, Fail> {
        let proxy = self.proxy_named(ProxyEvent::Subscribe, &options.subscribe_proxy_name)?;
        let request = SubscribeRequest {
            caller: self.caller(),
            channel: req.channel.clone(),
            token: req.token.clone(),
            data: req.data.clone(),
        };
        let reply = self
            .hook(&proxy, ProxyEvent::Subscribe, proxy.subscribe(&request))
            .await
            .map_err(|e| failure(&e))?;
        let Some(mut result) = outcome(reply)? else {
            return Ok(None);
        };
        if result.expire_at > 0 && result.expire_at <= unix_now() {
            return Err(codes::ERROR_EXPIRED.into());
        }
        result.data = self.reply_payload(std::mem::take(&mut result.data))?;
        Ok(Some(result))
    }

    /// A client publish in a namespace with `publish_proxy_enabled` (the hook is the only
    /// permission check): the hook's result (`None`: publish the client's data as is). Data
    /// the hook substitutes must fit the namespace like the client's (JSON unless
    /// `allow_binary_data`), else error 100.
    pub(super) async fn publish_via_proxy(
        &self,
        options: &ChannelOptions,
        channel: &str,
        data: &Bytes,
    ) -> Result<Option<PublishResult>, Fail> {
        let proxy = self.proxy_named(ProxyEvent::Publish, &options.publish_proxy_name)?;
        let request = PublishRequest {
            caller: self.caller(),
            channel: channel.to_string(),
            data: data.clone(),
        };
        let reply = self
            .hook(&proxy, ProxyEvent::Publish, proxy.publish(&request))
            .await
            .map_err(|e| failure(&e))?;
        let Some(result) = outcome(reply)? else {
            return Ok(None);
        };
        if let Some(data) = &result.data {
            let depth = self.node.options().client.json_max_depth;
            let binary = options.allow_binary_data;
            if payload::check_publication(data, binary, depth, Source::ClientPublish).is_err() {
                tracing::debug!(client = %self.id, "publish proxy returned data the namespace refuses");
                return Err(codes::ERROR_INTERNAL.into());
            }
        }
        Ok(Some(result))
    }

    /// The `rpc` command: the built-in ping, or the hook of the method's namespace.
    pub(super) async fn cmd_rpc(&self, id: u32, req: ClientRpc) -> Result<Reply, Fail> {
        let data = match self.node.options().rpc.route(&req.method) {
            RpcRoute::NotAvailable => return Err(codes::ERROR_NOT_AVAILABLE.into()),
            RpcRoute::NotFound => return Err(codes::ERROR_METHOD_NOT_FOUND.into()),
            RpcRoute::Ping => Bytes::new(),
            RpcRoute::Proxy(name) => {
                let proxy = self.proxy_named(ProxyEvent::Rpc, name)?;
                let request = RpcRequest {
                    caller: self.caller(),
                    method: req.method,
                    data: req.data,
                };
                let reply = self
                    .hook(&proxy, ProxyEvent::Rpc, proxy.rpc(&request))
                    .await
                    .map_err(|e| failure(&e))?;
                let data = outcome(reply)?.map(|r| r.data).unwrap_or_default();
                self.reply_payload(data)?
            }
        };
        Ok(Reply {
            id,
            rpc: Some(ClientRpcResult { data }),
            ..Default::default()
        })
    }

    /// The connection's `expire_at` passed and a refresh hook is configured: call it in a task
    /// of its own (the timer never waits). Until it answers the connection counts as prolonged
    /// by [`RETRY_AFTER_FAILURE`], so the next expiry check does not call again.
    pub(super) fn start_proxy_refresh(&self, proxy: ProxyHandle) {
        self.lock_state().expires_at = Some(unix_now() + RETRY_AFTER_FAILURE);
        self.schedule_expiry_check();
        let Some(me) = self.me.upgrade() else {
            return;
        };
        self.node
            .spawn(async move { me.proxy_refresh(proxy).await });
    }

    async fn proxy_refresh(&self, proxy: ProxyHandle) {
        let request = RefreshRequest {
            caller: self.caller(),
        };
        let reply = match self
            .hook(&proxy, ProxyEvent::Refresh, proxy.refresh(&request))
            .await
        {
            Ok(reply) => reply,
            // Prolonged already (now + RETRY_AFTER_FAILURE): called again then.
            Err(_) => return,
        };
        // `error` and `disconnect` are ignored: only a result with a future expiry keeps the
        // connection (an `expire_at` of 0 does not move the expiry, which has passed).
        match reply.into_result() {
            Some(r) if !r.expired && r.expire_at > unix_now() => {
                {
                    let mut st = self.lock_state();
                    st.expires_at = Some(cap_expiry(r.expire_at));
                    if let Some(info) = r.info {
                        st.conn_info = info;
                    }
                }
                if let Some(meta) = r.meta {
                    self.set_meta(meta);
                }
                self.schedule_expiry_check();
            }
            _ => self.disconnect(codes::DISCONNECT_EXPIRED.into()),
        }
    }

    /// Subscriptions whose `expire_at` passed in namespaces with `sub_refresh_proxy_enabled`:
    /// call the hook for each in a task of their own; until it answers each counts as
    /// prolonged by [`RETRY_AFTER_FAILURE`].
    pub(super) fn start_proxy_sub_refresh(&self, channels: Vec<(Arc<str>, ProxyHandle)>) {
        if channels.is_empty() {
            return;
        }
        {
            let mut st = self.lock_state();
            let later = Some(unix_now() + RETRY_AFTER_FAILURE);
            for (channel, _) in &channels {
                if let Some(sub) = st.subs.get_mut(channel) {
                    sub.expires_at = later;
                }
            }
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        self.node.spawn(async move {
            for (channel, proxy) in channels {
                me.proxy_sub_refresh(channel, proxy).await;
            }
            me.schedule_expiry_check();
        });
    }

    async fn proxy_sub_refresh(&self, channel: Arc<str>, proxy: ProxyHandle) {
        let request = SubRefreshRequest {
            caller: self.caller(),
            channel: channel.to_string(),
        };
        let reply = match self
            .hook(&proxy, ProxyEvent::SubRefresh, proxy.sub_refresh(&request))
            .await
        {
            Ok(reply) => reply,
            Err(_) => return,
        };
        let keep = match reply.into_result() {
            Some(r) if !r.expired && r.expire_at > unix_now() => {
                let mut st = self.lock_state();
                if let Some(sub) = st.subs.get_mut(&channel) {
                    sub.expires_at = Some(r.expire_at);
                    if let Some(info) = r.info {
                        sub.chan_info = info;
                    }
                }
                true
            }
            _ => false,
        };
        if keep {
            return;
        }
        let server_side = self.lock_state().subs.get(&channel).map(|s| s.server_side);
        match server_side {
            Some(true) => self.disconnect(codes::DISCONNECT_SUB_EXPIRED.into()),
            Some(false) => {
                let _serial = self.cmd_lock.lock().await;
                self.remove_subscription(&channel, Some(codes::UNSUBSCRIBE_EXPIRED))
                    .await;
            }
            None => {}
        }
    }
}
