//! Expiry, bounds and entry lifetime of the memory broker, on paused time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_protocol::{Publication, StreamPosition};

use super::stream::{publication_cost, PUBLICATION_OVERHEAD};
use super::{MemoryBroker, MemoryBrokerOptions, MemoryBrokerStats};
use crate::broker::{
    Broker, BrokerError, HistoryOptions, HistoryPage, HistoryQuery, PublishOptions,
};

fn opts(size: usize, ttl_s: u64, meta_ttl_s: u64) -> PublishOptions {
    PublishOptions {
        history: Some(HistoryOptions {
            size,
            ttl: Duration::from_secs(ttl_s),
            meta_ttl: Duration::from_secs(meta_ttl_s),
        }),
        idempotency_key: None,
    }
}

fn data(n: usize) -> Publication {
    Publication {
        data: Bytes::from(vec![b'x'; n]),
        ..Publication::default()
    }
}

/// Counted cost of `data(n)` once stored.
fn cost(n: usize) -> usize {
    publication_cost(&data(n))
}

fn since(offset: u64, epoch: &str, limit: Option<usize>) -> HistoryQuery {
    HistoryQuery {
        since: Some(StreamPosition {
            offset,
            epoch: epoch.to_string(),
        }),
        limit,
        reverse: false,
        meta_ttl: Duration::from_secs(3600),
    }
}

fn top() -> HistoryQuery {
    HistoryQuery {
        since: None,
        limit: Some(0),
        reverse: false,
        meta_ttl: Duration::from_secs(3600),
    }
}

async fn publish(b: &MemoryBroker, ch: &str, n: usize, o: &PublishOptions) -> StreamPosition {
    match b.publish(ch, data(n), o).await {
        Ok(p) => p,
        Err(e) => panic!("publish {ch}: {e}"),
    }
}

async fn read(b: &MemoryBroker, ch: &str, q: HistoryQuery) -> HistoryPage {
    match b.history(ch, q).await {
        Ok(p) => p,
        Err(e) => panic!("history {ch}: {e}"),
    }
}

fn offsets(page: &HistoryPage) -> Vec<u64> {
    page.publications.iter().map(|p| p.offset).collect()
}

fn broker(max_streams: usize, max_history_bytes: usize) -> Arc<MemoryBroker> {
    MemoryBroker::with_options(MemoryBrokerOptions {
        max_streams,
        max_history_bytes,
        idle_meta_ttl: Duration::from_secs(60),
    })
}

#[tokio::test(start_paused = true)]
async fn publications_are_freed_at_history_ttl_and_meta_at_meta_ttl() {
    let b = MemoryBroker::new();
    let o = opts(10, 10, 60);
    publish(&b, "a", 100, &o).await;
    let first = publish(&b, "a", 100, &o).await;
    assert_eq!(
        b.stats(),
        MemoryBrokerStats {
            entries: 1,
            streams: 1,
            history_bytes: 2 * cost(100),
        }
    );
    tokio::time::advance(Duration::from_millis(9_999)).await;
    b.sweep();
    assert_eq!(b.stats().history_bytes, 2 * cost(100));
    tokio::time::advance(Duration::from_millis(1)).await;
    b.sweep();
    // The publications are gone; the meta stays (same epoch and top).
    assert_eq!(
        b.stats(),
        MemoryBrokerStats {
            entries: 1,
            streams: 1,
            history_bytes: 0,
        }
    );
    let page = read(&b, "a", since(0, "", None)).await;
    assert!(page.publications.is_empty());
    assert_eq!(page.position, first);
    tokio::time::advance(Duration::from_secs(50)).await;
    b.sweep();
    assert_eq!(b.stats(), MemoryBrokerStats::default());
    let again = publish(&b, "a", 1, &o).await;
    assert_eq!(again.offset, 1);
    assert_ne!(again.epoch, first.epoch);
}

#[tokio::test(start_paused = true)]
async fn expiry_applies_on_access_without_a_sweep() {
    let b = MemoryBroker::new();
    let o = opts(10, 10, 20);
    let first = publish(&b, "a", 10, &o).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let page = read(&b, "a", since(0, "", None)).await;
    assert!(page.publications.is_empty());
    assert_eq!(b.stats().history_bytes, 0);
    tokio::time::advance(Duration::from_secs(10)).await;
    let page = read(&b, "a", top()).await;
    assert_eq!(page.position.offset, 0);
    assert_ne!(page.position.epoch, first.epoch);
}

