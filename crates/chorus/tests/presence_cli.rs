//! Black-box: the real `chorus presence` binary — gRPC health (liveness, then readiness after
//! the warm-up), a gateway client feeding it, queries, `/metrics`, SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_presence::{ClientConfig, ClientInfo, PresenceClient};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const KEY: &str = "cli-presence-key";

struct Server {
    child: Child,
    grpc: String,
    metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "presence",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--address",
            "127.0.0.1",
            "--set",
            "presence_server.lease_ttl=1s",
        ])
        .env("CHORUS_PRESENCE_SERVER_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "chorus presence listening on http://IP:PORT (metrics http://IP:PORT/metrics)"
    let grpc = line.split_whitespace().nth(4).unwrap().to_string();
    let metrics = line
        .split("(metrics ")
        .nth(1)
        .unwrap()
        .trim_end()
        .trim_end_matches(')')
        .to_string();
    assert!(grpc.starts_with("http://127.0.0.1:"), "{line}");
    Server {
        child,
        grpc,
        metrics,
    }
}

async fn health(grpc: &str, service: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(grpc.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel);
    let r = h
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(r.status).unwrap()
}

fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn the_binary_serves_health_queries_metrics_and_stops_on_sigterm() {
    let mut server = start();
    // Liveness at once; readiness only after the warm-up (one lease).
    assert_eq!(health(&server.grpc, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&server.grpc, chorus_presence::SERVICE_NAME).await,
        ServingStatus::NotServing
    );
    let (gw, _) =
        PresenceClient::start(ClientConfig::new("gw-cli", vec![server.grpc.clone()], KEY)).unwrap();
    gw.add(
        "room",
        ClientInfo {
            user: "alice".into(),
            client: "c1".into(),
            ..ClientInfo::default()
        },
    );
    let ready = Instant::now() + Duration::from_secs(5);
    loop {
        if health(&server.grpc, chorus_presence::SERVICE_NAME).await == ServingStatus::Serving {
            break;
        }
        assert!(Instant::now() < ready, "not ready after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = gw.presence("room").await.unwrap();
    assert_eq!(p["c1"].user, "alice");
    assert_eq!(p["c1"].node, "gw-cli");
    let s = gw.user_status(&["alice".into()]).await.unwrap();
    assert!(s[0].online);
    assert_eq!(s[0].channels, ["room"]);

    let metrics = http_get(&server.metrics);
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("chorus_presence_entries 1"), "{metrics}");
    assert!(metrics.contains("chorus_presence_streams 1"), "{metrics}");
    assert!(metrics.contains("chorus_presence_ready 1"), "{metrics}");

    gw.shutdown().await;
    // SIGTERM: streams end at once; the process exits 0 within about a second.
    let pid = server.child.id();
    assert_eq!(unsafe_free_kill(pid), 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 3 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM with the `kill` command (the workspace forbids `unsafe`).
fn unsafe_free_kill(pid: u32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}
