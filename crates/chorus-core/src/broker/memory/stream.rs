//! One channel stream as the memory broker keeps it, and what it is counted as costing.
//!
//! The layout favours what stays longest. Once `history_ttl` has passed a stream is only its
//! meta — epoch, top offset and two deadlines, 48 bytes inline — because publications and
//! idempotency results live behind `Option<Box<…>>` whose allocations are dropped on expiry
//! (not cleared: a cleared `VecDeque` keeps its buffer, and RSS would never come back).
//!
//! Times are milliseconds on the broker's own clock (`u64`, 8 bytes instead of a 16-byte
//! `Instant`); the broker passes `now` in.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;

use chorus_protocol::{Publication, StreamPosition};

use crate::broker::new_epoch;

/// Bytes counted for each kept publication on top of its variable parts (data, info, tags):
/// the `Publication` value in its deque slot plus 32 bytes for the allocator headers of its
/// heap parts — about 230 bytes on x86-64.
pub(crate) const PUBLICATION_OVERHEAD: usize = size_of::<Publication>() + 32;

/// Bytes counted for each idempotency result on top of its key: the map slot (boxed key and
/// value), control bytes and the allocator header of the key.
pub(crate) const RESULT_OVERHEAD: usize = 64;

/// What a publication is counted as costing in `max_history_bytes`.
pub(crate) fn publication_cost(p: &Publication) -> usize {
    let info = p.info.as_ref().map_or(0, |i| {
        i.user.len() + i.client.len() + i.conn_info.len() + i.chan_info.len()
    });
    let tags: usize = p.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
    PUBLICATION_OVERHEAD + p.data.len() + info + tags
}

/// An epoch inline: 8 ASCII letters (see [`new_epoch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch([u8; 8]);

impl Epoch {
    pub(crate) fn random() -> Epoch {
        let mut bytes = [b'a'; 8];
        for (slot, b) in bytes.iter_mut().zip(new_epoch().bytes()) {
            *slot = b;
        }
        Epoch(bytes)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

#[derive(Debug)]
struct History {
    publications: VecDeque<Publication>,
    /// The publications are dropped at this deadline.
    expires: u64,
    /// Counted bytes of `publications`.
    bytes: usize,
}

#[derive(Debug, Default)]
struct Results {
    /// Idempotency key → (offset, deadline).
    kept: HashMap<Box<str>, (u64, u64)>,
    /// Counted bytes of `kept`.
    bytes: usize,
}

/// A channel stream: its meta, and while they live, its publications and idempotency results.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) epoch: Epoch,
    /// The offset of the last publication; 0 while nothing was published in this epoch.
    pub(crate) top: u64,
    /// The meta (and so the whole stream) is forgotten at this deadline.
    pub(crate) meta_expires: u64,
    /// Meta nobody published to (`top` 0, created by a read) is forgotten at this deadline when
    /// no node subscribes to the channel.
    pub(crate) idle_until: u64,
    history: Option<Box<History>>,
    results: Option<Box<Results>>,
}

impl Stream {
    pub(crate) fn new(now: u64, meta_ttl: u64, idle_ttl: u64) -> Stream {
        Stream {
            epoch: Epoch::random(),
            top: 0,
            meta_expires: now.saturating_add(meta_ttl),
            idle_until: now.saturating_add(idle_ttl),
            history: None,
            results: None,
        }
    }

    pub(crate) fn position(&self) -> StreamPosition {
        self.position_at(self.top)
    }

