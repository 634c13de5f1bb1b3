//! The gateway client against real replicas on port 0: HA, failover, restart warm-up,
//! read-your-writes, flush latency, expirations, goodbye.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_presence::{ClientConfig, ClientInfo, ExpiryReason, PresenceClient, QueryError};
use common::*;
use tokio::net::TcpListener;

fn client(node: &str, replicas: &[&Replica]) -> (PresenceClient, chorus_presence::Expirations) {
    client_to(node, replicas.iter().map(|r| r.url()).collect())
}

fn client_to(node: &str, endpoints: Vec<String>) -> (PresenceClient, chorus_presence::Expirations) {
    let mut c = ClientConfig::new(node, endpoints, KEY);
    c.reconnect_backoff_max = Duration::from_millis(200);
    PresenceClient::start(c).unwrap()
}

fn member(user: &str, client: &str) -> ClientInfo {
    info(user, client)
}

async fn synced(c: &PresenceClient, n: usize) {
    assert!(
        wait_for(Duration::from_secs(5), || async {
            c.synced_endpoints() == n
        })
        .await,
        "{} of {n} endpoints synced",
        c.synced_endpoints()
    );
}

fn sorted_keys(p: std::collections::HashMap<String, ClientInfo>) -> Vec<String> {
    let mut k: Vec<String> = p.into_keys().collect();
    k.sort();
    k
}

#[tokio::test]
async fn any_replica_answers_and_a_stopped_one_fails_over() {
    let r1 = start(config()).await;
    let r2 = start(config()).await;
    let (a, _) = client("gw-a", &[&r1, &r2]);
    let (b, _) = client("gw-b", &[&r1, &r2]);
    synced(&a, 2).await;
    synced(&b, 2).await;
    a.add("room", member("alice", "a1"));
    b.add("room", member("bob", "b1"));
    b.add("room", member("bob", "b2"));
    b.remove("room", "b2");
    // Read-your-writes: the query waits for the replica to acknowledge this node's own
    // changes (b2 added and removed, b1 there)…
    let own = b.presence("room").await.unwrap();
    assert!(own.contains_key("b1") && !own.contains_key("b2"), "{own:?}");
    // …while another node's changes arrive with its next batch (flush_interval).
    assert!(
        wait_for(Duration::from_millis(500), || async {
            b.presence("room").await.map(sorted_keys) == Ok(vec!["a1".into(), "b1".into()])
        })
        .await
    );
    let stats = a.presence_stats("room").await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (2, 2));
    // Both replicas hold the same, exact state.
    for r in [&r1, &r2] {
        let mut q = rpc(r.addr).await;
        assert_eq!(presence_of(&mut q, "room").await, ["a1", "b1"]);
    }
    let statuses = a
        .user_status(&["bob".to_string(), "carol".to_string()])
        .await
        .unwrap();
    assert!(statuses[0].online && !statuses[1].online);

    r1.stop().await;
    // Still answered, by r2, and still exact after more changes.
    a.add("room", member("amy", "a2"));
    assert_eq!(
        sorted_keys(a.presence("room").await.unwrap()),
        ["a1", "a2", "b1"]
    );
    assert_eq!(a.synced_endpoints(), 1);
    r2.stop().await;
    // No replica: an error, never a stale list.
    let e = a.presence("room").await.unwrap_err();
    assert!(matches!(e, QueryError::Unavailable(_)), "{e:?}");
    // Writes still never block or fail.
    a.add("room", member("amy", "a3"));
    assert_eq!(a.local_len(), 3);
}

#[tokio::test]
async fn a_restarted_replica_is_complete_again_within_one_lease() {
    let lease = Duration::from_secs(1);
    let mut c = config();
    c.lease_ttl = lease;
    c.warmup = lease;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r1 = start_on(listener, c.clone()).await;
    let r2 = start(c.clone()).await;
    let (a, _) = client("gw-a", &[&r1, &r2]);
    let (b, _) = client("gw-b", &[&r1, &r2]);
    tokio::time::sleep(lease).await; // both warmed up
    synced(&a, 2).await;
    synced(&b, 2).await;
    for i in 0..100 {
        a.add("room", member(&format!("u{i}"), &format!("a{i}")));
        b.add("room", member(&format!("v{i}"), &format!("b{i}")));
    }
    r1.stop().await;
    // Changes while r1 is down.
    for i in 0..50 {
        a.remove("room", &format!("a{i}"));
        b.add("lobby", member(&format!("v{i}"), &format!("b{i}")));
    }
    let r1 = start_on(TcpListener::bind(addr).await.unwrap(), c.clone()).await;
    let restarted = tokio::time::Instant::now();
    let mut q = rpc(r1.addr).await;
    // Complete (answers, and exactly) within one lease of the restart.
    let exact = wait_for(lease + Duration::from_millis(500), || {
        let mut q = q.clone();
        async move {
            let room = q
                .presence_stats(chorus_proto::presence::PresenceStatsRequest {
                    channel: "room".into(),
                })
                .await;
            let lobby = q
                .presence_stats(chorus_proto::presence::PresenceStatsRequest {
                    channel: "lobby".into(),
                })
                .await;
            matches!((room, lobby), (Ok(r), Ok(l)) if r.get_ref().num_clients == 150 && l.get_ref().num_clients == 50)
        }
    })
    .await;
    assert!(exact, "not exact within a lease after the restart");
    let took = restarted.elapsed();
    assert!(took >= lease, "answered during the warm-up: {took:?}");
    assert_eq!(presence_of(&mut q, "room").await.len(), 150);
    synced(&a, 2).await;
    r1.stop().await;
    r2.stop().await;
}

