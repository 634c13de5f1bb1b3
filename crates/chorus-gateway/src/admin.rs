//! The admin console: a web page for operators at `/admin` (`admin.enabled`, off by default;
//! on the internal listener when `http_server.internal_port` is set). See `docs/admin.md`.
//!
//! Parts:
//! * this file — the route table under `/admin` ([`route`]), the embedded page, the login
//!   ([`login`], with its node-wide brake [`AdminState`]) and the session check
//!   ([`check_session`]);
//! * [`token`] — the session tokens (HS256 with `admin.secret`, audience `chorus-admin`).
//!
//! The page (`admin/index.html`, `admin/app.js`, `admin/style.css`) is compiled into the binary
//! with `include_bytes!`: hand-written, no third-party code, works offline. It acts only
//! through the server API: `POST /admin/api/<method>` runs [`crate::api::dispatch`] — the same
//! code as `POST /api/<method>` — authorized by the session token (`Authorization: token <t>`)
//! instead of the API key, like Centrifugo's admin.
//!
//! | path | answer |
//! |---|---|
//! | `GET /admin` | 308 to `admin/` (the page refers to its files relatively) |
//! | `GET /admin/`, `/admin/index.html`, `/admin/app.js`, `/admin/style.css` | the page |
//! | `POST /admin/auth` `{"password":"…"}` | 200 `{"token":"…","expires_in":S}`; 400 bad body; 401 wrong password; 429 no attempt left |
//! | `POST /admin/api/<method>` | the server API's answer; 401 without a valid session |
//!
//! Anything else under `/admin` is 404, and everything is 404 while the console is off.

pub mod token;

use std::sync::Mutex;

use chorus_core::client::rate::{Bucket, Verdict};
use serde::Deserialize;

use crate::config::{AdminConfig, ADMIN_PREFIX};
use crate::metrics::{self, AdminLogin};

const INDEX_HTML: &[u8] = include_bytes!("admin/index.html");
const APP_JS: &[u8] = include_bytes!("admin/app.js");
const STYLE_CSS: &[u8] = include_bytes!("admin/style.css");

/// What a path under `/admin` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/admin`: redirect to `admin/`.
    Redirect,
    /// A file of the page: (content type, body).
    Asset(&'static str, &'static [u8]),
    /// `/admin/auth`.
    Auth,
    /// `/admin/api/<method>` (an unknown method is the API's 404).
    Api(&'a str),
    /// Anything else under `/admin`.
    NotFound,
}

