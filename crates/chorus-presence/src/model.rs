//! The presence state of one replica, in memory: channel → clients, user → channels and
//! node → its entries. Pure data: no I/O, no clock of its own (callers pass `Instant`s), no
//! locking (the service holds it under one `RwLock`).
//!
//! Layout, chosen for memory per entry (≈ 200 bytes at 100k entries, `docs/benchmarks.md`):
//! channel names, user names, client ids and node ids are interned once each in a slab with a
//! hash index of 4-byte ids ([`intern`]); a channel holds a set of client ids and a count per
//! user; a client (connection) holds its user, node, connection info and how many channels it
//! is in; a user holds its channels with counts; a node holds its channels with counts. Client
//! ids that are canonical UUIDs (what chorus gateways use) are stored as 16 bytes. Channel
//! info, usually empty, lives in a side map keyed by (channel, client).

mod client_id;
mod intern;
#[cfg(test)]
mod tests;

use std::hash::BuildHasher;

use bytes::Bytes;
use chorus_proto::presence::presence_event::Kind;
use chorus_proto::presence::{ClientInfo, UserStatus};
use hashbrown::{DefaultHashBuilder, HashMap, HashSet};
use smallvec::SmallVec;
use tokio::time::Instant;

use client_id::{ClientId, ClientKey};
use intern::{Interner, Keyed, Matches};

/// Id of a node (gateway) inside one model.
pub type NodeId = u32;

/// An entry as received from a gateway, borrowed from the decoded message.
#[derive(Debug, Clone, Copy)]
pub struct EntryIn<'a> {
    pub channel: &'a str,
    pub user: &'a str,
    pub client: &'a str,
    pub conn_info: &'a [u8],
    pub chan_info: &'a [u8],
}

/// One operation of a batch, borrowed from the decoded message.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    Add(EntryIn<'a>),
    Remove { channel: &'a str, client: &'a str },
}

/// Why a batch was refused; nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("client {client:?} belongs to another node")]
    ForeignClient { client: String },
    #[error("client {client:?} has user {existing:?}, not {given:?}")]
    UserMismatch {
        client: String,
        existing: String,
        given: String,
    },
    #[error("a node may hold at most {limit} entries")]
    TooManyEntries { limit: usize },
}

/// Receives the changes that watchers asked for. `wants_*` are asked first, so nothing is
/// built for changes nobody watches.
pub trait Events {
    fn wants_channel(&self, channel: &str) -> bool;
    fn wants_user(&self, user: &str) -> bool;
    fn event(&mut self, kind: Kind, channel: &str, info: &ClientInfo);
}

/// Ignores every change.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn wants_channel(&self, _: &str) -> bool {
        false
    }
    fn wants_user(&self, _: &str) -> bool {
        false
    }
    fn event(&mut self, _: Kind, _: &str, _: &ClientInfo) {}
}

/// Sizes, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub entries: usize,
    pub channels: usize,
    pub users: usize,
    pub clients: usize,
    pub nodes: usize,
}

#[derive(Debug)]
struct ChannelSlot {
    name: Box<str>,
    /// Client ids present.
    members: HashSet<u32>,
    /// User id → entries of that user here (for `num_users`).
    users: HashMap<u32, u32>,
}

#[derive(Debug)]
struct UserSlot {
    name: Box<str>,
    /// (channel id, entries of this user there).
    channels: SmallVec<[(u32, u32); 1]>,
    /// Client slots of this user; the slot lives while this is > 0.
    clients: u32,
}

#[derive(Debug)]
struct ClientSlot {
    id: ClientId,
    /// Connection-level info, the same in every channel of the connection (last write wins).
    conn_info: Box<[u8]>,
    user: u32,
    node: NodeId,
    /// Channels this client is present in; the slot lives while this is > 0.
    refs: u32,
}

#[derive(Debug)]
struct NodeSlot {
    name: Box<str>,
    last_seen: Instant,
    /// (channel id → entries of this node there).
    channels: HashMap<u32, u32>,
    entries: usize,
}

