//! Subscribing and unsubscribing: permission checks, the buffered join of the hub, stream
//! positioning and recovery (reading the stream: [`super::recovery`]), presence, join/leave.
//!
//! Order of a subscribe (the no-gap/no-duplicate argument): (1) the subscriber joins the hub in
//! its buffering phase, (2) the node makes sure the broker delivers the channel, (3) the stream
//! is read (position or missed publications), (4) the reply is queued, (5) the buffer is
//! released, skipping offsets the reply covered. Anything published after (1) is buffered;
//! anything before (3) is in the stream read — so the client gets everything exactly once.

use std::sync::Arc;

use bytes::Bytes;
use chorus_protocol::codes::{self, UnsubscribeCode};
use chorus_protocol::{
    ClientInfo, Reply, StreamPosition, SubRefreshRequest, SubRefreshResult, SubscribeRequest,
    SubscribeResult,
};

use super::{Client, ClientSub, Fail, TokenKind};
use crate::auth::{ServerSubOptions, SubscribeOverride, TokenError};
use crate::channel::{self, Asker};
use crate::clock::{self, ttl_until};
use crate::delta::DeltaType;
use crate::hub::encoded::Encoded;
use crate::hub::subscriber::Subscriber;
use crate::metrics;
use crate::options::ChannelOptions;
use crate::payload::{self, Source};

/// Everything decided about a subscription before it is made.
#[derive(Debug)]
pub(crate) struct SubscribeSpec {
    pub(crate) channel: String,
    pub(crate) options: ChannelOptions,
    pub(crate) server_side: bool,
    pub(crate) positioned: bool,
    pub(crate) recoverable: bool,
    pub(crate) push_join_leave: bool,
    pub(crate) chan_info: Bytes,
    pub(crate) data: Bytes,
    pub(crate) expires_at: Option<i64>,
    /// The client's last position when it asked for recovery.
    pub(crate) recover: Option<StreamPosition>,
    /// Subscribe flag 2: answer 112 instead of `recovered: false`.
    pub(crate) reject_unrecovered: bool,
    /// Delta compression negotiated (the asked type is in `allowed_delta_types`).
    pub(crate) delta: bool,
}

fn apply_override(o: &mut ChannelOptions, ov: &SubscribeOverride) {
    if let Some(v) = ov.presence {
        o.presence = v;
    }
    if let Some(v) = ov.join_leave {
        o.join_leave = v;
    }
    if let Some(v) = ov.force_push_join_leave {
        o.force_push_join_leave = v;
    }
    if let Some(v) = ov.force_positioning {
        o.force_positioning = v;
    }
    if let Some(v) = ov.force_recovery {
        o.force_recovery = v;
    }
}

impl SubscribeSpec {
    /// A server-side subscription (token `channels`/`subs`, server API): no permission checks.
    pub(crate) fn server_side(
        channel: String,
        mut options: ChannelOptions,
        sub: &ServerSubOptions,
        recover: Option<StreamPosition>,
    ) -> Self {
        apply_override(&mut options, &sub.override_options);
        let history = options.history_enabled();
        let recoverable = history && options.force_recovery;
        SubscribeSpec {
            channel,
            positioned: history && (options.force_positioning || recoverable),
            recoverable,
            push_join_leave: options.join_leave,
            options,
            server_side: true,
            chan_info: sub.info.clone(),
            data: sub.data.clone(),
            expires_at: None,
            recover: if recoverable { recover } else { None },
            reject_unrecovered: false,
            // Set by the caller from `connect.subs[channel].delta` (server API: never).
            delta: false,
        }
    }
}

/// A subscription made but not yet live (its reply is not queued yet).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) subscriber: Arc<Subscriber>,
    /// The stream top the subscriber goes live at.
    pub(crate) offset: u64,
    epoch: String,
    join: Option<ClientInfo>,
    /// Subscribe flag 2: a failed recovery answers 112.
    reject_unrecovered: bool,
}

/// Turns a recovered subscribe result into "not recovered" at the stream top `top`: no
/// publications, `recovered: false`, the top offset (what a failed recovery answers). Returns
/// whether anything changed.
pub(crate) fn unrecover(result: &mut SubscribeResult, top: u64) -> bool {
    if !result.recovered {
        return false;
    }
    result.recovered = false;
    result.publications = Vec::new();
    result.offset = top;
    true
}

