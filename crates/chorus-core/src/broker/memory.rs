//! The in-memory broker: history kept in process, bounded node-wide. One node, or several
//! nodes of one process sharing it (each registers its handler) — an in-process cluster for
//! tests.
//!
//! Parts: this file — [`MemoryBroker`], its options and the [`Broker`] implementation;
//! [`stream`] — one channel stream and its byte accounting; [`bounds`] — the LRU index,
//! eviction, trimming and the sweeper.
//!
//! # Order
//! Every channel in use has one entry with its own mutex. A publish assigns the offset,
//! appends to the stream and hands the publication to the node *while holding that mutex*
//! (joins, leaves and publications without history take it too), so delivery order equals
//! offset order, and a concurrent history read sees either the publication in the stream or
//! (if it subscribed first) gets it live — never neither.
//!
//! # Lifetime of per-channel state
//! * An entry lives while some node subscribes to the channel (the broker counts
//!   `subscribe`/`unsubscribe` calls; a node makes one of each per channel), while it holds a
//!   stream, or for the length of one call. An entry nothing needs is removed at the end of
//!   the call that made it so — marked *detached* under its lock first, so a caller that had
//!   looked it up concurrently retries with a fresh entry instead of writing into a removed
//!   one.
//! * A stream's publications are freed `history_ttl` after its last publication; its meta
//!   (epoch and top offset) stays until `history_meta_ttl`, as in Centrifugo, so a client
//!   coming back later is told its position is gone (`recovered: false`) instead of being
//!   handed a reused offset. Meta is compact: 56 bytes in the entry, 263 bytes per channel
//!   with the entry, the map and LRU slots and a 13-byte name (measured by
//!   `tests/footprint.rs`; a stream with one 100-byte publication took 0.9 kB in the
//!   hostile test).
//! * Meta created by a read of a channel nobody published to (a positioned subscribe, a
//!   `history` call) is dropped once no node subscribes to the channel and nobody read it for
//!   [`MemoryBrokerOptions::idle_meta_ttl`] (default 60 s): long enough for an SDK that
//!   reconnects with backoff (centrifuge-js waits at most 20 s) to find the same epoch and
//!   recover; short enough that subscribe-only churn leaves nothing behind for 720 hours.
//! * The sweeper task applies expiry to every entry every 5 s; publishes and reads apply it
//!   to the stream they touch.
//!
//! # Node-wide bounds
//! At most `max_streams` streams and `max_history_bytes` counted bytes: each publication
//! counts its data, info and tags plus a fixed overhead (`stream::PUBLICATION_OVERHEAD`, the
//! in-deque value and allocator headers, ≈ 230 B), each idempotency result its key plus 64 B.
//! When a publish or a read goes over, the least recently used streams (use = publish or
//! history read) are evicted — their next publish or read starts a new epoch, so their
//! subscribers see `recovered: false`, never a silent gap. When the only stream left is over
//! `max_history_bytes` by itself, its oldest publications are trimmed instead (it keeps its
//! epoch; recovering past the trimmed part answers `recovered: false`).

mod bounds;
pub(crate) mod stream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};
use dashmap::DashMap;
use lru::LruCache;
use tokio::time::Instant;

use super::{Broker, BrokerError, BrokerHandler, HistoryPage, HistoryQuery, PublishOptions};
use crate::metrics::MemoryMetrics;
use crate::sync;
use stream::Stream;

/// How long an idempotency key remembers its result.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);
/// How often the sweeper applies expiry to every entry.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Node-wide bounds of the memory broker (`engine.memory.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBrokerOptions {
    /// Max channel streams kept (with or without publications); over it the least recently
    /// used are evicted. Default 100 000.
    pub max_streams: usize,
    /// Max counted bytes of kept publications and idempotency results (see the module docs);
    /// over it the least recently used streams are evicted. Default 256 MiB.
    pub max_history_bytes: usize,
    /// How long stream meta nobody published to is kept once no node subscribes to its
    /// channel and nobody reads it. Default 60 s.
    pub idle_meta_ttl: Duration,
}