impl Keyed for ChannelSlot {
    fn hash_with(&self, h: &DefaultHashBuilder) -> u64 {
        h.hash_one(&*self.name)
    }
}
impl Matches<str> for ChannelSlot {
    fn matches(&self, key: &str) -> bool {
        &*self.name == key
    }
}
impl Keyed for UserSlot {
    fn hash_with(&self, h: &DefaultHashBuilder) -> u64 {
        h.hash_one(&*self.name)
    }
}
impl Matches<str> for UserSlot {
    fn matches(&self, key: &str) -> bool {
        &*self.name == key
    }
}
impl Keyed for NodeSlot {
    fn hash_with(&self, h: &DefaultHashBuilder) -> u64 {
        h.hash_one(&*self.name)
    }
}
impl Matches<str> for NodeSlot {
    fn matches(&self, key: &str) -> bool {
        &*self.name == key
    }
}
impl Keyed for ClientSlot {
    fn hash_with(&self, h: &DefaultHashBuilder) -> u64 {
        h.hash_one(self.id.as_key())
    }
}
impl<'a> Matches<ClientKey<'a>> for ClientSlot {
    fn matches(&self, key: &ClientKey<'a>) -> bool {
        self.id.as_key() == *key
    }
}

fn inc(map: &mut HashMap<u32, u32>, k: u32) {
    *map.entry(k).or_insert(0) += 1;
}

fn dec(map: &mut HashMap<u32, u32>, k: u32) {
    if let Some(n) = map.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            map.remove(&k);
        }
    }
}

fn inc_vec(v: &mut SmallVec<[(u32, u32); 1]>, k: u32) {
    match v.iter_mut().find(|(c, _)| *c == k) {
        Some((_, n)) => *n += 1,
        None => v.push((k, 1)),
    }
}

fn dec_vec(v: &mut SmallVec<[(u32, u32); 1]>, k: u32) {
    if let Some(i) = v.iter().position(|(c, _)| *c == k) {
        v[i].1 -= 1;
        if v[i].1 == 0 {
            v.swap_remove(i);
        }
    }
}

/// The presence state of one replica.
#[derive(Debug)]
pub struct Model {
    channels: Interner<ChannelSlot>,
    users: Interner<UserSlot>,
    clients: Interner<ClientSlot>,
    nodes: Interner<NodeSlot>,
    /// Non-empty channel info by (channel id, client id).
    chan_infos: HashMap<(u32, u32), Box<[u8]>>,
    entries: usize,
    max_node_entries: usize,
}

impl Model {
    /// An empty model; a node may hold at most `max_node_entries` entries.
    pub fn new(max_node_entries: usize) -> Model {
        Model {
            channels: Interner::default(),
            users: Interner::default(),
            clients: Interner::default(),
            nodes: Interner::default(),
            chan_infos: HashMap::new(),
            entries: 0,
            max_node_entries,
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            entries: self.entries,
            channels: self.channels.len(),
            users: self.users.len(),
            clients: self.clients.len(),
            nodes: self.nodes.len(),
        }
    }

    // ----------------------------------------------------------------------------- nodes

    /// The id of node `name`, created when unknown; its lease is renewed at `now`.
    pub fn node(&mut self, name: &str, now: Instant) -> NodeId {
        match self.nodes.find(name) {
            Some(id) => {
                self.touch(id, now);
                id
            }
            None => self.nodes.insert_new(NodeSlot {
                name: name.into(),
                last_seen: now,
                channels: HashMap::new(),
                entries: 0,
            }),
        }
    }

    pub fn find_node(&self, name: &str) -> Option<NodeId> {
        self.nodes.find(name)
    }

    pub fn node_name(&self, node: NodeId) -> &str {
        self.nodes.get(node).map_or("", |n| &n.name)
    }

    /// Entries the node holds.
    pub fn node_entries(&self, node: NodeId) -> usize {
        self.nodes.get(node).map_or(0, |n| n.entries)
    }

