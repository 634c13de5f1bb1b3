//! Connection timers, filed in the node's timer wheel ([`crate::wheel`]; no task or tokio
//! timer of their own): the stale deadline before `connect` (3502), server pings and the pong
//! deadline (3012), connection expiry (3005) and subscription expiry (unsubscribe 2501).
//!
//! A connection has at most one live wheel entry, for its earliest deadline; `filed` records
//! its tick. Moving a deadline earlier files a new entry (the old one is ignored when its turn
//! comes); moving it later files nothing: the visit finds nothing due and re-files.

use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::codes;
use chorus_protocol::ping_message;
use rand::Rng;
use tokio::time::Instant;

use super::Client;
use crate::clock::{self, unix_now};
use crate::options::ClientOptions;
use crate::sync;
use crate::wheel::Wheel;

/// An instant as nanoseconds since the node's wheel base, plus one; 0 = none. 8 B where an
/// `Option<Instant>` takes 16: five per connection (with the intervals read from the node's
/// options, this took `Client` from 408 to 328 B, one allocator size class down).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct At(u64);

impl At {
    const NONE: At = At(0);

    fn new(wheel: &Wheel<Arc<str>>, at: Option<Instant>) -> At {
        match at {
            Some(at) => At(wheel.nanos_since_base(at).saturating_add(1)),
            None => At::NONE,
        }
    }

    fn get(self, wheel: &Wheel<Arc<str>>) -> Option<Instant> {
        (self.0 != 0).then(|| wheel.instant_at_nanos(self.0 - 1))
    }

    fn is_some(self) -> bool {
        self.0 != 0
    }

    /// Due by `now` (given as nanoseconds since the base, plus one).
    fn due(self, now: At) -> bool {
        self.0 != 0 && now.0 >= self.0
    }
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Close with 3502 if not connected by then.
    stale: At,
    next_ping: At,
    /// Close with 3012 if no pong by then.
    pong_deadline: At,
    /// Check connection and subscription expiry at this instant.
    expiry_check: At,
    /// The connection expires (3005) at this instant unless refreshed (expiry + grace).
    conn_deadline: At,
    /// The wheel tick of this connection's live entry (ticks start at 1; 0 = none).
    filed: u64,
}

impl Timers {
    pub(crate) fn new(opts: &ClientOptions, wheel: &Wheel<Arc<str>>) -> Self {
        let stale = (!opts.stale_close_delay.is_zero())
            .then(|| Instant::now() + opts.stale_close_delay.get());
        Timers {
            stale: At::new(wheel, stale),
            ..Default::default()
        }
    }

    /// The earliest deadline (as packed: 0 = none).
    fn earliest(&self) -> At {
        [
            self.stale,
            self.next_ping,
            self.pong_deadline,
            self.expiry_check,
        ]
        .into_iter()
        .filter(|a| a.is_some())
        .min_by_key(|a| a.0)
        .unwrap_or(At::NONE)
    }
}

/// Converts a unix time (seconds) into a tokio instant (now if in the past).
fn instant_at(unix: i64, grace: Duration) -> Instant {
    let delta = u64::try_from(unix.saturating_sub(unix_now())).unwrap_or(0);
    Instant::now() + Duration::from_secs(delta) + grace
}

