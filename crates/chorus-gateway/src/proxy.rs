//! Backend hooks over HTTP and gRPC: the gateway's implementations of the core's
//! [`chorus_core::proxy::Proxy`] port, and the registry built from the config.
//!
//! Parts:
//! * this file — [`build`] (config → [`Proxies`]), what both transports share (which headers
//!   a proxy forwards, `b64*` vs raw payloads);
//! * [`json`] — the HTTP JSON bodies: requests with `data`/`info`/`meta` embedded as raw JSON
//!   (or `b64*` with `binary_encoding`), responses decoded into the core's results;
//! * [`http`] — the HTTP transport: one `POST` per call on a pooled hyper client (rustls for
//!   `https://`), only 200 is a success, `http.status_to_code_transforms`, header forwarding;
//! * [`grpc`] — the gRPC transport: a tonic `CentrifugoProxy` client (`proto/proxy.proto`),
//!   metadata forwarding and credentials, TLS (`grpc.tls`) and gzip (`grpc.compression`).
//!
//! Bounds (slots, timeouts) and metrics are the core's ([`chorus_core::proxy::ProxyHandle`]):
//! an adapter only sends, receives and decodes, and a dropped call future cancels its request.

pub mod grpc;
pub mod http;
pub mod json;

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chorus_core::proxy::{Caller, Proxies, Proxy, ProxyError, ProxyEvent, ProxyHandle, ProxyName};

use hyper_util::client::legacy::connect::HttpConnector;

use crate::config::proxy::{proxy_objects, LoadedTls, ProxyConfig, ProxyTransport};
use crate::config::Config;

/// Why the proxies could not be built (the config check refuses such configs first).
#[derive(Debug, thiserror::Error)]
pub enum ProxyBuildError {
    #[error("{key}: {message}")]
    Endpoint { key: String, message: String },
}

/// Builds every configured proxy: the connect and refresh hooks when enabled, the `default`
/// proxy of each channel event and of rpc when its endpoint is set, and each `proxies[]`
/// entry under its name for the channel events and rpc. Must run inside a tokio runtime.
pub fn build(config: &Config) -> Result<Proxies, ProxyBuildError> {
    let mut proxies = Proxies::default();
    let mut header_names = Vec::new();
    for (_, obj) in proxy_objects(config) {
        header_names.extend(obj.http_headers.iter().cloned());
    }
    let c = &config.client.proxy;
    if c.connect.enabled {
        proxies.set_connect(handle("client.proxy.connect", &c.connect.proxy)?);
    }
    if c.refresh.enabled {
        proxies.set_refresh(handle("client.proxy.refresh", &c.refresh.proxy)?);
    }
    let ch = &config.channel.proxy;
    for (event, key, obj) in [
        (
            ProxyEvent::Subscribe,
            "channel.proxy.subscribe",
            &ch.subscribe,
        ),
        (ProxyEvent::Publish, "channel.proxy.publish", &ch.publish),
        (
            ProxyEvent::SubRefresh,
            "channel.proxy.sub_refresh",
            &ch.sub_refresh,
        ),
        (ProxyEvent::Rpc, "rpc.proxy", &config.rpc.proxy),
    ] {
        if !obj.endpoint.trim().is_empty() {
            proxies.insert(event, ProxyName::Default, handle(key, obj)?);
        }
    }
    for named in &config.proxies {
        let h = handle(&named.name, &named.proxy)?;
        for event in [
            ProxyEvent::Subscribe,
            ProxyEvent::Publish,
            ProxyEvent::SubRefresh,
            ProxyEvent::Rpc,
        ] {
            proxies.insert(event, ProxyName::from(named.name.as_str()), h.clone());
        }
    }
    proxies.set_header_names(header_names);
    Ok(proxies)
}

