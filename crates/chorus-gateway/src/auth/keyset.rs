//! One verifier's keys and claim rules (a `client.token` or `client.subscription_token`
//! block), and the checks in Centrifugo's order:
//!
//! 1. the header parses and names a key: by `alg` among the static keys, or by `kid` in the
//!    JWKS (then the key must suit the `alg`); else invalid;
//! 2. the signature (an HMAC token failing the current secret is tried with
//!    `hmac_previous_secret_key` until its deadline); else invalid;
//! 3. `aud` / `iss` against `audience[_regex]` / `issuer[_regex]`; a connection token must
//!    not carry `channel`; else invalid;
//! 4. `exp` reached or `nbf` not yet reached → expired (109 for the client);
//! 5. the user id from `user_id_claim` (default `sub`); a subscription token needs `channel`.

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use chorus_core::auth::{KeyFetch, TokenError};
use chorus_core::clock;

use super::claims::Raw;
use super::jwks::Jwks;
use super::AuthError;
use crate::config::token::compile;
use crate::config::TokenConfig;

/// Keys from the config, chosen by the token's `alg`.
struct StaticKeys {
    hmac: Option<DecodingKey>,
    /// The previous HMAC secret and the unix second it stops being accepted.
    hmac_previous: Option<(DecodingKey, i64)>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
}

/// Where signature keys come from.
enum Keys {
    Static(Box<StaticKeys>),
    /// Keys of a JWKS document, chosen by the token's `kid`.
    Jwks(Arc<Jwks>),
}

/// Keys and claim rules of one kind of token.
pub(super) struct KeySet {
    keys: Keys,
    audience: Option<String>,
    audience_regex: Option<Regex>,
    issuer: Option<String>,
    issuer_regex: Option<Regex>,
    user_id_claim: Option<String>,
}

impl KeySet {
    /// Builds the set of `cfg` (at `section`, e.g. `client.token`): field rules first (the
    /// first problem is the error), then the PEM keys. Spawns nothing; a JWKS document is
    /// fetched on the first token that needs it.
    pub(super) fn from_config(cfg: &TokenConfig, section: &str) -> Result<KeySet, AuthError> {
        if let Some(problem) = cfg.problems(section).into_iter().next() {
            return Err(AuthError::Config(problem));
        }
        let invalid = |field: &str, e: jsonwebtoken::errors::Error| AuthError::InvalidKey {
            key: format!("{section}.{field}"),
            message: format!("not a valid PEM public key: {e}"),
        };
        let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
        let keys = if cfg.uses_jwks() {
            let jwks = Jwks::new(cfg).map_err(|message| AuthError::InvalidKey {
                key: format!("{section}.jwks_public_endpoint"),
                message,
            })?;
            Keys::Jwks(Arc::new(jwks))
        } else {
            let secret = |s: &str| DecodingKey::from_secret(s.as_bytes());
            Keys::Static(Box::new(StaticKeys {
                hmac: non_empty(&cfg.hmac_secret_key).map(|s| secret(&s)),
                hmac_previous: non_empty(&cfg.hmac_previous_secret_key)
                    .map(|s| (secret(&s), cfg.hmac_previous_secret_key_valid_until)),
                rsa: non_empty(&cfg.rsa_public_key)
                    .map(|pem| DecodingKey::from_rsa_pem(pem.as_bytes()))
                    .transpose()
                    .map_err(|e| invalid("rsa_public_key", e))?,
                ec: non_empty(&cfg.ecdsa_public_key)
                    .map(|pem| DecodingKey::from_ec_pem(pem.as_bytes()))
                    .transpose()
                    .map_err(|e| invalid("ecdsa_public_key", e))?,
            }))
        };
        // Checked by `problems` above; an error here cannot happen.
        let regex = |pattern: &str, field: &str| {
            compile(pattern).map_err(|e| AuthError::Config(format!("{section}.{field}: {e}")))
        };
        Ok(KeySet {
            keys,
            audience: non_empty(&cfg.audience),
            audience_regex: regex(&cfg.audience_regex, "audience_regex")?,
            issuer: non_empty(&cfg.issuer),
            issuer_regex: regex(&cfg.issuer_regex, "issuer_regex")?,
            user_id_claim: non_empty(&cfg.user_id_claim),
        })
    }

