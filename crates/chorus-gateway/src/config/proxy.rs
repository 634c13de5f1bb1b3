//! Backend hook ("proxy") configuration, in Centrifugo v6's shape: one proxy object
//! ([`ProxyConfig`]) used under `client.proxy.connect` / `client.proxy.refresh` (with
//! `enabled`), `channel.proxy.subscribe|publish|sub_refresh` and `rpc.proxy` (each the proxy
//! named `default` for its event), and in the top-level `proxies[]` list (named proxies that
//! namespaces reference with `*_proxy_name`). Validation ([`problems`]) refuses unknown names,
//! empty endpoints, zero timeouts, malformed transforms and unreadable TLS files, all at
//! once. The TLS object of `http.tls` / `grpc.tls` is [`tls::ProxyTlsConfig`].

mod tls;

pub use tls::{LoadedTls, ProxyTlsConfig};

use std::collections::{BTreeMap, HashSet};
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelConfig, ChannelOptions, RpcConfig, RpcOptions};
use chorus_core::proxy::{ProxyName, DEFAULT_PROXY_NAME};

use super::Config;

/// Default of [`ProxyConfig::timeout`] (Centrifugo's).
pub const DEFAULT_PROXY_TIMEOUT: ConfigDuration = ConfigDuration::from_secs(1);
/// Default of [`ProxyConfig::max_in_flight`].
pub const DEFAULT_PROXY_MAX_IN_FLIGHT: usize = 1000;
/// Default of [`ProxyConfig::max_response_size`] (gRPC's default message bound).
pub const DEFAULT_PROXY_MAX_RESPONSE_SIZE: usize = 4 << 20;
/// Longest error message or disconnect reason of a status transform (a close reason's limit).
const MAX_REASON_LEN: usize = 123;

/// One proxy: where a backend is and what chorus sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// `http://host[:port]/path` or `https://…` (HTTP: a JSON `POST` per event), or
    /// `grpc://host:port` / `host:port` (gRPC, `CentrifugoProxy` of `proto/proxy.proto`;
    /// TLS with `grpc.tls.enabled`). Default empty.
    pub endpoint: String,
    /// Deadline of one call (from the moment it has a slot, see `max_in_flight`). Past it the
    /// call is cancelled and fails. Default 1s; must be > 0.
    pub timeout: ConfigDuration,
    /// Headers of the client's WebSocket upgrade request forwarded with every call (case
    /// insensitive: `Cookie`, `Authorization`, …); nothing else is forwarded. Over gRPC they
    /// travel as lower-case metadata. Default empty.
    pub http_headers: Vec<String>,
    /// Entries of the client's connect-frame `headers` map forwarded as headers (centrifuge-js
    /// `headers` option). Default empty.
    pub emulated_headers: Vec<String>,
    /// Incoming gRPC metadata to forward — for gRPC client transports, which chorus does not
    /// have: accepted for compatibility, no effect. Default empty.
    pub grpc_metadata: Vec<String>,
    /// Payloads travel base64-encoded in the `b64*` fields (`encoding: "binary"`) instead of
    /// raw JSON: needed when Protobuf clients send data that is not JSON. Default false.
    pub binary_encoding: bool,
    /// Send the connection's `meta` (from the connect hook) with refresh, subscribe, publish,
    /// sub_refresh and rpc calls. Default false.
    pub include_connection_meta: bool,
    /// Most calls of this proxy running at once (one bound per proxy object, shared by all
    /// its events). A call over it waits for a slot at most `timeout`, then fails like a
    /// timeout. Default 1000; 0 = no bound.
    pub max_in_flight: usize,
    /// Largest response accepted (HTTP body or gRPC message), in bytes; a bigger one fails the
    /// call. Default 4194304 (4 MiB); at least 1024.
    pub max_response_size: usize,
    /// `http.*`: options of HTTP proxies.
    pub http: HttpProxyOptions,
    /// `grpc.*`: options of gRPC proxies.
    pub grpc: GrpcProxyOptions,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            endpoint: String::new(),
            timeout: DEFAULT_PROXY_TIMEOUT,
            http_headers: Vec::new(),
            emulated_headers: Vec::new(),
            grpc_metadata: Vec::new(),
            binary_encoding: false,
            include_connection_meta: false,
            max_in_flight: DEFAULT_PROXY_MAX_IN_FLIGHT,
            max_response_size: DEFAULT_PROXY_MAX_RESPONSE_SIZE,
            http: HttpProxyOptions::default(),
            grpc: GrpcProxyOptions::default(),
        }
    }
}

