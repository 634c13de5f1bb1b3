//! One client connection: TCP connect from a chosen source address, WebSocket upgrade,
//! `connect` + `subscribe` in one frame, then a read loop that answers pings, records
//! deliveries and (with `--publish-via client`) a writer that publishes on schedule.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use chorus_protocol::{
    decode_replies, encode_command, join_frame, Command, ConnectRequest, Protocol, Publication,
    PublishRequest, Reply, SubscribeResult,
};
use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch};

use crate::recovery::{SubState, SubscribeOutcome};
use crate::stats::{decode_payload, encode_payload, ConnReport, Shared};

/// A parsed `ws://host:port/path` URL with its resolved address.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    pub path: String,
}

pub async fn parse_target(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("only ws:// URLs are supported: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let hostport = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(&hostport)
        .await?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| anyhow!("cannot resolve {hostport}"))?;
    Ok(Target {
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

pub type Ws = WebSocket<TokioIo<Upgraded>>;

/// TCP connect (bound to `source` with port 0 first) and WebSocket upgrade.
pub async fn open(
    target: &Target,
    source: Option<IpAddr>,
    protocol: Protocol,
) -> anyhow::Result<Ws> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = sock.connect(target.addr).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(target.path.as_str())
        .header("Host", target.authority.as_str())
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13");
    if protocol == Protocol::Protobuf {
        req = req.header("Sec-WebSocket-Protocol", "centrifuge-protobuf");
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
        .await
        .context("websocket upgrade")?;
    Ok(ws)
}

fn frame_of(protocol: Protocol, data: Bytes) -> Frame<'static> {
    let payload = Payload::Owned(data.to_vec());
    match protocol {
        Protocol::Json => Frame::text(payload),
        Protocol::Protobuf => Frame::binary(payload),
    }
}

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

/// When a client publisher sends: publication `j` of the connection in room `r` with slot
/// `m` is global publication `k = r + rooms * m + j * stride` (stride = rooms × members),
/// scheduled at `start_ns + k * period_ns`, until `end_ns`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start_ns: u64,
    pub end_ns: u64,
    pub period_ns: f64,
    pub rooms: u64,
    pub stride: u64,
    pub payload_bytes: usize,
}

const CONNECT_ID: u32 = 1;
const SUBSCRIBE_ID: u32 = 2;
const FIRST_PUBLISH_ID: u32 = 3;
/// Resubscribes (after an unsubscribe push) use ids from here up; publish ids stay below.
const FIRST_RESUBSCRIBE_ID: u32 = 0xF000_0000;
/// Pause before retrying a resubscribe that got an error reply.
const RESUBSCRIBE_RETRY: Duration = Duration::from_millis(50);
/// First and largest pause between reconnect attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// What a handshake yields: the socket, the subscribe result and frames that came along.
type Opened = (Ws, SubscribeResult, Vec<Vec<u8>>);

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
#[allow(clippy::too_many_arguments)]
pub async fn run(
    target: Target,
    source: Option<IpAddr>,
    plan: ConnPlan,
    shared: Arc<Shared>,
    permit: tokio::sync::OwnedSemaphorePermit,
    ready: mpsc::UnboundedSender<bool>,
    schedule: watch::Receiver<Option<Schedule>>,
    mut stop: watch::Receiver<bool>,
) -> Option<ConnReport> {
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
        r = handshake(&target, source, &plan, &st.sub) => r,
        _ = stop.changed() => Err(anyhow!("stopped during connect")),
    };
    drop(permit);
    let mut opened = match opened {
        Ok(v) => v,
        Err(e) => {
            let counter = if e.to_string().starts_with("subscribe") {
                &shared.subscribe_failures
            } else {
                &shared.connect_failures
            };
            if counter.fetch_add(1, Relaxed) < 3 {
                eprintln!("conn {}: {e:#}", plan.id);
            }
            let _ = ready.send(false);
            return None;
        }
    };
    if let Ok(mut h) = shared.handshake.lock() {
        h.record(started.elapsed().as_nanos() as u64);
    }
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
        let now = shared.clock.now_ns();
        st.sub.on_disconnect(now);
        shared.recovery.lost_at(now);
        st.resub_id = None;
        st.resub_retry = None;
        let mut pause = RECONNECT_MIN;
        let next = loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => break None,
            }
            shared.recovery.reconnect_attempts.fetch_add(1, Relaxed);
            let r = tokio::select! {
                r = handshake(&target, source, &plan, &st.sub) => r,
                _ = stop.changed() => break None,
            };
            match r {
                Ok(v) => break Some(v),
                Err(_) => {
                    shared.recovery.reconnect_failures.fetch_add(1, Relaxed);
                    pause = (pause * 2).min(RECONNECT_MAX);
                }
            }
        };
        match next {
            Some(v) => {
                shared.recovery.reconnected.fetch_add(1, Relaxed);
                opened = v;
            }
            None => break,
        }
    }
    Some(st.report)
}

