//! chorus-load: parses flags, raises the open-files limit, arms the hard-stop watchdog,
//! runs the scenario (`chorus_loadtest::run`) and prints its report.

use std::process::ExitCode;

use clap::Parser;

use chorus_loadtest::cli::{Cli, Cmd};

/// Exit code of the watchdog (the run did not end in time).
const EXIT_HARD_STOP: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every socket is a file: take the hard limit (a no-op when already there).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if let Cmd::Worker = cli.cmd {
        return match chorus_loadtest::worker::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chorus-load worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(limit) = cli.cmd.hard_stop() {
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("chorus-load: hard stop after {limit:?}");
            std::process::exit(i32::from(EXIT_HARD_STOP));
        });
    }
    match run(&cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &Cmd) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(chorus_loadtest::run(cmd))?;
    if let Some(out) = cmd.output() {
        for path in chorus_loadtest::report::emit(&report, out)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
