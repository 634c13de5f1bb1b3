//! One client connection: TCP connect from a chosen source address, WebSocket upgrade,
//! `connect` + `subscribe` in one frame, then a read loop that answers pings, records
//! deliveries and (with `--publish-via client`) a writer that publishes on schedule.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use chorus_protocol::{
    decode_replies, encode_command, join_frame, Command, ConnectRequest, Protocol, PublishRequest,
    Reply, SubscribeRequest,
};
use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch};

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
    let opened = tokio::select! {
        r = handshake(&target, source, &plan) => r,
        _ = stop.changed() => Err(anyhow!("stopped during connect")),
    };
    drop(permit);
    let (ws, pending) = match opened {
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
        let mut j: u64 = 0;
        loop {
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
                    j += 1;
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

    let mut report = ConnReport {
        room: plan.room,
        ..Default::default()
    };
    let mut scheduled = Vec::new();
    let handle = |data: &[u8], report: &mut ConnReport, scheduled: &mut Vec<u64>| {
        let Ok(replies) = decode_replies(plan.protocol, data) else {
            shared.bad_frames.fetch_add(1, Relaxed);
            return;
        };
        for reply in replies {
            on_reply(&plan, &shared, &tx, reply, report, scheduled);
        }
    };
    for f in pending {
        handle(&f, &mut report, &mut scheduled);
    }
    flush(&shared, plan.id, &mut scheduled);
    loop {
        let obligated = tx.clone();
        let mut send_fn = move |f: Frame<'_>| {
            let owned = Frame::new(f.fin, f.opcode, None, Payload::Owned(f.payload.to_vec()));
            let r = obligated.send(owned).map_err(|_| anyhow!("writer gone"));
            std::future::ready(r)
        };
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            f = rd.read_frame::<_, anyhow::Error>(&mut send_fn) => f,
        };
        match frame {
            Ok(f) if matches!(f.opcode, OpCode::Text | OpCode::Binary) => {
                handle(&f.payload, &mut report, &mut scheduled);
                flush(&shared, plan.id, &mut scheduled);
            }
            Ok(f) if f.opcode == OpCode::Close => {
                shared.disconnects.fetch_add(1, Relaxed);
                break;
            }
            Ok(_) => {}
            Err(_) => {
                shared.disconnects.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    drop(tx);
    writer.abort();
    Some(report)
}

fn flush(shared: &Shared, id: usize, scheduled: &mut Vec<u64>) {
    shared.record_deliveries(id, shared.clock.now_ns(), scheduled);
    scheduled.clear();
}

fn on_reply(
    plan: &ConnPlan,
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Frame<'static>>,
    reply: Reply,
    report: &mut ConnReport,
    scheduled: &mut Vec<u64>,
) {
    if reply.is_ping() {
        shared.pings.fetch_add(1, Relaxed);
        if let Ok(pong) = encode_command(plan.protocol, &Command::default()) {
            let _ = tx.send(frame_of(plan.protocol, pong));
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
    let Some(pub_) = reply.push.and_then(|p| p.publication) else {
        return;
    };
    match decode_payload(&pub_.data) {
        Some((publisher, seq, sched)) => {
            report.streams.entry(publisher).or_default().observe(seq);
            scheduled.push(sched);
        }
        None => {
            shared.bad_frames.fetch_add(1, Relaxed);
        }
    }
}

/// Opens the socket, sends `connect` and `subscribe` in one frame and waits for both
/// replies. Frames that arrived along with them are returned for processing.
async fn handshake(
    target: &Target,
    source: Option<IpAddr>,
    plan: &ConnPlan,
) -> anyhow::Result<(Ws, Vec<Vec<u8>>)> {
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
        subscribe: Some(SubscribeRequest {
            channel: plan.channel.clone(),
            ..Default::default()
        }),
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
    let (mut connected, mut subscribed) = (false, false);
    while !(connected && subscribed) {
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
                    None => subscribed = true,
                },
                _ => keep = true,
            }
        }
        if keep {
            extra.push(f.payload.to_vec());
        }
    }
    Ok((ws, extra))
}