/// How a proxy's endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyTransport {
    /// `http://…` or `https://…`: the whole URL.
    Http(String),
    /// `grpc://host:port` or `host:port`: the `host:port`.
    Grpc(String),
}

impl ProxyConfig {
    /// The transport the endpoint names, or why it cannot be used.
    pub fn transport(&self) -> Result<ProxyTransport, String> {
        let e = self.endpoint.trim();
        if e.is_empty() {
            return Err("endpoint must not be empty".into());
        }
        if e.starts_with("http://") || e.starts_with("https://") {
            return match e.parse::<http::Uri>() {
                Ok(uri) if uri.host().is_some() => Ok(ProxyTransport::Http(e.to_string())),
                _ => Err(format!("endpoint {e:?} is not a valid http(s) URL")),
            };
        }
        let target = e.strip_prefix("grpc://").unwrap_or(e);
        match target.parse::<http::uri::Authority>() {
            Ok(a) if a.port_u16().is_some() && !target.contains('/') => {
                Ok(ProxyTransport::Grpc(target.to_string()))
            }
            _ => Err(format!(
                "endpoint {e:?}: expected http(s)://host[:port]/path or grpc://host:port"
            )),
        }
    }

    /// The TLS settings the endpoint uses, loaded (files read): `http.tls` for an `https://`
    /// endpoint, `grpc.tls` for a gRPC one, each when `enabled`. `Ok(None)`: the default —
    /// plain TCP, or for `https://` the system's roots.
    pub fn load_tls(&self, key: &str) -> Result<Option<LoadedTls>, String> {
        match self.transport()? {
            ProxyTransport::Http(url) if url.starts_with("https://") && self.http.tls.enabled => {
                self.http.tls.load(&format!("{key}.http.tls")).map(Some)
            }
            ProxyTransport::Grpc(_) if self.grpc.tls.enabled => {
                self.grpc.tls.load(&format!("{key}.grpc.tls")).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Every problem of this object, each prefixed with `key`.
    fn problems(&self, key: &str, p: &mut Vec<String>) {
        if let Err(e) = self.transport() {
            p.push(format!("{key}: {e}"));
        } else if let Err(e) = self.load_tls(key) {
            p.push(e);
        }
        if self.timeout.is_zero() {
            p.push(format!("{key}.timeout must be greater than 0"));
        }
        if self.max_response_size < super::MIN_BUFFER_SIZE {
            p.push(format!(
                "{key}.max_response_size ({}) must be at least {} bytes",
                self.max_response_size,
                super::MIN_BUFFER_SIZE
            ));
        }
        for (field, names) in [
            ("http_headers", &self.http_headers),
            ("emulated_headers", &self.emulated_headers),
        ] {
            for name in names {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    p.push(format!("{key}.{field}: {name:?} is not a header name"));
                }
            }
        }
        for name in self.http.static_headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.push(format!(
                    "{key}.http.static_headers: {name:?} is not a header name"
                ));
            }
        }
        for name in self.grpc.static_metadata.keys() {
            if tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes())
                .is_err()
            {
                p.push(format!(
                    "{key}.grpc.static_metadata: {name:?} is not a metadata key"
                ));
            }
        }
        let g = &self.grpc;
        if g.credentials_key.is_empty() != g.credentials_value.is_empty() {
            p.push(format!(
                "{key}.grpc.credentials_key and credentials_value must be set together"
            ));
        }
        for (n, t) in self.http.status_to_code_transforms.iter().enumerate() {
            let key = format!("{key}.http.status_to_code_transforms[{n}]");
            if !(100..=599).contains(&t.status_code) {
                p.push(format!(
                    "{key}.status_code must be an HTTP status (100..=599)"
                ));
            }
            match (t.to_error.code > 0, t.to_disconnect.code > 0) {
                (true, false) | (false, true) => {}
                _ => p.push(format!(
                    "{key}: exactly one of to_error.code and to_disconnect.code must be set"
                )),
            }
            for (field, text) in [
                ("to_error.message", &t.to_error.message),
                ("to_disconnect.reason", &t.to_disconnect.reason),
            ] {
                if !text.is_ascii() || text.len() > MAX_REASON_LEN {
                    p.push(format!(
                        "{key}.{field} must be ASCII, at most {MAX_REASON_LEN} characters"
                    ));
                }
            }
        }
    }
}

