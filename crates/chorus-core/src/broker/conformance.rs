//! The behavioural suite every [`Broker`] runs (feature `testing`): offsets and epochs,
//! history reads, trimming, removal, idempotency, delivery order and filtering, join/leave and
//! control delivery, TTL reclaim of streams and meta, and eviction — checked against exact
//! outcomes, so the memory and Redis brokers keep identical semantics. Deliveries are awaited
//! (a Redis broker delivers asynchronously). TTL checks run on real time with TTLs of 1–2 s
//! (Redis expires keys on its own clock), so the suite waits about 2.3 s once.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};

use super::{Broker, BrokerError, BrokerHandler, HistoryOptions, HistoryQuery, PublishOptions};
use crate::control::{Control, ControlMessage};
use crate::sync;

mod lifetime;
pub use lifetime::{eviction, ttl_reclaim};

/// What a broker handed to its handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Publication {
        channel: String,
        offset: u64,
        epoch: String,
        data: Bytes,
    },
    Join {
        channel: String,
        client: String,
    },
    Leave {
        channel: String,
        client: String,
    },
    Control(ControlMessage),
}

/// A handler that records everything.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    lost: AtomicUsize,
    /// Publications delivered with the "delta-compressible" mark.
    delta_marked: AtomicUsize,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        sync::lock(&self.events).clone()
    }

    /// Events concerning `channel` (publications, joins, leaves).
    pub fn of(&self, channel: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| match e {
                Event::Publication { channel: c, .. }
                | Event::Join { channel: c, .. }
                | Event::Leave { channel: c, .. } => c == channel,
                Event::Control(_) => false,
            })
            .collect()
    }

    /// How many publications arrived marked delta-compressible.
    pub fn delta_marked(&self) -> usize {
        self.delta_marked.load(Ordering::SeqCst)
    }

    /// How many times `on_deliveries_lost` was called.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }

    fn push(&self, e: Event) {
        sync::lock(&self.events).push(e);
    }
}

impl BrokerHandler for Recorder {
    fn on_publication(&self, channel: &str, publication: Publication, epoch: &str) {
        if publication.delta {
            self.delta_marked.fetch_add(1, Ordering::SeqCst);
        }
        self.push(Event::Publication {
            channel: channel.to_string(),
            offset: publication.offset,
            epoch: epoch.to_string(),
            data: publication.data,
        });
    }
    fn on_join(&self, channel: &str, info: ClientInfo) {
        self.push(Event::Join {
            channel: channel.to_string(),
            client: info.client,
        });
    }
    fn on_leave(&self, channel: &str, info: ClientInfo) {
        self.push(Event::Leave {
            channel: channel.to_string(),
            client: info.client,
        });
    }
    fn on_control(&self, message: ControlMessage) {
        self.push(Event::Control(message));
    }
    fn on_deliveries_lost(&self) {
        self.lost.fetch_add(1, Ordering::SeqCst);
    }
}

/// How the broker under test is expected to differ.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Channels this node did not subscribe to are not delivered (Redis); the memory broker
    /// delivers everything (false).
    pub filters_unsubscribed: bool,
    /// How long to wait for a delivery.
    pub delivery_timeout: Duration,
}

/// Polls `cond` every 5 ms until true or `timeout`.
pub async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The eviction hook of an implementation: forgets a channel's stream and meta the way the
/// broker's own bound would — the memory broker's LRU eviction, or Redis `maxmemory` eviction
/// deleting the stream and meta keys.
#[async_trait]
pub trait Evict: Send + Sync {
    async fn evict(&self, channel: &str);
}

/// A broker under test and its eviction hook.
pub struct Subject {
    pub broker: Arc<dyn Broker>,
    pub evict: Arc<dyn Evict>,
}

/// A unique channel name.
pub fn channel(tag: &str) -> String {
    format!("conf:{tag}:{}", uuid::Uuid::new_v4().simple())
}

pub fn history(size: usize) -> PublishOptions {
    history_ttl(size, Duration::from_secs(60), Duration::from_secs(600))
}

