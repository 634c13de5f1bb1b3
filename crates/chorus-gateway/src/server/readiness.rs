//! What `/health` and `/ready` mean, and `GET /ready?verbose`.
//!
//! * `/health` (liveness): 200 while the process answers HTTP, draining or not, whatever its
//!   dependencies do. Restarting a pod cannot fix Redis.
//! * `/ready` (readiness): 503 while the node **drains** (from the shutdown signal on: the
//!   load balancer stops sending new clients while the connected ones are moved off), and
//!   while it is **not yet initialised**: its engine has not been reachable once since the
//!   process started (a gateway with a wrong Redis address fails its rollout instead of taking
//!   clients). Otherwise 200 — **also while Redis or the presence service is down**. Every
//!   gateway shares them, so failing readiness on a backplane outage would take every pod out
//!   of the Service at once and turn a backplane blip into a full outage; connected clients
//!   keep their sessions, commands that need the backplane answer errors, and clients retry.
//!   The backplane's state is in the verbose body and in `chorus_engine_up` /
//!   `chorus_presence_client_synced` for alerts.
//!
//! `GET /ready?verbose` answers the same status with a JSON body that says why:
//! `{"ready":false,"reason":"draining","draining":true,"initialised":true,
//! "engine":{"type":"redis","up":true},"presence":{"type":"service","synced_replicas":1,"replicas":2}}`.
//! `reason` is `null` when ready, else `draining` or `not_initialised`.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::config::EngineType;

use super::ServerState;

/// The readiness state a server keeps beyond the node's.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The engine was up at least once since the start (checked at each probe and scrape).
    engine_seen: AtomicBool,
}

/// One answer of `/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyAnswer {
    pub ready: bool,
    /// The JSON body (`{}` unless verbose).
    pub body: String,
}

impl Readiness {
    /// Notes whether the engine is up now; true once it has been up since the start.
    pub fn initialised(&self, engine_up: bool) -> bool {
        if engine_up {
            self.engine_seen.store(true, Ordering::Release);
            return true;
        }
        self.engine_seen.load(Ordering::Acquire)
    }
}

/// Answers `/ready` (`verbose`: with the reasons).
pub fn answer(state: &ServerState, verbose: bool) -> ReadyAnswer {
    let node = &state.node;
    let draining = !state.ready.load(Ordering::Acquire) || node.is_draining();
    let engine_up = node.engine_ready();
    let initialised = state.readiness.initialised(engine_up);
    let ready = !draining && initialised;
    if !verbose {
        return ReadyAnswer {
            ready,
            body: "{}".into(),
        };
    }
    let reason = if draining {
        Some("draining")
    } else if !initialised {
        Some("not_initialised")
    } else {
        None
    };
    let engine = match state.config.engine.kind {
        EngineType::Memory => "memory",
        EngineType::Redis => "redis",
    };
    let presence = match node.presence_store().replicas_synced() {
        None => json!({ "type": "local" }),
        Some((synced, replicas)) => {
            json!({ "type": "service", "synced_replicas": synced, "replicas": replicas })
        }
    };
    let body = json!({
        "ready": ready,
        "reason": reason,
        "draining": draining,
        "initialised": initialised,
        "engine": { "type": engine, "up": engine_up },
        "presence": presence,
    });
    ReadyAnswer {
        ready,
        body: body.to_string(),
    }
}

/// Whether a query string asks for the verbose answer (`verbose`, `verbose=1`, `verbose=true`).
pub fn wants_verbose(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k == "verbose" && !matches!(v, "0" | "false")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_query() {
        assert!(wants_verbose(Some("verbose")));
        assert!(wants_verbose(Some("a=1&verbose=true")));
        assert!(wants_verbose(Some("verbose=1")));
        assert!(!wants_verbose(Some("verbose=0")));
        assert!(!wants_verbose(Some("verbosely")));
        assert!(!wants_verbose(None));
    }

    #[test]
    fn initialised_once_the_engine_was_up() {
        let r = Readiness::default();
        assert!(!r.initialised(false));
        assert!(r.initialised(true));
        // A later outage does not make the node uninitialised again.
        assert!(r.initialised(false));
    }
}
