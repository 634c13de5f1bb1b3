//! The engine's metrics: names, units and descriptions in one place. Labels stay
//! low-cardinality (method, code, reason) — never a channel or user.

use std::time::Duration;

pub mod process;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Unit,
};

pub const CLIENTS: &str = "chorus_node_clients";
pub const SUBSCRIPTIONS: &str = "chorus_node_subscriptions";
pub const CHANNELS: &str = "chorus_node_channels";
pub const COMMANDS: &str = "chorus_client_commands_total";
pub const COMMAND_ERRORS: &str = "chorus_client_command_errors_total";
pub const COMMAND_DURATION: &str = "chorus_client_command_duration_seconds";
pub const DISCONNECTS: &str = "chorus_client_disconnects_total";
pub const SLOW: &str = "chorus_client_slow_total";
pub const INSUFFICIENT_STATE: &str = "chorus_client_insufficient_state_total";
pub const BAD_FRAMES: &str = "chorus_client_bad_frames_total";
pub const RECOVER: &str = "chorus_client_recover_total";
/// Delta-compressible publications fanned out to delta subscribers, label `result`: `delta`
/// (a fossil delta was made, once per publication), `full` (the delta was not smaller).
pub const DELTA_PUBLICATIONS: &str = "chorus_delta_publications_total";
/// Payload bytes a delta spared, per publication (not per subscriber).
pub const DELTA_BYTES_SAVED: &str = "chorus_delta_bytes_saved_total";
/// Distinct users with at least one connection on this node (set when `/metrics` is read).
pub const USERS: &str = "chorus_node_users";
/// 1 when the node's engine (the broker: memory, or every Redis shard's publisher and
/// subscriber connection) is usable, else 0 (set when `/metrics` is read).
pub const ENGINE_UP: &str = "chorus_engine_up";
/// Messages this node handed to its engine, by `type` (publication, join, leave, control).
pub const NODE_MESSAGES_SENT: &str = "chorus_node_messages_sent_total";
/// Messages this node received from its engine for local delivery, by `type` (publication,
/// join, leave, control).
pub const NODE_MESSAGES_RECEIVED: &str = "chorus_node_messages_received_total";
/// Messages queued for (or written to) local clients, by `type`: publication, join, leave
/// (one per subscriber reached), reply (one per command answered), ping, push (other
/// server pushes: subscribe, unsubscribe, disconnect, message, refresh).
pub const CLIENT_MESSAGES_SENT: &str = "chorus_client_messages_sent_total";
pub const BROADCAST_DURATION: &str = "chorus_broadcast_duration_seconds";
pub const PUBLICATIONS: &str = "chorus_node_publications_total";
pub const PAYLOAD_REFUSED: &str = "chorus_payload_refused_total";
pub const RATE_LIMITED: &str = "chorus_client_rate_limited_total";
pub const REPLY_TOO_LARGE: &str = "chorus_client_reply_too_large_total";
pub const JOIN_LEAVE_COALESCED: &str = "chorus_join_leave_coalesced_total";
/// Server API commands (HTTP or gRPC), label `method`: batch entries count individually, and
/// the batch itself once.
pub const API_REQUESTS: &str = "chorus_api_requests_total";
/// Server API errors, labels `method` and `code`: the API error code (`"107"`, …), or
/// `"http_<status>"` for requests an HTTP adapter refused before they reached the API.
pub const API_ERRORS: &str = "chorus_api_errors_total";
/// Time to run a server API command, label `method`.
pub const API_DURATION: &str = "chorus_api_command_duration_seconds";
/// Time of one backend hook call (proxy), labels `proxy` and `event`.
pub const PROXY_DURATION: &str = "chorus_proxy_duration_seconds";
/// Failed hook calls, labels `proxy`, `event` and `kind`.
pub const PROXY_ERRORS: &str = "chorus_proxy_errors_total";
/// Hook calls running now, label `proxy`.
pub const PROXY_IN_FLIGHT: &str = "chorus_proxy_in_flight";
pub const MEMORY_STREAMS: &str = "chorus_memory_streams";
pub const MEMORY_HISTORY_BYTES: &str = "chorus_memory_history_bytes";
pub const MEMORY_EVICTIONS: &str = "chorus_memory_stream_evictions_total";
pub const MEMORY_EXPIRED: &str = "chorus_memory_streams_expired_total";
pub const MEMORY_TRIMMED: &str = "chorus_memory_publications_trimmed_total";

