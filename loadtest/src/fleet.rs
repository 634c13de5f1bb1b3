//! A fleet of client connections and the three steps every connection scenario takes with
//! it: connect (until each connection is subscribed or failed), go (announce the publishing
//! schedule and the measured window), finish (stop and collect a [`Partial`]).
//!
//! [`Fleet`] runs in this process ([`LocalFleet`]) or, above `--max-per-process`, in worker
//! processes (`workers`) that run a `LocalFleet` each; scenarios do not see the difference.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_protocol::Protocol;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::client::{self, ConnCtx, ConnPlan, Schedule};
use crate::error::LoadError;
use crate::net;
use crate::partial::Partial;
use crate::procfs;
use crate::stats::{ConnReport, Shared};
use crate::workers::WorkerSet;

/// Token lifetime of minted tokens: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How long finish waits for connection tasks to hand in their reports.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Open files a process keeps besides its client sockets (runtime, API publisher, /proc).
const SPARE_FDS: u64 = 256;

/// How clients authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// Insecure server: empty token.
    None,
    Token(String),
    /// Mint an HS256 token per user `u<i>`.
    HmacSecret(String),
}

/// Connections `0..total`; connection i is member `i % members` of room `i / members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub total: usize,
    pub members: usize,
}

impl Layout {
    pub fn rooms(&self) -> usize {
        self.total.div_ceil(self.members.max(1))
    }
}

/// What one process of a fleet runs: connections `lo..hi` of the layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetSpec {
    pub urls: Vec<String>,
    pub protobuf: bool,
    pub auth: Auth,
    pub channel_prefix: String,
    pub layout: Layout,
    pub lo: usize,
    pub hi: usize,
    pub sources: Vec<IpAddr>,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    /// Epoch ns the connect phase started at (origin of the connects timeline).
    pub origin_ns: u64,
    pub reconnect: bool,
    /// Publishers per room (size of the per-stream tallies).
    pub publishers: usize,
    /// Length of the per-second timelines.
    pub timeline_secs: usize,
    /// A worker exits by itself this long after it got the spec.
    pub hard_stop: Duration,
}

/// The start signal: client publishing schedule (if any), measured window, timeline origin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Go {
    pub schedule: Option<Schedule>,
    pub measure_from_ns: u64,
    pub measure_to_ns: u64,
    pub origin_ns: u64,
    /// Sample this process's CPU over the window (worker processes do; the coordinator
    /// samples itself).
    pub sample_self: bool,
}

/// Outcome of the connect phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Connected {
    pub ok: u64,
    pub failed: u64,
}

/// Connections run by this process.
pub struct LocalFleet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Option<ConnReport>>>,
    schedule_tx: watch::Sender<Option<Schedule>>,
    stop_tx: watch::Sender<bool>,
    rooms: usize,
    connected: u64,
    self_cpu: Arc<Mutex<Option<f64>>>,
}

