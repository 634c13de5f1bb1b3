//! The server API of a node: what internal services call over HTTP (and gRPC). Every method
//! validates its input and answers an [`ApiError`] with the protocol's code.

use std::collections::HashMap;

use bytes::Bytes;
use chorus_protocol::codes::{self, ErrorCode};
use chorus_protocol::{
    ClientInfo, HistoryResult, PresenceStatsResult, Publication, Push, Reply, StreamPosition,
    Subscribe,
};

use super::Node;
use crate::auth::ServerSubOptions;
use crate::broker::{BrokerError, HistoryQuery};
use crate::channel;
use crate::client::subscribe_api::server_subscribe;
use crate::control::{Control, DisconnectUser, NodeInfo, SubscribeUser, UnsubscribeUser};
use crate::disconnect::Disconnect;
use crate::metrics;
use crate::payload;

/// A server API error: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: u32,
    pub message: String,
}

impl From<ErrorCode> for ApiError {
    fn from(e: ErrorCode) -> Self {
        ApiError {
            code: e.code,
            message: e.message.to_string(),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::UnrecoverablePosition => codes::ERROR_UNRECOVERABLE_POSITION.into(),
            _ => codes::ERROR_INTERNAL.into(),
        }
    }
}

/// Options of a server API publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOpts {
    pub skip_history: bool,
    pub tags: HashMap<String, String>,
    pub idempotency_key: String,
}

