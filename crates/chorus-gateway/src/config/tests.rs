#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::load::{env_name, leaf_paths};
use super::*;

mod admin;
mod docs;
mod engine;
mod grpc_api;
mod http_server;
mod proxy;
mod safety;
mod validation;

/// A file in a fresh temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chorus-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_text(name: &str, text: &str) -> Result<Loaded, ConfigError> {
    let f = TempFile::new(name, text);
    Config::load(Some(f.path()), no_env(), &[])
}

fn problems(config: &Config) -> Vec<String> {
    match config.validate() {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid { problems }) => problems,
        Err(other) => panic!("unexpected error {other}"),
    }
}

const JSON: &str = r#"{
  "http_server": {"port": 9001, "header_read_timeout": "2s"},
  "client": {"ping_interval": "20s", "token": {"hmac_secret_key": "k-0123456789abcdef0123456789abcdef"}},
  "channel": {"namespaces": [{"name": "chat", "presence": true, "history_size": 10, "history_ttl": "1m"}]},
  "http_api": {"key": "api"},
  "engine": {"type": "memory"}
}"#;

const YAML: &str = "
http_server:
  port: 9001
  header_read_timeout: 2s
client:
  ping_interval: 20s
  token:
    hmac_secret_key: k-0123456789abcdef0123456789abcdef
channel:
  namespaces:
    - name: chat
      presence: true
      history_size: 10
      history_ttl: 1m
http_api:
  key: api
engine:
  type: memory
";

const TOML: &str = r#"
[http_server]
port = 9001
header_read_timeout = "2s"

[client]
ping_interval = "20s"

[client.token]
hmac_secret_key = "k-0123456789abcdef0123456789abcdef"

[[channel.namespaces]]
name = "chat"
presence = true
history_size = 10
history_ttl = "1m"

[http_api]
key = "api"

[engine]
type = "memory"
"#;

fn assert_sample(c: &Config) {
    assert_eq!(c.http_server.port, 9001);
    assert_eq!(c.http_server.address, "0.0.0.0");
    assert_eq!(
        c.http_server.header_read_timeout,
        ConfigDuration::from_secs(2)
    );
    assert_eq!(
        c.client.options.ping_interval,
        ConfigDuration::from_secs(20)
    );
    assert_eq!(c.client.options.pong_timeout, ConfigDuration::from_secs(8));
    assert_eq!(
        c.client.token.hmac_secret_key,
        "k-0123456789abcdef0123456789abcdef"
    );
    assert_eq!(c.channel.namespaces.len(), 1);
    let ns = &c.channel.namespaces[0];
    assert_eq!(ns.name, "chat");
    assert!(ns.options.presence);
    assert!(!ns.options.join_leave);
    assert_eq!(ns.options.history_size, 10);
    assert_eq!(ns.options.history_ttl, ConfigDuration::from_secs(60));
    assert_eq!(c.channel.max_length, 255);
    assert!(!c.demo.enabled);
    assert!(!c.client.options.insecure);
    c.validate().unwrap();
}

