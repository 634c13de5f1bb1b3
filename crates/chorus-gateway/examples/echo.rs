//! A node with the echo endpoint on, for Autobahn conformance runs (kosoku):
//!
//! ```text
//! cargo run --release -p chorus-gateway --example echo -- [PORT]
//! kosoku -m fuzzingclient -x '12.*' -x '13.*' -p 2 ws://127.0.0.1:PORT/connection/echo
//! ```
//!
//! The message size limit is 16 MiB (section 9 sends messages that large). Stops on Ctrl-C.

use chorus_gateway::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = match std::env::args().nth(1) {
        Some(p) => p.parse()?,
        None => 0,
    };
    let mut config = Config::embedded_default();
    config.http_server.port = port;
    config.websocket.echo_endpoint = true;
    config.websocket.message_size_limit = 16 << 20;
    config.websocket.write_timeout = chorus_core::duration::ConfigDuration::from_secs(10);
    config.shutdown.drain_window = chorus_core::duration::ConfigDuration::from_millis(100);
    config.shutdown.timeout = chorus_core::duration::ConfigDuration::from_secs(2);
    chorus_gateway::server::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