/// One proxy object as a bounded handle; `label` names it in metrics.
fn handle(label: &str, cfg: &ProxyConfig) -> Result<ProxyHandle, ProxyBuildError> {
    let err = |message: String| ProxyBuildError::Endpoint {
        key: label.to_string(),
        message,
    };
    let tls = cfg.load_tls(label).map_err(err)?;
    let proxy: Arc<dyn Proxy> = match cfg.transport().map_err(err)? {
        ProxyTransport::Http(url) => Arc::new(http::HttpProxy::new(cfg, &url, tls).map_err(err)?),
        ProxyTransport::Grpc(target) => {
            Arc::new(grpc::GrpcProxy::new(cfg, &target, tls).map_err(err)?)
        }
    };
    Ok(ProxyHandle::new(
        label,
        proxy,
        cfg.timeout.get(),
        cfg.max_in_flight,
    ))
}

/// The TCP (+ rustls) connector of a proxy: TCP_NODELAY, `timeout` to connect. `tls`: the
/// loaded TLS object; `None`: the system's roots (loaded only when an `https://` URL is
/// reached). `h2`: ALPN `h2` and TLS only (gRPC), else `http/1.1` and TLS for `https://` only.
pub(crate) fn connector(
    cfg: &ProxyConfig,
    tls: Option<LoadedTls>,
    h2: bool,
) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(cfg.timeout.get()));
    tcp.enforce_http(false);
    let (config, server_name) = match tls {
        Some(t) => (t.client, t.server_name),
        None if cfg.endpoint.trim().starts_with("https://") => (
            crate::client_tls::with_roots(crate::client_tls::system_roots()),
            None,
        ),
        None => (
            crate::client_tls::with_roots(rustls::RootCertStore::empty()),
            None,
        ),
    };
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config);
    let builder = if h2 {
        builder.https_only()
    } else {
        builder.https_or_http()
    };
    // Validated by the config check (`ProxyTlsConfig::load`).
    let name = server_name.and_then(|n| rustls_pki_types::ServerName::try_from(n).ok());
    let builder = match name {
        Some(name) => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    if h2 {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    }
}

/// The headers `cfg` forwards for `caller`, in priority order (later wins): allowed emulated
/// headers (connect-frame `headers`), then allowed upgrade-request headers. Names lower-case.
pub(crate) fn forwarded<'a>(cfg: &ProxyConfig, caller: &'a Caller) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    let allowed = |names: &[String], name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    for (list, names) in [
        (&caller.emulated_headers, &cfg.emulated_headers),
        (&caller.headers, &cfg.http_headers),
    ] {
        if let Some(list) = list {
            out.extend(
                list.iter()
                    .filter(|(k, _)| allowed(names, k))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
    }
    out
}

/// Standard base64 with padding (the `b64*` fields).
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The payload of a result from its raw and `b64*` forms: the `b64*` field wins when not
/// empty (`raw_first`: the raw one wins when present — publish results). `None`: neither set.
pub(crate) fn pick(
    raw: Option<Bytes>,
    b64: &str,
    raw_first: bool,
) -> Result<Option<Bytes>, ProxyError> {
    let decoded = || {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|e| ProxyError::BadResponse(format!("bad base64: {e}")))
    };
    match (raw, b64.is_empty()) {
        (Some(raw), _) if raw_first => Ok(Some(raw)),
        (_, false) => decoded().map(Some),
        (raw, true) => Ok(raw),
    }
}

/// The `encoding` field: `binary` with `binary_encoding`.
pub(crate) fn encoding(cfg: &ProxyConfig) -> &'static str {
    if cfg.binary_encoding {
        "binary"
    } else {
        "json"
    }
}

/// The connection meta a request carries (only with `include_connection_meta`).
pub(crate) fn meta<'a>(cfg: &ProxyConfig, caller: &'a Caller) -> Option<&'a Bytes> {
    caller
        .meta
        .as_ref()
        .filter(|m| cfg.include_connection_meta && !m.is_empty())
}

#[cfg(test)]
mod tests;