/// Registers descriptions with the installed recorder (call once after installing it).
pub fn describe() {
    describe_gauge!(
        CLIENTS,
        "Connections open on this node (connected or not yet)."
    );
    describe_gauge!(SUBSCRIPTIONS, "Subscriptions of local connections.");
    describe_gauge!(CHANNELS, "Channels with at least one local subscriber.");
    describe_counter!(COMMANDS, "Client commands processed, by method.");
    describe_counter!(
        COMMAND_ERRORS,
        "Client commands answered with an error, by method and code."
    );
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Time to process a client command, by method."
    );
    describe_counter!(
        DISCONNECTS,
        "Connections closed by the server, by disconnect code."
    );
    describe_counter!(
        SLOW,
        "Connections closed with 3008 because their queue overflowed."
    );
    describe_counter!(
        INSUFFICIENT_STATE,
        "Subscriptions that lost their stream position (unsubscribe 2500)."
    );
    describe_counter!(
        DELTA_PUBLICATIONS,
        "Delta-compressible publications encoded for delta subscribers, by result (delta, full)."
    );
    describe_counter!(
        DELTA_BYTES_SAVED,
        Unit::Bytes,
        "Payload bytes saved by fossil deltas, once per publication."
    );
    describe_counter!(
        BAD_FRAMES,
        "Client frames that could not be decoded (disconnect 3501), by reason."
    );
    describe_counter!(RECOVER, "Recovery attempts on subscribe, by outcome.");
    describe_gauge!(
        USERS,
        "Distinct users with at least one connection on this node (anonymous connections count as one user)."
    );
    describe_gauge!(
        ENGINE_UP,
        "1 when the engine (memory broker, or every Redis shard's publisher and subscriber connection) is usable, else 0."
    );
    describe_counter!(
        NODE_MESSAGES_SENT,
        "Messages this node handed to its engine, by type (publication, join, leave, control)."
    );
    describe_counter!(
        NODE_MESSAGES_RECEIVED,
        "Messages this node received from its engine for local delivery, by type (publication, join, leave, control)."
    );
    describe_counter!(
        CLIENT_MESSAGES_SENT,
        "Messages queued for local clients, by type (publication, join, leave: one per subscriber reached; reply; ping; push: other server pushes)."
    );
    describe_histogram!(
        BROADCAST_DURATION,
        Unit::Seconds,
        "Time to fan one publication out to local subscribers."
    );
    describe_counter!(
        PUBLICATIONS,
        "Publications accepted by this node, by source."
    );
    describe_counter!(
        PAYLOAD_REFUSED,
        "Payloads refused with error 107 (not JSON in a namespace without allow_binary_data, or \
         nested deeper than client.json_max_depth), by reason and source."
    );
    describe_counter!(
        RATE_LIMITED,
        "Client commands over client.command_rate_limit, by outcome: refused (error 111) or \
         disconnect (3013)."
    );
    describe_counter!(
        REPLY_TOO_LARGE,
        "Replies over client.reply_max_size (or presence over channel.presence_max_clients), \
         by method and outcome: error (106) or unrecovered (recovery answered recovered:false)."
    );
    describe_counter!(
        JOIN_LEAVE_COALESCED,
        "Join/leave events over channel.join_leave_max_rate, by outcome: delayed (sent in a \
         later second) or cancelled (a join and leave of one client cancelled out)."
    );
    describe_counter!(
        API_REQUESTS,
        "Server API commands, by method (batch entries individually, the batch once)."
    );
    describe_counter!(
        API_ERRORS,
        "Server API errors, by method and code (API code, or http_<status> for requests \
         refused before they reached the API)."
    );
    describe_histogram!(
        API_DURATION,
        Unit::Seconds,
        "Time to run a server API command, by method."
    );
    describe_histogram!(
        PROXY_DURATION,
        Unit::Seconds,
        "Time of one backend hook call, by proxy and event (connect, refresh, subscribe, \
         publish, sub_refresh, rpc); failed calls included."
    );
    describe_counter!(
        PROXY_ERRORS,
        "Failed backend hook calls, by proxy, event and kind (unavailable, timeout, \
         bad_response, bad_request, overloaded, cancelled)."
    );
    describe_gauge!(
        PROXY_IN_FLIGHT,
        "Backend hook calls running now, by proxy (at most its max_in_flight)."
    );
    describe_memory();
}

/// Describes the memory broker's metrics (called by [`describe`], and by the memory broker
/// when it is created, as the Redis broker does for its own).
pub fn describe_memory() {
    describe_gauge!(
        MEMORY_STREAMS,
        "Channel streams (stream meta, with or without publications) the memory broker keeps; \
         at most engine.memory.max_streams."
    );
    describe_gauge!(
        MEMORY_HISTORY_BYTES,
        Unit::Bytes,
        "Counted bytes of publications and idempotency results the memory broker keeps; at \
         most engine.memory.max_history_bytes."
    );
    describe_counter!(
        MEMORY_EVICTIONS,
        "Least recently used streams evicted by the memory broker's bounds, by reason \
         (max_streams, max_history_bytes); their subscribers recover with recovered: false."
    );
    describe_counter!(
        MEMORY_EXPIRED,
        "Streams forgotten by the memory broker because their meta expired (history_meta_ttl, \
         or engine.memory.idle_meta_ttl for unpublished, unsubscribed channels)."
    );
    describe_counter!(
        MEMORY_TRIMMED,
        "Oldest publications dropped from the only remaining stream to stay within \
         engine.memory.max_history_bytes."
    );
}

