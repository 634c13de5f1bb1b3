//! `http_server.*` bounds and the warnings about an exposed HTTP API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn http_api_exposure_warnings() {
    let api_warnings = |address: &str, key: &str, insecure: bool| {
        let mut c = Config::embedded_default();
        c.http_server.address = address.into();
        c.http_api.key = key.into();
        c.http_api.insecure = insecure;
        c.warnings()
            .into_iter()
            .filter(|w| w.starts_with("http_api"))
            .collect::<Vec<_>>()
    };
    // Loopback: nothing to say, whatever the API settings.
    for address in [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "localhost",
        " 127.0.0.1 ",
    ] {
        assert!(api_warnings(address, "", true).is_empty(), "{address}");
        assert!(api_warnings(address, "", false).is_empty(), "{address}");
    }
    // Reachable: insecure and keyless are both reported; a key silences it.
    for address in ["0.0.0.0", "::", "10.1.2.3", "chat.example.com", ""] {
        let w = api_warnings(address, "", true);
        assert_eq!(w.len(), 1, "{address}: {w:?}");
        assert!(
            w[0].starts_with(&format!(
                "http_api.insecure is true and http_server.address {address:?} is not loopback: \
                 anyone who can reach port 8000 can publish and disconnect users"
            )),
            "{w:?}"
        );
        let w = api_warnings(address, "", false);
        assert_eq!(w.len(), 1, "{address}: {w:?}");
        assert!(w[0].contains("every HTTP API request is refused"), "{w:?}");
        assert!(api_warnings(address, "k", false).is_empty(), "{address}");
    }
    // insecure wins over a key (the key is then not checked).
    assert_eq!(api_warnings("0.0.0.0", "k", true).len(), 1);
    assert!(is_loopback_address("127.0.0.1"));
    assert!(!is_loopback_address("::"));
    assert!(!is_loopback_address("[::1"));
}

#[test]
fn http_server_bounds_are_validated() {
    let mut c = Config::default();
    c.http_server.request_timeout = ConfigDuration::ZERO;
    c.http_server.max_header_size = 100;
    let p = problems(&c);
    assert!(
        p.contains(&"http_server.request_timeout must be greater than 0".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(&"http_server.max_header_size (100) must be at least 1024 bytes".to_string()),
        "{p:?}"
    );
    let c = load_text(
        "c.json",
        r#"{"http_server": {"request_timeout": "2s", "max_connections": 40, "max_header_size": 8192}}"#,
    )
    .unwrap()
    .config;
    assert_eq!(c.http_server.request_timeout, ConfigDuration::from_secs(2));
    assert_eq!(c.http_server.max_connections, 40);
    assert_eq!(c.http_server.max_header_size, 8192);
    c.validate().unwrap();
}
