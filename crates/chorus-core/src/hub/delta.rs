//! Delta fan-out: the channel's previous publication, and the frames a publication takes for
//! delta-mode subscribers.
//!
//! State lives only for channels with at least one delta subscriber on this node
//! ([`DeltaChannels`], keyed by channel, dropped with its last delta subscriber); other
//! channels pay one relaxed atomic load per publication and no memory.
//!
//! The rule (Centrifugo's, with the previous publication kept by the hub like its PRO
//! `keep_latest_publication`): a delta subscriber gets a fossil delta against the channel's
//! previous publication when (1) the publication is delta-compressible (`delta: true` from the
//! publish API / publish hook, or the namespace's `delta_publish`), (2) the previous one is
//! its predecessor in the stream (no history, or offset = previous + 1 in the same epoch),
//! (3) this subscriber received that previous publication live — the number its live phase
//! keeps equals the previous publication's local sequence number — and (4) the delta is smaller than the
//! payload. Otherwise it gets the full payload with `delta: false`. Each node sees a channel's
//! publications in broker order, so the hub-local previous publication is the one its
//! subscribers saw.
//!
//! Encode once: the delta is computed at most once per publication, and a publication has at
//! most three frames per protocol — normal (non-delta subscribers), delta-mode full (over
//! JSON the payload as a JSON string; over Protobuf the normal frame), and delta.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use chorus_protocol::{Protocol, Publication};
use dashmap::DashMap;

use super::encoded::Encoded;
use crate::delta::{fossil, json_string};
use crate::{metrics, sync};

/// The channels of this node that have delta subscribers.
#[derive(Debug, Default)]
pub(crate) struct DeltaChannels {
    map: DashMap<Arc<str>, Arc<DeltaChannel>>,
    /// `map.len()`, readable without touching a shard: 0 keeps the fan-out on its old path.
    live: AtomicUsize,
}

/// One channel's delta state.
#[derive(Debug, Default)]
pub(crate) struct DeltaChannel {
    /// Delta subscribers of the channel on this node (changed under the map's shard lock).
    subscribers: AtomicUsize,
    pub(crate) prev: Mutex<Prev>,
}

/// The channel's previous publication as this node delivered it.
#[derive(Debug, Default)]
pub(crate) struct Prev {
    /// Local sequence number of the previous publication; 0 = none yet. Subscribers compare
    /// it with the number of the last publication they received.
    pub(crate) seq: u64,
    data: Bytes,
    offset: u64,
    epoch: Arc<str>,
}

impl Prev {
    /// Whether a publication at `offset`/`epoch` directly follows the previous one.
    fn precedes(&self, offset: u64, epoch: &str) -> bool {
        if self.seq == 0 {
            return false;
        }
        match (self.offset, offset) {
            (0, 0) => true,
            (prev, cur) => prev > 0 && cur == prev + 1 && *self.epoch == *epoch,
        }
    }

    /// Records the publication just fanned out; returns its sequence number.
    pub(crate) fn advance(&mut self, data: Bytes, offset: u64, epoch: &Arc<str>) -> u64 {
        self.seq += 1;
        self.data = data;
        self.offset = offset;
        self.epoch = epoch.clone();
        self.seq
    }
}

