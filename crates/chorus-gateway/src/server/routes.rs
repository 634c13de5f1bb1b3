//! The request router.
//!
//! | path | answer |
//! |---|---|
//! | `websocket.handler_prefix` (`/connection/websocket`) | WebSocket upgrade to a client session |
//! | `/connection/echo` (when `websocket.echo_endpoint`) | WebSocket echo (Autobahn) |
//! | `http_stream.handler_prefix`, `sse.handler_prefix` (when enabled) | a streaming session ([`crate::emulation`]) |
//! | `emulation.handler_prefix` (when either is enabled) | commands of a streaming session |
//! | `POST {http_api.handler_prefix}/<method>`, `POST {prefix}` | [`crate::api::handle`] (405 other methods, then 401, 413, 408 — see below) |
//! | `/health` | 200 `{}` |
//! | `/ready`, `/ready?verbose` | 200, or 503 while draining or before the engine was reachable ([`super::readiness`]) |
//! | `/metrics` | Prometheus text (docs/metrics.md) |
//! | `/`, `/index.html`, `/app.js`, `/style.css`, `GET /demo/token?name=` | demo page and token (when `demo.enabled`) |
//! | `/admin`, `/admin/…` | the admin console (when `admin.enabled`; [`crate::admin`], [`admin`]) |
//!
//! Anything else is 404. Every answer is counted in `chorus_http_requests_total{route,status}`.
//! With `http_server.internal_port` the API, `/health`, `/ready`, `/metrics` and `/admin…` are
//! served on the internal listener only and the rest on the external one only ([`Surface`]); a
//! route asked on the other listener is 404.
//!
//! An API request is checked in this order, each refusal closing the connection
//! (`Connection: close`) since the body is left unread: a method other than POST → 405; no
//! valid key in the headers → 401, before a byte of the body is read; a `Content-Length` over
//! `http_server.max_request_body_size` → 413; then the body is read, and must be complete
//! within `http_server.request_timeout` of the request's first byte (→ 408) and stay within
//! the size bound when chunked (→ 413).
//!
//! Each request moves its connection's registry entry ([`super::conns`]): *busy* once the
//! request is complete (at once for routes without a body, after the body for the API),
//! *upgraded* on a `101`, *idle* when the answer is produced.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

mod admin;

use super::conns::Conn;
use super::{ServerState, Surface};
use crate::ws::{self, Endpoint};
use crate::{api, auth, demo, emulation, metrics};

/// Path of the echo endpoint.
pub const ECHO_PATH: &str = "/connection/echo";

type Resp = Response<Full<Bytes>>;

/// Routes one request arriving on `conn` through a listener serving `surface`.
pub async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    surface: Surface,
    state: &ServerState,
    conn: &Conn,
) -> Response<emulation::Body> {
    let config = &state.config;
    let path = req.uri().path();
    let kind = if config.http_stream.enabled && path == config.http_stream.handler_prefix {
        Some(emulation::Kind::HttpStream)
    } else if config.sse.enabled && path == config.sse.handler_prefix {
        Some(emulation::Kind::Sse)
    } else {
        None
    };
    if let Some(kind) = kind.filter(|_| surface != Surface::Internal) {
        // A POST stays pending (sheddable at the connection budget) until its body is read
        // (`read_limited` marks it busy then); anything else is answered from its headers.
        if req.method() != Method::POST {
            conn.set_busy();
        }
        let resp = emulation::open(req, peer, kind, state, conn).await;
        metrics::http_request(kind.as_str(), resp.status().as_u16());
        return resp;
    }
    route_complete(req, peer, surface, state, conn)
        .await
        .map(http_body_util::Either::Left)
}

async fn route_complete(
    req: Request<Incoming>,
    peer: SocketAddr,
    surface: Surface,
    state: &ServerState,
    conn: &Conn,
) -> Resp {
    let internal = is_internal(req.uri().path(), &state.config.http_api.handler_prefix);
    let served = match surface {
        Surface::All => true,
        Surface::External => !internal,
        Surface::Internal => internal,
    };
    if !served {
        // Not this listener's: as if the route did not exist (the body is not read).
        conn.set_busy();
        let resp = text(StatusCode::NOT_FOUND, "not found\n");
        metrics::http_request("not_found", resp.status().as_u16());
        return resp;
    }
    let (name, resp) = dispatch(req, peer, state, conn).await;
    metrics::http_request(name, resp.status().as_u16());
    resp
}