/// `http.*` of a proxy object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HttpProxyOptions {
    /// Headers added to every request (the lowest priority: forwarded headers override them).
    /// Default empty.
    pub static_headers: BTreeMap<String, String>,
    /// Non-200 statuses turned into an `error` or `disconnect` answer instead of a failure.
    /// Default empty.
    pub status_to_code_transforms: Vec<StatusTransform>,
    /// TLS to an `https://` endpoint: a private CA, a client certificate (mutual TLS),
    /// `server_name`. Default: off (the system's roots).
    pub tls: ProxyTlsConfig,
}

/// One `http.status_to_code_transforms` entry: `status_code` and exactly one of `to_error`,
/// `to_disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StatusTransform {
    pub status_code: u16,
    pub to_error: TransformError,
    pub to_disconnect: TransformDisconnect,
}

/// `to_error`: the client's command gets this error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TransformError {
    pub code: u32,
    pub message: String,
    pub temporary: bool,
}

/// `to_disconnect`: the connection is closed with this code and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TransformDisconnect {
    pub code: u32,
    pub reason: String,
}

/// `grpc.*` of a proxy object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GrpcProxyOptions {
    /// Metadata key sent with every call (with `credentials_value`), e.g. `authorization`.
    /// Default empty.
    pub credentials_key: String,
    /// Its value. Default empty.
    pub credentials_value: String,
    /// Metadata added to every call (lowest priority). Default empty.
    pub static_metadata: BTreeMap<String, String>,
    /// TLS to the backend (`enabled`; else plaintext h2c), with the same settings as
    /// `http.tls`. Default: off.
    pub tls: ProxyTlsConfig,
    /// Compress requests with gzip (and accept gzip responses). Default false.
    pub compression: bool,
}

/// `client.proxy.connect` / `client.proxy.refresh`: a proxy object plus `enabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ToggledProxy {
    /// Turn the hook on. Default false.
    pub enabled: bool,
    #[serde(flatten)]
    pub proxy: ProxyConfig,
}

/// `client.proxy.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClientProxies {
    /// A client connecting without a token is authenticated by this hook.
    pub connect: ToggledProxy,
    /// Connections are refreshed by this hook when their `expire_at` is reached.
    pub refresh: ToggledProxy,
}

/// `channel.proxy.*`: the `default` proxy of each channel event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChannelProxies {
    pub subscribe: ProxyConfig,
    pub publish: ProxyConfig,
    pub sub_refresh: ProxyConfig,
}

/// `proxies[]`: a named proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NamedProxy {
    /// `^[-a-zA-Z0-9_.]{2,}$`, unique, not `default`.
    pub name: String,
    #[serde(flatten)]
    pub proxy: ProxyConfig,
}

/// `channel.*`: the engine's channel options (flattened) plus `channel.proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChannelSection {
    #[serde(flatten)]
    pub config: ChannelConfig,
    /// `channel.proxy.*`: the `default` proxy objects of the channel events.
    pub proxy: ChannelProxies,
}

