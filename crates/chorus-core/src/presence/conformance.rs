//! The behavioural suite every [`PresenceStore`] passes (feature `testing`): the in-process
//! store, and the presence service client adapted by the gateway. Exact outcomes; reads are
//! retried for a short while because a service applies writes asynchronously (after its flush
//! tick), and every check ends with the store empty again.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chorus_protocol::ClientInfo;

use super::{PresenceStore, UserStatus};

/// How long a read may take to show a write.
pub const VISIBLE_WITHIN: Duration = Duration::from_secs(3);

/// A client info with JSON conn info.
pub fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo {
        user: user.to_string(),
        client: client.to_string(),
        conn_info: Bytes::from(format!("{{\"name\":\"{user}\"}}")),
        chan_info: Bytes::new(),
    }
}

/// The value of a store call that must succeed.
fn must<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

/// Retries `read` until it returns `want` (or the deadline passes), then asserts.
async fn eventually<T, F, Fut>(what: &str, want: T, mut read: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + VISIBLE_WITHIN;
    loop {
        let got = read().await;
        if got == want {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: got {got:?}, want {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn members(store: &dyn PresenceStore, channel: &str) -> BTreeMap<String, String> {
    store
        .get(channel)
        .await
        .map(|m| m.into_iter().map(|(k, v)| (k, v.user)).collect())
        .unwrap_or_default()
}

async fn stats(store: &dyn PresenceStore, channel: &str) -> (u32, u32) {
    store
        .stats(channel)
        .await
        .map(|s| (s.num_clients, s.num_users))
        .unwrap_or((u32::MAX, u32::MAX))
}

/// Runs every check against `store` (channel names are unique per call).
pub async fn run_all(store: &dyn PresenceStore) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    add_get_stats_remove(store, &format!("pc-a-{tag}")).await;
    replace_keeps_one_entry(store, &format!("pc-r-{tag}")).await;
    user_status_in_request_order(store, &tag).await;
}

/// Entries appear with their info, counts are clients and distinct users, removing an absent
/// client is not an error, and the channel is empty at the end.
pub async fn add_get_stats_remove(store: &dyn PresenceStore, ch: &str) {
    for (u, c) in [("u1", "c1"), ("u1", "c2"), ("u2", "c3")] {
        must(store.add(ch, info(u, c)).await, "add");
    }
    let want: BTreeMap<String, String> = [("c1", "u1"), ("c2", "u1"), ("c3", "u2")]
        .into_iter()
        .map(|(c, u)| (c.to_string(), u.to_string()))
        .collect();
    eventually("members", want, || members(store, ch)).await;
    eventually("stats", (3, 2), || stats(store, ch)).await;
    let got = must(store.get(ch).await, "get");
    assert_eq!(got.get("c3"), Some(&info("u2", "c3")), "info kept exactly");
    must(store.remove(ch, "c1").await, "remove");
    must(store.remove(ch, "nobody").await, "remove absent");
    eventually("stats after remove", (2, 2), || stats(store, ch)).await;
    must(store.remove(ch, "c2").await, "remove");
    must(store.remove(ch, "c3").await, "remove");
    eventually("empty", BTreeMap::new(), || members(store, ch)).await;
    eventually("empty stats", (0, 0), || stats(store, ch)).await;
}

/// Adding the same client again replaces its entry (new info, one entry).
pub async fn replace_keeps_one_entry(store: &dyn PresenceStore, ch: &str) {
    must(store.add(ch, info("u1", "c1")).await, "add");
    let mut newer = info("u1", "c1");
    newer.chan_info = Bytes::from_static(b"{\"role\":\"admin\"}");
    must(store.add(ch, newer.clone()).await, "re-add");
    eventually("replaced", Some(newer.clone()), || async {
        store.get(ch).await.ok().and_then(|m| m.get("c1").cloned())
    })
    .await;
    eventually("one entry", (1, 1), || stats(store, ch)).await;
    must(store.remove(ch, "c1").await, "remove");
    eventually("empty", (0, 0), || stats(store, ch)).await;
}

/// `user_status` answers in request order: online users with their connection count and
/// sorted channels, unknown users offline.
pub async fn user_status_in_request_order(store: &dyn PresenceStore, tag: &str) {
    let (a, b) = (format!("pc-ua-{tag}"), format!("pc-ub-{tag}"));
    let (alice, bob, carol) = (
        format!("alice-{tag}"),
        format!("bob-{tag}"),
        format!("carol-{tag}"),
    );
    must(store.add(&b, info(&alice, "ca1")).await, "add");
    must(store.add(&a, info(&alice, "ca1")).await, "add");
    must(store.add(&a, info(&alice, "ca2")).await, "add");
    must(store.add(&a, info(&bob, "cb1")).await, "add");
    let mut sorted = vec![a.clone(), b.clone()];
    sorted.sort();
    let users = vec![carol.clone(), bob.clone(), alice.clone()];
    let want = vec![
        UserStatus::offline(&carol),
        UserStatus {
            user: bob.clone(),
            online: true,
            num_clients: 1,
            channels: vec![a.clone()],
        },
        UserStatus {
            user: alice.clone(),
            online: true,
            num_clients: 2,
            channels: sorted,
        },
    ];
    eventually("user status", Ok(want), || store.user_status(&users)).await;
    for (ch, c) in [(&a, "ca1"), (&a, "ca2"), (&a, "cb1"), (&b, "ca1")] {
        must(store.remove(ch, c).await, "remove");
    }
    let offline: Vec<UserStatus> = users.iter().map(|u| UserStatus::offline(u)).collect();
    eventually("all offline", Ok(offline), || store.user_status(&users)).await;
}
