//! The hub: sharded maps of this node's connections and of channel → local subscribers, and
//! the fan-out.
//!
//! Fan-out looks a channel up in a dashmap shard, clones its `Arc`, releases the shard, then
//! walks the subscribers under the channel's read lock, enqueueing one shared `Bytes` per
//! subscriber. Nothing here awaits a client. The push is encoded once per protocol
//! ([`encoded::Encoded`]).

pub mod delta;
pub mod encoded;
pub mod join_leave;
pub mod subscriber;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chorus_protocol::{ClientInfo, Publication};
use dashmap::DashMap;
use tokio::time::Instant;

use crate::client::Client;
use crate::metrics;
use crate::outbound::Round;
use crate::sync;
use encoded::Encoded;
use join_leave::{Event, Gate, Offered};
use subscriber::{Delivery, Subscriber};

type Subs = HashMap<Arc<str>, Arc<Subscriber>>;

#[derive(Debug, Default)]
pub(crate) struct ChannelEntry {
    subs: RwLock<Subs>,
    /// `channel.join_leave_max_rate` state, created on the first join/leave.
    gate: Mutex<Option<Gate>>,
}

impl ChannelEntry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Subs> {
        sync::read(&self.subs)
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Subs> {
        sync::write(&self.subs)
    }
    fn gate(&self) -> std::sync::MutexGuard<'_, Option<Gate>> {
        sync::lock(&self.gate)
    }
}

#[derive(Default)]
pub struct Hub {
    /// By connection id. The ids are server-made UUIDs (no client picks a key here), so a
    /// fast seeded hash is safe; SipHash took 6 % of idle CPU when the timer wheel looked
    /// connections up (S1 profile).
    clients: DashMap<Arc<str>, Arc<Client>, foldhash::fast::RandomState>,
    users: DashMap<Arc<str>, users::UserConns>,
    channels: DashMap<Arc<str>, Arc<ChannelEntry>>,
    /// Serializes broker subscribe/unsubscribe per channel; the flag says "subscribed".
    broker_state: DashMap<Arc<str>, Arc<tokio::sync::Mutex<bool>>>,
    /// Channels with join/leave events waiting for their gate (see [`join_leave`]).
    join_leave_waiting: DashMap<Arc<str>, ()>,
    /// Where big broadcasts send their flush pass (the node's flusher task).
    flusher: std::sync::OnceLock<Flusher>,
    /// Previous publications of the channels with delta subscribers (see [`delta`]).
    delta: delta::DeltaChannels,
}

/// Rounds up to this many scheduled connections are flushed by the broadcasting task itself
/// (a small room's latency is one pass, no hand-over); bigger ones go to the flusher task, so
/// the fan-out loop and the writes run on both cores and publications that arrive meanwhile
/// pile into the same frames.
const INLINE_FLUSH_MAX: usize = 64;

/// The node's flusher task and the frame packing limits of its passes.
#[derive(Debug)]
pub struct Flusher {
    pub tx: tokio::sync::mpsc::UnboundedSender<Round>,
    /// `client.write_batch_max_messages`.
    pub max_messages: usize,
    /// `client.write_batch_max_bytes`.
    pub max_bytes: usize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients.len())
            .field("channels", &self.channels.len())
            .finish()
    }
}

impl Hub {
    // ----- connections -------------------------------------------------------------------

    /// Registers a new connection (before it authenticates).
    pub(crate) fn add_client(&self, client: Arc<Client>) {
        self.clients.insert(client.id_shared(), client);
    }

    /// Indexes an authenticated connection by its user (`client_id` is the connection's own
    /// shared id: no copy per connection).
    pub(crate) fn add_user(&self, user: Arc<str>, client_id: Arc<str>) {
        match self.users.entry(user) {
            dashmap::Entry::Occupied(mut e) => e.get_mut().insert(client_id),
            dashmap::Entry::Vacant(e) => {
                e.insert(users::UserConns::new(client_id));
            }
        }
    }