impl Client {
    /// Checks a client subscribe request and decides its options.
    async fn authorize_subscribe(&self, req: SubscribeRequest) -> Result<SubscribeSpec, Fail> {
        let node = &self.node;
        let config = &node.options().channel;
        if req.channel.is_empty() {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        // As Centrifugo: an unknown delta type is a bad request (3501) before anything else;
        // a known one the namespace does not allow just leaves delta mode off.
        let delta_type = DeltaType::requested(&req.delta)
            .map_err(|_| Fail::from(codes::DISCONNECT_BAD_REQUEST))?;
        let mut options = channel::resolve(config, &req.channel)?.clone();
        let max_depth = node.options().client.json_max_depth;
        payload::check_command_data(&req.data, max_depth)
            .map_err(|_| Fail::from(codes::ERROR_BAD_REQUEST))?;
        if req.r#type != 0 {
            // Map and shared-poll subscriptions are not supported.
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let (user, subscribed, count) = {
            let st = self.lock_state();
            let existing = st.subs.get(req.channel.as_str());
            let lost = existing.is_some_and(|s| s.subscriber.is_lost());
            (st.user.clone(), existing.is_some() && !lost, st.subs.len())
        };
        if subscribed {
            return Err(codes::ERROR_ALREADY_SUBSCRIBED.into());
        }
        if count >= node.options().client.channel_limit {
            return Err(codes::ERROR_LIMIT_EXCEEDED.into());
        }
        let insecure = node.options().client.insecure;
        let asker = Asker {
            anonymous: user.is_empty(),
            subscribed: false,
            insecure,
        };
        let mut chan_info = Bytes::new();
        let mut data = Bytes::new();
        let mut expires_at = None;
        if !req.token.is_empty() {
            let claims = crate::auth::subscription_claims(&**node.tokens(), &req.token)
                .await
                .map_err(|e| TokenKind::Subscription.refusal(&e))?;
            if claims.channel != req.channel
                || *claims.user != *user
                || (!claims.client.is_empty() && *claims.client != *self.id)
            {
                return Err(codes::DISCONNECT_INVALID_TOKEN.into());
            }
            expires_at = claims.expires_at();
            if clock::is_expired(expires_at) {
                return Err(codes::ERROR_TOKEN_EXPIRED.into());
            }
            apply_override(&mut options, &claims.override_options);
            chan_info = claims.info;
            data = claims.data;
        } else if channel::is_private(config, &req.channel) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        } else {
            match channel::user_allowed(config, &req.channel, &user) {
                Some(true) if options.allow_user_limited_channels => {}
                Some(_) if !insecure => return Err(codes::ERROR_PERMISSION_DENIED.into()),
                _ if options.subscribe_proxy_enabled => {
                    if let Some(r) = self.subscribe_via_proxy(&options, &req).await? {
                        expires_at = (r.expire_at > 0).then_some(r.expire_at);
                        apply_override(&mut options, &r.override_options);
                        chan_info = r.info;
                        data = r.data;
                    }
                }
                _ => {
                    if !channel::can_subscribe(&options, asker) {
                        return Err(codes::ERROR_PERMISSION_DENIED.into());
                    }
                }
            }
        }
        let history = options.history_enabled();
        let may_read_history = channel::can_history(
            &options,
            Asker {
                subscribed: true,
                ..asker
            },
        );
        let recoverable = history
            && (options.force_recovery
                || (req.recoverable && (options.allow_recovery || may_read_history)));
        let positioned = history
            && (recoverable
                || options.force_positioning
                || (req.positioned && (options.allow_positioning || may_read_history)));
        let may_read_presence = channel::can_presence(
            &options,
            Asker {
                subscribed: true,
                ..asker
            },
        );
        let push_join_leave = options.join_leave
            && (options.force_push_join_leave || (req.join_leave && may_read_presence));
        let recover = (req.recover && recoverable).then(|| StreamPosition {
            offset: req.offset,
            epoch: req.epoch.clone(),
        });
        let delta = delta_type.is_some_and(|t| options.allowed_delta_types.contains(&t));
        Ok(SubscribeSpec {
            channel: req.channel,
            options,
            server_side: false,
            positioned,
            recoverable,
            push_join_leave,
            chan_info,
            data,
            expires_at,
            recover,
            reject_unrecovered: req.flag & 2 != 0,
            delta,
        })
    }

    pub(super) async fn cmd_subscribe(&self, id: u32, req: SubscribeRequest) -> Result<(), Fail> {
        let spec = self.authorize_subscribe(req).await?;
        let (result, prepared) = self.subscribe_prepare(spec).await?;
        if let Err(code) = self.send_subscribe_reply(id, result, &prepared) {
            self.abort_prepared(&prepared).await;
            return Err(code.into());
        }
        self.subscribe_finish(prepared).await;
        self.schedule_expiry_check();
        Ok(())
    }