/// Why the memory broker evicted a stream (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionReason {
    MaxStreams,
    MaxHistoryBytes,
}

impl EvictionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::MaxStreams => "max_streams",
            EvictionReason::MaxHistoryBytes => "max_history_bytes",
        }
    }
}

/// Handles of the memory broker's metrics, taken once from the recorder installed when the
/// broker is created (the gateway installs it before building the node).
#[derive(Clone)]
pub(crate) struct MemoryMetrics {
    streams: Gauge,
    history_bytes: Gauge,
    evicted_streams: Counter,
    evicted_bytes: Counter,
    expired: Counter,
    trimmed: Counter,
}

impl MemoryMetrics {
    pub(crate) fn new() -> Self {
        let evicted = |r: EvictionReason| counter!(MEMORY_EVICTIONS, "reason" => r.as_str());
        MemoryMetrics {
            streams: gauge!(MEMORY_STREAMS),
            history_bytes: gauge!(MEMORY_HISTORY_BYTES),
            evicted_streams: evicted(EvictionReason::MaxStreams),
            evicted_bytes: evicted(EvictionReason::MaxHistoryBytes),
            expired: counter!(MEMORY_EXPIRED),
            trimmed: counter!(MEMORY_TRIMMED),
        }
    }

    pub(crate) fn levels(&self, streams: usize, bytes: usize) {
        self.streams.set(streams as f64);
        self.history_bytes.set(bytes as f64);
    }

    pub(crate) fn evicted(&self, reason: EvictionReason) {
        match reason {
            EvictionReason::MaxStreams => self.evicted_streams.increment(1),
            EvictionReason::MaxHistoryBytes => self.evicted_bytes.increment(1),
        }
    }

    pub(crate) fn expired(&self) {
        self.expired.increment(1);
    }

    pub(crate) fn trimmed(&self, n: u64) {
        self.trimmed.increment(n);
    }
}

pub(crate) fn clients(n: usize) {
    gauge!(CLIENTS).set(n as f64);
}

pub(crate) fn channels(n: usize) {
    gauge!(CHANNELS).set(n as f64);
}

pub(crate) fn subscriptions_changed(delta: i64) {
    gauge!(SUBSCRIPTIONS).increment(delta as f64);
}

pub(crate) fn command(method: &'static str, elapsed: Duration) {
    counter!(COMMANDS, "method" => method).increment(1);
    histogram!(COMMAND_DURATION, "method" => method).record(elapsed.as_secs_f64());
}

pub(crate) fn command_error(method: &'static str, code: u32) {
    counter!(COMMAND_ERRORS, "method" => method, "code" => code.to_string()).increment(1);
}

pub(crate) fn disconnect(code: u16) {
    counter!(DISCONNECTS, "code" => code.to_string()).increment(1);
}

pub(crate) fn slow_client() {
    counter!(SLOW).increment(1);
}

pub(crate) fn insufficient_state() {
    counter!(INSUFFICIENT_STATE).increment(1);
}

/// One delta decision of a publication (made once, whatever the number of subscribers).
pub(crate) fn delta_publication(delta: bool, saved: usize) {
    let result = if delta { "delta" } else { "full" };
    counter!(DELTA_PUBLICATIONS, "result" => result).increment(1);
    if saved > 0 {
        counter!(DELTA_BYTES_SAVED).increment(saved as u64);
    }
}

pub(crate) fn bad_frame(reason: &'static str) {
    counter!(BAD_FRAMES, "reason" => reason).increment(1);
}

pub(crate) fn recover(recovered: bool) {
    counter!(RECOVER, "recovered" => if recovered { "true" } else { "false" }).increment(1);
}

/// A message's type in the `type` label of the message counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageType {
    Publication,
    Join,
    Leave,
    Control,
    Reply,
    Ping,
    Push,
}

impl MessageType {
    const ALL: [MessageType; 7] = [
        MessageType::Publication,
        MessageType::Join,
        MessageType::Leave,
        MessageType::Control,
        MessageType::Reply,
        MessageType::Ping,
        MessageType::Push,
    ];

    fn as_str(self) -> &'static str {
        match self {
            MessageType::Publication => "publication",
            MessageType::Join => "join",
            MessageType::Leave => "leave",
            MessageType::Control => "control",
            MessageType::Reply => "reply",
            MessageType::Ping => "ping",
            MessageType::Push => "push",
        }
    }
}