    pub(crate) fn remove_client(&self, id: &str, user: &Arc<str>) {
        self.clients.remove(id);
        // Under the entry's lock: the entry goes with its last connection.
        self.users.remove_if_mut(user, |_, conns| conns.remove(id));
    }

    pub(crate) fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients.get(id).map(|c| c.value().clone())
    }

    pub(crate) fn user_clients(&self, user: &str) -> Vec<Arc<Client>> {
        let Some(ids) = self.users.get(user).map(|conns| conns.ids()) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| self.clients.get(id).map(|c| c.clone()))
            .collect()
    }

    pub(crate) fn user_connection_count(&self, user: &str) -> usize {
        self.users.get(user).map(|s| s.len()).unwrap_or(0)
    }

    pub(crate) fn all_clients(&self) -> Vec<Arc<Client>> {
        self.clients.iter().map(|e| e.value().clone()).collect()
    }

    pub fn num_clients(&self) -> usize {
        self.clients.len()
    }

    pub fn num_users(&self) -> usize {
        self.users.len()
    }

    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Channels with broker subscription state (subscribed, or a subscribe/unsubscribe in
    /// flight); drops to 0 once nobody subscribes (tests and tools).
    pub fn num_broker_states(&self) -> usize {
        self.broker_state.len()
    }

    // ----- subscriptions -----------------------------------------------------------------

    /// Adds a subscriber (in its buffering phase). Returns false if the client already had
    /// one for this channel.
    /// The channel's name as the hub already holds it, else a new one: the subscribers of a
    /// room share one allocation of its name instead of one each.
    pub(crate) fn channel_name(&self, channel: &str) -> Arc<str> {
        match self.channels.get(channel) {
            Some(entry) => entry.key().clone(),
            None => Arc::from(channel),
        }
    }

    pub(crate) fn add_subscriber(&self, sub: Arc<Subscriber>) -> bool {
        // Counted before it is visible in `subs`: a fan-out that sees it finds the delta state.
        if sub.delta {
            self.delta.add(&sub.channel);
        }
        // Inserting under the shard's write lock orders this against `remove_channel_if_empty`.
        {
            let entry = self.channels.entry(sub.channel.clone()).or_default();
            let mut subs = entry.write();
            if subs.contains_key(&sub.client_id) {
                drop(subs);
                if sub.delta {
                    self.delta.remove(&sub.channel);
                }
                return false;
            }
            subs.insert(sub.client_id.clone(), sub);
        }
        metrics::subscriptions_changed(1);
        metrics::channels(self.channels.len());
        true
    }

    /// Removes the client's subscriber if it is `sub` (a newer one is left alone). Returns
    /// true when the channel has no local subscriber left.
    pub(crate) fn remove_subscriber(&self, sub: &Arc<Subscriber>) -> bool {
        let Some(entry) = self.channels.get(&sub.channel).map(|e| e.clone()) else {
            return true;
        };
        let mut subs = entry.write();
        if subs
            .get(&sub.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, sub))
        {
            subs.remove(&sub.client_id);
            metrics::subscriptions_changed(-1);
            if sub.delta {
                // After it left `subs` (see `add_subscriber`).
                self.delta.remove(&sub.channel);
            }
        }
        subs.is_empty()
    }

    /// Channels with delta subscribers on this node (each keeps its previous publication).
    pub fn num_delta_channels(&self) -> usize {
        self.delta.len()
    }

    /// Drops the channel entry if nobody is subscribed. Returns true if the channel has no
    /// local subscribers (entry gone).
    pub(crate) fn remove_channel_if_empty(&self, channel: &str) -> bool {
        if self
            .channels
            .remove_if(channel, |_, e| e.read().is_empty())
            .is_some()
        {
            metrics::channels(self.channels.len());
        }
        !self.channels.contains_key(channel)
    }

    pub fn has_subscribers(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|e| !e.read().is_empty())
    }

    pub(crate) fn broker_lock(&self, channel: &str) -> Arc<tokio::sync::Mutex<bool>> {
        if let Some(l) = self.broker_state.get(channel) {
            return l.clone();
        }
        self.broker_state
            .entry(Arc::from(channel))
            .or_default()
            .clone()
    }

    /// Forgets the broker lock of a channel nobody uses any more.
    pub(crate) fn forget_broker_lock(&self, channel: &str) {
        self.broker_state.remove_if(channel, |_, l| {
            Arc::strong_count(l) == 1 && l.try_lock().is_ok_and(|g| !*g)
        });
    }

    /// Channel → number of local subscribers.
    pub fn channel_counts(&self) -> HashMap<String, u32> {
        self.channels
            .iter()
            .filter_map(|e| {
                let n = e.value().read().len();
                (n > 0).then(|| (e.key().to_string(), u32::try_from(n).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    /// Subscribers of a channel (a snapshot).
    pub(crate) fn subscribers(&self, channel: &str) -> Vec<Arc<Subscriber>> {
        self.channels
            .get(channel)
            .map(|e| e.read().values().cloned().collect())
            .unwrap_or_default()
    }

    // ----- fan-out -----------------------------------------------------------------------

    /// Delivers a publication to every local subscriber of the channel. Its `delta` flag
    /// says "delta-compressible" and is never sent as such (see [`delta`]).
    pub fn broadcast_publication(&self, channel: &str, mut publication: Publication, epoch: &str) {
        let Some(entry) = self.channels.get(channel).map(|e| e.clone()) else {
            return;
        };
        let started = std::time::Instant::now();
        let offset = publication.offset;
        let compressible = std::mem::take(&mut publication.delta);
        let epoch: Arc<str> = Arc::from(epoch);
        let push = Encoded::publication(channel, publication);
        let subs = entry.read();
        if let Some(d) = self.delta.get(channel) {
            let round = self.broadcast_delta(channel, &subs, &d, &push, compressible, &epoch);
            drop(subs);
            let sent = round.1;
            self.finish_round(round.0);
            metrics::broadcast(sent, started.elapsed());
            return;
        }
        let mut sent = 0u64;
        let mut round = Round::default();
        for sub in subs.values() {
            if sub.deliver_in_round(offset, &epoch, &push, &mut round) == Delivery::Sent {
                sent += 1;
            }
        }
        drop(subs);
        self.finish_round(round);
        metrics::broadcast(sent, started.elapsed());
    }

    /// The fan-out of a channel with delta subscribers, under its `subs` read lock and its
    /// previous-publication lock (so every subscriber sees the same order of bases).
    fn broadcast_delta(
        &self,
        channel: &str,
        subs: &Subs,
        d: &delta::DeltaChannel,
        push: &Encoded,
        compressible: bool,
        epoch: &Arc<str>,
    ) -> (Round, u64) {
        let Some(publication) = push.carried_publication() else {
            return (Round::default(), 0);
        };
        let offset = publication.offset;
        let mut prev = delta::lock_prev(d);
        let frames =
            delta::DeltaFrames::new(channel, publication, push, &prev, compressible, epoch);
        let seq = prev.advance(publication.data.clone(), offset, epoch);
        let mut round = Round::default();
        let mut sent = 0u64;
        for sub in subs.values() {
            let delivery = if sub.delta {
                sub.deliver_delta(offset, epoch, seq, &frames, Some(&mut round))
            } else {
                sub.deliver_in_round(offset, epoch, push, &mut round)
            };
            if delivery == Delivery::Sent {
                sent += 1;
            }
        }
        (round, sent)
    }

    /// Installs the node's flusher (once).
    pub fn set_flusher(&self, flusher: Flusher) {
        let _ = self.flusher.set(flusher);
    }

    /// Runs a broadcast's flush pass: here for a small round, on the flusher task otherwise.
    ///
    /// (Tried: sharing a big round between the flusher and this task, so one publication's
    /// writes run on both cores. S2a p99 did not move (46.7–50.2 ms), and S2b fell from 495k
    /// to 380k deliveries/s at a 1.5 s p99: flushing at once packs fewer publications per
    /// frame.)
    fn finish_round(&self, round: Round) {
        if round.is_empty() {
            return;
        }
        let Some(f) = self.flusher.get() else {
            // No node around this hub (tests): the defaults of `client.write_batch_*`.
            return round.flush(64, 64 << 10);
        };
        let round = if round.len() > INLINE_FLUSH_MAX {
            match f.tx.send(round) {
                Ok(()) => return,
                Err(back) => back.0,
            }
        } else {
            round
        };
        round.flush(f.max_messages, f.max_bytes);
    }

    pub fn broadcast_join(&self, channel: &str, info: ClientInfo, max_rate: u32) {
        self.broadcast_join_leave(channel, Event::Join(info), max_rate);
    }

    pub fn broadcast_leave(&self, channel: &str, info: ClientInfo, max_rate: u32) {
        self.broadcast_join_leave(channel, Event::Leave(info), max_rate);
    }

    /// Delivers a join or leave to the local subscribers that receive them, through the
    /// channel's gate when `max_rate` > 0 (`channel.join_leave_max_rate`).
    fn broadcast_join_leave(&self, channel: &str, event: Event, max_rate: u32) {
        let Some(entry) = self.channels.get(channel).map(|e| e.clone()) else {
            return;
        };
        if max_rate == 0 {
            deliver_event(&entry, channel, event);
            return;
        }
        let now = Instant::now();
        // Events are delivered under the gate's lock, so they keep their order.
        let mut guard = entry.gate();
        let gate = guard.get_or_insert_with(|| Gate::new(max_rate, now));
        match gate.offer(event, max_rate, now) {
            Offered::Ready => {}
            Offered::Held => metrics::join_leave_coalesced("delayed", 1),
            Offered::Cancelled => metrics::join_leave_coalesced("cancelled", 2),
        }
        for e in gate.release(max_rate, now) {
            deliver_event(&entry, channel, e);
        }
        if gate.has_waiting() {
            self.join_leave_waiting.insert(Arc::from(channel), ());
        }
    }

    /// Releases waiting join/leave events the gates allow by now. The node calls this every
    /// [`join_leave::TICK`].
    pub(crate) fn release_join_leave(&self, max_rate: u32) {
        if self.join_leave_waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let channels: Vec<Arc<str>> = self
            .join_leave_waiting
            .iter()
            .map(|e| e.key().clone())
            .collect();
        for channel in channels {
            let Some(entry) = self.channels.get(&channel).map(|e| e.clone()) else {
                self.join_leave_waiting.remove(&channel);
                continue;
            };
            let mut guard = entry.gate();
            let Some(gate) = guard.as_mut() else {
                self.join_leave_waiting.remove(&channel);
                continue;
            };
            for e in gate.release(max_rate, now) {
                deliver_event(&entry, &channel, e);
            }
            if !gate.has_waiting() {
                self.join_leave_waiting.remove(&channel);
            }
        }
    }

    /// Marks subscribers that are behind `top` (or in another epoch, or whose position is
    /// unknown) lost: they get unsubscribe 2500 and recover.
    pub fn mark_behind_lost(&self, channel: &str, top: &chorus_protocol::StreamPosition) {
        for sub in self.subscribers(channel) {
            if sub.is_behind(top) {
                sub.mark_lost();
            }
        }
    }

    /// Marks every positioned subscriber of the channel lost (the broker may have missed
    /// deliveries): each gets unsubscribe 2500 and resubscribes with recovery.
    pub fn mark_channel_lost(&self, channel: &str) {
        for sub in self.subscribers(channel) {
            sub.mark_lost();
        }
    }
}

/// Encodes a join/leave once and enqueues it to the subscribers that receive them.
fn deliver_event(entry: &ChannelEntry, channel: &str, event: Event) {
    let (push, kind) = match event {
        Event::Join(info) => (Encoded::join(channel, info), metrics::MessageType::Join),
        Event::Leave(info) => (Encoded::leave(channel, info), metrics::MessageType::Leave),
    };
    let no_epoch = subscriber::no_epoch();
    let subs = entry.read();
    let mut sent = 0;
    for sub in subs.values() {
        if sub.deliver_event(&push, &no_epoch) == Delivery::Sent {
            sent += 1;
        }
    }
    metrics::client_sent(kind, sent);
}
