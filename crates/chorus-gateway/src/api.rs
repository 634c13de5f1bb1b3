//! The HTTP server API, wire-compatible with Centrifugo's (`POST /api/<method>`, JSON), so the
//! PyPI `cent` client and existing integrations work unchanged. It is a thin mapper over the
//! typed server API of the core ([`chorus_core::api`]): JSON in, a typed request, the call,
//! JSON out. Validation and the `chorus_api_*` metrics of commands are the core's; this layer
//! adds only the HTTP-level answers and their metrics.
//!
//! Parts:
//! * this file — the entry point [`handle`]: API-key check, then [`dispatch`] (also what the
//!   admin console calls, authorized by its session instead): method routing, HTTP-level answers
//!   (401 / 400 / 404) and the response envelope `{"result":…}` / `{"error":…}`;
//! * [`requests`] — serde types of the request bodies, mapped onto the core's requests;
//! * [`results`] — the core's results rendered exactly as Centrifugo's API renders them;
//! * [`legacy`] — the single endpoint `POST /api` with `{"method","params"}` commands.
//!
//! HTTP statuses: 401 (empty body, `Connection: close`) for a missing or wrong key — checked
//! from the headers before the server reads the body (see [`unauthorized`]); 404 (plain text)
//! for an unknown method; 400 (plain text) for a body that is not JSON or has a field of the
//! wrong type; 200 for everything else, errors included (`{"error":{"code":N,"message":"…"}}`),
//! as `cent` expects. The server adds 405, 413 and 408 before a request gets here (see
//! `server::routes`). The reference is `docs/server-api.md`.

pub mod legacy;
pub mod requests;
pub mod results;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use chorus_core::api::{self, Method, UNKNOWN_METHOD_LABEL};
use chorus_core::{metrics as core_metrics, ApiError, Node};

use crate::config::Config;

/// The metric label of a path segment: the method's name, or `unknown`.
fn label(method: &str) -> &'static str {
    Method::from_name(method).map_or(UNKNOWN_METHOD_LABEL, Method::name)
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
    if let Some(refused) = unauthorized(config, method, headers) {
        return refused;
    }
    dispatch(node, method, body).await
}

/// Runs one API request whose caller is already authorized (by the API key in [`handle`], or
/// by an admin console session): method routing, decoding, the core call, the JSON answer.
pub async fn dispatch(node: &Node, method: &str, body: Bytes) -> Response<Full<Bytes>> {
    if method.is_empty() {
        return legacy::handle(node, &body).await;
    }
    let Some(method) = Method::from_name(method) else {
        record_error(UNKNOWN_METHOD_LABEL, "http_404".to_owned());
        return plain(StatusCode::NOT_FOUND, "unknown API method\n".to_owned());
    };
    let request = match requests::parse(method, &body) {
        Ok(request) => request,
        Err(e) => {
            core_metrics::api_request(method.name(), None);
            record_error(method.name(), "http_400".to_owned());
            return plain(
                StatusCode::BAD_REQUEST,
                format!("{}\n", describe_json_error(&e)),
            );
        }
    };
    match node.api().call(request).await {
        // `batch` answers top-level `replies`, not wrapped in `result`.
        Ok(api::Response::Batch(batch)) => json(results::batch_json(&batch)),
        Ok(response) => match results::render(&response) {
            Ok(result) => json(format!("{{\"result\":{}}}", result.get())),
            Err(e) => {
                record_error(method.name(), e.code.to_string());
                json(error_json(&e))
            }
        },
        Err(e) => json(error_json(&e)),
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
    record_error(label(method), "http_401".to_owned());
    let mut response = empty(StatusCode::UNAUTHORIZED);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// Counts an API request refused at the HTTP level before it reached [`handle`] (413, 408,
/// 400 for an unreadable body), under `chorus_api_errors_total{code="http_<status>"}`.
pub fn record_http_refusal(method: &str, status: StatusCode) {
    record_error(label(method), format!("http_{}", status.as_u16()));
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
    key_matches(presented_key(headers), &config.http_api.key)
}

/// Whether `presented` is the configured key `expected` (an empty `expected` matches nothing).
/// Shared by the HTTP and the gRPC API.
pub fn key_matches(presented: Option<&str>, expected: &str) -> bool {
    let expected = expected.as_bytes();
    if expected.is_empty() {
        return false;
    }
    // `subtle` compares without an early exit on the first differing byte, so the time taken
    // does not reveal how much of a guessed key is right (a length mismatch may, as with Go's
    // `subtle.ConstantTimeCompare`).
    presented.is_some_and(|key| key.as_bytes().ct_eq(expected).into())
}

/// The key of an `Authorization` value `apikey <key>` (scheme case-insensitive).
pub fn apikey_of_authorization(value: &str) -> Option<&str> {
    let mut parts = value.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(key), None) if scheme.eq_ignore_ascii_case("apikey") => Some(key),
        _ => None,
    }
}

/// The key presented by the request: `Authorization: apikey <key>` (scheme case-insensitive)
/// first, then `X-API-Key: <key>` — Centrifugo's order.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(apikey_of_authorization)
    {
        return Some(key);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
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
    core_metrics::api_error(method, code);
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
