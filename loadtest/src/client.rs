//! One client connection: the handshake (`handshake`), then a read loop that answers pings,
//! records deliveries and resubscribes with recovery, and a writer task that sends pongs,
//! resubscribes and — when the connection is a publisher — publications on schedule.
//! Frames are interpreted by `adapter` only.

pub mod adapter;
pub mod handshake;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_protocol::{
    encode_command, Command, Protocol, Publication, PublishRequest, SubscribeResult,
};
use fastwebsockets::{Frame, OpCode, Payload};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::net::Target;
use crate::recovery::{SubState, SubscribeOutcome};
use crate::stats::{decode_payload, encode_payload, ConnReport, Counter, Shared};
use adapter::Event;
use handshake::{frame_of, handshake, HandshakeError, Opened, Ws};

/// Where and how one connection runs.
#[derive(Debug, Clone)]
pub struct ConnPlan {
    pub id: usize,
    pub room: usize,
    pub slot: u32,
    pub channel: String,
    pub token: String,
    pub protocol: Protocol,
    /// Reconnect (with recovery) when the connection drops before the end of the run.
    pub reconnect: bool,
}

/// When client publishers send. The connection in room `r` with slot `m < publishers`
/// sends its publication `j` as global publication `k = r + rooms·m + j·rooms·publishers`,
/// scheduled at `start_ns + k·period_ns`, until `end_ns`: one fixed interleaving of all
/// publishers at the total rate `1 / period`. Connections with `m ≥ publishers` only listen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub start_ns: u64,
    pub end_ns: u64,
    pub period_ns: f64,
    pub rooms: u64,
    pub publishers: u64,
    pub payload_bytes: usize,
}

impl Schedule {
    /// The scheduled time of publication `j` of (room, slot), if before the end.
    pub fn at(&self, room: u64, slot: u64, j: u64) -> Option<u64> {
        if slot >= self.publishers {
            return None;
        }
        let k = room + self.rooms * slot + j * self.rooms * self.publishers;
        let at = self.start_ns + (k as f64 * self.period_ns) as u64;
        (at < self.end_ns).then_some(at)
    }
}

const FIRST_PUBLISH_ID: u32 = 3;
/// Resubscribes (after an unsubscribe push) use ids from here up; publish ids stay below.
const FIRST_RESUBSCRIBE_ID: u32 = 0xF000_0000;
/// Pause before retrying a resubscribe that got an error reply.
const RESUBSCRIBE_RETRY: Duration = Duration::from_millis(50);
/// First and largest pause between reconnect attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// The first few failures of each kind are printed in full; the rest only counted.
const PRINTED_FAILURES: u64 = 3;

/// Everything one connection task needs.
pub struct ConnCtx {
    pub target: Target,
    pub source: Option<IpAddr>,
    pub plan: ConnPlan,
    pub shared: Arc<Shared>,
    /// `true` once subscribed, `false` when the handshake failed (sent exactly once).
    pub ready: mpsc::UnboundedSender<bool>,
    pub schedule: watch::Receiver<Option<Schedule>>,
    pub stop: watch::Receiver<bool>,
    /// The first handshake must be done by then (`--connect-timeout`).
    pub deadline: tokio::time::Instant,
}

/// How one connection session ended.
enum Ended {
    Stopped,
    Dropped,
}

/// Per-connection state that outlives a reconnect.
struct ConnState {
    report: ConnReport,
    sub: SubState,
    scheduled: Vec<u64>,
    /// Pending resubscribe id (an answer to anything else is ignored) and retry time.
    resub_id: Option<u32>,
    resub_retry: Option<tokio::time::Instant>,
    next_resub_id: u32,
}