pub fn history_ttl(size: usize, ttl: Duration, meta_ttl: Duration) -> PublishOptions {
    PublishOptions {
        history: Some(HistoryOptions {
            size,
            ttl,
            meta_ttl,
        }),
        idempotency_key: None,
    }
}

pub fn publication(data: &str) -> Publication {
    Publication {
        data: Bytes::from(data.to_string()),
        ..Publication::default()
    }
}

fn query(since: Option<(u64, &str)>, limit: Option<usize>, reverse: bool) -> HistoryQuery {
    HistoryQuery {
        since: since.map(|(offset, epoch)| StreamPosition {
            offset,
            epoch: epoch.to_string(),
        }),
        limit,
        reverse,
        meta_ttl: Duration::from_secs(600),
    }
}

async fn offsets(b: &dyn Broker, ch: &str, q: HistoryQuery) -> Vec<u64> {
    match b.history(ch, q).await {
        Ok(page) => page.publications.iter().map(|p| p.offset).collect(),
        Err(e) => panic!("history failed: {e}"),
    }
}

/// Runs every check, each on a fresh broker from `factory` with a [`Recorder`] handler.
pub async fn run_all<F, Fut>(factory: F, expect: Expect)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Subject>,
{
    let fresh = || async {
        let s = factory().await;
        let rec = Arc::new(Recorder::default());
        let weak: std::sync::Weak<dyn BrokerHandler> =
            Arc::downgrade(&(rec.clone() as Arc<dyn BrokerHandler>));
        s.broker.set_handler(weak);
        (s, rec)
    };
    {
        let (s, _r) = fresh().await;
        let b = s.broker.as_ref();
        offsets_history_and_epoch(b).await;
        trimming_and_removal(b).await;
        idempotency(b).await;
        history_creates_epoch(b).await;
    }
    {
        let (s, r) = fresh().await;
        delivery(s.broker.as_ref(), &r, expect).await;
        delta_mark(s.broker.as_ref(), &r, expect).await;
    }
    {
        let (s, r) = fresh().await;
        eviction(s.broker.as_ref(), s.evict.as_ref(), &r, expect).await;
        ttl_reclaim(s.broker.as_ref()).await;
    }
}

/// The "delta-compressible" mark of a publication reaches the handler (every node's hub
/// decides per subscriber) and is never kept in history.
pub async fn delta_mark(b: &dyn Broker, rec: &Recorder, expect: Expect) {
    let ch = channel("delta");
    b.subscribe(&ch)
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let before = rec.delta_marked();
    for (data, delta) in [("1", true), ("2", false), ("3", true)] {
        let p = Publication {
            delta,
            ..publication(data)
        };
        b.publish(&ch, p, &history(10))
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
    }
    assert!(wait_for(expect.delivery_timeout, || rec.of(&ch).len() >= 3).await);
    assert_eq!(rec.delta_marked() - before, 2);
    let page = b
        .history(&ch, query(None, None, false))
        .await
        .unwrap_or_else(|e| panic!("history: {e}"));
    assert_eq!(page.publications.len(), 3);
    assert!(page.publications.iter().all(|p| !p.delta));
}

