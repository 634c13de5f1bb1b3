//! Safer-config warnings and refusals: risky settings, Redis addresses and TLS files, the
//! personal channel's namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn risky_settings_warn_and_bad_redis_settings_are_refused() {
    let warnings = |json: &str| load_text("c.json", json).unwrap().warnings;
    let has = |w: &[String], needle: &str| w.iter().any(|x| x.contains(needle));
    let long = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b";

    let w = warnings(r#"{"http_server": {"address": "0.0.0.0"}, "client": {"insecure": true}}"#);
    assert!(
        has(&w, "client.insecure is true and http_server.address"),
        "{w:?}"
    );
    let w = warnings(r#"{"http_server": {"address": "127.0.0.1"}, "client": {"insecure": true}}"#);
    assert!(!has(&w, "client.insecure is true and"), "{w:?}");
    let w = warnings(
        r#"{"http_server": {"address": "127.0.0.1"}, "client": {"insecure": true, "allowed_origins": ["*"]}}"#,
    );
    assert!(has(&w, r#"client.allowed_origins contains "*""#), "{w:?}");

    let w = warnings(r#"{"client": {"token": {"hmac_secret_key": "short"}}}"#);
    assert!(
        has(&w, "is 5 bytes: HMAC keys shorter than 32 bytes"),
        "{w:?}"
    );
    let w = warnings(&format!(
        r#"{{"client": {{"token": {{"hmac_secret_key": "{long}"}}}}}}"#
    ));
    assert!(!has(&w, "HMAC keys shorter"), "{w:?}");
    for placeholder in [
        "CHANGE_ME_please_0123456789abcdefghij",
        "secret",
        "<your key>",
    ] {
        let w = warnings(&format!(
            r#"{{"http_server": {{"address": "127.0.0.1"}}, "http_api": {{"key": "{placeholder}"}}}}"#
        ));
        assert!(
            has(&w, "http_api.key looks like a placeholder"),
            "{placeholder}: {w:?}"
        );
    }

    // The API key check follows the API to the internal listener.
    let w = warnings(
        r#"{"http_server": {"address": "0.0.0.0", "internal_port": 9001, "internal_address": "127.0.0.1"}}"#,
    );
    assert!(!has(&w, "http_api.key is empty"), "{w:?}");
    let w = warnings(
        r#"{"http_server": {"address": "127.0.0.1", "internal_port": 9001, "internal_address": "10.0.0.5"}}"#,
    );
    assert!(
        has(
            &w,
            r#"http_api.key is empty and http_server.internal_address "10.0.0.5""#
        ),
        "{w:?}"
    );

    let redis = |json: &str| load_text("c.json", json).unwrap().config;
    redis(r#"{"engine": {"type": "redis", "redis": {"address": ["rediss://r:6380"]}}}"#)
        .validate()
        .unwrap();
    let err = redis(r#"{"engine": {"type": "redis", "redis": {"address": ["unix:///r.sock"]}}}"#)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported scheme unix://"), "{err}");
    let err = redis(
        r#"{"engine": {"type": "redis", "redis": {"sentinel_address": "s1:26379,s2:26379"}}}"#,
    )
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("engine.redis.sentinel_master_name must be set with sentinel_address"),
        "{err}"
    );
    let err = redis(
        r#"{"engine": {"type": "redis", "redis": {"tls": {"enabled": true, "server_ca_pem_file": "/nonexistent/ca.pem"}}}}"#,
    )
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(r#"engine.redis.tls.server_ca_pem_file "/nonexistent/ca.pem""#),
        "{err}"
    );
    let err = redis(
        r#"{"engine": {"type": "redis", "redis": {"tls": {"cert_pem_file": "Cargo.toml"}}}}"#,
    )
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("holds no PEM block"), "{err}");
    let w = warnings(
        r#"{"engine": {"type": "redis", "redis": {"tls": {"enabled": true, "insecure_skip_verify": true}}}}"#,
    );
    assert!(
        has(&w, "engine.redis.tls.insecure_skip_verify is true"),
        "{w:?}"
    );
    let c = load_text(
        "c.json",
        r#"{"engine": {"type": "redis", "redis": {"address": ["redis://r:6379", "r2:6379"]}}}"#,
    )
    .unwrap()
    .config;
    c.validate().unwrap();

    let c = load_text(
        "c.json",
        r#"{"http_server": {"port": 8000, "internal_port": 8000}}"#,
    )
    .unwrap()
    .config;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("internal_port (8000) must differ"), "{err}");
}

#[test]
fn personal_channel_needs_its_namespace_and_presence_for_single_connection() {
    let err = |json: &str| {
        load_text("c.json", json)
            .unwrap()
            .config
            .validate()
            .err()
            .map(|e| e.to_string())
    };
    let e = err(r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "personal"}}}"#).unwrap();
    assert!(
        e.contains(r#"personal_channel_namespace "personal" is not a namespace"#),
        "{e}"
    );
    let e = err(r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "personal", "single_connection": true}},
        "channel": {"namespaces": [{"name": "personal"}]}}"#).unwrap();
    assert!(e.contains("single_connection needs presence"), "{e}");
    assert_eq!(
        err(
            r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "personal", "single_connection": true}},
        "channel": {"namespaces": [{"name": "personal", "presence": true}]}}"#
        ),
        None
    );
    // Without a namespace: channel.without_namespace.
    assert_eq!(
        err(r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true}}}"#),
        None
    );
}