    /// Queues the subscribe reply. Recovered publications over `client.reply_max_size` answer
    /// "not recovered" instead (the client reloads its state) — or 112 when the client asked
    /// for that (subscribe flag 2). Synchronous on purpose: a `Reply` is large, and held across
    /// an `.await` it would grow every connection's task by its size (measured: +0.8 KiB per
    /// idle connection in S1).
    fn send_subscribe_reply(
        &self,
        id: u32,
        result: SubscribeResult,
        prepared: &Prepared,
    ) -> Result<(), codes::ErrorCode> {
        let mut reply = Reply {
            id,
            subscribe: Some(result),
            ..Default::default()
        };
        if self.send_reply(&reply).is_ok() {
            return Ok(());
        }
        let downgraded = reply
            .subscribe
            .as_mut()
            .is_some_and(|result| unrecover(result, prepared.offset));
        if downgraded && prepared.reject_unrecovered {
            metrics::reply_too_large("subscribe", "unrecovered");
            return Err(codes::ERROR_UNRECOVERABLE_POSITION);
        }
        if self.send_reply(&reply).is_err() {
            metrics::reply_too_large("subscribe", "error");
            return Err(codes::ERROR_LIMIT_EXCEEDED);
        }
        metrics::reply_too_large("subscribe", "unrecovered");
        Ok(())
    }

    /// Undoes a prepared subscription whose reply could not be sent (no leave event: nobody
    /// was told about the join).
    pub(crate) async fn abort_prepared(&self, p: &Prepared) {
        if let Some(sub) = self.lock_state().subs.get_mut(&p.subscriber.channel) {
            sub.join_leave = false;
        }
        self.remove_subscription(&p.subscriber.channel, None).await;
    }

    /// Makes the subscription up to (not including) going live.
    pub(crate) async fn subscribe_prepare(
        &self,
        spec: SubscribeSpec,
    ) -> Result<(SubscribeResult, Prepared), Fail> {
        let node = self.node.clone();
        self.check_can_carry(&spec.options)?;
        let info = self.info(spec.chan_info.clone());
        if !spec.options.allow_binary_data {
            // Join/leave pushes, presence entries and this client's publications carry its
            // info to JSON connections.
            let max_depth = node.options().client.json_max_depth;
            for part in [&info.conn_info, &info.chan_info] {
                payload::check_counted(part, max_depth, Source::Info)
                    .map_err(|_| Fail::from(codes::ERROR_BAD_REQUEST))?;
            }
        }
        let channel = node.hub().channel_name(&spec.channel);
        // A lost subscription (position gap) is replaced by the new one.
        let stale = self
            .lock_state()
            .subs
            .get(&channel)
            .filter(|s| s.subscriber.is_lost())
            .is_some();
        if stale {
            self.remove_subscription(&channel, None).await;
        }
        let subscriber = Arc::new(
            Subscriber::new(
                self.id.clone(),
                channel.clone(),
                self.params.protocol,
                self.outbound.clone(),
                spec.push_join_leave,
                spec.positioned,
            )
            .with_delta(spec.delta),
        );
        if !node.hub().add_subscriber(subscriber.clone()) {
            return Err(codes::ERROR_ALREADY_SUBSCRIBED.into());
        }
        let rollback = |node: &crate::node::Node| {
            if node.hub().remove_subscriber(&subscriber) {
                node.schedule_broker_unsubscribe(&subscriber.channel);
            }
        };
        if let Err(e) = node.ensure_broker_subscribed(&channel).await {
            tracing::warn!(channel = %channel, error = %e, "broker subscribe failed");
            rollback(&node);
            return Err(codes::ERROR_INTERNAL.into());
        }
        let mut result = SubscribeResult {
            data: spec.data.clone(),
            delta: spec.delta,
            ..Default::default()
        };
        // With a sub_refresh hook the server refreshes: the client is not told to.
        if let Some(t) = spec
            .expires_at
            .filter(|_| !spec.options.sub_refresh_proxy_enabled)
        {
            result.expires = true;
            result.ttl = ttl_until(t);
        }
        let (mut offset, mut epoch) = (0, String::new());
        if spec.positioned {
            match self.read_position(&spec, &mut result).await {
                Ok((o, e)) => (offset, epoch) = (o, e),
                Err(f) => {
                    rollback(&node);
                    return Err(f);
                }
            }
        }
        if spec.options.presence {
            if let Err(e) = node.presence_store().add(&channel, info.clone()).await {
                tracing::warn!(channel = %channel, error = %e, "presence add failed");
                rollback(&node);
                return Err(codes::ERROR_INTERNAL.into());
            }
        }
        self.lock_state().subs.insert(
            channel,
            ClientSub {
                subscriber: subscriber.clone(),
                server_side: spec.server_side,
                presence: spec.options.presence,
                join_leave: spec.options.join_leave,
                chan_info: spec.chan_info,
                expires_at: spec.expires_at,
            },
        );
        let prepared = Prepared {
            subscriber,
            offset,
            epoch,
            join: spec.options.join_leave.then_some(info),
            reject_unrecovered: spec.reject_unrecovered,
        };
        Ok((result, prepared))
    }

