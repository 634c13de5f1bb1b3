//! `client.token.*` and `client.subscription_token.*`: how JWTs are verified.
//!
//! Key names and meanings follow Centrifugo v6 (`hmac_*`, `rsa_public_key`,
//! `ecdsa_public_key`, `jwks_public_endpoint`, `audience[_regex]`, `issuer[_regex]`,
//! `user_id_claim`, `subscription_token.enabled`). The `jwks_*` bounds below are chorus's own:
//! Centrifugo hard-codes a 1 s timeout, 2 attempts and a 1 h cache, and does not bound how
//! often unknown key ids make it fetch the document.

use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use chorus_core::duration::ConfigDuration;

/// Largest accepted `jwks_request_attempts`.
pub const MAX_JWKS_ATTEMPTS: u32 = 10;

/// Token verification keys and expected claims (`client.token`, and the same fields under
/// `client.subscription_token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenConfig {
    /// Shared secret for HS256/HS384/HS512. Default empty (HMAC tokens refused).
    pub hmac_secret_key: String,
    /// The HMAC secret being rotated out: tried when `hmac_secret_key` does not verify a
    /// token, until `hmac_previous_secret_key_valid_until`. Default empty.
    pub hmac_previous_secret_key: String,
    /// Unix time (seconds) after which `hmac_previous_secret_key` is no longer accepted.
    /// Required with it. Default 0.
    pub hmac_previous_secret_key_valid_until: i64,
    /// PEM public key (`-----BEGIN PUBLIC KEY-----`) for RS256/RS384/RS512. Default empty.
    pub rsa_public_key: String,
    /// PEM public key for ES256 (P-256) or ES384 (P-384). Default empty.
    pub ecdsa_public_key: String,
    /// `http(s)://` URL of a JSON Web Key Set. When set, every token this block verifies is
    /// checked against the set's key named by the token's `kid` (the keys above are
    /// ignored, as in Centrifugo). `{{var}}` templates are not supported. Default empty.
    pub jwks_public_endpoint: String,
    /// Deadline of one JWKS request (connect, headers and body). Default 1s; must be > 0.
    pub jwks_request_timeout: ConfigDuration,
    /// Attempts of one JWKS fetch (the first request and retries). Default 2; 1..=10.
    pub jwks_request_attempts: u32,
    /// A cached JWKS key not used for this long is dropped (each use extends it). Default
    /// 1h; must be > 0.
    pub jwks_cache_ttl: ConfigDuration,
    /// Least time between two fetches of the JWKS document. A token with an unknown `kid`
    /// within it waits for the next allowed fetch. Default 1s; must be > 0.
    pub jwks_refetch_interval: ConfigDuration,
    /// Max size of the JWKS response body in bytes; a bigger one fails the fetch. Default
    /// 1048576 (1 MiB); at least 1024.
    pub jwks_max_body_size: usize,
    /// When set, `aud` (a string, or one of a list) must equal it. Default empty = not
    /// checked.
    pub audience: String,
    /// When set, `aud` (or one element of it) must match this regular expression
    /// (unanchored). Exclusive with `audience`. Default empty.
    pub audience_regex: String,
    /// When set, `iss` must equal it. Default empty = not checked.
    pub issuer: String,
    /// When set, `iss` must match this regular expression (unanchored). Exclusive with
    /// `issuer`. Default empty.
    pub issuer_regex: String,
    /// The claim holding the user id instead of `sub` (letters and `_` only). Default empty
    /// = `sub`.
    pub user_id_claim: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            hmac_secret_key: String::new(),
            hmac_previous_secret_key: String::new(),
            hmac_previous_secret_key_valid_until: 0,
            rsa_public_key: String::new(),
            ecdsa_public_key: String::new(),
            jwks_public_endpoint: String::new(),
            jwks_request_timeout: ConfigDuration::from_secs(1),
            jwks_request_attempts: 2,
            jwks_cache_ttl: ConfigDuration::from_secs(3600),
            jwks_refetch_interval: ConfigDuration::from_secs(1),
            jwks_max_body_size: 1 << 20,
            audience: String::new(),
            audience_regex: String::new(),
            issuer: String::new(),
            issuer_regex: String::new(),
            user_id_claim: String::new(),
        }
    }
}

impl TokenConfig {
    /// Whether any verification key (or a JWKS endpoint) is set.
    pub fn has_key(&self) -> bool {
        !(self.hmac_secret_key.is_empty()
            && self.hmac_previous_secret_key.is_empty()
            && self.rsa_public_key.is_empty()
            && self.ecdsa_public_key.is_empty()
            && self.jwks_public_endpoint.is_empty())
    }

    /// Whether a JWKS endpoint is set (the static keys are then ignored).
    pub fn uses_jwks(&self) -> bool {
        !self.jwks_public_endpoint.trim().is_empty()
    }

