//! `/metrics` against `docs/metrics.md`: after real traffic (a client connects, subscribes
//! with presence kept by a presence replica in this process, gets a publication from the gRPC
//! API and from the HTTP API), every family the
//! scrape renders is documented with the same type, has `# HELP` and `# TYPE` exactly once,
//! every family the doc marks "always" is there, and durations are histograms with the
//! documented buckets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use std::time::Duration;

use bytes::Bytes;
use chorus_presence::{serve, Listeners, ServiceConfig};
use chorus_proto::api;
use common::grpc::*;
use common::*;
use tokio::net::TcpListener;

/// A documented family: its type and whether it is rendered from the start.
#[derive(Debug)]
struct Documented {
    kind: String,
    always: bool,
}

/// The family table of docs/metrics.md: rows `| `name` | type | labels | always | help |`.
fn documented() -> BTreeMap<String, Documented> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let doc = std::fs::read_to_string(path).expect("docs/metrics.md");
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", name, type, labels, always, help, ""]
        if cells.len() < 7
            || !cells[1].starts_with("`chorus_") && !cells[1].starts_with("`process_")
        {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let kind = cells[2].to_string();
        assert!(
            matches!(kind.as_str(), "counter" | "gauge" | "histogram"),
            "{name}: type {kind}"
        );
        let always = cells[4] == "yes";
        assert!(
            out.insert(name.clone(), Documented { kind, always })
                .is_none(),
            "{name} documented twice"
        );
    }
    out
}

/// The families of a scrape: name → (type, help lines, type lines).
fn families(text: &str) -> BTreeMap<String, (String, usize, usize)> {
    let mut out: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            let e = out.entry(name.to_string()).or_default();
            e.0 = kind.to_string();
            e.2 += 1;
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_whitespace().next().unwrap();
            out.entry(name.to_string()).or_default().1 += 1;
        }
    }
    out
}

/// The gateway's presence stream to its one replica is synced.
fn synced(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("chorus_presence_client_synced{") && l.ends_with(" 1"))
}

#[tokio::test]
async fn every_family_is_documented_with_its_type() {
    // A presence replica (its families render in this process's registry too).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut service = ServiceConfig::new("presence-key");
    service.warmup = Duration::ZERO;
    tokio::spawn(async move {
        let listeners = Listeners {
            grpc: listener,
            metrics: None,
        };
        let _ = serve(listeners, service, std::future::pending::<()>()).await;
    });
    let mut config = grpc_config();
    config.http_api.key = "k".into();
    config.presence.endpoints = vec![url];
    config.presence.key = "presence-key".into();
    let (server, grpc) = start_both(config).await;

    // Traffic: a connect, a subscribe, publications from both APIs, a presence call.
    let (mut ws, _) = connect_user(server.addr, "alice").await;
    ws.send_text(r#"{"id":2,"subscribe":{"channel":"chat:metrics"}}"#)
        .await;
    let _ = ws.read_data().await.expect("subscribe reply");
    let mut c = grpc.client().await;
    c.publish(api::PublishRequest {
        channel: "chat:metrics".into(),
        data: Bytes::from_static(br#"{"n":1}"#),
        ..Default::default()
    })
    .await
    .unwrap();
    let _ = next_push(&mut ws, |p| p["pub"].is_object()).await;
    let body = br#"{"channel":"chat:metrics","data":{"n":2}}"#;
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", "k")],
        body,
    )
    .await;
    assert_eq!(status, 200);
    let _ = next_push(&mut ws, |p| p["pub"].is_object()).await;

    // The presence client synced with the replica (its gauge is 1).
    let mut text = String::new();
    for _ in 0..100 {
        let (status, _, body) = http(server.addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(status, 200);
        text = String::from_utf8(body).unwrap();
        if synced(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(synced(&text), "{text}");
    assert!(text.contains("chorus_presence_ready 1\n"), "{text}");
    let scraped = families(&text);
    let doc = documented();

    for (name, (kind, helps, types)) in &scraped {
        assert_eq!((*helps, *types), (1, 1), "{name}: HELP/TYPE lines");
        let d = doc
            .get(name)
            .unwrap_or_else(|| panic!("{name} ({kind}) is exported but not in docs/metrics.md"));
        assert_eq!(&d.kind, kind, "{name}: type in docs/metrics.md");
    }
    for (name, d) in &doc {
        if d.always {
            assert!(
                scraped.contains_key(name),
                "{name} is documented as always present but missing:\n{text}"
            );
        }
    }
    // Durations are histograms with the documented buckets, never summaries.
    assert!(!scraped.values().any(|(k, _, _)| k == "summary"));
    for le in chorus_gateway::metrics::DURATION_BUCKETS {
        let bucket = format!(
            "chorus_client_command_duration_seconds_bucket{{method=\"connect\",le=\"{le}\"}}"
        );
        assert!(text.contains(&bucket), "missing {bucket}");
    }
    // Values that the traffic above fixes exactly.
    let commit = chorus_gateway::metrics::COMMIT;
    assert!(
        text.contains(&format!(
            "chorus_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
            chorus_gateway::metrics::VERSION
        )),
        "{text}"
    );
    assert!(text.contains("chorus_node_users 1\n"), "{text}");
    assert!(text.contains("chorus_engine_up 1\n"), "{text}");
    assert!(
        text.contains("chorus_client_messages_sent_total{type=\"publication\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("chorus_node_messages_sent_total{type=\"publication\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("chorus_node_messages_received_total{type=\"publication\"} 2"),
        "{text}"
    );
    server.stop().await.unwrap();
}
