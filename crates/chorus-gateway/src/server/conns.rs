//! The connection registry: every TCP connection the HTTP server holds, in accept order, with
//! the state it is in, and the shedding policy at the connection budget
//! (`http_server.max_connections`).
//!
//! States ([`State`]):
//! * *pending* — accepted, no request completed yet: slow headers, slow bodies and sockets that
//!   never send a byte all sit here;
//! * *idle* — a keep-alive connection between requests (at least one completed);
//! * *busy* — a complete request whose handler is running;
//! * *upgraded* — a WebSocket session (from the `101` on). Its entry lives as long as the
//!   session task holds its [`Conn`], i.e. as long as the socket is open.
//!
//! At the budget, [`Registry::admit`] closes the oldest pending connection, else the oldest
//! idle one, to make room; busy and upgraded connections are never shed. With nothing to shed
//! the new connection is refused (the accept loop answers it 503). A shed entry leaves the
//! registry at once and its [`Conn::shed_signal`] fires; the connection task then drops the
//! socket. Until it has, the shed connection still holds a descriptor: it counts as *closing*,
//! and the accept loop waits for closings ([`Registry::room`]) before accepting past the
//! budget — under a flood the process holds at most budget + 1 connections, instead of
//! accepting faster than shed tasks run and reaching the open-files limit.
//!
//! Parts: this file (registry, handles, budget); [`io`] — the socket wrapper that notes when
//! a request's first byte arrives (the start of `http_server.request_timeout`).

pub mod io;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chorus_core::sync;
use metrics::{counter, gauge};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::metrics::{HTTP_CONNECTIONS, HTTP_CONNECTIONS_REFUSED, HTTP_CONNECTIONS_SHED};

/// Descriptors kept out of the automatic budget: the listener, Redis and presence connections,
/// files, the resolver, stdio.
pub const FD_RESERVE: u64 = 256;
/// Smallest automatic budget, whatever the open-files limit.
pub const MIN_AUTO_BUDGET: usize = 64;

/// What a connection is doing (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Idle,
    Busy,
    Upgraded,
}

impl State {
    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Idle => "idle",
            State::Busy => "busy",
            State::Upgraded => "upgraded",
        }
    }
}

/// Where the budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// `http_server.max_connections` was set.
    Configured,
    /// Derived from the open-files soft limit (the value read at start).
    OpenFilesLimit(u64),
    /// The open-files limit could not be read; the floor is used.
    Unknown,
}

/// The connection budget in force and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max: usize,
    pub source: BudgetSource,
}

impl Budget {
    /// `configured` when non-zero; otherwise the open-files soft limit minus [`FD_RESERVE`],
    /// at least [`MIN_AUTO_BUDGET`].
    pub fn resolve(configured: usize, open_files_soft_limit: Option<u64>) -> Budget {
        if configured > 0 {
            return Budget {
                max: configured,
                source: BudgetSource::Configured,
            };
        }
        match open_files_soft_limit {
            Some(limit) => Budget {
                max: usize::try_from(limit.saturating_sub(FD_RESERVE))
                    .unwrap_or(usize::MAX)
                    .max(MIN_AUTO_BUDGET),
                source: BudgetSource::OpenFilesLimit(limit),
            },
            None => Budget {
                max: MIN_AUTO_BUDGET,
                source: BudgetSource::Unknown,
            },
        }
    }
}

/// The process's open-files soft limit (`RLIMIT_NOFILE`), if it can be read.
pub fn open_files_soft_limit() -> Option<u64> {
    rlimit::Resource::NOFILE
        .get()
        .ok()
        .map(|(soft, _hard)| soft)
}

/// Outcome of [`Registry::admit`].
#[derive(Debug)]
pub enum Admission {
    /// The connection is registered (pending); `shed` names the state of the connection closed
    /// to make room, if one was.
    Admitted { conn: Conn, shed: Option<State> },
    /// At the budget with nothing sheddable: answer 503 and close.
    Refused,
}

/// All connections of one server.
#[derive(Debug)]
pub struct Registry {
    budget: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
    /// Woken when a shed connection has dropped its socket.
    closed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Every registered connection: its state and its shed signal.
    entries: HashMap<u64, Entry>,
    /// Sheddable connections by accept order (ids grow with accept time).
    pending: BTreeSet<u64>,
    idle: BTreeSet<u64>,
    busy: usize,
    upgraded: usize,
    /// Shed connections whose task has not dropped the socket yet.
    closing: usize,
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// `None` once the connection became a session ([`Conn::into_session`]): never shed.
    shed: Option<CancellationToken>,
}

