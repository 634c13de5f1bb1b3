//! `idle` and `storm`: open the fleet, hold it, close it. `idle` is about what held
//! connections cost the server (RSS and CPU per connection, pings); `storm` is about how
//! fast connections get in (connects per second, handshake latency, failures by reason).

use std::time::{Duration, Instant};

use crate::cli::{Common, IdleArgs, StormArgs};
use crate::error::LoadError;
use crate::fleet::Go;
use crate::hist;
use crate::procfs::{sample_all, ProcSample};
use crate::progress::{self, Progress};
use crate::report::Report;
use crate::scenario::{self, connect_fields, failure_fields, recovery_fields};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idle,
    Storm,
}

pub async fn idle(a: &IdleArgs, progress: &Progress) -> Result<Report, LoadError> {
    run(&a.common, a.duration, Kind::Idle, progress).await
}

pub async fn storm(a: &StormArgs, progress: &Progress) -> Result<Report, LoadError> {
    run(&a.common, a.hold, Kind::Storm, progress).await
}

fn cpu_delta(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<f64> {
    Some(b?.cpu_secs - a?.cpu_secs)
}

async fn run(
    c: &Common,
    hold: Duration,
    kind: Kind,
    progress: &Progress,
) -> Result<Report, LoadError> {
    let spec = scenario::prepare(c, 0, hold).await?;
    let layout = spec.layout;
    let pids = &c.server.server_pids;
    let base = sample_all(pids);
    let (mut fleet, connected, connect_s, clock) =
        scenario::connect_fleet(spec, c.connect.max_per_process, progress).await?;
    let after_connect = sample_all(pids);
    let extra_before = sample_all(&c.server.extra_pids);
    let now = clock.now_ns();
    fleet
        .go(Go {
            schedule: None,
            measure_from_ns: now,
            measure_to_ns: now + hold.as_nanos() as u64,
            origin_ns: now,
            sample_self: false,
        })
        .await?;
    if !hold.is_zero() {
        let pb = progress.timer("hold", hold);
        progress::tick_until(&pb, Instant::now() + hold, || {
            format!("{} connected", connected.ok)
        })
        .await;
    }
    let end = sample_all(pids);
    let extra = cpu_delta(extra_before, sample_all(&c.server.extra_pids));
    let p = fleet.finish().await?;

    let (name, what) = match kind {
        Kind::Idle => ("idle", "held"),
        Kind::Storm => ("storm", "stormed"),
    };
    let mut r = Report::new(
        name,
        format!(
            "{name}: {}/{} connections {what} ({}, {} rooms, {} process(es)), hold {:.1}s",
            p.connected,
            layout.total,
            scenario::protocol_name(c),
            layout.rooms(),
            p.processes,
            hold.as_secs_f64()
        ),
    );
    connect_fields(&mut r, c, &p, layout, connect_s);
    if kind == Kind::Storm {
        r.put("connect_concurrency", c.connect.connect_concurrency);
        r.put(
            "peak_connects_per_s",
            p.connects_timeline.iter().copied().max().unwrap_or(0),
        );
        r.put("handshake_p90_ms", hist::ms_at(&p.handshake, 0.9));
        r.put("handshake_mean_ms", hist::mean_ms(&p.handshake));
    }
    failure_fields(&mut r, &p);
    r.section("hold");
    r.put("hold_s", hold.as_secs_f64());
    let conns = p.connected.max(1) as f64;
    if let Some(end) = end {
        r.section("server");
        r.put("server_rss_kib", end.rss_kib);
        let base_rss = base.map_or(0, |b| b.rss_kib);
        r.put(
            "server_rss_per_conn_kib",
            end.rss_kib.saturating_sub(base_rss) as f64 / conns,
        );
        if let Some(cpu) = cpu_delta(base, after_connect) {
            r.put("server_connect_cpu_s", cpu);
            r.put("server_cpu_us_per_connect", cpu * 1e6 / conns);
        }
        if let (Some(cpu), false) = (cpu_delta(after_connect, Some(end)), hold.is_zero()) {
            r.put("server_hold_cpu_s", cpu);
            r.put(
                "server_cpu_us_per_conn_s",
                cpu * 1e6 / conns / hold.as_secs_f64(),
            );
        }
    }
    if let (Some(cpu), false) = (extra, hold.is_zero()) {
        r.put("extra_cpu_s", cpu);
        r.put("extra_cpu_pct_core", cpu * 100.0 / hold.as_secs_f64());
    }
    recovery_fields(&mut r, &p);
    r.latency = Some((
        p.handshake.clone(),
        "handshake latency, TCP connect → subscribe reply",
    ));
    r.timeline = Some((p.connects_timeline.clone(), "connects per second"));
    Ok(r)
}