    /// Names of the configured key kinds, for `Debug` (never the keys).
    pub(super) fn kinds(&self) -> Vec<&'static str> {
        match &self.keys {
            Keys::Static(k) => [
                k.hmac.as_ref().map(|_| "hmac"),
                k.hmac_previous.as_ref().map(|_| "hmac_previous"),
                k.rsa.as_ref().map(|_| "rsa"),
                k.ec.as_ref().map(|_| "ecdsa"),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Keys::Jwks(_) => vec!["jwks"],
        }
    }

    /// The JWKS fetch `token` needs first: only when its `kid` is not cached.
    pub(super) fn prepare(&self, token: &str) -> Option<KeyFetch> {
        let Keys::Jwks(jwks) = &self.keys else {
            return None;
        };
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid.filter(|k| !k.is_empty())?;
        jwks.prepare(&kid)
    }

    /// Verifies `token` and returns its claims (steps 1–5 of the module doc).
    pub(super) fn verify<T: Raw>(&self, token: &str) -> Result<T::Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(map_error)?;
        let (mut raw, user): (T, Option<String>) = match &self.user_id_claim {
            None => (self.verified(token, &header)?, None),
            Some(claim) => {
                let text: Box<RawValue> = self.verified(token, &header)?;
                let raw = serde_json::from_str(text.get())
                    .map_err(|e| TokenError::Invalid(format!("invalid claims: {e}")))?;
                (raw, Some(user_claim(text.get(), claim)?))
            }
        };
        self.check_audience_issuer(&raw)?;
        raw.check_before_expiry()?;
        let registered = raw.registered();
        let now = clock::unix_now();
        if clock::is_expired(registered.exp) || registered.nbf.is_some_and(|nbf| nbf > now) {
            return Err(TokenError::Expired);
        }
        if let Some(user) = user {
            raw.set_user(user);
        }
        raw.into_claims()
    }

    /// Decodes the claims once the signature checks out (no claim is validated here).
    fn verified<C: DeserializeOwned>(&self, token: &str, header: &Header) -> Result<C, TokenError> {
        let alg = header.alg;
        let mut v = Validation::new(alg);
        v.required_spec_claims = HashSet::new();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        let decode = |key: &DecodingKey| jsonwebtoken::decode::<C>(token, key, &v);
        let result = match &self.keys {
            Keys::Jwks(jwks) => {
                let kid = header
                    .kid
                    .as_deref()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| TokenError::Invalid("token header has no kid".into()))?;
                let key = jwks
                    .key(kid)
                    .ok_or_else(|| TokenError::Invalid("unknown key id (kid)".into()))?;
                key.check_alg(alg)?;
                decode(key.decoding())
            }
            Keys::Static(keys) => match (&keys.hmac_previous, decode(keys.key_for(alg)?)) {
                (Some((previous, valid_until)), Err(e))
                    if is_hmac(alg)
                        && matches!(e.kind(), ErrorKind::InvalidSignature)
                        && clock::unix_now() < *valid_until =>
                {
                    decode(previous)
                }
                (_, result) => result,
            },
        };
        result.map(|data| data.claims).map_err(map_error)
    }

    fn check_audience_issuer<T: Raw>(&self, raw: &T) -> Result<(), TokenError> {
        let r = raw.registered();
        let mismatch = |what: &str| Err(TokenError::Invalid(format!("{what} mismatch")));
        if let Some(re) = &self.audience_regex {
            if !r.aud.iter().any(|a| re.is_match(a)) {
                return mismatch("audience");
            }
        }
        if let Some(aud) = &self.audience {
            if !r.aud.iter().any(|a| a == aud) {
                return mismatch("audience");
            }
        }
        if let Some(re) = &self.issuer_regex {
            if !re.is_match(r.iss.unwrap_or_default()) {
                return mismatch("issuer");
            }
        }
        if let Some(iss) = &self.issuer {
            if r.iss != Some(iss.as_str()) {
                return mismatch("issuer");
            }
        }
        Ok(())
    }
}

impl StaticKeys {
    /// The configured key of `alg`'s family.
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
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The user id in claim `name`: a string as is, a number as its JSON text, absent or `null`
/// as anonymous (`""`); anything else makes the token invalid.
fn user_claim(claims: &str, name: &str) -> Result<String, TokenError> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(claims)
        .map_err(|e| TokenError::Invalid(format!("invalid claims: {e}")))?;
    match map.get(name) {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(TokenError::Invalid(format!(
            "claim {name:?} (user_id_claim) is not a string"
        ))),
    }
}

fn map_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
        _ => TokenError::Invalid(e.to_string()),
    }
}
