//! A JSON Web Key Set fetched from `jwks_public_endpoint` and cached by key id (`kid`).
//!
//! * **Lookup** ([`Jwks::key`]) is synchronous: a read lock and a map lookup. Each hit
//!   extends the key's life (`jwks_cache_ttl`, sliding, as in Centrifugo); a key unused for
//!   longer is dropped on its next lookup.
//! * **A miss** ([`Jwks::prepare`]) returns a fetch for the engine to await before it verifies
//!   the token. Fetches of one endpoint run one at a time (`fetch`, a tokio mutex): a miss
//!   that arrives while a fetch is in flight, or queues behind one, takes that fetch's result
//!   instead of fetching again — so a burst of misses, for one `kid` or many, costs one
//!   request. A miss after that waits until `jwks_refetch_interval` has passed since the last
//!   fetch started (Centrifugo has no such bound: every unknown `kid` is a request, which lets
//!   anyone who can open connections make the server hammer the key endpoint).
//! * **A fetch** is up to `jwks_request_attempts` requests of at most `jwks_request_timeout`
//!   each (a document that arrived but is unusable is not asked again);
//!   a failure leaves the cache as it was, and the token that asked is invalid.
//! * **A successful fetch replaces the cache**: a key removed from the document stops
//!   verifying at the next fetch (Centrifugo keeps every key it ever saw while it is used).
//! * **Keys**: only `use: "sig"` keys with a `kid`; `RSA` (RS256/384/512), `EC` P-256 /
//!   P-384 (ES256 / ES384) and `OKP` Ed25519 (EdDSA). A key's `alg`, when present, is the only
//!   algorithm it verifies; else the algorithms of its type and curve. Others are skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::http::Uri;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::time::Instant;

use chorus_core::auth::{KeyFetch, TokenError};
use chorus_core::sync::{read, write};

use crate::config::token::check_endpoint;
use crate::config::TokenConfig;
use crate::metrics::{JWKS_FETCHES, JWKS_KEYS};

pub(crate) mod http;

use self::http::{FetchError, TlsClient};

/// Which token algorithms a key verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// The key's `alg`, or the one algorithm of its curve.
    One(Algorithm),
    /// An RSA key without `alg`: RS256, RS384 or RS512.
    Rsa,
}

/// A verification key from the document.
pub(crate) struct JwksKey {
    decoding: DecodingKey,
    allowed: Allowed,
    /// Milliseconds since [`Jwks::born`] of the last lookup that found this key.
    last_used: AtomicU64,
}

impl JwksKey {
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The token's `alg` must be one this key verifies.
    pub(crate) fn check_alg(&self, alg: Algorithm) -> Result<(), TokenError> {
        let ok = match self.allowed {
            Allowed::One(a) => a == alg,
            Allowed::Rsa => matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512),
        };
        if ok {
            Ok(())
        } else {
            Err(TokenError::Invalid(format!(
                "token algorithm {alg:?} does not match the key ({:?})",
                self.allowed
            )))
        }
    }
}

/// The fetch bounds of one endpoint (from its `TokenConfig`).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    timeout: Duration,
    attempts: u32,
    ttl: Duration,
    refetch_interval: Duration,
    max_body: usize,
}

/// The key set of one endpoint: cache, fetch coordination, HTTP client.
pub(crate) struct Jwks {
    url: Uri,
    bounds: Bounds,
    tls: TlsClient,
    keys: RwLock<HashMap<String, Arc<JwksKey>>>,
    born: Instant,
    /// Held across a fetch; holds when the last fetch started.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Fetches finished (ok or not): a miss that saw N waits for N+1 rather than fetching.
    completed: AtomicU64,
}

impl Jwks {
    /// The set of `cfg.jwks_public_endpoint` (an error names what is wrong with the URL).
    pub(crate) fn new(cfg: &TokenConfig) -> Result<Jwks, String> {
        Jwks::with_tls(cfg, TlsClient::default())
    }

