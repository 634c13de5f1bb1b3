//! The Prometheus recorder and the gateway's own metrics (transport, HTTP and gRPC).
//!
//! [`install`] installs the process-wide recorder once (idempotent, tolerates a recorder
//! installed by someone else) and describes every metric below; `/metrics` renders the
//! returned [`PrometheusHandle`]. The core declares its own metrics (messages, subscriptions,
//! command durations); this file only names what the edge sees: sockets, frames, bytes, close
//! codes, protocol violations and HTTP requests. Labels stay low-cardinality: a reason, a kind,
//! a close code, a route name and a status — never a path, a channel or a user.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The `transport` label of the transport metrics below.
pub const WEBSOCKET: &str = "websocket";
/// Every value of the `transport` label.
pub const TRANSPORTS: [&str; 3] = [WEBSOCKET, "http_stream", "sse"];

/// Sessions opened, by `transport`: WebSocket upgrades completed (JSON, Protobuf and echo),
/// HTTP-streaming and SSE streams started.
pub const CONNECTIONS_ACCEPTED: &str = "chorus_transport_connections_accepted_total";
/// Sessions currently open on this node, by `transport`.
pub const CONNECTIONS: &str = "chorus_transport_connections";
/// Upgrades refused before switching protocols, by `reason` (see [`RejectReason`]).
pub const UPGRADE_REJECTED: &str = "chorus_transport_upgrade_rejected_total";
/// Complete WebSocket data messages received (after reassembly of fragments).
pub const MESSAGES_RECEIVED: &str = "chorus_transport_messages_received_total";
/// Payload bytes of the complete data messages received.
pub const BYTES_RECEIVED: &str = "chorus_transport_bytes_received_total";
/// WebSocket data frames written (each may pack several protocol messages).
pub const FRAMES_SENT: &str = "chorus_transport_frames_sent_total";
/// Payload bytes of the data frames written.
pub const BYTES_SENT: &str = "chorus_transport_bytes_sent_total";
/// Payload bytes of the WebSocket messages sent compressed (permessage-deflate), before.
pub const DEFLATE_BYTES_IN: &str = "chorus_transport_deflate_bytes_in_total";
/// The same messages' payload bytes after compression (what went on the wire).
pub const DEFLATE_BYTES_OUT: &str = "chorus_transport_deflate_bytes_out_total";
/// `/emulation` requests for a session of another node, by `result` of forwarding them
/// (`ok`, `unknown_node`, `no_answer`, `broker_error`, `refused`, `failed`).
pub const EMULATION_FORWARDED: &str = "chorus_transport_emulation_forwarded_total";
/// Close frames written by the server, by close `code`.
pub const CLOSE: &str = "chorus_transport_close_total";
/// Connections failed for a WebSocket protocol violation, by `kind`.
pub const PROTOCOL_ERRORS: &str = "chorus_transport_protocol_errors_total";
/// HTTP requests answered, by `route` (a fixed route name) and `status`.
pub const HTTP_REQUESTS: &str = "chorus_http_requests_total";
/// Requests that ran out of `http_server.request_timeout`, by `phase`: `body` (the body did
/// not arrive in time; answered 408) or `response` (the client stopped reading the answer; the
/// connection is closed).
pub const HTTP_REQUEST_TIMEOUTS: &str = "chorus_http_request_timeouts_total";
/// TCP connections the HTTP server holds, by `state` (pending, idle, busy, upgraded).
pub const HTTP_CONNECTIONS: &str = "chorus_http_connections";
/// The connection budget in force (`http_server.max_connections`, or the automatic value).
pub const HTTP_CONNECTIONS_MAX: &str = "chorus_http_connections_max";
/// Connections closed to make room for new ones, by the `state` they were in (pending, idle).
pub const HTTP_CONNECTIONS_SHED: &str = "chorus_http_connections_shed_total";
/// Connections answered 503 and closed because only busy requests and sessions held the budget.
pub const HTTP_CONNECTIONS_REFUSED: &str = "chorus_http_connections_refused_total";
/// Failed `accept` calls, by `kind` (emfile, enfile, enobufs, enomem, other).
pub const HTTP_ACCEPT_ERRORS: &str = "chorus_http_accept_errors_total";