impl Deref for ChannelSection {
    type Target = ChannelConfig;
    fn deref(&self) -> &ChannelConfig {
        &self.config
    }
}

impl DerefMut for ChannelSection {
    fn deref_mut(&mut self) -> &mut ChannelConfig {
        &mut self.config
    }
}

/// `rpc.*`: the engine's rpc routing (flattened) plus `rpc.proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RpcSection {
    #[serde(flatten)]
    pub config: RpcConfig,
    /// The `default` rpc proxy.
    pub proxy: ProxyConfig,
}

impl Deref for RpcSection {
    type Target = RpcConfig;
    fn deref(&self) -> &RpcConfig {
        &self.config
    }
}

impl DerefMut for RpcSection {
    fn deref_mut(&mut self) -> &mut RpcConfig {
        &mut self.config
    }
}

/// `^[-a-zA-Z0-9_.]{2,}$`: names of proxies and rpc namespaces.
pub fn valid_proxy_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Every proxy object in use, with its config key: what the gateway builds.
pub fn proxy_objects(config: &Config) -> Vec<(String, &ProxyConfig)> {
    let mut out = Vec::new();
    let c = &config.client.proxy;
    if c.connect.enabled {
        out.push(("client.proxy.connect".to_string(), &c.connect.proxy));
    }
    if c.refresh.enabled {
        out.push(("client.proxy.refresh".to_string(), &c.refresh.proxy));
    }
    let ch = &config.channel.proxy;
    for (key, obj) in [
        ("channel.proxy.subscribe", &ch.subscribe),
        ("channel.proxy.publish", &ch.publish),
        ("channel.proxy.sub_refresh", &ch.sub_refresh),
        ("rpc.proxy", &config.rpc.proxy),
    ] {
        if !obj.endpoint.trim().is_empty() {
            out.push((key.to_string(), obj));
        }
    }
    for (n, named) in config.proxies.iter().enumerate() {
        out.push((format!("proxies[{n}] ({:?})", named.name), &named.proxy));
    }
    out
}

/// Checks every proxy setting; problems are named by their keys.
pub(super) fn problems(config: &Config) -> Vec<String> {
    let mut p = Vec::new();
    let mut names = HashSet::new();
    for (n, named) in config.proxies.iter().enumerate() {
        let key = format!("proxies[{n}]");
        if !valid_proxy_name(&named.name) {
            p.push(format!(
                "{key}.name {:?} must match ^[-a-zA-Z0-9_.]{{2,}}$",
                named.name
            ));
        } else if named.name == DEFAULT_PROXY_NAME {
            p.push(format!("{key}.name \"default\" is reserved"));
        }
        if !names.insert(named.name.as_str()) {
            p.push(format!("{key}.name {:?} is defined twice", named.name));
        }
    }
    for (key, obj) in proxy_objects(config) {
        obj.problems(&key, &mut p);
    }
    // Every reference resolves: `default` to the event's own object (which then needs an
    // endpoint), any other name to a `proxies[]` entry.
    let resolve =
        |key: &str, name: &ProxyName, own: &str, obj: &ProxyConfig, p: &mut Vec<_>| match name {
            ProxyName::Default if obj.endpoint.trim().is_empty() => p.push(format!(
                "{key} uses the default proxy, but {own}.endpoint is empty"
            )),
            ProxyName::Default => {}
            ProxyName::Named(n) => {
                if !names.contains(&**n) {
                    p.push(format!("{key} names proxy {n:?}, which is not in proxies"));
                }
            }
        };
    let ch = &config.channel;
    let namespaces = std::iter::once((
        "channel.without_namespace".to_string(),
        &ch.without_namespace,
    ))
    .chain(
        ch.namespaces
            .iter()
            .enumerate()
            .map(|(n, ns)| (format!("channel.namespaces[{n}]"), &ns.options)),
    );
    for (key, o) in namespaces {
        for (enabled, field, name, own, obj) in channel_refs(o, &ch.proxy) {
            if enabled {
                resolve(&format!("{key}.{field}"), name, own, obj, &mut p);
            }
        }
    }
    let rpc = &config.rpc;
    if rpc.namespace_boundary.is_empty() {
        p.push("rpc.namespace_boundary must not be empty".into());
    }
    if rpc.ping.enabled && rpc.ping.method.is_empty() {
        p.push("rpc.ping.method must not be empty".into());
    }
    let mut seen = HashSet::new();
    for (n, ns) in rpc.namespaces.iter().enumerate() {
        if !valid_proxy_name(&ns.name) {
            p.push(format!(
                "rpc.namespaces[{n}].name {:?} must match ^[-a-zA-Z0-9_.]{{2,}}$",
                ns.name
            ));
        }
        if !seen.insert(ns.name.as_str()) {
            p.push(format!(
                "rpc.namespaces[{n}].name {:?} is defined twice",
                ns.name
            ));
        }
    }
    let rpc_namespaces =
        std::iter::once(("rpc.without_namespace".to_string(), &rpc.without_namespace)).chain(
            rpc.namespaces
                .iter()
                .enumerate()
                .map(|(n, ns)| (format!("rpc.namespaces[{n}]"), &ns.options)),
        );
    for (key, o) in rpc_namespaces {
        let RpcOptions {
            proxy_enabled,
            proxy_name,
        } = o;
        if *proxy_enabled {
            resolve(
                &format!("{key}.proxy_name"),
                proxy_name,
                "rpc.proxy",
                &rpc.proxy,
                &mut p,
            );
        }
    }
    p
}

