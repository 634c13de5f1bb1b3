//! User operations of the server API applied to this node's connections — by the node that
//! received the API call, and by every other node when the operation arrives over the
//! control channel (see `api/users.rs`).

use std::sync::Arc;

use crate::auth::ServerSubOptions;
use crate::client::Client;
use crate::control::{DisconnectUser, RefreshUser, SubscribeUser, UnsubscribeUser};
use crate::node::Node;

impl Node {
    /// The local connections an operation selects: every connection of `user`, or only the
    /// one with id `client`.
    fn targets(&self, user: &str, client: &str) -> Vec<Arc<Client>> {
        let mut clients = self.hub().user_clients(user);
        if !client.is_empty() {
            clients.retain(|c| c.id() == client);
        }
        clients
    }

    /// Subscribes the selected connections server-side; each gets a `subscribe` push. A
    /// channel whose namespace this node does not know is ignored (configs differ).
    pub(crate) async fn subscribe_local(&self, op: &SubscribeUser) {
        let Ok(options) = crate::channel::resolve(&self.options().channel, &op.channel) else {
            return;
        };
        let sub_opts = ServerSubOptions {
            info: op.info.clone(),
            data: op.data.clone(),
            override_options: op.override_options.clone(),
        };
        for client in self.targets(&op.user, &op.client) {
            client
                .server_subscribe(op, options.clone(), &sub_opts)
                .await;
        }
    }

    /// Unsubscribes the selected connections (unsubscribe push 2000).
    pub(crate) async fn unsubscribe_local(&self, op: &UnsubscribeUser) {
        for client in self.targets(&op.user, &op.client) {
            client.server_unsubscribe(&op.channel).await;
        }
    }

    /// Closes the selected connections, except the whitelisted ones.
    pub(crate) fn disconnect_local(&self, op: &DisconnectUser) {
        for client in self.targets(&op.user, &op.client) {
            if !op.whitelist.iter().any(|w| w == client.id()) {
                client.disconnect(op.disconnect.clone());
            }
        }
    }

    /// Refreshes the selected connections (expiry, info).
    pub(crate) fn refresh_local(&self, op: &RefreshUser) {
        for client in self.targets(&op.user, &op.client) {
            client.server_refresh(op);
        }
    }
}
