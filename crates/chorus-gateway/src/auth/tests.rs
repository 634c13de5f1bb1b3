#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

// Test-only key pairs, generated with `openssl genpkey` (see tests/fixtures/README.md).
const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/rsa_public.pem");
const EC256_PRIVATE: &str = include_str!("../../tests/fixtures/ec256_private.pem");
const EC256_PUBLIC: &str = include_str!("../../tests/fixtures/ec256_public.pem");
const EC384_PRIVATE: &str = include_str!("../../tests/fixtures/ec384_private.pem");
const EC384_PUBLIC: &str = include_str!("../../tests/fixtures/ec384_public.pem");

const SECRET: &str = "test-secret";

fn now() -> i64 {
    chorus_core::clock::unix_now()
}

fn hs(alg: Algorithm, secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn rsa(alg: Algorithm, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    encode(&Header::new(alg), claims, &key).unwrap()
}

fn ec(alg: Algorithm, pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    encode(&Header::new(alg), claims, &key).unwrap()
}

fn hmac_verifier() -> JwtVerifier {
    let cfg = TokenConfig {
        hmac_secret_key: SECRET.into(),
        ..Default::default()
    };
    JwtVerifier::new(&cfg, None).unwrap()
}

fn all_keys_verifier(ec_public: &str) -> JwtVerifier {
    let cfg = TokenConfig {
        hmac_secret_key: SECRET.into(),
        rsa_public_key: RSA_PUBLIC.into(),
        ecdsa_public_key: ec_public.into(),
        ..Default::default()
    };
    JwtVerifier::new(&cfg, None).unwrap()
}

fn invalid(r: Result<impl std::fmt::Debug, TokenError>) -> String {
    match r {
        Err(TokenError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn hs256_valid_connection_token_with_all_claims() {
    let exp = now() + 3600;
    // `info` keeps its exact JSON text, spacing included.
    let payload = format!(
        r#"{{"sub":"42","exp":{exp},"expire_at":{},"info": {{"name" :"Alice","tags":[1,2]}},"channels":["news","chat:index"],"meta":{{"role":"admin"}},"subs":{{"chat:a":{{"info":{{"x":1}},"b64data":"AAEC","override":{{"presence":{{"value":true}},"force_recovery":{{"value":false}}}}}}}}}}"#,
        exp + 60
    );
    let claims: Value = serde_json::from_str(&payload).unwrap();
    // Sign the exact text (serde_json::Value would reformat `info`).
    let token = sign_raw(SECRET, &payload);
    let c = hmac_verifier().verify_connection(&token).unwrap();
    assert_eq!(c.user, "42");
    assert_eq!(c.exp, Some(exp));
    assert_eq!(c.expire_at, Some(exp + 60));
    assert_eq!(c.expires_at(), Some(exp + 60));
    assert_eq!(&c.info[..], br#"{"name" :"Alice","tags":[1,2]}"#);
    assert_eq!(c.channels, ["news", "chat:index"]);
    assert_eq!(c.meta.as_deref(), Some(&br#"{"role":"admin"}"#[..]));
    let sub = &c.subs["chat:a"];
    assert_eq!(&sub.info[..], br#"{"x":1}"#);
    assert_eq!(&sub.data[..], &[0u8, 1, 2]);
    assert_eq!(sub.override_options.presence, Some(true));
    assert_eq!(sub.override_options.force_recovery, Some(false));
    assert_eq!(sub.override_options.join_leave, None);
    // Same claims through sign_hs256 (used by gentoken) verify too.
    let token = sign_hs256(SECRET, &claims).unwrap();
    assert_eq!(
        hmac_verifier().verify_connection(&token).unwrap().user,
        "42"
    );
}

/// HS256 over a verbatim payload text.
fn sign_raw(secret: &str, payload: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload.as_bytes());
    let message = format!("{header}.{body}");
    let key = EncodingKey::from_secret(secret.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{sig}")
}

#[test]
fn minimal_and_anonymous_tokens() {
    let v = hmac_verifier();
    let c = v
        .verify_connection(&sign_hs256(SECRET, &json!({})).unwrap())
        .unwrap();
    assert_eq!(c, ConnectionClaims::default());
    let c = v
        .verify_connection(&sign_hs256(SECRET, &json!({"sub": "u", "b64info": "aGk="})).unwrap())
        .unwrap();
    assert_eq!(&c.info[..], b"hi");
    assert_eq!(c.exp, None);
    assert_eq!(c.expires_at(), None);
    let c = v
        .verify_connection(
            &sign_hs256(SECRET, &json!({"sub": "u", "info": null, "meta": null})).unwrap(),
        )
        .unwrap();
    assert!(c.info.is_empty());
    assert_eq!(c.meta, None);
}

#[test]
fn hs256_expired_bad_signature_wrong_alg() {
    let v = hmac_verifier();
    let expired = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "1", "exp": now() - 1}),
    );
    assert_eq!(v.verify_connection(&expired), Err(TokenError::Expired));
    assert_eq!(
        v.verify_subscription(&hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "1", "channel": "c", "exp": now() - 1})
        )),
        Err(TokenError::Expired)
    );

    let bad_sig = hs(Algorithm::HS256, "other-secret", &json!({"sub": "1"}));
    assert_eq!(invalid(v.verify_connection(&bad_sig)), "bad signature");

    // Wrong family: RS256 token while only an HMAC key is configured.
    let rs = rsa(Algorithm::RS256, &json!({"sub": "1"}));
    assert_eq!(
        invalid(v.verify_connection(&rs)),
        "token algorithm RS256 needs an RSA key, none is configured"
    );

    // alg confusion: an HS256 token signed with the RSA public key text must not pass when
    // the RSA key is configured but HMAC is not.
    let cfg = TokenConfig {
        rsa_public_key: RSA_PUBLIC.into(),
        ..Default::default()
    };
    let rsa_only = JwtVerifier::new(&cfg, None).unwrap();
    let confused = hs(Algorithm::HS256, RSA_PUBLIC, &json!({"sub": "1"}));
    assert!(invalid(rsa_only.verify_connection(&confused)).contains("needs an HMAC key"));

    // Unsupported algorithm (PS256) and garbage.
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let ps = encode(&Header::new(Algorithm::PS256), &json!({"sub": "1"}), &key).unwrap();
    assert!(
        invalid(all_keys_verifier(EC256_PUBLIC).verify_connection(&ps))
            .contains("unsupported token algorithm PS256")
    );
    invalid(v.verify_connection("not-a-jwt"));
    invalid(v.verify_connection(""));
    // alg "none"
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.";
    invalid(v.verify_connection(none));
}

#[test]
fn hs384_hs512() {
    let v = hmac_verifier();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let t = hs(alg, SECRET, &json!({"sub": "u"}));
        assert_eq!(v.verify_connection(&t).unwrap().user, "u");
    }
}

#[test]
fn nbf_is_honored() {
    let v = hmac_verifier();
    let t = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u", "nbf": now() + 600}),
    );
    // A future `nbf` counts as expired (Centrifugo: error 109, the SDK gets a new token).
    assert_eq!(v.verify_connection(&t), Err(TokenError::Expired));
    let t = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u", "nbf": now() - 5}),
    );
    assert_eq!(v.verify_connection(&t).unwrap().user, "u");
}

