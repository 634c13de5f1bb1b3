//! chorus-gateway: the edge of a chorus node.
//!
//! Parts:
//! * [`config`] — typed, layered configuration (defaults < file < `CHORUS_*` env < flags),
//!   unknown-key reporting, the embedded default;
//! * [`auth`] — JWT verification of connection and subscription tokens (HS/RS/ES);
//! * [`app`] — builds a [`chorus_core::Node`] (broker, presence, verifier) from the config;
//! * [`server`] — the hyper 1 HTTP server: routing, health/readiness, metrics, graceful drain;
//! * [`ws`] — the WebSocket transport on fastwebsockets: upgrade, reader, batching writer, echo;
//! * [`api`] — the HTTP server API (`POST /api/<method>`), Centrifugo-compatible: a JSON mapping
//!   of the core's typed server API (`chorus_core::api`);
//! * [`grpc_api`] — the gRPC server API (`centrifugal.centrifugo.api.CentrifugoApi`) on its
//!   own listener, Centrifugo-compatible: a Protobuf mapping of the same typed server API;
//! * [`emulation`] — the HTTP-streaming and SSE fallback transports and `/emulation`;
//! * [`demo`] — the embedded demo page;
//! * [`admin`] — the admin console at `/admin` (login, session tokens, the embedded page);
//! * [`proxy`] — backend hooks (Centrifugo's proxies) over HTTP and gRPC: the core's
//!   `Proxy` port and the registry built from `client.proxy`, `channel.proxy`, `rpc.proxy`
//!   and `proxies`;
//! * `client_tls` — rustls client configurations shared by JWKS fetches and hooks;
//! * [`metrics`] — the Prometheus recorder and the gateway's metric names.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub(crate) mod client_tls;
pub mod config;
pub mod demo;
pub mod emulation;
pub mod grpc_api;
pub mod metrics;
pub mod presence;
pub mod proxy;
pub mod server;
pub mod ws;
