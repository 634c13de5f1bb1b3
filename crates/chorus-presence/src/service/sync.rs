//! `Sync`: one gateway's presence stream.
//!
//! Protocol (docs/presence.md has the full contract):
//! 1. `Hello{node, session}` first (within [`HELLO_TIMEOUT`]); it binds the stream to the
//!    node. A newer stream of the same node replaces an older one (closed with ABORTED).
//!    The service answers `Welcome{lease_ttl_ms, heartbeat_interval_ms, replica}`.
//! 2. `SnapshotChunk`s up to one with `last`; then the node's previous entries are replaced
//!    atomically and `Ack{seq}` is sent. Until then the node's old entries (from an earlier
//!    stream, under its lease) stay as they were.
//! 3. `Deltas{seq, ops}` — checked whole, then applied in order, then `Ack{seq}`.
//!    `Heartbeat{seq}` — `Ack{seq}`. Every message renews the node's lease. Every `seq` must
//!    be greater than the previous one.
//! 4. `Goodbye` — the node's entries are dropped at once, the other nodes told, the stream
//!    ends OK.
//!
//! Anything else — a missing field, a name too long, an entry naming another node, a client
//! id of another node, a seq going backwards, a message over the size limit — ends the stream
//! with INVALID_ARGUMENT, PERMISSION_DENIED, FAILED_PRECONDITION, RESOURCE_EXHAUSTED or
//! OUT_OF_RANGE and a message saying what was wrong; nothing of the offending message is
//! applied, and no other node's entries are touched. The node's own entries stay under its
//! lease, as for any broken stream.

use std::sync::Arc;

use chorus_proto::presence as pb;
use chorus_proto::presence::node_message::Kind as In;
use chorus_proto::presence::service_message::Kind as Out;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Response, Status, Streaming};

use super::{Peer, Shared, SyncItem};
use crate::config::{HELLO_TIMEOUT, MAX_INFO_LEN, MAX_NAME_LEN, MAX_NODE_LEN, SYNC_QUEUE};
use crate::metrics as m;
use crate::model::{EntryIn, NoEvents, NodeId, Op, Refusal};

