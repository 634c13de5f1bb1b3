//! In-process presence: channel → client → info, with per-user connection counts so
//! `presence_stats` is O(1), and user → (clients, channels) so `user_status` is O(users asked).
//!
//! Lock order: a channel's entry, then a user's entry (never the reverse).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chorus_protocol::{ClientInfo, PresenceStatsResult};
use dashmap::DashMap;

use super::{PresenceError, PresenceStore, UserStatus};

#[derive(Debug, Default)]
struct ChannelPresence {
    clients: HashMap<String, ClientInfo>,
    users: HashMap<String, u32>,
}

/// Where one user is present: client → channels it is in, channel → clients of the user in it.
#[derive(Debug, Default)]
struct UserPresence {
    clients: HashMap<String, u32>,
    channels: HashMap<String, u32>,
}

#[derive(Debug, Default)]
pub struct MemoryPresence {
    channels: DashMap<String, ChannelPresence>,
    users: DashMap<String, UserPresence>,
}

impl MemoryPresence {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Number of channels with at least one entry.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Number of users present somewhere.
    pub fn num_users(&self) -> usize {
        self.users.len()
    }

    fn user_joined(&self, user: &str, client: &str, channel: &str) {
        let mut u = self.users.entry(user.to_string()).or_default();
        *u.clients.entry(client.to_string()).or_insert(0) += 1;
        *u.channels.entry(channel.to_string()).or_insert(0) += 1;
    }

    fn user_left(&self, user: &str, client: &str, channel: &str) {
        let empty = {
            let Some(mut u) = self.users.get_mut(user) else {
                return;
            };
            decrement(&mut u.clients, client);
            decrement(&mut u.channels, channel);
            u.clients.is_empty()
        };
        if empty {
            self.users.remove_if(user, |_, u| u.clients.is_empty());
        }
    }
}

/// Decrements a count, removing the key at zero.
fn decrement(map: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
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
        let client = info.client.clone();
        if let Some(old) = entry.clients.insert(info.client.clone(), info) {
            // Replaced: the counts already include this client unless the user changed.
            if old.user == user {
                return Ok(());
            }
            decrement(&mut entry.users, &old.user);
            self.user_left(&old.user, &client, channel);
        }
        *entry.users.entry(user.clone()).or_insert(0) += 1;
        self.user_joined(&user, &client, channel);
        Ok(())
    }

    async fn remove(&self, channel: &str, client: &str) -> Result<(), PresenceError> {
        let empty = {
            let Some(mut entry) = self.channels.get_mut(channel) else {
                return Ok(());
            };
            if let Some(old) = entry.clients.remove(client) {
                decrement(&mut entry.users, &old.user);
                self.user_left(&old.user, client, channel);
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

    async fn user_status(&self, users: &[String]) -> Result<Vec<UserStatus>, PresenceError> {
        Ok(users
            .iter()
            .map(|user| match self.users.get(user) {
                Some(u) => {
                    let mut channels: Vec<String> = u.channels.keys().cloned().collect();
                    channels.sort();
                    UserStatus {
                        user: user.clone(),
                        online: true,
                        num_clients: sat_u32(u.clients.len()),
                        channels,
                    }
                }
                None => UserStatus::offline(user),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let p = MemoryPresence::new();
        super::super::conformance::run_all(&*p).await;
        assert_eq!((p.num_channels(), p.num_users()), (0, 0));
    }
}
