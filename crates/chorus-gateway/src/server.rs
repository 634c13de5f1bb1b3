//! The hyper 1 HTTP/1.1 server of a gateway node: listener, accept loop, graceful drain.
//!
//! Parts:
//! * this file — [`run`] (metrics recorder, node, listeners, the stdout lines
//!   `chorus listening on http://IP:PORT` — and before it `chorus grpc api listening on
//!   IP:PORT` when the gRPC API is on — then the HTTP server and the gRPC server API on one
//!   shutdown signal) and [`serve`] (accept loop and shutdown sequence), usable in-process by
//!   tests on port 0;
//! * [`routes`] — the request router: WebSocket endpoints, `/api…`, `/health`, `/ready`,
//!   `/metrics`, demo page and token;
//! * [`conns`] — the registry of every TCP connection by accept order and state (pending, idle,
//!   busy, upgraded), and shedding at the connection budget (`http_server.max_connections`);
//! * [`accept`] — the accept loop: admission, `503` at the budget, back-off on accept errors;
//! * [`readiness`] — what `/health` and `/ready` mean (a backplane outage does not fail
//!   readiness; draining and "never reached the engine" do) and `GET /ready?verbose`.
//!
//! Request hygiene, per connection: headers within `header_read_timeout` (hyper closes the
//! socket otherwise, and the same timer bounds idle keep-alive time between requests), at most
//! `max_header_size` bytes of them (431), the whole request within `request_timeout` of its
//! first byte (408 and close — see [`routes`]), API bodies within `max_request_body_size` (413),
//! and a response write blocked for `request_timeout` ends the connection ([`conns::io`]).
//! A handler that answers without reading a request's body makes hyper close the connection
//! after the answer instead of waiting for that body.
//!
//! Shutdown: readiness goes false (`/ready` → 503), the listener is dropped, the node closes
//! its clients with 3001 spread over `shutdown.drain_window`, open HTTP connections are told to
//! finish (keep-alive ends, echo sockets close with 1001), then connection tasks are awaited
//! until `shutdown.timeout` (counted from the signal) runs out.

pub mod accept;
pub mod conns;
pub mod readiness;
pub mod routes;
pub mod tls;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_core::broker::memory::MemoryBroker;
use chorus_core::presence::memory::MemoryPresence;
use chorus_core::presence::PresenceStore;
use chorus_core::Node;
use chorus_redis::{RedisBroker, RedisError};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AuthError;
use crate::config::{Config, EngineType};
use crate::presence::ServicePresence;
use crate::ws::{WsContext, WsSettings};
use crate::{app, metrics};
use conns::io::{ConnIo, Stream};
use conns::{Budget, BudgetSource, Conn, Registry};