    /// Renews the node's lease.
    pub fn touch(&mut self, node: NodeId, now: Instant) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.last_seen = now;
        }
    }

    /// Nodes not heard from for `ttl` or longer at `now`.
    pub fn lapsed(&self, now: Instant, ttl: std::time::Duration) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| now.saturating_duration_since(n.last_seen) >= ttl)
            .map(|(id, _)| id)
            .collect()
    }

    /// Removes every entry of the node and the node itself; the removed entries are appended
    /// to `removed` as (channel, info).
    pub fn drop_node(
        &mut self,
        node: NodeId,
        removed: &mut Vec<(String, ClientInfo)>,
        ev: &mut impl Events,
    ) {
        for (ch, cid) in self.node_keys(node) {
            self.remove_entry(ch, cid, ev, Some(removed));
        }
        self.nodes.remove(node);
    }

    /// (channel id, client id) of every entry of the node.
    fn node_keys(&self, node: NodeId) -> Vec<(u32, u32)> {
        let Some(n) = self.nodes.get(node) else {
            return Vec::new();
        };
        let mut keys = Vec::with_capacity(n.entries);
        for &ch in n.channels.keys() {
            let Some(channel) = self.channels.get(ch) else {
                continue;
            };
            for &cid in &channel.members {
                if self.clients.get(cid).is_some_and(|c| c.node == node) {
                    keys.push((ch, cid));
                }
            }
        }
        keys
    }

    // ----------------------------------------------------------------------------- writes

    /// Checks a batch of operations of `node` against the state: no operation may name a
    /// client id of another node, a client keeps its user, and the node stays within
    /// `max_node_entries` (counting every add as new; `replacing` when the batch is a snapshot
    /// that replaces the node's entries). Nothing is changed.
    pub fn check<'a>(
        &self,
        node: NodeId,
        ops: impl Iterator<Item = Op<'a>>,
        replacing: bool,
    ) -> Result<(), Refusal> {
        let mut adds = 0usize;
        let mut new_clients: HashMap<&'a str, &'a str> = HashMap::new();
        for op in ops {
            let client = match op {
                Op::Add(e) => e.client,
                Op::Remove { client, .. } => client,
            };
            match self.clients.find(&ClientKey::parse(client)) {
                Some(cid) => {
                    let Some(c) = self.clients.get(cid) else {
                        continue;
                    };
                    if c.node != node {
                        return Err(Refusal::ForeignClient {
                            client: client.to_string(),
                        });
                    }
                    if let Op::Add(e) = op {
                        let existing = self.users.get(c.user).map_or("", |u| &u.name);
                        if existing != e.user {
                            return Err(Refusal::UserMismatch {
                                client: client.to_string(),
                                existing: existing.to_string(),
                                given: e.user.to_string(),
                            });
                        }
                    }
                }
                None => {
                    if let Op::Add(e) = op {
                        let user = *new_clients.entry(e.client).or_insert(e.user);
                        if user != e.user {
                            return Err(Refusal::UserMismatch {
                                client: client.to_string(),
                                existing: user.to_string(),
                                given: e.user.to_string(),
                            });
                        }
                    }
                }
            }
            if matches!(op, Op::Add(_)) {
                adds += 1;
            }
        }
        let held = if replacing {
            0
        } else {
            self.node_entries(node)
        };
        if held.saturating_add(adds) > self.max_node_entries {
            return Err(Refusal::TooManyEntries {
                limit: self.max_node_entries,
            });
        }
        Ok(())
    }

    /// Applies a checked batch in order.
    pub fn apply<'a>(
        &mut self,
        node: NodeId,
        ops: impl Iterator<Item = Op<'a>>,
        ev: &mut impl Events,
    ) -> usize {
        let mut n = 0;
        for op in ops {
            match op {
                Op::Add(e) => {
                    self.add(node, e, ev);
                }
                Op::Remove { channel, client } => {
                    self.remove(node, channel, client, ev);
                }
            }
            n += 1;
        }
        n
    }

    /// Replaces every entry of the node by `entries` (a checked snapshot): what is in both
    /// stays without events, what is new is added, what is missing is removed.
    pub fn replace_node(&mut self, node: NodeId, entries: &[EntryIn<'_>], ev: &mut impl Events) {
        let mut keep: HashSet<(u32, u32)> = HashSet::with_capacity(entries.len());
        for e in entries {
            if let Some(key) = self.add(node, *e, ev) {
                keep.insert(key);
            }
        }
        for key in self.node_keys(node) {
            if !keep.contains(&key) {
                self.remove_entry(key.0, key.1, ev, None);
            }
        }
    }

    /// Adds or replaces one checked entry; returns its (channel id, client id).
    fn add(&mut self, node: NodeId, e: EntryIn<'_>, ev: &mut impl Events) -> Option<(u32, u32)> {
        let key = ClientKey::parse(e.client);
        let mut user_online = false;
        let cid = match self.clients.find(&key) {
            Some(cid) => {
                let c = self.clients.get_mut(cid)?;
                if c.node != node {
                    return None; // refused by `check`
                }
                if *c.conn_info != *e.conn_info {
                    c.conn_info = e.conn_info.into();
                }
                cid
            }
            None => {
                let uid = match self.users.find(e.user) {
                    Some(uid) => uid,
                    None => {
                        user_online = true;
                        self.users.insert_new(UserSlot {
                            name: e.user.into(),
                            channels: SmallVec::new(),
                            clients: 0,
                        })
                    }
                };
                if let Some(u) = self.users.get_mut(uid) {
                    u.clients += 1;
                }
                self.clients.insert_new(ClientSlot {
                    id: key.to_owned(),
                    conn_info: e.conn_info.into(),
                    user: uid,
                    node,
                    refs: 0,
                })
            }
        };
        let ch = match self.channels.find(e.channel) {
            Some(ch) => ch,
            None => self.channels.insert_new(ChannelSlot {
                name: e.channel.into(),
                members: HashSet::new(),
                users: HashMap::new(),
            }),
        };
        let channel = self.channels.get_mut(ch)?;
        let inserted = channel.members.insert(cid);
        let client = self.clients.get_mut(cid)?;
        let uid = client.user;
        if inserted {
            client.refs += 1;
            inc(&mut channel.users, uid);
            if let Some(u) = self.users.get_mut(uid) {
                inc_vec(&mut u.channels, ch);
            }
            if let Some(n) = self.nodes.get_mut(node) {
                inc(&mut n.channels, ch);
                n.entries += 1;
            }
            self.entries += 1;
        }
        if e.chan_info.is_empty() {
            self.chan_infos.remove(&(ch, cid));
        } else if self.chan_infos.get(&(ch, cid)).map(|i| &**i) != Some(e.chan_info) {
            self.chan_infos.insert((ch, cid), e.chan_info.into());
        }
        if inserted {
            let join = ev.wants_channel(e.channel);
            let online = user_online && ev.wants_user(e.user);
            if join || online {
                let info = self.info(ch, cid);
                if join {
                    ev.event(Kind::Join, e.channel, &info);
                }
                if online {
                    ev.event(Kind::UserOnline, e.channel, &info);
                }
            }
        }
        Some((ch, cid))
    }

    /// Removes the node's entry (channel, client) if present.
    fn remove(&mut self, node: NodeId, channel: &str, client: &str, ev: &mut impl Events) -> bool {
        let Some(cid) = self.clients.find(&ClientKey::parse(client)) else {
            return false;
        };
        if self.clients.get(cid).is_none_or(|c| c.node != node) {
            return false;
        }
        let Some(ch) = self.channels.find(channel) else {
            return false;
        };
        self.remove_entry(ch, cid, ev, None)
    }

    fn remove_entry(
        &mut self,
        ch: u32,
        cid: u32,
        ev: &mut impl Events,
        removed: Option<&mut Vec<(String, ClientInfo)>>,
    ) -> bool {
        let Some(channel) = self.channels.get(ch) else {
            return false;
        };
        if !channel.members.contains(&cid) {
            return false;
        }
        let Some(client) = self.clients.get(cid) else {
            return false;
        };
        let (uid, node, last_ref) = (client.user, client.node, client.refs == 1);
        let user_offline = last_ref && self.users.get(uid).is_some_and(|u| u.clients == 1);
        let leave = ev.wants_channel(&channel.name);
        let offline = user_offline && self.users.get(uid).is_some_and(|u| ev.wants_user(&u.name));
        if leave || offline || removed.is_some() {
            let info = self.info(ch, cid);
            let name = channel.name.to_string();
            if leave {
                ev.event(Kind::Leave, &name, &info);
            }
            if offline {
                ev.event(Kind::UserOffline, &name, &info);
            }
            if let Some(removed) = removed {
                removed.push((name, info));
            }
        }

        let Some(channel) = self.channels.get_mut(ch) else {
            return false;
        };
        channel.members.remove(&cid);
        dec(&mut channel.users, uid);
        let channel_empty = channel.members.is_empty();
        self.chan_infos.remove(&(ch, cid));
        if let Some(n) = self.nodes.get_mut(node) {
            dec(&mut n.channels, ch);
            n.entries -= 1;
        }
        self.entries -= 1;
        let mut user_gone = false;
        if let Some(u) = self.users.get_mut(uid) {
            dec_vec(&mut u.channels, ch);
            if last_ref {
                u.clients -= 1;
                user_gone = u.clients == 0;
            }
        }
        if last_ref {
            self.clients.remove(cid);
        } else if let Some(c) = self.clients.get_mut(cid) {
            c.refs -= 1;
        }
        if user_gone {
            self.users.remove(uid);
        }
        if channel_empty {
            self.channels.remove(ch);
        }
        true
    }

    // ----------------------------------------------------------------------------- reads

    fn info(&self, ch: u32, cid: u32) -> ClientInfo {
        let Some(c) = self.clients.get(cid) else {
            return ClientInfo::default();
        };
        ClientInfo {
            user: self
                .users
                .get(c.user)
                .map_or_else(String::new, |u| u.name.to_string()),
            client: c.id.to_string(),
            conn_info: Bytes::copy_from_slice(&c.conn_info),
            chan_info: self
                .chan_infos
                .get(&(ch, cid))
                .map_or_else(Bytes::new, |i| Bytes::copy_from_slice(i)),
            node: self.node_name(c.node).to_string(),
        }
    }

    /// Client id → info of everyone present in the channel.
    pub fn presence(&self, channel: &str) -> std::collections::HashMap<String, ClientInfo> {
        let Some(ch) = self.channels.find(channel) else {
            return std::collections::HashMap::new();
        };
        let Some(slot) = self.channels.get(ch) else {
            return std::collections::HashMap::new();
        };
        slot.members
            .iter()
            .map(|&cid| {
                let info = self.info(ch, cid);
                (info.client.clone(), info)
            })
            .collect()
    }

    /// (clients, distinct users) present in the channel.
    pub fn stats(&self, channel: &str) -> (u32, u32) {
        self.channels
            .find(channel)
            .and_then(|ch| self.channels.get(ch))
            .map_or((0, 0), |c| (c.members.len() as u32, c.users.len() as u32))
    }

    /// Online status of one user; channels sorted.
    pub fn user_status(&self, user: &str) -> UserStatus {
        let Some(u) = self.users.find(user).and_then(|id| self.users.get(id)) else {
            return UserStatus {
                user: user.to_string(),
                ..UserStatus::default()
            };
        };
        let mut channels: Vec<String> = u
            .channels
            .iter()
            .filter_map(|(ch, _)| self.channels.get(*ch).map(|c| c.name.to_string()))
            .collect();
        channels.sort_unstable();
        UserStatus {
            user: user.to_string(),
            online: u.clients > 0,
            num_clients: u.clients,
            channels,
        }
    }
}