impl Client {
    fn lock_timers(&self) -> std::sync::MutexGuard<'_, Timers> {
        sync::lock(&self.timers)
    }

    /// Files the connection's earliest deadline in the node's wheel unless an entry for the
    /// same or an earlier turn is live (its visit re-files). Called with the timers locked.
    fn file(&self, t: &mut Timers) {
        let wheel = self.node.wheel();
        let Some(at) = t.earliest().get(wheel) else {
            return;
        };
        if t.filed != 0 && wheel.instant_of(t.filed) <= at {
            return;
        }
        t.filed = wheel.insert(at, self.id.clone());
    }

    /// Files the stale deadline of a new connection (once it is in the hub).
    pub(crate) fn start_timers(&self) {
        let mut t = self.lock_timers();
        self.file(&mut t);
    }

    /// Called after a successful connect: stop the stale timer, start pings (first one at a
    /// random point in [interval/2, interval) so mass reconnects do not ping in lockstep).
    pub(super) fn start_session_timers(&self) {
        let interval = self.node.options().client.ping_interval.get();
        let wheel = self.node.wheel();
        let mut t = self.lock_timers();
        t.stale = At::NONE;
        if !interval.is_zero() {
            let half = interval / 2;
            let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
            let first = Instant::now() + half + Duration::from_millis(jitter);
            t.next_ping = At::new(wheel, Some(first));
        }
        self.file(&mut t);
    }

    /// Re-arms the expiry check after connect/refresh/subscribe changed an expiry.
    pub(crate) fn schedule_expiry_check(&self) {
        // A refresh hook is called at expiry itself; clients refreshing get a grace.
        let grace = match self.node.proxies().refresh() {
            Some(_) => Duration::ZERO,
            None => self.node.options().client.expired_close_delay.get(),
        };
        let st = self.lock_state();
        let conn = st.expires_at.map(|t| instant_at(t, grace));
        let subs = st
            .subs
            .values()
            .filter_map(|s| s.expires_at)
            .min()
            .map(|t| instant_at(t, Duration::ZERO));
        drop(st);
        let wheel = self.node.wheel();
        let mut t = self.lock_timers();
        t.conn_deadline = At::new(wheel, conn);
        t.expiry_check = At::new(wheel, [conn, subs].into_iter().flatten().min());
        self.file(&mut t);
    }

    pub(super) fn on_pong(&self) {
        // The deadline moves later (to the next ping): the live entry's visit re-files.
        self.lock_timers().pong_deadline = At::NONE;
    }

    /// Drops every deadline: a closed connection has no timers (its wheel entry is ignored).
    pub(super) fn stop_timers(&self) {
        let mut t = self.lock_timers();
        *t = Timers::default();
    }

    /// The wheel's turn for `tick` came: runs whatever is due, then files the next deadline.
    /// Runs on the wheel's task; a ping goes out through the connection's direct write.
    pub(crate) fn on_wheel(&self, tick: u64) {
        let mut t = self.lock_timers();
        if t.filed != tick {
            return;
        }
        t.filed = 0;
        drop(t);
        if self.is_closed() {
            self.stop_timers();
            return;
        }
        self.on_timers();
        if self.is_closed() {
            self.stop_timers();
            return;
        }
        let mut t = self.lock_timers();
        self.file(&mut t);
    }

    /// Runs whatever timers are due.
    fn on_timers(&self) {
        let opts = &self.node.options().client;
        let wheel = self.node.wheel();
        let now_instant = Instant::now();
        let now = At::new(wheel, Some(now_instant));
        let mut t = self.lock_timers();
        if t.stale.due(now) {
            t.stale = At::NONE;
            drop(t);
            self.disconnect(codes::DISCONNECT_STALE.into());
            return;
        }
        if t.pong_deadline.due(now) {
            t.pong_deadline = At::NONE;
            drop(t);
            self.disconnect(codes::DISCONNECT_NO_PONG.into());
            return;
        }
        if t.next_ping.due(now) {
            t.next_ping = At::new(wheel, Some(now_instant + opts.ping_interval.get()));
            if !opts.pong_timeout.is_zero() && !t.pong_deadline.is_some() {
                t.pong_deadline = At::new(wheel, Some(now_instant + opts.pong_timeout.get()));
            }
            drop(t);
            self.outbound.push(ping_message(self.params.protocol));
            crate::metrics::client_sent(crate::metrics::MessageType::Ping, 1);
            t = self.lock_timers();
        }
        if t.expiry_check.due(now) {
            t.expiry_check = At::NONE;
            drop(t);
            self.check_expiry();
        }
    }

    /// The sub_refresh hook of `channel`'s namespace, when it has one.
    fn sub_refresh_proxy(&self, channel: &str) -> Option<crate::proxy::ProxyHandle> {
        let options = crate::channel::resolve(&self.node.options().channel, channel).ok()?;
        if !options.sub_refresh_proxy_enabled {
            return None;
        }
        let name = &options.sub_refresh_proxy_name;
        let proxy = self
            .node
            .proxies()
            .get(crate::proxy::ProxyEvent::SubRefresh, name);
        proxy.cloned()
    }

    fn check_expiry(&self) {
        let now = At::new(self.node.wheel(), Some(Instant::now()));
        let due = self.lock_timers().conn_deadline.due(now);
        if due {
            match self.node.proxies().refresh().cloned() {
                Some(proxy) => self.start_proxy_refresh(proxy),
                None => {
                    self.disconnect(codes::DISCONNECT_EXPIRED.into());
                    return;
                }
            }
        }
        let st = self.lock_state();
        let (mut expired, mut hooked) = (Vec::new(), Vec::new());
        for (channel, sub) in st.subs.iter() {
            if !clock::is_expired(sub.expires_at) {
                continue;
            }
            match self.sub_refresh_proxy(channel) {
                Some(proxy) => hooked.push((channel.clone(), proxy)),
                None => expired.push(channel.clone()),
            }
        }
        drop(st);
        self.start_proxy_sub_refresh(hooked);
        if !expired.is_empty() {
            if let Some(me) = self.me.upgrade() {
                self.node.spawn(async move {
                    let _serial = me.cmd_lock.lock().await;
                    for channel in expired {
                        me.remove_subscription(&channel, Some(codes::UNSUBSCRIBE_EXPIRED))
                            .await;
                    }
                    me.schedule_expiry_check();
                });
            }
        }
        self.schedule_expiry_check();
    }
}