impl Inner {
    fn enter(&mut self, id: u64, state: State) {
        match state {
            State::Pending => {
                self.pending.insert(id);
            }
            State::Idle => {
                self.idle.insert(id);
            }
            State::Busy => self.busy += 1,
            State::Upgraded => self.upgraded += 1,
        }
    }

    fn leave(&mut self, id: u64, state: State) {
        match state {
            State::Pending => {
                self.pending.remove(&id);
            }
            State::Idle => {
                self.idle.remove(&id);
            }
            State::Busy => self.busy = self.busy.saturating_sub(1),
            State::Upgraded => self.upgraded = self.upgraded.saturating_sub(1),
        }
    }

    /// Removes the oldest pending, else the oldest idle entry (it counts as closing until its
    /// socket is dropped).
    fn take_oldest_sheddable(&mut self) -> Option<(State, CancellationToken)> {
        let (id, state) = match self.pending.first() {
            Some(&id) => (id, State::Pending),
            None => (*self.idle.first()?, State::Idle),
        };
        let entry = self.remove(id)?;
        self.closing += 1;
        Some((state, entry.shed.unwrap_or_default()))
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.leave(id, entry.state);
        Some(entry)
    }

    /// Moves `id` to `to`; returns the state it left, `None` if it is gone (shed) or already
    /// there. Upgraded is final.
    fn transition(&mut self, id: u64, to: State) -> Option<State> {
        let from = {
            let entry = self.entries.get_mut(&id)?;
            let from = entry.state;
            if from == to || from == State::Upgraded {
                return None;
            }
            entry.state = to;
            from
        };
        self.leave(id, from);
        self.enter(id, to);
        Some(from)
    }
}

impl Registry {
    pub fn new(budget: usize) -> Arc<Registry> {
        Arc::new(Registry {
            budget: budget.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
            closed: tokio::sync::Notify::new(),
        })
    }

    /// Resolves when accepting one more connection keeps the descriptors this server holds
    /// (registered plus closing) within the budget — at once unless shed connections are still
    /// closing. `max_wait` bounds the wait (a shed task that is slow to run must not stop the
    /// server from accepting).
    pub async fn room(&self, max_wait: Duration) {
        let deadline = Instant::now() + max_wait;
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            {
                let inner = self.lock();
                if inner.closing == 0 || inner.entries.len() + inner.closing <= self.budget {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return;
            }
        }
    }

    /// The connection budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can panic half-way through an update.
        sync::lock(&self.inner)
    }

    /// Registers a just-accepted connection as pending, shedding the oldest sheddable one first
    /// when the budget is full.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let shed_signal = CancellationToken::new();
        let (id, shed) = {
            let mut inner = self.lock();
            let mut shed = None;
            if inner.entries.len() >= self.budget {
                match inner.take_oldest_sheddable() {
                    Some(victim) => shed = Some(victim),
                    None => {
                        drop(inner);
                        counter!(HTTP_CONNECTIONS_REFUSED).increment(1);
                        return Admission::Refused;
                    }
                }
            }
            let id = inner.next_id;
            inner.next_id += 1;
            inner.entries.insert(
                id,
                Entry {
                    state: State::Pending,
                    shed: Some(shed_signal.clone()),
                },
            );
            inner.enter(id, State::Pending);
            (id, shed)
        };
        gauge!(HTTP_CONNECTIONS, "state" => State::Pending.as_str()).increment(1.0);
        let shed = shed.map(|(state, signal)| {
            Self::shed_done(state, &signal);
            state
        });
        let conn = Conn(Arc::new(Shared {
            id,
            registry: self.clone(),
            handed_over: AtomicBool::new(false),
            shed: shed_signal,
            request_start: AtomicU64::new(0),
        }));
        Admission::Admitted { conn, shed }
    }

    /// Sheds the oldest sheddable connection (used when `accept` fails for lack of
    /// descriptors). Returns the state it was in.
    pub fn shed_one(&self) -> Option<State> {
        let (state, signal) = self.lock().take_oldest_sheddable()?;
        Self::shed_done(state, &signal);
        Some(state)
    }

    fn shed_done(state: State, signal: &CancellationToken) {
        signal.cancel();
        gauge!(HTTP_CONNECTIONS, "state" => state.as_str()).decrement(1.0);
        counter!(HTTP_CONNECTIONS_SHED, "state" => state.as_str()).increment(1);
    }

    /// Connections registered, by state: (pending, idle, busy, upgraded).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let inner = self.lock();
        (
            inner.pending.len(),
            inner.idle.len(),
            inner.busy,
            inner.upgraded,
        )
    }

    fn transition(&self, id: u64, to: State) {
        let from = self.lock().transition(id, to);
        if let Some(from) = from {
            gauge!(HTTP_CONNECTIONS, "state" => from.as_str()).decrement(1.0);
            gauge!(HTTP_CONNECTIONS, "state" => to.as_str()).increment(1.0);
        }
    }

    /// Makes `id` a session (Upgraded, final) and drops the entry's shed token. False if the
    /// entry is gone (shed before the 101).
    fn hand_over(&self, id: u64) -> bool {
        self.transition(id, State::Upgraded);
        let mut inner = self.lock();
        match inner.entries.get_mut(&id) {
            Some(entry) if entry.state == State::Upgraded => {
                entry.shed = None;
                true
            }
            _ => false,
        }
    }

    fn release(&self, id: u64, was_shed: bool) {
        let entry = {
            let mut inner = self.lock();
            let entry = inner.remove(id);
            if entry.is_none() && was_shed {
                inner.closing = inner.closing.saturating_sub(1);
            }
            entry
        };
        match entry {
            Some(entry) => {
                gauge!(HTTP_CONNECTIONS, "state" => entry.state.as_str()).decrement(1.0);
            }
            None if was_shed => self.closed.notify_waiters(),
            None => {}
        }
    }

    fn nanos_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One registered connection. Clones share the entry; it leaves the registry when the last