/// gRPC server API calls answered, by `method` (the API method name: `publish`, …,
/// `reflection`, or `unknown` for a method chorus does not serve) and `code` (the gRPC status,
/// lowercase: `ok`, `unauthenticated`, `not_found`, `resource_exhausted`, …).
pub const GRPC_API_REQUESTS: &str = "chorus_grpc_api_requests_total";
/// Time from a gRPC call's headers to its response headers, by `method`.
pub const GRPC_API_DURATION: &str = "chorus_grpc_api_request_duration_seconds";

/// TLS handshakes that failed on the HTTP listeners and the gRPC API.
pub const TLS_HANDSHAKE_ERRORS: &str = "chorus_tls_handshake_errors_total";
/// Certificate reloads, by `result` (ok, error).
pub const TLS_RELOADS: &str = "chorus_tls_reloads_total";

/// JWKS document fetches (`client.token.jwks_public_endpoint`, and the subscription
/// block's), by `result`: `ok`, `timeout`, `status` (not 200), `invalid` (not a JWKS, too big,
/// no usable key) or `error` (connect, TLS, HTTP).
pub const JWKS_FETCHES: &str = "chorus_jwks_fetches_total";
/// JWKS keys cached (every endpoint together).
pub const JWKS_KEYS: &str = "chorus_jwks_keys";

/// Admin console logins (`POST /admin/auth`), by `result` (see [`AdminLogin`]).
pub const ADMIN_LOGINS: &str = "chorus_admin_logins_total";

/// Always 1, labelled with the `version` and the `commit` chorus was built from.
pub const BUILD_INFO: &str = "chorus_build_info";

/// The crate version, as in `chorus --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit chorus was built from (`build.rs`: `CHORUS_COMMIT`, else `git`, else
/// `unknown`).
pub const COMMIT: &str = env!("CHORUS_COMMIT");

/// Upper bounds (seconds) of the buckets of every duration histogram (every `*_seconds`
/// family): 100 µs to 10 s, about ×2.5 per step — command and API latencies sit in the low
/// buckets, Redis trouble and slow fan-outs in the high ones. Documented in docs/metrics.md.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often histogram buckets are drained when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Handles of the per-frame counters, resolved once by [`install`]: `counter!` looks the key
/// up in the registry on every call (1–1.6 % of server CPU in the S2a profile, on the
/// per-delivery path). Before `install` (or with another recorder) the macros are used.
struct Hot {
    frames_sent: metrics::Counter,
    bytes_sent: metrics::Counter,
    messages_received: metrics::Counter,
    bytes_received: metrics::Counter,
}

static HOT: OnceLock<Hot> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and describes the gateway's and the
/// engine's metrics.
///
/// Later calls return the same handle. If another global recorder was installed first (a
/// test harness, an embedding program), the returned handle renders an empty registry and the
/// metrics go to that other recorder: never an error.
pub fn install() -> PrometheusHandle {
    let handle = install_recorder();
    GATEWAY_SERIES.get_or_init(|| {
        // Registered at start, so dashboards see 0 rather than no series.
        for transport in TRANSPORTS {
            gauge!(CONNECTIONS, "transport" => transport).increment(0.0);
            counter!(CONNECTIONS_ACCEPTED, "transport" => transport).increment(0);
        }
        let _ = HOT.set(Hot {
            frames_sent: counter!(FRAMES_SENT, "transport" => WEBSOCKET),
            bytes_sent: counter!(BYTES_SENT, "transport" => WEBSOCKET),
            messages_received: counter!(MESSAGES_RECEIVED, "transport" => WEBSOCKET),
            bytes_received: counter!(BYTES_RECEIVED, "transport" => WEBSOCKET),
        });
        chorus_core::metrics::register();
    });
    handle
}

/// Series a gateway renders from its start; a presence replica has none of them.
static GATEWAY_SERIES: OnceLock<()> = OnceLock::new();

