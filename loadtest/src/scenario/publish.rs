//! `fanout` and `rooms`: subscribers in rooms and open-loop publishing, through the HTTP
//! API (from this process) or over the clients' own connections. `rooms` is the
//! client-publish case parametrised per client (rate per member, fraction of members that
//! publish); both share this one run.
//!
//! Publication k is scheduled at start + k / rate and its latency counts from that time
//! even when it left late (no coordinated omission); each receiver checks every
//! (room, publisher) stream for loss, duplicates and reorders.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{Common, FanoutArgs, PublishVia, RoomsArgs, RunArgs};
use crate::client::Schedule;
use crate::error::LoadError;
use crate::fleet::{Fleet, Go};
use crate::hist;
use crate::procfs::sample_all;
use crate::progress::{self, Progress};
use crate::publisher::{self, ApiPlan};
use crate::report::Report;
use crate::scenario::{self, connect_fields, failure_fields, recovery_fields};
use crate::stats::{Counter, Shared};

/// Time between "go" and the first scheduled publication, so that every process has the
/// schedule before it starts.
const LEAD_LOCAL: Duration = Duration::from_millis(100);
const LEAD_WORKERS: Duration = Duration::from_millis(500);
/// How long the API publisher may run past the end of the schedule (requests in flight).
const API_GRACE: Duration = Duration::from_secs(10);

struct Plan<'a> {
    scenario: &'static str,
    via: PublishVia,
    /// Publications per second, all publishers together.
    rate: f64,
    /// Publishing members per room (1 for the API publisher: publisher id 0).
    publishers: usize,
    run: &'a RunArgs,
    api: Option<&'a FanoutArgs>,
    rate_per_client: Option<f64>,
}

pub async fn fanout(a: &FanoutArgs, progress: &Progress) -> Result<Report, LoadError> {
    let layout = scenario::layout(&a.common.layout)?;
    let plan = Plan {
        scenario: "fanout",
        via: a.publish_via,
        rate: a.rate,
        publishers: match a.publish_via {
            PublishVia::Api => 1,
            PublishVia::Client => layout.members,
        },
        run: &a.run,
        api: (a.publish_via == PublishVia::Api).then_some(a),
        rate_per_client: None,
    };
    run(&a.common, plan, progress).await
}

pub async fn rooms(a: &RoomsArgs, progress: &Progress) -> Result<Report, LoadError> {
    let layout = scenario::layout(&a.common.layout)?;
    let publishers =
        ((a.publishers * layout.members as f64).ceil() as usize).clamp(1, layout.members);
    let plan = Plan {
        scenario: "rooms",
        via: PublishVia::Client,
        rate: a.rate_per_client * (publishers * layout.rooms()) as f64,
        publishers,
        run: &a.run,
        api: None,
        rate_per_client: Some(a.rate_per_client),
    };
    run(&a.common, plan, progress).await
}

