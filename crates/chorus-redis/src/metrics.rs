//! Metric names of the Redis broker (one place, with units and descriptions).

use std::sync::Once;

pub const PUBLISH_DURATION: &str = "chorus_redis_publish_duration_seconds";
pub const PUBSUB_LAG: &str = "chorus_redis_pubsub_lag_seconds";
pub const RESUBSCRIBES: &str = "chorus_redis_resubscribes_total";
pub const ERRORS: &str = "chorus_redis_errors_total";
pub const BAD_ENVELOPES: &str = "chorus_redis_bad_envelopes_total";
pub const PROBE_FAILURES: &str = "chorus_redis_probe_failures_total";
pub const SUBSCRIBER_CONNECTIONS: &str = "chorus_redis_subscriber_connections";

static DESCRIBE: Once = Once::new();

/// Registers descriptions once per process.
pub fn describe() {
    DESCRIBE.call_once(|| {
        metrics::describe_histogram!(
            PUBLISH_DURATION,
            metrics::Unit::Seconds,
            "Time of one publish to Redis (script or PUBLISH), successful or not."
        );
        metrics::describe_histogram!(
            PUBSUB_LAG,
            metrics::Unit::Seconds,
            "Time from the publishing node handing a publication to Redis until this node got it."
        );
        metrics::describe_counter!(
            RESUBSCRIBES,
            "Subscriber connections re-established (every needed channel subscribed again)."
        );
        metrics::describe_counter!(ERRORS, "Failed Redis operations, by op.");
        metrics::describe_counter!(
            BAD_ENVELOPES,
            "Messages on chorus channels that failed to decode (dropped)."
        );
        metrics::describe_counter!(
            PROBE_FAILURES,
            "Liveness probes not received back in time (the subscriber connection is replaced)."
        );
        metrics::describe_gauge!(
            SUBSCRIBER_CONNECTIONS,
            "Subscriber connections of this node that are currently up."
        );
    });
}

pub fn error(op: &'static str) {
    metrics::counter!(ERRORS, "op" => op).increment(1);
}