    pub(crate) fn position_at(&self, offset: u64) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: self.epoch.as_str().to_string(),
        }
    }

    /// Counted bytes of publications and results.
    pub(crate) fn bytes(&self) -> usize {
        self.history.as_ref().map_or(0, |h| h.bytes) + self.results.as_ref().map_or(0, |r| r.bytes)
    }

    /// Whether the stream is gone as of `now`: its meta expired, or it is read-created meta
    /// (never published to) that no node subscribes to and nobody read for the idle grace.
    pub(crate) fn is_expired(&self, now: u64, subscribed: bool) -> bool {
        now >= self.meta_expires || (self.top == 0 && !subscribed && now >= self.idle_until)
    }

    /// Frees publications whose `history_ttl` passed and results older than their TTL
    /// (dropping the allocations).
    pub(crate) fn expire(&mut self, now: u64) {
        if self.history.as_ref().is_some_and(|h| now >= h.expires) {
            self.history = None;
        }
        if let Some(r) = self.results.as_mut() {
            let before = r.kept.len();
            r.kept.retain(|_, (_, expires)| *expires > now);
            if r.kept.len() != before {
                r.bytes = r.kept.keys().map(|k| k.len() + RESULT_OVERHEAD).sum();
            }
            if r.kept.is_empty() {
                self.results = None;
            }
        }
    }

    /// Drops every publication (the meta stays).
    pub(crate) fn drop_history(&mut self) {
        self.history = None;
    }

    /// Appends a publication (its offset already set), keeps at most `keep` publications and
    /// moves the history deadline to `expires`.
    pub(crate) fn append(&mut self, publication: Publication, keep: usize, expires: u64) {
        let h = self.history.get_or_insert_with(|| {
            Box::new(History {
                publications: VecDeque::new(),
                expires,
                bytes: 0,
            })
        });
        h.expires = expires;
        let keep = keep.max(1);
        while h.publications.len() >= keep {
            if let Some(old) = h.publications.pop_front() {
                h.bytes = h.bytes.saturating_sub(publication_cost(&old));
            }
        }
        let (len, cap) = (h.publications.len(), h.publications.capacity());
        if len == cap {
            // Grow by doubling but never past `keep`: `VecDeque` would start at 4 slots
            // (800 bytes for one publication) and end at the next power of two above
            // `history_size`. Measured: 50k streams of one publication took 1.5 kB each with
            // the default growth, 0.9 kB with this.
            let target = (cap * 2).clamp(1, keep);
            h.publications.reserve_exact(target - len);
        }
        h.bytes += publication_cost(&publication);
        h.publications.push_back(publication);
    }

    /// Drops the oldest publication; false when there was none. The last one frees the whole
    /// history allocation.
    pub(crate) fn trim_oldest(&mut self) -> bool {
        let Some(h) = self.history.as_mut() else {
            return false;
        };
        let Some(old) = h.publications.pop_front() else {
            self.history = None;
            return false;
        };
        h.bytes = h.bytes.saturating_sub(publication_cost(&old));
        if h.publications.is_empty() {
            self.history = None;
        }
        true
    }

    /// Drops the idempotency results.
    pub(crate) fn drop_results(&mut self) {
        self.results = None;
    }

    /// The offset an idempotency key published at, if it is still remembered.
    pub(crate) fn recall(&self, key: &str, now: u64) -> Option<u64> {
        let (offset, expires) = self.results.as_ref()?.kept.get(key)?;
        (*expires > now).then_some(*offset)
    }

    pub(crate) fn remember(&mut self, key: &str, offset: u64, expires: u64) {
        let r = self.results.get_or_insert_with(Box::default);
        if r.kept.insert(key.into(), (offset, expires)).is_none() {
            r.bytes += key.len() + RESULT_OVERHEAD;
        }
    }

    /// Publications strictly after `after` (oldest first), or with `reverse` strictly before
    /// `before` (newest first), at most `limit`.
    pub(crate) fn page(&self, since: Option<u64>, limit: usize, reverse: bool) -> Vec<Publication> {
        let Some(h) = self.history.as_ref() else {
            return Vec::new();
        };
        if reverse {
            let before = since.unwrap_or(u64::MAX);
            h.publications
                .iter()
                .rev()
                .filter(|p| p.offset < before)
                .take(limit)
                .cloned()
                .collect()
        } else {
            let after = since.unwrap_or(0);
            h.publications
                .iter()
                .filter(|p| p.offset > after)
                .take(limit)
                .cloned()
                .collect()
        }
    }

    /// Number of publications kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.history.as_ref().map_or(0, |h| h.publications.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chorus_protocol::ClientInfo;

    fn publication(offset: u64, data: &str) -> Publication {
        Publication {
            data: Bytes::from(data.to_string()),
            offset,
            ..Publication::default()
        }
    }

    #[test]
    fn meta_is_compact() {
        // What stays for `history_meta_ttl` after the publications expired.
        assert_eq!(size_of::<Stream>(), 48);
        assert_eq!(size_of::<Option<Stream>>(), 56);
    }

    #[test]
    fn cost_counts_data_info_tags_and_overhead() {
        let mut p = publication(1, "12345");
        assert_eq!(publication_cost(&p), PUBLICATION_OVERHEAD + 5);
        p.info = Some(ClientInfo {
            user: "u1".into(),
            client: "c123".into(),
            conn_info: Bytes::from_static(b"{}"),
            chan_info: Bytes::new(),
        });
        p.tags.insert("k".into(), "vv".into());
        assert_eq!(publication_cost(&p), PUBLICATION_OVERHEAD + 5 + 8 + 3);
    }

    #[test]
    fn capacity_grows_to_history_size_and_no_further() {
        let mut s = Stream::new(0, 1000, 10);
        let cap = |s: &Stream| s.history.as_ref().map_or(0, |h| h.publications.capacity());
        s.append(publication(1, "x"), 100, 10);
        assert_eq!(cap(&s), 1);
        for i in 2..=300 {
            s.append(publication(i, "x"), 100, 10);
        }
        assert_eq!(s.len(), 100);
        assert_eq!(cap(&s), 100);
        let mut one = Stream::new(0, 1000, 10);
        for i in 1..=3 {
            one.append(publication(i, "x"), 1, 10);
        }
        assert_eq!((one.len(), cap(&one)), (1, 1));
    }

    #[test]
    fn append_trims_to_size_and_counts_bytes() {
        let mut s = Stream::new(0, 1000, 10);
        for i in 1..=5 {
            s.top = i;
            s.append(publication(i, "xx"), 3, 100);
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.bytes(), 3 * (PUBLICATION_OVERHEAD + 2));
        let offsets: Vec<u64> = s.page(None, 10, false).iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [3, 4, 5]);
        assert!(s.trim_oldest());
        assert_eq!(s.bytes(), 2 * (PUBLICATION_OVERHEAD + 2));
        assert!(s.trim_oldest());
        assert!(s.trim_oldest());
        assert!(s.history.is_none(), "the last trim frees the allocation");
        assert!(!s.trim_oldest());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn expiry_frees_history_then_meta() {
        let mut s = Stream::new(0, 1000, 10);
        s.top = 1;
        s.append(publication(1, "x"), 10, 100);
        s.remember("key", 1, 50);
        assert_eq!(s.bytes(), PUBLICATION_OVERHEAD + 1 + 3 + RESULT_OVERHEAD);
        s.expire(49);
        assert_eq!(s.recall("key", 49), Some(1));
        s.expire(50);
        assert!(s.results.is_none());
        assert_eq!(s.recall("key", 50), None);
        assert_eq!(s.len(), 1);
        s.expire(100);
        assert!(s.history.is_none());
        assert_eq!(s.bytes(), 0);
        // Published to: the idle rule does not apply, only the meta deadline.
        assert!(!s.is_expired(999, false));
        assert!(s.is_expired(1000, true));
    }

    #[test]
    fn read_created_meta_idles_out_only_when_unsubscribed() {
        let s = Stream::new(0, 1000, 10);
        assert!(!s.is_expired(9, false));
        assert!(s.is_expired(10, false));
        assert!(!s.is_expired(10, true));
        assert!(s.is_expired(1000, true));
    }
}
