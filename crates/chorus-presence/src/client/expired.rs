//! Remote expirations: entries of other nodes that a replica dropped, handed to the gateway
//! once even though every replica reports them.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chorus_proto::presence as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics as m;

/// How long a reported (node, channel, client) is remembered to drop the other replicas'
/// copies of the same report. Replicas expire a node within about one lease of each other.
const DEDUP_WINDOW: Duration = Duration::from_secs(60);

/// Why another node's entries went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryReason {
    /// The node sent nothing for a lease TTL (killed, hung or cut off).
    LeaseExpired,
    /// The node shut down and said Goodbye.
    Goodbye,
}

/// Entries of another node that are gone: push `leave` to local subscribers of each channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiration {
    /// The node whose entries went away.
    pub node: String,
    pub reason: ExpiryReason,
    /// (channel, client info) of every removed entry not reported before.
    pub entries: Vec<(String, pb::ClientInfo)>,
}

/// Receiver of [`Expiration`]s. Batches that find it full (1,024 queued) are dropped and
/// counted (`chorus_presence_client_expirations_dropped_total`).
#[derive(Debug)]
pub struct Expirations {
    rx: mpsc::Receiver<Expiration>,
}

impl Expirations {
    pub(crate) fn new(rx: mpsc::Receiver<Expiration>) -> Expirations {
        Expirations { rx }
    }

    /// The next expiration; `None` once the client is gone.
    pub async fn recv(&mut self) -> Option<Expiration> {
        self.rx.recv().await
    }

    /// The next expiration if one is queued.
    pub fn try_recv(&mut self) -> Option<Expiration> {
        self.rx.try_recv().ok()
    }
}

type Seen = (String, String, String);

#[derive(Debug, Default)]
struct Recent {
    seen: HashSet<Seen>,
    order: VecDeque<(Instant, Seen)>,
}

/// Filters out entries already reported by another replica, then queues the rest.
#[derive(Debug)]
pub(crate) struct Dedup {
    recent: Mutex<Recent>,
    tx: mpsc::Sender<Expiration>,
}

impl Dedup {
    pub(crate) fn new(tx: mpsc::Sender<Expiration>) -> Dedup {
        Dedup {
            recent: Mutex::new(Recent::default()),
            tx,
        }
    }

    pub(crate) fn deliver(&self, expired: pb::Expired) {
        let reason = match pb::expired::Reason::try_from(expired.reason) {
            Ok(pb::expired::Reason::Goodbye) => ExpiryReason::Goodbye,
            _ => ExpiryReason::LeaseExpired,
        };
        let now = Instant::now();
        let entries: Vec<(String, pb::ClientInfo)> = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            while let Some((at, _)) = recent.order.front() {
                if now.saturating_duration_since(*at) < DEDUP_WINDOW {
                    break;
                }
                if let Some((_, key)) = recent.order.pop_front() {
                    recent.seen.remove(&key);
                }
            }
            expired
                .entries
                .into_iter()
                .filter_map(|e| {
                    let info = e.info?;
                    let key = (expired.node.clone(), e.channel.clone(), info.client.clone());
                    if recent.seen.insert(key.clone()) {
                        recent.order.push_back((now, key));
                        Some((e.channel, info))
                    } else {
                        None
                    }
                })
                .collect()
        };
        if entries.is_empty() {
            return;
        }
        metrics::counter!(m::CLIENT_EXPIRED_ENTRIES).increment(entries.len() as u64);
        let batch = Expiration {
            node: expired.node,
            reason,
            entries,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(batch) {
            metrics::counter!(m::CLIENT_EXPIRATIONS_DROPPED).increment(1);
        }
    }
}
