//! Changes of a connection's subscriptions made by the server API (serialized with the
//! connection's own commands).

use chorus_protocol::codes;

use super::subscribe::SubscribeSpec;
use super::Client;
use crate::auth::ServerSubOptions;
use crate::control::SubscribeUser;
use crate::node::api::subscribe_push;
use crate::options::ChannelOptions;

/// Subscribes one connection server-side and sends it a `subscribe` push. Failures are logged:
/// the API call itself succeeds for the user as a whole.
pub(crate) async fn server_subscribe(
    client: &Client,
    req: &SubscribeUser,
    options: ChannelOptions,
    sub_opts: &ServerSubOptions,
) {
    let _serial = client.cmd_lock.lock().await;
    if !client.is_connected() || client.is_closed() {
        return;
    }
    if client.lock_state().subs.contains_key(req.channel.as_str()) {
        return;
    }
    if client.lock_state().subs.len() >= client.node.options().client.channel_limit {
        client.disconnect(codes::DISCONNECT_CHANNEL_LIMIT.into());
        return;
    }
    let spec = SubscribeSpec::server_side(
        req.channel.clone(),
        options,
        sub_opts,
        req.recover_since.clone(),
    );
    match client.subscribe_prepare(spec).await {
        Ok((result, prepared)) => {
            client.send_push(&subscribe_push(&req.channel, &result));
            client.subscribe_finish(prepared).await;
        }
        Err(e) => tracing::debug!(client = %client.id(), error = ?e, "server subscribe failed"),
    }
}

impl Client {
    /// Server API unsubscribe: unsubscribe push 2000.
    pub(crate) async fn server_unsubscribe(&self, channel: &str) {
        let _serial = self.cmd_lock.lock().await;
        self.remove_subscription(channel, Some(codes::UNSUBSCRIBE_SERVER))
            .await;
    }
}