#[test]
fn loads_json_yaml_toml() {
    for (name, text) in [
        ("c.json", JSON),
        ("c.yaml", YAML),
        ("c.yml", YAML),
        ("c.toml", TOML),
    ] {
        let loaded = load_text(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        assert_sample(&loaded.config);
    }
}

#[test]
fn empty_files_give_defaults() {
    let c = load_text("c.yaml", "").unwrap().config;
    assert_eq!(c, Config::default());
    let c = load_text("c.json", "{}").unwrap().config;
    assert_eq!(c, Config::default());
    let c = load_text("c.toml", "").unwrap().config;
    assert_eq!(c, Config::default());
}

#[test]
fn file_defaults() {
    let c = Config::default();
    assert_eq!(c.http_server.address, "0.0.0.0");
    assert_eq!(c.http_server.port, 8000);
    assert_eq!(
        c.http_server.header_read_timeout,
        ConfigDuration::from_secs(10)
    );
    assert_eq!(c.http_server.max_request_body_size, 1 << 20);
    assert_eq!(c.http_server.request_timeout, ConfigDuration::from_secs(10));
    assert_eq!(c.http_server.max_header_size, 32 << 10);
    assert_eq!(c.http_server.max_connections, 0);
    assert_eq!(c.http_server.tcp_backlog, 4096);
    assert_eq!(c.websocket.message_size_limit, 65536);
    assert_eq!(c.websocket.write_timeout, ConfigDuration::from_secs(1));
    assert!(!c.websocket.echo_endpoint);
    assert_eq!(c.websocket.handler_prefix, "/connection/websocket");
    assert_eq!(c.http_api.handler_prefix, "/api");
    assert_eq!(c.engine.kind, EngineType::Memory);
    assert_eq!(c.shutdown.timeout, ConfigDuration::from_secs(30));
    assert_eq!(c.shutdown.drain_window, ConfigDuration::from_secs(5));
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(!c.demo.enabled);
    c.validate().unwrap();
    // Not insecure and no key: legal, but warned about; so is a keyless API on 0.0.0.0.
    let w = c.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("need a token"));
    assert_eq!(
        w[1],
        "http_api.key is empty and http_server.address \"0.0.0.0\" is not loopback: every HTTP \
         API request is refused with 401 (set http_api.key to use the API)"
    );
}

