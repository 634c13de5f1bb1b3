//! `grpc_api.*`: defaults, loading (file, env, the `error_mode` names), validation and the
//! warning about a keyless API on a reachable address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn grpc_api_defaults() {
    for c in [Config::default(), Config::embedded_default()] {
        let g = &c.grpc_api;
        assert!(!g.enabled);
        assert_eq!(g.address, "");
        assert_eq!(g.port, 10000);
        assert_eq!(g.key, "");
        assert_eq!(g.error_mode, GrpcErrorMode::Body);
        assert!(!g.reflection);
        assert_eq!(g.max_receive_message_size, 4 << 20);
    }
    // An empty address is the HTTP server's.
    let c = Config::embedded_default();
    assert_eq!(c.grpc_api.bind_address(&c.http_server), "127.0.0.1");
    let mut c = Config::default();
    c.grpc_api.address = " 10.0.0.1 ".into();
    assert_eq!(c.grpc_api.bind_address(&c.http_server), "10.0.0.1");
}

#[test]
fn grpc_api_from_file_and_env() {
    let loaded = load_text(
        "g.yaml",
        "grpc_api:\n  enabled: true\n  address: 127.0.0.1\n  port: 0\n  key: k\n  \
         error_mode: transport\n  reflection: true\n  max_receive_message_size: 2048\n",
    )
    .unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("grpc")),
        "{:?}",
        loaded.warnings
    );
    let g = &loaded.config.grpc_api;
    assert!(g.enabled && g.reflection);
    assert_eq!(
        (g.address.as_str(), g.port, g.key.as_str()),
        ("127.0.0.1", 0, "k")
    );
    assert_eq!(g.error_mode, GrpcErrorMode::Transport);
    assert_eq!(g.max_receive_message_size, 2048);

    let loaded = Config::load(
        None,
        env(&[
            ("CHORUS_GRPC_API_ENABLED", "true"),
            ("CHORUS_GRPC_API_PORT", "10001"),
            ("CHORUS_GRPC_API_KEY", "123"),
            ("CHORUS_GRPC_API_ERROR_MODE", "transport"),
            ("CHORUS_GRPC_API_MAX_RECEIVE_MESSAGE_SIZE", "65536"),
        ]),
        &[],
    )
    .unwrap();
    let g = &loaded.config.grpc_api;
    assert!(g.enabled);
    assert_eq!((g.port, g.key.as_str()), (10001, "123"));
    assert_eq!(g.error_mode, GrpcErrorMode::Transport);
    assert_eq!(g.max_receive_message_size, 65536);

    let loaded = Config::load(None, env(&[("CHORUS_GRPC_API_ERROR_MODE", "")]), &[]).unwrap();
    assert_eq!(loaded.config.grpc_api.error_mode, GrpcErrorMode::Body);
    let err = load_text("g.json", r#"{"grpc_api": {"error_mode": "status"}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grpc_api.error_mode \"status\" is not supported; supported: \"\", transport"),
        "{err}"
    );
}

#[test]
fn grpc_api_is_validated() {
    let mut c = Config::default();
    c.grpc_api.max_receive_message_size = 100;
    assert!(
        problems(&c).contains(
            &"grpc_api.max_receive_message_size (100) must be at least 1024 bytes".to_string()
        ),
        "{:?}",
        problems(&c)
    );
    let mut c = Config::default();
    c.grpc_api.enabled = true;
    c.grpc_api.port = 8000;
    assert_eq!(
        problems(&c),
        vec!["grpc_api.port (8000) must differ from http_server.port on the same address"]
    );
    c.grpc_api.address = "127.0.0.2".into();
    assert!(problems(&c).is_empty());
    // Port 0 on both: two free ports.
    let mut c = Config::default();
    c.grpc_api.enabled = true;
    c.http_server.port = 0;
    c.grpc_api.port = 0;
    assert!(problems(&c).is_empty());
}

#[test]
fn keyless_grpc_api_on_a_reachable_address_warns() {
    let grpc_warnings = |http_address: &str, grpc_address: &str, key: &str, enabled: bool| {
        let mut c = Config::embedded_default();
        c.http_server.address = http_address.into();
        c.http_api.key = "http".into();
        c.grpc_api.enabled = enabled;
        c.grpc_api.address = grpc_address.into();
        c.grpc_api.key = key.into();
        c.warnings()
            .into_iter()
            .filter(|w| w.starts_with("grpc_api"))
            .collect::<Vec<_>>()
    };
    assert!(grpc_warnings("127.0.0.1", "", "", true).is_empty());
    assert!(grpc_warnings("0.0.0.0", "127.0.0.1", "", true).is_empty());
    assert!(grpc_warnings("0.0.0.0", "", "k", true).is_empty());
    assert!(grpc_warnings("0.0.0.0", "", "", false).is_empty());
    let w = grpc_warnings("0.0.0.0", "", "", true);
    assert_eq!(
        w,
        vec![
            "grpc_api.key is empty and the gRPC API address \"0.0.0.0\" is not loopback: anyone \
             who can reach port 10000 can publish and disconnect users through the gRPC API \
             without a key"
        ]
    );
    assert_eq!(grpc_warnings("127.0.0.1", "10.0.0.1", "", true).len(), 1);
}