/// Why a node could not be built from its config (see [`build_node`]).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A `client.token` / `client.subscription_token` key does not parse.
    #[error("token verifier: {0}")]
    Tokens(#[from] AuthError),
    /// `engine.redis.*` is unusable (no address, zero partitions, a bad URL).
    #[error("engine.redis: {0}")]
    Redis(#[from] RedisError),
    /// `presence.*` is unusable (a bad endpoint URL).
    #[error("presence: {0}")]
    Presence(#[from] chorus_presence::ClientError),
    /// A backend hook (`client.proxy`, `channel.proxy`, `rpc.proxy`, `proxies`) is unusable.
    #[error("proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyBuildError),
}

/// Why a server could not start (see [`run`], [`serve`], [`bind`]). Each message carries its
/// cause (the I/O error is not chained as a `source`, so `{:#}` prints it once).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("resolving {key} {host:?}: {error}")]
    Resolve {
        key: &'static str,
        host: String,
        error: std::io::Error,
    },
    #[error("{key} {host:?} resolves to nothing")]
    NoAddress { key: &'static str, host: String },
    #[error("binding {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("client.allowed_origins: {0}")]
    AllowedOrigins(#[from] glob::PatternError),
    /// The listening line (`chorus listening on …`) could not be made or written.
    #[error("announcing the listening address: {0}")]
    Stdout(std::io::Error),
    /// The gRPC server API failed.
    #[error(transparent)]
    Grpc(#[from] crate::grpc_api::GrpcServeError),
    /// `http_server.tls` names files that cannot be used.
    #[error("http_server.tls: {0}")]
    Tls(#[from] tls::TlsError),
}

/// Shared by every request of a server.
#[derive(Debug)]
pub struct ServerState {
    pub config: Arc<Config>,
    pub node: Node,
    pub ws: WsContext,
    /// False from the shutdown signal on: `/ready` answers 503.
    pub ready: AtomicBool,
    /// TLS of the HTTP listeners (`http_server.tls`); `None`: plain TCP.
    pub tls: Option<Arc<tls::Tls>>,
    /// What else `/ready` tracks (see [`readiness`]).
    pub readiness: readiness::Readiness,
    pub metrics: PrometheusHandle,
    /// The admin console's login brake.
    pub admin: crate::admin::AdminState,
    /// Open HTTP-streaming and SSE sessions of this node.
    pub sessions: Arc<crate::emulation::Sessions>,
}

/// Builds the node from the config: engine `memory`, or `redis` (publications and history in
/// Redis); presence in process, or in the presence service when `presence.endpoints` is set.
/// Must run inside a tokio runtime. An unreachable Redis or presence service is not an error:
/// the node starts (not ready until Redis was reachable once; see [`readiness`]) and the
/// clients keep reconnecting.
pub fn build_node(config: &Config) -> Result<Node, BuildError> {
    let node = build_engine(config)?;
    // Before the first connection (a fresh node always takes them).
    node.set_proxies(crate::proxy::build(config)?);
    Ok(node)
}

/// The node without its backend hooks.
fn build_engine(config: &Config) -> Result<Node, BuildError> {
    let tokens = app::token_verifier(config)?;
    // The node's one id: the node, its broker and its presence stream name it the same way.
    let id = uuid::Uuid::new_v4().to_string();
    let presence: Arc<dyn PresenceStore> = if config.presence.endpoints.is_empty() {
        MemoryPresence::new()
    } else {
        ServicePresence::start(config, &id)?
    };
    match config.engine.kind {
        EngineType::Memory => Ok(Node::new(
            id,
            app::node_options(config),
            MemoryBroker::with_options(config.engine.memory.broker_options()),
            presence,
            tokens,
        )),
        EngineType::Redis => {
            let redis = config
                .engine
                .redis
                .broker_config()
                .map_err(|e| BuildError::Redis(RedisError::Config(e)))?;
            let broker = RedisBroker::start(redis, id.clone())?;
            Ok(Node::new(
                id,
                app::node_options(config),
                broker,
                presence,
                tokens,
            ))
        }
    }
}

/// Binds `http_server.address:port` with `SO_REUSEADDR` and backlog `tcp_backlog`. An empty
/// address means all IPv4 interfaces.
pub async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    let http = &config.http_server;
    bind_to(
        "http_server.address",
        &http.address,
        http.port,
        http.tcp_backlog,
    )
    .await
}

/// Binds the internal listener (`http_server.internal_address:internal_port`) when
/// `internal_port` is set.
pub async fn bind_internal(config: &Config) -> Result<Option<TcpListener>, ServeError> {
    let http = &config.http_server;
    if http.internal_port == 0 {
        return Ok(None);
    }
    let listener = bind_to(
        "http_server.internal_address",
        http.internal_address(),
        http.internal_port,
        http.tcp_backlog,
    )
    .await?;
    Ok(Some(listener))
}

/// Binds `host:port` (an empty host is all IPv4 interfaces) with `SO_REUSEADDR` and
/// `backlog`; `key` names the address setting in errors.
pub async fn bind_to(
    key: &'static str,
    host: &str,
    port: u16,
    backlog: u32,
) -> Result<TcpListener, ServeError> {
    let host = match host.trim() {
        "" => "0.0.0.0",
        host => host,
    };
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| ServeError::Resolve {
            key,
            host: host.to_owned(),
            error,
        })?
        .next()
        .ok_or_else(|| ServeError::NoAddress {
            key,
            host: host.to_owned(),
        })?;
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog.max(1))
    };
    bind().map_err(|error| ServeError::Bind { addr, error })
}

/// Runs a node from its config until `shutdown` resolves and the drain is done: the HTTP
/// server ([`serve`]) and, with `grpc_api.enabled`, the gRPC server API
/// ([`grpc_api::serve`](crate::grpc_api::serve)) on its own listener. Both stop on the same
/// signal and each finishes its work within `shutdown.timeout`.
///
/// Prints to stdout, once every listener is bound: with the gRPC API first
/// `chorus grpc api listening on IP:PORT`, with `http_server.internal_port`
/// `chorus internal listening on http://IP:PORT`, then always, last, exactly one line
/// `chorus listening on http://IP:PORT` (scripts and black-box tests wait for it); `https://`
/// in both when `http_server.tls` is on.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    metrics::install();
    let node = build_node(&config)?;
    let grpc = match config.grpc_api.enabled {
        true => Some(crate::grpc_api::bind(&config).await?),
        false => None,
    };
    let listener = bind(&config).await?;
    let internal = bind_internal(&config).await?;
    let local = listener.local_addr().map_err(ServeError::Stdout)?;
    let internal_local = internal
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .map_err(ServeError::Stdout)?;
    let grpc_local = grpc
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .map_err(ServeError::Stdout)?;
    if let Some(grpc_local) = grpc_local {
        tracing::info!(addr = %grpc_local, "chorus grpc api listening");
    }
    if let Some(internal_local) = internal_local {
        tracing::info!(addr = %internal_local, "chorus internal listening (server API, metrics, health)");
    }
    tracing::info!(addr = %local, node = %node.id(), "chorus listening");
    {
        // The scheme a client must use: https (wss) when the listeners serve TLS.
        let scheme = if config.http_server.tls.cert_pem_file.trim().is_empty() {
            "http"
        } else {
            "https"
        };
        let mut out = std::io::stdout().lock();
        let mut announce = || -> std::io::Result<()> {
            if let Some(grpc_local) = grpc_local {
                writeln!(out, "chorus grpc api listening on {grpc_local}")?;
            }
            if let Some(internal_local) = internal_local {
                writeln!(
                    out,
                    "chorus internal listening on {scheme}://{internal_local}"
                )?;
            }
            writeln!(out, "chorus listening on {scheme}://{local}")?;
            out.flush()
        };
        announce().map_err(ServeError::Stdout)?;
    }
    let config = Arc::new(config);
    // One signal for both servers; either server ending (an error) stops the other too.
    let stop = CancellationToken::new();
    let trigger = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = shutdown => stop.cancel(),
                () = stop.cancelled() => {}
            }
        }
    };
    let http = async {
        let result = serve_with(
            listener,
            internal,
            config.clone(),
            node.clone(),
            stop.clone().cancelled_owned(),
        )
        .await;
        stop.cancel();
        result
    };
    let grpc = async {
        let Some(listener) = grpc else {
            return Ok(());
        };
        let result = crate::grpc_api::serve(
            listener,
            config.clone(),
            node.clone(),
            stop.clone().cancelled_owned(),
        )
        .await;
        stop.cancel();
        result.map_err(ServeError::from)
    };
    let ((), http, grpc) = tokio::join!(trigger, http, grpc);
    http.and(grpc)
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(listener, None, config, node, shutdown).await
}

