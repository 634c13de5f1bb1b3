//! One subscription of one connection to one channel, as the hub sees it.
//!
//! A subscriber starts *buffering*: live deliveries are held back while the subscribe reply
//! (with its stream position or recovered publications) is prepared. [`Subscriber::go_live`]
//! then releases the buffer after the reply, skipping what the reply already covered, so the
//! client sees neither a gap nor a duplicate. Positioned subscribers check that offsets advance
//! by exactly one within one epoch; on a gap they are *lost*: the client gets unsubscribe 2500
//! and resubscribes with recovery.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chorus_protocol::codes::UNSUBSCRIBE_INSUFFICIENT_STATE;
use chorus_protocol::Protocol;

use super::delta::DeltaFrames;
use super::encoded::Encoded;
use crate::metrics;
use crate::outbound::{Outbound, Pushed, Round};
use crate::sync;

#[derive(Debug)]
enum Phase {
    Buffering(Vec<Buffered>),
    /// Delta subscribers: the hub-local number of the last publication this subscriber
    /// received live (`hub::delta::Prev::seq`); 0 = none yet or unknown (dropped), so the next
    /// one goes full. Kept in the variant: it costs no byte (the enum stays the size of the
    /// buffer's `Vec`).
    Live(u64),
    Lost,
}

#[derive(Debug)]
struct Buffered {
    /// 0 for joins/leaves and publications without history.
    offset: u64,
    epoch: Arc<str>,
    message: Bytes,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Last offset delivered (or covered by the subscribe reply).
    last_offset: u64,
    epoch: Arc<str>,
}

/// The epoch of a subscriber not live yet: one shared empty string, not an allocation per
/// subscriber.
pub(crate) fn no_epoch() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

#[derive(Debug)]
pub struct Subscriber {
    pub(crate) client_id: Arc<str>,
    pub(crate) channel: Arc<str>,
    pub(crate) protocol: Protocol,
    pub(crate) outbound: Arc<Outbound>,
    /// Receives join/leave pushes.
    pub(crate) push_join_leave: bool,
    /// Offsets are checked for gaps.
    pub(crate) positioned: bool,
    /// Delta compression negotiated: publications go through `hub::delta`.
    pub(crate) delta: bool,
    state: Mutex<State>,
}

/// What a delivery did, for the caller's bookkeeping.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Sent,
    Buffered,
    Dropped,
    /// The subscriber just lost its position (unsubscribe 2500 queued).
    Lost,
}

impl Subscriber {
    pub(crate) fn new(
        client_id: Arc<str>,
        channel: Arc<str>,
        protocol: Protocol,
        outbound: Arc<Outbound>,
        push_join_leave: bool,
        positioned: bool,
    ) -> Self {
        Subscriber {
            client_id,
            channel,
            protocol,
            outbound,
            push_join_leave,
            positioned,
            delta: false,
            state: Mutex::new(State {
                phase: Phase::Buffering(Vec::new()),
                last_offset: 0,
                epoch: no_epoch(),
            }),
        }
    }

    /// Marks the subscription delta-mode (before it joins the hub).
    pub(crate) fn with_delta(mut self, delta: bool) -> Self {
        self.delta = delta;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        sync::lock(&self.state)
    }

    pub(crate) fn is_lost(&self) -> bool {
        matches!(self.lock().phase, Phase::Lost)
    }

    /// Delivers a push: a publication (`offset` 0 = no history) or, with offset 0, an event.
    pub(crate) fn deliver_publication(
        &self,
        offset: u64,
        epoch: &Arc<str>,
        push: &Encoded,
    ) -> Delivery {
        self.deliver(offset, epoch, push, None)
    }

    /// As [`Subscriber::deliver_publication`], writing through the broadcast's flush pass.
    pub(crate) fn deliver_in_round(
        &self,
        offset: u64,
        epoch: &Arc<str>,
        push: &Encoded,
        round: &mut Round,
    ) -> Delivery {
        self.deliver(offset, epoch, push, Some(round))
    }

    fn deliver(
        &self,
        offset: u64,
        epoch: &Arc<str>,
        push: &Encoded,
        round: Option<&mut Round>,
    ) -> Delivery {
        let Some(message) = push.get(self.protocol) else {
            // The payload cannot be carried by this client's encoding.
            self.outbound
                .close(chorus_protocol::codes::DISCONNECT_INAPPROPRIATE_PROTOCOL.into());
            return Delivery::Dropped;
        };
        let mut st = self.lock();
        self.deliver_locked(&mut st, offset, epoch, message, round)
    }

