//! The HTTP server API, wire-compatible with Centrifugo's (`POST /api/<method>`, JSON), so the
//! PyPI `cent` client and existing integrations work unchanged.
//!
//! Parts:
//! * this file — the entry point [`handle`]: API-key check, method routing, HTTP-level answers
//!   (401 / 400 / 404) and the response envelope `{"result":…}` / `{"error":…}`;
//! * [`requests`] — serde types of the request bodies, and parsing a body into a command;
//! * [`methods`] — per-method validation and the calls into [`chorus_core::Node`];
//! * [`results`] — the result objects, serialized exactly as Centrifugo's API does;
//! * [`legacy`] — the single endpoint `POST /api` with `{"method","params"}` commands.
//!
//! HTTP statuses: 401 (empty body, `Connection: close`) for a missing or wrong key — checked
//! from the headers before the server reads the body (see [`unauthorized`]); 404 (plain text)
//! for an unknown method; 400 (plain text) for a body that is not JSON or has a field of the
//! wrong type; 200 for everything else, errors included (`{"error":{"code":N,"message":"…"}}`),
//! as `cent` expects. The server adds 405, 413 and 408 before a request gets here (see
//! `server::routes`). The reference is `docs/server-api.md`.

pub mod legacy;
pub mod methods;
pub mod requests;
pub mod results;

#[cfg(test)]
mod tests;

use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use chorus_core::{ApiError, Node};

use crate::config::Config;
use requests::Request;

/// Counter of API commands, label `method` (batch entries count individually, and the batch
/// itself once).
pub const METRIC_REQUESTS: &str = "chorus_api_requests_total";
/// Counter of API errors, labels `method` and `code`: the API error code (`"107"`, …) or
/// `"http_<status>"` for requests refused at the HTTP level (401, 400, 404, 408, 413).
pub const METRIC_ERRORS: &str = "chorus_api_errors_total";
/// Histogram of command handling time in seconds, label `method`.
pub const METRIC_DURATION: &str = "chorus_api_command_duration_seconds";

/// Methods of the API, with their wire (path) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Publish,
    Broadcast,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
    Channels,
    Info,
    Batch,
    Refresh,
    Rpc,
}

impl Method {
    /// Every method, in the order a batch entry's keys are tried (Centrifugo's order).
    pub const ALL: [Method; 14] = [
        Method::Publish,
        Method::Broadcast,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Disconnect,
        Method::History,
        Method::HistoryRemove,
        Method::Presence,
        Method::PresenceStats,
        Method::Info,
        Method::Rpc,
        Method::Refresh,
        Method::Channels,
        Method::Batch,
    ];

    /// The path segment and batch key of the method (also its metric label).
    pub fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Broadcast => "broadcast",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Disconnect => "disconnect",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::HistoryRemove => "history_remove",
            Method::Channels => "channels",
            Method::Info => "info",
            Method::Batch => "batch",
            Method::Refresh => "refresh",
            Method::Rpc => "rpc",
        }
    }

    /// Exact (case-sensitive) lookup of a path segment.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Handles one API request. `method` is the path segment after `http_api.handler_prefix`, or
/// `""` for the legacy single endpoint (`POST <prefix>`). The body is already size-limited.
pub async fn handle(
    node: &Node,
    config: &Config,
    method: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let known = if method.is_empty() {
        None
    } else {
        Method::from_name(method)
    };
    let label = known.map_or("unknown", Method::name);
    if let Some(refused) = unauthorized(config, method, headers) {
        return refused;
    }
    if method.is_empty() {
        return legacy::handle(node, &body).await;
    }
    let Some(method) = known else {
        record_error(label, "http_404".to_owned());
        return plain(StatusCode::NOT_FOUND, "unknown API method\n".to_owned());
    };
    match requests::parse(method, &body) {
        Err(e) => {
            metrics::counter!(METRIC_REQUESTS, "method" => label).increment(1);
            record_error(label, "http_400".to_owned());
            plain(
                StatusCode::BAD_REQUEST,
                format!("{}\n", describe_json_error(&e)),
            )
        }
        Ok(Request::One(command)) => match methods::run(node, command).await {
            Ok(result) => json(format!("{{\"result\":{}}}", result.get())),
            Err(e) => json(error_json(&e)),
        },
        Ok(Request::Batch { commands, parallel }) => {
            metrics::counter!(METRIC_REQUESTS, "method" => label).increment(1);
            let started = Instant::now();
            let body = methods::batch(node, commands, parallel).await;
            metrics::histogram!(METRIC_DURATION, "method" => label)
                .record(started.elapsed().as_secs_f64());
            json(body)
        }
    }
}

