//! chorus-load: the load generator operators size a deployment with (see
//! `loadtest/README.md`). The binary (`main.rs`) only parses flags and prints; everything
//! runs from here, so tests drive the scenarios in-process against a real gateway.
//!
//! Parts:
//! * `cli` — the flags of every scenario; `run` dispatches a parsed [`cli::Cmd`];
//! * `scenario` — `hold` (idle, storm) and `publish` (fanout, rooms); `floor` — the bare
//!   send(2) reference with its built-in sink;
//! * `fleet` — the connections of a run, in this process or in worker processes
//!   (`workers` on the coordinator side, `worker` in the child), merged as a `partial`;
//! * `client` — one connection: `handshake`, the protocol `adapter` (frame → event), the
//!   read loop and publishing writer; `recovery` — resubscribe with recovery;
//!   `publisher` — the HTTP API publisher;
//! * `stats` — counters, timelines, stream order tracking; `hist` — HdrHistogram helpers;
//!   `procfs` — CPU and RSS from /proc; `token` — HS256 connection tokens; `net` — targets,
//!   source addresses and ephemeral-port arithmetic;
//! * `report` — the table, JSON, Markdown and SVG `plots`; `progress` — progress bars.

pub mod cli;
pub mod client;
pub mod error;
pub mod fleet;
pub mod floor;
pub mod hist;
pub mod net;
pub mod partial;
pub mod procfs;
pub mod progress;
pub mod publisher;
pub mod recovery;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod token;
pub mod worker;
pub mod workers;

pub use error::LoadError;
pub use report::Report;

use cli::Cmd;
use progress::Progress;

/// Runs one scenario to its report. `Cmd::Worker` is not a scenario: see [`worker::main`].
pub async fn run(cmd: &Cmd) -> Result<Report, LoadError> {
    let progress = Progress::new(cmd.output().is_none_or(|o| o.quiet));
    match cmd {
        Cmd::Idle(a) => scenario::hold::idle(a, &progress).await,
        Cmd::Storm(a) => scenario::hold::storm(a, &progress).await,
        Cmd::Fanout(a) => scenario::publish::fanout(a, &progress).await,
        Cmd::Rooms(a) => scenario::publish::rooms(a, &progress).await,
        Cmd::Floor(a) => floor::floor(a, &progress).await,
        Cmd::Worker => Err(LoadError::Args(
            "`worker` is started by chorus-load itself".into(),
        )),
    }
}