fn sat(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Node {
    fn channel_options(&self, channel: &str) -> Result<crate::options::ChannelOptions, ApiError> {
        Ok(channel::resolve(&self.options().channel, channel)?.clone())
    }

    /// Publishes into a channel. `None` when the channel keeps no history (result `{}`).
    pub async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        opts: PublishOpts,
    ) -> Result<Option<StreamPosition>, ApiError> {
        let options = self.channel_options(channel)?;
        let max_depth = self.options().client.json_max_depth;
        payload::check_publication(
            &data,
            options.allow_binary_data,
            max_depth,
            payload::Source::ApiPublish,
        )
        .map_err(|_| ApiError::from(codes::ERROR_BAD_REQUEST))?;
        let key = (!opts.idempotency_key.is_empty()).then_some(opts.idempotency_key);
        let publish_opts = self.publish_options(&options, opts.skip_history, key);
        let publication = Publication {
            data,
            tags: opts.tags,
            ..Default::default()
        };
        let keeps_history = publish_opts.history.is_some();
        let position = self
            .broker()
            .publish(channel, publication, &publish_opts)
            .await?;
        metrics::publication("api");
        Ok(keeps_history.then_some(position))
    }

    /// Subscribes the user's connections (or one of them) on every node to a channel; each
    /// gets a `subscribe` push. Permission checks do not apply to the server API.
    pub async fn subscribe_user(&self, req: SubscribeUser) -> Result<(), ApiError> {
        if req.user.is_empty() || req.channel.is_empty() {
            return Err(codes::ERROR_BAD_REQUEST.into());
        }
        let options = self.channel_options(&req.channel)?;
        if !options.allow_binary_data {
            // `info` reaches other subscribers in join/leave and presence; `data` reaches the
            // user's JSON connections in the subscribe push.
            let max_depth = self.options().client.json_max_depth;
            for part in [&req.info, &req.data] {
                payload::check_counted(part, max_depth, payload::Source::Info)
                    .map_err(|_| ApiError::from(codes::ERROR_BAD_REQUEST))?;
            }
        }
        self.subscribe_user_local(req.clone()).await?;
        self.send_control("", Control::Subscribe(req)).await?;
        Ok(())
    }

    pub(crate) async fn subscribe_user_local(&self, req: SubscribeUser) -> Result<(), ApiError> {
        let options = self.channel_options(&req.channel)?;
        let sub_opts = ServerSubOptions {
            info: req.info.clone(),
            data: req.data.clone(),
            override_options: req.override_options.clone(),
        };
        for client in self.hub().user_clients(&req.user) {
            if !req.client.is_empty() && client.id() != req.client {
                continue;
            }
            server_subscribe(&client, &req, options.clone(), &sub_opts).await;
        }
        Ok(())
    }

    /// Unsubscribes the user's connections on every node from a channel (unsubscribe push 2000).
    pub async fn unsubscribe_user(
        &self,
        user: &str,
        channel: &str,
        client: &str,
        session: &str,
    ) -> Result<(), ApiError> {
        if user.is_empty() || channel.is_empty() {
            return Err(codes::ERROR_BAD_REQUEST.into());
        }
        self.channel_options(channel)?;
        self.unsubscribe_user_local(user, channel, client).await;
        let control = Control::Unsubscribe(UnsubscribeUser {
            user: user.to_string(),
            channel: channel.to_string(),
            client: client.to_string(),
            session: session.to_string(),
        });
        self.send_control("", control).await?;
        Ok(())
    }

    /// Disconnects the user's connections on every node (all, or one client), except the
    /// whitelisted ones.
    pub async fn disconnect_user(
        &self,
        user: &str,
        client: &str,
        session: &str,
        whitelist: &[String],
        disconnect: Disconnect,
    ) -> Result<(), ApiError> {
        if user.is_empty() {
            return Err(codes::ERROR_BAD_REQUEST.into());
        }
        self.disconnect_user_local(user, client, whitelist, disconnect.clone());
        let control = Control::Disconnect(DisconnectUser {
            user: user.to_string(),
            client: client.to_string(),
            session: session.to_string(),
            whitelist: whitelist.to_vec(),
            disconnect,
        });
        self.send_control("", control).await?;
        Ok(())
    }

    pub async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, ApiError> {
        let options = self.channel_options(channel)?;
        if !options.presence {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        self.bounded_presence(channel)
            .await
            .map_err(|e| e.code().into())
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStatsResult, ApiError> {
        let options = self.channel_options(channel)?;
        if !options.presence {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        self.cluster_presence_stats(channel)
            .await
            .map_err(|_| codes::ERROR_INTERNAL.into())
    }

    /// Reads history. `limit`: 0 = position only, negative = everything kept, N = first N (last
    /// N with `reverse`). `since` is exclusive; an epoch mismatch answers 112.
    pub async fn history(
        &self,
        channel: &str,
        limit: i32,
        since: Option<StreamPosition>,
        reverse: bool,
    ) -> Result<HistoryResult, ApiError> {
        let options = self.channel_options(channel)?;
        if !options.history_enabled() {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        crate::broker::check_history_since(reverse, since.as_ref())?;
        let query = HistoryQuery {
            since,
            limit: usize::try_from(limit).ok(),
            reverse,
            meta_ttl: self.meta_ttl(&options),
        };
        let page = self.broker().history(channel, query).await?;
        Ok(HistoryResult {
            publications: page.publications,
            epoch: page.position.epoch,
            offset: page.position.offset,
        })
    }

    pub async fn history_remove(&self, channel: &str) -> Result<(), ApiError> {
        let options = self.channel_options(channel)?;
        if !options.history_enabled() {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        self.broker().remove_history(channel).await?;
        Ok(())
    }

    /// Channel → number of subscribed clients on every live node, for channels with at least
    /// one subscriber.
    pub async fn channels(&self) -> Result<HashMap<String, u32>, ApiError> {
        Ok(self.cluster_channels().await)
    }

    /// Every live node (this one first).
    pub async fn info(&self) -> Result<Vec<NodeInfo>, ApiError> {
        Ok(self.cluster_nodes())
    }

    /// This node's entry of `info`.
    pub(crate) fn local_info(&self) -> NodeInfo {
        let hub = self.hub();
        let counts = hub.channel_counts();
        NodeInfo {
            uid: self.id().to_string(),
            name: self.options().name.clone(),
            version: self.options().version.clone(),
            num_clients: sat(hub.num_clients()),
            num_users: sat(hub.num_users()),
            num_subs: counts.values().copied().fold(0u32, u32::saturating_add),
            num_channels: sat(counts.len()),
            uptime: sat(self.uptime().as_secs() as usize),
        }
    }
}

/// The `subscribe` push announcing a server-side subscription added after connect.
pub(crate) fn subscribe_push(channel: &str, result: &chorus_protocol::SubscribeResult) -> Reply {
    Reply {
        push: Some(Push {
            channel: channel.to_string(),
            subscribe: Some(Subscribe {
                recoverable: result.recoverable,
                epoch: result.epoch.clone(),
                offset: result.offset,
                positioned: result.positioned,
                data: result.data.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
