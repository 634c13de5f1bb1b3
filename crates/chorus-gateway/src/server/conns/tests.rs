//! The registry's shedding policy, state bookkeeping and entry lifetime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;

fn admitted(registry: &Arc<Registry>) -> (Conn, Option<State>) {
    match registry.admit() {
        Admission::Admitted { conn, shed } => (conn, shed),
        Admission::Refused => panic!("refused"),
    }
}

#[test]
fn budget_resolution() {
    assert_eq!(
        Budget::resolve(40, Some(1024)),
        Budget {
            max: 40,
            source: BudgetSource::Configured
        }
    );
    assert_eq!(Budget::resolve(0, Some(1024)).max, 768);
    assert_eq!(Budget::resolve(0, Some(20_000)).max, 19_744);
    assert_eq!(Budget::resolve(0, Some(256)).max, MIN_AUTO_BUDGET);
    assert_eq!(
        Budget::resolve(0, Some(u64::MAX)).max as u64,
        u64::MAX - FD_RESERVE
    );
    assert_eq!(
        Budget::resolve(0, None),
        Budget {
            max: MIN_AUTO_BUDGET,
            source: BudgetSource::Unknown
        }
    );
}

#[test]
fn sheds_oldest_pending_then_oldest_idle_never_busy_or_upgraded() {
    let registry = Registry::new(4);
    let (session, _) = admitted(&registry);
    session.set_busy();
    session.set_upgraded();
    let (idle, _) = admitted(&registry);
    idle.set_busy();
    idle.request_done();
    let (pending_old, _) = admitted(&registry);
    let (pending_new, _) = admitted(&registry);
    assert_eq!(registry.counts(), (2, 1, 0, 1));

    // Full: the oldest pending goes first.
    let (fifth, shed) = admitted(&registry);
    assert_eq!(shed, Some(State::Pending));
    assert!(pending_old.is_shed());
    assert!(!pending_new.is_shed());
    assert_eq!(registry.counts(), (2, 1, 0, 1));

    // Make every pending one busy: then the idle one goes.
    pending_new.set_busy();
    fifth.set_busy();
    let (sixth, shed) = admitted(&registry);
    assert_eq!(shed, Some(State::Idle));
    assert!(idle.is_shed());
    assert_eq!(registry.counts(), (1, 0, 2, 1));

    // Only busy and upgraded left (plus the newest pending): that pending one goes; then
    // nothing can be shed and the next one is refused.
    let (seventh, shed) = admitted(&registry);
    assert_eq!(shed, Some(State::Pending));
    assert!(sixth.is_shed());
    seventh.set_busy();
    assert!(matches!(registry.admit(), Admission::Refused));
    assert!(!session.is_shed());
    assert!(!pending_new.is_shed());
    assert!(!fifth.is_shed());
    assert_eq!(registry.counts(), (0, 0, 3, 1));
}

#[test]
fn an_entry_lives_until_its_last_clone_is_dropped() {
    let registry = Registry::new(2);
    let (conn, _) = admitted(&registry);
    conn.set_busy();
    conn.set_upgraded();
    let session_copy = conn.clone();
    drop(conn); // the hyper connection task ends after the upgrade
    assert_eq!(registry.counts(), (0, 0, 0, 1));
    // Upgraded is final.
    session_copy.request_done();
    session_copy.set_busy();
    assert_eq!(registry.counts(), (0, 0, 0, 1));
    drop(session_copy); // the session ends
    assert_eq!(registry.counts(), (0, 0, 0, 0));
}

#[test]
fn a_session_hold_keeps_the_entry_after_every_conn_clone_is_gone() {
    let registry = Registry::new(2);
    let (conn, _) = admitted(&registry);
    conn.set_busy();
    conn.set_upgraded();
    let hyper_side = conn.clone();
    let hold = conn.into_session();
    drop(hyper_side); // hyper lets the socket go: the Conn (and its shed token) is freed
    assert_eq!(registry.counts(), (0, 0, 0, 1));
    assert!(matches!(registry.lock().entries.values().next(), Some(e) if e.shed.is_none()));
    // Still counted in the budget, never shed: with one pending the budget is full.
    let (_pending, _) = admitted(&registry);
    let (_third, shed) = admitted(&registry);
    assert_eq!(shed, Some(State::Pending));
    assert_eq!(registry.counts(), (1, 0, 0, 1));
    drop(hold); // the session ends
    assert_eq!(registry.counts(), (1, 0, 0, 0));
}

