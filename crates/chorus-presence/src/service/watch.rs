//! `Watch`: the registry of watchers and the [`Events`] sink the model's changes go through.
//!
//! A watcher names channels (JOIN/LEAVE) and users (USER_ONLINE/USER_OFFLINE). Events are
//! queued with `try_send` under the state lock; a watcher whose queue is full
//! ([`WATCH_QUEUE`](crate::config::WATCH_QUEUE)) gets RESOURCE_EXHAUSTED and is dropped — it
//! reconnects and queries again — so a slow watcher never slows a write.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_proto::presence as pb;
use chorus_proto::presence::presence_event::Kind;
use smallvec::SmallVec;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};

use super::{check_name, Shared};
use crate::config::{MAX_NAME_LEN, MAX_WATCH_NAMES, WATCH_QUEUE};
use crate::metrics as m;
use crate::model::Events;

type WatchItem = Result<pb::PresenceEvent, Status>;

#[derive(Debug)]
struct Watcher {
    tx: mpsc::Sender<WatchItem>,
    channels: Vec<Box<str>>,
    users: Vec<Box<str>>,
    dead: bool,
}

/// Every open watcher, indexed by the names it watches.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    channels: HashMap<Box<str>, SmallVec<[u64; 2]>>,
    users: HashMap<Box<str>, SmallVec<[u64; 2]>>,
    watchers: HashMap<u64, Watcher>,
}

impl Watchers {
    pub(crate) fn len(&self) -> usize {
        self.watchers.len()
    }

    /// The sink the model reports changes to.
    pub(crate) fn sink(&mut self) -> Sink<'_> {
        Sink { w: self }
    }

    fn add(
        &mut self,
        id: u64,
        channels: Vec<String>,
        users: Vec<String>,
        tx: mpsc::Sender<WatchItem>,
    ) {
        let channels: Vec<Box<str>> = channels.into_iter().map(Into::into).collect();
        let users: Vec<Box<str>> = users.into_iter().map(Into::into).collect();
        for c in &channels {
            let ids = self.channels.entry(c.clone()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for u in &users {
            let ids = self.users.entry(u.clone()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.watchers.insert(
            id,
            Watcher {
                tx,
                channels,
                users,
                dead: false,
            },
        );
    }

    fn remove(&mut self, id: u64) {
        let Some(w) = self.watchers.remove(&id) else {
            return;
        };
        for (index, names) in [
            (&mut self.channels, &w.channels),
            (&mut self.users, &w.users),
        ] {
            for name in names {
                if let Some(ids) = index.get_mut(name) {
                    ids.retain(|x| *x != id);
                    if ids.is_empty() {
                        index.remove(name);
                    }
                }
            }
        }
    }

    /// Unregisters the watchers dropped while reporting.
    pub(crate) fn prune(&mut self) {
        let dead: Vec<u64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.dead)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove(id);
        }
    }

    /// Ends every watcher with UNAVAILABLE (shutdown).
    pub(crate) fn close_all(&mut self) {
        for w in self.watchers.values() {
            let _ = w.tx.try_send(Err(Status::unavailable(
                "presence replica shutting down: watch another replica",
            )));
        }
        self.watchers.clear();
        self.channels.clear();
        self.users.clear();
    }
}

/// Delivers the model's changes to the watchers that asked for them.
pub(crate) struct Sink<'a> {
    w: &'a mut Watchers,
}

impl Events for Sink<'_> {
    fn wants_channel(&self, channel: &str) -> bool {
        !self.w.channels.is_empty() && self.w.channels.contains_key(channel)
    }

    fn wants_user(&self, user: &str) -> bool {
        !self.w.users.is_empty() && self.w.users.contains_key(user)
    }

    fn event(&mut self, kind: Kind, channel: &str, info: &pb::ClientInfo) {
        let Watchers {
            channels,
            users,
            watchers,
        } = &mut *self.w;
        let ids = match kind {
            Kind::Join | Kind::Leave => channels.get(channel),
            Kind::UserOnline | Kind::UserOffline => users.get(info.user.as_str()),
            Kind::Unspecified => None,
        };
        let Some(ids) = ids else {
            return;
        };
        for id in ids {
            let Some(w) = watchers.get_mut(id) else {
                continue;
            };
            if w.dead {
                continue;
            }
            if w.tx.capacity() <= 1 {
                let _ = w.tx.try_send(Err(Status::resource_exhausted(
                    "watcher reads too slowly: watch again and query the current state",
                )));
                w.dead = true;
                metrics::counter!(m::WATCHERS_DROPPED).increment(1);
                continue;
            }
            let event = pb::PresenceEvent {
                kind: kind as i32,
                channel: channel.to_string(),
                info: Some(info.clone()),
            };
            if w.tx.try_send(Ok(event)).is_err() {
                w.dead = true;
            }
        }
    }
}

/// The `Watch` RPC.
pub(super) fn watch(
    shared: &Arc<Shared>,
    req: pb::WatchRequest,
) -> Result<Response<ReceiverStream<WatchItem>>, Status> {
    let names = req.channels.len() + req.users.len();
    if names == 0 {
        return Err(Status::invalid_argument(
            "name at least one channel or user to watch",
        ));
    }
    if names > MAX_WATCH_NAMES {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_WATCH_NAMES} channels and users per watch"
        )));
    }
    for channel in &req.channels {
        check_name("channel", channel)?;
    }
    for user in &req.users {
        if user.len() > MAX_NAME_LEN {
            return Err(Status::invalid_argument(format!(
                "user is longer than {MAX_NAME_LEN} bytes"
            )));
        }
    }
    shared.check_ready("watch")?;
    let (tx, rx) = mpsc::channel(WATCH_QUEUE);
    let id = shared.next_id();
    {
        let mut state = shared.write();
        state.watchers.add(id, req.channels, req.users, tx.clone());
        state.publish_gauges();
    }
    let owner = Arc::clone(shared);
    shared.tasks.spawn(async move {
        tokio::select! {
            _ = tx.closed() => {}
            _ = owner.cancel.cancelled() => {}
        }
        let mut state = owner.write();
        state.watchers.remove(id);
        state.publish_gauges();
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}
