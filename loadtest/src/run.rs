//! Orchestration of a run: connect phase, measured window, drain, summary.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_protocol::Protocol;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::client::{self, ConnPlan, Schedule};
use crate::publisher::{self, ApiPlan};
use crate::stats::{sample_all, ConnReport, ProcSample, Shared};
use crate::{parse_source_ips, Common, FanoutArgs, IdleArgs, PublishVia};

struct Fleet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Option<ConnReport>>>,
    schedule_tx: watch::Sender<Option<Schedule>>,
    stop_tx: watch::Sender<bool>,
    connected: u64,
    connect_secs: f64,
}

/// Opens rooms × members connections (connection i: room i / members, slot i % members,
/// URL i % urls, source i % sources) and waits until each succeeded or failed.
async fn connect_all(c: &Common, pubs_per_room: usize) -> anyhow::Result<Fleet> {
    let n = c.rooms * c.members_per_room;
    let shared = Arc::new(Shared::new(c.rooms, pubs_per_room));
    let mut targets = Vec::new();
    for u in &c.urls {
        targets.push(client::parse_target(u).await?);
    }
    let sources = parse_source_ips(&c.source_ips)?;
    let protocol = if c.protobuf {
        Protocol::Protobuf
    } else {
        Protocol::Json
    };
    let (schedule_tx, schedule_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let sem = Arc::new(Semaphore::new(c.connect_concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let room = i / c.members_per_room;
        let user = format!("u{i}");
        let token = match (&c.token, &c.hmac_secret) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => crate::jwt::mint_hs256(s.as_bytes(), &user, 3600)?,
            (None, None) => String::new(),
        };
        let plan = ConnPlan {
            id: i,
            room,
            slot: (i % c.members_per_room) as u32,
            channel: format!("{}:{room}", c.channel_prefix),
            token,
            protocol,
            reconnect: c.reconnect,
        };
        let permit = sem.clone().acquire_owned().await?;
        let target = targets[i % targets.len()].clone();
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        tasks.push(tokio::spawn(client::run(
            target,
            source,
            plan,
            shared.clone(),
            permit,
            ready_tx.clone(),
            schedule_rx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(ready_tx);
    let (mut ok, mut done) = (0u64, 0usize);
    let deadline = tokio::time::Instant::from_std(started + c.connect_timeout);
    while done < n {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(r)) => {
                done += 1;
                ok += u64::from(r);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let pending = n - done;
    if pending > 0 {
        shared.connect_failures.fetch_add(pending as u64, Relaxed);
    }
    eprintln!(
        "connected {ok}/{n} in {connect_secs:.2}s ({:.0}/s), failures {}",
        ok as f64 / connect_secs.max(1e-9),
        shared.connect_failures.load(Relaxed) + shared.subscribe_failures.load(Relaxed)
    );
    Ok(Fleet {
        shared,
        tasks,
        schedule_tx,
        stop_tx,
        connected: ok,
        connect_secs,
    })
}

async fn finish(fleet: &mut Fleet) -> Vec<ConnReport> {
    let _ = fleet.stop_tx.send(true);
    let mut reports = Vec::new();
    for t in fleet.tasks.drain(..) {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .unwrap_or(Ok(None))
        {
            reports.push(r);
        }
    }
    reports
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn server_delta(pids: &[String], before: Option<ProcSample>) -> Option<(f64, u64)> {
    let after = sample_all(pids)?;
    Some((after.cpu_secs - before?.cpu_secs, after.rss_kib))
}

pub async fn fanout(a: FanoutArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let pubs_per_room = match a.publish_via {
        PublishVia::Api => 1,
        PublishVia::Client => c.members_per_room,
    };
    if a.rate.is_nan() || a.rate <= 0.0 || a.warmup >= c.duration {
        anyhow::bail!("--rate must be > 0 and --warmup < --duration");
    }
    let mut fleet = connect_all(c, pubs_per_room).await?;
    let shared = fleet.shared.clone();
    let clock = shared.clock;
    let start_ns = clock.now_ns() + 100_000_000;
    let end_ns = start_ns + c.duration.as_nanos() as u64;
    let warm_ns = start_ns + a.warmup.as_nanos() as u64;
    shared.measure_from_ns.store(warm_ns, Relaxed);
    shared.measure_to_ns.store(end_ns, Relaxed);
    let period_ns = 1e9 / a.rate;
    let mut api_tasks = Vec::new();
    match a.publish_via {
        PublishVia::Client => {
            // Connection i (room r, member m) publishes k = r + rooms·(m + members·j).
            let _ = fleet.schedule_tx.send(Some(Schedule {
                start_ns,
                end_ns,
                period_ns,
                rooms: c.rooms as u64,
                stride: (c.rooms * c.members_per_room) as u64,
                payload_bytes: a.payload_bytes,
            }));
        }
        PublishVia::Api => {
            let t = publisher::parse_api(&a.api, &a.api_key).await?;
            let workers = a.api_connections.clamp(1, c.rooms);
            for w in 0..workers {
                let plan = ApiPlan {
                    worker: w,
                    workers,
                    rooms: c.rooms,
                    channel_prefix: c.channel_prefix.clone(),
                    start_ns,
                    end_ns,
                    period_ns,
                    payload_bytes: a.payload_bytes,
                };
                api_tasks.push(tokio::spawn(publisher::run_api_worker(
                    t.clone(),
                    plan,
                    shared.clone(),
                )));
            }
        }
    }
    tokio::time::sleep_until(clock.instant_at(warm_ns).into()).await;
    let before = sample_all(&c.server_pids);
    let extra_before = sample_all(&c.extra_pids);
    let self_before = crate::stats::sample_proc("self");
    tokio::time::sleep_until(clock.instant_at(end_ns).into()).await;
    let server = server_delta(&c.server_pids, before);
    // None when a process is gone (e.g. Redis restarted inside the window: another pid).
    let extra = server_delta(&c.extra_pids, extra_before);
    let self_cpu = crate::stats::sample_proc("self")
        .zip(self_before)
        .map(|(a, b)| a.cpu_secs - b.cpu_secs);
    for t in api_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    tokio::time::sleep(a.drain).await;
    let reports = finish(&mut fleet).await;

    let lat = shared.latency();
    let window = (c.duration - a.warmup).as_secs_f64();
    let measured = shared.measured.load(Relaxed);
    let rate = measured as f64 / window;
    let (loss, dups, reorders, expected) = shared.order_totals(&reports);
    let published: u64 = shared.sent_ok.iter().map(|v| v.load(Relaxed)).sum();
    let hs = shared
        .handshake
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let mut out = serde_json::json!({
        "scenario": "fanout",
        "protocol": if c.protobuf { "protobuf" } else { "json" },
        "publish_via": format!("{:?}", a.publish_via).to_lowercase(),
        "connections": c.rooms * c.members_per_room, "connected": fleet.connected,
        "rooms": c.rooms, "members_per_room": c.members_per_room,
        "rate": a.rate, "payload_bytes": a.payload_bytes,
        "duration_s": c.duration.as_secs_f64(), "warmup_s": a.warmup.as_secs_f64(),
        "connect_s": fleet.connect_secs,
        "handshake_p50_ms": ms(hs.percentile(50.0)), "handshake_p99_ms": ms(hs.percentile(99.0)),
        "published_ok": published, "publish_errors": shared.publish_errors.load(Relaxed),
        "deliveries_total": shared.deliveries.load(Relaxed), "deliveries_expected": expected,
        "deliveries_measured": measured, "deliveries_per_s": rate,
        "p50_ms": ms(lat.percentile(50.0)), "p90_ms": ms(lat.percentile(90.0)),
        "p99_ms": ms(lat.percentile(99.0)), "p999_ms": ms(lat.percentile(99.9)),
        "min_ms": ms(lat.min()), "max_ms": ms(lat.max()), "mean_ms": lat.mean() / 1e6,
        "latency_samples": lat.count(),
        "loss": loss, "dups": dups, "reorders": reorders,
        "connect_failures": shared.connect_failures.load(Relaxed),
        "subscribe_failures": shared.subscribe_failures.load(Relaxed),
        "disconnects": shared.disconnects.load(Relaxed),
        "bad_frames": shared.bad_frames.load(Relaxed), "pings": shared.pings.load(Relaxed),
        "loadgen_cpu_s": self_cpu,
    });
    println!(
        "fanout: {} conns ({} connected) in {} rooms, {:.0} pub/s via {:?}, {} B, window {window:.1}s",
        c.rooms * c.members_per_room, fleet.connected, c.rooms, a.rate, a.publish_via, a.payload_bytes
    );
    println!(
        "  published ok {published}, publish errors {}, deliveries {measured} measured ({rate:.0}/s), {} total / {expected} expected",
        shared.publish_errors.load(Relaxed), shared.deliveries.load(Relaxed)
    );
    println!(
        "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(lat.percentile(50.0)),
        ms(lat.percentile(90.0)),
        ms(lat.percentile(99.0)),
        ms(lat.percentile(99.9)),
        ms(lat.max())
    );
    println!(
        "  loss {loss}  dups {dups}  reorders {reorders}  connect failures {}  subscribe failures {}  disconnects {}  bad frames {}",
        shared.connect_failures.load(Relaxed), shared.subscribe_failures.load(Relaxed),
        shared.disconnects.load(Relaxed), shared.bad_frames.load(Relaxed)
    );
    if let Some(cpu) = self_cpu {
        println!("  load generator CPU {cpu:.2}s in window");
    }
    if let Some((cpu, rss)) = server {
        // 0 CPU ticks (wrong pid, too short a window) gives no meaningful ratio.
        let per_cpu = if cpu > 0.0 {
            measured as f64 / cpu
        } else {
            0.0
        };
        println!(
            "  server CPU {cpu:.2}s in window, {per_cpu:.0} deliveries per server CPU-second, RSS {:.1} MiB",
            rss as f64 / 1024.0
        );
        out["server_cpu_s"] = cpu.into();
        out["deliveries_per_server_cpu_s"] = per_cpu.into();
        out["server_rss_kib"] = rss.into();
    }
    if let Some((cpu, _)) = extra {
        let pct = cpu * 100.0 / window;
        println!("  extra processes CPU {cpu:.2}s in window = {pct:.1}% of a core");
        out["extra_cpu_s"] = cpu.into();
        out["extra_cpu_pct_core"] = pct.into();
    }
    recovery_report(&shared, &mut out);
    if c.json {
        println!("{out}");
    }
    Ok(())
}

/// Resubscribe / reconnect figures (printed only when something happened).
fn recovery_report(shared: &crate::stats::Shared, out: &mut serde_json::Value) {
    let r = &shared.recovery;
    let wait = r.wait.lock().map(|h| h.clone()).unwrap_or_default();
    let span = r.span_ns();
    let fields = serde_json::json!({
        "unsubscribe_pushes": r.unsubscribe_pushes.load(Relaxed),
        "resubscribe_pushes": r.resubscribe_pushes.load(Relaxed),
        "resubscribes_sent": r.resubscribes_sent.load(Relaxed),
        "resubscribed": r.resubscribed.load(Relaxed),
        "resubscribe_errors": r.resubscribe_errors.load(Relaxed),
        "recovered_true": r.recovered_true.load(Relaxed),
        "recovered_false": r.recovered_false.load(Relaxed),
        "recovered_publications": r.recovered_publications.load(Relaxed),
        "reconnect_attempts": r.reconnect_attempts.load(Relaxed),
        "reconnect_failures": r.reconnect_failures.load(Relaxed),
        "reconnected": r.reconnected.load(Relaxed),
        "resubscribe_wait_p50_ms": ms(wait.percentile(50.0)),
        "resubscribe_wait_p99_ms": ms(wait.percentile(99.0)),
        "resubscribe_wait_max_ms": ms(wait.max()),
        "resubscribe_span_ms": span.map(ms),
    });
    if let (Some(o), Some(f)) = (out.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            o.insert(k.clone(), v.clone());
        }
    }
    if r.unsubscribe_pushes.load(Relaxed) + r.reconnect_attempts.load(Relaxed) == 0 {
        return;
    }
    println!(
        "  recovery: unsubscribe pushes {} (resubscribe codes {}), resubscribes sent {}, ok {} (recovered true {} / false {}), errors {}, recovered publications {}",
        r.unsubscribe_pushes.load(Relaxed), r.resubscribe_pushes.load(Relaxed),
        r.resubscribes_sent.load(Relaxed), r.resubscribed.load(Relaxed),
        r.recovered_true.load(Relaxed), r.recovered_false.load(Relaxed),
        r.resubscribe_errors.load(Relaxed), r.recovered_publications.load(Relaxed)
    );
    println!(
        "  reconnects: attempts {}, failed {}, reconnected {}; loss-to-resubscribe ms p50 {:.3} p99 {:.3} max {:.3}; first loss to last resubscribe {}",
        r.reconnect_attempts.load(Relaxed), r.reconnect_failures.load(Relaxed),
        r.reconnected.load(Relaxed), ms(wait.percentile(50.0)), ms(wait.percentile(99.0)),
        ms(wait.max()), span.map_or("-".to_string(), |s| format!("{:.1} ms", ms(s)))
    );
}

pub async fn idle(a: IdleArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let base = sample_all(&c.server_pids);
    let mut fleet = connect_all(c, 0).await?;
    let shared = fleet.shared.clone();
    let before = sample_all(&c.server_pids);
    tokio::time::sleep(c.duration).await;
    let server = server_delta(&c.server_pids, before);
    let _reports = finish(&mut fleet).await;
    let n = c.rooms * c.members_per_room;
    let hs = shared
        .handshake
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let conns = fleet.connected.max(1) as f64;
    let mut out = serde_json::json!({
        "scenario": "idle", "protocol": if c.protobuf { "protobuf" } else { "json" },
        "connections": n, "connected": fleet.connected, "connect_s": fleet.connect_secs,
        "connects_per_s": fleet.connected as f64 / fleet.connect_secs.max(1e-9),
        "handshake_p50_ms": ms(hs.percentile(50.0)), "handshake_p99_ms": ms(hs.percentile(99.0)),
        "handshake_max_ms": ms(hs.max()),
        "connect_failures": shared.connect_failures.load(Relaxed),
        "subscribe_failures": shared.subscribe_failures.load(Relaxed),
        "disconnects": shared.disconnects.load(Relaxed), "pings": shared.pings.load(Relaxed),
        "hold_s": c.duration.as_secs_f64(),
    });
    println!(
        "idle: {}/{n} connected in {:.2}s ({:.0}/s); handshake ms p50 {:.2} p99 {:.2} max {:.2}",
        fleet.connected,
        fleet.connect_secs,
        fleet.connected as f64 / fleet.connect_secs.max(1e-9),
        ms(hs.percentile(50.0)),
        ms(hs.percentile(99.0)),
        ms(hs.max())
    );
    println!(
        "  connect failures {}  subscribe failures {}  disconnects during hold {}  pings answered {}",
        shared.connect_failures.load(Relaxed), shared.subscribe_failures.load(Relaxed),
        shared.disconnects.load(Relaxed), shared.pings.load(Relaxed)
    );
    if let Some((cpu, rss)) = server {
        let base_rss = base.map_or(0, |b| b.rss_kib);
        let per_conn_kib = rss.saturating_sub(base_rss) as f64 / conns;
        let us_per_conn_s = cpu * 1e6 / conns / c.duration.as_secs_f64();
        println!(
            "  server RSS {:.1} MiB ({per_conn_kib:.2} KiB/conn over the idle baseline), CPU {cpu:.2}s in hold = {us_per_conn_s:.2} µs/s per conn",
            rss as f64 / 1024.0
        );
        out["server_rss_kib"] = rss.into();
        out["server_rss_per_conn_kib"] = per_conn_kib.into();
        out["server_cpu_us_per_conn_s"] = us_per_conn_s.into();
    }
    if c.json {
        println!("{out}");
    }
    Ok(())
}