impl Default for MemoryBrokerOptions {
    fn default() -> Self {
        MemoryBrokerOptions {
            max_streams: 100_000,
            max_history_bytes: 256 << 20,
            idle_meta_ttl: Duration::from_secs(60),
        }
    }
}

/// What the memory broker holds (tests and tools; the same numbers are exported as metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryBrokerStats {
    /// Channel entries: streams, subscribed channels, and channels inside a call.
    pub entries: usize,
    /// Streams (stream meta, with or without publications).
    pub streams: usize,
    /// Counted bytes of publications and idempotency results.
    pub history_bytes: usize,
}

/// One channel's state.
#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    stream: Option<Stream>,
    /// `subscribe` minus `unsubscribe` calls: the nodes delivering this channel.
    subscribers: u32,
    /// Removed from the map: whoever still holds the entry must look the channel up again.
    detached: bool,
}

impl Slot {
    fn unused(&self) -> bool {
        self.stream.is_none() && self.subscribers == 0
    }
}

/// Several nodes may share one `MemoryBroker`: each registers its handler and receives every
/// delivery and control message, with one shared history.
pub struct MemoryBroker {
    handlers: RwLock<Vec<Weak<dyn BrokerHandler>>>,
    entries: DashMap<Arc<str>, Arc<Entry>>,
    /// Entries holding a stream, least recently used first. Changed only under the entry's
    /// lock (entry → index is the one lock order; see [`bounds`]).
    index: Mutex<LruCache<Arc<str>, Arc<Entry>>>,
    /// `index.len()`, readable without the lock.
    streams: AtomicUsize,
    /// Sum of `Stream::bytes` over all streams.
    bytes: AtomicUsize,
    options: MemoryBrokerOptions,
    /// The broker's clock starts here; deadlines are milliseconds since.
    start: Instant,
    metrics: MemoryMetrics,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("options", &self.options)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Hands one publication to every handler: clones for all but the last, which gets it by value
/// (a single node — the usual case — never copies).
fn deliver(
    handlers: &[Arc<dyn BrokerHandler>],
    channel: &str,
    publication: Publication,
    epoch: &str,
) {
    if let Some((last, rest)) = handlers.split_last() {
        for h in rest {
            h.on_publication(channel, publication.clone(), epoch);
        }
        last.on_publication(channel, publication, epoch);
    }
}

/// A duration in milliseconds of the broker clock.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl MemoryBroker {
    /// Creates the broker with the default bounds ([`MemoryBrokerOptions::default`]).
    pub fn new() -> Arc<Self> {
        Self::with_options(MemoryBrokerOptions::default())
    }

