//! chorus-presence: the presence service (who is online, across rooms and gateway nodes) and
//! the client gateways use to feed and query it. `docs/presence.md` describes the model, the
//! lease and snapshot protocol and the guarantees.
//!
//! Parts:
//! * [`model`] — the in-memory state of one replica: channel → clients, user → channels,
//!   node → entries, interned and compact (≈ 200 bytes per entry);
//! * [`service`] — the `chorus.presence.v1.Presence` gRPC service: queries, `Watch`, the
//!   gateway `Sync` stream, node leases;
//! * [`server`] — [`serve`]: one replica on bound listeners, with the key check ([`auth`]),
//!   `grpc.health.v1` (tonic-health), `/metrics` and graceful shutdown;
//! * [`client`] — [`PresenceClient`], the gateway side: local authoritative entries, one
//!   stream per replica (snapshot, batched deltas, heartbeats, reconnect), failover queries,
//!   remote expirations;
//! * [`config`] — [`ServiceConfig`] and the protocol limits; [`metrics`] — metric names.
//!
//! The crate knows nothing of chorus-core: the gateway adapts [`PresenceClient`] to the
//! core's presence port.

pub mod auth;
pub mod client;
pub mod config;
pub mod metrics;
pub mod model;
pub mod server;
pub mod service;

pub use client::{
    ClientConfig, ClientError, ClientInfo, Expiration, Expirations, ExpiryReason, PresenceClient,
    PresenceStats, QueryError, UserStatus,
};
pub use config::ServiceConfig;
pub use server::{serve, Listeners, MetricsRender, ServeError, SERVICE_NAME};
pub use service::PresenceService;
