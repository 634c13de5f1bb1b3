//! Runs above `--max-per-process` connections: the coordinator re-executes itself
//! (`current_exe`, hidden `worker` subcommand) once per slice of the layout, talks to each
//! worker in JSON lines over its stdin/stdout, and merges their [`Partial`] results.
//!
//! Conversation: coordinator → `{"spec":…}`; worker → `{"progress":…}`… then `{"ready":…}`;
//! once every worker is ready, coordinator → `{"go":…}`; later → `"stop"`; worker →
//! `{"result":…}` (histograms as base64 V2 serializations) and exits. A worker whose stdin
//! closes (the coordinator died) exits at once; so does one past its spec's hard stop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::error::LoadError;
use crate::fleet::{Connected, FleetSpec, Go};
use crate::net;
use crate::partial::Partial;

/// Environment variable naming the binary to start as workers (default: this executable).
pub const EXE_ENV: &str = "CHORUS_LOAD_EXE";
/// Time a worker gets to start, on top of the connect timeout.
const STARTUP_GRACE: Duration = Duration::from_secs(30);
/// Time workers get to stop and send their results.
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    Spec(Box<FleetSpec>),
    Go(Go),
    Stop,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromWorker {
    Progress { done: u64, ok: u64 },
    Ready(Connected),
    Result(Box<Partial>),
}

/// What the reader task of worker `index` saw.
type Heard = (usize, Result<FromWorker, String>);

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

/// The worker processes of one run.
pub struct WorkerSet {
    workers: Vec<Worker>,
    heard: mpsc::UnboundedReceiver<Heard>,
}

fn worker_err(index: usize, reason: impl Into<String>) -> LoadError {
    LoadError::Worker {
        index,
        reason: reason.into(),
    }
}

async fn send(w: &mut Worker, index: usize, msg: &ToWorker) -> Result<(), LoadError> {
    let mut line = serde_json::to_vec(msg).map_err(|e| worker_err(index, e.to_string()))?;
    line.push(b'\n');
    w.stdin
        .write_all(&line)
        .await
        .map_err(|e| worker_err(index, format!("stdin: {e}")))?;
    w.stdin
        .flush()
        .await
        .map_err(|e| worker_err(index, format!("stdin: {e}")))
}

impl WorkerSet {
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Starts `count` workers on contiguous slices of `spec.lo..spec.hi` and waits until
    /// each reports its connect phase done.
    pub async fn connect(
        spec: &FleetSpec,
        count: usize,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(Self, Connected), LoadError> {
        let exe = match std::env::var_os(EXE_ENV) {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe().map_err(|e| LoadError::io("current_exe", e))?,
        };
        let total = spec.hi - spec.lo;
        let per = total.div_ceil(count);
        let (tx, heard) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let lo = spec.lo + index * per;
            let hi = (lo + per).min(spec.hi);
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| LoadError::io(format!("starting worker {}", exe.display()), e))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(worker_err(index, "no stdio pipes"));
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                loop {
                    let msg = match lines.next_line().await {
                        Ok(Some(l)) => {
                            serde_json::from_str(&l).map_err(|e| format!("bad line: {e}"))
                        }
                        Ok(None) => Err("exited".to_string()),
                        Err(e) => Err(format!("stdout: {e}")),
                    };
                    let end = msg.is_err();
                    if tx.send((index, msg)).is_err() || end {
                        break;
                    }
                }
            });
            let mut w = Worker { child, stdin };
            let slice = FleetSpec {
                lo,
                hi,
                sources: net::sources_for(&spec.sources, index, count),
                connect_concurrency: spec.connect_concurrency.div_ceil(count).max(1),
                ..spec.clone()
            };
            send(&mut w, index, &ToWorker::Spec(Box::new(slice))).await?;
            workers.push(w);
        }
        let mut set = WorkerSet { workers, heard };
        let mut state = vec![(0u64, 0u64, None::<Connected>); count];
        let deadline = tokio::time::Instant::now() + spec.connect_timeout + STARTUP_GRACE;
        while state.iter().any(|s| s.2.is_none()) {
            let (index, msg) = match tokio::time::timeout_at(deadline, set.heard.recv()).await {
                Ok(Some(h)) => h,
                Ok(None) => return Err(worker_err(0, "all workers gone")),
                Err(_) => return Err(worker_err(0, "connect phase did not end in time")),
            };
            match msg.map_err(|e| worker_err(index, e))? {
                FromWorker::Progress { done, ok } => {
                    state[index].0 = done;
                    state[index].1 = ok;
                }
                FromWorker::Ready(c) => {
                    state[index] = (c.ok + c.failed, c.ok, Some(c));
                }
                FromWorker::Result(_) => return Err(worker_err(index, "result before go")),
            }
            progress(
                state.iter().map(|s| s.0).sum(),
                state.iter().map(|s| s.1).sum(),
            );
        }
        let connected = Connected {
            ok: state.iter().filter_map(|s| s.2).map(|c| c.ok).sum(),
            failed: state.iter().filter_map(|s| s.2).map(|c| c.failed).sum(),
        };
        Ok((set, connected))
    }

    pub async fn go(&mut self, go: Go) -> Result<(), LoadError> {
        for (i, w) in self.workers.iter_mut().enumerate() {
            send(w, i, &ToWorker::Go(go)).await?;
        }
        Ok(())
    }

    /// Stops every worker, merges their results and waits for them to exit.
    pub async fn finish(mut self) -> Result<Partial, LoadError> {
        for (i, w) in self.workers.iter_mut().enumerate() {
            send(w, i, &ToWorker::Stop).await?;
        }
        let mut results: Vec<Option<Partial>> = (0..self.workers.len()).map(|_| None).collect();
        let deadline = tokio::time::Instant::now() + RESULT_TIMEOUT;
        while results.iter().any(Option::is_none) {
            let (index, msg) = match tokio::time::timeout_at(deadline, self.heard.recv()).await {
                Ok(Some(h)) => h,
                Ok(None) => return Err(worker_err(0, "all workers gone")),
                Err(_) => return Err(worker_err(0, "no result in time")),
            };
            match msg {
                Ok(FromWorker::Result(p)) => results[index] = Some(*p),
                Ok(_) => {}
                // Exit after its result is fine; before, it is not.
                Err(e) if results[index].is_none() => return Err(worker_err(index, e)),
                Err(_) => {}
            }
        }
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(5), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.start_kill();
            }
        }
        let mut merged: Option<Partial> = None;
        for p in results.into_iter().flatten() {
            match &mut merged {
                Some(m) => m.merge(p),
                None => merged = Some(p),
            }
        }
        merged.ok_or_else(|| worker_err(0, "no results"))
    }
}
