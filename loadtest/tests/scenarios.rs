//! Every scenario, short and small, against a real chorus gateway started in this process
//! (port 0, HS256 tokens, an API key): zero loss and zero failures, exact counts. Speed is
//! not checked (benchmarks are not tests). The worker-process path runs the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelOptions, Namespace};
use chorus_gateway::config::Config;
use chorus_gateway::server;
use chorus_loadtest::cli::{Cli, Cmd};
use chorus_loadtest::Report;
use clap::Parser;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SECRET: &str = "loadtest-secret";
const API_KEY: &str = "loadtest-key";

/// A gateway of this process; stops when dropped.
struct Node {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Node {
    async fn start() -> Node {
        let mut config = Config::embedded_default();
        config.http_server.address = "127.0.0.1".into();
        config.http_server.port = 0;
        config.client.options.insecure = false;
        config.client.token.hmac_secret_key = SECRET.into();
        config.http_api.key = API_KEY.into();
        config.demo.enabled = false;
        // The namespace of loadtest/scenarios/lib.sh: history and recovery, client
        // subscribe and publish, no presence (join/leave pushes would only add noise).
        config.channel.namespaces = vec![Namespace {
            name: "chat".into(),
            options: ChannelOptions {
                history_size: 1000,
                history_ttl: ConfigDuration::from_secs(300),
                force_recovery: true,
                allow_subscribe_for_client: true,
                allow_publish_for_subscriber: true,
                ..ChannelOptions::default()
            },
        }];
        let node = server::build_node(&config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(server::serve(
            listener,
            Arc::new(config),
            node,
            async move {
                let _ = rx.await;
            },
        ));
        Node { addr, _stop: tx }
    }

    fn url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    fn api(&self) -> String {
        format!("http://{}/api", self.addr)
    }
}

fn cli(args: &[&str]) -> Cmd {
    Cli::try_parse_from(std::iter::once("chorus-load").chain(args.iter().copied()))
        .unwrap()
        .cmd
}

async fn run(args: &[&str]) -> Report {
    chorus_loadtest::run(&cli(args)).await.unwrap()
}

fn no_failures(r: &Report) {
    for key in [
        "connect_failures",
        "subscribe_failures",
        "disconnects",
        "bad_frames",
    ] {
        assert_eq!(r.u64(key), Some(0), "{key}: {}", r.table());
    }
    assert_eq!(r.get("failures_by_reason"), Some(&serde_json::json!({})));
}

/// Zero loss, and every successful publication reached every member of its room.
fn all_delivered(r: &Report, members: u64) {
    no_failures(r);
    for key in ["loss", "dups", "reorders", "publish_errors"] {
        assert_eq!(r.u64(key), Some(0), "{key}: {}", r.table());
    }
    let published = r.u64("published_ok").unwrap();
    assert!(published > 0, "{}", r.table());
    assert_eq!(
        r.u64("deliveries_expected"),
        Some(published * members),
        "{}",
        r.table()
    );
    assert_eq!(
        r.u64("deliveries_total"),
        Some(published * members),
        "{}",
        r.table()
    );
    assert!(r.u64("latency_samples").unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_every_connection_and_samples_the_server() {
    let node = Node::start().await;
    let pid = std::process::id().to_string();
    let url = node.url();
    let r = run(&[
        "idle",
        "--url",
        &url,
        "--hmac-secret",
        SECRET,
        "--rooms",
        "5",
        "--members-per-room",
        "10",
        "--duration",
        "1s",
        "--server-pid",
        &pid,
        "--extra-pid",
        &pid,
        "--quiet",
    ])
    .await;
    no_failures(&r);
    assert_eq!(r.u64("connections"), Some(50));
    assert_eq!(r.u64("connected"), Some(50));
    assert_eq!(r.u64("processes"), Some(1));
    assert!(r.u64("server_rss_kib").unwrap() > 0);
    assert!(r.f64("server_cpu_us_per_conn_s").is_some());
    assert!(r.f64("extra_cpu_pct_core").is_some());
    let (connects, _) = r.timeline.as_ref().unwrap();
    assert_eq!(connects.iter().sum::<u64>(), 50);
    assert_eq!(r.latency.as_ref().unwrap().0.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_connects_everyone_over_protobuf() {
    let node = Node::start().await;
    let url = node.url();
    let r = run(&[
        "storm",
        "--url",
        &url,
        "--protobuf",
        "--hmac-secret",
        SECRET,
        "--connections",
        "50",
        "--rooms",
        "7",
        "--connect-concurrency",
        "25",
        "--quiet",
    ])
    .await;
    no_failures(&r);
    assert_eq!(r.get("protocol"), Some(&Value::from("protobuf")));
    assert_eq!((r.u64("connected"), r.u64("rooms")), (Some(50), Some(7)));
    assert_eq!(r.latency.as_ref().unwrap().0.len(), 50);
    assert!(r.u64("peak_connects_per_s").unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_counts_failures_by_reason() {
    let node = Node::start().await;
    let url = node.url();
    let r = run(&[
        "storm",
        "--url",
        &url,
        "--hmac-secret",
        "not-the-secret",
        "--connections",
        "20",
        "--quiet",
    ])
    .await;
    assert_eq!(r.u64("connected"), Some(0));
    assert_eq!(r.u64("connect_failures"), Some(20));
    assert_eq!(
        r.get("failures_by_reason"),
        Some(&serde_json::json!({ "closed_3500": 20 })),
        "{}",
        r.table()
    );
    // Nobody listens on port 1: refused before any WebSocket.
    let r = run(&[
        "storm",
        "--url",
        "ws://127.0.0.1:1/connection/websocket",
        "--connections",
        "5",
        "--quiet",
    ])
    .await;
    assert_eq!(
        r.get("failures_by_reason"),
        Some(&serde_json::json!({ "tcp_refused": 5 }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_through_the_api_loses_nothing() {
    let node = Node::start().await;
    let (url, api) = (node.url(), node.api());
    let r = run(&[
        "fanout",
        "--url",
        &url,
        "--api",
        &api,
        "--api-key",
        API_KEY,
        "--hmac-secret",
        SECRET,
        "--rooms",
        "5",
        "--members-per-room",
        "10",
        "--rate",
        "100",
        "--duration",
        "1500ms",
        "--warmup",
        "500ms",
        "--drain",
        "1s",
        "--quiet",
    ])
    .await;
    all_delivered(&r, 10);
    assert_eq!(r.get("publish_via"), Some(&Value::from("api")));
    // 100/s for 1.5 s, all of them sent.
    assert_eq!(r.u64("published_ok"), Some(150));
    let (per_s, _) = r.timeline.as_ref().unwrap();
    assert_eq!(per_s.iter().sum::<u64>(), 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_members_get_every_message_in_order() {
    let node = Node::start().await;
    let url = node.url();
    // Half of each room's 10 members publish 4/s over their own (Protobuf) connection.
    let r = run(&[
        "rooms",
        "--url",
        &url,
        "--protobuf",
        "--hmac-secret",
        SECRET,
        "--rooms",
        "5",
        "--members-per-room",
        "10",
        "--publishers",
        "0.5",
        "--rate-per-client",
        "4",
        "--duration",
        "1500ms",
        "--warmup",
        "500ms",
        "--drain",
        "1s",
        "--quiet",
    ])
    .await;
    all_delivered(&r, 10);
    assert_eq!(r.u64("publishers_per_room"), Some(5));
    assert_eq!(r.f64("rate"), Some(100.0));
    assert_eq!(r.u64("published_ok"), Some(150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_client_publish_with_reconnect_flag_loses_nothing() {
    let node = Node::start().await;
    let url = node.url();
    let r = run(&[
        "fanout",
        "--url",
        &url,
        "--url",
        &url,
        "--publish-via",
        "client",
        "--hmac-secret",
        SECRET,
        "--rooms",
        "4",
        "--members-per-room",
        "10",
        "--rate",
        "80",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--drain",
        "1s",
        "--reconnect",
        "--quiet",
    ])
    .await;
    all_delivered(&r, 10);
    assert_eq!(r.u64("published_ok"), Some(80));
    assert_eq!(r.u64("reconnect_attempts"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_sink_reads_every_byte_written() {
    let r = run(&[
        "floor",
        "--connections",
        "50",
        "--writes",
        "20000",
        "--duration",
        "10s",
        "--quiet",
    ])
    .await;
    assert_eq!(r.u64("writes"), Some(20_000));
    assert_eq!(r.u64("short_writes"), Some(0));
    assert_eq!(r.u64("bytes_written"), Some(20_000 * 112));
    assert_eq!(r.u64("sink_bytes"), Some(20_000 * 112));
    assert!(r.f64("cpu_us_per_write").is_some());
    let (per_s, _) = r.timeline.as_ref().unwrap();
    assert_eq!(per_s.iter().sum::<u64>(), 20_000);
}

/// The binary with `--max-per-process 20`: 50 connections in 3 worker processes, one
/// merged result, every room spanning two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_merge_into_one_result() {
    let node = Node::start().await;
    let url = node.url();
    let dir = tempfile::tempdir().unwrap();
    let json_out = dir.path().join("run.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus-load"))
        .args([
            "rooms",
            "--url",
            &url,
            "--hmac-secret",
            SECRET,
            "--rooms",
            "2",
            "--members-per-room",
            "25",
            "--rate-per-client",
            "2",
            "--duration",
            "1500ms",
            "--warmup",
            "300ms",
            "--drain",
            "1s",
            "--max-per-process",
            "20",
            "--json",
            "--json-out",
        ])
        .arg(&json_out)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("connected 50/50 in "), "{stderr}");
    let line = stdout.lines().rfind(|l| l.starts_with('{')).unwrap();
    let j: Value = serde_json::from_str(line).unwrap();
    for (key, want) in [
        ("processes", 3),
        ("connected", 50),
        ("loss", 0),
        ("dups", 0),
        ("reorders", 0),
        ("connect_failures", 0),
        ("disconnects", 0),
        ("publish_errors", 0),
        // 2 rooms × 25 publishers × 2/s × 1.5 s.
        ("published_ok", 150),
        ("deliveries_total", 150 * 25),
    ] {
        assert_eq!(j[key], want, "{key}: {stdout}");
    }
    // The file has the same figures plus percentiles and the timeline.
    let file: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    assert_eq!(file["deliveries_total"], j["deliveries_total"]);
    assert_eq!(
        file["timeline_per_s"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        150 * 25
    );
    for f in ["run.md", "run-latency.svg", "run-timeline.svg"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
}
