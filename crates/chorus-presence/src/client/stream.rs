//! One endpoint's stream task: connect, snapshot, batches, heartbeats, reconnect.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::retry::log_failure;
use chorus_proto::presence as pb;
use chorus_proto::presence::node_message::Kind as Out;
use chorus_proto::presence::service_message::Kind as In;
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::{Inner, Key};
use crate::metrics as m;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Outbound messages buffered ahead of the HTTP/2 stream.
const OUTBOUND: usize = 16;
/// How long a Goodbye waits for the replica to close the stream.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// Runs the endpoint's stream until `cancel`.
pub(super) async fn run(inner: Arc<Inner>, i: usize, cancel: CancellationToken) {
    let mut failures: u32 = 0;
    let url = inner.endpoints[i].url.clone();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let mut session = Session::new(&inner, i);
        let end = session.run(&cancel).await;
        session.down();
        match end {
            End::Shutdown => return,
            End::Lost(reason) => {
                if session.synced {
                    failures = 0;
                    tracing::warn!(endpoint = %url, %reason, "presence stream lost; reconnecting");
                } else if log_failure(failures) {
                    tracing::error!(
                        endpoint = %url,
                        %reason,
                        failures = failures + 1,
                        "presence service unreachable; retrying with backoff"
                    );
                } else {
                    tracing::debug!(endpoint = %url, %reason, "presence stream failed");
                }
            }
        }
        let cap = inner.config.reconnect_backoff_max.max(BACKOFF_MIN);
        let exp = BACKOFF_MIN
            .saturating_mul(1u32 << failures.min(10))
            .min(cap);
        let delay = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

enum End {
    Shutdown,
    Lost(String),
}

struct Session<'a> {
    inner: &'a Inner,
    i: usize,
    /// Per-stream message counter (Heartbeat, Deltas, last snapshot chunk).
    seq: u64,
    /// (stream seq, write_seq it covers) awaiting Ack.
    pending: VecDeque<(u64, u64)>,
    /// Stream seq of the snapshot's last chunk.
    snapshot_seq: u64,
    /// write_seq covered by what was sent so far.
    sent_write_seq: u64,
    synced: bool,
}

impl<'a> Session<'a> {
    fn new(inner: &'a Inner, i: usize) -> Session<'a> {
        Session {
            inner,
            i,
            seq: 0,
            pending: VecDeque::new(),
            snapshot_seq: 0,
            sent_write_seq: 0,
            synced: false,
        }
    }

    /// Marks the stream down: nothing is tracked for it until the next snapshot.
    fn down(&mut self) {
        let ep = &self.inner.endpoints[self.i];
        ep.synced.store(false, Ordering::Release);
        self.inner.local().dirty[self.i] = None;
        metrics::gauge!(m::CLIENT_SYNCED, "endpoint" => ep.url.clone()).set(0.0);
    }

    fn next_seq(&mut self, covers: u64) -> u64 {
        self.seq += 1;
        self.pending.push_back((self.seq, covers));
        self.seq
    }

    async fn run(&mut self, cancel: &CancellationToken) -> End {
        let inner = self.inner;
        let ep = &inner.endpoints[self.i];
        let (tx, rx) = mpsc::channel::<pb::NodeMessage>(OUTBOUND);
        let hello = pb::NodeMessage {
            kind: Some(Out::Hello(pb::Hello {
                node: inner.config.node.clone(),
                session: inner.session.clone(),
            })),
        };
        if tx.send(hello).await.is_err() {
            return End::Lost("outbound closed".into());
        }
        let mut rpc = ep.rpc.clone();
        let handshake = inner.config.connect_timeout + Duration::from_secs(1);
        let call = tokio::select! {
            _ = cancel.cancelled() => return End::Shutdown,
            r = tokio::time::timeout(handshake, rpc.sync(ReceiverStream::new(rx))) => r,
        };
        let mut inbound: Streaming<pb::ServiceMessage> = match call {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return End::Lost(format!("{:?} {}", status.code(), status.message()))
            }
            Err(_) => return End::Lost("no answer to Hello in time".into()),
        };
        let welcome = tokio::select! {
            _ = cancel.cancelled() => return End::Shutdown,
            r = tokio::time::timeout(handshake, inbound.message()) => r,
        };
        let welcome = match welcome {
            Ok(Ok(Some(pb::ServiceMessage {
                kind: Some(In::Welcome(w)),
            }))) => w,
            Ok(Err(status)) => {
                return End::Lost(format!("{:?} {}", status.code(), status.message()))
            }
            _ => return End::Lost("expected Welcome".into()),
        };
        let heartbeat = Duration::from_millis(welcome.heartbeat_interval_ms.max(10));
        // The replica acks every heartbeat: silence this long means it is gone.
        let dead_after = (heartbeat * 2).max(Duration::from_secs(1));

        // Snapshot, and start tracking changes for this stream in the same critical section.
        let (entries, snap_write_seq) = {
            let mut local = inner.local();
            local.dirty[self.i] = Some(HashSet::new());
            let entries: Vec<pb::Entry> = local
                .entries
                .iter()
                .map(|(k, info)| pb::Entry {
                    channel: k.channel.to_string(),
                    info: Some(info.clone()),
                })
                .collect();
            (entries, local.write_seq)
        };
        let mut chunks: Vec<Vec<pb::Entry>> = Vec::new();
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            chunks.push(entries.by_ref().take(inner.config.max_batch).collect());
        }
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let last = chunks.len() - 1;
        for (n, chunk) in chunks.into_iter().enumerate() {
            let is_last = n == last;
            let seq = if is_last {
                self.snapshot_seq = self.next_seq(snap_write_seq);
                self.snapshot_seq
            } else {
                0
            };
            let msg = pb::NodeMessage {
                kind: Some(Out::Snapshot(pb::SnapshotChunk {
                    entries: chunk,
                    last: is_last,
                    seq,
                })),
            };
            if tx.send(msg).await.is_err() {
                return End::Lost("stream closed while sending the snapshot".into());
            }
        }
        self.sent_write_seq = snap_write_seq;