/// Offsets 1..N under one epoch; limits, since (exclusive), reverse, epoch mismatch.
pub async fn offsets_history_and_epoch(b: &dyn Broker) {
    let ch = channel("offsets");
    let mut epoch = String::new();
    for i in 1..=5u64 {
        let pos = b
            .publish(&ch, publication(&format!("{{\"n\":{i}}}")), &history(10))
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
        assert_eq!(pos.offset, i);
        assert_eq!(pos.epoch.len(), 8, "epoch {:?}", pos.epoch);
        if i == 1 {
            epoch = pos.epoch.clone();
        }
        assert_eq!(pos.epoch, epoch);
    }
    let e = epoch.as_str();
    let page = b
        .history(&ch, query(None, Some(0), false))
        .await
        .unwrap_or_else(|e| panic!("history: {e}"));
    assert!(page.publications.is_empty());
    assert_eq!(
        page.position,
        StreamPosition {
            offset: 5,
            epoch: epoch.clone()
        }
    );
    let all = b
        .history(&ch, query(None, None, false))
        .await
        .unwrap_or_else(|e| panic!("history: {e}"));
    let datas: Vec<&[u8]> = all.publications.iter().map(|p| p.data.as_ref()).collect();
    assert_eq!(datas[0], b"{\"n\":1}");
    assert_eq!(datas[4], b"{\"n\":5}");
    assert_eq!(
        offsets(b, &ch, query(None, None, false)).await,
        [1, 2, 3, 4, 5]
    );
    assert_eq!(offsets(b, &ch, query(None, Some(2), false)).await, [1, 2]);
    assert_eq!(
        offsets(b, &ch, query(Some((2, e)), None, false)).await,
        [3, 4, 5]
    );
    assert_eq!(
        offsets(b, &ch, query(Some((2, e)), Some(1), false)).await,
        [3]
    );
    assert_eq!(
        offsets(b, &ch, query(Some((2, "")), None, false)).await,
        [3, 4, 5]
    );
    assert_eq!(
        offsets(b, &ch, query(Some((5, e)), None, false)).await,
        Vec::<u64>::new()
    );
    assert_eq!(offsets(b, &ch, query(None, Some(2), true)).await, [5, 4]);
    assert_eq!(
        offsets(b, &ch, query(None, None, true)).await,
        [5, 4, 3, 2, 1]
    );
    assert_eq!(
        offsets(b, &ch, query(Some((4, e)), None, true)).await,
        [3, 2, 1]
    );
    assert_eq!(
        offsets(b, &ch, query(Some((4, e)), Some(1), true)).await,
        [3]
    );
    assert_eq!(
        b.history(&ch, query(Some((2, "wrongEpc")), None, false))
            .await,
        Err(BrokerError::UnrecoverablePosition)
    );
}

/// `history_size` trims oldest first; `remove_history` keeps epoch and top.
pub async fn trimming_and_removal(b: &dyn Broker) {
    let ch = channel("trim");
    let mut epoch = String::new();
    for i in 1..=5 {
        epoch = b
            .publish(&ch, publication(&i.to_string()), &history(3))
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"))
            .epoch;
    }
    assert_eq!(offsets(b, &ch, query(None, None, false)).await, [3, 4, 5]);
    b.remove_history(&ch)
        .await
        .unwrap_or_else(|e| panic!("remove: {e}"));
    let page = b
        .history(&ch, query(None, None, false))
        .await
        .unwrap_or_else(|e| panic!("history: {e}"));
    assert!(page.publications.is_empty());
    assert_eq!(
        page.position,
        StreamPosition {
            offset: 5,
            epoch: epoch.clone()
        }
    );
    let pos = b
        .publish(&ch, publication("6"), &history(3))
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(pos, StreamPosition { offset: 6, epoch });
    assert_eq!(offsets(b, &ch, query(None, None, false)).await, [6]);
}

/// The same idempotency key publishes once and answers the first position.
pub async fn idempotency(b: &dyn Broker) {
    let ch = channel("idem");
    let mut opts = history(10);
    opts.idempotency_key = Some("k1".into());
    let first = b
        .publish(&ch, publication("1"), &opts)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    let again = b
        .publish(&ch, publication("1"), &opts)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(first.offset, 1);
    assert_eq!(again, first);
    opts.idempotency_key = Some("k2".into());
    let other = b
        .publish(&ch, publication("2"), &opts)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(other.offset, 2);
    assert_eq!(offsets(b, &ch, query(None, None, false)).await, [1, 2]);
}

