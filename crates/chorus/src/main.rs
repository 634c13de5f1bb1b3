//! `chorus`: the binary. Parses arguments, loads and validates the config, sets up logging,
//! runs the gateway (or the presence service) until SIGTERM/SIGINT. Everything else lives in
//! `chorus-gateway` and `chorus-presence`.
//!
//! Commands: `serve`, `presence`, `checkconfig`, `gentoken`, `version`. With no command `chorus` serves
//! (so `cargo run --release` runs the embedded default). Exit code 1 on configuration or
//! runtime errors, with the message on stderr.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chorus_gateway::auth;
use chorus_gateway::config::{Config, Loaded, LogConfig, LogFormat};

/// jemalloc instead of glibc malloc: glibc's per-thread arenas fragment around the
/// handshake-time buffers of many connections (0.7 KiB per idle connection more; numbers in
/// Cargo.toml and docs/benchmarks.md). Feature `jemalloc`, on by default.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "chorus",
    version,
    about = "Real-time messaging server (Centrifugo v2 client protocol)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command: `chorus [serve options]` is `chorus serve [serve options]`.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (with no --config: a local development node with the demo page).
    Serve(ServeArgs),
    /// Run the presence service (`presence_server.*`; see docs/presence.md).
    Presence(PresenceArgs),
    /// Load and validate a config, print warnings, exit 0 ("config ok") or 1.
    Checkconfig(ConfigArgs),
    /// Print an HS256 connection token.
    Gentoken(GentokenArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Config file (.json, .yaml, .yml, .toml). Without it the embedded default is used.
    #[arg(long, short = 'c', env = "CHORUS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config key, e.g. --set client.ping_interval=10s (repeatable; wins over
    /// the file and CHORUS_* variables).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    set: Vec<(String, String)>,
    /// Refuse the config when it has warnings (unknown keys or CHORUS_* variables, risky or
    /// placeholder settings) instead of starting with them.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Shorthand for --set http_server.port=P (0 = any free port).
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Shorthand for --set http_server.address=A.
    #[arg(long, short = 'a')]
    address: Option<String>,
}

#[derive(Debug, Args)]
struct PresenceArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Shorthand for --set presence_server.port=P (0 = any free port).
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Shorthand for --set presence_server.metrics_port=P (0 = any free port).
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Shorthand for --set presence_server.address=A.
    #[arg(long, short = 'a')]
    address: Option<String>,
}