/// One WebSocket session: a writer task (pongs, resubscribes, scheduled publications) and
/// the read loop.
#[allow(clippy::too_many_arguments)]
async fn session(
    ws: Ws,
    pending: Vec<Vec<u8>>,
    plan: &ConnPlan,
    shared: &Arc<Shared>,
    st: &mut ConnState,
    schedule: watch::Receiver<Option<Schedule>>,
    mut stop: watch::Receiver<bool>,
    published: Arc<AtomicU64>,
) -> Ended {
    let (mut rd, mut wr) = ws.split(tokio::io::split);
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame<'static>>();
    let writer_shared = shared.clone();
    let wplan = plan.clone();
    let mut wstop = stop.clone();
    let writer = tokio::spawn(async move {
        // Pongs and other replies flow from the first moment; publishing starts once the
        // schedule is published (never in API mode).
        let mut schedule = schedule;
        let mut sched: Option<Schedule> = *schedule.borrow_and_update();
        loop {
            let j = published.load(Relaxed);
            let next = sched.and_then(|s| {
                let k = wplan.room as u64 + s.rooms * u64::from(wplan.slot) + j * s.stride;
                let at = s.start_ns + (k as f64 * s.period_ns) as u64;
                (at < s.end_ns).then_some((s, at))
            });
            let tick = async {
                match next {
                    Some((_, at)) => {
                        tokio::time::sleep_until(writer_shared.clock.instant_at(at).into()).await
                    }
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
                    let data = encode_payload(wplan.slot, j, at, s.payload_bytes);
                    let cmd = Command {
                        id: FIRST_PUBLISH_ID.wrapping_add(j as u32),
                        publish: Some(PublishRequest { channel: wplan.channel.clone(), data: data.into() }),
                        ..Default::default()
                    };
                    published.store(j + 1, Relaxed);
                    let Ok(bytes) = encode_command(wplan.protocol, &cmd) else { break };
                    if wr.write_frame(frame_of(wplan.protocol, bytes)).await.is_err() { break }
                }
                r = schedule.changed(), if sched.is_none() => {
                    if r.is_err() { break }
                    sched = *schedule.borrow_and_update();
                }
                _ = wstop.changed() => break,
            }
        }
    });

    let handle = |data: &[u8], st: &mut ConnState| {
        let Ok(replies) = decode_replies(plan.protocol, data) else {
            shared.bad_frames.fetch_add(1, Relaxed);
            return;
        };
        for reply in replies {
            on_reply(plan, shared, &tx, reply, st);
        }
    };
    for f in pending {
        handle(&f, st);
    }
    flush(shared, plan.id, &mut st.scheduled);
    let ended = loop {
        let obligated = tx.clone();
        let mut send_fn = move |f: Frame<'_>| {
            let owned = Frame::new(f.fin, f.opcode, None, Payload::Owned(f.payload.to_vec()));
            let r = obligated.send(owned).map_err(|_| anyhow!("writer gone"));
            std::future::ready(r)
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
            f = rd.read_frame::<_, anyhow::Error>(&mut send_fn) => f,
        };
        match frame {
            Ok(f) if matches!(f.opcode, OpCode::Text | OpCode::Binary) => {
                handle(&f.payload, st);
                flush(shared, plan.id, &mut st.scheduled);
            }
            Ok(f) if f.opcode == OpCode::Close => {
                shared.disconnects.fetch_add(1, Relaxed);
                break Ended::Dropped;
            }
            Ok(_) => {}
            Err(_) => {
                shared.disconnects.fetch_add(1, Relaxed);
                break Ended::Dropped;
            }
        }
    };
    drop(tx);
    writer.abort();
    ended
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
        None => {
            shared.bad_frames.fetch_add(1, Relaxed);
        }
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
        shared.recovery.resubscribed(recovered, waited_ns, now);
    }
    shared
        .recovery
        .recovered_publications
        .fetch_add(res.publications.len() as u64, Relaxed);
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
    shared.recovery.resubscribes_sent.fetch_add(1, Relaxed);
    if let Ok(bytes) = encode_command(plan.protocol, &cmd) {
        let _ = tx.send(frame_of(plan.protocol, bytes));
    }
}

