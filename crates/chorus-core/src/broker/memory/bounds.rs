//! The memory broker's node-wide bounds: LRU eviction, trimming, and the sweeper.
//!
//! # Locks
//! Three kinds, always taken in this order: an entry's mutex → the LRU index mutex, and an
//! entry's mutex → a map shard (removing a detached entry). Under the index lock only O(1)
//! `LruCache` operations run; it is never held while waiting for an entry. So the evictor
//! *peeks* at the least recently used entry, releases the index, locks the victim, and checks
//! again under both that the victim is still the least recently used (a publish may have
//! promoted it meanwhile; then it tries again). Eviction runs after the caller released its
//! own entry, so two publishers evicting each other's streams cannot deadlock. The sweeper
//! walks the map under shard read locks and only `try_lock`s entries: a busy entry is
//! checked at the next sweep.
//!
//! Fan-out (the handler call inside a publish) holds only its own channel's mutex; eviction
//! holds a victim's mutex just long enough to take its stream out, and frees the publications
//! after unlocking.

use std::sync::atomic::Ordering;
use std::sync::{Arc, TryLockError};

use super::MemoryBroker;
use crate::metrics::EvictionReason;
use crate::sync;

/// How many times in a row the evictor may lose the race for the least recently used entry
/// before it leaves the rest to the next publish (only possible under heavy concurrent use
/// of the very streams it picks).
const MAX_RACES: u32 = 16;

/// The sweeper shrinks the channel map when it is a quarter full and larger than this many
/// slots (smaller tables are not worth a rehash).
const SHRINK_ABOVE: usize = 4096;

impl MemoryBroker {
    /// Evicts least recently used streams (or trims the only one) until the broker is within
    /// `max_streams` and `max_history_bytes`. Call without holding any entry lock.
    pub(super) fn enforce_bounds(&self) {
        let max_streams = self.options.max_streams;
        let max_bytes = self.options.max_history_bytes;
        let mut races = 0;
        loop {
            let over_streams = self.streams.load(Ordering::Relaxed) > max_streams;
            let over_bytes = self.bytes.load(Ordering::Relaxed) > max_bytes;
            if !over_streams && !over_bytes {
                break;
            }
            let Some(victim) = sync::lock(&self.index).peek_lru().map(|(_, e)| e.clone()) else {
                break;
            };
            let mut slot = sync::lock(&victim.slot);
            // Under both locks: still the least recently used, and still over? (Concurrent
            // evictors would otherwise evict one stream each for the same excess.)
            let checked = {
                let index = sync::lock(&self.index);
                match index.peek_lru() {
                    Some((_, e)) if Arc::ptr_eq(e, &victim) => Some((
                        index.len() == 1,
                        index.len() > max_streams,
                        self.bytes.load(Ordering::Relaxed) > max_bytes,
                    )),
                    _ => None,
                }
            };
            let Some((only, over_streams, over_bytes)) = checked else {
                races += 1;
                if races >= MAX_RACES {
                    break;
                }
                continue;
            };
            if !over_streams && !over_bytes {
                break;
            }
            if only && !over_streams {
                // The only stream is over the byte bound by itself: trim its oldest
                // publications (it keeps its epoch); evict it only if that is not enough.
                let Some(stream) = slot.stream.as_mut() else {
                    break;
                };
                let before = stream.bytes();
                let mut trimmed = 0u64;
                while self
                    .bytes
                    .load(Ordering::Relaxed)
                    .saturating_sub(before - stream.bytes())
                    > max_bytes
                    && stream.trim_oldest()
                {
                    trimmed += 1;
                }
                let over = self
                    .bytes
                    .load(Ordering::Relaxed)
                    .saturating_sub(before - stream.bytes())
                    > max_bytes;
                if over {
                    // Only idempotency results are left over the bound.
                    stream.drop_results();
                }
                self.account(before, stream.bytes());
                self.metrics.trimmed(trimmed);
                break;
            }
            let reason = if over_streams {
                EvictionReason::MaxStreams
            } else {
                EvictionReason::MaxHistoryBytes
            };
            let stream = self.close_stream(&victim, &mut slot);
            if slot.unused() {
                self.detach(&victim, &mut slot);
            }
            drop(slot);
            drop(stream);
            self.metrics.evicted(reason);
        }
        self.update_levels();
    }

    /// Publishes the stream and byte gauges.
    pub(super) fn update_levels(&self) {
        self.metrics.levels(
            self.streams.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        );
    }

    /// Applies expiry to every entry: frees publications past `history_ttl` and results past
    /// their TTL, forgets streams whose meta expired (or read-created meta past its idle
    /// grace), and removes entries nothing needs. Run by the sweeper task every 5 s; public
    /// for tests.
    pub fn sweep(&self) {
        let now = self.now_ms();
        let mut unused = Vec::new();
        for item in self.entries.iter() {
            let entry = item.value();
            let mut slot = match entry.slot.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            self.refresh(entry, &mut slot, now);
            if slot.unused() {
                unused.push(entry.clone());
            }
        }
        for entry in unused {
            let mut slot = sync::lock(&entry.slot);
            if !slot.detached && slot.unused() {
                self.detach(&entry, &mut slot);
            }
        }
        // After a burst (300k channels published to once) the map keeps its table: give it
        // back once it is mostly empty. Each shard is rehashed under its own write lock.
        let (len, capacity) = (self.entries.len(), self.entries.capacity());
        if capacity > SHRINK_ABOVE && len < capacity / 4 {
            self.entries.shrink_to_fit();
        }
        self.update_levels();
    }
}
