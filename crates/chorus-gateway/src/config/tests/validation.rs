//! Semantic validation: every problem reported at once, named by its key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn validation_errors() {
    let mut c = Config::default();
    c.client.options.ping_interval = ConfigDuration::from_secs(5);
    c.client.options.pong_timeout = ConfigDuration::from_secs(8);
    c.client.options.queue_max_size = 100;
    c.websocket.message_size_limit = 10;
    c.websocket.compression_level = 10;
    c.engine.kind = EngineType::Redis;
    c.engine.redis.address = Vec::new();
    c.engine.redis.partitions = 0;
    c.shutdown.drain_window = ConfigDuration::from_secs(60);
    c.http_api.handler_prefix = "/connection".into();
    c.client.allowed_origins = vec!["http://[".into()];
    let p = problems(&c);
    let expect = [
        "client.ping_interval (5s) must be greater than client.pong_timeout (8s)",
        "client.queue_max_size (100) must be at least 1024 bytes",
        "websocket.message_size_limit (10) must be at least 1024 bytes",
        "websocket.compression_level (10) must be 0-9",
        "engine.redis.address must name at least one address",
        "engine.redis.partitions must be at least 1",
        "shutdown.drain_window (1m) must not exceed shutdown.timeout (30s)",
        "websocket.handler_prefix (\"/connection/websocket\") and http_api.handler_prefix (\"/connection\") overlap",
        "client.allowed_origins[0] (\"http://[\") is not a valid glob",
    ];
    for e in expect {
        assert!(p.iter().any(|x| x.contains(e)), "missing {e:?} in {p:#?}");
    }
    assert_eq!(p.len(), expect.len(), "{p:#?}");

    // The connect reply carries whole seconds: a sub-second interval would read as "no pings".
    let mut c = Config::default();
    c.client.options.ping_interval = ConfigDuration::from_millis(500);
    c.client.options.pong_timeout = ConfigDuration::from_millis(200);
    assert_eq!(
        problems(&c),
        [
            "client.ping_interval (500ms) must be at least 1s (the connect reply carries whole \
          seconds), or 0 to disable"
        ]
    );

    // either interval 0 disables the ping/pong rule
    let mut c = Config::default();
    c.client.options.ping_interval = ConfigDuration::ZERO;
    c.client.options.pong_timeout = ConfigDuration::from_secs(8);
    c.validate().unwrap();
}

/// `engine.type` and `log.format` are enums: an unknown name fails loading, naming the key,
/// the value and the accepted names, with the file position or the variable.
#[test]
fn unknown_engine_type_and_log_format_fail_loading() {
    let err = load_text("c.yaml", "engine:\n  type: postgres\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.yaml:"), "{err}");
    assert!(
        err.contains("engine.type \"postgres\" is not supported; supported: memory, redis"),
        "{err}"
    );
    let err = load_text("c.json", r#"{"log": {"format": "xml"}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("log.format \"xml\" is not supported; supported: text, json"),
        "{err}"
    );
    let err = load_text("c.toml", "[log]\nformat = \"JSON\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("log.format \"JSON\" is not supported"),
        "{err}"
    );
    let err = Config::load(None, env(&[("CHORUS_ENGINE_TYPE", "etcd")]), &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "environment variable CHORUS_ENGINE_TYPE: engine.type: engine.type \"etcd\" is not \
         supported; supported: memory, redis"
    );
    let set = [("log.format".to_owned(), "xml".to_owned())];
    let err = Config::load(None, env(&[]), &set).unwrap_err().to_string();
    assert!(
        err.starts_with("--set log.format: log.format \"xml\""),
        "{err}"
    );
    // The names round-trip.
    for kind in EngineType::ALL {
        assert_eq!(EngineType::from_name(kind.name()), Some(*kind));
    }
    let c = load_text("c.yaml", "engine:\n  type: redis\nlog:\n  format: json\n")
        .unwrap()
        .config;
    assert_eq!(
        (c.engine.kind, c.log.format),
        (EngineType::Redis, LogFormat::Json)
    );
}