/// The 401 answer (empty body, `Connection: close`, counted as `http_401`) when the request
/// does not carry the key; `None` when it may go on. Needs only the headers, so the server
/// calls it before reading a byte of the body: a caller without the key cannot make the node
/// buffer anything.
pub fn unauthorized(
    config: &Config,
    method: &str,
    headers: &HeaderMap,
) -> Option<Response<Full<Bytes>>> {
    if authorized(config, headers) {
        return None;
    }
    let label = Method::from_name(method).map_or("unknown", Method::name);
    record_error(label, "http_401".to_owned());
    let mut response = empty(StatusCode::UNAUTHORIZED);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// Counts an API request refused at the HTTP level before it reached [`handle`] (413, 408,
/// 400 for an unreadable body), under `chorus_api_errors_total{code="http_<status>"}`.
pub fn record_http_refusal(method: &str, status: StatusCode) {
    let label = Method::from_name(method).map_or("unknown", Method::name);
    record_error(label, format!("http_{}", status.as_u16()));
}

/// Plain-text explanation of a body that could not be decoded.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    if e.is_data() {
        format!("invalid request body: {e}")
    } else {
        format!("invalid JSON body: {e}")
    }
}

/// Whether the request carries the configured key. `http_api.insecure` accepts everything; an
/// empty configured key accepts nothing. (Centrifugo's `?api_key=` query parameter is not
/// supported: the URI does not reach this handler.)
pub fn authorized(config: &Config, headers: &HeaderMap) -> bool {
    if config.http_api.insecure {
        return true;
    }
    let expected = config.http_api.key.as_bytes();
    if expected.is_empty() {
        return false;
    }
    presented_key(headers).is_some_and(|key| constant_time_eq(key.as_bytes(), expected))
}

/// The key presented by the request: `Authorization: apikey <key>` (scheme case-insensitive)
/// first, then `X-API-Key: <key>` — Centrifugo's order.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut parts = value.split_whitespace();
        if let (Some(scheme), Some(key), None) = (parts.next(), parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("apikey") {
                return Some(key);
            }
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Compares without an early exit on the first differing byte, so the time taken does not
/// reveal how much of a guessed key is right (the length may leak, as with Go's
/// `subtle.ConstantTimeCompare`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `{code, message}` of an error reply.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: u32,
    pub message: &'a str,
}

impl<'a> From<&'a ApiError> for ErrorBody<'a> {
    fn from(e: &'a ApiError) -> Self {
        ErrorBody {
            code: e.code,
            message: &e.message,
        }
    }
}

/// `{"error":{"code":N,"message":"…"}}`.
pub fn error_json(e: &ApiError) -> String {
    #[derive(Serialize)]
    struct ErrorReply<'a> {
        error: ErrorBody<'a>,
    }
    serde_json::to_string(&ErrorReply {
        error: ErrorBody::from(e),
    })
    .unwrap_or_else(|_| r#"{"error":{"code":100,"message":"internal server error"}}"#.to_owned())
}

fn record_error(method: &'static str, code: String) {
    metrics::counter!(METRIC_ERRORS, "method" => method, "code" => code).increment(1);
}

fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// HTTP 200 with a JSON body.
pub fn json(body: String) -> Response<Full<Bytes>> {
    response(StatusCode::OK, Some("application/json"), Bytes::from(body))
}

/// A plain-text answer (400/404).
pub fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    response(status, Some("text/plain; charset=utf-8"), Bytes::from(text))
}

/// An answer without a body (401).
pub fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    response(status, None, Bytes::new())
}
