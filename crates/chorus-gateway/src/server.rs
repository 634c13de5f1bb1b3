//! The hyper 1 HTTP/1.1 server of a gateway node: listener, accept loop, graceful drain.
//!
//! Parts:
//! * this file — [`run`] (metrics recorder, node, listener, the one stdout line
//!   `chorus listening on http://IP:PORT`) and [`serve`] (accept loop and shutdown sequence),
//!   usable in-process by tests on port 0;
//! * [`routes`] — the request router: WebSocket endpoints, `/api…`, `/health`, `/ready`,
//!   `/metrics`, demo page and token.
//!
//! Shutdown: readiness goes false (`/ready` → 503), the listener is dropped, the node closes
//! its clients with 3001 spread over `shutdown.drain_window`, open HTTP connections are told to
//! finish (keep-alive ends, echo sockets close with 1001), then connection tasks are awaited
//! until `shutdown.timeout` (counted from the signal) runs out.

pub mod routes;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::presence::memory::MemoryPresence;
use chorus_core::Node;
use chorus_redis::{RedisBroker, RedisConfig};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::ws::{WsContext, WsSettings};
use crate::{app, metrics};

/// Shared by every request of a server.
#[derive(Debug)]
pub struct ServerState {
    pub config: Arc<Config>,
    pub node: Node,
    pub ws: WsContext,
    /// False from the shutdown signal on: `/ready` answers 503.
    pub ready: AtomicBool,
    pub metrics: PrometheusHandle,
}

/// Builds the node from the config: engine `memory`, or `redis` (publications and history in
/// Redis, presence per node for now). Must run inside a tokio runtime. An unreachable Redis is
/// not an error: the node starts not ready (`/ready` 503) and the broker keeps reconnecting.
pub fn build_node(config: &Config) -> anyhow::Result<Node> {
    let tokens = app::token_verifier(config).context("token verifier")?;
    match config.engine.kind.as_str() {
        "memory" => Ok(Node::new(
            app::node_options(config),
            MemoryBroker::with_options(config.engine.memory.broker_options()),
            MemoryPresence::new(),
            tokens,
        )),
        "redis" => {
            let broker = RedisBroker::start(redis_config(config), uuid::Uuid::new_v4().to_string())
                .context("engine.redis")?;
            Ok(Node::new(
                app::node_options(config),
                broker,
                MemoryPresence::new(),
                tokens,
            ))
        }
        other => anyhow::bail!("engine.type {other:?} is not supported by this build"),
    }
}

/// `engine.redis.*` as the broker's config.
pub fn redis_config(config: &Config) -> RedisConfig {
    let r = &config.engine.redis;
    RedisConfig {
        addresses: r.address.iter().map(|a| a.trim().to_string()).collect(),
        cluster: r.cluster,
        prefix: r.prefix.clone(),
        partitions: r.partitions,
        connect_timeout: r.connect_timeout.get(),
        command_timeout: r.command_timeout.get(),
        liveness_probe_interval: r.liveness_probe_interval.get(),
        liveness_probe_timeout: r.liveness_probe_timeout.get(),
        ..RedisConfig::default()
    }
}

/// Binds `http_server.address:port` with `SO_REUSEADDR` and backlog `tcp_backlog`. An empty
/// address means all IPv4 interfaces.
pub async fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    let http = &config.http_server;
    let host = if http.address.trim().is_empty() {
        "0.0.0.0"
    } else {
        http.address.trim()
    };
    let addr: SocketAddr = tokio::net::lookup_host((host, http.port))
        .await
        .with_context(|| format!("resolving http_server.address {host:?}"))?
        .next()
        .with_context(|| format!("http_server.address {host:?} resolves to nothing"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    Ok(socket.listen(http.tcp_backlog.max(1))?)
}

/// Runs a node from its config until `shutdown` resolves and the drain is done.
///
/// Prints exactly one line to stdout, `chorus listening on http://IP:PORT`, once the listener
/// is bound (scripts and black-box tests wait for it).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    metrics::install();
    let node = build_node(&config)?;
    let listener = bind(&config).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, node = %node.id(), "chorus listening");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "chorus listening on http://{local}")?;
        out.flush()?;
    }
    serve(listener, Arc::new(config), node, shutdown).await
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = WsSettings::new(
        config.websocket.message_size_limit,
        config.websocket.write_timeout.get(),
        &config.client.allowed_origins,
    )
    .context("client.allowed_origins")?;
    let tracker = TaskTracker::new();
    let closing = CancellationToken::new();
    let state = Arc::new(ServerState {
        config: config.clone(),
        node: node.clone(),
        ws: WsContext {
            settings: Arc::new(settings),
            tracker: tracker.clone(),
            shutdown: closing.clone(),
        },
        ready: AtomicBool::new(true),
        metrics: metrics::install(),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.http_server.header_read_timeout.get())
        .keep_alive(true);
    let builder = Arc::new(builder);

    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    spawn_connection(stream, peer, &state, &builder, &tracker, &closing);
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }

    let deadline = Instant::now() + config.shutdown.timeout.get();
    tracing::info!("shutting down: draining connections");
    state.ready.store(false, Ordering::Release);
    drop(listener);
    node.shutdown(
        config.shutdown.drain_window.get(),
        config.shutdown.timeout.get(),
    )
    .await;
    closing.cancel();
    tracker.close();
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    if tokio::time::timeout(remaining, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = tracker.len(),
            "shutdown grace elapsed with connections still open"
        );
    }
    tracing::info!("shutdown complete");
    Ok(())
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: &Arc<ServerState>,
    builder: &Arc<http1::Builder>,
    tracker: &TaskTracker,
    closing: &CancellationToken,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set TCP_NODELAY failed");
    }
    let state = state.clone();
    let builder = builder.clone();
    let closing = closing.clone();
    tracker.spawn(async move {
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(routes::route(req, peer, &state).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut conn = pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = closing.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, %peer, "http connection ended with an error");
        }
    });
}