    /// Queues `message` by the subscription's phase: dropped when lost, buffered while the
    /// subscribe reply is prepared, delivered when live.
    fn deliver_locked(
        &self,
        st: &mut State,
        offset: u64,
        epoch: &Arc<str>,
        message: Bytes,
        round: Option<&mut Round>,
    ) -> Delivery {
        match &mut st.phase {
            Phase::Lost => Delivery::Dropped,
            Phase::Buffering(buf) => {
                buf.push(Buffered {
                    offset,
                    epoch: epoch.clone(),
                    message,
                });
                Delivery::Buffered
            }
            Phase::Live(_) => self.deliver_live(st, offset, epoch, message, round),
        }
    }

    /// Delivers a publication of local number `seq` to a delta subscriber: the delta frame
    /// when it received the previous publication live, else the delta-mode full frame.
    pub(crate) fn deliver_delta(
        &self,
        offset: u64,
        epoch: &Arc<str>,
        seq: u64,
        frames: &DeltaFrames<'_>,
        round: Option<&mut Round>,
    ) -> Delivery {
        let mut st = self.lock();
        let received = match st.phase {
            Phase::Live(seq) => seq,
            _ => 0,
        };
        let Some(message) = frames.frame(self.protocol, received) else {
            drop(st);
            self.outbound
                .close(chorus_protocol::codes::DISCONNECT_INAPPROPRIATE_PROTOCOL.into());
            return Delivery::Dropped;
        };
        let delivery = self.deliver_locked(&mut st, offset, epoch, message, round);
        // Only a publication that surely reached the queue live can be the next one's base.
        if let Phase::Live(received) = &mut st.phase {
            *received = if delivery == Delivery::Sent { seq } else { 0 };
        }
        delivery
    }

    /// Delivers a join/leave push (only to subscribers that receive them); `no_epoch` is an
    /// empty epoch shared by the whole broadcast.
    pub(crate) fn deliver_event(&self, push: &Encoded, no_epoch: &Arc<str>) -> Delivery {
        if !self.push_join_leave {
            return Delivery::Dropped;
        }
        self.deliver_publication(0, no_epoch, push)
    }

    fn deliver_live(
        &self,
        st: &mut State,
        offset: u64,
        epoch: &Arc<str>,
        message: Bytes,
        round: Option<&mut Round>,
    ) -> Delivery {
        if offset > 0 {
            let same_epoch = st.epoch.is_empty() || *st.epoch == **epoch;
            if same_epoch && offset <= st.last_offset {
                // Already delivered (e.g. covered by recovery, or a redelivery): never twice.
                return Delivery::Dropped;
            }
            if self.positioned && (!same_epoch || offset != st.last_offset + 1) {
                st.phase = Phase::Lost;
                self.push_lost();
                return Delivery::Lost;
            }
            st.last_offset = offset;
            if st.epoch.is_empty() {
                st.epoch = epoch.clone();
            }
        }
        let Some(round) = round else {
            return if self.outbound.push(message) {
                Delivery::Sent
            } else {
                Delivery::Dropped
            };
        };
        match self.outbound.push_fanout(message) {
            Pushed::Dropped => Delivery::Dropped,
            Pushed::Queued => Delivery::Sent,
            Pushed::Schedule => {
                round.scheduled.push(self.outbound.clone());
                Delivery::Sent
            }
        }
    }

    fn push_lost(&self) {
        metrics::insufficient_state();
        let push = Encoded::unsubscribe(&self.channel, UNSUBSCRIBE_INSUFFICIENT_STATE);
        if let Some(m) = push.get(self.protocol) {
            self.outbound.push(m);
        }
    }

    /// Whether this subscriber may have missed publications up to `top`: its last offset is
    /// lower, its epoch differs, or it has no known position yet.
    pub(crate) fn is_behind(&self, top: &chorus_protocol::StreamPosition) -> bool {
        let st = self.lock();
        match st.phase {
            Phase::Lost => false,
            Phase::Buffering(_) => false,
            Phase::Live(_) => {
                if st.epoch.is_empty() {
                    return top.offset > 0;
                }
                *st.epoch != *top.epoch || st.last_offset < top.offset
            }
        }
    }

    /// Marks the subscription lost from outside (e.g. the broker lost deliveries).
    pub(crate) fn mark_lost(&self) -> bool {
        let mut st = self.lock();
        if matches!(st.phase, Phase::Lost) {
            return false;
        }
        st.phase = Phase::Lost;
        drop(st);
        self.push_lost();
        true
    }

