//! The connection scenarios, run by the coordinator process: `hold` (idle, storm) and
//! `publish` (fanout, rooms). Each builds a [`FleetSpec`] from the flags, drives the
//! [`Fleet`](crate::fleet::Fleet) through connect / go / finish with progress bars, samples
//! server processes around the measured window and turns the merged result into a
//! [`Report`]. The helpers here are the parts they share.

pub mod hold;
pub mod publish;

use std::time::Duration;

use serde_json::Value;

use crate::cli::{Common, LayoutArgs};
use crate::error::LoadError;
use crate::fleet::{Auth, Connected, Fleet, FleetSpec, Layout};
use crate::hist;
use crate::net;
use crate::partial::Partial;
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::Clock;
use crate::stats::Counter;

/// Extra seconds of timeline past the planned phases.
const TIMELINE_SLACK_S: usize = 10;
/// A worker's own hard stop, past the coordinator's planned phases.
const WORKER_HARD_STOP_SLACK: Duration = Duration::from_secs(60);

pub fn layout(l: &LayoutArgs) -> Result<Layout, LoadError> {
    if l.rooms == 0 {
        return Err(LoadError::Args("--rooms must be at least 1".into()));
    }
    match l.connections {
        Some(0) => Err(LoadError::Args("--connections must be at least 1".into())),
        Some(n) => Ok(Layout {
            total: n,
            members: n.div_ceil(l.rooms),
        }),
        None if l.members_per_room == 0 => Err(LoadError::Args(
            "--members-per-room must be at least 1".into(),
        )),
        None => Ok(Layout {
            total: l.rooms * l.members_per_room,
            members: l.members_per_room,
        }),
    }
}

/// The spec of the whole fleet (`origin_ns` is set when the connect phase starts).
/// `run` is how long the fleet lives after connecting (for timelines and watchdogs).
pub async fn prepare(c: &Common, publishers: usize, run: Duration) -> Result<FleetSpec, LoadError> {
    let layout = layout(&c.layout)?;
    if c.target.urls.is_empty() {
        return Err(LoadError::Args("give at least one --url".into()));
    }
    if c.connect.max_per_process == 0 {
        return Err(LoadError::Args(
            "--max-per-process must be at least 1".into(),
        ));
    }
    let mut addrs = Vec::new();
    for u in &c.target.urls {
        addrs.push(net::resolve(u, "ws").await?.addr);
    }
    let sources = c.connect.source_ips.0.clone();
    net::check_ports(&addrs, sources.len(), layout.total, net::ephemeral_ports())?;
    let auth = match (&c.target.token, &c.target.hmac_secret) {
        (Some(t), _) => Auth::Token(t.clone()),
        (None, Some(s)) => Auth::HmacSecret(s.clone()),
        (None, None) => Auth::None,
    };
    let lives = c.connect.connect_timeout + run;
    Ok(FleetSpec {
        urls: c.target.urls.clone(),
        protobuf: c.target.protobuf,
        auth,
        channel_prefix: c.target.channel_prefix.clone(),
        layout,
        lo: 0,
        hi: layout.total,
        sources,
        connect_concurrency: c.connect.connect_concurrency.max(1),
        connect_timeout: c.connect.connect_timeout,
        origin_ns: 0,
        reconnect: c.connect.reconnect,
        publishers,
        timeline_secs: lives.as_secs() as usize + TIMELINE_SLACK_S,
        hard_stop: lives + WORKER_HARD_STOP_SLACK,
    })
}

pub fn protocol_name(c: &Common) -> &'static str {
    if c.target.protobuf {
        "protobuf"
    } else {
        "json"
    }
}

