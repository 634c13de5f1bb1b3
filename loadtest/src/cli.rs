//! The command line: one subcommand per scenario, flags in groups shared between them
//! (target, rooms, connections, server sampling, output). Durations use the server's
//! config syntax (`chorus_core::duration::parse_duration`: `30s`, `500ms`, `1m30s`, `7`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Every run ends by itself: the process exits this long after the longest phase it was
/// asked for (connect timeout + run + drain), whatever the server does.
const HARD_STOP_SLACK: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(
    name = "chorus-load",
    version,
    about = "Load generator for chorus and other Centrifugo protocol v2 servers",
    long_about = "Load generator for chorus and other Centrifugo protocol v2 servers. \
                  See loadtest/README.md for every scenario, flag and output field."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Hold N subscribed connections: connect rate, handshake latency, server RSS and CPU per
    /// connection, pings answered.
    Idle(IdleArgs),
    /// Subscribers in rooms and open-loop publishing (HTTP API or client publish): latency
    /// from the scheduled send time, loss, duplicates, reorders.
    Fanout(FanoutArgs),
    /// K rooms × M members, each member (or a fraction) publishing over its own connection
    /// at a per-client rate; every member checks it gets every message of its room in order.
    Rooms(RoomsArgs),
    /// Connect rate: open N connections (TCP + upgrade + connect + subscribe) as fast as
    /// --connect-concurrency allows; handshake latency, failures by reason; optional hold.
    Storm(StormArgs),
    /// The bare-write floor of this machine, no chorus involved: send(2) of one small frame
    /// round-robin to N loopback sockets read by a built-in sink; CPU µs per write.
    Floor(FloorArgs),
    /// Internal: one worker process of a run above --max-per-process (spec on stdin).
    #[command(hide = true)]
    Worker,
}

impl Cmd {
    /// When the watchdog ends the process (`None` for a worker: its spec says).
    pub fn hard_stop(&self) -> Option<Duration> {
        let d = match self {
            Cmd::Idle(a) => a.common.connect.connect_timeout + a.duration,
            Cmd::Storm(a) => a.common.connect.connect_timeout + a.hold,
            Cmd::Fanout(a) => a.common.connect.connect_timeout + a.run.duration + a.run.drain,
            Cmd::Rooms(a) => a.common.connect.connect_timeout + a.run.duration + a.run.drain,
            Cmd::Floor(a) => a.duration * 2,
            Cmd::Worker => return None,
        };
        Some(d + HARD_STOP_SLACK)
    }

    pub fn output(&self) -> Option<&OutputArgs> {
        match self {
            Cmd::Idle(a) => Some(&a.common.output),
            Cmd::Storm(a) => Some(&a.common.output),
            Cmd::Fanout(a) => Some(&a.common.output),
            Cmd::Rooms(a) => Some(&a.common.output),
            Cmd::Floor(a) => Some(&a.output),
            Cmd::Worker => None,
        }
    }
}

pub fn duration(s: &str) -> Result<Duration, String> {
    chorus_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// `--source-ips`: `none`, or IPv4 ranges and addresses (see `net::parse_source_ips`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceIps(pub Vec<IpAddr>);

fn source_ips(s: &str) -> Result<SourceIps, String> {
    crate::net::parse_source_ips(s).map(SourceIps)
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a fraction in (0, 1]")),
    }
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// Which server, which protocol, which credentials, which channels.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Target")]
pub struct TargetArgs {
    /// WebSocket endpoint; repeat to spread clients round-robin over several gateways
    /// (connection i → URL i mod n, so the members of a room land on different gateways).
    #[arg(
        long = "url",
        default_value = "ws://127.0.0.1:8000/connection/websocket"
    )]
    pub urls: Vec<String>,
    /// Protobuf protocol (subprotocol `centrifuge-protobuf`) instead of JSON.
    #[arg(long)]
    pub protobuf: bool,
    /// One connection token for every client.
    #[arg(long, conflicts_with = "hmac_secret")]
    pub token: Option<String>,
    /// Mint a per-user HS256 token (sub = "u<i>", exp = now + 1 h) with this secret
    /// (`client.token.hmac_secret_key` of the server). Neither flag: the server must be
    /// insecure (`client.insecure`).
    #[arg(long)]
    pub hmac_secret: Option<String>,
    /// Channel of room r: `<prefix>:<r>`. The namespace must allow client subscribe (and
    /// publish, for client publishers).
    #[arg(long, default_value = "chat:bench")]
    pub channel_prefix: String,
}