/// Counter handles of the message counters, resolved once by [`register`] (after the
/// recorder is installed): these run per delivery and per reply, where `counter!` would look
/// the key up every time. Before that (tests, another recorder) the macros are used.
struct Hot {
    node_sent: [Counter; 7],
    node_received: [Counter; 7],
    client_sent: [Counter; 7],
}

static HOT: std::sync::OnceLock<Hot> = std::sync::OnceLock::new();

/// Registers the node's series at a gateway's start (after the recorder is installed): the
/// level gauges (a no-op add, so dashboards see 0 rather than no series) and the handles of
/// the message counters.
pub fn register() {
    for name in [CLIENTS, SUBSCRIPTIONS, CHANNELS, USERS] {
        gauge!(name).increment(0.0);
    }
    let handles =
        |name: &'static str| MessageType::ALL.map(|t| counter!(name, "type" => t.as_str()));
    let _ = HOT.set(Hot {
        node_sent: handles(NODE_MESSAGES_SENT),
        node_received: handles(NODE_MESSAGES_RECEIVED),
        client_sent: handles(CLIENT_MESSAGES_SENT),
    });
}

fn count(which: fn(&Hot) -> &[Counter; 7], name: &'static str, t: MessageType, n: u64) {
    match HOT.get() {
        Some(hot) => which(hot)[t as usize].increment(n),
        None => counter!(name, "type" => t.as_str()).increment(n),
    }
}

/// One message of type `t` handed to the engine.
pub(crate) fn node_sent(t: MessageType) {
    count(|h| &h.node_sent, NODE_MESSAGES_SENT, t, 1);
}

/// One message of type `t` received from the engine.
pub(crate) fn node_received(t: MessageType) {
    count(|h| &h.node_received, NODE_MESSAGES_RECEIVED, t, 1);
}

/// `n` messages of type `t` queued for local clients.
pub(crate) fn client_sent(t: MessageType, n: u64) {
    if n > 0 {
        count(|h| &h.client_sent, CLIENT_MESSAGES_SENT, t, n);
    }
}

/// Sets the gauges read off the node's state when `/metrics` is scraped.
pub fn scrape_levels(users: usize, engine_up: bool) {
    gauge!(USERS).set(users as f64);
    gauge!(ENGINE_UP).set(if engine_up { 1.0 } else { 0.0 });
}

pub(crate) fn broadcast(delivered: u64, elapsed: Duration) {
    client_sent(MessageType::Publication, delivered);
    histogram!(BROADCAST_DURATION).record(elapsed.as_secs_f64());
}

pub(crate) fn publication(source: &'static str) {
    node_sent(MessageType::Publication);
    counter!(PUBLICATIONS, "source" => source).increment(1);
}

pub(crate) fn payload_refused(reason: &'static str, source: &'static str) {
    counter!(PAYLOAD_REFUSED, "reason" => reason, "source" => source).increment(1);
}

pub(crate) fn rate_limited(outcome: &'static str) {
    counter!(RATE_LIMITED, "outcome" => outcome).increment(1);
}

pub(crate) fn reply_too_large(method: &'static str, outcome: &'static str) {
    counter!(REPLY_TOO_LARGE, "method" => method, "outcome" => outcome).increment(1);
}

/// One server API command of `method` ran (for `duration`).
pub fn api_request(method: &'static str, duration: Option<Duration>) {
    counter!(API_REQUESTS, "method" => method).increment(1);
    if let Some(d) = duration {
        histogram!(API_DURATION, "method" => method).record(d.as_secs_f64());
    }
}

/// A server API command of `method` failed with `code` (an API code, or `http_<status>`).
pub fn api_error(method: &'static str, code: String) {
    counter!(API_ERRORS, "method" => method, "code" => code).increment(1);
}

pub(crate) fn proxy_call(proxy: &str, event: crate::proxy::ProxyEvent, elapsed: Duration) {
    histogram!(PROXY_DURATION, "proxy" => proxy.to_string(), "event" => event.as_str())
        .record(elapsed.as_secs_f64());
}

pub(crate) fn proxy_error(proxy: &str, event: crate::proxy::ProxyEvent, kind: &'static str) {
    counter!(PROXY_ERRORS, "proxy" => proxy.to_string(), "event" => event.as_str(), "kind" => kind)
        .increment(1);
}

pub(crate) fn proxy_in_flight(proxy: &str, delta: f64) {
    gauge!(PROXY_IN_FLIGHT, "proxy" => proxy.to_string()).increment(delta);
}

pub(crate) fn join_leave_coalesced(outcome: &'static str, n: u64) {
    counter!(JOIN_LEAVE_COALESCED, "outcome" => outcome).increment(n);
}
