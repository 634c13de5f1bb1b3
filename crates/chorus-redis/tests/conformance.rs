//! The broker conformance suite against real Redis: standalone, two independent shards, and
//! a 3-master cluster. The eviction hook deletes the channel's stream and meta keys, as Redis
//! `maxmemory` eviction would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chorus_core::broker::conformance::{run_all, Expect, Subject};
use chorus_redis::{RedisBroker, RedisConfig};

const EXPECT: Expect = Expect {
    filters_unsubscribed: true,
    delivery_timeout: Duration::from_secs(5),
};

async fn run(config: RedisConfig) {
    run_all(
        || {
            let mut c = config.clone();
            c.prefix = format!("conf{}", common::rand_suffix());
            async move {
                let b = RedisBroker::connect(c.clone(), "conformance".into())
                    .await
                    .unwrap();
                assert!(b.wait_ready(Duration::from_secs(10)).await);
                Subject {
                    evict: Arc::new(common::KeyEvictor::new(&c, b.naming().clone())),
                    broker: b,
                }
            }
        },
        EXPECT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone() {
    let redis = common::RedisServer::start();
    run(common::config(vec![redis.address()], false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards() {
    let a = common::RedisServer::start();
    let b = common::RedisServer::start();
    run(common::config(vec![a.address(), b.address()], false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster() {
    let cluster = common::RedisCluster::start();
    run(common::config(cluster.addresses(), true)).await;
}
