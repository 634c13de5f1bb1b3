//! What the Redis broker leaves behind: stream keys expire `history_ttl` after the last
//! publish, meta hashes `history_meta_ttl` after it (or after the read that created them), and
//! the node process keeps no per-channel state for channels it no longer subscribes to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_core::broker::conformance::{history_ttl, publication};
use chorus_core::broker::{Broker, HistoryQuery};
use chorus_redis::RedisConfig;

fn assert_pttl(pttl: i64, min_ms: i64, max_ms: i64, what: &str) {
    assert!(
        pttl > min_ms && pttl <= max_ms,
        "{what}: PTTL {pttl} not in ({min_ms}, {max_ms}]"
    );
}

async fn exists(keys: &common::Keys, channel: &str, key: &str) -> bool {
    let mut cmd = redis::cmd("EXISTS");
    cmd.arg(key);
    keys.query::<i64>(channel, &cmd).await == 1
}

async fn key_ttls(config: RedisConfig) {
    let (b, _rec) = common::broker(config.clone(), "ttl").await;
    let keys = common::Keys::new(&config, b.naming().clone());
    let n = b.naming().clone();

    // Published: stream at history_ttl, meta at max(history_meta_ttl, history_ttl).
    let ch = "ttl:published";
    let opts = history_ttl(10, Duration::from_millis(1000), Duration::from_millis(2000));
    b.publish(ch, publication("1"), &opts).await.unwrap();
    assert_pttl(keys.pttl(ch, &n.stream_key(ch)).await, 500, 1000, "stream");
    assert_pttl(keys.pttl(ch, &n.meta_key(ch)).await, 1500, 2000, "meta");

    // Meta created by a read: the query's meta TTL, and no stream key.
    let read = "ttl:read";
    b.history(
        read,
        HistoryQuery {
            since: None,
            limit: Some(0),
            reverse: false,
            meta_ttl: Duration::from_millis(5000),
        },
    )
    .await
    .unwrap();
    assert_pttl(
        keys.pttl(read, &n.meta_key(read)).await,
        4500,
        5000,
        "read meta",
    );
    assert!(!exists(&keys, read, &n.stream_key(read)).await);

    // Idempotency results live 300 s.
    let mut idem = opts.clone();
    idem.idempotency_key = Some("k".into());
    b.publish(ch, publication("2"), &idem).await.unwrap();
    assert_pttl(
        keys.pttl(ch, &n.result_key(ch, "k")).await,
        299_000,
        300_000,
        "result",
    );

    // Past history_ttl the stream key is gone and the meta is still there.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!exists(&keys, ch, &n.stream_key(ch)).await);
    assert!(exists(&keys, ch, &n.meta_key(ch)).await);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_at_their_ttls_standalone() {
    let redis = common::RedisServer::start();
    key_ttls(common::config(vec![redis.address()], false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_at_their_ttls_cluster() {
    let cluster = common::RedisCluster::start();
    key_ttls(common::config(cluster.addresses(), true)).await;
}

/// Redis's own view of this node's subscriptions: pub/sub channels (standalone) or sharded
/// channels (cluster) under the test prefix, over every Redis.
async fn redis_subscriptions(addresses: &[String], cluster: bool, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for a in addresses {
        let client = redis::Client::open(format!("redis://{a}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd("PUBSUB");
        if cluster {
            cmd.arg("SHARDCHANNELS");
        } else {
            cmd.arg("CHANNELS");
        }
        let channels: Vec<String> = cmd.query_async(&mut conn).await.unwrap();
        out.extend(
            channels
                .into_iter()
                .filter(|c| c.contains(prefix) && !c.contains(".control") && !c.contains(".probe")),
        );
    }
    out.sort();
    out
}

async fn no_state_after_unsubscribe(addresses: Vec<String>, cluster: bool) {
    let config = common::config(addresses.clone(), cluster);
    let prefix = config.prefix.clone();
    let (b, _rec) = common::broker(config, "churn").await;
    let channels: Vec<String> = (0..300).map(|i| format!("churn:{i}")).collect();
    for ch in &channels {
        b.subscribe(ch).await.unwrap();
    }
    assert_eq!(b.wanted_channels(), 300);
    let subscribed = redis_subscriptions(&addresses, cluster, &prefix).await;
    assert!(!subscribed.is_empty());
    for ch in &channels {
        b.publish(
            ch,
            publication("x"),
            &history_ttl(10, Duration::from_secs(5), Duration::from_secs(5)),
        )
        .await
        .unwrap();
        b.unsubscribe(ch).await.unwrap();
    }
    assert_eq!(b.wanted_channels(), 0);
    assert_eq!(
        redis_subscriptions(&addresses, cluster, &prefix).await,
        Vec::<String>::new()
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_per_channel_state_after_unsubscribe_standalone() {
    let a = common::RedisServer::start();
    let c = common::RedisServer::start();
    no_state_after_unsubscribe(vec![a.address(), c.address()], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_per_channel_state_after_unsubscribe_cluster() {
    let cluster = common::RedisCluster::start();
    no_state_after_unsubscribe(cluster.addresses(), true).await;
}
