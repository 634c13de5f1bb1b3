//! Publishes into a channel and reads its history through chorus's gRPC server API, with a
//! tonic client generated from `proto/api.proto` (see `build.rs`).
//!
//! ```sh
//! cargo run -p chorus-grpc-example -- http://127.0.0.1:10000 chat:lobby '{"text":"hello"}'
//! CHORUS_GRPC_API_KEY=secret cargo run -p chorus-grpc-example -- http://127.0.0.1:10000
//! ```
//!
//! Arguments (all optional): server URL (default `http://127.0.0.1:10000`), channel (default
//! `chat:lobby`), data (default `{"text":"hello from tonic"}`). The key, when the server has
//! `grpc_api.key`, comes from `CHORUS_GRPC_API_KEY`.

use anyhow::{bail, Context as _};
use tonic::metadata::MetadataValue;
use tonic::Request;

/// The generated messages and client (package `centrifugal.centrifugo.api`).
pub mod api {
    tonic::include_proto!("centrifugal.centrifugo.api");
}

use api::centrifugo_api_client::CentrifugoApiClient;

/// `message` with the `authorization: apikey <key>` metadata when a key is given.
fn authorized<T>(message: T, key: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    if !key.is_empty() {
        let value: MetadataValue<_> = format!("apikey {key}").parse()?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:10000".into());
    let channel = args.next().unwrap_or_else(|| "chat:lobby".into());
    let data = args
        .next()
        .unwrap_or_else(|| r#"{"text":"hello from tonic"}"#.into());
    let key = std::env::var("CHORUS_GRPC_API_KEY").unwrap_or_default();

    let mut client = CentrifugoApiClient::connect(url.clone())
        .await
        .with_context(|| format!("connecting to {url}"))?;

    // By default errors come back inside the response (`error`), with status OK.
    let publish = api::PublishRequest {
        channel: channel.clone(),
        data: data.into_bytes(),
        ..Default::default()
    };
    let reply = client
        .publish(authorized(publish, &key)?)
        .await?
        .into_inner();
    if let Some(e) = reply.error {
        bail!("publish: error {}: {}", e.code, e.message);
    }
    let result = reply.result.unwrap_or_default();
    println!(
        "published into {channel}: offset {} epoch {:?}",
        result.offset, result.epoch
    );

    let history = api::HistoryRequest {
        channel: channel.clone(),
        limit: 10,
        reverse: true,
        ..Default::default()
    };
    let reply = client
        .history(authorized(history, &key)?)
        .await?
        .into_inner();
    if let Some(e) = reply.error {
        bail!("history: error {}: {}", e.code, e.message);
    }
    let history = reply.result.unwrap_or_default();
    println!(
        "history of {channel} (newest first, top offset {}):",
        history.offset
    );
    for publication in history.publications {
        println!(
            "  {} {}",
            publication.offset,
            String::from_utf8_lossy(&publication.data)
        );
    }
    Ok(())
}