/// The routes of the internal listener: the server API, `/metrics`, `/health`, `/ready` and
/// the admin console.
fn is_internal(path: &str, api_prefix: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
        || api_method(path, api_prefix).is_some()
        || crate::admin::is_admin_path(path)
}

async fn dispatch(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: &ServerState,
    conn: &Conn,
) -> (&'static str, Resp) {
    let config = &state.config;
    let path = req.uri().path().to_owned();
    if let Some(method) = api_method(&path, &config.http_api.handler_prefix) {
        let method = method.to_owned();
        if !config.http_api.access_log {
            return ("api", api_request(req, &method, state, conn).await);
        }
        let started = std::time::Instant::now();
        let http_method = req.method().clone();
        let resp = api_request(req, &method, state, conn).await;
        let bytes = hyper::body::Body::size_hint(resp.body())
            .exact()
            .unwrap_or(0);
        tracing::info!(
            target: "chorus::access",
            api_method = %method,
            http_method = %http_method,
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            response_bytes = bytes,
            peer = %peer,
            "http api request"
        );
        return ("api", resp);
    }
    if config.admin.enabled && crate::admin::is_admin_path(&path) {
        return admin::handle(req, state, conn).await;
    }
    if (config.http_stream.enabled || config.sse.enabled) && path == config.emulation.handler_prefix
    {
        return ("emulation", emulation::emulate(req, state, conn).await);
    }
    // Every other route answers from the headers alone.
    conn.set_busy();
    if path == config.websocket.handler_prefix {
        let node = &state.node;
        return (
            "websocket",
            ws::upgrade(
                req,
                Some(peer),
                Endpoint::Client(node),
                &state.ws,
                Some(conn),
            ),
        );
    }
    if config.websocket.echo_endpoint && path == ECHO_PATH {
        return (
            "echo",
            ws::upgrade(req, Some(peer), Endpoint::Echo, &state.ws, Some(conn)),
        );
    }
    match path.as_str() {
        "/health" => return ("health", json(StatusCode::OK, "{}")),
        "/ready" => {
            let verbose = super::readiness::wants_verbose(req.uri().query());
            let answer = super::readiness::answer(state, verbose);
            let status = if answer.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return ("ready", json(status, &answer.body));
        }
        "/metrics" => {
            let text = crate::metrics::scrape(&state.metrics, &state.node);
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return ("metrics", resp);
        }
        _ => {}
    }
    if config.demo.enabled && matches!(*req.method(), Method::GET | Method::HEAD) {
        if path == demo::TOKEN_PATH {
            return ("demo_token", demo_token(req.uri().query(), state));
        }
        if let Some((content_type, body)) = demo::asset(&path) {
            let mut resp = Response::new(Full::new(Bytes::from_static(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            return ("demo", resp);
        }
    }
    ("not_found", text(StatusCode::NOT_FOUND, "not found\n"))
}

/// `Some(method)` when `path` is the API prefix (legacy endpoint, method `""`) or
/// `prefix/<method>`.
fn api_method<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() || rest == "/" {
        return Some("");
    }
    rest.strip_prefix('/')
}

async fn api_request(
    req: Request<Incoming>,
    method: &str,
    state: &ServerState,
    conn: &Conn,
) -> Resp {
    if req.method() != Method::POST {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    if let Some(refused) = api::unauthorized(&state.config, method, req.headers()) {
        return refused;
    }
    match read_body(req, state, conn, Some(method)).await {
        Ok((parts, body)) => {
            api::handle(&state.node, &state.config, method, &parts.headers, body).await
        }
        Err(refused) => refused,
    }
}

/// Reads the body of a request that has one (the server API, the admin console) within
/// `http_server.max_request_body_size` (413) and `http_server.request_timeout` (408), then
/// marks the connection busy. A refusal closes the connection. `api_method`, when set, also
/// counts the refusal under `chorus_api_errors_total`.
async fn read_body(
    req: Request<Incoming>,
    state: &ServerState,
    conn: &Conn,
    api_method: Option<&str>,
) -> Result<(http::request::Parts, Bytes), Resp> {
    let limit = state.config.http_server.max_request_body_size;
    read_body_within(req, state, conn, api_method, limit).await
}

/// [`read_body`] with another size bound (the emulation endpoints have their own).
pub(crate) async fn read_limited(
    req: Request<Incoming>,
    state: &ServerState,
    conn: &Conn,
    limit: usize,
) -> Result<(http::request::Parts, Bytes), Resp> {
    read_body_within(req, state, conn, None, limit).await
}

async fn read_body_within(
    req: Request<Incoming>,
    state: &ServerState,
    conn: &Conn,
    api_method: Option<&str>,
    limit: usize,
) -> Result<(http::request::Parts, Bytes), Resp> {
    let refusal = |status| {
        if let Some(method) = api_method {
            api::record_http_refusal(method, status);
        }
    };
    let http = &state.config.http_server;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        refusal(StatusCode::PAYLOAD_TOO_LARGE);
        return Err(closing(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        )));
    }
    let deadline = conn.request_deadline(http.request_timeout.get());
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Err(_elapsed) => {
            tracing::debug!("request body not complete by http_server.request_timeout");
            metrics::http_request_timeout(metrics::TimeoutPhase::Body);
            refusal(StatusCode::REQUEST_TIMEOUT);
            return Err(closing(text(
                StatusCode::REQUEST_TIMEOUT,
                "request timeout\n",
            )));
        }
        Ok(Err(error)) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                refusal(StatusCode::PAYLOAD_TOO_LARGE);
                return Err(closing(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large\n",
                )));
            }
            tracing::debug!(%error, "reading a request body failed");
            refusal(StatusCode::BAD_REQUEST);
            return Err(closing(text(
                StatusCode::BAD_REQUEST,
                "cannot read request body\n",
            )));
        }
    };
    conn.set_busy();
    Ok((parts, body))
}