    /// Creates the broker (bounds below 1 are raised to 1). When called inside a tokio runtime
    /// it also starts the sweeper task, which ends when the broker is dropped; without one,
    /// expiry applies only to the streams that publishes and reads touch.
    pub fn with_options(mut options: MemoryBrokerOptions) -> Arc<Self> {
        options.max_streams = options.max_streams.max(1);
        options.max_history_bytes = options.max_history_bytes.max(1);
        crate::metrics::describe_memory();
        let broker = Arc::new(MemoryBroker {
            handlers: RwLock::new(Vec::new()),
            entries: DashMap::new(),
            index: Mutex::new(LruCache::unbounded()),
            streams: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            options,
            start: Instant::now(),
            metrics: MemoryMetrics::new(),
        });
        broker.metrics.levels(0, 0);
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&broker);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_INTERVAL);
                loop {
                    tick.tick().await;
                    let Some(b) = weak.upgrade() else { return };
                    b.sweep();
                }
            });
        }
        broker
    }

    pub fn options(&self) -> &MemoryBrokerOptions {
        &self.options
    }

    /// What the broker holds now.
    pub fn stats(&self) -> MemoryBrokerStats {
        MemoryBrokerStats {
            entries: self.entries.len(),
            streams: self.streams.load(Ordering::Relaxed),
            history_bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn handlers(&self) -> Vec<Arc<dyn BrokerHandler>> {
        sync::read(&self.handlers)
            .iter()
            .filter_map(|w| w.upgrade())
            .collect()
    }

    fn now_ms(&self) -> u64 {
        ms(self.start.elapsed())
    }

    fn entry(&self, channel: &str, create: bool) -> Option<Arc<Entry>> {
        if let Some(e) = self.entries.get(channel) {
            return Some(e.clone());
        }
        if !create {
            return None;
        }
        let name: Arc<str> = Arc::from(channel);
        let entry = self
            .entries
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Entry {
                    name,
                    slot: Mutex::default(),
                })
            })
            .clone();
        Some(entry)
    }

    /// Runs `f` on the channel's slot under its lock (looking the channel up again when the
    /// entry it found was detached meanwhile), then removes the entry if nothing needs it.
    /// `None` when `create` is false and the channel has no entry.
    fn with_slot<R>(
        &self,
        channel: &str,
        create: bool,
        f: impl FnOnce(&Arc<Entry>, &mut Slot) -> R,
    ) -> Option<R> {
        loop {
            let entry = self.entry(channel, create)?;
            let mut slot = sync::lock(&entry.slot);
            if slot.detached {
                continue;
            }
            let r = f(&entry, &mut slot);
            if slot.unused() {
                self.detach(&entry, &mut slot);
            }
            return Some(r);
        }
    }

    /// Removes an unused entry from the map (its lock is held).
    fn detach(&self, entry: &Arc<Entry>, slot: &mut Slot) {
        slot.detached = true;
        self.entries
            .remove_if(&*entry.name, |_, e| Arc::ptr_eq(e, entry));
    }

    /// Moves the byte count by a stream's change from `before` to `after` counted bytes.
    fn account(&self, before: usize, after: usize) {
        if after > before {
            self.bytes.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.bytes.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Applies expiry as of `now` to the slot's stream: frees expired publications and
    /// results, and forgets the stream when its meta expired.
    fn refresh(&self, entry: &Arc<Entry>, slot: &mut Slot, now: u64) {
        let subscribed = slot.subscribers > 0;
        let Some(stream) = slot.stream.as_mut() else {
            return;
        };
        if stream.is_expired(now, subscribed) {
            self.close_stream(entry, slot);
            self.metrics.expired();
            return;
        }
        let before = stream.bytes();
        stream.expire(now);
        self.account(before, stream.bytes());
    }

    /// The slot's stream, expired state applied; a new one (new epoch) when there is none.
    fn open_stream<'a>(
        &self,
        entry: &Arc<Entry>,
        slot: &'a mut Slot,
        now: u64,
        meta_ttl: Duration,
    ) -> &'a mut Stream {
        self.refresh(entry, slot, now);
        let mut index = sync::lock(&self.index);
        if slot.stream.is_some() {
            index.promote(&*entry.name);
        } else {
            index.put(entry.name.clone(), entry.clone());
            self.streams.store(index.len(), Ordering::Relaxed);
        }
        drop(index);
        slot.stream
            .get_or_insert_with(|| Stream::new(now, ms(meta_ttl), ms(self.options.idle_meta_ttl)))
    }

    /// Forgets the slot's stream (returned, so a caller may free it after unlocking).
    fn close_stream(&self, entry: &Arc<Entry>, slot: &mut Slot) -> Option<Stream> {
        let stream = slot.stream.take()?;
        self.account(stream.bytes(), 0);
        let mut index = sync::lock(&self.index);
        if index
            .peek(&*entry.name)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            index.pop(&*entry.name);
        }
        self.streams.store(index.len(), Ordering::Relaxed);
        Some(stream)
    }

    /// Forgets the channel's stream the way the bounds do (the conformance suite's eviction
    /// hook). Returns whether there was one.
    #[cfg(any(test, feature = "testing"))]
    pub fn evict(&self, channel: &str) -> bool {
        let evicted = self
            .with_slot(channel, false, |entry, slot| {
                self.close_stream(entry, slot).is_some()
            })
            .unwrap_or(false);
        self.update_levels();
        evicted
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl super::conformance::Evict for MemoryBroker {
    async fn evict(&self, channel: &str) {
        MemoryBroker::evict(self, channel);
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn set_handler(&self, handler: Weak<dyn BrokerHandler>) {
        let mut handlers = sync::write(&self.handlers);
        handlers.retain(|w| w.strong_count() > 0);
        handlers.push(handler);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.with_slot(channel, true, |_, slot| {
            slot.subscribers = slot.subscribers.saturating_add(1);
        });
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let now = self.now_ms();
        let idle = ms(self.options.idle_meta_ttl);
        self.with_slot(channel, false, |_, slot| {
            slot.subscribers = slot.subscribers.saturating_sub(1);
            if slot.subscribers == 0 {
                // Read-created meta starts its idle grace when the last node leaves.
                if let Some(s) = slot.stream.as_mut().filter(|s| s.top == 0) {
                    s.idle_until = s.idle_until.max(now.saturating_add(idle));
                }
            }
        });
        Ok(())
    }

    async fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let handlers = self.handlers();
        let Some(history) = opts.history else {
            publication.offset = 0;
            self.with_slot(channel, true, |_, _| {
                deliver(&handlers, channel, publication, "");
            });
            return Ok(StreamPosition::default());
        };
        let key = opts.idempotency_key.as_deref().filter(|k| !k.is_empty());
        let position = self.with_slot(channel, true, |entry, slot| {
            let now = self.now_ms();
            let stream = self.open_stream(entry, slot, now, history.meta_ttl);
            if let Some(offset) = key.and_then(|k| stream.recall(k, now)) {
                return stream.position_at(offset);
            }
            let before = stream.bytes();
            stream.top += 1;
            publication.offset = stream.top;
            // The stream keeps what history and recovery return: never marked as a delta
            // (`delta` on a live publication only says "compressible").
            stream.append(
                Publication {
                    delta: false,
                    ..publication.clone()
                },
                history.size,
                now.saturating_add(ms(history.ttl)),
            );
            stream.meta_expires = now.saturating_add(ms(history.meta_ttl.max(history.ttl)));
            if let Some(k) = key {
                let top = stream.top;
                stream.remember(k, top, now.saturating_add(ms(IDEMPOTENCY_TTL)));
            }
            self.account(before, stream.bytes());
            let position = stream.position();
            deliver(&handlers, channel, publication, &position.epoch);
            position
        });
        self.enforce_bounds();
        position.ok_or_else(|| BrokerError::Other("channel entry vanished".into()))
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let handlers = self.handlers();
        self.with_slot(channel, true, |_, _| {
            for h in &handlers {
                h.on_join(channel, info.clone());
            }
        });
        Ok(())
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let handlers = self.handlers();
        self.with_slot(channel, true, |_, _| {
            for h in &handlers {
                h.on_leave(channel, info.clone());
            }
        });
        Ok(())
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        let idle = ms(self.options.idle_meta_ttl);
        let page = self.with_slot(channel, true, |entry, slot| {
            let now = self.now_ms();
            let stream = self.open_stream(entry, slot, now, query.meta_ttl);
            if stream.top == 0 {
                // A read keeps read-created meta alive for the idle grace.
                stream.idle_until = stream.idle_until.max(now.saturating_add(idle));
            }
            let position = stream.position();
            if let Some(since) = &query.since {
                if !since.epoch.is_empty() && since.epoch != position.epoch {
                    return Err(BrokerError::UnrecoverablePosition);
                }
            }
            let publications = match query.limit {
                Some(0) => Vec::new(),
                limit => stream.page(
                    query.since.as_ref().map(|s| s.offset),
                    limit.unwrap_or(usize::MAX),
                    query.reverse,
                ),
            };
            Ok(HistoryPage {
                publications,
                position,
            })
        });
        self.enforce_bounds();
        page.unwrap_or_else(|| Err(BrokerError::Other("channel entry vanished".into())))
    }

    async fn publish_control(
        &self,
        message: crate::control::ControlMessage,
    ) -> Result<(), BrokerError> {
        for h in self.handlers() {
            h.on_control(message.clone());
        }
        Ok(())
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let now = self.now_ms();
        self.with_slot(channel, false, |entry, slot| {
            self.refresh(entry, slot, now);
            if let Some(stream) = slot.stream.as_mut() {
                let before = stream.bytes();
                stream.drop_history();
                self.account(before, stream.bytes());
            }
        });
        self.update_levels();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