        let mut flush = tokio::time::interval(inner.config.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent = Instant::now();
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    return self.goodbye(&tx, &mut inbound).await;
                }
                msg = inbound.message() => {
                    last_heard = Instant::now();
                    match msg {
                        Ok(Some(msg)) => self.on_message(msg),
                        Ok(None) => return End::Lost("replica ended the stream".into()),
                        Err(status) => {
                            return End::Lost(format!("{:?} {}", status.code(), status.message()))
                        }
                    }
                }
                _ = flush.tick() => {
                    if let Err(end) = self.flush(&tx).await {
                        return end;
                    }
                    let now = Instant::now();
                    if now.saturating_duration_since(last_sent) >= heartbeat {
                        let seq = self.next_seq(self.sent_write_seq);
                        let msg = pb::NodeMessage {
                            kind: Some(Out::Heartbeat(pb::Heartbeat { seq })),
                        };
                        if tx.send(msg).await.is_err() {
                            return End::Lost("stream closed".into());
                        }
                        last_sent = now;
                    }
                    if now.saturating_duration_since(last_heard) > dead_after {
                        return End::Lost(format!("replica silent for {dead_after:?}"));
                    }
                }
                _ = ep.flush_now.notified() => {
                    if let Err(end) = self.flush(&tx).await {
                        return end;
                    }
                }
            }
        }
    }

    fn on_message(&mut self, msg: pb::ServiceMessage) {
        let ep = &self.inner.endpoints[self.i];
        match msg.kind {
            Some(In::Ack(ack)) => {
                let mut covered = None;
                while let Some(&(seq, write_seq)) = self.pending.front() {
                    if seq > ack.seq {
                        break;
                    }
                    covered = Some(write_seq);
                    self.pending.pop_front();
                }
                if let Some(write_seq) = covered {
                    ep.acked.send_if_modified(|a| {
                        if write_seq > *a {
                            *a = write_seq;
                            true
                        } else {
                            false
                        }
                    });
                }
                if !self.synced && ack.seq >= self.snapshot_seq {
                    self.synced = true;
                    ep.synced.store(true, Ordering::Release);
                    metrics::gauge!(m::CLIENT_SYNCED, "endpoint" => ep.url.clone()).set(1.0);
                    metrics::counter!(m::CLIENT_CONNECTS, "endpoint" => ep.url.clone())
                        .increment(1);
                    tracing::info!(endpoint = %ep.url, "presence stream synced");
                }
            }
            Some(In::Expired(expired)) => self.inner.expired.deliver(expired),
            Some(In::Welcome(_)) | None => {}
        }
    }

    /// Sends the dirty keys as `Deltas` batches of at most `max_batch` operations.
    async fn flush(&mut self, tx: &mpsc::Sender<pb::NodeMessage>) -> Result<(), End> {
        let (ops, write_seq) = {
            let mut local = self.inner.local();
            let Some(dirty) = local.dirty[self.i].as_mut() else {
                return Ok(());
            };
            if dirty.is_empty() {
                return Ok(());
            }
            let keys: HashSet<Key> = std::mem::take(dirty);
            let ops: Vec<pb::Delta> = keys
                .into_iter()
                .map(|k| pb::Delta {
                    op: Some(match local.entries.get(&k) {
                        Some(info) => pb::delta::Op::Add(pb::Entry {
                            channel: k.channel.to_string(),
                            info: Some(info.clone()),
                        }),
                        None => pb::delta::Op::Remove(pb::Removal {
                            channel: k.channel.to_string(),
                            client: k.client.to_string(),
                        }),
                    }),
                })
                .collect();
            (ops, local.write_seq)
        };
        let total = ops.len();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let batch: Vec<pb::Delta> = ops.by_ref().take(self.inner.config.max_batch).collect();
            // Only the last batch covers every change up to `write_seq`.
            let covers = if ops.peek().is_none() {
                write_seq
            } else {
                self.sent_write_seq
            };
            let seq = self.next_seq(covers);
            let msg = pb::NodeMessage {
                kind: Some(Out::Deltas(pb::Deltas { seq, deltas: batch })),
            };
            if tx.send(msg).await.is_err() {
                return Err(End::Lost("stream closed".into()));
            }
        }
        self.sent_write_seq = write_seq;
        metrics::counter!(m::CLIENT_DELTAS_SENT).increment(total as u64);
        Ok(())
    }

    async fn goodbye(
        &mut self,
        tx: &mpsc::Sender<pb::NodeMessage>,
        inbound: &mut Streaming<pb::ServiceMessage>,
    ) -> End {
        if !self.inner.goodbye.load(Ordering::Acquire) {
            return End::Shutdown;
        }
        // Changes made while the gateway drained (its connections leaving) go out as deltas
        // first: only entries still present at Goodbye are reported to the other gateways as
        // expired — the others' leaves were already announced by the gateway itself.
        if self.flush(tx).await.is_err() {
            return End::Shutdown;
        }
        let msg = pb::NodeMessage {
            kind: Some(Out::Goodbye(pb::Goodbye {})),
        };
        if tx.send(msg).await.is_ok() {
            // The replica ends the stream once the entries are dropped.
            let _ = tokio::time::timeout(GOODBYE_WAIT, async {
                while let Ok(Some(msg)) = inbound.message().await {
                    self.on_message(msg);
                }
            })
            .await;
        }
        End::Shutdown
    }
}