#[test]
fn embedded_default_contents() {
    let c = Config::embedded_default();
    assert_eq!(c.http_server.address, "127.0.0.1");
    assert_eq!(c.http_server.port, 8000);
    assert_eq!(c.engine.kind, EngineType::Memory);
    assert!(c.client.options.insecure);
    let key = &c.client.token.hmac_secret_key;
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(
        key,
        &Config::embedded_default().client.token.hmac_secret_key
    );
    assert_eq!(
        c.client.allowed_origins,
        ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    );
    assert_eq!(c.channel.namespaces.len(), 1);
    let ns = &c.channel.namespaces[0];
    assert_eq!(ns.name, "chat");
    let o = &ns.options;
    assert!(o.presence && o.join_leave && o.force_push_join_leave && o.force_recovery);
    assert_eq!(o.history_size, 100);
    assert_eq!(o.history_ttl, ConfigDuration::from_secs(300));
    assert!(o.allow_subscribe_for_client);
    assert!(o.allow_publish_for_subscriber && o.allow_publish_for_client);
    assert!(o.allow_presence_for_subscriber && o.allow_history_for_subscriber);
    assert!(!o.allow_subscribe_for_anonymous && !o.allow_history_for_client);
    assert!(c.demo.enabled);
    assert_eq!(c.http_api.key, "");
    assert!(!c.http_api.insecure);
    c.validate().unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn no_path_starts_from_embedded_default() {
    let loaded = Config::load(None, no_env(), &[]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.http_server.address, "127.0.0.1");
    assert!(c.demo.enabled);
    assert_eq!(c.client.token.hmac_secret_key.len(), 64);
    assert_eq!(c.channel.namespaces[0].name, "chat");
}

#[test]
fn precedence_file_env_flags() {
    let f = TempFile::new(
        "c.yaml",
        "http_server:\n  port: 9001\n  address: 10.0.0.1\nclient:\n  ping_interval: 20s\n",
    );
    // env over file
    let e = env(&[
        ("CHORUS_HTTP_SERVER_PORT", "9002"),
        ("CHORUS_CLIENT_PING_INTERVAL", "30s"),
        ("CHORUS_CLIENT_PONG_TIMEOUT", "10"),
        ("PATH", "/bin"),
    ]);
    let c = Config::load(Some(f.path()), e.clone(), &[]).unwrap().config;
    assert_eq!(c.http_server.port, 9002);
    assert_eq!(c.http_server.address, "10.0.0.1");
    assert_eq!(
        c.client.options.ping_interval,
        ConfigDuration::from_secs(30)
    );
    assert_eq!(c.client.options.pong_timeout, ConfigDuration::from_secs(10));
    // flags over env
    let flags = vec![
        ("http_server.port".to_string(), "9003".to_string()),
        ("client.ping_interval".to_string(), "1m".to_string()),
    ];
    let c = Config::load(Some(f.path()), e, &flags).unwrap().config;
    assert_eq!(c.http_server.port, 9003);
    assert_eq!(
        c.client.options.ping_interval,
        ConfigDuration::from_secs(60)
    );
    assert_eq!(c.client.options.pong_timeout, ConfigDuration::from_secs(10));
    // env without a file applies over the embedded default
    let c = Config::load(None, env(&[("CHORUS_DEMO_ENABLED", "false")]), &[])
        .unwrap()
        .config;
    assert!(!c.demo.enabled);
    assert_eq!(c.http_server.address, "127.0.0.1");
}

#[test]
fn env_names_with_underscores_and_types() {
    let e = env(&[
        (
            "CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY",
            "12345678901234567890123456789012",
        ),
        (
            "CHORUS_CLIENT_ALLOWED_ORIGINS",
            r#"["http://a", "http://b:*"]"#,
        ),
        ("CHORUS_CHANNEL_WITHOUT_NAMESPACE_PRESENCE", "true"),
        (
            "CHORUS_CHANNEL_NAMESPACES",
            r#"[{"name":"room","join_leave":true}]"#,
        ),
        ("CHORUS_WEBSOCKET_MESSAGE_SIZE_LIMIT", "2048"),
        ("CHORUS_ENGINE_TYPE", "memory"),
        ("CHORUS_HTTP_API_KEY", "true"),
    ]);
    let f = TempFile::new("c.json", "{}");
    let loaded = Config::load(Some(f.path()), e, &[]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    // string keys keep the text even when it looks like JSON
    assert_eq!(
        c.client.token.hmac_secret_key,
        "12345678901234567890123456789012"
    );
    assert_eq!(c.http_api.key, "true");
    assert_eq!(c.client.allowed_origins, ["http://a", "http://b:*"]);
    assert!(c.channel.without_namespace.presence);
    assert_eq!(c.channel.namespaces.len(), 1);
    assert_eq!(c.channel.namespaces[0].name, "room");
    assert!(c.channel.namespaces[0].options.join_leave);
    assert_eq!(c.websocket.message_size_limit, 2048);

    // comma-separated arrays
    let e = env(&[("CHORUS_CLIENT_ALLOWED_ORIGINS", "http://a, http://b")]);
    let c = Config::load(Some(f.path()), e, &[]).unwrap().config;
    assert_eq!(c.client.allowed_origins, ["http://a", "http://b"]);
}

#[test]
fn env_name_map_is_injective_and_covers_leaves() {
    let leaves = leaf_paths();
    let mut names: Vec<String> = leaves.iter().map(|l| env_name(&l.path)).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    for expected in [
        "CHORUS_HTTP_SERVER_PORT",
        "CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY",
        "CHORUS_CLIENT_SUBSCRIPTION_TOKEN_RSA_PUBLIC_KEY",
        "CHORUS_CLIENT_PING_INTERVAL",
        "CHORUS_CLIENT_ALLOWED_ORIGINS",
        "CHORUS_CHANNEL_WITHOUT_NAMESPACE_PRESENCE",
        "CHORUS_CHANNEL_NAMESPACES",
        "CHORUS_ENGINE_TYPE",
        "CHORUS_SHUTDOWN_DRAIN_WINDOW",
        "CHORUS_DEMO_ENABLED",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing");
    }
}

#[test]
fn unknown_env_vars_warn() {
    let e = env(&[
        ("CHORUS_HTTP_SERVER_PORTT", "1"),
        ("CHORUS_CONFIG", "/etc/chorus.yaml"),
    ]);
    let loaded = Config::load(None, e, &[]).unwrap();
    assert_eq!(
        loaded.warnings,
        ["unknown environment variable \"CHORUS_HTTP_SERVER_PORTT\" (no config key matches)"]
    );
}

#[test]
fn bad_env_and_flag_values_are_attributed() {
    let err = Config::load(None, env(&[("CHORUS_HTTP_SERVER_PORT", "abc")]), &[]).unwrap_err();
    match &err {
        ConfigError::Env { var, message } => {
            assert_eq!(var, "CHORUS_HTTP_SERVER_PORT");
            assert!(message.contains("http_server.port"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let flags = vec![("client.ping_interval".to_string(), "soon".to_string())];
    let err = Config::load(None, no_env(), &flags).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Override { key, .. } if key == "client.ping_interval"),
        "{err:?}"
    );
    assert!(err.to_string().contains("invalid duration"), "{err}");

    let flags = vec![("client.pingg_interval".to_string(), "1s".to_string())];
    let err = Config::load(None, no_env(), &flags).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--set client.pingg_interval: unknown config key (did you mean \"client.ping_interval\"?)"
    );
}

#[test]
fn unknown_keys_are_reported_with_paths() {
    let text = r#"{
      "htp_server": {},
      "client": {"pingg_interval": "1s", "token": {"hmac_secret": "x"}},
      "channel": {"namespaces": [
        {"name": "a1", "presence": true},
        {"name": "b1", "presense": true}
      ]},
      "websocket": {"compression": true, "read_buffer_size": 1024}
    }"#;
    let loaded = load_text("c.json", text).unwrap();
    let mut w = loaded.warnings.clone();
    w.retain(|w| w.starts_with("unknown config key"));
    w.sort();
    assert_eq!(
        w,
        [
            "unknown config key \"channel.namespaces[1].presense\" (did you mean \"presence\"?)",
            "unknown config key \"client.pingg_interval\" (did you mean \"ping_interval\"?)",
            "unknown config key \"client.token.hmac_secret\"",
            "unknown config key \"htp_server\" (did you mean \"http_server\"?)",
            "unknown config key \"websocket.read_buffer_size\"",
        ]
    );
    // known keys still applied
    assert!(loaded.config.channel.namespaces[0].options.presence);
    assert!(!loaded.config.channel.namespaces[1].options.presence);
}

#[test]
fn unknown_keys_in_yaml_and_toml() {
    let loaded = load_text("c.yaml", "log:\n  levle: debug\n").unwrap();
    assert!(loaded
        .warnings
        .contains(&"unknown config key \"log.levle\" (did you mean \"level\"?)".to_string()));
    let loaded = load_text("c.toml", "[engine]\nkind = \"memory\"\n").unwrap();
    assert!(loaded
        .warnings
        .contains(&"unknown config key \"engine.kind\"".to_string()));
}

#[test]
fn durations_in_every_form() {
    let text = "client:\n  ping_interval: 1m30s\n  pong_timeout: 5\n  stale_close_delay: 1500ms\n\
                shutdown:\n  timeout: 2h\n  drain_window: 0\n";
    let c = load_text("c.yaml", text).unwrap().config;
    assert_eq!(
        c.client.options.ping_interval,
        ConfigDuration::from_secs(90)
    );
    assert_eq!(c.client.options.pong_timeout, ConfigDuration::from_secs(5));
    assert_eq!(
        c.client.options.stale_close_delay,
        ConfigDuration::from_millis(1500)
    );
    assert_eq!(c.shutdown.timeout, ConfigDuration::from_secs(7200));
    assert_eq!(c.shutdown.drain_window, ConfigDuration::ZERO);

    let err = load_text("c.yaml", "client:\n  ping_interval: 10 seconds\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("invalid duration"), "{msg}");
    assert!(msg.contains("c.yaml:"), "{msg}");
}

#[test]
fn parse_errors_carry_path_and_location() {
    let err = load_text("c.json", "{\n  \"http_server\": {\"port\": 80,}\n}").unwrap_err();
    match &err {
        ConfigError::Parse { path, location, .. } => {
            assert!(path.ends_with("c.json"));
            assert_eq!(location.line, Some(2));
        }
        other => panic!("unexpected {other:?}"),
    }
    // type error in JSON: located by re-parsing the typed config
    let err = load_text("c.json", "{\n\"http_server\": {\n  \"port\": \"x\"\n}}").unwrap_err();
    match &err {
        ConfigError::Parse {
            location, message, ..
        } => {
            assert_eq!(location.line, Some(3), "{message}");
            assert!(message.contains("u16"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = load_text("c.toml", "[http_server]\nport = 80\nport = 81\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Parse { location, .. } if location.line == Some(3)),
        "{err:?}"
    );
    let err = load_text("c.yaml", "http_server:\n  port: [1\n").unwrap_err();
    assert!(matches!(&err, ConfigError::Parse { location, .. } if location.line.is_some()));
    let err = load_text("c.yaml", "- 1\n- 2\n").unwrap_err();
    assert!(
        err.to_string().contains("top level must be a mapping"),
        "{err}"
    );
    let err = load_text("c.ini", "").unwrap_err();
    assert!(matches!(err, ConfigError::UnknownFormat { .. }));
    let err = Config::load(Some(Path::new("/nonexistent/chorus.json")), no_env(), &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/chorus.json"));
}

#[test]
fn shipped_deploy_configs_load_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    for name in ["config.production.json", "config.dev.yaml"] {
        let path = root.join(name);
        if !path.exists() {
            continue;
        }
        let loaded = Config::load(Some(&path), no_env(), &[]).unwrap();
        // The production template's two secrets are placeholders on purpose: it warns about
        // exactly those until they are replaced (and `--strict` refuses it).
        let expected: &[&str] = match name {
            "config.production.json" => &["client.token.hmac_secret_key", "http_api.key"],
            _ => &[],
        };
        let placeholders: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|key| {
                loaded
                    .warnings
                    .iter()
                    .any(|w| w.starts_with(&format!("{key} looks like a placeholder")))
            })
            .collect();
        assert_eq!(placeholders, expected, "{name}: {:?}", loaded.warnings);
        assert_eq!(
            loaded.warnings.len(),
            expected.len(),
            "{name}: {:?}",
            loaded.warnings
        );
        loaded.config.validate().unwrap();
        assert_eq!(loaded.config.channel.namespaces[0].name, "chat");
    }
}

#[test]
fn round_trip_through_every_format() {
    let c = Config::embedded_default();
    let json = serde_json::to_string_pretty(&c).unwrap();
    let yaml = serde_yaml::to_string(&c).unwrap();
    let toml = toml::to_string(&c).unwrap();
    for (name, text) in [("c.json", json), ("c.yaml", yaml), ("c.toml", toml)] {
        let loaded = load_text(name, &text).unwrap();
        assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        assert_eq!(loaded.config, c, "{name}");
    }
}

#[test]
fn delta_options_load_and_only_fossil_is_valid() {
    let loaded = load_text(
        "c.json",
        r#"{"channel": {"without_namespace": {"allowed_delta_types": ["fossil"]},
            "namespaces": [{"name": "ticker", "allowed_delta_types": ["fossil"], "delta_publish": true}]}}"#,
    )
    .unwrap();
    let channel = &loaded.config.channel.config;
    assert_eq!(
        channel.without_namespace.allowed_delta_types,
        vec![chorus_core::delta::DeltaType::Fossil]
    );
    assert!(channel.namespaces[0].options.delta_publish);
    assert!(!channel.without_namespace.delta_publish);
    let err = load_text(
        "c.yaml",
        "channel:\n  namespaces:\n    - name: ticker\n      allowed_delta_types: [xdelta]\n",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("xdelta") && msg.contains("fossil"), "{msg}");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
}
