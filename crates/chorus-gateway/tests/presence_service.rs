//! Gateways over the presence service (`presence.endpoints`), in process with a real replica
//! on port 0 and real gRPC: the adapter passes the core's presence conformance suite; two
//! gateways see each other's clients in `presence`/`user_status`; a gateway that dies without
//! a word (its presence client dropped: the lease expires) and one that shuts down (Goodbye)
//! vanish from queries, and the other gateway's subscribers get `leave` pushes; 10,000
//! subscriptions made within a second are all visible shortly after the last.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_core::api::{PresenceRequest, UserStatusRequest};
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::presence::PresenceStore;
use chorus_core::{ClientParams, Node};
use chorus_gateway::config::Config;
use chorus_gateway::presence::ServicePresence;
use chorus_gateway::server;
use chorus_presence::{serve, Listeners, ServiceConfig};
use chorus_protocol::Protocol;
use common::{subscribed_at, test_config, TestServer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const KEY: &str = "presence-test-key";

/// A replica on port 0 with a short lease and no warm-up; returns its URL and its stop token.
async fn replica(lease: Duration) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ServiceConfig::new(KEY);
    config.lease_ttl = lease;
    config.warmup = Duration::ZERO;
    config.shutdown_timeout = Duration::from_secs(1);
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let listeners = Listeners {
            grpc: listener,
            metrics: None,
        };
        let _ = serve(listeners, config, token.cancelled_owned()).await;
    });
    (url, stop)
}

fn gateway_config(url: &str) -> Config {
    let mut config = test_config();
    config.presence.endpoints = vec![url.to_string()];
    config.presence.key = KEY.into();
    config.presence.flush_interval = chorus_core::duration::ConfigDuration::from_millis(20);
    config
}

async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn present(node: &Node, channel: &str) -> Option<Vec<String>> {
    let presence = node
        .api()
        .presence(PresenceRequest {
            channel: channel.into(),
        })
        .await
        .ok()?
        .presence;
    let mut users: Vec<String> = presence.into_values().map(|i| i.user).collect();
    users.sort();
    Some(users)
}

#[tokio::test]
async fn the_adapter_passes_the_presence_conformance_suite() {
    let (url, _stop) = replica(Duration::from_secs(5)).await;
    let store = ServicePresence::start(&gateway_config(&url), "conformance-node").unwrap();
    until("the stream to sync", Duration::from_secs(5), || async {
        store.client().synced_endpoints() == 1
    })
    .await;
    chorus_core::presence::conformance::run_all(&*store).await;
    store.shutdown().await;
}

