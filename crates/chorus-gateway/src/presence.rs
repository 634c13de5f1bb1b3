//! The gateway's presence store over the presence service (`presence.endpoints`): the core's
//! [`PresenceStore`] port adapted to `chorus_presence::PresenceClient`.
//!
//! * Writes (`add`/`remove`) go to the client's local, authoritative set: they never block on
//!   the network and never fail, so presence never fails a subscribe; the client syncs every
//!   replica (snapshot on connect, deltas per `presence.flush_interval`, heartbeats).
//! * Reads (`presence`, `presence_stats`, `user_status`) are answered by a replica that is
//!   complete, for the whole cluster; when none can answer exactly the node answers error 100
//!   ([`PresenceError::Unavailable`]) — never a stale or partial list.
//! * Entries of other nodes that the service dropped (a node's lease expired, or it said
//!   Goodbye with connections still listed) become `leave` pushes for this node's subscribers,
//!   through the node's [`PresenceHandler`] — one task per gateway, ended with the client.
//! * When the node starts draining, the client flushes and says Goodbye: the replicas drop this
//!   node's entries at once (not after its lease) and tell the other gateways, whose
//!   subscribers get the `leave` pushes (the draining node publishes none of its own for
//!   presence channels, so nobody gets two).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use chorus_core::presence::{PresenceError, PresenceHandler, PresenceStore, UserStatus};
use chorus_core::sync::lock;
use chorus_presence::{ClientConfig, ClientError, Expirations, PresenceClient, QueryError};
use chorus_protocol::{ClientInfo, PresenceStatsResult};

use crate::config::Config;

type Handler = Arc<Mutex<Option<Weak<dyn PresenceHandler>>>>;

/// The presence store of a gateway that uses the presence service.
#[derive(Debug)]
pub struct ServicePresence {
    client: PresenceClient,
    handler: Handler,
    /// Replicas configured (`presence.endpoints`).
    endpoints: usize,
}

impl ServicePresence {
    /// Starts the client for node `node` from `presence.*` (inside a tokio runtime), and the
    /// task that turns remote expirations into `leave` pushes.
    pub fn start(config: &Config, node: &str) -> Result<Arc<ServicePresence>, ClientError> {
        let p = &config.presence;
        let mut settings = ClientConfig::new(node, p.endpoints.clone(), p.key.clone());
        settings.flush_interval = p.flush_interval.get();
        let (client, expirations) = PresenceClient::start(settings)?;
        let handler: Handler = Arc::default();
        tokio::spawn(deliver_expirations(expirations, handler.clone()));
        Ok(Arc::new(ServicePresence {
            client,
            handler,
            endpoints: p.endpoints.len(),
        }))
    }

    /// The underlying client (tests and metrics).
    pub fn client(&self) -> &PresenceClient {
        &self.client
    }
}

/// Hands every entry the service dropped to the node as a remote leave. Ends when the client
/// is shut down (its expiration channel closes).
async fn deliver_expirations(mut expirations: Expirations, handler: Handler) {
    while let Some(expired) = expirations.recv().await {
        let Some(node) = lock(&handler).clone().and_then(|w| w.upgrade()) else {
            continue;
        };
        tracing::info!(
            node = %expired.node,
            reason = ?expired.reason,
            entries = expired.entries.len(),
            "presence: another node's connections are gone"
        );
        for (channel, info) in expired.entries {
            node.on_remote_leave(&channel, from_service(info));
        }
    }
}

fn to_service(info: ClientInfo) -> chorus_presence::ClientInfo {
    chorus_presence::ClientInfo {
        user: info.user,
        client: info.client,
        conn_info: info.conn_info,
        chan_info: info.chan_info,
        node: String::new(),
    }
}

fn from_service(info: chorus_presence::ClientInfo) -> ClientInfo {
    ClientInfo {
        user: info.user,
        client: info.client,
        conn_info: info.conn_info,
        chan_info: info.chan_info,
    }
}

fn unavailable(e: QueryError) -> PresenceError {
    PresenceError::Unavailable(e.to_string())
}

#[async_trait]
impl PresenceStore for ServicePresence {
    async fn add(&self, channel: &str, info: ClientInfo) -> Result<(), PresenceError> {
        self.client.add(channel, to_service(info));
        Ok(())
    }

    async fn remove(&self, channel: &str, client: &str) -> Result<(), PresenceError> {
        self.client.remove(channel, client);
        Ok(())
    }

    async fn get(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, PresenceError> {
        let all = self.client.presence(channel).await.map_err(unavailable)?;
        Ok(all
            .into_iter()
            .map(|(client, info)| (client, from_service(info)))
            .collect())
    }

    async fn stats(&self, channel: &str) -> Result<PresenceStatsResult, PresenceError> {
        let s = self
            .client
            .presence_stats(channel)
            .await
            .map_err(unavailable)?;
        Ok(PresenceStatsResult {
            num_clients: s.num_clients,
            num_users: s.num_users,
        })
    }

    async fn user_status(&self, users: &[String]) -> Result<Vec<UserStatus>, PresenceError> {
        let statuses = self.client.user_status(users).await.map_err(unavailable)?;
        Ok(statuses
            .into_iter()
            .map(|s| {
                let mut channels = s.channels;
                channels.sort();
                UserStatus {
                    user: s.user,
                    online: s.online,
                    num_clients: s.num_clients,
                    channels,
                }
            })
            .collect())
    }

    fn cluster_wide(&self) -> bool {
        true
    }

    fn replicas_synced(&self) -> Option<(usize, usize)> {
        Some((self.client.synced_endpoints(), self.endpoints))
    }

    fn set_handler(&self, handler: Weak<dyn PresenceHandler>) {
        *lock(&self.handler) = Some(handler);
    }

    async fn shutdown(&self) {
        self.client.shutdown().await;
    }
}
