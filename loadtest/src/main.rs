//! chorus-load: the project's load generator (see docs/benchmarks.md).
//!
//! * `fanout` — subscribers in rooms, open-loop publishing (HTTP API or client `publish`),
//!   latency from the scheduled send time, loss / duplicates / reorders per (room, publisher).
//! * `idle` — many subscribed connections held open; connect rate, handshake latency,
//!   failures, server RSS and CPU per connection.

mod client;
mod histogram;
mod jwt;
mod publisher;
mod recovery;
mod run;
mod stats;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "chorus-load",
    about = "Load generator for chorus (Centrifugo protocol v2)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Subscribers in rooms plus open-loop publishing; latency, loss, reorders.
    Fanout(FanoutArgs),
    /// Hold many subscribed connections; connect rate and per-connection server cost.
    Idle(IdleArgs),
}

/// Options shared by both subcommands.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// WebSocket URL; repeat to spread clients round-robin over several servers.
    #[arg(
        long = "url",
        default_value = "ws://127.0.0.1:8000/connection/websocket"
    )]
    pub urls: Vec<String>,
    /// Use the Protobuf protocol (subprotocol centrifuge-protobuf) instead of JSON.
    #[arg(long)]
    pub protobuf: bool,
    /// Connection token sent by every client.
    #[arg(long, conflicts_with = "hmac_secret")]
    pub token: Option<String>,
    /// Mint a per-user HS256 token (sub = "u<N>") with this secret.
    #[arg(long)]
    pub hmac_secret: Option<String>,
    /// Number of rooms (channels `<prefix>:<0..rooms>`).
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Subscribers per room; connections = rooms × members-per-room.
    #[arg(long, default_value_t = 10)]
    pub members_per_room: usize,
    #[arg(long, default_value = "chat:bench")]
    pub channel_prefix: String,
    /// Source addresses for client sockets, round-robin: `A-B` range and/or comma list;
    /// `none` lets the kernel choose.
    #[arg(long, default_value = "127.0.0.11-127.0.0.40")]
    pub source_ips: String,
    /// Handshakes (TCP + upgrade + connect + subscribe) in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Give up on connections not established after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Measured run length (after all connections are up).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Server process to sample (utime+stime, VmRSS); repeatable.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<String>,
    /// Another process (e.g. redis-server) whose CPU over the measured window is reported
    /// separately (`extra_cpu_s`, `extra_cpu_pct_core`); repeatable, summed.
    #[arg(long = "extra-pid")]
    pub extra_pids: Vec<String>,
    /// Also print the result as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// When a connection drops before the end, reconnect (backoff 50 ms doubling to 2 s) and
    /// resubscribe with `recover: true` from the last seen offset and epoch.
    #[arg(long)]
    pub reconnect: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PublishVia {
    Api,
    Client,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Publications per second, all rooms together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// `api`: POST {api}/publish; `client`: every member publishes over its connection.
    #[arg(long, value_enum, default_value_t = PublishVia::Api)]
    pub publish_via: PublishVia,
    #[arg(long, default_value = "http://127.0.0.1:8000/api")]
    pub api: String,
    #[arg(long, default_value = "")]
    pub api_key: String,
    /// Keep-alive HTTP connections used by the API publisher.
    #[arg(long, default_value_t = 16)]
    pub api_connections: usize,
    /// Payload size in bytes (JSON string carrying publisher, sequence, scheduled time).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Leading part of --duration excluded from latency and throughput figures.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Wait after the last publication before counting losses.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(n * mul))
}

/// Parses `127.0.0.11-127.0.0.40,127.0.1.5` (IPv4 ranges and single addresses) or `none`.
pub fn parse_source_ips(s: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    if s.trim().is_empty() || s.trim() == "none" {
        return Ok(out);
    }
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let a: u32 = a.trim().parse::<Ipv4Addr>()?.into();
            let b: u32 = b.trim().parse::<Ipv4Addr>()?.into();
            if b < a || b - a > 65_536 {
                bail!("bad source range {part}");
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(part.parse().map_err(|_| anyhow!("bad source ip {part}"))?);
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = match &cli.cmd {
        Cmd::Fanout(a) => a.common.clone(),
        Cmd::Idle(a) => a.common.clone(),
    };
    if common.rooms == 0 || common.members_per_room == 0 || common.urls.is_empty() {
        bail!("--rooms, --members-per-room and --url must be non-zero");
    }
    // Hard stop: every run ends by itself, whatever the server does.
    let limit = common.connect_timeout + common.duration + Duration::from_secs(30);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("chorus-load: hard stop after {limit:?}");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Fanout(a) => run::fanout(a).await,
            Cmd::Idle(a) => run::idle(a).await,
        }
    })
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_source_ranges() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("x").is_err());
        let ips = parse_source_ips("127.0.0.11-127.0.0.13,127.0.1.1").expect("valid");
        assert_eq!(ips.len(), 4);
        assert_eq!(ips[2].to_string(), "127.0.0.13");
        assert!(parse_source_ips("none").expect("valid").is_empty());
        assert!(parse_source_ips("127.0.0.9-127.0.0.1").is_err());
    }
}
