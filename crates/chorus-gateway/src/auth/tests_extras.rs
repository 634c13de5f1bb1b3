//! The claim rules beyond keys: `audience[_regex]`, `issuer[_regex]`, `user_id_claim`, the
//! previous HMAC secret, the order of checks (invalid before expired) and the separate
//! subscription block of the `client` config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::Config;

const SECRET: &str = "extras-secret";

fn now() -> i64 {
    chorus_core::clock::unix_now()
}

fn hs(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn with(f: impl FnOnce(&mut TokenConfig)) -> JwtVerifier {
    let mut cfg = TokenConfig {
        hmac_secret_key: SECRET.into(),
        ..Default::default()
    };
    f(&mut cfg);
    JwtVerifier::new(&cfg, None).unwrap()
}

fn conn(v: &JwtVerifier, claims: Value) -> Result<String, TokenError> {
    v.verify_connection(&hs(SECRET, &claims)).map(|c| c.user)
}

fn invalid(r: Result<impl std::fmt::Debug, TokenError>) -> String {
    match r {
        Err(TokenError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn audience_string_or_list_and_its_regex() {
    let v = with(|c| c.audience = "chat".into());
    assert_eq!(conn(&v, json!({"sub": "u", "aud": "chat"})).unwrap(), "u");
    assert_eq!(
        conn(&v, json!({"sub": "u", "aud": ["x", "chat"]})).unwrap(),
        "u"
    );
    assert_eq!(
        invalid(conn(&v, json!({"sub": "u", "aud": ["x", "y"]}))),
        "audience mismatch"
    );
    assert_eq!(invalid(conn(&v, json!({"sub": "u"}))), "audience mismatch");

    // Unanchored, as Go's regexp.MatchString; any element of a list may match.
    let v = with(|c| c.audience_regex = "^tenant-(a|b)$".into());
    assert_eq!(
        conn(&v, json!({"sub": "u", "aud": "tenant-a"})).unwrap(),
        "u"
    );
    assert_eq!(
        conn(&v, json!({"sub": "u", "aud": ["web", "tenant-b"]})).unwrap(),
        "u"
    );
    assert_eq!(
        invalid(conn(&v, json!({"sub": "u", "aud": "tenant-c"}))),
        "audience mismatch"
    );
    assert_eq!(invalid(conn(&v, json!({"sub": "u"}))), "audience mismatch");
    let v = with(|c| c.audience_regex = "chat".into());
    assert_eq!(
        conn(&v, json!({"sub": "u", "aud": "my-chat-app"})).unwrap(),
        "u"
    );
}

#[test]
fn issuer_and_its_regex() {
    let v = with(|c| c.issuer = "https://auth.example.com".into());
    assert_eq!(
        conn(&v, json!({"sub": "u", "iss": "https://auth.example.com"})).unwrap(),
        "u"
    );
    assert_eq!(
        invalid(conn(&v, json!({"sub": "u", "iss": "https://evil"}))),
        "issuer mismatch"
    );
    assert_eq!(invalid(conn(&v, json!({"sub": "u"}))), "issuer mismatch");

    let v = with(|c| c.issuer_regex = r"^https://(eu|us)\.auth\.example\.com$".into());
    assert_eq!(
        conn(
            &v,
            json!({"sub": "u", "iss": "https://eu.auth.example.com"})
        )
        .unwrap(),
        "u"
    );
    assert_eq!(
        invalid(conn(
            &v,
            json!({"sub": "u", "iss": "https://asia.auth.example.com"})
        )),
        "issuer mismatch"
    );
}

#[test]
fn exclusive_pairs_bad_regex_and_claim_names_are_config_errors() {
    let err = |f: fn(&mut TokenConfig)| {
        let mut cfg = TokenConfig {
            hmac_secret_key: SECRET.into(),
            ..Default::default()
        };
        f(&mut cfg);
        match JwtVerifier::new(&cfg, None) {
            Err(AuthError::Config(m)) => m,
            other => panic!("expected a config error, got {other:?}"),
        }
    };
    assert_eq!(
        err(|c| {
            c.audience = "a".into();
            c.audience_regex = "a".into();
        }),
        "client.token.audience and client.token.audience_regex are mutually exclusive: set one"
    );
    assert_eq!(
        err(|c| {
            c.issuer = "a".into();
            c.issuer_regex = "a".into();
        }),
        "client.token.issuer and client.token.issuer_regex are mutually exclusive: set one"
    );
    assert!(err(|c| c.issuer_regex = "(".into())
        .starts_with("client.token.issuer_regex is not a valid regular expression"));
    assert_eq!(
        err(|c| c.user_id_claim = "user.id".into()),
        "client.token.user_id_claim \"user.id\" must match ^[a-zA-Z_]+$"
    );
    assert_eq!(
        err(|c| c.jwks_public_endpoint = "https://idp/{{tenant}}/jwks".into()),
        "client.token.jwks_public_endpoint: {{…}} templates are not supported by chorus: \
         use one fixed URL per block"
    );
    assert_eq!(
        err(|c| c.jwks_public_endpoint = "ftp://idp/jwks".into()),
        "client.token.jwks_public_endpoint: \"ftp://idp/jwks\" must start with http:// or https://"
    );
    assert_eq!(
        err(|c| c.hmac_previous_secret_key = "old".into()),
        "client.token.hmac_previous_secret_key needs \
         client.token.hmac_previous_secret_key_valid_until (unix seconds)"
    );
}

#[test]
fn user_id_claim_replaces_sub_for_both_kinds() {
    let v = with(|c| c.user_id_claim = "user_id".into());
    assert_eq!(
        conn(&v, json!({"sub": "ignored", "user_id": "42"})).unwrap(),
        "42"
    );
    assert_eq!(conn(&v, json!({"user_id": 42})).unwrap(), "42");
    // Absent or null: anonymous, even with a `sub`.
    assert_eq!(conn(&v, json!({"sub": "ignored"})).unwrap(), "");
    assert_eq!(conn(&v, json!({"user_id": null})).unwrap(), "");
    assert_eq!(
        invalid(conn(&v, json!({"user_id": {"id": 1}}))),
        "claim \"user_id\" (user_id_claim) is not a string"
    );
    let t = hs(
        SECRET,
        &json!({"user_id": "7", "channel": "$c", "info": {"a": 1}}),
    );
    let c = v.verify_subscription(&t).unwrap();
    assert_eq!((c.user.as_str(), c.channel.as_str()), ("7", "$c"));
    assert_eq!(&c.info[..], br#"{"a":1}"#);
}

#[test]
fn previous_hmac_secret_until_its_deadline() {
    let old = hs("old-secret", &json!({"sub": "u"}));
    let v = with(|c| {
        c.hmac_previous_secret_key = "old-secret".into();
        c.hmac_previous_secret_key_valid_until = now() + 60;
    });
    assert_eq!(v.verify_connection(&old).unwrap().user, "u");
    assert_eq!(conn(&v, json!({"sub": "u"})).unwrap(), "u");
    assert_eq!(
        invalid(v.verify_connection(&hs("other", &json!({})))),
        "bad signature"
    );
    let v = with(|c| {
        c.hmac_previous_secret_key = "old-secret".into();
        c.hmac_previous_secret_key_valid_until = now();
    });
    assert_eq!(invalid(v.verify_connection(&old)), "bad signature");
}

#[test]
fn invalid_comes_before_expired_and_nbf_means_expired() {
    let past = now() - 10;
    let v = with(|c| c.audience = "chat".into());
    // Expired but for another audience: invalid (3500), as in Centrifugo.
    assert_eq!(
        invalid(conn(&v, json!({"sub": "u", "aud": "x", "exp": past}))),
        "audience mismatch"
    );
    assert_eq!(
        conn(&v, json!({"sub": "u", "aud": "chat", "exp": past})),
        Err(TokenError::Expired)
    );
    // `exp` equal to now has expired (the core's rule).
    assert_eq!(
        conn(&v, json!({"aud": "chat", "exp": now()})),
        Err(TokenError::Expired)
    );
    // `nbf` in the future: expired (109 → the SDK gets a new token).
    assert_eq!(
        conn(&v, json!({"aud": "chat", "nbf": now() + 600})),
        Err(TokenError::Expired)
    );
    let v = with(|_| {});
    // A connection token with `channel`: invalid even when expired.
    assert!(invalid(conn(&v, json!({"channel": "c", "exp": past}))).contains("\"channel\""));
    // A subscription token without `channel`: expired first.
    let t = hs(SECRET, &json!({"sub": "u", "exp": past}));
    assert_eq!(v.verify_subscription(&t), Err(TokenError::Expired));
}

#[test]
fn subscription_block_is_used_only_when_enabled() {
    let mut config = Config::default();
    config.client.token.hmac_secret_key = "conn-key".into();
    let claims = json!({"sub": "u", "channel": "$c"});
    let v = JwtVerifier::from_config(&config.client).unwrap();
    assert_eq!(
        v.verify_subscription(&hs("conn-key", &claims))
            .unwrap()
            .channel,
        "$c"
    );

    config.client.subscription_token.enabled = true;
    config.client.subscription_token.hmac_secret_key = "subs-key".into();
    config.client.subscription_token.issuer = "subs-issuer".into();
    config.validate().unwrap();
    let v = JwtVerifier::from_config(&config.client).unwrap();
    let claims = json!({"sub": "u", "channel": "$c", "iss": "subs-issuer"});
    assert_eq!(
        v.verify_subscription(&hs("subs-key", &claims))
            .unwrap()
            .channel,
        "$c"
    );
    assert_eq!(
        invalid(v.verify_subscription(&hs("conn-key", &claims))),
        "bad signature"
    );
    // The connection block keeps its own rules (no issuer).
    assert_eq!(
        v.verify_connection(&hs("conn-key", &json!({"sub": "u"})))
            .unwrap()
            .user,
        "u"
    );

    // Keys in a disabled block are a config error, not silently ignored.
    config.client.subscription_token.enabled = false;
    let msg = config.validate().unwrap_err().to_string();
    assert!(
        msg.contains(
            "client.subscription_token has keys but client.subscription_token.enabled is false"
        ),
        "{msg}"
    );
    // Enabled without a key.
    let mut config = Config::default();
    config.client.subscription_token.enabled = true;
    let msg = config.validate().unwrap_err().to_string();
    assert!(
        msg.contains("client.subscription_token.enabled is true but no key"),
        "{msg}"
    );
}
