//! Generates the Protobuf code of `proto/*.proto` — and, with the `grpc` feature, the tonic
//! service code — with a vendored `protoc`, so no system `protoc` is needed. The encoded file
//! descriptor set of `api.proto` (for gRPC server reflection) goes to
//! `$OUT_DIR/api_descriptor.bin`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the protoc named by PROTOC (build scripts are single-threaded).
    std::env::set_var("PROTOC", protoc);

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "client.proto",
        "api.proto",
        "backplane.proto",
        "presence.proto",
        "proxy.proto",
    ]
    .map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    // The messages of the client protocol and the backplane: never a service.
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .bytes(".")
        .compile_protos(
            &[root.join("client.proto"), root.join("backplane.proto")],
            std::slice::from_ref(&root),
        )?;
    // The server API, compiled alone so that its descriptor set holds only `api.proto`.
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .bytes(".")
        .file_descriptor_set_path(out.join("api_descriptor.bin"))
        .compile_protos(&[root.join("api.proto")], std::slice::from_ref(&root))?;
    // The presence service (`chorus presence` and its gateway client).
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .bytes(".")
        .compile_protos(&[root.join("presence.proto")], std::slice::from_ref(&root))?;
    // The backend hooks (`CentrifugoProxy`): the gateway is the client; the server side is
    // what tests (and Rust backends) implement. No transport constructor: its `connect` would
    // collide with the `Connect` method (build a client with `CentrifugoProxyClient::new`).
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .build_transport(false)
        .bytes(".")
        .compile_protos(&[root.join("proxy.proto")], &[root])?;
    Ok(())
}
