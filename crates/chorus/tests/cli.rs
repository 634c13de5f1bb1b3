//! Black-box tests of the `chorus` binary's config and token commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use chorus_core::auth::{TokenError, TokenVerifier};
use chorus_gateway::auth::JwtVerifier;
use chorus_gateway::config::TokenConfig;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chorus-cli-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with a clean `CHORUS_*`/`RUST_LOG` environment.
fn chorus(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHORUS_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

const GOOD: &str = r#"{
  "http_server": {"port": 9100},
  "http_api": {"key": "cli-api-key"},
  "client": {"token": {"hmac_secret_key": "cli-secret-0123456789abcdef0123456789"}},
  "channel": {"namespaces": [{"name": "chat", "history_size": 10, "history_ttl": "60s", "force_recovery": true}]}
}"#;

#[test]
fn checkconfig_ok() {
    let dir = TempDir::new();
    let f = dir.file("good.json", GOOD);
    let out = chorus(&["checkconfig", "--config", path_str(&f)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "config ok\n");
    assert_eq!(text(&out.stderr), "");
}

/// An HTTP API reachable from other machines without a key, or refusing everything, is legal
/// but warned about; on loopback it is not.
#[test]
fn checkconfig_warns_when_the_http_api_is_exposed() {
    let dir = TempDir::new();
    let cases = [
        (
            r#"{"http_server": {"address": "0.0.0.0", "port": 9100}, "http_api": {"insecure": true}}"#,
            "warning: http_api.insecure is true and http_server.address \"0.0.0.0\" is not \
             loopback: anyone who can reach port 9100 can publish and disconnect users through \
             the HTTP API without a key\n",
        ),
        (
            r#"{"http_server": {"address": "10.1.2.3", "port": 9100}}"#,
            "warning: http_api.key is empty and http_server.address \"10.1.2.3\" is not \
             loopback: every HTTP API request is refused with 401 (set http_api.key to use the \
             API)\n",
        ),
        (
            r#"{"http_server": {"address": "chat.example.com"}, "http_api": {"insecure": true}}"#,
            "warning: http_api.insecure is true and http_server.address \"chat.example.com\" is \
             not loopback: anyone who can reach port 8000 can publish and disconnect users \
             through the HTTP API without a key\n",
        ),
        (
            r#"{"http_server": {"address": "127.0.0.1"}, "http_api": {"insecure": true}}"#,
            "",
        ),
        (r#"{"http_server": {"address": "::1"}}"#, ""),
    ];
    for (n, (config, expected)) in cases.iter().enumerate() {
        // A token key keeps the unrelated "no client.token key" warning out of the way.
        let with_token = config.replacen(
            '{',
            r#"{"client": {"token": {"hmac_secret_key": "k-0123456789abcdef0123456789abcdef"}}, "#,
            1,
        );
        let f = dir.file(&format!("api{n}.json"), &with_token);
        let out = chorus(&["checkconfig", "--config", path_str(&f)]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{config}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "config ok\n");
        assert_eq!(text(&out.stderr), *expected, "{config}");
    }
}

#[test]
fn checkconfig_bad_exits_1_with_every_problem() {
    let dir = TempDir::new();
    let f = dir.file(
        "bad.yaml",
        "client:\n  ping_interval: 5s\n  pong_timeout: 8s\nengine:\n  memory:\n    max_streams: 0\n\
         channel:\n  namespaces:\n    - name: x\n",
    );
    let out = chorus(&["checkconfig", "--config", path_str(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains("invalid config"), "{err}");
    assert!(
        err.contains("client.ping_interval (5s) must be greater than client.pong_timeout (8s)"),
        "{err}"
    );
    assert!(
        err.contains("engine.memory.max_streams must be at least 1"),
        "{err}"
    );
    assert!(err.contains("channel.namespaces[0].name \"x\""), "{err}");
}

/// An unknown `engine.type` is a value the config cannot hold: it fails reading the file,
/// with the file position, the key and the accepted names.
#[test]
fn checkconfig_unknown_engine_names_key_and_choices() {
    let dir = TempDir::new();
    let f = dir.file("engine.yaml", "engine:\n  type: cassandra\n");
    let out = chorus(&["checkconfig", "--config", path_str(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:", f.display())), "{err}");
    assert!(
        err.contains("engine.type \"cassandra\" is not supported; supported: memory, redis"),
        "{err}"
    );
}

#[test]
fn checkconfig_parse_error_names_file_and_line() {
    let dir = TempDir::new();
    let f = dir.file(
        "broken.json",
        "{\n  \"http_server\": {\n    \"port\": \"eighty\"\n  }\n}",
    );
    let out = chorus(&["checkconfig", "--config", path_str(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:3:", f.display())), "{err}");
}

#[test]
fn checkconfig_warns_on_unknown_key_but_passes() {
    let dir = TempDir::new();
    let f = dir.file(
        "typo.toml",
        "[client]\npingg_interval = \"10s\"\n\n[client.token]\nhmac_secret_key = \"k-0123456789abcdef0123456789abcdef\"\n\n\
         [http_api]\nkey = \"a\"\n",
    );
    let out = chorus(&["checkconfig", "--config", path_str(&f)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "config ok\n");
    assert_eq!(
        text(&out.stderr),
        "warning: unknown config key \"client.pingg_interval\" (did you mean \"ping_interval\"?)\n"
    );
}

#[test]
fn checkconfig_env_and_set_layers() {
    let dir = TempDir::new();
    let f = dir.file("good.json", GOOD);
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["checkconfig", "--config", path_str(&f)])
        .env("CHORUS_ENGINE_TYPE", "nope")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("engine.type \"nope\""));
    // a flag wins over the env
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "checkconfig",
            "--config",
            path_str(&f),
            "--set",
            "engine.type=memory",
        ])
        .env("CHORUS_ENGINE_TYPE", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = chorus(&["checkconfig", "--set", "nope.key=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--set nope.key: unknown config key"));
}

#[test]
fn checkconfig_missing_file() {
    let out = chorus(&["checkconfig", "--config", "/nonexistent/chorus.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read config file /nonexistent/chorus.yaml"));
}

fn verifier(secret: &str) -> JwtVerifier {
    let cfg = TokenConfig {
        hmac_secret_key: secret.into(),
        ..Default::default()
    };
    JwtVerifier::new(&cfg, None).unwrap()
}

#[test]
fn gentoken_output_verifies_with_the_secret() {
    let out = chorus(&[
        "gentoken",
        "--secret",
        "s3cret",
        "--user",
        "alice",
        "--ttl",
        "120",
        "--info",
        r#"{"name":"Alice"}"#,
        "--channels",
        "news,chat:lobby",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    assert!(token.ends_with('\n'));
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3);
    let claims = verifier("s3cret").verify_connection(token).unwrap();
    assert_eq!(claims.user, "alice");
    assert_eq!(&claims.info[..], br#"{"name":"Alice"}"#);
    assert_eq!(claims.channels, ["news", "chat:lobby"]);
    let now = chorus_core::clock::unix_now();
    let exp = claims.exp.unwrap();
    assert!((now + 100..=now + 120).contains(&exp), "{exp} vs {now}");
    assert!(matches!(
        verifier("other").verify_connection(token),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn gentoken_reads_secret_from_config() {
    let dir = TempDir::new();
    let f = dir.file("good.json", GOOD);
    let out = chorus(&["gentoken", "--config", path_str(&f), "--user", "bob"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let claims = verifier("cli-secret-0123456789abcdef0123456789")
        .verify_connection(text(&out.stdout).trim())
        .unwrap();
    assert_eq!(claims.user, "bob");

    let out = chorus(&["gentoken", "--user", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--secret"));
    let out = chorus(&["gentoken", "--secret", "x", "--user", "u", "--info", "{bad"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--info must be JSON"));
}

#[test]
fn version_prints_crate_version() {
    let out = chorus(&["version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("chorus {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `chorus` with no command serves (what `cargo run --release` runs): it prints the listening
/// line and answers /health, then stops on SIGTERM.
#[test]
fn no_command_serves_the_embedded_default() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CHORUS_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("chorus listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("{}"), "{response}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// `admin.enabled` without its password and secret is refused, naming both; from the
/// environment it passes; a short secret is a warning, so `--strict` refuses it.
#[test]
fn checkconfig_admin_console_needs_password_and_secret() {
    let dir = TempDir::new();
    let f = dir.file("good.json", GOOD);
    let out = chorus(&[
        "checkconfig",
        "--config",
        path_str(&f),
        "--set",
        "admin.enabled=true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("admin.enabled is true but admin.password is empty"),
        "{err}"
    );
    assert!(
        err.contains("admin.enabled is true but admin.secret is empty"),
        "{err}"
    );
    let run = |secret: &str, strict: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.args(["checkconfig", "--config", path_str(&f)]);
        if strict {
            cmd.arg("--strict");
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("CHORUS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("CHORUS_ADMIN_ENABLED", "true")
            .env("CHORUS_ADMIN_PASSWORD", "a long operator password")
            .env("CHORUS_ADMIN_SECRET", secret)
            .env("CHORUS_HTTP_SERVER_ADDRESS", "127.0.0.1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = run("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "config ok\n");
    let out = run("short", true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("admin.secret is 5 bytes"),
        "{}",
        text(&out.stderr)
    );
}