/// The recorder alone (once per process), with every description and `chorus_build_info`:
/// what a presence replica installs. A gateway calls [`install`].
pub fn install_recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = match PrometheusBuilder::new().set_buckets(DURATION_BUCKETS) {
                Ok(builder) => builder.build_recorder(),
                // Unreachable (the list is not empty); summaries rather than no metrics.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!(
                    "a metrics recorder was already installed; /metrics renders an empty registry"
                );
            }
            describe();
            chorus_core::metrics::describe();
            // The presence client's families (gateways) and the replica's.
            chorus_presence::metrics::describe();
            gauge!(BUILD_INFO, "version" => VERSION, "commit" => COMMIT).set(1.0);
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start the metrics upkeep thread");
            }
            handle
        })
        .clone()
}

/// What `/metrics` answers: the gauges read off the node at scrape time, the recorder's
/// families, and the `process_*` families.
pub fn scrape(handle: &PrometheusHandle, node: &chorus_core::Node) -> String {
    chorus_core::metrics::scrape_levels(node.hub().num_users(), node.engine_ready());
    with_process(handle.render())
}

fn with_process(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push_str(&chorus_core::metrics::process::process_families());
    text
}

/// What a presence replica's `/metrics` answers: the recorder's families and the
/// `process_*` families.
pub fn render_with_process(handle: PrometheusHandle) -> chorus_presence::MetricsRender {
    chorus_presence::MetricsRender::new(move || with_process(handle.render()))
}

/// Describes every gateway metric (units and help text). Called by [`install`].
pub fn describe() {
    describe_counter!(
        JWKS_FETCHES,
        Unit::Count,
        "JWKS document fetches, by result (ok, timeout, status: not 200, invalid: not a JWKS, too big or no usable key, error: connect, TLS or HTTP)."
    );
    describe_gauge!(
        JWKS_KEYS,
        Unit::Count,
        "JWKS keys cached, every endpoint together."
    );
    describe_counter!(
        TLS_HANDSHAKE_ERRORS,
        Unit::Count,
        "TLS handshakes that failed (plain HTTP on a TLS port, an untrusted certificate, a timeout)."
    );
    describe_counter!(
        TLS_RELOADS,
        Unit::Count,
        "TLS certificate reloads (SIGHUP or a changed file), by result (ok, error: the previous certificate stays)."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels carry the version and the commit chorus was built from."
    );
    describe_counter!(
        CONNECTIONS_ACCEPTED,
        Unit::Count,
        "Sessions opened, by transport (websocket: upgrades completed; http_stream, sse: streams started)."
    );
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Sessions currently open, by transport (websocket, http_stream, sse)."
    );
    describe_counter!(
        UPGRADE_REJECTED,
        Unit::Count,
        "WebSocket upgrades refused before switching protocols, by reason (origin, limit, bad_request, http_version, ws_version, bad_key, protocol)."
    );
    describe_counter!(
        MESSAGES_RECEIVED,
        Unit::Count,
        "Complete messages received, by transport (WebSocket data messages with fragments reassembled; http_stream/sse: connect and /emulation request bodies)."
    );
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "Payload bytes of the messages received, by transport."
    );
    describe_counter!(
        DEFLATE_BYTES_IN,
        Unit::Bytes,
        "Payload bytes of the WebSocket messages sent compressed, before compression."
    );
    describe_counter!(
        DEFLATE_BYTES_OUT,
        Unit::Bytes,
        "Payload bytes of the WebSocket messages sent compressed, after compression."
    );
    describe_counter!(
        EMULATION_FORWARDED,
        Unit::Count,
        "/emulation requests for a session of another node, by result of forwarding them over the broker."
    );
    describe_counter!(
        FRAMES_SENT,
        Unit::Count,
        "Data frames written, by transport (WebSocket frames; http_stream/sse: stream chunks)."
    );
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "Payload bytes of the data frames written, by transport."
    );
    describe_counter!(
        CLOSE,
        Unit::Count,
        "WebSocket close frames written by the server, by code."
    );
    describe_counter!(
        PROTOCOL_ERRORS,
        Unit::Count,
        "Connections failed for a WebSocket protocol violation, by kind (too_big, utf8, unmasked, protocol, wrong_opcode)."
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route and status."
    );
    describe_counter!(
        HTTP_REQUEST_TIMEOUTS,
        Unit::Count,
        "Requests that ran out of http_server.request_timeout, by phase (body: answered 408; response: the client stopped reading, connection closed)."
    );
    describe_gauge!(
        HTTP_CONNECTIONS,
        Unit::Count,
        "TCP connections held by the HTTP server, by state (pending: no request completed yet; idle: keep-alive between requests; busy: request being handled; upgraded: WebSocket session or http_stream/sse stream)."
    );
    describe_gauge!(
        HTTP_CONNECTIONS_MAX,
        Unit::Count,
        "Connection budget in force (http_server.max_connections or the automatic value)."
    );
    describe_counter!(
        HTTP_CONNECTIONS_SHED,
        Unit::Count,
        "Connections closed to make room for new ones at the connection budget, by the state they were in (pending, idle)."
    );
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        Unit::Count,
        "Connections answered 503 and closed at the connection budget (nothing could be shed)."
    );
    describe_counter!(
        HTTP_ACCEPT_ERRORS,
        Unit::Count,
        "Failed accept calls on the listener, by kind (emfile, enfile, enobufs, enomem, other)."
    );
    describe_counter!(
        GRPC_API_REQUESTS,
        Unit::Count,
        "gRPC server API calls answered, by method and gRPC status code."
    );
    describe_counter!(
        ADMIN_LOGINS,
        Unit::Count,
        "Admin console logins, by result (ok, wrong_password, throttled: refused by admin.login_rate_limit, bad_request)."
    );
    describe_histogram!(
        GRPC_API_DURATION,
        Unit::Seconds,
        "Duration of gRPC server API calls (headers in to response headers out), by method."
    );
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `Origin` header not in `client.allowed_origins` (HTTP 403).
    Origin,
    /// Connection limit reached or node draining (HTTP 503).
    Limit,
    /// Not a valid WebSocket upgrade request (HTTP 400).
    BadRequest,
    /// An upgrade over HTTP/1.0 or older (HTTP 400 "HTTP/1.1 required").
    HttpVersion,
    /// `Sec-WebSocket-Version` missing or not 13 (HTTP 426).
    WsVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes (HTTP 400).
    BadKey,
    /// The query and the subprotocol select different encodings, or the query names an
    /// unknown one (HTTP 400).
    Protocol,
}

