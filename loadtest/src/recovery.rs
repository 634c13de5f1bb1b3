//! Position tracking of one subscription and the recovery decisions of a client that, like
//! the Centrifugo SDKs, resubscribes with `recover: true` after a server `unsubscribe` push
//! with code ≥ 2500 ("insufficient state" and the other resubscribe codes) or after a
//! reconnect.

use chorus_protocol::{Publication, SubscribeRequest, SubscribeResult};

/// Unsubscribe push codes from this value up mean "resubscribe" (protocol v2 SDK rule).
pub const RESUBSCRIBE_FROM_CODE: u32 = 2500;

/// What a subscribe reply meant for the recovery counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// The first subscribe of this subscription (no recovery asked).
    Initial,
    /// A resubscribe with `recover: true`; `recovered` as the server said, and the time
    /// since the unsubscribe push (or the disconnect) that triggered it, when known.
    Resubscribed {
        recovered: bool,
        waited_ns: Option<u64>,
    },
}

/// Stream position (offset, epoch) of one subscription as seen by the client, plus the
/// pending resubscribe, if any.
#[derive(Debug, Default, Clone)]
pub struct SubState {
    pub offset: u64,
    pub epoch: String,
    /// Whether a subscribe reply has been seen (a later subscribe asks for recovery).
    pub subscribed: bool,
    /// Since when (ns, load-generator clock) the subscription is gone and a resubscribe is
    /// due or in flight.
    pub lost_since_ns: Option<u64>,
}

impl SubState {
    /// The subscribe command to send: plain the first time, `recover: true` with the last
    /// seen offset and epoch afterwards.
    pub fn subscribe_request(&self, channel: &str) -> SubscribeRequest {
        let mut req = SubscribeRequest {
            channel: channel.to_string(),
            ..Default::default()
        };
        if self.subscribed {
            req.recover = true;
            req.offset = self.offset;
            req.epoch = self.epoch.clone();
        }
        req
    }

    /// A successful subscribe reply: takes its epoch and offset (the stream top after the
    /// recovered publications) and classifies it. The caller feeds `res.publications` to the
    /// loss tracker (and through [`SubState::on_publication`]).
    pub fn on_subscribed(&mut self, res: &SubscribeResult, now_ns: u64) -> SubscribeOutcome {
        let outcome = if self.subscribed {
            SubscribeOutcome::Resubscribed {
                recovered: res.recovered,
                waited_ns: self.lost_since_ns.map(|t| now_ns.saturating_sub(t)),
            }
        } else {
            SubscribeOutcome::Initial
        };
        self.subscribed = true;
        self.lost_since_ns = None;
        if !res.epoch.is_empty() {
            self.epoch = res.epoch.clone();
        }
        // A new epoch restarts offsets: take the reply's position as it is.
        self.offset = res.offset;
        for p in &res.publications {
            self.on_publication(p);
        }
        outcome
    }

    /// A publication (live or recovered) moves the position forward.
    pub fn on_publication(&mut self, p: &Publication) {
        if p.offset > self.offset {
            self.offset = p.offset;
        }
    }

    /// A server `unsubscribe` push for this channel. Returns whether to resubscribe now
    /// (code ≥ 2500 and no resubscribe already pending).
    pub fn on_unsubscribe(&mut self, code: u32, now_ns: u64) -> bool {
        if code < RESUBSCRIBE_FROM_CODE || self.lost_since_ns.is_some() {
            return false;
        }
        self.lost_since_ns = Some(now_ns);
        true
    }

