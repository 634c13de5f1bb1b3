//! A slow client never slows others: a subscriber that stops reading is closed once its
//! outbound queue passes `client.queue_max_size` (3008), while a reading subscriber of the
//! same channel receives every publication, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chorus_core::api::PublishRequest;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_is_closed_with_3008_and_others_get_everything() {
    let mut config = test_config();
    config.client.options.queue_max_size = 256 * 1024;
    let server = TestServer::start(config).await;
    let channel = "news";
    let mut fast = subscribed(&server, channel).await;
    let slow = subscribed(&server, channel).await;

    // 10,000 × 2 KB = 20 MB: far more than the kernel's socket buffers absorb for the
    // client that does not read. The publisher stays at most 64 publications (128 KB) ahead of
    // the reading client, so that one never nears its own queue bound, however busy the machine.
    const N: usize = 10_000;
    const AHEAD: usize = 64;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader_progress = progress.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(N);
        while seen.len() < N {
            let f = tokio::time::timeout(Duration::from_secs(10), fast.read_data())
                .await
                .expect("fast client starved")
                .expect("fast client closed");
            for line in String::from_utf8(f.payload).unwrap().split('\n') {
                let v: Value = serde_json::from_str(line).unwrap();
                if let Some(n) = v["push"]["pub"]["data"]["n"].as_u64() {
                    seen.push(n as usize);
                    reader_progress.store(seen.len(), std::sync::atomic::Ordering::Release);
                }
            }
        }
        (seen, fast)
    });
    let pad = "x".repeat(2000);
    for n in 0..N {
        let data = Bytes::from(format!("{{\"n\":{n},\"pad\":\"{pad}\"}}"));
        server
            .node
            .api()
            .publish(PublishRequest::new(channel, data))
            .await
            .unwrap();
        while n >= progress.load(std::sync::atomic::Ordering::Acquire) + AHEAD {
            if reader.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (seen, fast) = reader.await.unwrap();
    assert_eq!(
        seen,
        (0..N).collect::<Vec<_>>(),
        "fast client got everything in order"
    );

    // The slow client was cut off: its connection is gone from the node.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.node.num_clients() > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.node.num_clients(), 1, "slow client still connected");
    let (status, _, body) = http(server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(body).unwrap();
    let slow_line = metrics
        .lines()
        .find(|l| l.starts_with("chorus_client_slow_total"))
        .expect("slow counter exported");
    let count: f64 = slow_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{slow_line}");
    drop(slow);
    drop(fast);
    server.stop().await.unwrap();
}
