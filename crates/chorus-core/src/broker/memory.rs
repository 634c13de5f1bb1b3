//! The in-memory broker: single node, history kept in process.
//!
//! Every channel stream sits behind its own mutex; a publish assigns the offset, appends to the
//! bounded stream and hands the publication to the node *while holding that mutex*, so delivery
//! order equals offset order and a concurrent history read sees either the publication in the
//! stream or (if it subscribed first) gets it live — never neither. Streams expire
//! `history_ttl` after their last publication, stream meta (epoch and top offset) after
//! `history_meta_ttl`; a sweeper drops expired entries every few seconds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chorus_protocol::{ClientInfo, Publication, StreamPosition};
use dashmap::DashMap;
use tokio::time::Instant;

use super::{
    new_epoch, Broker, BrokerError, BrokerHandler, HistoryPage, HistoryQuery, PublishOptions,
};

/// How long an idempotency key remembers its result.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);
/// How often expired streams are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Stream {
    epoch: String,
    top: u64,
    publications: VecDeque<Publication>,
    /// Publications are dropped after this instant.
    expires_at: Option<Instant>,
    /// Epoch and top are forgotten after this instant.
    meta_expires_at: Instant,
    results: HashMap<String, (StreamPosition, Instant)>,
}

impl Stream {
    fn new(meta_ttl: Duration, now: Instant) -> Self {
        Stream {
            epoch: new_epoch(),
            top: 0,
            publications: VecDeque::new(),
            expires_at: None,
            meta_expires_at: now + meta_ttl,
            results: HashMap::new(),
        }
    }

    /// Applies expiry as of `now`. Returns false if the whole entry is gone (meta expired).
    fn refresh(&mut self, now: Instant) -> bool {
        if now >= self.meta_expires_at {
            return false;
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            self.publications.clear();
            self.expires_at = None;
        }
        self.results.retain(|_, (_, t)| *t > now);
        true
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

/// Channels without history still need an order of delivery; they share nothing else.
type Streams = DashMap<String, Arc<Mutex<Option<Stream>>>>;

/// Several nodes may share one `MemoryBroker`: each registers its handler and receives every
/// delivery and control message, with one shared history — an in-process cluster for tests.
pub struct MemoryBroker {
    handlers: RwLock<Vec<Weak<dyn BrokerHandler>>>,
    streams: Streams,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("streams", &self.streams.len())
            .finish()
    }
}

/// Hands one publication to every handler: clones for all but the last, which gets it by value
/// (a single node — the usual case — never copies).
fn deliver(
    handlers: &[Arc<dyn BrokerHandler>],
    channel: &str,
    publication: Publication,
    epoch: &str,
) {
    if let Some((last, rest)) = handlers.split_last() {
        for h in rest {
            h.on_publication(channel, publication.clone(), epoch);
        }
        last.on_publication(channel, publication, epoch);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBroker {
    /// Creates the broker. When called inside a tokio runtime it also starts the sweeper task,
    /// which ends when the broker is dropped.
    pub fn new() -> Arc<Self> {
        let broker = Arc::new(MemoryBroker {
            handlers: RwLock::new(Vec::new()),
            streams: DashMap::new(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&broker);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_INTERVAL);
                loop {
                    tick.tick().await;
                    let Some(b) = weak.upgrade() else { return };
                    b.sweep(Instant::now());
                }
            });
        }
        broker
    }

    fn handlers(&self) -> Vec<Arc<dyn BrokerHandler>> {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|w| w.upgrade())
            .collect()
    }