    /// Problems of this block, each prefixed with `section` (`client.token`). Key material
    /// (PEM parsing) is checked by the verifier; these are the rules of the fields.
    pub fn problems(&self, section: &str) -> Vec<String> {
        let mut p = Vec::new();
        for (name, exact, regex) in [
            ("audience", &self.audience, &self.audience_regex),
            ("issuer", &self.issuer, &self.issuer_regex),
        ] {
            if !exact.is_empty() && !regex.is_empty() {
                p.push(format!(
                    "{section}.{name} and {section}.{name}_regex are mutually exclusive: set one"
                ));
            }
            if let Err(e) = compile(regex) {
                p.push(format!(
                    "{section}.{name}_regex is not a valid regular expression: {e}"
                ));
            }
        }
        if !self.user_id_claim.is_empty() && !valid_claim_name(&self.user_id_claim) {
            p.push(format!(
                "{section}.user_id_claim {:?} must match ^[a-zA-Z_]+$",
                self.user_id_claim
            ));
        }
        if !self.hmac_previous_secret_key.is_empty() {
            if self.hmac_secret_key.is_empty() {
                p.push(format!(
                    "{section}.hmac_previous_secret_key is set but {section}.hmac_secret_key is empty"
                ));
            }
            if self.hmac_previous_secret_key_valid_until <= 0 {
                p.push(format!(
                    "{section}.hmac_previous_secret_key needs \
                     {section}.hmac_previous_secret_key_valid_until (unix seconds)"
                ));
            }
        }
        if self.uses_jwks() {
            if let Err(e) = check_endpoint(self.jwks_public_endpoint.trim()) {
                p.push(format!("{section}.jwks_public_endpoint: {e}"));
            }
        }
        if self.jwks_request_timeout.is_zero() {
            p.push(format!(
                "{section}.jwks_request_timeout must be greater than 0"
            ));
        }
        if !(1..=MAX_JWKS_ATTEMPTS).contains(&self.jwks_request_attempts) {
            p.push(format!(
                "{section}.jwks_request_attempts ({}) must be between 1 and {MAX_JWKS_ATTEMPTS}",
                self.jwks_request_attempts
            ));
        }
        if self.jwks_cache_ttl.is_zero() {
            p.push(format!("{section}.jwks_cache_ttl must be greater than 0"));
        }
        if self.jwks_refetch_interval.is_zero() {
            p.push(format!(
                "{section}.jwks_refetch_interval must be greater than 0"
            ));
        }
        if self.jwks_max_body_size < 1024 {
            p.push(format!(
                "{section}.jwks_max_body_size ({}) must be at least 1024 bytes",
                self.jwks_max_body_size
            ));
        }
        p
    }
}

/// The regular expression of an `*_regex` field; `None` when empty. Its size is bounded by
/// the `regex` crate's default limits (10 MiB compiled).
pub(crate) fn compile(pattern: &str) -> Result<Option<regex::Regex>, regex::Error> {
    if pattern.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(pattern).map(Some)
}

/// `user_id_claim` names: `^[a-zA-Z_]+$` (as Centrifugo).
fn valid_claim_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// An absolute `http://` or `https://` URL with a host, without `{{…}}` templates.
pub(crate) fn check_endpoint(url: &str) -> Result<http::Uri, String> {
    if url.contains("{{") {
        return Err(
            "{{…}} templates are not supported by chorus: use one fixed URL per block".into(),
        );
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(uri)
}

/// `client.subscription_token.*`: `enabled` plus the fields of [`TokenConfig`] (flattened).
/// Derefs to its [`TokenConfig`], so `subscription_token.hmac_secret_key` reads like the
/// connection block's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SubscriptionTokenConfig {
    /// Verify subscription tokens with the keys of this block instead of `client.token`.
    /// Default false: `client.token` verifies both kinds (this block's keys must then be
    /// empty).
    pub enabled: bool,
    #[serde(flatten)]
    pub token: TokenConfig,
}

impl Deref for SubscriptionTokenConfig {
    type Target = TokenConfig;
    fn deref(&self) -> &TokenConfig {
        &self.token
    }
}

impl DerefMut for SubscriptionTokenConfig {
    fn deref_mut(&mut self) -> &mut TokenConfig {
        &mut self.token
    }
}

impl SubscriptionTokenConfig {
    /// Problems of this block (its fields, and `enabled` against its keys).
    pub fn problems(&self) -> Vec<String> {
        const SECTION: &str = "client.subscription_token";
        let mut p = self.token.problems(SECTION);
        if self.enabled && !self.token.has_key() {
            p.push(format!(
                "{SECTION}.enabled is true but no key or jwks_public_endpoint is set in it"
            ));
        }
        if !self.enabled && self.token.has_key() {
            p.push(format!(
                "{SECTION} has keys but {SECTION}.enabled is false: set enabled to true to \
                 verify subscription tokens with them (client.token verifies both otherwise)"
            ));
        }
        p
    }
}