#[test]
fn rs256_384_512() {
    let v = all_keys_verifier(EC256_PUBLIC);
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let t = rsa(alg, &json!({"sub": "r", "exp": now() + 60}));
        assert_eq!(v.verify_connection(&t).unwrap().user, "r", "{alg:?}");
    }
    let t = rsa(Algorithm::RS256, &json!({"sub": "r", "exp": now() - 60}));
    assert_eq!(v.verify_connection(&t), Err(TokenError::Expired));
    // Tampered payload.
    let t = rsa(Algorithm::RS256, &json!({"sub": "r"}));
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = hs(Algorithm::HS256, "x", &json!({"sub": "admin"}));
    let forged_body = forged.split('.').nth(1).unwrap();
    parts[1] = forged_body;
    assert_eq!(
        invalid(v.verify_connection(&parts.join("."))),
        "bad signature"
    );
}

#[test]
fn es256_es384() {
    let v = all_keys_verifier(EC256_PUBLIC);
    let t = ec(
        Algorithm::ES256,
        EC256_PRIVATE,
        &json!({"sub": "e", "exp": now() + 60}),
    );
    assert_eq!(v.verify_connection(&t).unwrap().user, "e");
    // ES384 token against a P-256 key.
    let t384 = ec(Algorithm::ES384, EC384_PRIVATE, &json!({"sub": "e"}));
    invalid(v.verify_connection(&t384));

    let v = all_keys_verifier(EC384_PUBLIC);
    assert_eq!(v.verify_connection(&t384).unwrap().user, "e");
    invalid(v.verify_connection(&t));
}

#[test]
fn audience_and_issuer_checked_only_when_configured() {
    let open = hmac_verifier();
    let with_aud = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u", "aud": "chat", "iss": "me"}),
    );
    assert_eq!(open.verify_connection(&with_aud).unwrap().user, "u");

    let cfg = TokenConfig {
        hmac_secret_key: SECRET.into(),
        audience: "chat".into(),
        issuer: "me".into(),
        ..Default::default()
    };
    let strict = JwtVerifier::new(&cfg, None).unwrap();
    assert_eq!(strict.verify_connection(&with_aud).unwrap().user, "u");
    let wrong_aud = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u", "aud": "x", "iss": "me"}),
    );
    assert_eq!(
        invalid(strict.verify_connection(&wrong_aud)),
        "audience mismatch"
    );
    let wrong_iss = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u", "aud": "chat", "iss": "x"}),
    );
    assert_eq!(
        invalid(strict.verify_connection(&wrong_iss)),
        "issuer mismatch"
    );
    let missing = hs(Algorithm::HS256, SECRET, &json!({"sub": "u"}));
    invalid(strict.verify_connection(&missing));
}