#[tokio::test(start_paused = true)]
async fn max_streams_evicts_the_least_recently_used() {
    let b = broker(2, usize::MAX);
    let o = opts(10, 60, 600);
    let a = publish(&b, "a", 1, &o).await;
    let c_b = publish(&b, "b", 1, &o).await;
    // A read is a use: "a" becomes the most recently used, so "b" is evicted for "c".
    read(&b, "a", top()).await;
    publish(&b, "c", 1, &o).await;
    assert_eq!(b.stats().streams, 2);
    assert_eq!(read(&b, "a", top()).await.position, a);
    let b_now = read(&b, "b", top()).await.position;
    assert_eq!(b_now.offset, 0);
    assert_ne!(b_now.epoch, c_b.epoch);
    // Reading "b" created a stream again and evicted the least recently used ("c").
    assert_eq!(b.stats().streams, 2);
    assert_eq!(
        b.history("b", since(1, &c_b.epoch, None)).await,
        Err(BrokerError::UnrecoverablePosition)
    );
    let c_now = publish(&b, "c", 1, &o).await;
    assert_eq!(c_now.offset, 1, "c was evicted: a new epoch starts at 1");
}

#[tokio::test(start_paused = true)]
async fn max_history_bytes_evicts_the_least_recently_used() {
    // Room for three publications of 100 bytes.
    let b = broker(usize::MAX, 3 * cost(100));
    let o = opts(10, 60, 600);
    let a = publish(&b, "a", 100, &o).await;
    publish(&b, "a", 100, &o).await;
    publish(&b, "b", 100, &o).await;
    assert_eq!(b.stats().history_bytes, 3 * cost(100));
    publish(&b, "b", 100, &o).await;
    // "a" (least recently used) went, with its two publications.
    assert_eq!(
        b.stats(),
        MemoryBrokerStats {
            entries: 1,
            streams: 1,
            history_bytes: 2 * cost(100),
        }
    );
    let after = publish(&b, "a", 100, &o).await;
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, a.epoch);
}

