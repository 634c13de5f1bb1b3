//! Redis Cluster mode.
//!
//! Channels are hashed (jump hash) into `partitions` partitions; every key of a channel and the
//! partition's pub/sub channel carry the hash tag `{prefix.<idx>}`, so the publish script
//! touches one slot and its `SPUBLISH` goes to the node owning that slot. A node `SSUBSCRIBE`s
//! the partition channels of the channels it has local subscribers for (at most `partitions`
//! subscriptions however many channels) and drops messages of channels it does not need.
//!
//! Connections use RESP3 with a push sender (sharded pub/sub messages arrive as pushes);
//! `SSUBSCRIBE` is issued one channel per call (channels of different slots would be
//! CROSSSLOT).

use redis::cluster::ClusterClientBuilder;
use redis::{ProtocolVersion, PushInfo, RedisResult};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::RedisConfig;
use crate::shard::Conn;

/// Connects to the cluster through its seed nodes.
pub async fn connect(
    urls: &[String],
    config: &RedisConfig,
    push: Option<UnboundedSender<PushInfo>>,
) -> RedisResult<Conn> {
    let mut builder = ClusterClientBuilder::new(urls.to_vec())
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.command_timeout)
        .retries(1);
    if let Some(tx) = push {
        builder = builder.push_sender(tx);
    }
    if urls.first().is_some_and(|u| u.starts_with("rediss://")) {
        if config.tls.insecure_skip_verify {
            builder = builder.tls(redis::TlsMode::Insecure);
        }
        if let Some(certs) = config.tls.certificates() {
            builder = builder.certs(certs);
        }
    }
    let client = builder.build()?;
    Ok(Conn::Cluster(client.get_async_connection().await?))
}