/// [`serve`], and with `internal` the internal listener: the server API, `/metrics`,
/// `/health` and `/ready` there only, client transports and the demo page on `listener`
/// only ([`Surface`]). The internal listener has its own connection budget
/// (`http_server.internal_max_connections`).
pub async fn serve_with(
    listener: TcpListener,
    internal: Option<TcpListener>,
    config: Arc<Config>,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut settings = WsSettings::new(
        config.websocket.message_size_limit,
        config.websocket.write_timeout.get(),
        &config.client.allowed_origins,
    )?;
    settings.upgrade_timeout = config.http_server.request_timeout.get();
    if config.websocket.compression {
        settings.compression = Some(crate::ws::deflate::DeflateSettings {
            level: config.websocket.compression_level,
            min_size: config.websocket.compression_min_size,
        });
    }
    let tracker = TaskTracker::new();
    let closing = CancellationToken::new();
    let tls = tls::Tls::from_config(&config.http_server.tls)?;
    let sessions = Arc::new(crate::emulation::Sessions::default());
    if !node.set_session_sink(sessions.clone()) {
        tracing::warn!(
            "the node serves another listener's sessions: forwarded emulation requests go there"
        );
    }
    let reloads = CancellationToken::new();
    let _stop_reloads = reloads.clone().drop_guard();
    if let Some(tls) = &tls {
        tls.spawn_reloader(config.http_server.tls.reload_interval.get(), reloads);
    }
    let state = Arc::new(ServerState {
        config: config.clone(),
        node: node.clone(),
        ws: WsContext {
            settings: Arc::new(settings),
            tracker: tracker.clone(),
            shutdown: closing.clone(),
        },
        ready: AtomicBool::new(true),
        tls,
        readiness: readiness::Readiness::default(),
        metrics: metrics::install(),
        admin: crate::admin::AdminState::new(&config.admin),
        sessions: sessions.clone(),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.http_server.header_read_timeout.get())
        .max_header_size(config.http_server.max_header_size)
        .keep_alive(true);
    let builder = Arc::new(builder);

    let budget = Budget::resolve(
        config.http_server.max_connections,
        conns::open_files_soft_limit(),
    );
    log_budget(budget);
    ::metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_MAX).set(budget.max as f64);
    let registry = Registry::new(budget.max);

    let external = if internal.is_some() {
        Surface::External
    } else {
        Surface::All
    };
    let internal_registry = Registry::new(config.http_server.internal_max_connections.max(1));
    // The internal listener accepts until the drain is over (`closing`): probes and scrapes
    // see the drain (`/ready` → 503) while the node moves its clients off.
    let accept_internal = async {
        let Some(internal) = &internal else {
            return;
        };
        let mut closed = pin!(closing.cancelled());
        accept::run(
            internal,
            &internal_registry,
            closed.as_mut(),
            |stream, peer, conn| {
                let ctx = (&state, &builder, &tracker, &closing);
                spawn_connection(stream, peer, conn, Surface::Internal, ctx);
            },
        )
        .await;
    };
    let mut listener = Some(listener);
    let external_then_drain = async {
        let mut shutdown = pin!(shutdown);
        if let Some(listener) = &listener {
            accept::run(
                listener,
                &registry,
                shutdown.as_mut(),
                |stream, peer, conn| {
                    let ctx = (&state, &builder, &tracker, &closing);
                    spawn_connection(stream, peer, conn, external, ctx);
                },
            )
            .await;
        }

        let deadline = Instant::now() + config.shutdown.timeout.get();
        tracing::info!("shutting down: draining connections");
        state.ready.store(false, Ordering::Release);
        // New client connections are refused from here on.
        drop(listener.take());
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
    };
    tokio::join!(external_then_drain, accept_internal);
    tracing::info!("shutdown complete");
    Ok(())
}

