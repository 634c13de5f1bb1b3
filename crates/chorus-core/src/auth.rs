//! Token verification port. The engine asks a [`TokenVerifier`] to check connection and
//! subscription tokens; the gateway implements it with JWT (HS/RS/ES). The claims are plain
//! data here so the core never depends on a JWT library.

use std::collections::HashMap;

use bytes::Bytes;

/// Why a token was refused. `Expired` answers error 109 (the SDK refreshes and retries);
/// `Invalid` disconnects with 3500 (connection token) or answers 103 (subscription token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Per-subscription override of namespace options (JWT `override`, server API `override`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOverride {
    pub presence: Option<bool>,
    pub join_leave: Option<bool>,
    pub force_push_join_leave: Option<bool>,
    pub force_positioning: Option<bool>,
    pub force_recovery: Option<bool>,
}

/// Options of one server-side subscription from the connection token `subs` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSubOptions {
    /// Channel info (raw JSON) attached to this client's presence/join/leave in the channel.
    pub info: Bytes,
    /// Data returned in the subscribe result.
    pub data: Bytes,
    pub override_options: SubscribeOverride,
}

/// Verified claims of a connection token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionClaims {
    /// `sub`: user id; empty = anonymous.
    pub user: String,
    /// `exp` (unix seconds), if present.
    pub exp: Option<i64>,
    /// `expire_at`: connection expiry decoupled from `exp`; `Some(0)` = never expire.
    pub expire_at: Option<i64>,
    /// `info` / `b64info`: connection info (raw JSON bytes or decoded base64).
    pub info: Bytes,
    /// `channels`: server-side subscriptions to establish at connect.
    pub channels: Vec<String>,
    /// `subs`: server-side subscriptions with options.
    pub subs: HashMap<String, ServerSubOptions>,
}

/// `expire_at` overrides `exp`; `expire_at: 0` means "never expires".
fn expiry(expire_at: Option<i64>, exp: Option<i64>) -> Option<i64> {
    match expire_at {
        Some(0) => None,
        Some(t) => Some(t),
        None => exp,
    }
}

impl ConnectionClaims {
    /// The unix time at which the connection expires, if it does.
    pub fn expires_at(&self) -> Option<i64> {
        expiry(self.expire_at, self.exp)
    }
}

/// Verified claims of a subscription token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionClaims {
    /// `sub`: must equal the connection's user.
    pub user: String,
    /// `channel`: must equal the requested channel.
    pub channel: String,
    /// `client`: if set, binds the token to one connection id.
    pub client: String,
    /// `info` / `b64info` → channel info.
    pub info: Bytes,
    /// `data` / `b64data` → returned in the subscribe result.
    pub data: Bytes,
    pub exp: Option<i64>,
    pub expire_at: Option<i64>,
    pub override_options: SubscribeOverride,
}

impl SubscriptionClaims {
    /// The unix time at which the subscription expires, if it does.
    pub fn expires_at(&self) -> Option<i64> {
        expiry(self.expire_at, self.exp)
    }
}

/// Verifies tokens. Implementations must be cheap to call concurrently (no I/O on the hot path).
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies a connection token (signature, `exp`, `aud`/`iss` if configured).
    fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, TokenError>;
    /// Verifies a subscription token.
    fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, TokenError>;
}

/// A verifier that refuses every token; used when no key is configured.
#[derive(Debug, Default)]
pub struct NoTokens;

impl TokenVerifier for NoTokens {
    fn verify_connection(&self, _token: &str) -> Result<ConnectionClaims, TokenError> {
        Err(TokenError::Invalid(
            "no token verification key configured".into(),
        ))
    }
    fn verify_subscription(&self, _token: &str) -> Result<SubscriptionClaims, TokenError> {
        Err(TokenError::Invalid(
            "no token verification key configured".into(),
        ))
    }
}
