//! The WebSocket transport on fastwebsockets 0.10: upgrade, reader, single writer, echo.
//!
//! Parts:
//! * this file — the upgrade: handshake validation and protocol negotiation ([`handshake`]:
//!   400 / 426 with a reason), `Origin` check against `client.allowed_origins` globs (403), the
//!   node's connection limit (503), then the connection task on the server's tracker;
//! * [`handshake`] — RFC 6455 checks of the request (HTTP/1.1, version 13, a 16-byte key, no
//!   body) and the choice of encoding (`centrifuge-protobuf` / `centrifuge-json`
//!   subprotocols, legacy `cf_protocol=` / `format=` query; a conflict is refused);
//! * [`lean`] — the driver of every connection over our own TCP listener: direct writes from
//!   the fan-out, nothing buffered while idle ([`frame`]: our RFC 6455 frame parser and server
//!   frame headers; fastwebsockets does the upgrade);
//! * [`conn`] — the generic driver (fastwebsockets reader and writer over split halves, one
//!   task) for any other transport under hyper;
//! * [`message`] — fragment reassembly with a cumulative size cap, UTF-8 and close validation;
//! * [`deflate`] — permessage-deflate (`websocket.compression`): the negotiation and each
//!   connection's compressor and decompressor, on both drivers (the generic one frames a
//!   compressed connection with [`frame`] too, see `conn::deflated`);
//! * [`session`] — what is behind a connection: a core [`chorus_core::Client`] or the echo
//!   endpoint used by the Autobahn conformance suite.

pub mod conn;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod lean;
pub mod message;
pub mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::{ClientParams, Node};
use chorus_protocol::Protocol;
use http::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, ORIGIN, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::metrics::{self, ConnectionGuard, RejectReason};
use crate::server::conns::io::{ConnIo, Stream};
use crate::server::conns::Conn;
use conn::ConnLimits;
use handshake::Rejection;
use session::Session;

/// Subprotocol selecting Protobuf frames.
pub const SUBPROTOCOL_PROTOBUF: &str = "centrifuge-protobuf";
/// Subprotocol selecting JSON frames (the default).
pub const SUBPROTOCOL_JSON: &str = "centrifuge-json";

/// How long to wait for the peer's Close / EOF once the closing handshake started.
pub const DEFAULT_CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Default of [`WsSettings::upgrade_timeout`] (the default `http_server.request_timeout`).
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Transport settings, taken from the config once.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// `websocket.message_size_limit`: cumulative payload cap of one incoming message.
    pub message_size_limit: usize,
    /// `websocket.write_timeout`: deadline of each frame write (then 3009).
    pub write_timeout: Duration,
    /// `client.allowed_origins`, compiled. Empty: only requests without `Origin` pass.
    pub allowed_origins: Vec<glob::Pattern>,
    /// Wait for the peer's close after ours (see [`DEFAULT_CLOSE_LINGER`]).
    pub close_linger: Duration,
    /// How long hyper may take to hand the socket over after the 101
    /// (`http_server.request_timeout`; [`DEFAULT_UPGRADE_TIMEOUT`] by default).
    pub upgrade_timeout: Duration,
    /// `websocket.compression`: permessage-deflate is negotiated when `Some` (plain and
    /// behind chorus' own TLS alike).
    pub compression: Option<deflate::DeflateSettings>,
}

impl WsSettings {
    /// Compiles origin globs; an invalid pattern is an error naming it.
    pub fn new(
        message_size_limit: usize,
        write_timeout: Duration,
        allowed_origins: &[String],
    ) -> Result<Self, glob::PatternError> {
        let allowed_origins = allowed_origins
            .iter()
            .map(|p| glob::Pattern::new(p))
            .collect::<Result<_, _>>()?;
        Ok(WsSettings {
            message_size_limit,
            write_timeout,
            allowed_origins,
            close_linger: DEFAULT_CLOSE_LINGER,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            compression: None,
        })
    }