/// Whether `path` is `/admin` or below it.
pub fn is_admin_path(path: &str) -> bool {
    path.strip_prefix(ADMIN_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The console route of `path`, `None` when `path` is not under `/admin`.
pub fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix(ADMIN_PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(match rest {
        "" => Route::Redirect,
        "/" | "/index.html" => Route::Asset("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => Route::Asset("text/javascript; charset=utf-8", APP_JS),
        "/style.css" => Route::Asset("text/css; charset=utf-8", STYLE_CSS),
        "/auth" => Route::Auth,
        _ => match rest.strip_prefix("/api/") {
            Some(method) if !method.is_empty() => Route::Api(method),
            _ => Route::NotFound,
        },
    })
}

/// Per-server state of the console: the login brake (one bucket for the whole node, so its
/// memory does not grow with the number of peers trying).
#[derive(Debug)]
pub struct AdminState {
    logins: Mutex<Bucket>,
}

impl AdminState {
    pub fn new(config: &AdminConfig) -> AdminState {
        AdminState {
            logins: Mutex::new(Bucket::new(config.login_limit())),
        }
    }

    /// Takes one login attempt from the bucket; `false` when none is left.
    fn admit_login(&self) -> bool {
        // A poisoned lock only means a panic elsewhere mid-update; the bucket stays usable.
        let mut bucket = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        bucket.take(tokio::time::Instant::now()) == Verdict::Run
    }
}

/// How a login ended, with what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// 200 `{"token": …, "expires_in": seconds}`.
    Ok { token: String, expires_in: u64 },
    /// 400 with this explanation.
    BadRequest(String),
    /// 401.
    WrongPassword,
    /// 429: no attempt left in `admin.login_rate_limit`.
    Throttled,
    /// 500: the token could not be signed (no `admin.secret`).
    Internal,
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

/// Handles a login body: decoded first (a bad body costs no attempt), then one attempt is
/// taken from the brake, then the password is compared in constant time. Counted in
/// `chorus_admin_logins_total{result}`.
pub fn login(config: &AdminConfig, state: &AdminState, body: &[u8]) -> Login {
    let password = match serde_json::from_slice::<LoginBody>(body) {
        Ok(b) => b.password,
        Err(e) => {
            metrics::admin_login(AdminLogin::BadRequest);
            return Login::BadRequest(format!(
                "expected {{\"password\": \"…\"}}: {}",
                crate::api::describe_json_error(&e)
            ));
        }
    };
    if !state.admit_login() {
        metrics::admin_login(AdminLogin::Throttled);
        return Login::Throttled;
    }
    if !crate::api::key_matches(Some(&password), &config.password) {
        metrics::admin_login(AdminLogin::WrongPassword);
        tracing::warn!("admin console login with a wrong password");
        return Login::WrongPassword;
    }
    let ttl = config.session_ttl.get();
    match token::sign(&config.secret, ttl, chorus_core::clock::unix_now()) {
        Ok(token) => {
            metrics::admin_login(AdminLogin::Ok);
            tracing::info!("admin console login");
            Login::Ok {
                token,
                expires_in: ttl.as_secs(),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "signing an admin session token failed");
            Login::Internal
        }
    }
}

/// Checks the session token of a console API request (`Authorization: token <t>`).
pub fn check_session(
    config: &AdminConfig,
    headers: &http::HeaderMap,
) -> Result<(), token::SessionError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token::of_authorization)
        .ok_or(token::SessionError::Missing)?;
    token::verify(&config.secret, presented)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config() -> AdminConfig {
        AdminConfig {
            enabled: true,
            password: "correct horse battery".into(),
            secret: "s".repeat(32),
            login_rate_limit: 1,
            login_burst: 3,
            ..AdminConfig::default()
        }
    }

    #[test]
    fn routes_under_admin() {
        assert_eq!(route("/admin"), Some(Route::Redirect));
        assert_eq!(route("/admin/auth"), Some(Route::Auth));
        assert_eq!(route("/admin/api/publish"), Some(Route::Api("publish")));
        assert_eq!(route("/admin/api/"), Some(Route::NotFound));
        assert_eq!(route("/admin/nope"), Some(Route::NotFound));
        assert_eq!(route("/admin/api"), Some(Route::NotFound));
        assert_eq!(route("/administrator"), None);
        assert_eq!(route("/"), None);
        assert!(matches!(
            route("/admin/"),
            Some(Route::Asset("text/html; charset=utf-8", _))
        ));
        assert!(matches!(
            route("/admin/app.js"),
            Some(Route::Asset("text/javascript; charset=utf-8", _))
        ));
        assert!(matches!(
            route("/admin/style.css"),
            Some(Route::Asset("text/css; charset=utf-8", _))
        ));
        assert_eq!(route("/admin/../Cargo.toml"), Some(Route::NotFound));
    }

    #[test]
    fn page_is_self_contained() {
        let html = std::str::from_utf8(INDEX_HTML).unwrap();
        assert!(html.contains("<script src=\"app.js\"></script>"));
        assert!(html.contains("href=\"style.css\""));
        for external in [
            "src=\"http",
            "src=\"//",
            "href=\"http",
            "href=\"//",
            "@import",
        ] {
            assert!(!html.contains(external), "external reference {external}");
        }
        let js = std::str::from_utf8(APP_JS).unwrap();
        for call in ["'auth'", "'api/'", "Authorization", "'token '"] {
            assert!(js.contains(call), "app.js lacks {call}");
        }
        assert!(!js.contains("http://") && !js.contains("https://"));
        let css = std::str::from_utf8(STYLE_CSS).unwrap();
        assert!(!css.contains("url(http") && !css.contains("@import"));
    }

    #[tokio::test(start_paused = true)]
    async fn login_checks_body_then_brake_then_password() {
        let config = config();
        let state = AdminState::new(&config);
        assert!(matches!(
            login(&config, &state, b"not json"),
            Login::BadRequest(_)
        ));
        assert!(matches!(
            login(&config, &state, br#"{"pass":"x"}"#),
            Login::BadRequest(_)
        ));
        // Bad bodies took no attempt: the burst of 3 is whole.
        assert_eq!(
            login(&config, &state, br#"{"password":"wrong"}"#),
            Login::WrongPassword
        );
        assert_eq!(
            login(&config, &state, br#"{"password":"correct horse"}"#),
            Login::WrongPassword
        );
        let Login::Ok { token, expires_in } =
            login(&config, &state, br#"{"password":"correct horse battery"}"#)
        else {
            panic!("right password refused");
        };
        assert_eq!(expires_in, 24 * 3600);
        assert_eq!(token::verify(&config.secret, &token), Ok(()));
        // The burst is spent: even the right password waits for a refill (1 per second).
        let right = br#"{"password":"correct horse battery"}"#;
        assert_eq!(login(&config, &state, right), Login::Throttled);
        tokio::time::advance(std::time::Duration::from_millis(1100)).await;
        assert!(matches!(login(&config, &state, right), Login::Ok { .. }));
        assert_eq!(login(&config, &state, right), Login::Throttled);
    }

    #[test]
    fn sessions_are_checked_from_the_header() {
        let config = config();
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            check_session(&config, &headers),
            Err(token::SessionError::Missing)
        );
        let t = token::sign(
            &config.secret,
            config.session_ttl.get(),
            chorus_core::clock::unix_now(),
        )
        .unwrap();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("apikey {t}").parse().unwrap(),
        );
        assert_eq!(
            check_session(&config, &headers),
            Err(token::SessionError::Missing)
        );
        headers.insert(
            http::header::AUTHORIZATION,
            format!("token {t}").parse().unwrap(),
        );
        assert_eq!(check_session(&config, &headers), Ok(()));
        let other = AdminConfig {
            secret: "t".repeat(32),
            ..config
        };
        assert!(matches!(
            check_session(&other, &headers),
            Err(token::SessionError::Invalid(_))
        ));
    }
}
