//! Lifetime checks of the conformance suite: eviction (through the implementation's
//! [`Evict`] hook) and TTL reclaim of publications, meta and read-created meta, on real time.

use std::time::Duration;

use bytes::Bytes;
use chorus_protocol::StreamPosition;

use super::{
    channel, history, history_ttl, offsets, publication, query, wait_for, Event, Evict, Expect,
    Recorder,
};
use crate::broker::{Broker, BrokerError, HistoryPage};

fn page_of(res: Result<HistoryPage, BrokerError>) -> HistoryPage {
    res.unwrap_or_else(|e| panic!("history: {e}"))
}

/// An evicted stream is gone with its meta: reads with the old epoch answer
/// `UnrecoverablePosition`, the next read or publish starts a new epoch whose offsets restart
/// at 1, and deliveries carry the new epoch (a positioned subscriber notices the change).
pub async fn eviction(b: &dyn Broker, evict: &dyn Evict, rec: &Recorder, expect: Expect) {
    let ch = channel("evict");
    b.subscribe(&ch)
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let mut old = StreamPosition::default();
    for i in 1..=3 {
        old = b
            .publish(&ch, publication(&i.to_string()), &history(10))
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
    }
    assert_eq!(old.offset, 3);
    evict.evict(&ch).await;
    assert_eq!(
        b.history(&ch, query(Some((3, &old.epoch)), None, false))
            .await,
        Err(BrokerError::UnrecoverablePosition)
    );
    assert_eq!(
        b.history(&ch, query(Some((1, &old.epoch)), Some(0), false))
            .await,
        Err(BrokerError::UnrecoverablePosition)
    );
    let fresh = page_of(b.history(&ch, query(None, None, false)).await);
    assert!(fresh.publications.is_empty());
    assert_eq!(fresh.position.offset, 0);
    assert_eq!(fresh.position.epoch.len(), 8);
    assert_ne!(fresh.position.epoch, old.epoch);
    let next = b
        .publish(&ch, publication("new"), &history(10))
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(
        next,
        StreamPosition {
            offset: 1,
            epoch: fresh.position.epoch.clone()
        }
    );
    let e = fresh.position.epoch.as_str();
    assert_eq!(offsets(b, &ch, query(Some((0, e)), None, false)).await, [1]);
    assert!(
        wait_for(expect.delivery_timeout, || rec.of(&ch).len() >= 4).await,
        "got {:?}",
        rec.of(&ch)
    );
    assert_eq!(
        rec.of(&ch)[3],
        Event::Publication {
            channel: ch.clone(),
            offset: 1,
            epoch: next.epoch.clone(),
            data: Bytes::from_static(b"new"),
        }
    );

    // Evicted without a read in between: the publish itself starts the new epoch.
    let ch2 = channel("evict2");
    let first = b
        .publish(&ch2, publication("1"), &history(10))
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    b.publish(&ch2, publication("2"), &history(10))
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    evict.evict(&ch2).await;
    let again = b
        .publish(&ch2, publication("3"), &history(10))
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(again.offset, 1);
    assert_ne!(again.epoch, first.epoch);
    let page = page_of(b.history(&ch2, query(None, None, false)).await);
    assert_eq!(page.position, again);
    assert_eq!(page.publications.len(), 1);
    assert_eq!(page.publications[0].data.as_ref(), b"3");
}

/// Publications are gone `history_ttl` after the last publish while the meta (epoch, top)
/// stays; the meta is gone `history_meta_ttl` after it (a new epoch). Meta created by a read
/// lives the query's `meta_ttl`. Real time: 1 s and 2 s TTLs.
pub async fn ttl_reclaim(b: &dyn Broker) {
    let ttl = Duration::from_millis(1000);
    let meta_ttl = Duration::from_millis(2000);
    let ch = channel("ttl");
    let read_ch = channel("ttl-read");
    let opts = history_ttl(10, ttl, meta_ttl);
    b.publish(&ch, publication("1"), &opts)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    let pos = b
        .publish(&ch, publication("2"), &opts)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    let published = tokio::time::Instant::now();
    let mut read_query = query(None, Some(0), false);
    read_query.meta_ttl = ttl;
    let read_pos = page_of(b.history(&read_ch, read_query.clone()).await).position;
    assert_eq!(read_pos.offset, 0);
    assert_eq!(offsets(b, &ch, query(None, None, false)).await, [1, 2]);

    tokio::time::sleep_until(published + ttl + Duration::from_millis(200)).await;
    let page = page_of(b.history(&ch, query(None, None, false)).await);
    assert!(page.publications.is_empty(), "{:?}", page.publications);
    assert_eq!(page.position, pos, "the meta outlives the publications");
    let page = page_of(b.history(&read_ch, read_query).await);
    assert_eq!(page.position.offset, 0);
    assert_ne!(
        page.position.epoch, read_pos.epoch,
        "read-created meta expired"
    );

    tokio::time::sleep_until(published + meta_ttl + Duration::from_millis(200)).await;
    assert_eq!(
        b.history(&ch, query(Some((2, &pos.epoch)), None, false))
            .await,
        Err(BrokerError::UnrecoverablePosition)
    );
    let page = page_of(b.history(&ch, query(None, Some(0), false)).await);
    assert_eq!(page.position.offset, 0);
    assert_ne!(page.position.epoch, pos.epoch);
    let next = b
        .publish(&ch, publication("3"), &opts)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(
        next,
        StreamPosition {
            offset: 1,
            epoch: page.position.epoch
        }
    );
}