#[test]
fn a_connection_shed_before_its_101_ends_as_shed_even_as_a_session() {
    let registry = Registry::new(1);
    let (first, _) = admitted(&registry);
    let (_second, shed) = admitted(&registry);
    assert_eq!(shed, Some(State::Pending));
    let hold = first.into_session(); // the 101 raced the shed
    assert!(matches!(hold.0, Hold::Conn(_)));
    assert_eq!(registry.lock().closing, 1);
    drop(hold); // its socket goes: the closing slot is freed
    assert_eq!(registry.lock().closing, 0);
    assert_eq!(registry.counts(), (1, 0, 0, 0));
}

#[test]
fn a_shed_entry_frees_its_slot_at_once_and_ignores_later_transitions() {
    let registry = Registry::new(1);
    let (first, _) = admitted(&registry);
    let (second, shed) = admitted(&registry);
    assert_eq!(shed, Some(State::Pending));
    assert!(first.is_shed());
    first.set_busy(); // the shed task has not noticed yet
    first.request_done();
    assert_eq!(registry.counts(), (1, 0, 0, 0));
    drop(first);
    assert_eq!(registry.counts(), (1, 0, 0, 0));
    drop(second);
    assert_eq!(registry.counts(), (0, 0, 0, 0));
}

#[test]
fn shed_one_for_accept_errors() {
    let registry = Registry::new(10);
    assert_eq!(registry.shed_one(), None);
    let (busy, _) = admitted(&registry);
    busy.set_busy();
    assert_eq!(registry.shed_one(), None);
    let (idle, _) = admitted(&registry);
    idle.request_done();
    let (pending, _) = admitted(&registry);
    assert_eq!(registry.shed_one(), Some(State::Pending));
    assert!(pending.is_shed());
    assert_eq!(registry.shed_one(), Some(State::Idle));
    assert!(idle.is_shed());
    assert_eq!(registry.shed_one(), None);
}

#[tokio::test(start_paused = true)]
async fn request_deadline_counts_from_the_first_byte() {
    let registry = Registry::new(4);
    let (conn, _) = admitted(&registry);
    let timeout = Duration::from_secs(10);
    // No byte yet: from now.
    assert_eq!(conn.request_deadline(timeout), Instant::now() + timeout);
    tokio::time::advance(Duration::from_secs(2)).await;
    let first_byte = Instant::now();
    conn.note_read();
    tokio::time::advance(Duration::from_secs(3)).await;
    conn.note_read(); // later reads of the same request do not move it
    assert_eq!(conn.request_deadline(timeout), first_byte + timeout);
    // The next request starts its own clock.
    conn.request_done();
    tokio::time::advance(Duration::from_secs(1)).await;
    let next = Instant::now();
    conn.note_read();
    assert_eq!(conn.request_deadline(timeout), next + timeout);
}

#[tokio::test]
async fn shed_signal_resolves() {
    let registry = Registry::new(1);
    let (first, _) = admitted(&registry);
    let signal = first.shed_signal();
    let (_second, _) = admitted(&registry);
    tokio::time::timeout(Duration::from_secs(1), signal)
        .await
        .expect("shed signal");
}

/// A shed connection holds its descriptor until its task drops it: until then the accept loop
/// waits (so a flood cannot take the process past budget + 1 descriptors).
#[tokio::test]
async fn room_waits_for_shed_connections_to_close() {
    let registry = Registry::new(2);
    let (first, _) = admitted(&registry);
    let (_second, _) = admitted(&registry);
    // Within the budget and nothing closing: room at once.
    tokio::time::timeout(
        Duration::from_millis(50),
        registry.room(Duration::from_secs(5)),
    )
    .await
    .expect("room at once");
    let (_third, shed) = admitted(&registry);
    assert_eq!(shed, Some(State::Pending));
    assert!(first.is_shed());
    // 2 registered + 1 closing > 2: wait until the shed connection is dropped.
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.room(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    drop(first);
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("room after the close")
        .unwrap();
    // The wait is bounded even if a shed task never runs.
    let (stuck, _) = admitted(&registry);
    let started = Instant::now();
    registry.room(Duration::from_millis(100)).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    drop(stuck);
}
