//! Backend hooks ("proxies", as Centrifugo calls them): the [`Proxy`] port the engine calls on
//! `connect` (without a token), connection `refresh`, `subscribe`, `publish`, `sub_refresh` and
//! `rpc`, and the registry ([`Proxies`]) that maps an event and a proxy name to a
//! [`ProxyHandle`]. The gateway implements the port over HTTP and gRPC; the core never sees a
//! URL or a socket.
//!
//! A [`ProxyHandle`] is where every call is bounded and measured, whatever the adapter: at most
//! `max_in_flight` calls of one proxy run at once (a call over the bound waits for a slot at
//! most `timeout`, then fails with [`ProxyError::Overloaded`] without reaching the backend),
//! each call has a deadline (`timeout` from the moment it has a slot, then
//! [`ProxyError::Timeout`]; the adapter's future is dropped, which cancels its request),
//! and `chorus_proxy_duration_seconds`, `chorus_proxy_errors_total` and
//! `chorus_proxy_in_flight` record it. A connection waits for its own hook (its commands run in
//! order), never for another connection's, and fan-out never waits for a hook.
//!
//! Parts: this file (the port, errors, names, handle, registry) and [`types`] (requests and
//! results).

pub mod types;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::metrics;
pub use types::*;

/// The hooked events (the `event` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyEvent {
    Connect,
    Refresh,
    Subscribe,
    Publish,
    SubRefresh,
    Rpc,
}

impl ProxyEvent {
    pub const ALL: [ProxyEvent; 6] = [
        ProxyEvent::Connect,
        ProxyEvent::Refresh,
        ProxyEvent::Subscribe,
        ProxyEvent::Publish,
        ProxyEvent::SubRefresh,
        ProxyEvent::Rpc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyEvent::Connect => "connect",
            ProxyEvent::Refresh => "refresh",
            ProxyEvent::Subscribe => "subscribe",
            ProxyEvent::Publish => "publish",
            ProxyEvent::SubRefresh => "sub_refresh",
            ProxyEvent::Rpc => "rpc",
        }
    }
}

/// Why a hook call failed (every one answers the client with the event's documented failure:
/// error 100 for connect, subscribe, publish and rpc; a prolonged expiry for refresh and
/// sub_refresh), except [`ProxyError::BadRequest`] (error 107).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Transport failure: connection refused or reset, a non-200 status without a transform,
    /// a gRPC status.
    #[error("proxy unavailable: {0}")]
    Unavailable(String),
    /// No answer within the proxy's `timeout`.
    #[error("proxy call timed out")]
    Timeout,
    /// The answer could not be decoded (not JSON, bad base64, wrong types).
    #[error("bad proxy response: {0}")]
    BadResponse(String),
    /// The client's payload cannot be sent in this proxy's encoding (not JSON without
    /// `binary_encoding`).
    #[error("request cannot be encoded: {0}")]
    BadRequest(String),
    /// No free slot among the proxy's `max_in_flight` within `timeout`.
    #[error("too many proxy calls in flight")]
    Overloaded,
    /// The connection closed while its hook ran (the result is discarded).
    #[error("connection closed during the proxy call")]
    Cancelled,
}

impl ProxyError {
    /// The `kind` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Unavailable(_) => "unavailable",
            ProxyError::Timeout => "timeout",
            ProxyError::BadResponse(_) => "bad_response",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::Overloaded => "overloaded",
            ProxyError::Cancelled => "cancelled",
        }
    }
}

/// A proxy reference in namespace options (`subscribe_proxy_name`, `proxy_name`, …): `default`
/// (the event's own `channel.proxy.*` / `rpc.proxy` object) or the name of a `proxies[]` entry.
/// Cheap to clone: namespace options are cloned per command.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum ProxyName {
    #[default]
    Default,
    Named(Arc<str>),
}

/// The reserved name of the event's own proxy object.
pub const DEFAULT_PROXY_NAME: &str = "default";

impl ProxyName {
    pub fn as_str(&self) -> &str {
        match self {
            ProxyName::Default => DEFAULT_PROXY_NAME,
            ProxyName::Named(n) => n,
        }
    }
}

impl From<&str> for ProxyName {
    /// `""` and `"default"` are [`ProxyName::Default`] (Centrifugo fills empty names with it).
    fn from(s: &str) -> Self {
        match s {
            "" | DEFAULT_PROXY_NAME => ProxyName::Default,
            name => ProxyName::Named(Arc::from(name)),
        }
    }
}

impl fmt::Display for ProxyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProxyName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProxyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ProxyName::from(s.as_str()))
    }
}