impl RejectReason {
    fn as_str(self) -> &'static str {
        match self {
            RejectReason::Origin => "origin",
            RejectReason::Limit => "limit",
            RejectReason::BadRequest => "bad_request",
            RejectReason::HttpVersion => "http_version",
            RejectReason::WsVersion => "ws_version",
            RejectReason::BadKey => "bad_key",
            RejectReason::Protocol => "protocol",
        }
    }
}

/// Kinds of WebSocket protocol violation that fail a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// Message over `websocket.message_size_limit` (close 1009).
    TooBig,
    /// Text message that is not UTF-8, or bad close reason (close 1007).
    Utf8,
    /// Client frame without a mask (close 1002).
    Unmasked,
    /// Any other framing violation (close 1002).
    Protocol,
    /// Binary message on a JSON connection or text on a Protobuf one (disconnect 3501).
    WrongOpcode,
}

impl ProtocolErrorKind {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolErrorKind::TooBig => "too_big",
            ProtocolErrorKind::Utf8 => "utf8",
            ProtocolErrorKind::Unmasked => "unmasked",
            ProtocolErrorKind::Protocol => "protocol",
            ProtocolErrorKind::WrongOpcode => "wrong_opcode",
        }
    }
}

/// Counts a refused upgrade.
pub fn upgrade_rejected(reason: RejectReason) {
    counter!(UPGRADE_REJECTED, "reason" => reason.as_str()).increment(1);
}

/// Counts a protocol violation.
pub fn protocol_error(kind: ProtocolErrorKind) {
    counter!(PROTOCOL_ERRORS, "kind" => kind.as_str()).increment(1);
}

/// Counts one complete data message of `bytes` payload bytes received.
pub fn message_received(bytes: usize) {
    if let Some(hot) = HOT.get() {
        hot.messages_received.increment(1);
        hot.bytes_received.increment(bytes as u64);
        return;
    }
    counter!(MESSAGES_RECEIVED, "transport" => WEBSOCKET).increment(1);
    counter!(BYTES_RECEIVED, "transport" => WEBSOCKET).increment(bytes as u64);
}