    pub(crate) fn with_tls(cfg: &TokenConfig, tls: TlsClient) -> Result<Jwks, String> {
        let url = check_endpoint(cfg.jwks_public_endpoint.trim())?;
        Ok(Jwks {
            url,
            bounds: Bounds {
                timeout: cfg.jwks_request_timeout.get(),
                attempts: cfg.jwks_request_attempts.max(1),
                ttl: cfg.jwks_cache_ttl.get(),
                refetch_interval: cfg.jwks_refetch_interval.get(),
                max_body: cfg.jwks_max_body_size,
            },
            tls,
            keys: RwLock::new(HashMap::new()),
            born: Instant::now(),
            fetch: tokio::sync::Mutex::new(None),
            completed: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn stale(&self, key: &JwksKey, now: u64) -> bool {
        let ttl = u64::try_from(self.bounds.ttl.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(key.last_used.load(Ordering::Relaxed)) > ttl
    }

    /// The cached key `kid`, if it was used within the TTL (this use extends it).
    pub(crate) fn key(&self, kid: &str) -> Option<Arc<JwksKey>> {
        let now = self.now_ms();
        {
            let keys = read(&self.keys);
            let key = keys.get(kid)?;
            if !self.stale(key, now) {
                key.last_used.store(now, Ordering::Relaxed);
                return Some(key.clone());
            }
        }
        let mut keys = write(&self.keys);
        if keys.get(kid).is_some_and(|k| self.stale(k, now)) {
            keys.remove(kid);
            metrics::gauge!(JWKS_KEYS).decrement(1.0);
        }
        None
    }

    /// Keys cached now (stale ones included until their next lookup).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        read(&self.keys).len()
    }

    /// `None` when `kid` is cached; else the fetch to await before verifying.
    pub(crate) fn prepare(self: &Arc<Self>, kid: &str) -> Option<KeyFetch> {
        if self.key(kid).is_some() {
            return None;
        }
        let seen = self.completed.load(Ordering::Acquire);
        let me = Arc::clone(self);
        let kid = kid.to_owned();
        Some(Box::pin(async move { me.refresh(&kid, seen).await }))
    }

    /// Fetches the document unless a fetch finished since the miss (`seen`), no sooner than
    /// `jwks_refetch_interval` after the previous one started.
    async fn refresh(&self, kid: &str, seen: u64) {
        let mut last_started = self.fetch.lock().await;
        if self.completed.load(Ordering::Acquire) != seen || self.key(kid).is_some() {
            return;
        }
        if let Some(last) = *last_started {
            tokio::time::sleep_until(last + self.bounds.refetch_interval).await;
        }
        *last_started = Some(Instant::now());
        let result = self.fetch_document().await;
        let label = match result {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "jwks fetched");
                self.replace(keys);
                "ok"
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "jwks fetch failed");
                error.label()
            }
        };
        metrics::counter!(JWKS_FETCHES, "result" => label).increment(1);
        self.completed.fetch_add(1, Ordering::Release);
    }

    async fn fetch_document(&self) -> Result<HashMap<String, Arc<JwksKey>>, FetchError> {
        let mut last = FetchError::Timeout;
        for _ in 0..self.bounds.attempts {
            let get = http::get(&self.url, self.bounds.max_body, &self.tls);
            match tokio::time::timeout(self.bounds.timeout, get).await {
                Ok(Ok(body)) => return parse_document(&body, self.now_ms()),
                Ok(Err(e)) if !e.retryable() => return Err(e),
                Ok(Err(e)) => last = e,
                Err(_) => last = FetchError::Timeout,
            }
        }
        Err(last)
    }

    fn replace(&self, keys: HashMap<String, Arc<JwksKey>>) {
        let mut cached = write(&self.keys);
        let delta = keys.len() as f64 - cached.len() as f64;
        *cached = keys;
        metrics::gauge!(JWKS_KEYS).increment(delta);
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        let n = read(&self.keys).len();
        metrics::gauge!(JWKS_KEYS).decrement(n as f64);
    }
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The usable keys of a document; none at all is an error (the cache stays as it was).
fn parse_document(body: &[u8], now: u64) -> Result<HashMap<String, Arc<JwksKey>>, FetchError> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| FetchError::Invalid(e.to_string()))?;
    let mut keys = HashMap::new();
    for value in doc.keys {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(error) => {
                tracing::debug!(%error, "jwks: key skipped");
                continue;
            }
        };
        let kid = match jwk.common.key_id.as_deref() {
            Some(kid) if !kid.is_empty() => kid.to_string(),
            _ => continue,
        };
        match usable(&jwk) {
            Ok((decoding, allowed)) => {
                keys.entry(kid).or_insert_with(|| {
                    Arc::new(JwksKey {
                        decoding,
                        allowed,
                        last_used: AtomicU64::new(now),
                    })
                });
            }
            Err(reason) => tracing::debug!(%kid, reason, "jwks: key skipped"),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::Invalid("no usable signing key".into()));
    }
    Ok(keys)
}

/// A key's decoding key and algorithms, or why it is skipped.
fn usable(jwk: &Jwk) -> Result<(DecodingKey, Allowed), &'static str> {
    if jwk.common.public_key_use != Some(PublicKeyUse::Signature) {
        return Err("use is not \"sig\"");
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(Algorithm::try_from(a).map_err(|_| "unsupported alg")?),
    };
    let allowed = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), None) => Allowed::Rsa,
        (
            AlgorithmParameters::RSA(_),
            Some(a @ (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)),
        ) => Allowed::One(a),
        (AlgorithmParameters::EllipticCurve(ec), alg) => {
            let curve_alg = match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err("unsupported curve"),
            };
            if alg.is_some_and(|a| a != curve_alg) {
                return Err("alg does not match the curve");
            }
            Allowed::One(curve_alg)
        }
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(Algorithm::EdDSA))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Allowed::One(Algorithm::EdDSA)
        }
        _ => return Err("unsupported key type or alg"),
    };
    let decoding = DecodingKey::from_jwk(jwk).map_err(|_| "malformed key parameters")?;
    Ok((decoding, allowed))
}

#[cfg(test)]
mod tests;