/// The `Sync` RPC: reads `Hello`, registers the stream and spawns its reader.
pub(super) async fn sync(
    shared: &Arc<Shared>,
    mut inbound: Streaming<pb::NodeMessage>,
) -> Result<Response<ReceiverStream<SyncItem>>, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))?
        .map_err(inbound_error)?;
    let hello = match first {
        Some(pb::NodeMessage {
            kind: Some(In::Hello(hello)),
        }) => hello,
        Some(_) => {
            return Err(refused(
                Status::invalid_argument("the first message of a Sync stream must be Hello"),
                "invalid",
            ))
        }
        None => return Err(Status::cancelled("stream ended before Hello")),
    };
    if hello.node.is_empty() || hello.node.len() > MAX_NODE_LEN {
        return Err(refused(
            Status::invalid_argument(format!("Hello.node must be 1 to {MAX_NODE_LEN} bytes")),
            "invalid",
        ));
    }
    if hello.session.len() > MAX_NODE_LEN {
        return Err(refused(
            Status::invalid_argument(format!(
                "Hello.session must be at most {MAX_NODE_LEN} bytes"
            )),
            "invalid",
        ));
    }

    let (tx, rx) = mpsc::channel(SYNC_QUEUE);
    let cancel = CancellationToken::new();
    let stream = shared.next_id();
    let node = {
        let mut state = shared.write();
        let node = state.model.node(&hello.node, Instant::now());
        let peer = Peer {
            stream,
            tx: tx.clone(),
            cancel: cancel.clone(),
        };
        if let Some(old) = state.peers.insert(node, peer) {
            old.close(
                Status::aborted(format!(
                    "replaced by a newer stream of node {:?}",
                    hello.node
                )),
                "replaced",
            );
        }
        state.publish_gauges();
        node
    };
    let welcome = pb::Welcome {
        lease_ttl_ms: shared.config.lease_ttl.as_millis() as u64,
        heartbeat_interval_ms: shared.config.heartbeat_interval().as_millis() as u64,
        replica: shared.replica.clone(),
    };
    let _ = tx.try_send(Ok(pb::ServiceMessage {
        kind: Some(Out::Welcome(welcome)),
    }));
    tracing::info!(node = %hello.node, session = %hello.session, stream, "gateway stream opened");

    let mut reader = Reader {
        shared: Arc::clone(shared),
        node,
        name: hello.node,
        stream,
        tx,
        snapshot: Vec::new(),
        snapshot_len: 0,
        synced: false,
        last_seq: 0,
    };
    shared.tasks.spawn(async move {
        reader.run(inbound, cancel).await;
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

fn refused(status: Status, reason: &'static str) -> Status {
    metrics::counter!(m::STREAMS_CLOSED, "reason" => reason).increment(1);
    status
}

/// A transport or decoding error of the inbound stream, as the status the node is told.
fn inbound_error(status: Status) -> Status {
    match status.code() {
        // prost decoding errors surface as INTERNAL: they are the sender's fault.
        Code::Internal | Code::Unknown => {
            Status::invalid_argument(format!("malformed message: {}", status.message()))
        }
        _ => status,
    }
}

enum Flow {
    Continue,
    Done,
}

struct Reader {
    shared: Arc<Shared>,
    node: NodeId,
    name: String,
    stream: u64,
    tx: mpsc::Sender<SyncItem>,
    /// Chunks of the snapshot being received.
    snapshot: Vec<Vec<pb::Entry>>,
    snapshot_len: usize,
    /// A snapshot was applied on this stream.
    synced: bool,
    last_seq: u64,
}

impl Reader {
    async fn run(&mut self, mut inbound: Streaming<pb::NodeMessage>, cancel: CancellationToken) {
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.shared.cancel.cancelled() => break,
                next = inbound.message() => next,
            };
            match next {
                Ok(Some(msg)) => match self.handle(msg) {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Done) => break,
                    Err(status) => {
                        tracing::warn!(node = %self.name, code = ?status.code(), error = %status.message(), "gateway stream refused");
                        let _ = self.tx.try_send(Err(status));
                        break;
                    }
                },
                Ok(None) => {
                    tracing::info!(node = %self.name, "gateway stream ended without Goodbye; entries kept under the lease");
                    break;
                }
                Err(status) => {
                    let status = inbound_error(status);
                    match status.code() {
                        Code::Cancelled | Code::Unavailable => {
                            tracing::info!(node = %self.name, error = %status.message(), "gateway stream lost; entries kept under the lease");
                        }
                        _ => {
                            tracing::warn!(node = %self.name, code = ?status.code(), error = %status.message(), "gateway stream refused");
                            metrics::counter!(m::STREAMS_CLOSED, "reason" => "invalid")
                                .increment(1);
                            let _ = self.tx.try_send(Err(status));
                        }
                    }
                    break;
                }
            }
        }
        let mut state = self.shared.write();
        if self.is_current(&state) {
            state.peers.remove(&self.node);
        }
        state.publish_gauges();
    }

    fn ack(&self, seq: u64) -> Result<(), Status> {
        let state = self.shared.read();
        match state.peers.get(&self.node) {
            Some(peer) if peer.stream == self.stream => {
                peer.send(Out::Ack(pb::Ack { seq }));
                Ok(())
            }
            _ => Err(Status::aborted("stream replaced")),
        }
    }

    fn next_seq(&mut self, seq: u64) -> Result<(), Status> {
        if seq <= self.last_seq {
            return Err(refused(
                Status::invalid_argument(format!(
                    "seq {seq} is not greater than the previous seq {}",
                    self.last_seq
                )),
                "invalid",
            ));
        }
        self.last_seq = seq;
        Ok(())
    }

    fn handle(&mut self, msg: pb::NodeMessage) -> Result<Flow, Status> {
        let now = Instant::now();
        match msg.kind {
            None => Err(refused(
                Status::invalid_argument("empty NodeMessage"),
                "invalid",
            )),
            Some(In::Hello(_)) => Err(refused(
                Status::invalid_argument("Hello sent twice"),
                "invalid",
            )),
            Some(In::Heartbeat(h)) => {
                self.next_seq(h.seq)?;
                self.touch(now)?;
                self.ack(h.seq)?;
                Ok(Flow::Continue)
            }
            Some(In::Snapshot(chunk)) => {
                for e in &chunk.entries {
                    self.check_entry(e)?;
                }
                self.snapshot_len += chunk.entries.len();
                if self.snapshot_len > self.shared.config.max_node_entries {
                    return Err(refused(
                        Status::resource_exhausted(format!(
                            "a node may hold at most {} entries",
                            self.shared.config.max_node_entries
                        )),
                        "limit",
                    ));
                }
                self.snapshot.push(chunk.entries);
                if !chunk.last {
                    self.touch(now)?;
                    return Ok(Flow::Continue);
                }
                self.next_seq(chunk.seq)?;
                let chunks = std::mem::take(&mut self.snapshot);
                self.snapshot_len = 0;
                self.apply_snapshot(&chunks, now)?;
                self.synced = true;
                self.ack(chunk.seq)?;
                Ok(Flow::Continue)
            }
            Some(In::Deltas(d)) => {
                if !self.snapshot.is_empty() {
                    return Err(refused(
                        Status::invalid_argument("Deltas inside an unfinished snapshot"),
                        "invalid",
                    ));
                }
                if !self.synced {
                    return Err(refused(
                        Status::failed_precondition("a Snapshot must come before Deltas"),
                        "invalid",
                    ));
                }
                self.next_seq(d.seq)?;
                let mut ops = Vec::with_capacity(d.deltas.len());
                for delta in &d.deltas {
                    ops.push(self.check_delta(delta)?);
                }
                self.apply_deltas(&ops, now)?;
                self.ack(d.seq)?;
                Ok(Flow::Continue)
            }
            Some(In::Goodbye(_)) => {
                let mut state = self.shared.write();
                if !self.is_current(&state) {
                    return Err(Status::aborted("stream replaced"));
                }
                let n = state.drop_node(self.node, pb::expired::Reason::Goodbye);
                state.publish_gauges();
                metrics::counter!(m::GOODBYES).increment(1);
                tracing::info!(node = %self.name, entries = n, "gateway said goodbye");
                Ok(Flow::Done)
            }
        }
    }

    /// Whether this stream is still the node's current one (not replaced or closed).
    fn is_current(&self, state: &super::State) -> bool {
        state
            .peers
            .get(&self.node)
            .is_some_and(|p| p.stream == self.stream)
    }

    fn touch(&self, now: Instant) -> Result<(), Status> {
        let mut state = self.shared.write();
        if !self.is_current(&state) {
            return Err(Status::aborted("stream replaced"));
        }
        state.model.touch(self.node, now);
        Ok(())
    }

    fn check_info<'a>(
        &self,
        channel: &'a str,
        info: Option<&'a pb::ClientInfo>,
    ) -> Result<EntryIn<'a>, Status> {
        let invalid = |what: String| refused(Status::invalid_argument(what), "invalid");
        if channel.is_empty() || channel.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "entry channel must be 1 to {MAX_NAME_LEN} bytes"
            )));
        }
        let Some(info) = info else {
            return Err(invalid(format!("entry of channel {channel:?} has no info")));
        };
        if info.client.is_empty() || info.client.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "entry client must be 1 to {MAX_NAME_LEN} bytes"
            )));
        }
        if info.user.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "entry user must be at most {MAX_NAME_LEN} bytes"
            )));
        }
        if info.conn_info.len() > MAX_INFO_LEN || info.chan_info.len() > MAX_INFO_LEN {
            return Err(invalid(format!(
                "conn_info and chan_info must be at most {MAX_INFO_LEN} bytes each"
            )));
        }
        if !info.node.is_empty() && info.node != self.name {
            return Err(refused(
                Status::permission_denied(format!(
                    "entry names node {:?}; this stream belongs to node {:?}",
                    info.node, self.name
                )),
                "permission",
            ));
        }
        Ok(EntryIn {
            channel,
            user: &info.user,
            client: &info.client,
            conn_info: &info.conn_info,
            chan_info: &info.chan_info,
        })
    }

    fn check_entry<'a>(&self, e: &'a pb::Entry) -> Result<EntryIn<'a>, Status> {
        self.check_info(&e.channel, e.info.as_ref())
    }

    fn check_delta<'a>(&self, d: &'a pb::Delta) -> Result<Op<'a>, Status> {
        match &d.op {
            Some(pb::delta::Op::Add(e)) => Ok(Op::Add(self.check_entry(e)?)),
            Some(pb::delta::Op::Remove(r)) => {
                if r.channel.is_empty()
                    || r.channel.len() > MAX_NAME_LEN
                    || r.client.is_empty()
                    || r.client.len() > MAX_NAME_LEN
                {
                    return Err(refused(
                        Status::invalid_argument(format!(
                            "removal channel and client must be 1 to {MAX_NAME_LEN} bytes"
                        )),
                        "invalid",
                    ));
                }
                Ok(Op::Remove {
                    channel: &r.channel,
                    client: &r.client,
                })
            }
            None => Err(refused(
                Status::invalid_argument("Delta without op"),
                "invalid",
            )),
        }
    }

    fn refusal(&self, r: Refusal) -> Status {
        match r {
            Refusal::ForeignClient { .. } => {
                refused(Status::permission_denied(r.to_string()), "permission")
            }
            Refusal::UserMismatch { .. } => {
                refused(Status::invalid_argument(r.to_string()), "invalid")
            }
            Refusal::TooManyEntries { .. } => {
                refused(Status::resource_exhausted(r.to_string()), "limit")
            }
        }
    }

    fn apply_snapshot(&self, chunks: &[Vec<pb::Entry>], now: Instant) -> Result<(), Status> {
        let mut entries = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
        for e in chunks.iter().flatten() {
            entries.push(self.check_entry(e)?);
        }
        let mut state = self.shared.write();
        if !self.is_current(&state) {
            return Err(Status::aborted("stream replaced"));
        }
        state
            .model
            .check(self.node, entries.iter().map(|e| Op::Add(*e)), true)
            .map_err(|r| self.refusal(r))?;
        state.model.touch(self.node, now);
        let ready = self.shared.ready();
        let super::State {
            model, watchers, ..
        } = &mut *state;
        if ready {
            model.replace_node(self.node, &entries, &mut watchers.sink());
        } else {
            // Warm-up: nobody watches yet, and the entries are restored, not new.
            model.replace_node(self.node, &entries, &mut NoEvents);
        }
        watchers.prune();
        state.publish_gauges();
        drop(state);
        metrics::counter!(m::SNAPSHOTS).increment(1);
        tracing::info!(node = %self.name, entries = entries.len(), "snapshot applied");
        Ok(())
    }

    fn apply_deltas(&self, ops: &[Op<'_>], now: Instant) -> Result<(), Status> {
        let mut state = self.shared.write();
        if !self.is_current(&state) {
            return Err(Status::aborted("stream replaced"));
        }
        state
            .model
            .check(self.node, ops.iter().copied(), false)
            .map_err(|r| self.refusal(r))?;
        state.model.touch(self.node, now);
        let super::State {
            model, watchers, ..
        } = &mut *state;
        let n = model.apply(self.node, ops.iter().copied(), &mut watchers.sink());
        watchers.prune();
        state.publish_gauges();
        drop(state);
        metrics::counter!(m::DELTAS_APPLIED).increment(n as u64);
        Ok(())
    }
}
