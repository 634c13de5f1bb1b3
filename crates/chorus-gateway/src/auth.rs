//! JWT verification of connection and subscription tokens (Centrifugo-compatible claims and
//! keys), and HS256 signing for `chorus gentoken` and the demo token endpoint.
//!
//! Parts:
//! * [`keyset`] — one block's keys (static: HS*/RS*/ES256/ES384 chosen by `alg`, with the
//!   previous HMAC secret during a rotation; or a JWKS endpoint, by `kid`) and claim rules
//!   (`audience[_regex]`, `issuer[_regex]`, `user_id_claim`), checked in Centrifugo's order;
//! * [`jwks`] — the JWKS cache and its bounded fetcher (`jwks/http.rs`: the HTTP(S) `GET`);
//! * [`claims`] — wire shapes of the claims and their conversion into the core's types.
//!
//! `client.token` verifies connection tokens, and subscription tokens too unless
//! `client.subscription_token.enabled` builds a second, separate set.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use chorus_core::auth::{
    ConnectionClaims, KeyFetch, SubscriptionClaims, TokenError, TokenVerifier,
};

use crate::config::{ClientConfig, TokenConfig};

mod claims;
mod jwks;
mod keyset;

use keyset::KeySet;

/// Why a verifier could not be built or a token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A configured key does not parse. `key` is its dotted config path.
    #[error("{key}: {message}")]
    InvalidKey { key: String, message: String },
    /// A token setting breaks a rule (the message names the key).
    #[error("{0}")]
    Config(String),
    /// Signing failed (empty secret, unserializable claims).
    #[error("cannot sign token: {0}")]
    Signing(String),
}

/// Verifies Centrifugo-style JWTs. Cheap to share (`Arc`); verification does no I/O (a JWKS
/// key not cached yet is fetched by the [`KeyFetch`] of `prepare_*`).
#[derive(Clone)]
pub struct JwtVerifier {
    connection: Arc<KeySet>,
    subscription: Arc<KeySet>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("JwtVerifier")
            .field("connection_keys", &self.connection.kinds())
            .field("subscription_keys", &self.subscription.kinds())
            .finish()
    }
}

impl JwtVerifier {
    /// Builds a verifier: `connection` verifies connection tokens; `subscription`, when given,
    /// verifies subscription tokens, else `connection` does.
    pub fn new(
        connection: &TokenConfig,
        subscription: Option<&TokenConfig>,
    ) -> Result<JwtVerifier, AuthError> {
        let conn = Arc::new(KeySet::from_config(connection, "client.token")?);
        let sub = match subscription {
            Some(s) => Arc::new(KeySet::from_config(s, "client.subscription_token")?),
            None => conn.clone(),
        };
        Ok(JwtVerifier {
            connection: conn,
            subscription: sub,
        })
    }

    /// Builds a verifier from the `client` config section (a separate subscription set when
    /// `client.subscription_token.enabled`).
    pub fn from_config(client: &ClientConfig) -> Result<JwtVerifier, AuthError> {
        let sub = &client.subscription_token;
        JwtVerifier::new(&client.token, sub.enabled.then_some(&sub.token))
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, TokenError> {
        self.connection.verify::<claims::RawConnection>(token)
    }

    fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, TokenError> {
        self.subscription.verify::<claims::RawSubscription>(token)
    }

    fn prepare_connection(&self, token: &str) -> Option<KeyFetch> {
        self.connection.prepare(token)
    }

    fn prepare_subscription(&self, token: &str) -> Option<KeyFetch> {
        self.subscription.prepare(token)
    }
}

/// Signs `claims` as an HS256 JWT.
pub fn sign_hs256(secret: &str, claims: &serde_json::Value) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::Signing("empty HMAC secret".into()));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Signing(e.to_string()))
}

/// Claims of a connection token for `user` valid for `ttl` from now (`exp`), with optional
/// `info` and server-side `channels`. `ttl` zero = no `exp`.
pub fn connection_token_claims(
    user: &str,
    ttl: Duration,
    info: Option<&serde_json::Value>,
    channels: &[String],
) -> serde_json::Value {
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), user.into());
    if !ttl.is_zero() {
        let exp = chorus_core::clock::unix_now().saturating_add_unsigned(ttl.as_secs());
        claims.insert("exp".into(), exp.into());
    }
    if let Some(info) = info {
        claims.insert("info".into(), info.clone());
    }
    if !channels.is_empty() {
        claims.insert("channels".into(), channels.into());
    }
    serde_json::Value::Object(claims)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_extras;