    /// Ends buffering: the reply covering the stream up to `offset` in `epoch` has been
    /// queued. Buffered items are released in order, dropping publications the reply covered.
    pub(crate) fn go_live(&self, offset: u64, epoch: &str) {
        let mut st = self.lock();
        let Phase::Buffering(buf) = std::mem::replace(&mut st.phase, Phase::Live(0)) else {
            return;
        };
        st.last_offset = offset;
        st.epoch = if epoch.is_empty() {
            no_epoch()
        } else {
            Arc::from(epoch)
        };
        for item in buf {
            if matches!(st.phase, Phase::Lost) {
                break;
            }
            if item.offset == 0 {
                self.outbound.push(item.message);
            } else {
                self.deliver_live(&mut st, item.offset, &item.epoch, item.message, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Taken;
    use chorus_protocol::{decode_replies, Publication};

    fn sub(positioned: bool) -> (Subscriber, Arc<Outbound>) {
        let out = Arc::new(Outbound::new(1 << 20));
        let s = Subscriber::new(
            Arc::from("c1"),
            Arc::from("ch"),
            Protocol::Json,
            out.clone(),
            true,
            positioned,
        );
        (s, out)
    }

    fn publication(offset: u64) -> Encoded {
        Encoded::publication(
            "ch",
            Publication {
                data: bytes::Bytes::from(format!("{{\"n\":{offset}}}")),
                offset,
                ..Default::default()
            },
        )
    }

    fn drained(out: &Outbound) -> Vec<chorus_protocol::Reply> {
        let mut all = Vec::new();
        while let Some(Taken::Messages(m)) = out.try_take(1000, usize::MAX) {
            for b in m {
                all.extend(decode_replies(Protocol::Json, &b).unwrap_or_default());
            }
        }
        all
    }

    fn offsets(replies: &[chorus_protocol::Reply]) -> Vec<u64> {
        replies
            .iter()
            .filter_map(|r| r.push.as_ref()?.publication.as_ref().map(|p| p.offset))
            .collect()
    }

    #[test]
    fn delta_bookkeeping_costs_no_byte() {
        assert_eq!(
            std::mem::size_of::<Phase>(),
            std::mem::size_of::<Vec<Buffered>>()
        );
    }

    #[test]
    fn buffer_released_after_reply_without_duplicates() {
        let (s, out) = sub(true);
        let e: Arc<str> = Arc::from("EPOCH");
        for o in 4..=7 {
            assert_eq!(
                s.deliver_publication(o, &e, &publication(o)),
                Delivery::Buffered
            );
        }
        assert!(drained(&out).is_empty());
        // The reply covered up to offset 5.
        s.go_live(5, "EPOCH");
        assert_eq!(offsets(&drained(&out)), vec![6, 7]);
        assert_eq!(
            s.deliver_publication(8, &e, &publication(8)),
            Delivery::Sent
        );
        assert_eq!(
            s.deliver_publication(8, &e, &publication(8)),
            Delivery::Dropped
        );
        assert_eq!(offsets(&drained(&out)), vec![8]);
    }

    #[test]
    fn gap_makes_positioned_subscriber_lost() {
        let (s, out) = sub(true);
        let e: Arc<str> = Arc::from("EPOCH");
        s.go_live(1, "EPOCH");
        assert_eq!(
            s.deliver_publication(3, &e, &publication(3)),
            Delivery::Lost
        );
        let replies = drained(&out);
        let unsub = replies[0].push.as_ref().and_then(|p| p.unsubscribe.clone());
        assert_eq!(unsub.map(|u| u.code), Some(2500));
        assert_eq!(
            s.deliver_publication(4, &e, &publication(4)),
            Delivery::Dropped
        );
        assert!(s.is_lost());
    }

    #[test]
    fn epoch_change_makes_positioned_subscriber_lost() {
        let (s, _out) = sub(true);
        s.go_live(3, "OLD");
        let e: Arc<str> = Arc::from("NEW");
        assert_eq!(
            s.deliver_publication(1, &e, &publication(1)),
            Delivery::Lost
        );
    }

    #[test]
    fn unpositioned_subscriber_tolerates_gaps_but_not_duplicates() {
        let (s, out) = sub(false);
        let e: Arc<str> = Arc::from("E");
        s.go_live(0, "");
        s.deliver_publication(1, &e, &publication(1));
        s.deliver_publication(3, &e, &publication(3));
        s.deliver_publication(3, &e, &publication(3));
        assert_eq!(offsets(&drained(&out)), vec![1, 3]);
    }
}