    /// The connection dropped: the subscription is gone from then on (kept if already lost
    /// earlier, so the wait counts from the first loss).
    pub fn on_disconnect(&mut self, now_ns: u64) {
        if self.lost_since_ns.is_none() {
            self.lost_since_ns = Some(now_ns);
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stats::{decode_payload, encode_payload, Stream};

    fn publication(offset: u64, seq: u64) -> Publication {
        Publication {
            data: encode_payload(0, seq, 1, 40).into(),
            offset,
            ..Default::default()
        }
    }

    fn reply(epoch: &str, offset: u64, recovered: bool, pubs: Vec<Publication>) -> SubscribeResult {
        SubscribeResult {
            epoch: epoch.into(),
            offset,
            recovered,
            recoverable: true,
            publications: pubs,
            ..Default::default()
        }
    }

    #[test]
    fn first_subscribe_is_plain_then_recover_with_last_position() {
        let mut s = SubState::default();
        let r = s.subscribe_request("chat:1");
        assert!(!r.recover);
        assert_eq!((r.offset, r.epoch.as_str()), (0, ""));
        assert_eq!(
            s.on_subscribed(&reply("ep1", 7, false, vec![]), 10),
            SubscribeOutcome::Initial
        );
        assert_eq!((s.offset, s.epoch.as_str()), (7, "ep1"));
        s.on_publication(&publication(8, 0));
        s.on_publication(&publication(9, 1));
        // Publications without a position (offset 0) do not move it back.
        s.on_publication(&publication(0, 2));
        let r = s.subscribe_request("chat:1");
        assert!(r.recover);
        assert_eq!(
            (r.channel.as_str(), r.offset, r.epoch.as_str()),
            ("chat:1", 9, "ep1")
        );
    }

    #[test]
    fn unsubscribe_codes_and_pending_resubscribe() {
        let mut s = SubState::default();
        s.on_subscribed(&reply("e", 0, false, vec![]), 0);
        assert!(
            !s.on_unsubscribe(2000, 5),
            "server unsubscribe: no resubscribe"
        );
        assert!(s.lost_since_ns.is_none());
        assert!(s.on_unsubscribe(2500, 100));
        assert!(!s.on_unsubscribe(2500, 150), "already pending");
        assert!(!s.on_unsubscribe(3000, 160), "already pending");
        // A disconnect while pending keeps the first loss time.
        s.on_disconnect(170);
        assert_eq!(s.lost_since_ns, Some(100));
        let out = s.on_subscribed(&reply("e", 3, true, vec![]), 1_100);
        assert_eq!(
            out,
            SubscribeOutcome::Resubscribed {
                recovered: true,
                waited_ns: Some(1_000)
            }
        );
        assert!(s.lost_since_ns.is_none());
        assert!(
            s.on_unsubscribe(2502, 2_000),
            "a new loss resubscribes again"
        );
    }

    #[test]
    fn recovered_publications_fill_the_gap_in_the_tracker() {
        let mut s = SubState::default();
        let mut stream = Stream::default();
        s.on_subscribed(&reply("e", 0, false, vec![]), 0);
        for (off, seq) in [(1, 0), (2, 1)] {
            let p = publication(off, seq);
            s.on_publication(&p);
            stream.observe(decode_payload(&p.data).unwrap().1);
        }
        assert!(s.on_unsubscribe(2500, 10));
        let r = s.subscribe_request("c");
        assert_eq!((r.offset, r.epoch.as_str(), r.recover), (2, "e", true));
        // Offsets 3 and 4 were missed; the reply recovers them and reports top 4.
        let res = reply("e", 4, true, vec![publication(3, 2), publication(4, 3)]);
        let out = s.on_subscribed(&res, 30);
        for p in &res.publications {
            stream.observe(decode_payload(&p.data).unwrap().1);
        }
        assert_eq!(
            out,
            SubscribeOutcome::Resubscribed {
                recovered: true,
                waited_ns: Some(20)
            }
        );
        assert_eq!(s.offset, 4);
        // Live publication 5 continues the stream: no loss, dup or reorder.
        stream.observe(4);
        assert_eq!((stream.unique, stream.dups, stream.reorders), (5, 0, 0));
    }

    #[test]
    fn epoch_change_takes_the_new_position() {
        let mut s = SubState::default();
        s.on_subscribed(&reply("old", 50, false, vec![]), 0);
        s.on_disconnect(1_000);
        let r = s.subscribe_request("c");
        assert_eq!((r.offset, r.epoch.as_str()), (50, "old"));
        // History lost (e.g. Redis restarted without persistence): new epoch, not recovered.
        let out = s.on_subscribed(&reply("new", 0, false, vec![]), 4_000);
        assert_eq!(
            out,
            SubscribeOutcome::Resubscribed {
                recovered: false,
                waited_ns: Some(3_000)
            }
        );
        assert_eq!((s.offset, s.epoch.as_str()), (0, "new"));
        s.on_publication(&publication(1, 0));
        assert_eq!(s.offset, 1);
    }
}