/// Counts one data frame of `bytes` payload bytes written.
pub fn frame_sent(bytes: usize) {
    if let Some(hot) = HOT.get() {
        hot.frames_sent.increment(1);
        hot.bytes_sent.increment(bytes as u64);
        return;
    }
    counter!(FRAMES_SENT, "transport" => WEBSOCKET).increment(1);
    counter!(BYTES_SENT, "transport" => WEBSOCKET).increment(bytes as u64);
}

/// Counts one message sent with permessage-deflate: `before` and `after` compression.
pub fn compressed(before: usize, after: usize) {
    counter!(DEFLATE_BYTES_IN, "transport" => WEBSOCKET).increment(before as u64);
    counter!(DEFLATE_BYTES_OUT, "transport" => WEBSOCKET).increment(after as u64);
}

/// Counts one `/emulation` request forwarded to another node, by `result`.
pub fn emulation_forwarded(result: &'static str) {
    counter!(EMULATION_FORWARDED, "result" => result).increment(1);
}

/// Counts one request body of an emulation `transport` (`http_stream`, `sse`: the connect
/// request, each `/emulation` request) of `bytes` bytes.
pub fn transport_message_received(transport: &'static str, bytes: usize) {
    counter!(MESSAGES_RECEIVED, "transport" => transport).increment(1);
    counter!(BYTES_RECEIVED, "transport" => transport).increment(bytes as u64);
}

/// Counts one chunk of an emulation `transport`'s stream, `bytes` long.
pub fn transport_frame_sent(transport: &'static str, bytes: usize) {
    counter!(FRAMES_SENT, "transport" => transport).increment(1);
    counter!(BYTES_SENT, "transport" => transport).increment(bytes as u64);
}

/// An emulation session's stream opened.
pub fn transport_opened(transport: &'static str) {
    counter!(CONNECTIONS_ACCEPTED, "transport" => transport).increment(1);
    gauge!(CONNECTIONS, "transport" => transport).increment(1.0);
}

/// An emulation session's stream ended.
pub fn transport_closed(transport: &'static str) {
    gauge!(CONNECTIONS, "transport" => transport).decrement(1.0);
}

/// Counts a close frame written with `code`.
pub fn close_sent(code: u16) {
    counter!(CLOSE, "code" => code.to_string()).increment(1);
}

/// Counts an answered HTTP request.
pub fn http_request(route: &'static str, status: u16) {
    counter!(HTTP_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

/// Counts one answered gRPC call.
pub fn grpc_api_request(method: &'static str, code: &'static str, duration: Duration) {
    counter!(GRPC_API_REQUESTS, "method" => method, "code" => code).increment(1);
    histogram!(GRPC_API_DURATION, "method" => method).record(duration.as_secs_f64());
}

/// How an admin console login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminLogin {
    /// The password was right: a session token was issued (200).
    Ok,
    /// The password was wrong (401).
    WrongPassword,
    /// No attempt left in `admin.login_rate_limit`; the password was not checked (429).
    Throttled,
    /// The body was not `{"password": "…"}` (400).
    BadRequest,
}

impl AdminLogin {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminLogin::Ok => "ok",
            AdminLogin::WrongPassword => "wrong_password",
            AdminLogin::Throttled => "throttled",
            AdminLogin::BadRequest => "bad_request",
        }
    }
}

/// Counts an admin console login.
pub fn admin_login(result: AdminLogin) {
    counter!(ADMIN_LOGINS, "result" => result.as_str()).increment(1);
}

/// Where a request ran out of `http_server.request_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Its body did not arrive in time (408).
    Body,
    /// The client stopped reading the response.
    Response,
}

impl TimeoutPhase {
    fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Body => "body",
            TimeoutPhase::Response => "response",
        }
    }
}

/// Counts a request that ran out of time.
pub fn http_request_timeout(phase: TimeoutPhase) {
    counter!(HTTP_REQUEST_TIMEOUTS, "phase" => phase.as_str()).increment(1);
}

/// Tracks one open WebSocket connection: counts it accepted, raises the gauge, lowers it on drop.
#[derive(Debug)]
pub struct ConnectionGuard(());

impl ConnectionGuard {
    /// Counts a completed upgrade and an open connection.
    pub fn open() -> Self {
        transport_opened(WEBSOCKET);
        ConnectionGuard(())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        transport_closed(WEBSOCKET);
    }
}