/// Reading a channel never published to creates its epoch (offset 0); publishes keep it.
pub async fn history_creates_epoch(b: &dyn Broker) {
    let ch = channel("fresh");
    let page = b
        .history(&ch, query(None, Some(0), false))
        .await
        .unwrap_or_else(|e| panic!("history: {e}"));
    assert_eq!(page.position.offset, 0);
    assert_eq!(page.position.epoch.len(), 8);
    let pos = b
        .publish(&ch, publication("1"), &history(10))
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(
        pos,
        StreamPosition {
            offset: 1,
            epoch: page.position.epoch
        }
    );
}

/// Deliveries in publish order for subscribed channels (and, per `expect`, none for others);
/// publications without history carry offset 0 and no epoch; join, leave and control arrive.
pub async fn delivery(b: &dyn Broker, rec: &Recorder, expect: Expect) {
    let ch = channel("deliver");
    let other = channel("other");
    b.subscribe(&ch)
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let mut epoch = String::new();
    for i in 1..=20 {
        epoch = b
            .publish(&ch, publication(&i.to_string()), &history(100))
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"))
            .epoch;
    }
    assert!(
        wait_for(expect.delivery_timeout, || rec.of(&ch).len() >= 20).await,
        "got {:?}",
        rec.of(&ch)
    );
    let expected: Vec<Event> = (1..=20u64)
        .map(|i| Event::Publication {
            channel: ch.clone(),
            offset: i,
            epoch: epoch.clone(),
            data: Bytes::from(i.to_string()),
        })
        .collect();
    assert_eq!(rec.of(&ch), expected);

    let pos = b
        .publish(&other, publication("x"), &PublishOptions::default())
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(pos, StreamPosition::default());
    let plain = b
        .publish(&ch, publication("plain"), &PublishOptions::default())
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    assert_eq!(plain, StreamPosition::default());
    let info = ClientInfo {
        user: "u1".into(),
        client: "c1".into(),
        ..ClientInfo::default()
    };
    b.publish_join(&ch, info.clone())
        .await
        .unwrap_or_else(|e| panic!("join: {e}"));
    b.publish_leave(&ch, info)
        .await
        .unwrap_or_else(|e| panic!("leave: {e}"));
    assert!(wait_for(expect.delivery_timeout, || rec.of(&ch).len() >= 23).await);
    let tail = rec.of(&ch)[20..].to_vec();
    assert_eq!(
        tail,
        vec![
            Event::Publication {
                channel: ch.clone(),
                offset: 0,
                epoch: String::new(),
                data: Bytes::from_static(b"plain"),
            },
            Event::Join {
                channel: ch.clone(),
                client: "c1".into()
            },
            Event::Leave {
                channel: ch.clone(),
                client: "c1".into()
            },
        ]
    );
    if expect.filters_unsubscribed {
        assert!(rec.of(&other).is_empty(), "{:?}", rec.of(&other));
    } else {
        assert_eq!(rec.of(&other).len(), 1);
    }

    // After unsubscribe nothing more arrives (checked behind a marker on a subscribed channel).
    if expect.filters_unsubscribed {
        b.unsubscribe(&ch)
            .await
            .unwrap_or_else(|e| panic!("unsubscribe: {e}"));
        let marker = channel("marker");
        b.subscribe(&marker)
            .await
            .unwrap_or_else(|e| panic!("subscribe: {e}"));
        b.publish(&ch, publication("late"), &history(100))
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
        b.publish(&marker, publication("m"), &PublishOptions::default())
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
        assert!(wait_for(expect.delivery_timeout, || rec.of(&marker).len() == 1).await);
        assert_eq!(rec.of(&ch).len(), 23);
    }

    let msg = ControlMessage {
        from: "node-a".into(),
        target: String::new(),
        control: Control::SurveyRequest(crate::control::SurveyRequest {
            id: 7,
            op: crate::control::SurveyOp::Channels,
            data: Bytes::from_static(b"{}"),
        }),
    };
    b.publish_control(msg.clone())
        .await
        .unwrap_or_else(|e| panic!("control: {e}"));
    assert!(
        wait_for(expect.delivery_timeout, || {
            rec.events().contains(&Event::Control(msg.clone()))
        })
        .await
    );
}