async fn run(c: &Common, plan: Plan<'_>, progress: &Progress) -> Result<Report, LoadError> {
    let run = plan.run;
    if !(plan.rate.is_finite() && plan.rate > 0.0) || run.warmup >= run.duration {
        return Err(LoadError::Args(
            "the rate must be > 0 and --warmup < --duration".into(),
        ));
    }
    let spec = scenario::prepare(c, plan.publishers, run.duration + run.drain).await?;
    let layout = spec.layout;
    let rooms = layout.rooms();
    let api = match plan.api {
        Some(a) => Some((
            publisher::parse_api(&a.api, &a.api_key).await?,
            a.api_connections,
        )),
        None => None,
    };
    let (mut fleet, _, connect_s, clock) =
        scenario::connect_fleet(spec, c.connect.max_per_process, progress).await?;

    let lead = if fleet.processes() > 1 {
        LEAD_WORKERS
    } else {
        LEAD_LOCAL
    };
    let start_ns = clock.now_ns() + lead.as_nanos() as u64;
    let end_ns = start_ns + run.duration.as_nanos() as u64;
    let warm_ns = start_ns + run.warmup.as_nanos() as u64;
    let period_ns = 1e9 / plan.rate;
    let schedule = (plan.via == PublishVia::Client).then_some(Schedule {
        start_ns,
        end_ns,
        period_ns,
        rooms: rooms as u64,
        publishers: plan.publishers as u64,
        payload_bytes: run.payload_bytes,
    });
    fleet
        .go(Go {
            schedule,
            measure_from_ns: warm_ns,
            measure_to_ns: end_ns,
            origin_ns: start_ns,
            sample_self: false,
        })
        .await?;
    // The API publisher runs here and counts into its own tallies.
    let api_shared = Arc::new(Shared::new(rooms, 1, 1));
    let mut api_tasks = Vec::new();
    if let Some((target, connections)) = &api {
        let workers = (*connections).clamp(1, rooms);
        for w in 0..workers {
            let plan = ApiPlan {
                worker: w,
                workers,
                rooms,
                channel_prefix: c.target.channel_prefix.clone(),
                start_ns,
                end_ns,
                period_ns,
                payload_bytes: run.payload_bytes,
            };
            api_tasks.push(tokio::spawn(publisher::run_api_worker(
                target.clone(),
                plan,
                api_shared.clone(),
            )));
        }
    }
    let live = |fleet: &Fleet| -> String {
        let sent: u64 = api_shared.sent_ok().iter().sum();
        match fleet.live_deliveries() {
            Some(d) => format!("{d} deliveries"),
            None if sent > 0 => format!("{sent} published"),
            None => String::new(),
        }
    };
    let pb = progress.timer("warmup", run.warmup);
    progress::tick_until(&pb, clock.instant_at(warm_ns), || live(&fleet)).await;
    let before = sample_all(&c.server.server_pids);
    let extra_before = sample_all(&c.server.extra_pids);
    let self_before = crate::procfs::sample_proc("self");
    let pb = progress.timer("run", run.duration - run.warmup);
    progress::tick_until(&pb, clock.instant_at(end_ns), || live(&fleet)).await;
    let server = sample_all(&c.server.server_pids).zip(before);
    // None when a process is gone (e.g. Redis restarted inside the window: another pid).
    let extra = sample_all(&c.server.extra_pids)
        .zip(extra_before)
        .map(|(a, b)| a.cpu_secs - b.cpu_secs);
    let self_cpu = crate::procfs::sample_proc("self")
        .zip(self_before)
        .map(|(a, b)| a.cpu_secs - b.cpu_secs);
    // Late API sends still count; past this grace they are abandoned (the drain follows).
    let api_deadline = tokio::time::Instant::now() + API_GRACE;
    for mut t in api_tasks {
        if tokio::time::timeout_at(api_deadline, &mut t).await.is_err() {
            t.abort();
        }
    }
    let pb = progress.timer("drain", run.drain);
    progress::tick_until(&pb, Instant::now() + run.drain, || live(&fleet)).await;
    let mut p = fleet.finish().await?;
    p.add_sent(&api_shared.sent_ok());
    p.counters[Counter::PublishErrors as usize] += api_shared.get(Counter::PublishErrors);

    let window = (run.duration - run.warmup).as_secs_f64();
    let measured = p.counter(Counter::Measured);
    let order = p.order();
    let via = match plan.via {
        PublishVia::Api => "api",
        PublishVia::Client => "client",
    };
    let mut r = Report::new(
        plan.scenario,
        format!(
            "{}: {} connections ({} connected) in {rooms} rooms, {:.0} pub/s via {via} ({} per room), {} B, window {window:.1}s, {} process(es)",
            plan.scenario, layout.total, p.connected, plan.rate, plan.publishers,
            run.payload_bytes, p.processes
        ),
    );
    connect_fields(&mut r, c, &p, layout, connect_s);
    r.section("publish");
    r.put("publish_via", via);
    r.put("rate", plan.rate);
    if let Some(rpc) = plan.rate_per_client {
        r.put("rate_per_client", rpc);
    }
    r.put("publishers_per_room", plan.publishers);
    r.put("payload_bytes", run.payload_bytes);
    r.put("duration_s", run.duration.as_secs_f64());
    r.put("warmup_s", run.warmup.as_secs_f64());
    r.put("drain_s", run.drain.as_secs_f64());
    r.put("published_ok", p.published());
    r.put("publish_errors", p.counter(Counter::PublishErrors));
    r.section("delivery");
    r.put("deliveries_total", p.counter(Counter::Deliveries));
    r.put("deliveries_expected", order.expected);
    r.put("deliveries_measured", measured);
    r.put("deliveries_per_s", measured as f64 / window);
    r.put("loss", order.loss);
    r.put("dups", order.dups);
    r.put("reorders", order.reorders);
    r.section("latency");
    let lat = &p.latency;
    r.put("latency_samples", lat.len());
    r.put("min_ms", hist::min_ms(lat));
    r.put("p50_ms", hist::ms_at(lat, 0.5));
    r.put("p90_ms", hist::ms_at(lat, 0.9));
    r.put("p99_ms", hist::ms_at(lat, 0.99));
    r.put("p999_ms", hist::ms_at(lat, 0.999));
    r.put("p9999_ms", hist::ms_at(lat, 0.9999));
    r.put("max_ms", hist::max_ms(lat));
    r.put("mean_ms", hist::mean_ms(lat));
    failure_fields(&mut r, &p);
    r.section("cpu");
    let loadgen = match (self_cpu, p.loadgen_cpu_s) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    r.put("loadgen_cpu_s", loadgen);
    if let Some((after, before)) = server {
        let cpu = after.cpu_secs - before.cpu_secs;
        r.put("server_cpu_s", cpu);
        // 0 CPU ticks (wrong pid, too short a window) gives no meaningful ratio.
        r.put(
            "deliveries_per_server_cpu_s",
            if cpu > 0.0 {
                measured as f64 / cpu
            } else {
                0.0
            },
        );
        r.put("server_rss_kib", after.rss_kib);
    }
    if let Some(cpu) = extra {
        r.put("extra_cpu_s", cpu);
        r.put("extra_cpu_pct_core", cpu * 100.0 / window);
    }
    recovery_fields(&mut r, &p);
    r.latency = Some((
        p.latency.clone(),
        "delivery latency from the scheduled send time",
    ));
    r.timeline = Some((p.deliveries_timeline.clone(), "deliveries per second"));
    Ok(r)
}