/// How connections are grouped into rooms.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Rooms")]
pub struct LayoutArgs {
    /// Number of rooms (channels `<prefix>:0` … `<prefix>:<rooms-1>`).
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Subscribers per room; connections = rooms × members-per-room.
    #[arg(long, default_value_t = 10)]
    pub members_per_room: usize,
    /// Total connections instead of rooms × members: members per room = ⌈N / rooms⌉, the
    /// last room may be smaller.
    #[arg(long)]
    pub connections: Option<usize>,
}

/// How connections are opened, from where, by how many processes.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Connections")]
pub struct ConnectArgs {
    /// Source addresses bound round-robin before connect: `A-B` ranges and/or a comma list
    /// (each gives ~28k sockets), or `none` (the kernel picks). For big local runs:
    /// `127.0.0.11-127.0.0.40`.
    #[arg(long, default_value = "none", value_parser = source_ips)]
    pub source_ips: SourceIps,
    /// Handshakes (TCP + upgrade + connect + subscribe) in flight at once, over all
    /// processes.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// A connection not subscribed this long after the start counts as failed (`timeout`).
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub connect_timeout: Duration,
    /// A connection that drops before the end reconnects (backoff 50 ms doubling to 2 s)
    /// and resubscribes with `recover: true` from its last offset and epoch.
    #[arg(long)]
    pub reconnect: bool,
    /// Connections per process: above it chorus-load starts worker processes (itself, with
    /// a hidden `worker` subcommand) and merges their results. Keep it below the open-files
    /// limit (ulimit -n) minus a few hundred.
    #[arg(long, default_value_t = 15_000)]
    pub max_per_process: usize,
}

/// Processes whose CPU and memory are sampled around the measured window.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Server sampling (same machine only)")]
pub struct ServerArgs {
    /// Server process to sample (utime+stime of /proc/PID/stat, VmRSS); repeatable, summed.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<String>,
    /// Another process (e.g. redis-server) whose CPU over the measured window (idle: the
    /// hold) is reported apart (`extra_cpu_s`, `extra_cpu_pct_core`); repeatable, summed.
    #[arg(long = "extra-pid")]
    pub extra_pids: Vec<String>,
}

/// Where results go (the human table always goes to stdout).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Also print the result as one JSON line on stdout (the scenario scripts read it).
    #[arg(long)]
    pub json: bool,
    /// Write the result as one JSON object (with percentile and timeline arrays) to FILE;
    /// also writes `<stem>.md` and the plots `<stem>-latency.svg`, `<stem>-timeline.svg`
    /// next to it unless --md-out / --plots say otherwise.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Write the result as a Markdown table to FILE.
    #[arg(long, value_name = "FILE")]
    pub md_out: Option<PathBuf>,
    /// Write the SVG plots into DIR (latency by percentile; events per second).
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// No progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

/// The flags every connection scenario shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The timing and payload of a publishing run.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Run")]
pub struct RunArgs {
    /// Publishing time, after all connections are up.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub duration: Duration,
    /// Leading part of --duration excluded from latency and throughput figures.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub warmup: Duration,
    /// Wait after the last publication before counting losses.
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub drain: Duration,
    /// Payload size in bytes (a JSON string carrying publisher, sequence, scheduled time).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PublishVia {
    /// `POST {--api}/publish` from the coordinator process.
    Api,
    /// Every member publishes over its own WebSocket.
    Client,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// How long to hold the connections once all are up.
    #[arg(long, default_value = "30s", value_parser = duration, help_heading = "Run")]
    pub duration: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    /// Hold the connections this long after the storm, then close them.
    #[arg(long, default_value = "0s", value_parser = duration, help_heading = "Run")]
    pub hold: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub run: RunArgs,
    /// Publications per second, all rooms together.
    #[arg(long, default_value_t = 100.0, value_parser = positive, help_heading = "Publishing")]
    pub rate: f64,
    #[arg(long, value_enum, default_value_t = PublishVia::Api, help_heading = "Publishing")]
    pub publish_via: PublishVia,
    /// Server HTTP API base (for --publish-via api).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8000/api",
        help_heading = "Publishing"
    )]
    pub api: String,
    /// `X-API-Key` (the server's `http_api.key`).
    #[arg(long, default_value = "", help_heading = "Publishing")]
    pub api_key: String,
    /// Keep-alive HTTP connections of the API publisher (rooms are split between them).
    #[arg(long, default_value_t = 16, help_heading = "Publishing")]
    pub api_connections: usize,
}

