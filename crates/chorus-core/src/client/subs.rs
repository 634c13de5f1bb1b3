//! A connection's subscriptions: a small map kept in one right-sized vector.
//!
//! Most connections hold one to a few subscriptions, and lookups happen only on the
//! connection's own commands (never on the fan-out path). A `HashMap` allocated 340 bytes for
//! the first entry (heaptrack, S1: 10,000 connections with one subscription each); a vector
//! grown one entry at a time holds exactly what is there. Lookups are linear, bounded by
//! `client.channel_limit` (128 by default).

use std::sync::Arc;

use super::ClientSub;

#[derive(Debug, Default)]
pub(crate) struct Subs {
    entries: Vec<(Arc<str>, ClientSub)>,
}

impl Subs {
    fn position(&self, channel: &str) -> Option<usize> {
        self.entries.iter().position(|(c, _)| &**c == channel)
    }

    pub(crate) fn get(&self, channel: &str) -> Option<&ClientSub> {
        self.position(channel).map(|i| &self.entries[i].1)
    }

    pub(crate) fn get_mut(&mut self, channel: &str) -> Option<&mut ClientSub> {
        self.position(channel).map(|i| &mut self.entries[i].1)
    }

    pub(crate) fn contains_key(&self, channel: &str) -> bool {
        self.position(channel).is_some()
    }

    /// Inserts or replaces; returns the replaced subscription.
    pub(crate) fn insert(&mut self, channel: Arc<str>, sub: ClientSub) -> Option<ClientSub> {
        if let Some(i) = self.position(&channel) {
            return Some(std::mem::replace(&mut self.entries[i].1, sub));
        }
        // Exactly one more slot (not the default doubling from 4): memory per connection.
        self.entries.reserve_exact(1);
        self.entries.push((channel, sub));
        None
    }

    pub(crate) fn remove(&mut self, channel: &str) -> Option<ClientSub> {
        let i = self.position(channel)?;
        let (_, sub) = self.entries.swap_remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(sub)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().map(|(c, _)| c)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &ClientSub> {
        self.entries.iter().map(|(_, s)| s)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &ClientSub)> {
        self.entries.iter().map(|(c, s)| (c, s))
    }
}