/// clone is dropped (the connection task, its socket, and for a WebSocket the session task).
#[derive(Debug, Clone)]
pub struct Conn(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    id: u64,
    registry: Arc<Registry>,
    /// The entry was handed to a [`SessionHold`], which releases it.
    handed_over: AtomicBool,
    shed: CancellationToken,
    /// When the current request's first byte was read: nanoseconds since the registry's epoch,
    /// plus one; 0 = no request under way.
    request_start: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.handed_over.load(Ordering::Acquire) {
            self.registry.release(self.id, self.shed.is_cancelled());
        }
    }
}

/// What a WebSocket session holds of its registry entry from the 101 on: the entry counts
/// toward the descriptor budget until this is dropped, and is never shed. The connection's
/// [`Conn`] (its shed token, its request clock) is freed as soon as hyper lets the socket go:
/// 124 B per idle connection (heaptrack).
#[derive(Debug)]
pub struct SessionHold(Hold);

#[derive(Debug)]
enum Hold {
    Session {
        registry: Arc<Registry>,
        id: u64,
    },
    /// Shed before the 101 (a race): the connection keeps its `Conn` and ends as shed.
    Conn(#[allow(dead_code)] Conn),
}

impl Drop for SessionHold {
    fn drop(&mut self) {
        if let Hold::Session { registry, id } = &self.0 {
            registry.release(*id, false);
        }
    }
}

impl Conn {
    /// Resolves when the registry shed this connection: drop the socket.
    pub fn shed_signal(&self) -> WaitForCancellationFutureOwned {
        self.0.shed.clone().cancelled_owned()
    }

    /// Whether the connection was shed.
    pub fn is_shed(&self) -> bool {
        self.0.shed.is_cancelled()
    }

    /// The request is complete; its handler runs.
    pub fn set_busy(&self) {
        self.0.registry.transition(self.0.id, State::Busy);
    }

    /// The connection answered `101 Switching Protocols`: from now on a session, never shed.
    pub fn set_upgraded(&self) {
        self.0.registry.transition(self.0.id, State::Upgraded);
    }

    /// [`Conn::set_upgraded`], and the registry entry handed to the session: see
    /// [`SessionHold`].
    pub fn into_session(self) -> SessionHold {
        if self.0.registry.hand_over(self.0.id) {
            self.0.handed_over.store(true, Ordering::Release);
            SessionHold(Hold::Session {
                registry: self.0.registry.clone(),
                id: self.0.id,
            })
        } else {
            SessionHold(Hold::Conn(self))
        }
    }

    /// A response was produced: the connection goes idle (keep-alive) until the next request.
    /// The next byte read starts the next request's deadline.
    pub fn request_done(&self) {
        self.0.request_start.store(0, Ordering::Release);
        self.0.registry.transition(self.0.id, State::Idle);
    }

    /// Called by the socket wrapper for every read that returned data.
    pub fn note_read(&self) {
        if self.0.request_start.load(Ordering::Relaxed) == 0 {
            let now = self.0.registry.nanos_since_epoch().saturating_add(1);
            // Only the first read of a request sets it.
            let _ =
                self.0
                    .request_start
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// When the current request must be complete: its first byte plus `timeout` (now plus
    /// `timeout` when no byte was seen, e.g. a pipelined request already buffered).
    pub fn request_deadline(&self, timeout: Duration) -> Instant {
        let start = match self.0.request_start.load(Ordering::Acquire) {
            0 => Instant::now(),
            n => self.0.registry.epoch + Duration::from_nanos(n - 1),
        };
        start + timeout
    }
}