/// The port: one backend reachable over some transport. Methods an implementation does not
/// serve answer [`ProxyError::Unavailable`].
#[async_trait]
pub trait Proxy: Send + Sync + 'static {
    async fn connect(&self, req: &ConnectRequest) -> Result<HookReply<ConnectResult>, ProxyError> {
        let _ = req;
        Err(not_served(ProxyEvent::Connect))
    }
    async fn refresh(&self, req: &RefreshRequest) -> Result<HookReply<RefreshResult>, ProxyError> {
        let _ = req;
        Err(not_served(ProxyEvent::Refresh))
    }
    async fn subscribe(
        &self,
        req: &SubscribeRequest,
    ) -> Result<HookReply<SubscribeResult>, ProxyError> {
        let _ = req;
        Err(not_served(ProxyEvent::Subscribe))
    }
    async fn publish(&self, req: &PublishRequest) -> Result<HookReply<PublishResult>, ProxyError> {
        let _ = req;
        Err(not_served(ProxyEvent::Publish))
    }
    async fn sub_refresh(
        &self,
        req: &SubRefreshRequest,
    ) -> Result<HookReply<SubRefreshResult>, ProxyError> {
        let _ = req;
        Err(not_served(ProxyEvent::SubRefresh))
    }
    async fn rpc(&self, req: &RpcRequest) -> Result<HookReply<RpcResult>, ProxyError> {
        let _ = req;
        Err(not_served(ProxyEvent::Rpc))
    }
}

fn not_served(event: ProxyEvent) -> ProxyError {
    ProxyError::Unavailable(format!("{} is not served by this proxy", event.as_str()))
}

struct HandleInner {
    label: Arc<str>,
    proxy: Arc<dyn Proxy>,
    timeout: Duration,
    slots: Semaphore,
}

/// One configured proxy with its bounds: what the engine calls. Cheap to clone.
#[derive(Clone)]
pub struct ProxyHandle {
    inner: Arc<HandleInner>,
}

impl fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("label", &self.inner.label)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Decrements `chorus_proxy_in_flight` when a call ends, however it ends.
struct InFlight<'a>(&'a str);

impl<'a> InFlight<'a> {
    fn enter(label: &'a str) -> Self {
        metrics::proxy_in_flight(label, 1.0);
        InFlight(label)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        metrics::proxy_in_flight(self.0, -1.0);
    }
}

impl ProxyHandle {
    /// `label` names the proxy in metrics and logs (`client.proxy.connect`, a `proxies[]`
    /// name, …); `max_in_flight` 0 = no bound.
    pub fn new(
        label: impl Into<Arc<str>>,
        proxy: Arc<dyn Proxy>,
        timeout: Duration,
        max_in_flight: usize,
    ) -> Self {
        let slots = match max_in_flight {
            0 => Semaphore::MAX_PERMITS,
            n => n.min(Semaphore::MAX_PERMITS),
        };
        let label = label.into();
        metrics::proxy_in_flight(&label, 0.0);
        ProxyHandle {
            inner: Arc::new(HandleInner {
                label,
                proxy,
                timeout,
                slots: Semaphore::new(slots),
            }),
        }
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Runs one call under the bounds (slot, deadline) and records it.
    async fn run<T, F>(&self, event: ProxyEvent, call: F) -> Result<T, ProxyError>
    where
        F: Future<Output = Result<T, ProxyError>>,
    {
        let label = &*self.inner.label;
        let timeout = self.inner.timeout;
        let Ok(Ok(_slot)) = tokio::time::timeout(timeout, self.inner.slots.acquire()).await else {
            metrics::proxy_error(label, event, ProxyError::Overloaded.kind());
            return Err(ProxyError::Overloaded);
        };
        let _in_flight = InFlight::enter(label);
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(ProxyError::Timeout),
        };
        metrics::proxy_call(label, event, started.elapsed());
        if let Err(e) = &result {
            metrics::proxy_error(label, event, e.kind());
            // Debug, not warn: a backend outage fails every call (metrics are the signal).
            tracing::debug!(proxy = label, event = event.as_str(), error = %e, "proxy call failed");
        }
        result
    }

    pub async fn connect(
        &self,
        req: &ConnectRequest,
    ) -> Result<HookReply<ConnectResult>, ProxyError> {
        self.run(ProxyEvent::Connect, self.inner.proxy.connect(req))
            .await
    }

    pub async fn refresh(
        &self,
        req: &RefreshRequest,
    ) -> Result<HookReply<RefreshResult>, ProxyError> {
        self.run(ProxyEvent::Refresh, self.inner.proxy.refresh(req))
            .await
    }

