//! Progress bars of the long phases (connect, run, drain) on stderr with `indicatif`: hidden
//! when stderr is not a terminal (scripts, CI) or with `--quiet`. Log lines go through
//! [`log`] so that they do not tear a bar that is being drawn.

use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of this process; the first [`Progress`] made decides where they draw.
static MULTI: OnceLock<MultiProgress> = OnceLock::new();

/// Prints one line on stderr above the bars.
pub fn log(line: &str) {
    match MULTI.get() {
        Some(m) => m.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// Makes the bars of one run.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            // indicatif draws nothing when stderr is not a terminal.
            ProgressDrawTarget::stderr()
        };
        let multi = MULTI
            .get_or_init(|| MultiProgress::with_draw_target(target))
            .clone();
        Self { multi, quiet }
    }

    fn add(&self, pb: ProgressBar) -> ProgressBar {
        if self.quiet {
            pb.set_draw_target(ProgressDrawTarget::hidden());
            pb
        } else {
            self.multi.add(pb)
        }
    }

    /// A bar counting `len` items (connections, writes).
    pub fn counter(&self, phase: &str, len: u64) -> ProgressBar {
        let pb = self.add(ProgressBar::new(len));
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(phase.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }

    /// A bar over a fixed time (run, drain, hold); advance it with [`tick_until`].
    pub fn timer(&self, phase: &str, length: Duration) -> ProgressBar {
        let pb = self.add(ProgressBar::new(length.as_millis().max(1) as u64));
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_prefix(phase.to_string());
        pb
    }
}

/// Sleeps until `until`, moving `pb` every 200 ms; `msg` is called for the bar's message.
pub async fn tick_until(
    pb: &ProgressBar,
    until: std::time::Instant,
    mut msg: impl FnMut() -> String,
) {
    let start = std::time::Instant::now();
    loop {
        let now = std::time::Instant::now();
        pb.set_position(now.duration_since(start).as_millis() as u64);
        pb.set_message(msg());
        if now >= until {
            break;
        }
        let next = (now + Duration::from_millis(200)).min(until);
        tokio::time::sleep_until(next.into()).await;
    }
    pb.finish_and_clear();
}