    /// Whether a request with this `Origin` (or none) may connect.
    pub fn origin_allowed(&self, origin: Option<&HeaderValue>) -> bool {
        let Some(origin) = origin else { return true };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let options = glob::MatchOptions {
            case_sensitive: false,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        self.allowed_origins
            .iter()
            .any(|p| p.matches_with(origin, options))
    }

    fn limits(&self) -> ConnLimits {
        ConnLimits {
            message_size_limit: self.message_size_limit,
            write_timeout: self.write_timeout,
            close_linger: self.close_linger,
        }
    }
}

/// What the server hands to every upgrade.
#[derive(Debug, Clone)]
pub struct WsContext {
    pub settings: Arc<WsSettings>,
    /// Connection tasks are spawned here so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Server shutdown (closes echo connections; core clients are closed by the node).
    pub shutdown: CancellationToken,
}

/// Which endpoint the upgrade is for.
#[derive(Clone, Copy)]
pub enum Endpoint<'a> {
    /// `websocket.handler_prefix`: a client of the v2 protocol.
    Client(&'a Node),
    /// `/connection/echo`: echoes every message (conformance testing).
    Echo,
}

impl std::fmt::Debug for Endpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Client(_) => f.write_str("Client"),
            Endpoint::Echo => f.write_str("Echo"),
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The answer to a malformed handshake; counted, and the connection ends after it.
fn reject(rejection: Rejection) -> Response<Full<Bytes>> {
    metrics::upgrade_rejected(rejection.metric);
    let mut resp = plain(rejection.status, rejection.reason);
    if rejection.status == StatusCode::UPGRADE_REQUIRED {
        resp.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Answers a WebSocket upgrade request and, on success, spawns the connection on the tracker.
///
/// `conn` is the connection's registry entry (when served by [`crate::server`]): it is marked
/// upgraded with the `101`, and the session task keeps it until the socket closes.
pub fn upgrade<B>(
    mut req: Request<B>,
    remote_addr: Option<SocketAddr>,
    endpoint: Endpoint<'_>,
    ctx: &WsContext,
    conn: Option<&Conn>,
) -> Response<Full<Bytes>> {
    if let Err(rejection) = handshake::check(&req) {
        tracing::debug!(
            reason = rejection.reason.trim_end(),
            "websocket upgrade refused"
        );
        return reject(rejection);
    }
    let (protocol, subprotocol) = match endpoint {
        Endpoint::Client(_) => match handshake::negotiate(&req) {
            Ok(choice) => choice,
            Err(rejection) => {
                tracing::debug!(
                    reason = rejection.reason.trim_end(),
                    "websocket upgrade refused"
                );
                return reject(rejection);
            }
        },
        Endpoint::Echo => (Protocol::Json, None),
    };
    let session = match endpoint {
        Endpoint::Client(node) => {
            if !ctx.settings.origin_allowed(req.headers().get(ORIGIN)) {
                tracing::debug!(origin = ?req.headers().get(ORIGIN), "websocket origin rejected");
                metrics::upgrade_rejected(RejectReason::Origin);
                return plain(StatusCode::FORBIDDEN, "origin not allowed\n");
            }
            let params = ClientParams {
                protocol,
                remote_addr,
            };
            match node.try_new_client(params) {
                Ok(client) => {
                    forward_headers(node, &client, req.headers());
                    Session::Client(client)
                }
                Err(_) => {
                    metrics::upgrade_rejected(RejectReason::Limit);
                    return plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "connection limit reached\n",
                    );
                }
            }
        }
        Endpoint::Echo => Session::Echo(ctx.shutdown.clone()),
    };
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(_) => {
            // Unreachable after `handshake::check`; never leave a client registered.
            let tracker = ctx.tracker.clone();
            tracker.spawn(async move { session.cleanup().await });
            return reject(Rejection::NOT_UPGRADE);
        }
    };
    // From the 101 on the connection is a session: never shed. The session task holds the
    // registry entry until the socket is closed.
    let registered = conn.cloned();
    if let Some(registered) = &registered {
        registered.set_upgraded();
    }
    let (mut parts, _) = response.into_parts();
    if let Some(sp) = subprotocol {
        parts
            .headers
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(sp));
    }
    // Both drivers speak permessage-deflate: the lean one (our listener's plain sockets) and
    // the generic one (TLS, any other transport).
    let deflate = ctx.settings.compression.and_then(|settings| {
        let agreed = deflate::negotiate(req.headers())?;
        let value = HeaderValue::from_str(&agreed.response()).ok()?;
        parts.headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
        Some(Box::new(deflate::Deflate::new(agreed, settings)))
    });
    let span = span_for(&session, remote_addr);
    let limits = ctx.settings.limits();
    let upgrade_timeout = ctx.settings.upgrade_timeout;
    let shutdown = ctx.shutdown.clone();
    let tracker = ctx.tracker.clone();
    ctx.tracker.spawn(
        async move {
            let held = registered;
            // hyper hands the socket over once the 101 is flushed; a peer that stops reading
            // before that would hold the session forever.
            let ws = match tokio::time::timeout(upgrade_timeout, fut).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "websocket upgrade did not complete");
                    session.cleanup().await;
                    return;
                }
                Err(_) => {
                    tracing::debug!(
                        "websocket upgrade not complete by http_server.request_timeout"
                    );
                    session.cleanup().await;
                    return;
                }
            };
            let guard = ConnectionGuard::open();
            // The socket is ours now: the session keeps the registry entry, and the
            // connection's shed token and request clock go (see `SessionHold`).
            let held = held.map(Conn::into_session);
            match transport(ws.into_inner()) {
                Transport::Lean(stream, early) => {
                    // Its own task: this one (the upgrade wait, its timer) ends here, and
                    // the connection's task holds only the lean driver (see `lean::Driver`;
                    // with both in one task: 4 KiB per idle connection). The span (40 B) is
                    // carried only when debug logging is on for it.
                    let run = lean::run(session, stream, early, limits, deflate, (held, guard));
                    let span = tracing::Span::current();
                    if span.is_disabled() {
                        tracker.spawn(run);
                    } else {
                        tracker.spawn(run.instrument(span));
                    }
                }
                Transport::Generic(rd, wr) => {
                    // Boxed: the generic driver's future is ~8 KiB, and an unboxed one would
                    // size every connection's task, lean ones included.
                    Box::pin(conn::run(session, rd, wr, limits, deflate, shutdown)).await;
                    drop((held, guard));
                }
            }
        }
        .instrument(span),
    );
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// Keeps the upgrade request's headers that some backend hook forwards (`http_headers` of a
/// proxy; none without hooks). A repeated header is joined with `", "`.
pub(crate) fn forward_headers(
    node: &Node,
    client: &chorus_core::Client,
    headers: &http::HeaderMap,
) {
    let names = node.proxies().header_names();
    if names.is_empty() {
        return;
    }
    let mut kept = Vec::new();
    for name in names {
        let values: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty() {
            kept.push((name.clone(), values.join(", ")));
        }
    }
    client.set_forward_headers(kept);
}