    /// Releases buffered deliveries after the reply and announces the join.
    pub(crate) async fn subscribe_finish(&self, p: Prepared) {
        p.subscriber.go_live(p.offset, &p.epoch);
        if let Some(info) = p.join {
            if let Err(e) = self
                .node
                .broker()
                .publish_join(&p.subscriber.channel, info)
                .await
            {
                tracing::debug!(error = %e, "join publish failed");
            } else {
                crate::metrics::node_sent(crate::metrics::MessageType::Join);
            }
        }
    }

    /// Removes a subscription: hub, presence, leave event, and an optional unsubscribe push.
    /// Returns false if the client was not subscribed.
    pub(crate) async fn remove_subscription(
        &self,
        channel: &str,
        push: Option<UnsubscribeCode>,
    ) -> bool {
        let Some(sub) = self.lock_state().subs.remove(channel) else {
            return false;
        };
        let node = self.node.clone();
        if node.hub().remove_subscriber(&sub.subscriber) {
            node.schedule_broker_unsubscribe(channel);
        }
        if let Some(code) = push {
            if let Some(m) = Encoded::unsubscribe(channel, code).get(self.params.protocol) {
                self.outbound.push(m);
            }
        }
        if sub.presence {
            if let Err(e) = node.presence_store().remove(channel, &self.id).await {
                tracing::debug!(error = %e, "presence remove failed");
            }
        }
        // A draining node already left a cluster-wide presence store (its Goodbye), which
        // announced the leaves of its present connections to every other node.
        let announced = sub.presence && node.is_draining() && node.presence_store().cluster_wide();
        if sub.join_leave && !announced {
            let info = self.info(sub.chan_info.clone());
            match node.broker().publish_leave(channel, info).await {
                Ok(()) => crate::metrics::node_sent(crate::metrics::MessageType::Leave),
                Err(e) => tracing::debug!(error = %e, "leave publish failed"),
            }
        }
        true
    }

    pub(super) async fn cmd_unsubscribe(
        &self,
        id: u32,
        req: chorus_protocol::UnsubscribeRequest,
    ) -> Result<Reply, Fail> {
        if req.channel.is_empty() {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        // Server-side subscriptions are the server's to end, not the client's.
        let server_side = self
            .lock_state()
            .subs
            .get(req.channel.as_str())
            .is_some_and(|s| s.server_side);
        if !server_side {
            self.remove_subscription(&req.channel, None).await;
            self.schedule_expiry_check();
        }
        Ok(Reply {
            id,
            unsubscribe: Some(Default::default()),
            ..Default::default()
        })
    }

    pub(super) async fn cmd_sub_refresh(
        &self,
        id: u32,
        req: SubRefreshRequest,
    ) -> Result<Reply, Fail> {
        if req.channel.is_empty() || req.token.is_empty() {
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        if !self.lock_state().subs.contains_key(req.channel.as_str()) {
            return Err(codes::ERROR_BAD_REQUEST.into());
        }
        // Outcomes as in Centrifugo: an expired token (or a past `expire_at`) answers 110; an
        // invalid one, or one for another channel, user or client, disconnects (3500).
        let claims = crate::auth::subscription_claims(&**self.node.tokens(), &req.token)
            .await
            .map_err(|e| match e {
                TokenError::Expired => Fail::from(codes::ERROR_EXPIRED),
                TokenError::Invalid(_) => Fail::from(codes::DISCONNECT_INVALID_TOKEN),
            })?;
        if claims.channel != req.channel
            || *claims.user != *self.user()
            || (!claims.client.is_empty() && *claims.client != *self.id)
        {
            return Err(codes::DISCONNECT_INVALID_TOKEN.into());
        }
        let expires_at = claims.expires_at();
        if clock::is_expired(expires_at) {
            return Err(codes::ERROR_EXPIRED.into());
        }
        if let Some(s) = self.lock_state().subs.get_mut(req.channel.as_str()) {
            s.expires_at = expires_at;
        }
        self.schedule_expiry_check();
        let ttl = expires_at.map(ttl_until);
        Ok(Reply {
            id,
            sub_refresh: Some(SubRefreshResult {
                expires: ttl.is_some(),
                ttl: ttl.unwrap_or(0),
            }),
            ..Default::default()
        })
    }
}