fn on_reply(
    plan: &ConnPlan,
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Frame<'static>>,
    reply: Reply,
    st: &mut ConnState,
) {
    if reply.is_ping() {
        shared.pings.fetch_add(1, Relaxed);
        if let Ok(pong) = encode_command(plan.protocol, &Command::default()) {
            let _ = tx.send(frame_of(plan.protocol, pong));
        }
        return;
    }
    if reply.id >= FIRST_RESUBSCRIBE_ID {
        if st.resub_id != Some(reply.id) {
            return;
        }
        st.resub_id = None;
        match (reply.error, reply.subscribe) {
            (None, Some(res)) => on_subscribe_reply(plan, shared, st, &res),
            _ => {
                // E.g. the broker is still down: try again shortly.
                shared.recovery.resubscribe_errors.fetch_add(1, Relaxed);
                st.resub_retry = Some(tokio::time::Instant::now() + RESUBSCRIBE_RETRY);
            }
        }
        return;
    }
    if reply.id >= FIRST_PUBLISH_ID {
        if reply.error.is_some() {
            shared.publish_errors.fetch_add(1, Relaxed);
        } else {
            shared.published_ok(plan.room, plan.slot);
        }
        return;
    }
    let Some(push) = reply.push else {
        return;
    };
    if let Some(u) = push.unsubscribe {
        shared.recovery.unsubscribe_pushes.fetch_add(1, Relaxed);
        if push.channel == plan.channel {
            let now = shared.clock.now_ns();
            if st.sub.on_unsubscribe(u.code, now) {
                shared.recovery.resubscribe_pushes.fetch_add(1, Relaxed);
                shared.recovery.lost_at(now);
                send_resubscribe(plan, shared, tx, st);
            }
        }
        return;
    }
    if let Some(p) = push.publication {
        on_publication(shared, st, &p);
    }
}

/// Opens the socket, sends `connect` and `subscribe` (with recovery after the first time)
/// in one frame and waits for both replies. Frames that arrived along with them are
/// returned for processing.
async fn handshake(
    target: &Target,
    source: Option<IpAddr>,
    plan: &ConnPlan,
    sub: &SubState,
) -> anyhow::Result<Opened> {
    let mut ws = open(target, source, plan.protocol).await?;
    let connect = Command {
        id: CONNECT_ID,
        connect: Some(ConnectRequest {
            token: plan.token.clone(),
            name: "chorus-load".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let subscribe = Command {
        id: SUBSCRIBE_ID,
        subscribe: Some(sub.subscribe_request(&plan.channel)),
        ..Default::default()
    };
    let frame = join_frame(
        plan.protocol,
        &[
            encode_command(plan.protocol, &connect)?,
            encode_command(plan.protocol, &subscribe)?,
        ],
    );
    ws.write_frame(frame_of(plan.protocol, frame)).await?;
    let mut extra = Vec::new();
    let (mut connected, mut subscribed) = (false, None);
    while !(connected && subscribed.is_some()) {
        let f = ws.read_frame().await?;
        match f.opcode {
            OpCode::Text | OpCode::Binary => {}
            OpCode::Close => bail!("closed by server during handshake"),
            _ => continue,
        }
        let mut keep = false;
        for r in decode_replies(plan.protocol, &f.payload)? {
            match r.id {
                CONNECT_ID => match r.error {
                    Some(e) => bail!("connect error {} {}", e.code, e.message),
                    None => connected = true,
                },
                SUBSCRIBE_ID => match r.error {
                    Some(e) => bail!("subscribe error {} {}", e.code, e.message),
                    None => subscribed = Some(r.subscribe.unwrap_or_default()),
                },
                _ => keep = true,
            }
        }
        if keep {
            extra.push(f.payload.to_vec());
        }
    }
    Ok((ws, subscribed.unwrap_or_default(), extra))
}