/// Marks an answer as the last one of its connection (its request body was left unread).
fn closing(mut resp: Resp) -> Resp {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `GET /demo/token?name=N` → `{"token": HS256 JWT}` with `sub = name`, `info = {"name": name}`,
/// valid one hour. 404 without an HMAC key (the page then connects without a token).
fn demo_token(query: Option<&str>, state: &ServerState) -> Resp {
    let secret = &state.config.client.token.hmac_secret_key;
    if secret.is_empty() {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let raw = query_param(query.unwrap_or(""), "name").unwrap_or_default();
    let Some(name) = demo::validate_demo_name(&raw) else {
        return text(StatusCode::BAD_REQUEST, "invalid name\n");
    };
    let exp = chorus_core::clock::unix_now() + 3600;
    let claims = serde_json::json!({"sub": name, "info": {"name": name}, "exp": exp});
    match auth::sign_hs256(secret, &claims) {
        Ok(token) => json(
            StatusCode::OK,
            &serde_json::json!({ "token": token }).to_string(),
        ),
        Err(error) => {
            tracing::warn!(%error, "signing a demo token failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign token\n")
        }
    }
}

/// The decoded value of the first `key=` parameter of a query string
/// (`application/x-www-form-urlencoded` rules: `%XX` escapes, `+` is a space). A malformed
/// escape stays as written and invalid UTF-8 becomes U+FFFD, so callers validate the value.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn json(status: StatusCode, body: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        assert_eq!(api_method("/api", "/api"), Some(""));
        assert_eq!(api_method("/api/publish", "/api"), Some("publish"));
        assert_eq!(api_method("/apix", "/api"), None);
        assert_eq!(api_method("/other", "/api"), None);
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            query_param("name=Ann+Lee", "name").as_deref(),
            Some("Ann Lee")
        );
        assert_eq!(
            query_param("a=1&name=%C3%A9t%C3%A9", "name").as_deref(),
            Some("été")
        );
        // A malformed escape stays as written (the demo name check refuses the `%`).
        assert_eq!(query_param("name=%zz", "name").as_deref(), Some("%zz"));
        assert_eq!(demo::validate_demo_name("%zz"), None);
        assert_eq!(query_param("x=1", "name"), None);
        assert_eq!(query_param("na%6De=Bo", "name").as_deref(), Some("Bo"));
    }
}
