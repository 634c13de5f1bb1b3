//! chorus-core: the engine of one chorus node. No sockets, no Redis, no gRPC.
//!
//! Parts:
//! * [`node`] — the [`Node`]: owns the hub and the ports, receives broker deliveries;
//! * [`api`] — the typed server API ([`Node::api`] → [`ServerApi`]) the HTTP and gRPC APIs map
//!   onto: validated requests in, typed results or an [`ApiError`] out;
//! * [`client`] — one connection's protocol state machine ([`Client`]);
//! * [`hub`] — sharded maps of connections and channel subscribers, and the fan-out;
//! * [`outbound`] — the per-connection outbound queue (pushes bounded in bytes, replies apart);
//! * [`delta`] — delta compression of publications: negotiation types, the fossil encoder;
//! * [`payload`] — checks of payloads other clients receive (JSON only, bounded depth);
//! * [`broker`] — the [`broker::Broker`] port, the in-memory broker with history (bounded
//!   node-wide, see [`broker::memory`]) and the conformance suite (feature `testing`);
//! * [`presence`] — the [`presence::PresenceStore`] port and the in-memory store;
//! * [`control`] — node-to-node commands over the broker (heartbeats, user ops, surveys);
//! * [`emulation`] — commands of an HTTP-streaming / SSE session forwarded to the node that
//!   holds it;
//! * [`auth`] — the [`auth::TokenVerifier`] port and token claims;
//! * [`proxy`] — the [`proxy::Proxy`] port of backend hooks (connect, refresh, subscribe,
//!   publish, sub_refresh, rpc), its bounded and measured handle and the registry by name;
//! * [`channel`] — channel names, namespaces, permissions;
//! * [`options`], [`duration`] — typed options with documented defaults;
//! * [`clock`] — unix time and the expiry rule (one copy for the workspace);
//! * [`sync`] — the lock policy and its poison-tolerant locking helpers;
//! * [`metrics`] — metric names and descriptions;
//! * `wheel` — the node's timer wheel for every connection's pings and deadlines.
//!
//! Locking, in short (the whole policy and the lock order are in [`sync`]): std `Mutex` and
//! `RwLock` for short critical sections that never span an `.await`, taken through
//! [`sync::lock`] / [`sync::read`] / [`sync::write`] (a poisoned lock is recovered);
//! `tokio::sync::Mutex` only where a section must span an `.await` — a connection's command
//! lock and the per-channel broker-subscription lock of the hub.

pub mod api;
pub mod auth;
pub mod broker;
pub mod channel;
pub mod client;
pub mod clock;
pub mod control;
pub mod delta;
pub mod disconnect;
pub mod duration;
pub mod emulation;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod options;
pub mod outbound;
pub mod payload;
pub mod presence;
pub mod proxy;
pub mod retry;
pub mod sync;
mod wheel;

pub use api::{ApiError, ServerApi};
pub use client::{Client, ClientParams, WriteEvent};
pub use disconnect::Disconnect;
pub use node::{ClientLimitError, Node};
