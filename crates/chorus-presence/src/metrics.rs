//! Metric names, units and descriptions of the presence service and of its gateway client.
//!
//! The service exports these on `presence_server.metrics_port` (`/metrics`); the client's
//! metrics appear on the gateway's `/metrics`. Labels stay low-cardinality: an RPC method, a
//! reason, a configured endpoint — never a channel, a user or a node id.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Entries (client × channel) held by this replica.
pub const ENTRIES: &str = "chorus_presence_entries";
/// Channels with at least one entry.
pub const CHANNELS: &str = "chorus_presence_channels";
/// Users with at least one entry.
pub const USERS: &str = "chorus_presence_users";
/// Gateway nodes known to this replica (streaming, or holding entries under a lease).
pub const NODES: &str = "chorus_presence_nodes";
/// Open gateway `Sync` streams.
pub const STREAMS: &str = "chorus_presence_streams";
/// Open `Watch` streams.
pub const WATCHERS: &str = "chorus_presence_watchers";
/// Nodes dropped because their lease expired.
pub const LEASE_EXPIRIES: &str = "chorus_presence_lease_expiries_total";
/// Nodes dropped because they said Goodbye.
pub const GOODBYES: &str = "chorus_presence_goodbyes_total";
/// Entries removed by lease expiries and goodbyes.
pub const ENTRIES_EXPIRED: &str = "chorus_presence_entries_expired_total";
/// Delta operations (adds and removes) applied.
pub const DELTAS_APPLIED: &str = "chorus_presence_deltas_applied_total";
/// Snapshots applied (one per stream (re)connect).
pub const SNAPSHOTS: &str = "chorus_presence_snapshots_total";
/// `Sync` streams closed by the service, by `reason` (invalid, permission, limit, replaced,
/// lease, slow, shutdown).
pub const STREAMS_CLOSED: &str = "chorus_presence_streams_closed_total";
/// Duration of query RPCs, by `method` (presence, presence_stats, user_status).
pub const QUERY_DURATION: &str = "chorus_presence_query_duration_seconds";
/// Reads refused with UNAVAILABLE during the warm-up, by `method`.
pub const QUERIES_UNAVAILABLE: &str = "chorus_presence_queries_unavailable_total";
/// Watch streams ended because the watcher read too slowly.
pub const WATCHERS_DROPPED: &str = "chorus_presence_watchers_dropped_total";
/// 1 while this replica answers reads (after its warm-up), else 0.
pub const READY: &str = "chorus_presence_ready";

/// Client: 1 while the stream to `endpoint` is synced (snapshot acknowledged), else 0.
pub const CLIENT_SYNCED: &str = "chorus_presence_client_synced";
/// Client: stream (re)connects to `endpoint` that reached the synced state.
pub const CLIENT_CONNECTS: &str = "chorus_presence_client_connects_total";
/// Client: delta operations sent, summed over endpoints.
pub const CLIENT_DELTAS_SENT: &str = "chorus_presence_client_deltas_sent_total";
/// Client: queries no replica could answer exactly (the gateway answers error 100).
pub const CLIENT_QUERIES_FAILED: &str = "chorus_presence_client_queries_failed_total";
/// Client: remote entries reported expired (deduplicated across replicas).
pub const CLIENT_EXPIRED_ENTRIES: &str = "chorus_presence_client_expired_entries_total";
/// Client: expiration batches dropped because the gateway did not consume them in time.
pub const CLIENT_EXPIRATIONS_DROPPED: &str = "chorus_presence_client_expirations_dropped_total";

/// Describes every metric above (units and help text). Call once after installing a recorder.
pub fn describe() {
    describe_gauge!(
        ENTRIES,
        Unit::Count,
        "Presence entries (client x channel) held."
    );
    describe_gauge!(
        CHANNELS,
        Unit::Count,
        "Channels with at least one presence entry."
    );
    describe_gauge!(
        USERS,
        Unit::Count,
        "Users with at least one presence entry."
    );
    describe_gauge!(
        NODES,
        Unit::Count,
        "Gateway nodes known (streaming, or holding entries under a lease)."
    );
    describe_gauge!(STREAMS, Unit::Count, "Open gateway Sync streams.");
    describe_gauge!(WATCHERS, Unit::Count, "Open Watch streams.");
    describe_counter!(
        LEASE_EXPIRIES,
        Unit::Count,
        "Gateway nodes dropped because their lease expired."
    );
    describe_counter!(
        GOODBYES,
        Unit::Count,
        "Gateway nodes dropped because they said Goodbye."
    );
    describe_counter!(
        ENTRIES_EXPIRED,
        Unit::Count,
        "Entries removed by lease expiries and goodbyes."
    );
    describe_counter!(
        DELTAS_APPLIED,
        Unit::Count,
        "Delta operations (adds and removes) applied."
    );
    describe_counter!(SNAPSHOTS, Unit::Count, "Gateway snapshots applied.");
    describe_counter!(
        STREAMS_CLOSED,
        Unit::Count,
        "Sync streams closed by the service, by reason (invalid, permission, limit, replaced, lease, slow, shutdown)."
    );
    describe_histogram!(
        QUERY_DURATION,
        Unit::Seconds,
        "Duration of query RPCs, by method."
    );
    describe_counter!(
        QUERIES_UNAVAILABLE,
        Unit::Count,
        "Reads refused with UNAVAILABLE during the warm-up, by method."
    );
    describe_counter!(
        WATCHERS_DROPPED,
        Unit::Count,
        "Watch streams ended because the watcher read too slowly."
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 while this replica answers reads (warm-up over), else 0."
    );
    describe_gauge!(
        CLIENT_SYNCED,
        Unit::Count,
        "1 while the presence stream to the endpoint is synced, else 0."
    );
    describe_counter!(
        CLIENT_CONNECTS,
        Unit::Count,
        "Presence streams (re)connected and synced, by endpoint."
    );
    describe_counter!(
        CLIENT_DELTAS_SENT,
        Unit::Count,
        "Presence delta operations sent, summed over endpoints."
    );
    describe_counter!(
        CLIENT_QUERIES_FAILED,
        Unit::Count,
        "Presence queries no replica could answer exactly."
    );
    describe_counter!(
        CLIENT_EXPIRED_ENTRIES,
        Unit::Count,
        "Remote presence entries reported expired (deduplicated across replicas)."
    );
    describe_counter!(
        CLIENT_EXPIRATIONS_DROPPED,
        Unit::Count,
        "Expiration batches dropped because they were not consumed in time."
    );
}
