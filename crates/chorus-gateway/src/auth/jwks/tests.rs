//! The JWKS verifier against a real HTTP endpoint on port 0: key types, rotation, the refetch
//! bound under bursts, failures, the cache TTL, HTTPS and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::time::Instant;

use chorus_core::auth::{connection_claims, subscription_claims, TokenError};
use chorus_core::duration::ConfigDuration;

use super::http::TlsClient;
use super::Jwks;
use crate::auth::JwtVerifier;
use crate::config::TokenConfig;

mod server;

use server::{Answer, JwksServer};

const RSA_PRIVATE: &str = include_str!("../../../tests/fixtures/rsa_private.pem");
const EC384_PRIVATE: &str = include_str!("../../../tests/fixtures/ec384_private.pem");
const ED25519_PRIVATE: &str = include_str!("../../../tests/fixtures/ed25519_private.pem");

/// A signing key and its JWK (with `kid` and `use: "sig"`).
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = kid.into();
        jwk["use"] = "sig".into();
        TestKey {
            kid: kid.into(),
            alg,
            encoding,
            jwk,
        }
    }

    /// The same key published without `alg`.
    fn without_alg(mut self) -> TestKey {
        self.jwk.as_object_mut().unwrap().remove("alg");
        self
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, &self.kid, claims)
    }

    fn sign_as(&self, alg: Algorithm, kid: &str, claims: &Value) -> String {
        let header = Header {
            kid: Some(kid.into()),
            ..Header::new(alg)
        };
        encode(&header, claims, &self.encoding).unwrap()
    }
}

fn rsa(kid: &str) -> TestKey {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    TestKey::new(kid, Algorithm::RS256, key)
}

/// A fresh P-256 key.
fn ec(kid: &str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EncodingKey::from_ec_der(&pair.serialize_der());
    TestKey::new(kid, Algorithm::ES256, key)
}

fn ec384(kid: &str) -> TestKey {
    let key = EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap();
    TestKey::new(kid, Algorithm::ES384, key)
}

fn ed(kid: &str) -> TestKey {
    let key = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    TestKey::new(kid, Algorithm::EdDSA, key)
}