#[tokio::test]
async fn ten_thousand_joins_within_a_second_are_visible_within_a_second_of_the_last() {
    let r = start(config()).await;
    let (gw, _) = client("gw", &[&r]);
    synced(&gw, 1).await;
    let mut q = rpc(r.addr).await;
    // 10,000 joins spread over one second (100 every 10 ms), like a connect storm.
    for burst in 0..100 {
        for i in 0..100 {
            let n = burst * 100 + i;
            gw.add(
                &format!("room{}", n % 50),
                member(&format!("user{n}"), &uuid::Uuid::new_v4().to_string()),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = tokio::time::Instant::now();
    // Ask the replica directly (no read-your-writes flush): the batches alone bring it there.
    let mut seen = 0;
    while last.elapsed() < Duration::from_secs(1) {
        let mut total = 0;
        for ch in 0..50 {
            total += stats_of(&mut q, &format!("room{ch}")).await.0;
        }
        seen = total;
        if total == 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 10_000, "after {:?}", last.elapsed());
    eprintln!("10,000 joins visible {:?} after the last", last.elapsed());
    r.stop().await;
}

#[tokio::test]
async fn a_killed_gateways_entries_expire_once_across_replicas_and_goodbye_is_immediate() {
    let mut c = config();
    c.lease_ttl = Duration::from_millis(600);
    let r1 = start(c.clone()).await;
    let r2 = start(c).await;
    let (survivor, mut expirations) = client("gw-survivor", &[&r1, &r2]);
    let (victim, _) = client("gw-victim", &[&r1, &r2]);
    let (leaver, _) = client("gw-leaver", &[&r1, &r2]);
    for c in [&survivor, &victim, &leaver] {
        synced(c, 2).await;
    }
    survivor.add("room", member("sam", "s1"));
    victim.add("room", member("vic", "v1"));
    victim.add("dm", member("vic", "v1"));
    leaver.add("room", member("lee", "l1"));
    for c in [&survivor, &victim, &leaver] {
        assert!(
            wait_for(Duration::from_millis(500), || async {
                c.presence("room").await.map(|p| p.len()) == Ok(3)
            })
            .await
        );
    }

    // SIGTERM-like: Goodbye removes at once (≤ 1 s), and the others are told.
    let t = tokio::time::Instant::now();
    leaver.shutdown().await;
    let e = tokio::time::timeout(Duration::from_secs(1), expirations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.node, "gw-leaver");
    assert_eq!(e.reason, ExpiryReason::Goodbye);
    assert_eq!(e.entries.len(), 1);
    assert_eq!(e.entries[0].0, "room");
    assert_eq!(e.entries[0].1.client, "l1");
    for r in [&r1, &r2] {
        let mut q = rpc(r.addr).await;
        assert!(!presence_of(&mut q, "room")
            .await
            .contains(&"l1".to_string()));
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // kill -9-like: the victim's tasks stop without Goodbye; its lease expires on both
    // replicas, each reports it, the survivor gets every entry exactly once.
    drop(victim);
    let t = tokio::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(3), expirations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.node, "gw-victim");
    assert_eq!(e.reason, ExpiryReason::LeaseExpired);
    let mut got: Vec<(String, String)> = e
        .entries
        .iter()
        .map(|(ch, i)| (ch.clone(), i.client.clone()))
        .collect();
    // The second replica's report may come as a second batch with the rest; never twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Some(more) = expirations.try_recv() {
        got.extend(
            more.entries
                .iter()
                .map(|(ch, i)| (ch.clone(), i.client.clone())),
        );
    }
    got.sort();
    assert_eq!(
        got,
        vec![("dm".into(), "v1".into()), ("room".into(), "v1".into())]
    );
    assert!(t.elapsed() < Duration::from_millis(600 + 1000 + 500));
    assert_eq!(
        sorted_keys(survivor.presence("room").await.unwrap()),
        ["s1"]
    );
    r1.stop().await;
    r2.stop().await;
}

#[tokio::test]
async fn a_gateway_started_before_the_service_syncs_when_it_comes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (gw, _) = client_to("gw", vec![format!("http://{addr}")]);
    gw.add("room", member("alice", "a1"));
    let e = gw.presence("room").await.unwrap_err();
    assert!(matches!(e, QueryError::Unavailable(_)), "{e:?}");
    let r = start_on(TcpListener::bind(addr).await.unwrap(), config()).await;
    synced(&gw, 1).await;
    assert_eq!(sorted_keys(gw.presence("room").await.unwrap()), ["a1"]);
    gw.shutdown().await;
    let mut q = rpc(r.addr).await;
    assert!(presence_of(&mut q, "room").await.is_empty());
    r.stop().await;
}
