//! HTTP answers of the admin console routes ([`crate::admin`] has the route table and the
//! rules). Route names in `chorus_http_requests_total`: `admin` (the page), `admin_auth`,
//! `admin_api`; `not_found` for other paths under `/admin`.
//!
//! A console API call is checked in the server API's order, with the session token in place
//! of the API key: a method other than POST → 405; no valid session → 401 before a byte of the
//! body is read; then the body under the same bounds as the API (413, 408). The login reads
//! its body under those bounds too.

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{closing, json, read_body, text, Resp};
use crate::admin::{self, Login, Route};
use crate::api;
use crate::server::conns::Conn;
use crate::server::ServerState;

/// Answers a request under `/admin` (the console is enabled).
pub(super) async fn handle(
    req: Request<Incoming>,
    state: &ServerState,
    conn: &Conn,
) -> (&'static str, Resp) {
    let path = req.uri().path().to_owned();
    let Some(route) = admin::route(&path) else {
        conn.set_busy();
        return ("not_found", text(StatusCode::NOT_FOUND, "not found\n"));
    };
    match route {
        Route::Redirect => {
            conn.set_busy();
            let mut resp = text(StatusCode::PERMANENT_REDIRECT, "see admin/\n");
            // Relative, so the console also works behind a proxy that adds a path prefix.
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("admin/"));
            ("admin", resp)
        }
        Route::Asset(content_type, body) => {
            conn.set_busy();
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return ("admin", closing(not_allowed("GET, HEAD")));
            }
            let mut resp = Response::new(Full::new(Bytes::from_static(body)));
            let headers = resp.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // The page loads nothing but its own files and talks only to this origin.
            headers.insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
                ),
            );
            headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
            ("admin", resp)
        }
        Route::Auth => ("admin_auth", auth(req, state, conn).await),
        Route::Api(method) => ("admin_api", api_call(req, method, state, conn).await),
        Route::NotFound => {
            conn.set_busy();
            ("not_found", text(StatusCode::NOT_FOUND, "not found\n"))
        }
    }
}

/// `POST /admin/auth`.
async fn auth(req: Request<Incoming>, state: &ServerState, conn: &Conn) -> Resp {
    if req.method() != Method::POST {
        conn.set_busy();
        return closing(not_allowed("POST"));
    }
    let body = match read_body(req, state, conn, None).await {
        Ok((_, body)) => body,
        Err(refused) => return refused,
    };
    match admin::login(&state.config.admin, &state.admin, &body) {
        Login::Ok { token, expires_in } => json(
            StatusCode::OK,
            &serde_json::json!({ "token": token, "expires_in": expires_in }).to_string(),
        ),
        Login::BadRequest(message) => plain(StatusCode::BAD_REQUEST, message),
        Login::WrongPassword => text(StatusCode::UNAUTHORIZED, "wrong password\n"),
        Login::Throttled => {
            let mut resp = text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many login attempts, try again later\n",
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Login::Internal => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot sign a session token\n",
        ),
    }
}

/// `POST /admin/api/<method>`: the server API behind the session token.
async fn api_call(req: Request<Incoming>, method: &str, state: &ServerState, conn: &Conn) -> Resp {
    if req.method() != Method::POST {
        conn.set_busy();
        return closing(not_allowed("POST"));
    }
    if let Err(error) = admin::check_session(&state.config.admin, req.headers()) {
        tracing::debug!(%error, "admin console call refused");
        conn.set_busy();
        // The body is left unread, so the connection closes.
        return closing(plain(StatusCode::UNAUTHORIZED, format!("{error}\n")));
    }
    match read_body(req, state, conn, Some(method)).await {
        Ok((_, body)) => api::dispatch(&state.node, method, body).await,
        Err(refused) => refused,
    }
}

fn not_allowed(allow: &'static str) -> Resp {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn plain(status: StatusCode, message: String) -> Resp {
    api::plain(status, message)
}