fn doc(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn config(url: &str) -> TokenConfig {
    TokenConfig {
        jwks_public_endpoint: url.into(),
        jwks_refetch_interval: ConfigDuration::from_millis(200),
        jwks_request_timeout: ConfigDuration::from_millis(300),
        ..Default::default()
    }
}

fn verifier(cfg: &TokenConfig) -> JwtVerifier {
    JwtVerifier::new(cfg, None).unwrap()
}

async fn user(v: &JwtVerifier, token: &str) -> Result<String, TokenError> {
    connection_claims(v, token).await.map(|c| c.user)
}

fn invalid(r: Result<String, TokenError>) -> String {
    match r {
        Err(TokenError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn sub(user: &str) -> Value {
    json!({"sub": user, "exp": chorus_core::clock::unix_now() + 60})
}

#[tokio::test]
async fn rsa_ec_and_ed25519_keys_verify_after_one_fetch() {
    let (r, e256, e384, e) = (rsa("r"), ec("e256"), ec384("e384"), ed("ed"));
    let server = JwksServer::start(doc(&[&r, &e256, &e384, &e])).await;
    let v = verifier(&config(&server.url()));
    assert_eq!(user(&v, &r.sign(&sub("u-rsa"))).await.unwrap(), "u-rsa");
    assert_eq!(server.hits(), 1);
    assert_eq!(user(&v, &e256.sign(&sub("u-256"))).await.unwrap(), "u-256");
    assert_eq!(user(&v, &e384.sign(&sub("u-384"))).await.unwrap(), "u-384");
    assert_eq!(user(&v, &e.sign(&sub("u-ed"))).await.unwrap(), "u-ed");
    // Every key of the document was cached by the first fetch.
    assert_eq!(server.hits(), 1);

    // The key's `alg` (RS256) is the only algorithm it verifies.
    let rs384 = r.sign_as(Algorithm::RS384, "r", &sub("u"));
    assert!(invalid(user(&v, &rs384).await).contains("does not match the key"));
    // A signature by another key under a known kid.
    let forged = ec("other").sign_as(Algorithm::ES256, "e256", &sub("admin"));
    assert_eq!(invalid(user(&v, &forged).await), "bad signature");
    // HS256 "signed" with the RSA key's public modulus: the classic alg confusion.
    let hs = encode(
        &Header {
            kid: Some("r".into()),
            ..Header::new(Algorithm::HS256)
        },
        &sub("admin"),
        &EncodingKey::from_secret(r.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert!(invalid(user(&v, &hs).await).contains("does not match the key"));
    // Expired stays expired (109 for the client), not invalid.
    let old = json!({"sub": "u", "exp": chorus_core::clock::unix_now() - 5});
    assert_eq!(user(&v, &e.sign(&old)).await, Err(TokenError::Expired));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn keys_without_alg_verify_their_family() {
    let r = rsa("r").without_alg();
    let e = ec("e").without_alg();
    let server = JwksServer::start(doc(&[&r, &e])).await;
    let v = verifier(&config(&server.url()));
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let t = r.sign_as(alg, "r", &sub("u"));
        assert_eq!(user(&v, &t).await.unwrap(), "u", "{alg:?}");
    }
    assert_eq!(user(&v, &e.sign(&sub("u"))).await.unwrap(), "u");
    // ES384 claimed for a P-256 key.
    let t = e.sign_as(Algorithm::ES256, "e", &sub("u"));
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    parts[0] = base64_url(br#"{"alg":"ES384","kid":"e"}"#);
    assert!(invalid(user(&v, &parts.join(".")).await).contains("does not match the key"));
    assert_eq!(server.hits(), 1);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn only_sig_keys_of_supported_types_are_used() {
    let good = ec("good");
    let mut no_use = ec("no-use");
    no_use.jwk.as_object_mut().unwrap().remove("use");
    let mut enc = ec("enc");
    enc.jwk["use"] = "enc".into();
    let mut wrong_curve_alg = ec("p256-es384");
    wrong_curve_alg.jwk["alg"] = "ES384".into();
    let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct", "use": "sig", "alg": "HS256"});
    let mut keys: Vec<Value> = [&good, &no_use, &enc, &wrong_curve_alg]
        .iter()
        .map(|k| k.jwk.clone())
        .collect();
    keys.push(oct);
    keys.push(json!({"kty": "weird", "kid": "weird", "use": "sig"}));
    let server = JwksServer::start(json!({ "keys": keys }).to_string()).await;
    let cfg = config(&server.url());
    let v = verifier(&cfg);
    assert_eq!(user(&v, &good.sign(&sub("u"))).await.unwrap(), "u");
    for key in [&no_use, &enc, &wrong_curve_alg] {
        let t = key.sign(&sub("u"));
        assert_eq!(
            invalid(user(&v, &t).await),
            "unknown key id (kid)",
            "{}",
            key.kid
        );
    }
    let hs = encode(
        &Header {
            kid: Some("oct".into()),
            ..Header::new(Algorithm::HS256)
        },
        &sub("u"),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert_eq!(invalid(user(&v, &hs).await), "unknown key id (kid)");

    // A token without a kid never fetches.
    let hits = server.hits();
    let no_kid = encode(&Header::new(Algorithm::ES256), &sub("u"), &good.encoding).unwrap();
    assert_eq!(invalid(user(&v, &no_kid).await), "token header has no kid");
    assert_eq!(server.hits(), hits);
}

#[tokio::test]
async fn unknown_kid_refetches_once_and_concurrent_misses_share_it() {
    let a = ec("a");
    let server = JwksServer::start(doc(&[&a])).await;
    let v = Arc::new(verifier(&config(&server.url())));
    assert_eq!(user(&v, &a.sign(&sub("u"))).await.unwrap(), "u");
    assert_eq!(server.hits(), 1);

    // One unknown kid: exactly one refetch, then invalid.
    let b = ec("b");
    assert_eq!(
        invalid(user(&v, &b.sign(&sub("u"))).await),
        "unknown key id (kid)"
    );
    assert_eq!(server.hits(), 2);

    // The key appears; 20 clients present it at once while the endpoint is slow: one request.
    server.set(Answer::Doc {
        body: doc(&[&a, &b]),
        delay: Duration::from_millis(150),
    });
    let token = b.sign(&sub("u"));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            tokio::spawn(async move { user(&v, &token).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "u");
    }
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn rotation_new_kid_is_picked_up_and_a_removed_one_stops_at_the_next_fetch() {
    let (old, new) = (ec("2025"), ec("2026"));
    let server = JwksServer::start(doc(&[&old])).await;
    let v = verifier(&config(&server.url()));
    let old_token = old.sign(&sub("u"));
    assert_eq!(user(&v, &old_token).await.unwrap(), "u");

    // The endpoint rotates: `2026` in, `2025` out.
    server.set_doc(doc(&[&new]));
    // Cached: the removed key still verifies until the document is fetched again.
    assert_eq!(user(&v, &old_token).await.unwrap(), "u");
    assert_eq!(server.hits(), 1);
    // The new kid is a miss: one fetch, accepted.
    assert_eq!(user(&v, &new.sign(&sub("u"))).await.unwrap(), "u");
    assert_eq!(server.hits(), 2);
    // That fetch replaced the cache: the removed key no longer verifies (its token is a miss
    // and fetches once more).
    assert_eq!(invalid(user(&v, &old_token).await), "unknown key id (kid)");
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn refetch_rate_is_bounded_under_bursts_of_unknown_kids() {
    let a = ec("a");
    let server = JwksServer::start(doc(&[&a])).await;
    let mut cfg = config(&server.url());
    cfg.jwks_refetch_interval = ConfigDuration::from_millis(300);
    let v = Arc::new(verifier(&cfg));
    let burst = |n: usize, tag: &str| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let v = v.clone();
                let token = a.sign_as(Algorithm::ES256, &format!("{tag}-{i}"), &sub("u"));
                tokio::spawn(async move { user(&v, &token).await })
            })
            .collect();
        async move {
            for t in tasks {
                assert!(matches!(t.await.unwrap(), Err(TokenError::Invalid(_))));
            }
        }
    };
    // 50 distinct unknown kids at once: one request.
    burst(50, "x").await;
    assert_eq!(server.hits(), 1);
    // 50 more right away: one more request, not before the interval.
    burst(50, "y").await;
    assert_eq!(server.hits(), 2);

    // One unknown kid after another for 1.2 s: at most one request per 300 ms.
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_millis(1200) {
        let t = a.sign_as(Algorithm::ES256, &format!("z-{sent}"), &sub("u"));
        let _ = user(&v, &t).await;
        sent += 1;
    }
    let times = server.hit_times();
    // 2 for the bursts, then one per 300 ms of the 1.2 s: about 6.
    assert!(
        (4..=8).contains(&times.len()),
        "{sent} tokens, {} requests",
        times.len()
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        // Server-side arrival times; the bound applies to fetch starts (± connect time).
        assert!(gap >= Duration::from_millis(280), "requests {gap:?} apart");
    }
    // The known key never waited for any of it.
    assert_eq!(user(&v, &a.sign(&sub("u"))).await.unwrap(), "u");
}

#[tokio::test]
async fn failures_leave_the_token_invalid_and_the_cache_as_it_was() {
    let a = ec("a");
    let server = JwksServer::start(doc(&[&a])).await;
    let mut cfg = config(&server.url());
    cfg.jwks_refetch_interval = ConfigDuration::from_millis(10);
    let v = verifier(&cfg);
    assert_eq!(user(&v, &a.sign(&sub("u"))).await.unwrap(), "u");
    let b = ec("b").sign(&sub("u"));

    // 500: both attempts fail.
    server.set(Answer::Status(500));
    assert_eq!(invalid(user(&v, &b).await), "unknown key id (kid)");
    assert_eq!(server.hits(), 3);
    // No answer: both attempts time out (300 ms each).
    server.set(Answer::Hang);
    let started = Instant::now();
    assert_eq!(invalid(user(&v, &b).await), "unknown key id (kid)");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 5);
    // Not a JWKS, an empty set, a body over the bound: not retried.
    for body in ["<html>", r#"{"keys":[]}"#, &" ".repeat(2 << 20)] {
        server.set_doc(body.to_string());
        assert_eq!(invalid(user(&v, &b).await), "unknown key id (kid)");
    }
    assert_eq!(server.hits(), 8);
    // The cached key kept working through all of it.
    assert_eq!(user(&v, &a.sign(&sub("u"))).await.unwrap(), "u");

    // Nothing listening at all.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let v = verifier(&config(&format!("http://{closed}/jwks")));
    assert_eq!(invalid(user(&v, &b).await), "unknown key id (kid)");
}

#[tokio::test]
async fn cache_ttl_slides_with_use() {
    let a = ec("a");
    let server = JwksServer::start(doc(&[&a])).await;
    let mut cfg = config(&server.url());
    cfg.jwks_cache_ttl = ConfigDuration::from_millis(300);
    let v = verifier(&cfg);
    let token = a.sign(&sub("u"));
    // Used every 100 ms for 0.6 s: stays cached.
    for _ in 0..6 {
        assert_eq!(user(&v, &token).await.unwrap(), "u");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.hits(), 1);
    // Unused for longer than the TTL: dropped, fetched again on the next use.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(user(&v, &token).await.unwrap(), "u");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn separate_subscription_verifier_has_its_own_endpoint() {
    let (conn_key, sub_key) = (ec("conn"), ec("sub"));
    let conn_server = JwksServer::start(doc(&[&conn_key])).await;
    let sub_server = JwksServer::start(doc(&[&sub_key])).await;
    let v = JwtVerifier::new(
        &config(&conn_server.url()),
        Some(&config(&sub_server.url())),
    )
    .unwrap();
    let claims = json!({"sub": "u", "channel": "$c"});
    let t = sub_key.sign(&claims);
    assert_eq!(subscription_claims(&v, &t).await.unwrap().channel, "$c");
    // The connection endpoint does not know the subscription key, and the other way round.
    assert_eq!(invalid(user(&v, &t).await), "unknown key id (kid)");
    let t = conn_key.sign(&claims);
    assert!(matches!(
        subscription_claims(&v, &t).await,
        Err(TokenError::Invalid(_))
    ));
    assert_eq!(user(&v, &conn_key.sign(&sub("u"))).await.unwrap(), "u");
    // The connection set fetched once (its miss cached `conn`), the subscription set twice.
    assert_eq!((conn_server.hits(), sub_server.hits()), (1, 2));
}

#[tokio::test]
async fn https_endpoint_with_a_private_ca() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    let a = ed("a");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = JwksServer::start_with(doc(&[&a]), Some(acceptor)).await;
    let url = format!(
        "https://localhost:{}/.well-known/jwks.json",
        server.addr.port()
    );

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let jwks = Arc::new(Jwks::with_tls(&config(&url), TlsClient::with_roots(roots)).unwrap());
    jwks.prepare("a").expect("a miss").await;
    assert!(jwks.key("a").is_some());
    assert!(jwks.prepare("a").is_none());
    assert_eq!(jwks.len(), 1);
    assert_eq!(server.hits(), 1);

    // The system roots do not trust the private CA: the handshake fails, no key.
    let untrusted = Arc::new(Jwks::new(&config(&url)).unwrap());
    untrusted.prepare("a").expect("a miss").await;
    assert!(untrusted.key("a").is_none());
}

#[tokio::test]
async fn fetches_and_cached_keys_are_metrics_in_the_doc() {
    let handle = crate::metrics::install();
    let a = ec("a");
    let server = JwksServer::start(doc(&[&a, &ec("b")])).await;
    let v = verifier(&config(&server.url()));
    assert_eq!(user(&v, &a.sign(&sub("u"))).await.unwrap(), "u");
    let text = handle.render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("chorus_jwks_fetches_total{result=\"ok\"} ")),
        "{text}"
    );
    assert!(text.contains("# TYPE chorus_jwks_keys gauge"), "{text}");
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .unwrap();
    assert!(doc.contains("| `chorus_jwks_fetches_total` | counter | result |"));
    assert!(doc.contains("| `chorus_jwks_keys` | gauge |  |"));
}