#[test]
fn connection_token_with_channel_is_invalid() {
    let t = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u", "channel": "news"}),
    );
    assert_eq!(
        invalid(hmac_verifier().verify_connection(&t)),
        "connection token must not contain a \"channel\" claim"
    );
}

#[test]
fn bad_b64info_is_invalid() {
    let t = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u", "b64info": "!!!"}),
    );
    assert!(invalid(hmac_verifier().verify_connection(&t)).starts_with("invalid b64info"));
}

#[test]
fn subscription_tokens() {
    let v = hmac_verifier();
    let exp = now() + 100;
    let t = hs(
        Algorithm::HS256,
        SECRET,
        &json!({
            "sub": "u1", "channel": "$private", "client": "c-1",
            "info": {"a": 1}, "b64data": "AQI=", "exp": exp, "expire_at": 0,
            "override": {"join_leave": {"value": true}, "force_positioning": {"value": true}}
        }),
    );
    let c = v.verify_subscription(&t).unwrap();
    assert_eq!(c.user, "u1");
    assert_eq!(c.channel, "$private");
    assert_eq!(c.client, "c-1");
    assert_eq!(&c.info[..], br#"{"a":1}"#);
    assert_eq!(&c.data[..], &[1u8, 2]);
    assert_eq!(c.exp, Some(exp));
    assert_eq!(c.expire_at, Some(0));
    assert_eq!(c.expires_at(), None);
    assert_eq!(c.override_options.join_leave, Some(true));
    assert_eq!(c.override_options.force_positioning, Some(true));
    assert_eq!(c.override_options.presence, None);

    let t = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "u1", "data": {"k": "v"}, "channel": "c", "b64info": "aGk="}),
    );
    let c = v.verify_subscription(&t).unwrap();
    assert_eq!(&c.data[..], br#"{"k":"v"}"#);
    assert_eq!(&c.info[..], b"hi");

    for claims in [json!({"sub": "u1"}), json!({"sub": "u1", "channel": ""})] {
        let t = hs(Algorithm::HS256, SECRET, &claims);
        assert_eq!(
            invalid(v.verify_subscription(&t)),
            "subscription token needs a non-empty \"channel\" claim"
        );
    }
}

#[test]
fn separate_subscription_keys() {
    let conn = TokenConfig {
        hmac_secret_key: "conn-key".into(),
        ..Default::default()
    };
    let subs = TokenConfig {
        hmac_secret_key: "subs-key".into(),
        ..Default::default()
    };
    let v = JwtVerifier::new(&conn, Some(&subs)).unwrap();
    let sub_claims = json!({"sub": "u", "channel": "c"});
    let t = hs(Algorithm::HS256, "subs-key", &sub_claims);
    assert_eq!(v.verify_subscription(&t).unwrap().channel, "c");
    assert_eq!(invalid(v.verify_connection(&t)), "bad signature");
    let t = hs(Algorithm::HS256, "conn-key", &sub_claims);
    assert_eq!(invalid(v.verify_subscription(&t)), "bad signature");

    // No subscription block → connection keys.
    let v = JwtVerifier::new(&conn, None).unwrap();
    assert_eq!(v.verify_subscription(&t).unwrap().channel, "c");
}

#[test]
fn invalid_pem_keys_name_the_config_key() {
    let cfg = TokenConfig {
        rsa_public_key: "garbage".into(),
        ..Default::default()
    };
    let err = JwtVerifier::new(&cfg, None).unwrap_err();
    assert!(
        matches!(&err, AuthError::InvalidKey { key, .. } if key == "client.token.rsa_public_key")
    );
    // An EC key where an RSA key is expected.
    let cfg = TokenConfig {
        rsa_public_key: EC256_PUBLIC.into(),
        ..Default::default()
    };
    assert!(JwtVerifier::new(&cfg, None).is_err());
}

#[test]
fn sign_hs256_and_claims_helper() {
    assert!(matches!(
        sign_hs256("", &json!({})),
        Err(AuthError::Signing(_))
    ));
    let claims = connection_token_claims(
        "alice",
        Duration::from_secs(3600),
        Some(&json!({"name": "Alice"})),
        &["news".to_string()],
    );
    let t = sign_hs256(SECRET, &claims).unwrap();
    let c = hmac_verifier().verify_connection(&t).unwrap();
    assert_eq!(c.user, "alice");
    let exp = c.exp.unwrap();
    assert!((now() + 3590..=now() + 3600).contains(&exp), "{exp}");
    assert_eq!(&c.info[..], br#"{"name":"Alice"}"#);
    assert_eq!(c.channels, ["news"]);
    let claims = connection_token_claims("bob", Duration::ZERO, None, &[]);
    assert_eq!(claims, json!({"sub": "bob"}));
}

#[test]
fn debug_hides_keys() {
    let text = format!("{:?}", hmac_verifier());
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("hmac"), "{text}");
}