    pub async fn subscribe(
        &self,
        req: &SubscribeRequest,
    ) -> Result<HookReply<SubscribeResult>, ProxyError> {
        self.run(ProxyEvent::Subscribe, self.inner.proxy.subscribe(req))
            .await
    }

    pub async fn publish(
        &self,
        req: &PublishRequest,
    ) -> Result<HookReply<PublishResult>, ProxyError> {
        self.run(ProxyEvent::Publish, self.inner.proxy.publish(req))
            .await
    }

    pub async fn sub_refresh(
        &self,
        req: &SubRefreshRequest,
    ) -> Result<HookReply<SubRefreshResult>, ProxyError> {
        self.run(ProxyEvent::SubRefresh, self.inner.proxy.sub_refresh(req))
            .await
    }

    pub async fn rpc(&self, req: &RpcRequest) -> Result<HookReply<RpcResult>, ProxyError> {
        self.run(ProxyEvent::Rpc, self.inner.proxy.rpc(req)).await
    }
}

/// The proxies of one node: the connect and refresh proxies (present = enabled) and, per
/// channel event and for rpc, the proxies by name (`default` = the event's own object).
#[derive(Debug, Default, Clone)]
pub struct Proxies {
    connect: Option<ProxyHandle>,
    refresh: Option<ProxyHandle>,
    subscribe: HashMap<ProxyName, ProxyHandle>,
    publish: HashMap<ProxyName, ProxyHandle>,
    sub_refresh: HashMap<ProxyName, ProxyHandle>,
    rpc: HashMap<ProxyName, ProxyHandle>,
    /// Lower-case names of the upgrade-request headers any proxy forwards.
    header_names: Vec<String>,
}

impl Proxies {
    /// Enables the connect hook (`client.proxy.connect`).
    pub fn set_connect(&mut self, handle: ProxyHandle) {
        self.connect = Some(handle);
    }

    /// Enables server-side refresh through the refresh hook (`client.proxy.refresh`).
    pub fn set_refresh(&mut self, handle: ProxyHandle) {
        self.refresh = Some(handle);
    }

    /// Registers `handle` under `name` for a channel event or rpc (connect and refresh are
    /// not named; they are ignored here).
    pub fn insert(&mut self, event: ProxyEvent, name: ProxyName, handle: ProxyHandle) {
        if let Some(map) = self.map_mut(event) {
            map.insert(name, handle);
        }
    }

    /// Sets the names of the upgrade-request headers to keep for forwarding.
    pub fn set_header_names(&mut self, names: Vec<String>) {
        self.header_names = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        self.header_names.sort();
        self.header_names.dedup();
    }

    /// No hook configured at all.
    pub fn is_empty(&self) -> bool {
        self.connect.is_none()
            && self.refresh.is_none()
            && self.subscribe.is_empty()
            && self.publish.is_empty()
            && self.sub_refresh.is_empty()
            && self.rpc.is_empty()
    }

    pub fn connect(&self) -> Option<&ProxyHandle> {
        self.connect.as_ref()
    }

    pub fn refresh(&self) -> Option<&ProxyHandle> {
        self.refresh.as_ref()
    }

    /// The proxy of `event` named `name`.
    pub fn get(&self, event: ProxyEvent, name: &ProxyName) -> Option<&ProxyHandle> {
        match event {
            ProxyEvent::Connect => self.connect.as_ref(),
            ProxyEvent::Refresh => self.refresh.as_ref(),
            ProxyEvent::Subscribe => self.subscribe.get(name),
            ProxyEvent::Publish => self.publish.get(name),
            ProxyEvent::SubRefresh => self.sub_refresh.get(name),
            ProxyEvent::Rpc => self.rpc.get(name),
        }
    }

    /// Lower-case names of the upgrade-request headers a transport should keep (empty: keep
    /// none).
    pub fn header_names(&self) -> &[String] {
        &self.header_names
    }

    fn map_mut(&mut self, event: ProxyEvent) -> Option<&mut HashMap<ProxyName, ProxyHandle>> {
        match event {
            ProxyEvent::Connect | ProxyEvent::Refresh => None,
            ProxyEvent::Subscribe => Some(&mut self.subscribe),
            ProxyEvent::Publish => Some(&mut self.publish),
            ProxyEvent::SubRefresh => Some(&mut self.sub_refresh),
            ProxyEvent::Rpc => Some(&mut self.rpc),
        }
    }
}

#[cfg(test)]
mod tests;
