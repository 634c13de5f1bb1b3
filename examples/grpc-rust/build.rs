//! Generates the tonic client of `proto/api.proto` — what you would do with Centrifugo's own
//! published `api.proto` too: the package, service, messages and field numbers are the same.
//! `protoc` comes from `protoc-bin-vendored`, so no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!(
        "cargo:rerun-if-changed={}",
        proto.join("api.proto").display()
    );
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[proto.join("api.proto")], &[proto])?;
    Ok(())
}
