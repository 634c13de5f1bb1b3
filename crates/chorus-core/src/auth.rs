//! Token verification port. The engine asks a [`TokenVerifier`] to check connection and
//! subscription tokens; the gateway implements it with JWT (HS/RS/ES/EdDSA, static keys or a
//! JWKS endpoint). The claims are plain data here so the core never depends on a JWT library.
//!
//! Verification is synchronous; what needs I/O (a JWKS key not cached yet) is a separate
//! [`KeyFetch`] the engine awaits first — see [`connection_claims`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

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
    /// `meta`: connection meta (raw JSON), never sent to the client; hooks receive it with
    /// `include_connection_meta`. Also what a connect hook's `meta` result becomes.
    pub meta: Option<Bytes>,
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

/// Work a verifier needs done before it can check a token (fetching a JWKS document). It owns
/// what it needs, so the engine can await it without borrowing the verifier.
pub type KeyFetch = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Verifies tokens. `verify_*` must be cheap to call concurrently and never do I/O.
///
/// Why two steps instead of an async `verify_*`: almost every token is checked against a key
/// in memory (an HMAC secret, a PEM key, a cached JWKS key), and that hot path stays a plain
/// function call with no boxed future. Only a verifier that must fetch a key returns a
/// [`KeyFetch`] from `prepare_*`; the engine awaits it and then calls `verify_*`, which finds
/// the key or reports the token invalid (a failed fetch leaves it missing).
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies a connection token (signature, `exp`, `aud`/`iss` if configured).
    fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, TokenError>;
    /// Verifies a subscription token.
    fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, TokenError>;
    /// What to await before [`verify_connection`](Self::verify_connection) can check `token`;
    /// `None` (the default) when the key is at hand.
    fn prepare_connection(&self, _token: &str) -> Option<KeyFetch> {
        None
    }
    /// What to await before [`verify_subscription`](Self::verify_subscription) can check
    /// `token`; `None` (the default) when the key is at hand.
    fn prepare_subscription(&self, _token: &str) -> Option<KeyFetch> {
        None
    }
}

/// Verifies a connection token: awaits the verifier's [`KeyFetch`] if it needs one, then
/// checks the token. Every connection-token check in the engine goes through here.
pub async fn connection_claims(
    tokens: &dyn TokenVerifier,
    token: &str,
) -> Result<ConnectionClaims, TokenError> {
    if let Some(fetch) = tokens.prepare_connection(token) {
        fetch.await;
    }
    tokens.verify_connection(token)
}

/// Verifies a subscription token like [`connection_claims`].
pub async fn subscription_claims(
    tokens: &dyn TokenVerifier,
    token: &str,
) -> Result<SubscriptionClaims, TokenError> {
    if let Some(fetch) = tokens.prepare_subscription(token) {
        fetch.await;
    }
    tokens.verify_subscription(token)
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