impl LocalFleet {
    /// Opens connections `spec.lo..spec.hi` and waits until each is subscribed or failed
    /// (at most `connect_timeout`); `progress(done, ok)` is called every 200 ms.
    pub async fn connect(
        spec: &FleetSpec,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(Self, Connected), LoadError> {
        let layout = spec.layout;
        let shared = Arc::new(Shared::new(
            layout.rooms(),
            spec.publishers,
            spec.timeline_secs,
        ));
        shared.connects.set_origin(spec.origin_ns);
        let mut targets = Vec::new();
        for u in &spec.urls {
            targets.push(net::resolve(u, "ws").await?);
        }
        if targets.is_empty() {
            return Err(LoadError::Args("give at least one --url".into()));
        }
        if let Auth::HmacSecret(s) = &spec.auth {
            // Fail the run, not every connection, on a secret jsonwebtoken refuses.
            crate::token::mint_hs256(s, "u0", TOKEN_TTL)?;
        }
        let protocol = if spec.protobuf {
            Protocol::Protobuf
        } else {
            Protocol::Json
        };
        let (schedule_tx, schedule_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let n = spec.hi.saturating_sub(spec.lo);
        let deadline = tokio::time::Instant::from_std(shared.clock.instant_at(spec.origin_ns))
            + spec.connect_timeout;
        // The launcher opens connections as permits free up; this task watches them land.
        let launcher = {
            let spec = spec.clone();
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            tokio::spawn(async move {
                let sem = Arc::new(Semaphore::new(spec.connect_concurrency.max(1)));
                let mut tasks = Vec::with_capacity(n);
                for i in spec.lo..spec.hi {
                    let Ok(permit) = sem.clone().acquire_owned().await else {
                        break;
                    };
                    let room = i / spec.layout.members.max(1);
                    let token = match &spec.auth {
                        Auth::None => String::new(),
                        Auth::Token(t) => t.clone(),
                        Auth::HmacSecret(s) => {
                            crate::token::mint_hs256(s, &format!("u{i}"), TOKEN_TTL)
                                .unwrap_or_default()
                        }
                    };
                    let local = i - spec.lo;
                    let ctx = ConnCtx {
                        target: targets[i % targets.len()].clone(),
                        source: (!spec.sources.is_empty())
                            .then(|| spec.sources[local % spec.sources.len()]),
                        plan: ConnPlan {
                            id: i,
                            room,
                            slot: (i % spec.layout.members.max(1)) as u32,
                            channel: format!("{}:{room}", spec.channel_prefix),
                            token,
                            protocol,
                            reconnect: spec.reconnect,
                        },
                        shared: shared.clone(),
                        ready: ready_tx.clone(),
                        schedule: schedule_rx.clone(),
                        stop: stop_rx.clone(),
                        deadline,
                    };
                    tasks.push(tokio::spawn(client::run(ctx, permit)));
                }
                tasks
            })
        };
        let (mut ok, mut done) = (0u64, 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        // Every task reports by its deadline; the grace covers tasks still being spawned.
        let hard = deadline + Duration::from_secs(5);
        while done < n as u64 {
            tokio::select! {
                r = ready_rx.recv() => match r {
                    Some(r) => {
                        done += 1;
                        ok += u64::from(r);
                    }
                    None => break,
                },
                _ = tick.tick() => progress(done, ok),
                _ = tokio::time::sleep_until(hard) => break,
            }
        }
        progress(done, ok);
        let missing = n as u64 - done;
        for _ in 0..missing {
            shared.failed("timeout".into());
        }
        let tasks = launcher.await.unwrap_or_default();
        let fleet = LocalFleet {
            shared,
            tasks,
            schedule_tx,
            stop_tx,
            rooms: layout.rooms(),
            connected: ok,
            self_cpu: Arc::new(Mutex::new(None)),
        };
        Ok((
            fleet,
            Connected {
                ok,
                failed: n as u64 - ok,
            },
        ))
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn go(&self, go: Go) {
        let shared = &self.shared;
        shared.set_window(go.measure_from_ns, go.measure_to_ns);
        shared.deliveries.set_origin(go.origin_ns);
        let _ = self.schedule_tx.send(go.schedule);
        if go.sample_self {
            let clock = shared.clock;
            let out = self.self_cpu.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(clock.instant_at(go.measure_from_ns).into()).await;
                let before = procfs::sample_proc("self");
                tokio::time::sleep_until(clock.instant_at(go.measure_to_ns).into()).await;
                let after = procfs::sample_proc("self");
                if let (Some(a), Some(b), Ok(mut o)) = (after, before, out.lock()) {
                    *o = Some(a.cpu_secs - b.cpu_secs);
                }
            });
        }
    }

    /// Stops every connection and collects the result.
    pub async fn finish(self) -> Partial {
        let _ = self.stop_tx.send(true);
        let deadline = tokio::time::Instant::now() + FINISH_TIMEOUT;
        let mut reports = Vec::new();
        for t in self.tasks {
            if let Ok(Ok(Some(r))) = tokio::time::timeout_at(deadline, t).await {
                reports.push(r);
            }
        }
        let mut p = Partial::from_run(&self.shared, &reports, self.rooms, self.connected);
        p.loadgen_cpu_s = self.self_cpu.lock().ok().and_then(|c| *c);
        p
    }
}

/// Connections in this process or in worker processes.
pub enum Fleet {
    Local(LocalFleet),
    Workers(WorkerSet),
}

impl Fleet {
    /// Connects the whole layout: in this process when it fits in `max_per_process`, else
    /// in ⌈total / max_per_process⌉ worker processes with contiguous slices.
    pub async fn connect(
        spec: FleetSpec,
        max_per_process: usize,
        bar: &ProgressBar,
    ) -> Result<(Fleet, Connected), LoadError> {
        let total = spec.hi - spec.lo;
        // Never plan more sockets per process than it may open (workers inherit the limit).
        let max_per_process = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _)) => max_per_process.min(soft.saturating_sub(SPARE_FDS).max(1) as usize),
            Err(_) => max_per_process,
        };
        let progress = |done: u64, ok: u64| {
            bar.set_position(done);
            bar.set_message(format!("{} failed", done - ok));
        };
        if total <= max_per_process.max(1) {
            let (f, c) = LocalFleet::connect(&spec, progress).await?;
            return Ok((Fleet::Local(f), c));
        }
        let workers = total.div_ceil(max_per_process.max(1));
        let (w, c) = WorkerSet::connect(&spec, workers, progress).await?;
        Ok((Fleet::Workers(w), c))
    }

    /// Deliveries so far, when the fleet runs in this process (for the progress bar).
    pub fn live_deliveries(&self) -> Option<u64> {
        match self {
            Fleet::Local(f) => Some(f.shared().get(crate::stats::Counter::Deliveries)),
            Fleet::Workers(_) => None,
        }
    }

    pub fn processes(&self) -> usize {
        match self {
            Fleet::Local(_) => 1,
            Fleet::Workers(w) => w.len(),
        }
    }

    pub async fn go(&mut self, go: Go) -> Result<(), LoadError> {
        match self {
            Fleet::Local(f) => {
                f.go(Go {
                    sample_self: false,
                    ..go
                });
                Ok(())
            }
            Fleet::Workers(w) => {
                w.go(Go {
                    sample_self: true,
                    ..go
                })
                .await
            }
        }
    }

    pub async fn finish(self) -> Result<Partial, LoadError> {
        match self {
            Fleet::Local(f) => Ok(f.finish().await),
            Fleet::Workers(w) => w.finish().await,
        }
    }
}