#[test]
fn namespace_validation() {
    let mut c = Config::default();
    let ns = |name: &str| chorus_core::options::Namespace {
        name: name.into(),
        ..Default::default()
    };
    let mut bad_history = ns("hist");
    bad_history.options.history_size = 10;
    let mut ttl_only = ns("ttl_only");
    ttl_only.options.history_ttl = ConfigDuration::from_secs(10);
    let mut recovery = ns("rec");
    recovery.options.force_recovery = true;
    c.channel.namespaces = vec![
        ns("ok-name_1"),
        ns("a"),
        ns("bad name"),
        ns("ok-name_1"),
        bad_history,
        ttl_only,
        recovery,
    ];
    c.channel.without_namespace.force_recovery = true;
    let p = problems(&c);
    let expect = [
        "channel.without_namespace: force_recovery needs history (history_size and history_ttl > 0)",
        "channel.namespaces[1].name \"a\" must match ^[-a-zA-Z0-9_]{2,}$",
        "channel.namespaces[2].name \"bad name\" must match ^[-a-zA-Z0-9_]{2,}$",
        "channel.namespaces[3].name \"ok-name_1\" is defined twice",
        "channel.namespaces[4] (\"hist\"): history_size is set, so history_ttl must be > 0",
        "channel.namespaces[5] (\"ttl_only\"): history_ttl is set, so history_size must be > 0",
        "channel.namespaces[6] (\"rec\"): force_recovery needs history (history_size and history_ttl > 0)",
    ];
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    for (got, want) in p.iter().zip(expect) {
        assert_eq!(got, want);
    }
}

#[test]
fn invalid_token_keys_fail_validation() {
    let mut c = Config::default();
    c.client.subscription_token.enabled = true;
    c.client.subscription_token.ecdsa_public_key = "-----BEGIN PUBLIC KEY-----\nxx\n".into();
    let p = problems(&c);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("client.subscription_token.ecdsa_public_key: not a valid PEM public key"),
        "{p:?}"
    );
}

#[test]
fn invalid_error_lists_every_problem() {
    let mut c = Config::default();
    c.engine.memory.max_streams = 0;
    c.engine.memory.max_history_bytes = 0;
    let msg = c.validate().unwrap_err().to_string();
    assert!(msg.starts_with("invalid config:\n  - "), "{msg}");
    assert_eq!(msg.lines().count(), 3, "{msg}");
}

#[test]
fn subscription_token_falls_back_to_connection_keys() {
    let mut c = Config::default();
    c.client.token.hmac_secret_key = "conn".into();
    c.client.token.audience = "aud".into();
    assert_eq!(c.client.subscription_token_config().hmac_secret_key, "conn");
    assert_eq!(c.client.subscription_token_config().audience, "aud");
    // Keys alone do not switch blocks (validation refuses that); `enabled` does.
    c.client.subscription_token.hmac_secret_key = "subs".into();
    assert_eq!(c.client.subscription_token_config().hmac_secret_key, "conn");
    c.client.subscription_token.enabled = true;
    assert_eq!(c.client.subscription_token_config().hmac_secret_key, "subs");
    assert_eq!(c.client.subscription_token_config().audience, "");
}

