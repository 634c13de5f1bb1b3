//! The worker side of a multi-process run (`chorus-load worker`, started by `workers`): a
//! [`LocalFleet`] driven by the coordinator's JSON lines on stdin, answering on stdout.
//!
//! Watchdogs: stdin closing (the coordinator died or gave up) ends the process at once, and
//! so does the spec's hard stop. Nothing but protocol lines may go to stdout.

use std::io::{BufRead, Write};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::LoadError;
use crate::fleet::LocalFleet;
use crate::workers::{FromWorker, ToWorker};

/// Exit code when the coordinator went away.
const EXIT_ORPHANED: i32 = 4;
/// Exit code of the hard stop.
const EXIT_HARD_STOP: i32 = 3;

fn emit(msg: &FromWorker) -> Result<(), LoadError> {
    let line = serde_json::to_string(msg).map_err(|e| LoadError::Worker {
        index: 0,
        reason: e.to_string(),
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| LoadError::io("worker stdout", e))
}

/// Runs one worker until the coordinator says stop (call from `main`, outside a runtime).
pub fn main() -> Result<(), LoadError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ToWorker>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<ToWorker>(&line) {
                Ok(m) => {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                Err(e) => crate::progress::log(&format!("worker: bad line from coordinator: {e}")),
            }
        }
        std::process::exit(EXIT_ORPHANED);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::io("tokio runtime", e))?;
    rt.block_on(async move {
        let Some(ToWorker::Spec(spec)) = rx.recv().await else {
            return Err(LoadError::Worker {
                index: 0,
                reason: "first line must be the spec".into(),
            });
        };
        let limit = spec.hard_stop;
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            crate::progress::log(&format!("chorus-load worker: hard stop after {limit:?}"));
            std::process::exit(EXIT_HARD_STOP);
        });
        let mut last = std::time::Instant::now();
        let (fleet, connected) = LocalFleet::connect(&spec, |done, ok| {
            if last.elapsed() >= Duration::from_millis(200) {
                last = std::time::Instant::now();
                let _ = emit(&FromWorker::Progress { done, ok });
            }
        })
        .await?;
        emit(&FromWorker::Ready(connected))?;
        while let Some(msg) = rx.recv().await {
            match msg {
                ToWorker::Go(go) => fleet.go(go),
                ToWorker::Stop => break,
                ToWorker::Spec(_) => {}
            }
        }
        let partial = fleet.finish().await;
        emit(&FromWorker::Result(Box::new(partial)))
    })
}
