//! The lock policy of the workspace, and its one helper for poison-tolerant locking.
//!
//! * **std `Mutex` / `RwLock`** for short, non-async critical sections: look up, update,
//!   enqueue. A guard is never held across an `.await` (the compiler enforces it for `Send`
//!   futures; reviews enforce it for the rest) and never while calling into another component
//!   that might lock (broker handlers, hub fan-out) unless the order below allows it.
//! * **Poisoning** is not an error here: every critical section leaves its data consistent
//!   at each step, so a panic elsewhere must not take the node down with it. Lock through
//!   [`lock`], [`read`] and [`write`], which recover the guard (`PoisonError::into_inner`),
//!   never with `.lock().unwrap()` or a local copy of the same helper.
//! * **`tokio::sync::Mutex`** only where the critical section must span an `.await`:
//!   * `Client::cmd_lock` — a connection's commands and the server-API changes of that
//!     connection (subscribe, unsubscribe, refresh, expiry) run one at a time, across their
//!     broker and presence calls;
//!   * `Hub::broker_lock(channel)` — the broker subscribe/unsubscribe of one channel, so a
//!     deferred unsubscribe never races a new subscribe;
//!   * the gateway's `Jwks::fetch` — one JWKS fetch per endpoint at a time, across its HTTP
//!     request (a leaf: nothing else is locked while it is held).
//! * **Lock order** (outer before inner, never the reverse): `Client::cmd_lock` →
//!   `Hub::broker_lock`; among std locks, the memory broker's channel entry → its LRU index
//!   or (through `BrokerHandler::on_publication`) the hub; a hub channel's join/leave `gate` →
//!   its `subs` → its delta `prev` (channels with delta subscribers, `hub::delta`) → a
//!   subscriber's `state` → the connection's `Outbound` state; a client's
//!   `state` → a subscriber's `state`; a client's `timers` → the node's timer wheel (the
//!   wheel's task takes due entries, lets the wheel go, then visits each client). A client's
//!   `state` and `timers` are never held together: copy what is needed out of one, drop it,
//!   then take the other; `timers` is never held while pushing to the `Outbound`.
//! * **Fan-out never waits**: under hub locks and dashmap references the code only looks up
//!   and enqueues (`Outbound::push`), and no lock or dashmap reference lives across `.await`.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering the guard if a panicking holder poisoned it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Read-locks `lock`, recovering the guard if a panicking writer poisoned it.
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-locks `lock`, recovering the guard if a panicking holder poisoned it.
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn poisoned_locks_are_recovered() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _g = lock(&m2);
            let _w = write(&l2);
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (2, 2));
    }
}