impl DeltaChannels {
    /// Counts a delta subscriber in; call before it joins the channel's `subs`.
    pub(crate) fn add(&self, channel: &Arc<str>) {
        let entry = self.map.entry(channel.clone()).or_insert_with(|| {
            self.live.fetch_add(1, Ordering::Relaxed);
            Arc::default()
        });
        entry.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a delta subscriber out; call after it left the channel's `subs`. The state goes
    /// with the last one.
    pub(crate) fn remove(&self, channel: &str) {
        let removed = self.map.remove_if(channel, |_, d| {
            d.subscribers.fetch_sub(1, Ordering::Relaxed) == 1
        });
        if removed.is_some() {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The channel's delta state, if it has delta subscribers. Called under the channel's
    /// `subs` read lock, so a delta subscriber seen there is always counted here.
    pub(crate) fn get(&self, channel: &str) -> Option<Arc<DeltaChannel>> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.map.get(channel).map(|d| d.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

/// The delta-mode frames of one publication, each made at most once, on first use.
pub(crate) struct DeltaFrames<'a> {
    channel: &'a str,
    publication: &'a Publication,
    normal: &'a Encoded,
    /// The base when the publication may go as a delta (rules 1 and 2 of the module doc).
    base: Option<Bytes>,
    base_seq: u64,
    patch: OnceLock<Option<Bytes>>,
    full_json: OnceLock<Option<Bytes>>,
    delta_json: OnceLock<Option<Bytes>>,
    delta_protobuf: OnceLock<Option<Bytes>>,
}

impl<'a> DeltaFrames<'a> {
    /// Frames for `publication` (already without its `delta` flag) given the channel's
    /// previous publication and whether the publication is delta-compressible.
    pub(crate) fn new(
        channel: &'a str,
        publication: &'a Publication,
        normal: &'a Encoded,
        prev: &Prev,
        compressible: bool,
        epoch: &str,
    ) -> Self {
        let base =
            (compressible && prev.precedes(publication.offset, epoch)).then(|| prev.data.clone());
        DeltaFrames {
            channel,
            publication,
            normal,
            base,
            base_seq: prev.seq,
            patch: OnceLock::new(),
            full_json: OnceLock::new(),
            delta_json: OnceLock::new(),
            delta_protobuf: OnceLock::new(),
        }
    }

    /// The frame for a subscriber whose last received publication has local number
    /// `received` (0 = none): the delta when the rules allow, else the delta-mode full frame.
    /// `None` when the payload cannot travel over `protocol` (3506).
    pub(crate) fn frame(&self, protocol: Protocol, received: u64) -> Option<Bytes> {
        if received != 0 && received == self.base_seq {
            if let Some(f) = self.delta(protocol) {
                return Some(f);
            }
        }
        self.full(protocol)
    }

    fn patch(&self) -> Option<&Bytes> {
        self.patch
            .get_or_init(|| {
                let base = self.base.as_ref()?;
                let target = &self.publication.data;
                let utf8 = std::str::from_utf8(target).is_ok();
                let patch = fossil::encode(base, target, utf8);
                // As Centrifugo: a delta no smaller than the payload goes as the payload.
                if patch.len() >= target.len() {
                    metrics::delta_publication(false, 0);
                    return None;
                }
                metrics::delta_publication(true, target.len() - patch.len());
                Some(Bytes::from(patch))
            })
            .as_ref()
    }

    fn delta(&self, protocol: Protocol) -> Option<Bytes> {
        match protocol {
            Protocol::Json => self
                .delta_json
                .get_or_init(|| self.encode(json_string(self.patch()?)?, true, protocol))
                .clone(),
            Protocol::Protobuf => self
                .delta_protobuf
                .get_or_init(|| self.encode(self.patch()?.clone(), true, protocol))
                .clone(),
        }
    }

    fn full(&self, protocol: Protocol) -> Option<Bytes> {
        match protocol {
            Protocol::Protobuf => self.normal.get(protocol),
            Protocol::Json => self
                .full_json
                .get_or_init(|| {
                    let data = &self.publication.data;
                    if !chorus_protocol::raw::is_valid_json(data) {
                        return None;
                    }
                    self.encode(json_string(data)?, false, protocol)
                })
                .clone(),
        }
    }

    fn encode(&self, data: Bytes, delta: bool, protocol: Protocol) -> Option<Bytes> {
        let publication = Publication {
            data,
            delta,
            ..self.publication.clone()
        };
        Encoded::publication(self.channel, publication).get(protocol)
    }
}

/// Recovered publications as a subscription receives them in its subscribe reply: unchanged
/// without delta mode; in delta mode each full (see [`full_for_reply`]). Centrifugo also deltas
/// between recovered publications; a full one is always decodable, and the reply is small
/// next to the live stream.
pub(crate) fn recovered_for(
    publications: Vec<Publication>,
    delta: bool,
    protocol: Protocol,
) -> Vec<Publication> {
    if !delta {
        return publications;
    }
    publications
        .into_iter()
        .map(|p| full_for_reply(p, protocol))
        .collect()
}

/// A publication as a delta-mode subscription receives it outside the live fan-out: full,
/// and over JSON its data as a JSON string. Left unchanged when the payload is not text (the
/// encoder then refuses it as for anyone).
pub(crate) fn full_for_reply(mut publication: Publication, protocol: Protocol) -> Publication {
    publication.delta = false;
    if protocol == Protocol::Json && chorus_protocol::raw::is_valid_json(&publication.data) {
        if let Some(data) = json_string(&publication.data) {
            publication.data = data;
        }
    }
    publication
}

/// Locks a channel's previous publication.
pub(crate) fn lock_prev(d: &DeltaChannel) -> std::sync::MutexGuard<'_, Prev> {
    sync::lock(&d.prev)
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
