//! Changes of a connection made by the server API: server-side subscribe and unsubscribe
//! (serialized with the connection's own commands by its command lock) and refresh.

use chorus_protocol::codes;
use chorus_protocol::{Push, Reply, Subscribe, SubscribeResult};

use super::subscribe::SubscribeSpec;
use super::Client;
use crate::auth::ServerSubOptions;
use crate::clock;
use crate::control::{RefreshUser, SubscribeUser};
use crate::options::ChannelOptions;

impl Client {
    /// Subscribes this connection server-side and sends it a `subscribe` push. Failures are
    /// logged: the API call itself succeeds for the user as a whole.
    pub(crate) async fn server_subscribe(
        &self,
        op: &SubscribeUser,
        options: ChannelOptions,
        sub_opts: &ServerSubOptions,
    ) {
        let _serial = self.cmd_lock.lock().await;
        if !self.is_connected() || self.is_closed() {
            return;
        }
        let (subscribed, count) = {
            let st = self.lock_state();
            (st.subs.contains_key(op.channel.as_str()), st.subs.len())
        };
        if subscribed {
            return;
        }
        if count >= self.node.options().client.channel_limit {
            self.disconnect(codes::DISCONNECT_CHANNEL_LIMIT.into());
            return;
        }
        let spec = SubscribeSpec::server_side(
            op.channel.clone(),
            options,
            sub_opts,
            op.recover_since.clone(),
        );
        match self.subscribe_prepare(spec).await {
            Ok((result, prepared)) => {
                self.send_push(&subscribe_push(&op.channel, &result));
                self.subscribe_finish(prepared).await;
            }
            Err(e) => tracing::debug!(client = %self.id(), error = ?e, "server subscribe failed"),
        }
    }

    /// Server API unsubscribe: unsubscribe push 2000.
    pub(crate) async fn server_unsubscribe(&self, channel: &str) {
        let _serial = self.cmd_lock.lock().await;
        self.remove_subscription(channel, Some(codes::UNSUBSCRIBE_SERVER))
            .await;
    }

    /// Server API refresh: `expired`, or an `expire_at` not in the future, closes the
    /// connection with 3005 at once; a future `expire_at` becomes its expiry, as a refreshed
    /// token's would (it closes with 3005 `client.expired_close_delay` after that unless the
    /// client refreshes); `info` replaces its connection info for what it does from now on
    /// (presence entries and join/leave already sent keep the old one).
    pub(crate) fn server_refresh(&self, op: &RefreshUser) {
        if !self.is_connected() || self.is_closed() {
            return;
        }
        let expires_at = (op.expire_at > 0).then_some(op.expire_at);
        if op.expired || clock::is_expired(expires_at) {
            self.disconnect(codes::DISCONNECT_EXPIRED.into());
            return;
        }
        {
            let mut st = self.lock_state();
            if expires_at.is_some() {
                st.expires_at = expires_at;
            }
            if let Some(info) = &op.info {
                st.conn_info = info.clone();
            }
        }
        if expires_at.is_some() {
            self.schedule_expiry_check();
        }
    }
}

/// The `subscribe` push announcing a server-side subscription added after connect.
fn subscribe_push(channel: &str, result: &SubscribeResult) -> Reply {
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
