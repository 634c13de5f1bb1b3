//! Session tokens of the admin console: HS256 JWTs signed with `admin.secret`, with
//! `aud = "chorus-admin"`, `iat` and `exp`. The audience is required, so a client connection
//! token can never pass for a session (and `validate` refuses an `admin.secret` equal to a
//! client token key besides). `exp` follows the workspace's expiry rule
//! ([`chorus_core::clock::is_expired`]: expired once that second is reached).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::{sign_hs256, AuthError};

/// The `aud` of every session token.
pub const AUDIENCE: &str = "chorus-admin";

/// Why a session token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no session token (Authorization: token <token>)")]
    Missing,
    #[error("session expired")]
    Expired,
    #[error("invalid session token: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Claims {
    exp: i64,
}

/// Signs a session token valid `ttl` from `now` (unix seconds).
pub fn sign(secret: &str, ttl: Duration, now: i64) -> Result<String, AuthError> {
    let exp = now.saturating_add_unsigned(ttl.as_secs());
    let claims = serde_json::json!({"aud": AUDIENCE, "iat": now, "exp": exp});
    sign_hs256(secret, &claims)
}

/// Checks a session token against `secret`: signature, algorithm (HS256 only), audience and
/// expiry.
pub fn verify(secret: &str, token: &str) -> Result<(), SessionError> {
    if secret.is_empty() {
        return Err(SessionError::Invalid("no admin.secret configured".into()));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "aud"]);
    let key = DecodingKey::from_secret(secret.as_bytes());
    let claims =
        jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => SessionError::Expired,
            _ => SessionError::Invalid(e.to_string()),
        })?;
    if chorus_core::clock::is_expired(Some(claims.claims.exp)) {
        return Err(SessionError::Expired);
    }
    Ok(())
}

/// The token of an `Authorization: token <token>` header value (scheme case-insensitive).
pub fn of_authorization(value: &str) -> Option<&str> {
    let mut parts = value.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("token") => Some(token),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chorus_core::clock::unix_now;

    const SECRET: &str = "admin-secret-0123456789abcdef0123456789";
    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn signed_token_verifies_until_it_expires() {
        let token = sign(SECRET, DAY, unix_now()).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(verify(SECRET, &token), Ok(()));

        // Expired a second ago, and expiring this very second (the workspace's rule).
        let old = sign(SECRET, Duration::from_secs(10), unix_now() - 11).unwrap();
        assert_eq!(verify(SECRET, &old), Err(SessionError::Expired));
        let now = sign(SECRET, Duration::ZERO, unix_now()).unwrap();
        assert_eq!(verify(SECRET, &now), Err(SessionError::Expired));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let token = sign(SECRET, DAY, unix_now()).unwrap();
        // Another key.
        assert!(matches!(
            verify("another-secret-0123456789abcdef012345", &token),
            Err(SessionError::Invalid(_))
        ));
        // A changed payload keeps the old signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged = serde_json::json!({"aud": AUDIENCE, "exp": unix_now() + 10 * 365 * 86400});
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged.to_string(),
        );
        assert!(matches!(
            verify(SECRET, &parts.join(".")),
            Err(SessionError::Invalid(_))
        ));
        // A flipped signature byte.
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            verify(SECRET, &flipped),
            Err(SessionError::Invalid(_))
        ));
        // A client token signed with the same key but without the console's audience.
        let client = sign_hs256(
            SECRET,
            &serde_json::json!({"sub": "alice", "exp": unix_now() + 60}),
        )
        .unwrap();
        assert!(matches!(
            verify(SECRET, &client),
            Err(SessionError::Invalid(_))
        ));
        // No expiry.
        let forever = sign_hs256(SECRET, &serde_json::json!({"aud": AUDIENCE})).unwrap();
        assert!(matches!(
            verify(SECRET, &forever),
            Err(SessionError::Invalid(_))
        ));
        // `alg: none`.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                forged.to_string()
            )
        );
        assert!(matches!(
            verify(SECRET, &none),
            Err(SessionError::Invalid(_))
        ));
        assert!(matches!(
            verify(SECRET, "garbage"),
            Err(SessionError::Invalid(_))
        ));
        assert!(matches!(verify("", "x.y.z"), Err(SessionError::Invalid(_))));
    }

    #[test]
    fn authorization_header() {
        assert_eq!(of_authorization("token abc"), Some("abc"));
        assert_eq!(of_authorization("Token  abc "), Some("abc"));
        assert_eq!(of_authorization("apikey abc"), None);
        assert_eq!(of_authorization("token"), None);
        assert_eq!(of_authorization("token a b"), None);
    }
}