/// Runs one connection until `stop`. Returns `None` when it never got subscribed.
pub async fn run(ctx: ConnCtx, permit: OwnedSemaphorePermit) -> Option<ConnReport> {
    let ConnCtx {
        target,
        source,
        plan,
        shared,
        ready,
        schedule,
        mut stop,
        deadline,
    } = ctx;
    let started = Instant::now();
    let mut st = ConnState {
        report: ConnReport {
            room: plan.room,
            ..Default::default()
        },
        sub: SubState::default(),
        scheduled: Vec::new(),
        resub_id: None,
        resub_retry: None,
        next_resub_id: FIRST_RESUBSCRIBE_ID,
    };
    let opened = tokio::select! {
        r = tokio::time::timeout_at(deadline, handshake(&target, source, &plan, &st.sub)) => {
            r.unwrap_or(Err(HandshakeError::Timeout))
        }
        _ = stop.changed() => Err(HandshakeError::Stopped),
    };
    drop(permit);
    let mut opened = match opened {
        Ok(v) => v,
        Err(e) => {
            let counter = if e.at_subscribe() {
                Counter::SubscribeFailures
            } else {
                Counter::ConnectFailures
            };
            if shared.bump(counter) < PRINTED_FAILURES {
                crate::progress::log(&format!("conn {}: {e}", plan.id));
            }
            shared.failed(e.reason());
            let _ = ready.send(false);
            return None;
        }
    };
    shared.connected(started.elapsed().as_nanos() as u64);
    let _ = ready.send(true);
    // Publications sent so far by this connection (survives reconnects).
    let published = Arc::new(AtomicU64::new(0));
    loop {
        let (ws, res, pending) = opened;
        on_subscribe_reply(&plan, &shared, &mut st, &res);
        let ended = session(
            ws,
            pending,
            &plan,
            &shared,
            &mut st,
            schedule.clone(),
            stop.clone(),
            published.clone(),
        )
        .await;
        if matches!(ended, Ended::Stopped) || !plan.reconnect || *stop.borrow() {
            break;
        }
        match reconnect(&target, source, &plan, &shared, &mut st, &mut stop).await {
            Some(v) => opened = v,
            None => break,
        }
    }
    Some(st.report)
}

/// Reconnects with backoff until it works or the run stops.
async fn reconnect(
    target: &Target,
    source: Option<IpAddr>,
    plan: &ConnPlan,
    shared: &Shared,
    st: &mut ConnState,
    stop: &mut watch::Receiver<bool>,
) -> Option<Opened> {
    let now = shared.clock.now_ns();
    st.sub.on_disconnect(now);
    shared.lost_at(now);
    st.resub_id = None;
    st.resub_retry = None;
    let mut pause = RECONNECT_MIN;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return None,
        }
        shared.add(Counter::ReconnectAttempts, 1);
        let r = tokio::select! {
            r = handshake(target, source, plan, &st.sub) => r,
            _ = stop.changed() => return None,
        };
        match r {
            Ok(v) => {
                shared.add(Counter::Reconnected, 1);
                return Some(v);
            }
            Err(_) => {
                shared.add(Counter::ReconnectFailures, 1);
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// One WebSocket session: a writer task (pongs, resubscribes, scheduled publications) and
/// the read loop.
#[allow(clippy::too_many_arguments)]
async fn session(
    ws: Ws,
    pending: Vec<Event>,
    plan: &ConnPlan,
    shared: &Arc<Shared>,
    st: &mut ConnState,
    schedule: watch::Receiver<Option<Schedule>>,
    mut stop: watch::Receiver<bool>,
    published: Arc<AtomicU64>,
) -> Ended {
    let (mut rd, wr) = ws.split(tokio::io::split);
    let (tx, rx) = mpsc::unbounded_channel::<Frame<'static>>();
    let writer = tokio::spawn(writer(
        wr,
        rx,
        plan.clone(),
        shared.clone(),
        schedule,
        stop.clone(),
        published,
    ));
    for e in pending {
        on_event(plan, shared, &tx, e, st);
    }
    flush(shared, plan.id, &mut st.scheduled);
    let ended = loop {
        let obligated = tx.clone();
        let mut send_fn = move |f: Frame<'_>| {
            let owned = Frame::new(f.fin, f.opcode, None, Payload::Owned(f.payload.to_vec()));
            std::future::ready(obligated.send(owned).map_err(|_| "writer gone"))
        };
        let retry_at = st.resub_retry;
        let retry = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break Ended::Stopped,
            _ = retry => {
                st.resub_retry = None;
                send_resubscribe(plan, shared, &tx, st);
                continue;
            }
            f = rd.read_frame::<_, &'static str>(&mut send_fn) => f,
        };
        match frame {
            Ok(f) if matches!(f.opcode, OpCode::Text | OpCode::Binary) => {
                match adapter::decode(plan.protocol, &f.payload) {
                    Ok(events) => {
                        for e in events {
                            on_event(plan, shared, &tx, e, st);
                        }
                    }
                    Err(_) => shared.add(Counter::BadFrames, 1),
                }
                flush(shared, plan.id, &mut st.scheduled);
            }
            Ok(f) if f.opcode == OpCode::Close => {
                shared.add(Counter::Disconnects, 1);
                break Ended::Dropped;
            }
            Ok(_) => {}
            Err(_) => {
                shared.add(Counter::Disconnects, 1);
                break Ended::Dropped;
            }
        }
    };
    drop(tx);
    writer.abort();
    ended
}