/// Connects the fleet behind a progress bar, with the run's clock origin stamped on the spec,
/// and logs the `connected` line. Returns the fleet, its counts, the seconds it took and the
/// run's clock.
pub async fn connect_fleet(
    mut spec: FleetSpec,
    max_per_process: usize,
    progress: &Progress,
) -> Result<(Fleet, Connected, f64, Clock), LoadError> {
    let clock = Clock::new();
    spec.origin_ns = clock.now_ns();
    let total = spec.layout.total;
    let started = std::time::Instant::now();
    let bar = progress.counter("connect", total as u64);
    let (fleet, connected) = Fleet::connect(spec, max_per_process, &bar).await?;
    bar.finish_and_clear();
    let connect_s = started.elapsed().as_secs_f64();
    log_connected(connected, total, connect_s);
    Ok((fleet, connected, connect_s, clock))
}

/// The line scripts wait for (`loadtest/scenarios/lib.sh` greps `^connected `).
pub fn log_connected(connected: Connected, total: usize, secs: f64) {
    crate::progress::log(&format!(
        "connected {}/{total} in {secs:.2}s ({:.0}/s), failures {}",
        connected.ok,
        connected.ok as f64 / secs.max(1e-9),
        connected.failed
    ));
}

pub fn failures(p: &Partial) -> Value {
    Value::Object(
        p.failures
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect(),
    )
}

/// Connect-phase fields shared by every connection scenario.
pub fn connect_fields(r: &mut Report, c: &Common, p: &Partial, layout: Layout, connect_s: f64) {
    r.section("connect");
    r.put("protocol", protocol_name(c));
    r.put("connections", layout.total);
    r.put("connected", p.connected);
    r.put("processes", p.processes);
    r.put("rooms", layout.rooms());
    r.put("members_per_room", layout.members);
    r.put("connect_s", connect_s);
    r.put("connects_per_s", p.connected as f64 / connect_s.max(1e-9));
    r.put("handshake_p50_ms", hist::ms_at(&p.handshake, 0.5));
    r.put("handshake_p99_ms", hist::ms_at(&p.handshake, 0.99));
    r.put("handshake_max_ms", hist::max_ms(&p.handshake));
}

/// Failure fields shared by every connection scenario.
pub fn failure_fields(r: &mut Report, p: &Partial) {
    r.section("failures");
    r.put("connect_failures", p.counter(Counter::ConnectFailures));
    r.put("subscribe_failures", p.counter(Counter::SubscribeFailures));
    r.put("failures_by_reason", failures(p));
    r.put("disconnects", p.counter(Counter::Disconnects));
    r.put("disconnect_pushes", p.counter(Counter::DisconnectPushes));
    r.put("bad_frames", p.counter(Counter::BadFrames));
    r.put("pings", p.counter(Counter::Pings));
}

/// Resubscribe / reconnect figures (see `recovery`).
pub fn recovery_fields(r: &mut Report, p: &Partial) {
    r.quiet_section("recovery");
    for &c in Counter::RECOVERY {
        r.put(c.name(), p.counter(c));
    }
    r.put(
        "resubscribe_wait_p50_ms",
        hist::ms_at(&p.resubscribe_wait, 0.5),
    );
    r.put(
        "resubscribe_wait_p99_ms",
        hist::ms_at(&p.resubscribe_wait, 0.99),
    );
    r.put("resubscribe_wait_max_ms", hist::max_ms(&p.resubscribe_wait));
    r.put(
        "resubscribe_span_ms",
        p.resubscribe_span_ns().map(|ns| ns as f64 / 1e6),
    );
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let l = |rooms, members, connections| LayoutArgs {
            rooms,
            members_per_room: members,
            connections,
        };
        assert_eq!(
            layout(&l(20, 10, None)).unwrap(),
            Layout {
                total: 200,
                members: 10
            }
        );
        let odd = layout(&l(20, 10, Some(50))).unwrap();
        assert_eq!(
            odd,
            Layout {
                total: 50,
                members: 3
            }
        );
        assert_eq!(odd.rooms(), 17);
        assert!(layout(&l(0, 10, None)).is_err());
        assert!(layout(&l(1, 0, None)).is_err());
        assert!(layout(&l(1, 0, Some(0))).is_err());
    }
}
