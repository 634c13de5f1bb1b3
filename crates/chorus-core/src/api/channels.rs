//! Reads about channels, users and nodes — `presence`, `presence_stats`, `user_status`, `history`,
//! `history_remove`, `channels`, `info` — and `rpc`.

use chorus_protocol::codes;

use super::{bad_request, channel_options, ApiError};
use super::{
    ChannelInfo, ChannelsRequest, ChannelsResult, HistoryRemoveRequest, HistoryRemoveResult,
    HistoryRequest, HistoryResult, InfoRequest, InfoResult, PresenceRequest, PresenceResult,
    PresenceStatsRequest, PresenceStatsResult, RpcRequest, RpcResult, UserStatusRequest,
    UserStatusResult,
};
use crate::broker::{check_history_since, HistoryQuery};
use crate::node::Node;

pub(super) async fn presence(
    node: &Node,
    req: PresenceRequest,
) -> Result<PresenceResult, ApiError> {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    let options = channel_options(node, &req.channel)?;
    if !options.presence {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let presence = node
        .bounded_presence(&req.channel)
        .await
        .map_err(|e| ApiError::from(e.code()))?;
    Ok(PresenceResult { presence })
}

pub(super) async fn presence_stats(
    node: &Node,
    req: PresenceStatsRequest,
) -> Result<PresenceStatsResult, ApiError> {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    let options = channel_options(node, &req.channel)?;
    if !options.presence {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let stats = node
        .cluster_presence_stats(&req.channel)
        .await
        .map_err(|_| ApiError::from(codes::ERROR_INTERNAL))?;
    Ok(PresenceStatsResult {
        num_clients: stats.num_clients,
        num_users: stats.num_users,
    })
}

/// Most users one `user_status` call may ask about.
pub const MAX_USER_STATUS_USERS: usize = 10_000;

/// Every user's status across the cluster, in request order. An empty list, an empty user id
/// or more than [`MAX_USER_STATUS_USERS`] users is 107; no answer that is exact → 100.
pub(super) async fn user_status(
    node: &Node,
    req: UserStatusRequest,
) -> Result<UserStatusResult, ApiError> {
    if req.users.is_empty()
        || req.users.len() > MAX_USER_STATUS_USERS
        || req.users.iter().any(String::is_empty)
    {
        return Err(bad_request());
    }
    let statuses = node
        .cluster_user_status(&req.users)
        .await
        .map_err(|_| ApiError::from(codes::ERROR_INTERNAL))?;
    Ok(UserStatusResult { statuses })
}

/// `limit`: 0 = position only, negative = everything kept, N = first N (last N with
/// `reverse`). `since` is exclusive; an epoch mismatch answers 112.
pub(super) async fn history(node: &Node, req: HistoryRequest) -> Result<HistoryResult, ApiError> {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    check_history_since(req.reverse, req.since.as_ref())?;
    let options = channel_options(node, &req.channel)?;
    if !options.history_enabled() {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let query = HistoryQuery {
        since: req.since,
        limit: usize::try_from(req.limit).ok(),
        reverse: req.reverse,
        meta_ttl: node.meta_ttl(&options),
    };
    let page = node.broker().history(&req.channel, query).await?;
    Ok(HistoryResult {
        publications: page.publications,
        epoch: page.position.epoch,
        offset: page.position.offset,
    })
}

pub(super) async fn history_remove(
    node: &Node,
    req: HistoryRemoveRequest,
) -> Result<HistoryRemoveResult, ApiError> {
    if req.channel.is_empty() {
        return Err(bad_request());
    }
    let options = channel_options(node, &req.channel)?;
    if !options.history_enabled() {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    node.broker().remove_history(&req.channel).await?;
    Ok(HistoryRemoveResult {})
}

/// Channels with at least one subscriber on some live node, filtered by a glob (`*`, `?`,
/// `[abc]`, `[!a-z]`, as Centrifugo's); an invalid pattern is 107.
pub(super) async fn channels(
    node: &Node,
    req: ChannelsRequest,
) -> Result<ChannelsResult, ApiError> {
    let pattern = if req.pattern.is_empty() {
        None
    } else {
        Some(glob::Pattern::new(&req.pattern).map_err(|_| bad_request())?)
    };
    let channels = node
        .cluster_channels()
        .await
        .into_iter()
        .filter(|(name, _)| pattern.as_ref().is_none_or(|p| p.matches(name)))
        .map(|(name, num_clients)| (name, ChannelInfo { num_clients }))
        .collect();
    Ok(ChannelsResult { channels })
}

pub(super) async fn info(node: &Node, _req: InfoRequest) -> Result<InfoResult, ApiError> {
    Ok(InfoResult {
        nodes: node.cluster_nodes(),
    })
}

/// No RPC extensions are registered: a named method is unknown (104), an empty one is 107.
pub(super) async fn rpc(req: RpcRequest) -> Result<RpcResult, ApiError> {
    if req.method.is_empty() {
        return Err(bad_request());
    }
    Err(codes::ERROR_METHOD_NOT_FOUND.into())
}