fn span_for(session: &Session, remote_addr: Option<SocketAddr>) -> tracing::Span {
    static ECHO_IDS: AtomicU64 = AtomicU64::new(1);
    let peer = remote_addr.map(|a| a.to_string()).unwrap_or_default();
    match session {
        Session::Client(client) => tracing::debug_span!("ws", conn = %client.id(), peer = %peer),
        Session::Echo(_) => {
            let id = ECHO_IDS.fetch_add(1, Ordering::Relaxed);
            tracing::debug_span!("ws_echo", conn = id, peer = %peer)
        }
    }
}

/// What runs an upgraded connection.
enum Transport {
    /// Our own listener's plain TCP socket and the bytes hyper read past the handshake: the
    /// lean driver.
    Lean(tokio::net::TcpStream, Bytes),
    /// Anything else (TLS, a foreign IO): the generic driver's halves.
    Generic(conn::BoxRead, conn::BoxWrite),
}

/// Sorts an upgraded connection: our listener's plain socket goes to the lean driver (the
/// session task holds the registry entry itself); TLS and anything else to the generic one.
fn transport(io: TokioIo<hyper::upgrade::Upgraded>) -> Transport {
    let upgraded = io.into_inner();
    match upgraded.downcast::<TokioIo<ConnIo>>() {
        Ok(parts) => match parts.io.into_inner().into_parts() {
            (Stream::Plain(stream), _conn) => Transport::Lean(stream, parts.read_buf),
            (tls @ Stream::Tls(_), _conn) => {
                // The bytes hyper read past the handshake come first.
                let (rd, wr) = tokio::io::split(tls);
                let early = std::io::Cursor::new(parts.read_buf);
                Transport::Generic(
                    Box::new(tokio::io::AsyncReadExt::chain(early, rd)),
                    Box::new(wr),
                )
            }
        },
        Err(upgraded) => {
            let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
            Transport::Generic(Box::new(rd), Box::new(wr))
        }
    }
}