#[derive(Debug, Args)]
struct GentokenArgs {
    /// HMAC secret; default: client.token.hmac_secret_key of --config.
    #[arg(long, short = 's')]
    secret: Option<String>,
    /// Config file to read the secret from when --secret is not given.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// User id (`sub`); may be empty for an anonymous token.
    #[arg(long, short = 'u')]
    user: String,
    /// Lifetime in seconds (`exp`); 0 = no expiry.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Connection info as JSON (`info`).
    #[arg(long)]
    info: Option<String>,
    /// Server-side channels to subscribe on connect (`channels`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Presence(args)) => presence(args),
        Some(Command::Checkconfig(args)) => checkconfig(&args),
        Some(Command::Gentoken(args)) => gentoken(&args),
        Some(Command::Version) => {
            println!("chorus {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ConfigArgs, extra: Vec<(String, String)>) -> anyhow::Result<Loaded> {
    let mut overrides = extra;
    overrides.extend(args.set.iter().cloned());
    let loaded = Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    loaded.config.validate()?;
    if args.strict && !loaded.warnings.is_empty() {
        let list: Vec<String> = loaded.warnings.iter().map(|w| format!("  - {w}")).collect();
        return Err(anyhow!(
            "--strict: the config has {} warning(s):\n{}",
            loaded.warnings.len(),
            list.join("\n")
        ));
    }
    Ok(loaded)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut extra = Vec::new();
    if let Some(port) = args.port {
        extra.push(("http_server.port".to_string(), port.to_string()));
    }
    if let Some(address) = &args.address {
        extra.push(("http_server.address".to_string(), address.clone()));
    }
    let Loaded { config, warnings } = load(&args.config, extra)?;
    init_logging(&config.log)?;
    for warning in &warnings {
        tracing::warn!(%warning, "config");
    }
    match &args.config.config {
        Some(path) => tracing::info!(path = %path.display(), "config loaded"),
        None => tracing::info!("no config file: running the embedded development default"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(chorus_gateway::server::run(config, shutdown_signal()))?;
    Ok(())
}

fn presence(args: PresenceArgs) -> anyhow::Result<()> {
    let mut extra = Vec::new();
    for (key, value) in [
        ("presence_server.port", args.port.map(|p| p.to_string())),
        (
            "presence_server.metrics_port",
            args.metrics_port.map(|p| p.to_string()),
        ),
        ("presence_server.address", args.address.clone()),
    ] {
        if let Some(value) = value {
            extra.push((key.to_string(), value));
        }
    }
    let Loaded { config, warnings } = load(&args.config, extra)?;
    init_logging(&config.log)?;
    for warning in &warnings {
        tracing::warn!(%warning, "config");
    }
    let ps = &config.presence_server;
    if ps.key.is_empty() {
        return Err(anyhow!(
            "presence_server.key is empty: set it (e.g. CHORUS_PRESENCE_SERVER_KEY); every call must carry it"
        ));
    }
    let mut service = chorus_presence::ServiceConfig::new(ps.key.clone());
    service.lease_ttl = ps.lease_ttl.get();
    service.warmup = ps.lease_ttl.get();
    service.max_message_size = ps.max_message_size;
    service.max_node_entries = ps.max_node_entries;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let grpc = tokio::net::TcpListener::bind((ps.address.as_str(), ps.port))
            .await
            .with_context(|| format!("cannot bind {}:{}", ps.address, ps.port))?;
        let metrics = tokio::net::TcpListener::bind((ps.address.as_str(), ps.metrics_port))
            .await
            .with_context(|| format!("cannot bind {}:{}", ps.address, ps.metrics_port))?;
        let handle = chorus_gateway::metrics::install_recorder();
        let grpc_addr = grpc.local_addr()?;
        let metrics_addr = metrics.local_addr()?;
        tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, lease_ttl = %ps.lease_ttl, "presence service starting");
        println!("chorus presence listening on http://{grpc_addr} (metrics http://{metrics_addr}/metrics)");
        chorus_presence::serve(
            chorus_presence::Listeners {
                grpc,
                metrics: Some((metrics, chorus_gateway::metrics::render_with_process(handle))),
            },
            service,
            shutdown_signal(),
        )
        .await?;
        tracing::info!("presence service stopped");
        Ok(())
    })
}

fn checkconfig(args: &ConfigArgs) -> anyhow::Result<()> {
    let loaded = Config::load(args.config.as_deref(), std::env::vars(), &args.set)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    load(args, Vec::new())?;
    println!("config ok");
    Ok(())
}

fn gentoken(args: &GentokenArgs) -> anyhow::Result<()> {
    let secret = match (&args.secret, &args.config) {
        (Some(secret), _) => secret.clone(),
        (None, Some(path)) => {
            let loaded = Config::load(Some(path), std::env::vars(), &[])?;
            loaded.config.client.token.hmac_secret_key
        }
        (None, None) => {
            return Err(anyhow!(
                "pass --secret, or --config with a client.token.hmac_secret_key"
            ))
        }
    };
    if secret.is_empty() {
        return Err(anyhow!(
            "client.token.hmac_secret_key is empty: nothing to sign with"
        ));
    }
    let info: Option<serde_json::Value> = args
        .info
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--info must be JSON")?;
    let channels: Vec<String> = args
        .channels
        .iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    let claims = auth::connection_token_claims(
        &args.user,
        Duration::from_secs(args.ttl),
        info.as_ref(),
        &channels,
    );
    println!("{}", auth::sign_hs256(&secret, &claims)?);
    Ok(())
}

/// `RUST_LOG` wins over `log.level`; `log.format` picks text or JSON lines. Logs go to stderr
/// (stdout carries the "chorus listening on …" line).
fn init_logging(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).context("invalid RUST_LOG")?
        }
        _ => EnvFilter::try_new(&log.level).context("invalid log.level")?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow!("cannot initialise logging: {e}"))
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "cannot listen for SIGINT either");
                std::future::pending::<()>().await;
            }
            return;
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(int) => int,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGINT; only SIGTERM stops the server");
            term.recv().await;
            tracing::info!(signal = "SIGTERM", "shutting down");
            return;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
}
