//! chorus-proto: Rust code generated at build time from the `.proto` files in `proto/`.
//!
//! Parts:
//! * [`client`] — the client protocol v2 (`proto/client.proto`, package `chorus.protocol`);
//!   the server itself uses the hand-written types of `chorus-protocol`, these are the
//!   reference they are tested against;
//! * [`api`] — the Centrifugo-compatible gRPC server API (`proto/api.proto`, package
//!   `centrifugal.centrifugo.api`): messages, plus the tonic server and client with the `grpc`
//!   feature (only crates that serve or call gRPC enable it);
//! * [`backplane`] — the cross-node envelope sent over Redis (`proto/backplane.proto`);
//! * [`presence`] — the presence service (`proto/presence.proto`, package
//!   `chorus.presence.v1`): query messages and the gateway `Sync` stream, plus the tonic
//!   server and client with the `grpc` feature;
//! * [`proxy`] — the backend hooks (`proto/proxy.proto`, package
//!   `centrifugal.centrifugo.proxy`, wire-compatible with Centrifugo v6's `CentrifugoProxy`):
//!   messages, plus the tonic client (the gateway calls backends) and server with `grpc`.
//!
//! Generated with `tonic-prost-build` and a vendored `protoc` (`protoc-bin-vendored`).

/// Client protocol messages (package `chorus.protocol`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod client {
    include!(concat!(env!("OUT_DIR"), "/chorus.protocol.rs"));
}

/// Server API messages and the `CentrifugoApi` gRPC service (package
/// `centrifugal.centrifugo.api`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod api {
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifugo.api.rs"));

    /// The encoded `FileDescriptorSet` of `proto/api.proto` (for gRPC server reflection).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/api_descriptor.bin"));
}

/// Cross-node backplane envelope (package `chorus.backplane`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod backplane {
    include!(concat!(env!("OUT_DIR"), "/chorus.backplane.rs"));
}

/// Presence service messages and the `Presence` gRPC service (package `chorus.presence.v1`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod presence {
    include!(concat!(env!("OUT_DIR"), "/chorus.presence.v1.rs"));
}

/// Backend hook messages and the `CentrifugoProxy` gRPC service (package
/// `centrifugal.centrifugo.proxy`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proxy {
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifugo.proxy.rs"));
}