/// The write half: frames queued by the reader, and publications on schedule (once the
/// schedule is announced; never for listeners or with the HTTP API publisher).
async fn writer(
    mut wr: fastwebsockets::WebSocketWrite<
        tokio::io::WriteHalf<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
    >,
    mut rx: mpsc::UnboundedReceiver<Frame<'static>>,
    plan: ConnPlan,
    shared: Arc<Shared>,
    mut schedule: watch::Receiver<Option<Schedule>>,
    mut stop: watch::Receiver<bool>,
    published: Arc<AtomicU64>,
) {
    let mut sched: Option<Schedule> = *schedule.borrow_and_update();
    loop {
        let j = published.load(Relaxed);
        let next = sched.and_then(|s| Some((s, s.at(plan.room as u64, u64::from(plan.slot), j)?)));
        let tick = async {
            match next {
                Some((_, at)) => tokio::time::sleep_until(shared.clock.instant_at(at).into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            f = rx.recv() => match f {
                Some(f) => if wr.write_frame(f).await.is_err() { break },
                None => break,
            },
            _ = tick => {
                let Some((s, at)) = next else { break };
                let data = encode_payload(plan.slot, j, at, s.payload_bytes);
                let cmd = Command {
                    id: FIRST_PUBLISH_ID.wrapping_add(j as u32),
                    publish: Some(PublishRequest { channel: plan.channel.clone(), data: data.into() }),
                    ..Default::default()
                };
                published.store(j + 1, Relaxed);
                let Ok(bytes) = encode_command(plan.protocol, &cmd) else { break };
                if wr.write_frame(frame_of(plan.protocol, bytes)).await.is_err() { break }
            }
            r = schedule.changed(), if sched.is_none() => {
                if r.is_err() { break }
                sched = *schedule.borrow_and_update();
            }
            _ = stop.changed() => break,
        }
    }
}

fn flush(shared: &Shared, id: usize, scheduled: &mut Vec<u64>) {
    shared.record_deliveries(id, shared.clock.now_ns(), scheduled);
    scheduled.clear();
}

/// A publication (live or recovered): position, loss tracker, latency.
fn on_publication(shared: &Shared, st: &mut ConnState, p: &Publication) {
    st.sub.on_publication(p);
    match decode_payload(&p.data) {
        Some((publisher, seq, sched)) => {
            st.report.streams.entry(publisher).or_default().observe(seq);
            st.scheduled.push(sched);
        }
        None => shared.add(Counter::BadFrames, 1),
    }
}

/// A successful subscribe reply (first subscribe, resubscribe or reconnect).
fn on_subscribe_reply(plan: &ConnPlan, shared: &Shared, st: &mut ConnState, res: &SubscribeResult) {
    let now = shared.clock.now_ns();
    if let SubscribeOutcome::Resubscribed {
        recovered,
        waited_ns,
    } = st.sub.on_subscribed(res, now)
    {
        shared.resubscribed(recovered, waited_ns, now);
    }
    shared.add(
        Counter::RecoveredPublications,
        res.publications.len() as u64,
    );
    for p in &res.publications {
        on_publication(shared, st, p);
    }
    flush(shared, plan.id, &mut st.scheduled);
}

fn send_resubscribe(
    plan: &ConnPlan,
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Frame<'static>>,
    st: &mut ConnState,
) {
    let id = st.next_resub_id;
    st.next_resub_id = st.next_resub_id.wrapping_add(1).max(FIRST_RESUBSCRIBE_ID);
    st.resub_id = Some(id);
    let cmd = Command {
        id,
        subscribe: Some(st.sub.subscribe_request(&plan.channel)),
        ..Default::default()
    };
    shared.add(Counter::ResubscribesSent, 1);
    if let Ok(bytes) = encode_command(plan.protocol, &cmd) {
        let _ = tx.send(frame_of(plan.protocol, bytes));
    }
}

fn on_event(
    plan: &ConnPlan,
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Frame<'static>>,
    event: Event,
    st: &mut ConnState,
) {
    match event {
        Event::Ping => {
            shared.add(Counter::Pings, 1);
            if let Ok(pong) = encode_command(plan.protocol, &Command::default()) {
                let _ = tx.send(frame_of(plan.protocol, pong));
            }
        }
        Event::Publication { publication, .. } => on_publication(shared, st, &publication),
        // Only the answer to the pending resubscribe counts; stale ones are dropped below.
        Event::Subscribed { id, result } if st.resub_id == Some(id) => {
            st.resub_id = None;
            on_subscribe_reply(plan, shared, st, &result);
        }
        Event::Error { id, .. } if st.resub_id == Some(id) => {
            // E.g. the broker is still down: try again shortly.
            st.resub_id = None;
            shared.add(Counter::ResubscribeErrors, 1);
            st.resub_retry = Some(tokio::time::Instant::now() + RESUBSCRIBE_RETRY);
        }
        Event::Subscribed { .. } => {}
        Event::Error { id, .. } | Event::Ok { id } if id >= FIRST_RESUBSCRIBE_ID => {}
        Event::Ok { id } if id >= FIRST_PUBLISH_ID => shared.published_ok(plan.room, plan.slot),
        Event::Error { id, .. } if id >= FIRST_PUBLISH_ID => shared.add(Counter::PublishErrors, 1),
        Event::Unsubscribed { channel, code } => {
            shared.add(Counter::UnsubscribePushes, 1);
            let now = shared.clock.now_ns();
            if channel == plan.channel && st.sub.on_unsubscribe(code, now) {
                shared.add(Counter::ResubscribePushes, 1);
                shared.lost_at(now);
                send_resubscribe(plan, shared, tx, st);
            }
        }
        Event::Disconnect { .. } => shared.add(Counter::DisconnectPushes, 1),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_interleaves_publishers_at_the_total_rate() {
        // 2 rooms, 2 of 3 members publish, 1 ms apart overall.
        let s = Schedule {
            start_ns: 1_000,
            end_ns: 1_000 + 8_000_000,
            period_ns: 1_000_000.0,
            rooms: 2,
            publishers: 2,
            payload_bytes: 10,
        };
        let times = |room, slot| -> Vec<u64> {
            (0..10)
                .map_while(|j| s.at(room, slot, j))
                .map(|t| (t - 1_000) / 1_000_000)
                .collect()
        };
        assert_eq!(times(0, 0), [0, 4]);
        assert_eq!(times(1, 0), [1, 5]);
        assert_eq!(times(0, 1), [2, 6]);
        assert_eq!(times(1, 1), [3, 7]);
        assert!(times(0, 2).is_empty(), "a listener never publishes");
    }
}
