//! JWT verification of connection and subscription tokens (Centrifugo-compatible claims), and
//! HS256 signing for `chorus gentoken` and the demo token endpoint.
//!
//! The key is chosen by the token header's `alg`: HS256/384/512 → `hmac_secret_key`,
//! RS256/384/512 → `rsa_public_key`, ES256/ES384 → `ecdsa_public_key`. Any other `alg`, or an
//! `alg` whose key is not configured, is refused as invalid. `exp` and `nbf` are checked with no
//! leeway when present; `aud`/`iss` only when configured. Claim parsing lives in [`claims`].

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;

use chorus_core::auth::{ConnectionClaims, SubscriptionClaims, TokenError, TokenVerifier};

use crate::config::{ClientConfig, TokenConfig};

mod claims;

/// Why a verifier could not be built or a token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A configured key does not parse. `key` is its dotted config path.
    #[error("{key}: {message}")]
    InvalidKey { key: String, message: String },
    /// Signing failed (empty secret, unserializable claims).
    #[error("cannot sign token: {0}")]
    Signing(String),
}

/// Keys and expectations for one kind of token.
#[derive(Clone, Default)]
struct KeySet {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
    audience: Option<String>,
    issuer: Option<String>,
}

impl KeySet {
    fn from_config(cfg: &TokenConfig, section: &str) -> Result<KeySet, AuthError> {
        let invalid = |field: &str, e: jsonwebtoken::errors::Error| AuthError::InvalidKey {
            key: format!("{section}.{field}"),
            message: format!("not a valid PEM public key: {e}"),
        };
        let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
        Ok(KeySet {
            hmac: non_empty(&cfg.hmac_secret_key).map(|s| DecodingKey::from_secret(s.as_bytes())),
            rsa: non_empty(&cfg.rsa_public_key)
                .map(|pem| DecodingKey::from_rsa_pem(pem.as_bytes()))
                .transpose()
                .map_err(|e| invalid("rsa_public_key", e))?,
            ec: non_empty(&cfg.ecdsa_public_key)
                .map(|pem| DecodingKey::from_ec_pem(pem.as_bytes()))
                .transpose()
                .map_err(|e| invalid("ecdsa_public_key", e))?,
            audience: non_empty(&cfg.audience),
            issuer: non_empty(&cfg.issuer),
        })
    }

    fn key_for(&self, alg: Algorithm) -> Result<&DecodingKey, TokenError> {
        let (key, name) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => (&self.hmac, "HMAC"),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => (&self.rsa, "RSA"),
            Algorithm::ES256 | Algorithm::ES384 => (&self.ec, "ECDSA"),
            other => {
                return Err(TokenError::Invalid(format!(
                    "unsupported token algorithm {other:?}"
                )))
            }
        };
        key.as_ref().ok_or_else(|| {
            TokenError::Invalid(format!(
                "token algorithm {alg:?} needs an {name} key, none is configured"
            ))
        })
    }

    fn decode<T: DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(map_error)?;
        let key = self.key_for(header.alg)?;
        let mut v = Validation::new(header.alg);
        v.required_spec_claims = HashSet::new();
        v.leeway = 0;
        v.validate_exp = true;
        v.validate_nbf = true;
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        jsonwebtoken::decode::<T>(token, key, &v)
            .map(|data| data.claims)
            .map_err(map_error)
    }
}

fn map_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
        ErrorKind::ImmatureSignature => TokenError::Invalid("token not valid yet (nbf)".into()),
        ErrorKind::InvalidAudience => TokenError::Invalid("audience mismatch".into()),
        ErrorKind::InvalidIssuer => TokenError::Invalid("issuer mismatch".into()),
        _ => TokenError::Invalid(e.to_string()),
    }
}

/// Verifies Centrifugo-style JWTs. Cheap to share (`Arc`); verification does no I/O.
#[derive(Clone)]
pub struct JwtVerifier {
    connection: KeySet,
    subscription: KeySet,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        let kinds = |k: &KeySet| {
            [
                k.hmac.as_ref().map(|_| "hmac"),
                k.rsa.as_ref().map(|_| "rsa"),
                k.ec.as_ref().map(|_| "ecdsa"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
        };
        f.debug_struct("JwtVerifier")
            .field("connection_keys", &kinds(&self.connection))
            .field("subscription_keys", &kinds(&self.subscription))
            .finish()
    }
}

impl JwtVerifier {
    /// Builds a verifier: `connection` verifies connection tokens; `subscription` (when it has
    /// a key) verifies subscription tokens, else `connection` does.
    pub fn new(
        connection: &TokenConfig,
        subscription: Option<&TokenConfig>,
    ) -> Result<JwtVerifier, AuthError> {
        let conn = KeySet::from_config(connection, "client.token")?;
        let sub = match subscription.filter(|s| s.has_key()) {
            Some(s) => KeySet::from_config(s, "client.subscription_token")?,
            None => conn.clone(),
        };
        Ok(JwtVerifier {
            connection: conn,
            subscription: sub,
        })
    }

    /// Builds a verifier from the `client` config section.
    pub fn from_config(client: &ClientConfig) -> Result<JwtVerifier, AuthError> {
        JwtVerifier::new(&client.token, Some(&client.subscription_token))
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, TokenError> {
        let raw: claims::RawConnection = self.connection.decode(token)?;
        raw.into_claims()
    }

    fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, TokenError> {
        let raw: claims::RawSubscription = self.subscription.decode(token)?;
        raw.into_claims()
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