#[derive(Args, Debug, Clone)]
pub struct RoomsArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub run: RunArgs,
    /// Publications per second of each publishing member.
    #[arg(long, default_value_t = 1.0, value_parser = positive, help_heading = "Publishing")]
    pub rate_per_client: f64,
    /// Fraction of each room's members that publish (the first ⌈f·M⌉ of the room).
    #[arg(long, default_value_t = 1.0, value_parser = fraction, help_heading = "Publishing")]
    pub publishers: f64,
}

#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    /// Loopback sockets written round-robin.
    #[arg(long, default_value_t = 5_000)]
    pub connections: usize,
    /// Bytes per write: a WebSocket text frame, header included (112 = 2 + 110 payload).
    #[arg(long, default_value_t = 112)]
    pub frame_bytes: usize,
    /// Sending time (also the cap with --writes).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Stop after this many writes (or --duration, whichever comes first).
    #[arg(long)]
    pub writes: Option<u64>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chorus-load").chain(args.iter().copied()))
    }

    #[test]
    fn durations_use_the_server_syntax() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        assert!(duration("x").unwrap_err().contains("invalid duration"));
    }

    #[test]
    fn defaults_for_a_remote_server() {
        let Cmd::Fanout(a) = parse(&["fanout"]).unwrap().cmd else {
            panic!("fanout")
        };
        assert!(
            a.common.connect.source_ips.0.is_empty(),
            "no loopback aliases by default"
        );
        assert_eq!(a.common.connect.max_per_process, 15_000);
        assert_eq!(a.run.duration, Duration::from_secs(30));
        assert_eq!(a.publish_via, PublishVia::Api);
        assert_eq!(
            Cmd::Fanout(a).hard_stop(),
            Some(Duration::from_secs(60 + 30 + 3 + 30))
        );
    }

    #[test]
    fn the_scenario_scripts_flags_still_parse() {
        // loadtest/scenarios/s4.sh, with --reconnect and two gateways.
        let cli = parse(&[
            "fanout",
            "--url",
            "ws://127.0.0.1:1/connection/websocket",
            "--url",
            "ws://127.0.0.1:2/connection/websocket",
            "--publish-via",
            "client",
            "--rooms",
            "300",
            "--members-per-room",
            "10",
            "--rate",
            "2000",
            "--payload-bytes",
            "100",
            "--duration",
            "20s",
            "--warmup",
            "5s",
            "--connect-concurrency",
            "500",
            "--server-pid",
            "1",
            "--server-pid",
            "2",
            "--extra-pid",
            "3",
            "--reconnect",
            "--json",
        ])
        .unwrap();
        let Cmd::Fanout(a) = cli.cmd else { panic!() };
        assert_eq!(a.common.target.urls.len(), 2);
        assert_eq!(a.common.server.server_pids, ["1", "2"]);
        assert!(a.common.connect.reconnect && a.common.output.json);
        assert!(parse(&[
            "idle",
            "--source-ips",
            "127.0.0.11-127.0.0.40",
            "--duration",
            "1s"
        ])
        .is_ok());
        assert!(parse(&["rooms", "--publishers", "0"]).is_err());
        assert!(parse(&["fanout", "--rate", "-1"]).is_err());
        assert!(parse(&["storm", "--token", "t", "--hmac-secret", "s"]).is_err());
    }
}
