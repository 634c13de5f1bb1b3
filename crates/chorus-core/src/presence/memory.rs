//! In-process presence: channel → client → info, with per-user connection counts so
//! `presence_stats` is O(1).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chorus_protocol::{ClientInfo, PresenceStatsResult};
use dashmap::DashMap;

use super::{PresenceError, PresenceStore};

#[derive(Debug, Default)]
struct ChannelPresence {
    clients: HashMap<String, ClientInfo>,
    users: HashMap<String, u32>,
}

#[derive(Debug, Default)]
pub struct MemoryPresence {
    channels: DashMap<String, ChannelPresence>,
}

impl MemoryPresence {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Number of channels with at least one entry.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }
}

fn sat_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn add(&self, channel: &str, info: ClientInfo) -> Result<(), PresenceError> {
        let mut entry = self.channels.entry(channel.to_string()).or_default();
        let user = info.user.clone();
        if let Some(old) = entry.clients.insert(info.client.clone(), info) {
            // Replaced: the user count already includes this client unless the user changed.
            if old.user == user {
                return Ok(());
            }
            if let Some(n) = entry.users.get_mut(&old.user) {
                *n -= 1;
                if *n == 0 {
                    entry.users.remove(&old.user);
                }
            }
        }
        *entry.users.entry(user).or_insert(0) += 1;
        Ok(())
    }

    async fn remove(&self, channel: &str, client: &str) -> Result<(), PresenceError> {
        let empty = {
            let Some(mut entry) = self.channels.get_mut(channel) else {
                return Ok(());
            };
            if let Some(old) = entry.clients.remove(client) {
                if let Some(n) = entry.users.get_mut(&old.user) {
                    *n -= 1;
                    if *n == 0 {
                        entry.users.remove(&old.user);
                    }
                }
            }
            entry.clients.is_empty()
        };
        if empty {
            self.channels
                .remove_if(channel, |_, p| p.clients.is_empty());
        }
        Ok(())
    }

    async fn get(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, PresenceError> {
        Ok(self
            .channels
            .get(channel)
            .map(|p| p.clients.clone())
            .unwrap_or_default())
    }

    async fn stats(&self, channel: &str) -> Result<PresenceStatsResult, PresenceError> {
        Ok(self
            .channels
            .get(channel)
            .map(|p| PresenceStatsResult {
                num_clients: sat_u32(p.clients.len()),
                num_users: sat_u32(p.users.len()),
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str, client: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn counts_clients_and_distinct_users() -> Result<(), PresenceError> {
        let p = MemoryPresence::new();
        p.add("ch", info("u1", "c1")).await?;
        p.add("ch", info("u1", "c2")).await?;
        p.add("ch", info("u2", "c3")).await?;
        p.add("ch", info("u2", "c3")).await?;
        let s = p.stats("ch").await?;
        assert_eq!((s.num_clients, s.num_users), (3, 2));
        p.remove("ch", "c1").await?;
        let s = p.stats("ch").await?;
        assert_eq!((s.num_clients, s.num_users), (2, 2));
        p.remove("ch", "c2").await?;
        p.remove("ch", "missing").await?;
        let s = p.stats("ch").await?;
        assert_eq!((s.num_clients, s.num_users), (1, 1));
        assert_eq!(p.get("ch").await?.keys().collect::<Vec<_>>(), vec!["c3"]);
        p.remove("ch", "c3").await?;
        assert_eq!(p.num_channels(), 0);
        Ok(())
    }
}