    fn entry(&self, channel: &str) -> Arc<Mutex<Option<Stream>>> {
        if let Some(e) = self.streams.get(channel) {
            return e.clone();
        }
        self.streams
            .entry(channel.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(None)))
            .clone()
    }

    /// Drops streams whose meta expired. Public for tests with paused time.
    pub fn sweep(&self, now: Instant) {
        self.streams.retain(|_, entry| {
            // Never block the sweeper on a busy stream; it is checked next time.
            let Ok(mut guard) = entry.try_lock() else {
                return true;
            };
            let alive = guard.as_mut().is_some_and(|s| s.refresh(now));
            alive || Arc::strong_count(entry) > 1
        });
    }

    /// Number of channel entries kept (for tests and metrics).
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn set_handler(&self, handler: Weak<dyn BrokerHandler>) {
        let mut handlers = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        handlers.retain(|w| w.strong_count() > 0);
        handlers.push(handler);
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        opts: &PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let entry = self.entry(channel);
        let handlers = self.handlers();
        let mut guard = lock(&entry);
        let Some(history) = opts.history else {
            publication.offset = 0;
            deliver(&handlers, channel, publication, "");
            return Ok(StreamPosition::default());
        };
        let now = Instant::now();
        if !guard.as_mut().is_some_and(|s| s.refresh(now)) {
            *guard = Some(Stream::new(history.meta_ttl, now));
        }
        let Some(stream) = guard.as_mut() else {
            return Err(BrokerError::Other("stream vanished".into()));
        };
        if let Some(key) = opts.idempotency_key.as_deref().filter(|k| !k.is_empty()) {
            if let Some((pos, _)) = stream.results.get(key) {
                return Ok(pos.clone());
            }
        }
        stream.top += 1;
        publication.offset = stream.top;
        stream.publications.push_back(publication.clone());
        while stream.publications.len() > history.size {
            stream.publications.pop_front();
        }
        stream.expires_at = Some(now + history.ttl);
        stream.meta_expires_at = now + history.meta_ttl.max(history.ttl);
        let position = stream.position();
        if let Some(key) = opts.idempotency_key.as_deref().filter(|k| !k.is_empty()) {
            stream
                .results
                .insert(key.to_string(), (position.clone(), now + IDEMPOTENCY_TTL));
        }
        deliver(&handlers, channel, publication, &position.epoch);
        Ok(position)
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let entry = self.entry(channel);
        let _order = lock(&entry);
        for h in self.handlers() {
            h.on_join(channel, info.clone());
        }
        Ok(())
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let entry = self.entry(channel);
        let _order = lock(&entry);
        for h in self.handlers() {
            h.on_leave(channel, info.clone());
        }
        Ok(())
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        let entry = self.entry(channel);
        let mut guard = lock(&entry);
        let now = Instant::now();
        if !guard.as_mut().is_some_and(|s| s.refresh(now)) {
            *guard = Some(Stream::new(query.meta_ttl, now));
        }
        let Some(stream) = guard.as_ref() else {
            return Err(BrokerError::Other("stream vanished".into()));
        };
        let position = stream.position();
        if let Some(since) = &query.since {
            if !since.epoch.is_empty() && since.epoch != stream.epoch {
                return Err(BrokerError::UnrecoverablePosition);
            }
        }
        let limit = query.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(HistoryPage {
                publications: Vec::new(),
                position,
            });
        }
        let publications: Vec<Publication> = if query.reverse {
            let before = query.since.as_ref().map(|s| s.offset).unwrap_or(u64::MAX);
            stream
                .publications
                .iter()
                .rev()
                .filter(|p| p.offset < before)
                .take(limit)
                .cloned()
                .collect()
        } else {
            let after = query.since.as_ref().map(|s| s.offset).unwrap_or(0);
            stream
                .publications
                .iter()
                .filter(|p| p.offset > after)
                .take(limit)
                .cloned()
                .collect()
        };
        Ok(HistoryPage {
            publications,
            position,
        })
    }

    async fn publish_control(
        &self,
        message: crate::control::ControlMessage,
    ) -> Result<(), BrokerError> {
        for h in self.handlers() {
            h.on_control(message.clone());
        }
        Ok(())
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let entry = self.entry(channel);
        let mut guard = lock(&entry);
        if let Some(stream) = guard.as_mut() {
            stream.publications.clear();
        }
        Ok(())
    }
}