fn log_budget(budget: Budget) {
    match budget.source {
        BudgetSource::Configured => {
            let limit = conns::open_files_soft_limit();
            tracing::info!(
                max_connections = budget.max,
                open_files_limit = limit,
                "connection budget from http_server.max_connections"
            );
            if let Some(limit) = limit {
                if budget.max as u64 + conns::FD_RESERVE > limit {
                    tracing::warn!(
                        max_connections = budget.max,
                        open_files_limit = limit,
                        "http_server.max_connections plus {} reserved descriptors exceeds the \
                         open-files limit: accept will fail (EMFILE) before the budget is reached",
                        conns::FD_RESERVE
                    );
                }
            }
        }
        BudgetSource::OpenFilesLimit(limit) => tracing::info!(
            max_connections = budget.max,
            open_files_limit = limit,
            reserved = conns::FD_RESERVE,
            "connection budget from the open-files limit"
        ),
        BudgetSource::Unknown => tracing::warn!(
            max_connections = budget.max,
            "open-files limit unreadable: connection budget set to the floor; \
             set http_server.max_connections"
        ),
    }
}

/// What a server's listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything (no internal listener configured).
    All,
    /// Client transports and the demo page (`http_server.port` with an internal port set).
    External,
    /// The server API, `/metrics`, `/health`, `/ready`, the admin console
    /// (`http_server.internal_port`).
    Internal,
}

/// What every connection task shares: the server state, the HTTP builder, the task tracker
/// and the closing signal.
type ConnCtx<'a> = (
    &'a Arc<ServerState>,
    &'a Arc<http1::Builder>,
    &'a TaskTracker,
    &'a CancellationToken,
);

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Conn,
    surface: Surface,
    (state, builder, tracker, closing): ConnCtx<'_>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set TCP_NODELAY failed");
    }
    let state = state.clone();
    let builder = builder.clone();
    let closing = closing.clone();
    tracker.spawn(async move {
        let shed = conn.shed_signal();
        let request_timeout = state.config.http_server.request_timeout.get();
        let stream = match &state.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                // Bounded like the request headers that follow it (slow or silent clients).
                let limit = state.config.http_server.header_read_timeout.get();
                match tokio::time::timeout(limit, tls.http().accept(stream)).await {
                    Ok(Ok(tls_stream)) => Stream::Tls(Box::new(tls_stream)),
                    Ok(Err(error)) => return tls::handshake_failed(&error),
                    Err(_) => {
                        let error = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        );
                        return tls::handshake_failed(&error);
                    }
                }
            }
        };
        let io = TokioIo::new(ConnIo::new(stream, conn.clone(), request_timeout));
        let service = service_fn(move |req| {
            let state = state.clone();
            let conn = conn.clone();
            async move {
                let resp = routes::route(req, peer, surface, &state, &conn).await;
                // A session stream keeps its connection out of the idle state until it ends.
                if resp
                    .extensions()
                    .get::<crate::emulation::Streaming>()
                    .is_none()
                {
                    conn.request_done();
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let http = builder.serve_connection(io, service).with_upgrades();
        let mut http = pin!(http);
        let result = tokio::select! {
            r = http.as_mut() => r,
            // Shed at the connection budget: dropping the connection closes the socket.
            _ = shed => {
                tracing::debug!(%peer, "http connection shed");
                return;
            }
            _ = closing.cancelled() => {
                http.as_mut().graceful_shutdown();
                http.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, %peer, "http connection ended with an error");
        }
    });
}
