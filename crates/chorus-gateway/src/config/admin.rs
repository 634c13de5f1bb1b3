//! `admin.*`: the web console at `/admin` (see `docs/admin.md`), off by default.

use serde::{Deserialize, Serialize};

use chorus_core::duration::ConfigDuration;
use chorus_core::options::CommandRateLimit;

use super::validate::{is_loopback_address, MIN_HMAC_KEY_BYTES};
use super::Config;

/// Shortest `admin.password` (bytes) that passes without a warning.
pub const MIN_ADMIN_PASSWORD_BYTES: usize = 12;

/// The path every console route lives under (`/admin`, `/admin/…`).
pub const ADMIN_PREFIX: &str = "/admin";

/// `admin.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Serve the console at `/admin` (on the internal listener when `http_server.internal_port`
    /// is set). Default false, also in the embedded default.
    pub enabled: bool,
    /// The password `POST /admin/auth` expects. Required when `enabled`. Pass it as
    /// `CHORUS_ADMIN_PASSWORD` rather than in the config file. Never logged.
    pub password: String,
    /// HMAC-SHA256 key of the session tokens the console gets at login. Required when
    /// `enabled`; at least 32 bytes recommended; must differ from the client token keys.
    /// Changing it ends every session.
    pub secret: String,
    /// Lifetime of a session token. Default 24h; must be > 0.
    pub session_ttl: ConfigDuration,
    /// Login attempts (right or wrong password) refilled per second, node-wide; an attempt
    /// finding none left is answered 429 without its password being checked. Default 1; at
    /// least 1.
    pub login_rate_limit: u32,
    /// Login attempts allowed at once before `login_rate_limit` applies. Default 10; 0 = the
    /// same as `login_rate_limit`.
    pub login_burst: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: false,
            password: String::new(),
            secret: String::new(),
            session_ttl: ConfigDuration::from_secs(24 * 3600),
            login_rate_limit: 1,
            login_burst: 10,
        }
    }
}

impl AdminConfig {
    /// The login brake as a token bucket (never disconnects: there is no connection to close).
    pub fn login_limit(&self) -> CommandRateLimit {
        CommandRateLimit {
            rate: self.login_rate_limit,
            burst: self.login_burst,
            disconnect_after: 0,
        }
    }
}

/// Problems of `admin.*`, each naming its key (nothing is checked while the console is off).
pub(super) fn problems(config: &Config) -> Vec<String> {
    let a = &config.admin;
    let mut p = Vec::new();
    if !a.enabled {
        return p;
    }
    if a.password.is_empty() {
        p.push(
            "admin.enabled is true but admin.password is empty: set the console password \
             (e.g. CHORUS_ADMIN_PASSWORD)"
                .into(),
        );
    }
    if a.secret.is_empty() {
        p.push(
            "admin.enabled is true but admin.secret is empty: set a random key for the session \
             tokens (e.g. CHORUS_ADMIN_SECRET=$(openssl rand -hex 32))"
                .into(),
        );
    }
    for (key, value) in [
        (
            "client.token.hmac_secret_key",
            &config.client.token.hmac_secret_key,
        ),
        (
            "client.subscription_token.hmac_secret_key",
            &config.client.subscription_token.hmac_secret_key,
        ),
    ] {
        if !a.secret.is_empty() && a.secret == *value {
            p.push(format!(
                "admin.secret must differ from {key}: whoever can sign client tokens could \
                 sign console sessions"
            ));
        }
    }
    if a.session_ttl.is_zero() {
        p.push("admin.session_ttl must be greater than 0".into());
    }
    if a.login_rate_limit == 0 {
        p.push("admin.login_rate_limit must be at least 1 (login attempts per second)".into());
    }
    for (key, prefix) in [
        ("websocket.handler_prefix", &config.websocket.handler_prefix),
        ("http_api.handler_prefix", &config.http_api.handler_prefix),
    ] {
        let prefix = prefix.trim_end_matches('/');
        if prefix == ADMIN_PREFIX || prefix.starts_with("/admin/") {
            p.push(format!(
                "{key} ({prefix:?}) is under {ADMIN_PREFIX}, where the admin console lives"
            ));
        }
    }
    p
}

/// Legal but risky `admin.*` settings.
pub(super) fn warnings(config: &Config) -> Vec<String> {
    let a = &config.admin;
    let mut w = Vec::new();
    if !a.enabled {
        return w;
    }
    if !a.secret.is_empty() && a.secret.len() < MIN_HMAC_KEY_BYTES {
        w.push(format!(
            "admin.secret is {} bytes: HMAC keys shorter than {MIN_HMAC_KEY_BYTES} bytes can be \
             brute-forced from one session token (use e.g. `openssl rand -hex 32`)",
            a.secret.len()
        ));
    }
    if !a.password.is_empty() && a.password.len() < MIN_ADMIN_PASSWORD_BYTES {
        w.push(format!(
            "admin.password is {} bytes: use at least {MIN_ADMIN_PASSWORD_BYTES} (the console \
             can publish to any channel and disconnect any user)",
            a.password.len()
        ));
    }
    let h = &config.http_server;
    if h.internal_port == 0 && !is_loopback_address(&h.address) {
        w.push(format!(
            "admin.enabled is true without http_server.internal_port and http_server.address \
             {:?} is not loopback: the admin console is served where clients connect (set \
             http_server.internal_port to keep it on a private listener)",
            h.address.trim()
        ));
    }
    w
}