/// Reads `frames` from a raw client until a `leave` push on `channel` arrives; the user.
async fn next_leave(ws: &mut common::RawWs, channel: &str) -> String {
    loop {
        let f = ws
            .read_data()
            .await
            .expect("connection ended before the leave");
        for line in String::from_utf8(f.payload).unwrap().split('\n') {
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap();
            if v["push"]["channel"] == channel && !v["push"]["leave"].is_null() {
                return v["push"]["leave"]["info"]["client"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }
}

/// A gateway on `broker` (share one to make an in-process cluster) that keeps a handle on its
/// presence store (to kill its stream).
async fn gateway_with_store(
    config: Config,
    broker: Arc<MemoryBroker>,
) -> (TestServer, Arc<ServicePresence>) {
    let id = uuid::Uuid::new_v4().to_string();
    let store = ServicePresence::start(&config, &id).unwrap();
    let node = Node::new(
        id,
        chorus_gateway::app::node_options(&config),
        broker,
        store.clone(),
        chorus_gateway::app::token_verifier(&config).unwrap(),
    );
    (TestServer::start_node(config, node).await, store)
}

#[tokio::test]
async fn gateways_share_presence_and_dead_gateways_vanish_with_leave_pushes() {
    let lease = Duration::from_secs(1);
    let (url, _stop) = replica(lease).await;
    let a = TestServer::start(gateway_config(&url)).await;
    let (b, b_store) = gateway_with_store(gateway_config(&url), MemoryBroker::new()).await;
    // One member on A; on B a client that will die with its gateway.
    let mut member = subscribed_at(a.addr, "chat:room").await;
    let _doomed = subscribed_at(b.addr, "chat:room").await;
    until(
        "both clients in presence",
        Duration::from_secs(5),
        || async { present(&a.node, "chat:room").await.map(|u| u.len()) == Some(2) },
    )
    .await;
    // The same answer from either gateway.
    assert_eq!(
        present(&b.node, "chat:room").await.map(|u| u.len()),
        Some(2)
    );
    let status = b
        .node
        .api()
        .user_status(UserStatusRequest {
            users: vec!["nobody".into()],
        })
        .await
        .unwrap()
        .statuses;
    assert!(!status[0].online);

    // Gateway B dies without a word: its presence stream stops, no Goodbye, its connections
    // are never cleaned up (so no leave goes through the broker either).
    let died = Instant::now();
    b_store.client().abort();
    // A's subscriber gets the leave of B's client once B's lease expired...
    let left = tokio::time::timeout(lease * 5, next_leave(&mut member, "chat:room"))
        .await
        .expect("leave push within the lease");
    assert!(!left.is_empty());
    // ...and no query lists it after lease + 1 s.
    until(
        "B's client gone",
        lease + Duration::from_secs(1),
        || async { present(&a.node, "chat:room").await.map(|u| u.len()) == Some(1) },
    )
    .await;
    assert!(died.elapsed() <= lease * 3, "{:?}", died.elapsed());
}

/// SIGTERM of a gateway: its connections leave presence at once — not over its drain window,
/// not after its lease — and members elsewhere get exactly one `leave` each (announced from
/// the presence service, none from the draining node through the shared broker).
#[tokio::test]
async fn a_gateway_shutting_down_leaves_presence_at_once_with_one_leave() {
    let (url, _stop) = replica(Duration::from_secs(30)).await;
    let broker = MemoryBroker::new();
    let (a, _) = gateway_with_store(gateway_config(&url), broker.clone()).await;
    let mut slow_drain = gateway_config(&url);
    slow_drain.shutdown.drain_window = chorus_core::duration::ConfigDuration::from_secs(4);
    let (mut b, _) = gateway_with_store(slow_drain, broker).await;
    let mut member = subscribed_at(a.addr, "chat:bye").await;
    let _leaving = subscribed_at(b.addr, "chat:bye").await;
    until("both present", Duration::from_secs(5), || async {
        present(&a.node, "chat:bye").await.map(|u| u.len()) == Some(2)
    })
    .await;
    let started = Instant::now();
    b.begin_shutdown();
    until("B's client gone", Duration::from_secs(1), || async {
        present(&a.node, "chat:bye").await.map(|u| u.len()) == Some(1)
    })
    .await;
    assert!(
        started.elapsed() <= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let first = tokio::time::timeout(Duration::from_secs(2), next_leave(&mut member, "chat:bye"))
        .await
        .expect("one leave");
    assert!(!first.is_empty());
    // B's drain closes its one client at once (the first of the window): no second leave.
    let second =
        tokio::time::timeout(Duration::from_secs(2), next_leave(&mut member, "chat:bye")).await;
    assert!(second.is_err(), "a second leave: {second:?}");
}

#[tokio::test]
async fn ten_thousand_joins_within_a_second_are_visible_soon_after() {
    let (url, _stop) = replica(Duration::from_secs(10)).await;
    let config = gateway_config(&url);
    let node = server::build_node(&config).unwrap();
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..10_000 {
        let c = node
            .try_new_client(ClientParams {
                protocol: Protocol::Json,
                remote_addr: None,
            })
            .unwrap();
        c.handle_frame(
            format!(
                "{{\"id\":1,\"connect\":{{}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"chat:crowd{}\"}}}}",
                i % 10
            )
            .as_bytes(),
        )
        .await;
        clients.push(c);
    }
    let joined = started.elapsed();
    let last_join = Instant::now();
    until("10,000 present", Duration::from_secs(5), || async {
        let mut total = 0;
        for ch in 0..10 {
            let Ok(s) = node
                .api()
                .presence_stats(chorus_core::api::PresenceStatsRequest {
                    channel: format!("chat:crowd{ch}"),
                })
                .await
            else {
                return false;
            };
            total += s.num_clients;
        }
        total == 10_000
    })
    .await;
    let visible_after = last_join.elapsed();
    println!("10,000 joins in {joined:?}, all visible {visible_after:?} after the last");
    assert!(visible_after <= Duration::from_secs(1), "{visible_after:?}");
    node.shutdown(Duration::ZERO, Duration::from_secs(5)).await;
}