#[test]
fn abuse_bounds_validation() {
    let mut c = Config::default();
    c.client.options.reply_max_size = 10;
    c.client.options.json_max_depth = 0;
    c.client.options.command_rate_limit.burst = 5;
    assert_eq!(
        problems(&c),
        [
            "client.reply_max_size (10) must be at least 1024 bytes",
            "client.json_max_depth (0) must be between 1 and 128",
            "client.command_rate_limit.burst is set but rate is 0 (no limit): set a rate",
        ]
    );
    c.client.options.json_max_depth = 129;
    assert!(problems(&c)
        .iter()
        .any(|p| p == "client.json_max_depth (129) must be between 1 and 128"));

    // The keys load from every layer, nested ones included.
    let yaml = "client:\n  json_max_depth: 16\n  reply_max_size: 2097152\n  command_rate_limit:\n    rate: 20\n    burst: 200\nchannel:\n  presence_max_clients: 50\n  join_leave_max_rate: 0\n  namespaces:\n    - name: raw\n      allow_binary_data: true\n";
    let loaded = load_text("c.yaml", yaml).unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("unknown")),
        "{:?}",
        loaded.warnings
    );
    let c = loaded.config;
    assert_eq!(c.client.options.json_max_depth, 16);
    assert_eq!(c.client.options.reply_max_size, 2 << 20);
    assert_eq!(c.client.options.command_rate_limit.rate, 20);
    assert_eq!(c.client.options.command_rate_limit.bucket(), 200);
    assert_eq!(c.client.options.command_rate_limit.disconnect_after, 50);
    assert_eq!(c.channel.presence_max_clients, 50);
    assert_eq!(c.channel.join_leave_max_rate, 0);
    assert!(c.channel.namespaces[0].options.allow_binary_data);
    let c = Config::load(
        None,
        env(&[("CHORUS_CLIENT_COMMAND_RATE_LIMIT_RATE", "7")]),
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(c.client.options.command_rate_limit.rate, 7);
    // Off by default in the embedded default.
    assert!(!Config::embedded_default()
        .client
        .options
        .command_rate_limit
        .enabled());
}

#[test]
fn presence_keys_load_and_validate() {
    let loaded = load_text(
        "presence.yaml",
        "presence:\n  endpoints: [\"http://presence-0:10100\", \"http://10.0.0.2:10100/\"]\n  key: k\n  flush_interval: 20ms\npresence_server:\n  port: 0\n  metrics_port: 0\n  lease_ttl: 3s\n",
    )
    .unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("unknown")),
        "{:?}",
        loaded.warnings
    );
    let c = loaded.config;
    assert_eq!(c.presence.endpoints.len(), 2);
    assert_eq!(c.presence.flush_interval, ConfigDuration::from_millis(20));
    assert_eq!(c.presence_server.lease_ttl, ConfigDuration::from_secs(3));
    assert!(problems(&c).is_empty(), "{:?}", problems(&c));

    // Environment: a comma-separated list, the key from a secret.
    let loaded = Config::load(
        None,
        env(&[
            ("CHORUS_PRESENCE_ENDPOINTS", "http://a:10100,http://b:10100"),
            ("CHORUS_PRESENCE_KEY", "secret"),
            ("CHORUS_PRESENCE_SERVER_LEASE_TTL", "5s"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.config.presence.endpoints,
        ["http://a:10100", "http://b:10100"]
    );
    assert_eq!(loaded.config.presence.key, "secret");
    assert_eq!(
        loaded.config.presence_server.lease_ttl,
        ConfigDuration::from_secs(5)
    );

    let mut c = Config::default();
    c.presence.endpoints = vec!["presence:10100".into(), "http://:1".into()];
    c.presence.flush_interval = ConfigDuration::from_secs(2);
    c.presence_server.lease_ttl = ConfigDuration::ZERO;
    c.presence_server.metrics_port = c.presence_server.port;
    c.presence_server.max_message_size = 10;
    c.presence_server.max_node_entries = 0;
    let p = problems(&c);
    let expect = [
        "presence.endpoints[0] (\"presence:10100\") must be http://host:port",
        "presence.endpoints[1] (\"http://:1\") must be http://host:port",
        "presence.key must be set when presence.endpoints is",
        "presence.flush_interval (2s) must be between 1ms and 1s",
        "presence_server.lease_ttl must be greater than 0",
        "presence_server.port and presence_server.metrics_port are both 10100",
        "presence_server.max_message_size (10) must be at least 65536 bytes",
        "presence_server.max_node_entries must be at least 1",
    ];
    for e in expect {
        assert!(p.iter().any(|x| x.contains(e)), "missing {e:?} in {p:#?}");
    }
    assert_eq!(p.len(), expect.len(), "{p:#?}");
}