type ChannelRef<'a> = (
    bool,
    &'static str,
    &'a ProxyName,
    &'static str,
    &'a ProxyConfig,
);

/// The proxy references of one namespace: (enabled, name field, name, own object key, object).
fn channel_refs<'a>(o: &'a ChannelOptions, proxies: &'a ChannelProxies) -> [ChannelRef<'a>; 3] {
    [
        (
            o.subscribe_proxy_enabled,
            "subscribe_proxy_name",
            &o.subscribe_proxy_name,
            "channel.proxy.subscribe",
            &proxies.subscribe,
        ),
        (
            o.publish_proxy_enabled,
            "publish_proxy_name",
            &o.publish_proxy_name,
            "channel.proxy.publish",
            &proxies.publish,
        ),
        (
            o.sub_refresh_proxy_enabled,
            "sub_refresh_proxy_name",
            &o.sub_refresh_proxy_name,
            "channel.proxy.sub_refresh",
            &proxies.sub_refresh,
        ),
    ]
}

/// Legal but risky proxy settings.
pub(super) fn warnings(config: &Config) -> Vec<String> {
    let mut w = Vec::new();
    let pong = config.client.options.pong_timeout;
    for (key, obj) in proxy_objects(config) {
        if !pong.is_zero() && obj.timeout >= pong {
            w.push(format!(
                "{key}.timeout ({}) is not below client.pong_timeout ({pong}): a connection \
                 waiting that long for its hook does not read its pong and is closed with 3012",
                obj.timeout
            ));
        }
        if !obj.grpc_metadata.is_empty() {
            w.push(format!(
                "{key}.grpc_metadata has no effect: chorus has no gRPC client transport"
            ));
        }
        let (http_unused, grpc_unused) = match obj.transport() {
            Ok(ProxyTransport::Http(u)) if u.starts_with("https://") => {
                (None, Some("the endpoint is not gRPC"))
            }
            Ok(ProxyTransport::Http(_)) => (
                Some("the endpoint is http://, not https://"),
                Some("the endpoint is not gRPC"),
            ),
            _ => (Some("the endpoint is not https://"), None),
        };
        let (http_key, grpc_key) = (format!("{key}.http.tls"), format!("{key}.grpc.tls"));
        obj.http.tls.warnings(&http_key, http_unused, &mut w);
        obj.grpc.tls.warnings(&grpc_key, grpc_unused, &mut w);
    }
    w
}