#[tokio::test(start_paused = true)]
async fn the_only_stream_over_the_byte_bound_is_trimmed_not_evicted() {
    let b = broker(usize::MAX, 2 * cost(100) + 50);
    let o = opts(10, 60, 600);
    let mut last = StreamPosition::default();
    for _ in 0..5 {
        last = publish(&b, "a", 100, &o).await;
    }
    assert_eq!(last.offset, 5);
    let page = read(&b, "a", since(0, &last.epoch, None)).await;
    assert_eq!(offsets(&page), [4, 5]);
    assert_eq!(page.position, last);
    assert_eq!(b.stats().history_bytes, 2 * cost(100));
    // A publication larger than the bound by itself is delivered and then trimmed away.
    let big = publish(&b, "a", 1000, &o).await;
    assert_eq!(big.offset, 6);
    assert_eq!(big.epoch, last.epoch);
    assert_eq!(b.stats().history_bytes, 0);
    assert!(read(&b, "a", since(5, &last.epoch, None))
        .await
        .publications
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn idempotency_results_are_counted() {
    let b = MemoryBroker::new();
    let mut o = opts(10, 60, 600);
    o.idempotency_key = Some("key-1".into());
    publish(&b, "a", 10, &o).await;
    assert_eq!(
        b.stats().history_bytes,
        cost(10) + "key-1".len() + super::stream::RESULT_OVERHEAD
    );
    assert_eq!(publish(&b, "a", 10, &o).await.offset, 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    b.sweep();
    // The publication expired; the result lives 300 s.
    assert_eq!(
        b.stats().history_bytes,
        "key-1".len() + super::stream::RESULT_OVERHEAD
    );
    assert_eq!(publish(&b, "a", 10, &o).await.offset, 1);
    tokio::time::advance(Duration::from_secs(240)).await;
    b.sweep();
    assert_eq!(b.stats().history_bytes, 0);
    assert_eq!(publish(&b, "a", 10, &o).await.offset, 2);
}

#[tokio::test(start_paused = true)]
async fn read_created_meta_is_dropped_after_the_idle_grace_once_unsubscribed() {
    let b = MemoryBroker::new();
    // A positioned subscribe: subscribe, then read.
    b.subscribe("p").await.unwrap_or_else(|e| panic!("{e}"));
    let pos = read(&b, "p", top()).await.position;
    assert_eq!(pos.offset, 0);
    // Still subscribed long after the grace: kept, the subscriber's epoch stays valid.
    tokio::time::advance(Duration::from_secs(600)).await;
    b.sweep();
    assert_eq!(read(&b, "p", top()).await.position, pos);
    b.unsubscribe("p").await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::advance(Duration::from_millis(59_999)).await;
    b.sweep();
    assert_eq!(b.stats().streams, 1, "within the grace");
    tokio::time::advance(Duration::from_millis(1)).await;
    b.sweep();
    assert_eq!(b.stats(), MemoryBrokerStats::default());

    // A `history` call alone (nobody subscribed): gone after the grace, counted from the
    // last read.
    read(&b, "h", top()).await;
    tokio::time::advance(Duration::from_secs(30)).await;
    read(&b, "h", top()).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    b.sweep();
    assert_eq!(b.stats().streams, 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    b.sweep();
    assert_eq!(b.stats(), MemoryBrokerStats::default());

    // Published-to meta is not idle meta: it stays until history_meta_ttl.
    b.subscribe("q").await.unwrap_or_else(|e| panic!("{e}"));
    read(&b, "q", top()).await;
    publish(&b, "q", 1, &opts(10, 5, 3600)).await;
    b.unsubscribe("q").await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::advance(Duration::from_secs(120)).await;
    b.sweep();
    assert_eq!(
        b.stats(),
        MemoryBrokerStats {
            entries: 1,
            streams: 1,
            history_bytes: 0,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn channels_without_history_leave_no_entry() {
    let b = MemoryBroker::new();
    let info = chorus_protocol::ClientInfo::default();
    for i in 0..1000 {
        let ch = format!("plain:{i}");
        publish(&b, &ch, 10, &PublishOptions::default()).await;
        b.publish_join(&ch, info.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        b.publish_leave(&ch, info.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        b.remove_history(&ch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(b.stats(), MemoryBrokerStats::default());
    // A subscribed channel keeps its entry (its delivery order) until the last unsubscribe.
    b.subscribe("s").await.unwrap_or_else(|e| panic!("{e}"));
    b.subscribe("s").await.unwrap_or_else(|e| panic!("{e}"));
    publish(&b, "s", 10, &PublishOptions::default()).await;
    b.unsubscribe("s").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.stats().entries, 1);
    b.unsubscribe("s").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.stats(), MemoryBrokerStats::default());
    // Unbalanced unsubscribes do nothing.
    b.unsubscribe("s").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.stats(), MemoryBrokerStats::default());
}

#[tokio::test(start_paused = true)]
async fn evict_hook_forgets_stream_and_meta() {
    let b = MemoryBroker::new();
    let o = opts(10, 60, 600);
    let first = publish(&b, "a", 10, &o).await;
    assert!(b.evict("a"));
    assert!(!b.evict("a"));
    assert_eq!(b.stats(), MemoryBrokerStats::default());
    let next = publish(&b, "a", 10, &o).await;
    assert_eq!(next.offset, 1);
    assert_ne!(next.epoch, first.epoch);
}

/// Publishers and readers on more channels than `max_streams`, from several threads: no
/// deadlock, the bounds hold, the byte count matches what is kept, and within every epoch
/// offsets are gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_use_under_eviction_keeps_counts_and_offsets_consistent() {
    let b = broker(8, 40 * cost(64));
    let o = opts(5, 60, 600);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let b = b.clone();
        let o = o.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<(String, StreamPosition)> = Vec::new();
            for i in 0..2000u64 {
                let ch = format!("ch{}", (i * 7 + t * 3) % 24);
                if i % 5 == 0 {
                    let _ = b.history(&ch, top()).await;
                } else {
                    seen.push((ch.clone(), publish(&b, &ch, 64, &o).await));
                }
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(seen)) => all.extend(seen),
            other => panic!("publisher did not finish: {other:?}"),
        }
    }
    let stats = b.stats();
    assert!(stats.streams <= 8, "{stats:?}");
    assert!(stats.history_bytes <= 40 * cost(64), "{stats:?}");
    // The counters equal what the entries hold, and the index holds exactly the streams.
    assert_eq!(recount(&b), (stats.streams, stats.history_bytes));
    assert_eq!(crate::sync::lock(&b.index).len(), stats.streams);
    // Per (channel, epoch), the offsets handed out are exactly 1..=n with no duplicate.
    let mut by_epoch: std::collections::HashMap<(String, String), Vec<u64>> = Default::default();
    for (ch, pos) in all {
        by_epoch
            .entry((ch, pos.epoch))
            .or_default()
            .push(pos.offset);
    }
    for ((ch, epoch), mut offs) in by_epoch {
        offs.sort_unstable();
        let expected: Vec<u64> = (1..=offs.len() as u64).collect();
        assert_eq!(offs, expected, "{ch} epoch {epoch}");
    }
}

/// Streams and counted bytes, recounted from the entries.
fn recount(b: &MemoryBroker) -> (usize, usize) {
    let (mut streams, mut bytes) = (0, 0);
    for e in b.entries.iter() {
        if let Some(s) = &crate::sync::lock(&e.slot).stream {
            streams += 1;
            bytes += s.bytes();
        }
    }
    (streams, bytes)
}

#[test]
fn overhead_is_stated() {
    // The documented figure (module docs, docs/config.md): about 230 bytes per publication.
    assert!(
        (200..=260).contains(&PUBLICATION_OVERHEAD),
        "{PUBLICATION_OVERHEAD}"
    );
}
