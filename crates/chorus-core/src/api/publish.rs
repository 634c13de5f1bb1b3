//! `publish`, `broadcast`, and the payload rule shared by every method with a payload.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use chorus_protocol::{Publication, StreamPosition};
use futures_util::future::join_all;

use super::{bad_request, channel_options, ApiError, Method};
use super::{BroadcastRequest, BroadcastResult, PublishRequest, PublishResult};
use crate::metrics;
use crate::node::Node;
use crate::payload;

/// A payload given as raw bytes and/or base64 text: the base64 text wins when non-empty (as in
/// Centrifugo); invalid base64 is 107.
pub(super) fn payload(raw: Bytes, b64: &str) -> Result<Bytes, ApiError> {
    if b64.is_empty() {
        return Ok(raw);
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Bytes::from)
        .map_err(|_| bad_request())
}

pub(super) async fn publish(node: &Node, req: PublishRequest) -> Result<PublishResult, ApiError> {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    let data = payload(req.data, &req.b64data)?;
    if data.is_empty() {
        return Err(bad_request());
    }
    let options = Options {
        skip_history: req.skip_history,
        tags: req.tags,
        idempotency_key: req.idempotency_key,
        delta: req.delta,
    };
    let position = publish_to(node, &req.channel, data, options).await?;
    Ok(PublishResult { position })
}

/// Publishes into every channel concurrently. Per-channel failures go into `responses` (and
/// are counted under `method="broadcast"`); the call itself fails only on an empty channel
/// list or missing/invalid data.
pub(super) async fn broadcast(
    node: &Node,
    req: BroadcastRequest,
) -> Result<BroadcastResult, ApiError> {
    if req.channels.is_empty() {
        return Err(bad_request());
    }
    let data = payload(req.data, &req.b64data)?;
    if data.is_empty() {
        return Err(bad_request());
    }
    let results = join_all(req.channels.iter().map(|channel| {
        let options = Options {
            skip_history: req.skip_history,
            tags: req.tags.clone(),
            idempotency_key: req.idempotency_key.clone(),
            delta: req.delta,
        };
        let data = data.clone();
        async move {
            if channel.is_empty() {
                return Err(bad_request());
            }
            publish_to(node, channel, data, options).await
        }
    }))
    .await;
    let responses = results
        .into_iter()
        .map(|r| {
            r.map(|position| PublishResult { position })
                .inspect_err(|e| metrics::api_error(Method::Broadcast.name(), e.code.to_string()))
        })
        .collect();
    Ok(BroadcastResult { responses })
}

/// Options of one publish.
struct Options {
    skip_history: bool,
    tags: HashMap<String, String>,
    idempotency_key: String,
    delta: bool,
}

/// Publishes `data` into `channel`: 102/107 for the channel, 107 for a payload the namespace
/// cannot take (not JSON without `allow_binary_data`, or nested too deep). `None` when the
/// channel keeps no history.
async fn publish_to(
    node: &Node,
    channel: &str,
    data: Bytes,
    options: Options,
) -> Result<Option<StreamPosition>, ApiError> {
    let channel_opts = channel_options(node, channel)?;
    let max_depth = node.options().client.json_max_depth;
    payload::check_publication(
        &data,
        channel_opts.allow_binary_data,
        max_depth,
        payload::Source::ApiPublish,
    )
    .map_err(|_| bad_request())?;
    let key = (!options.idempotency_key.is_empty()).then_some(options.idempotency_key);
    let publish_opts = node.publish_options(&channel_opts, options.skip_history, key);
    let publication = Publication {
        data,
        tags: options.tags,
        delta: options.delta || channel_opts.delta_publish,
        ..Default::default()
    };
    let keeps_history = publish_opts.history.is_some();
    let position = node
        .broker()
        .publish(channel, publication, &publish_opts)
        .await?;
    metrics::publication("api");
    Ok(keeps_history.then_some(position))
}
