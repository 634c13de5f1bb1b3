#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[derive(Default)]
struct Recorder {
    channels: Vec<String>,
    users: Vec<String>,
    seen: Vec<(Kind, String, String)>,
}

impl Events for Recorder {
    fn wants_channel(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| c == channel)
    }
    fn wants_user(&self, user: &str) -> bool {
        self.users.iter().any(|u| u == user)
    }
    fn event(&mut self, kind: Kind, channel: &str, info: &ClientInfo) {
        self.seen
            .push((kind, channel.to_string(), info.client.clone()));
    }
}

fn entry<'a>(channel: &'a str, user: &'a str, client: &'a str) -> EntryIn<'a> {
    EntryIn {
        channel,
        user,
        client,
        conn_info: b"{\"n\":1}",
        chan_info: b"",
    }
}

fn add(m: &mut Model, node: NodeId, e: EntryIn<'_>, ev: &mut impl Events) {
    m.check(node, std::iter::once(Op::Add(e)), false).unwrap();
    m.apply(node, std::iter::once(Op::Add(e)), ev);
}

fn remove(m: &mut Model, node: NodeId, channel: &str, client: &str, ev: &mut impl Events) {
    let op = Op::Remove { channel, client };
    m.check(node, std::iter::once(op), false).unwrap();
    m.apply(node, std::iter::once(op), ev);
}

#[test]
fn entries_are_indexed_by_channel_user_and_node() {
    let now = Instant::now();
    let mut m = Model::new(1000);
    let a = m.node("a", now);
    let b = m.node("b", now);
    add(&mut m, a, entry("room", "alice", "c1"), &mut NoEvents);
    add(&mut m, a, entry("room", "alice", "c2"), &mut NoEvents);
    add(&mut m, b, entry("room", "bob", "c3"), &mut NoEvents);
    add(&mut m, a, entry("other", "alice", "c1"), &mut NoEvents);
    let mut with_info = entry("room", "bob", "c3");
    with_info.chan_info = b"{\"role\":\"op\"}";
    add(&mut m, b, with_info, &mut NoEvents); // replace: same entry, new channel info

    assert_eq!(
        m.counts(),
        Counts {
            entries: 4,
            channels: 2,
            users: 2,
            clients: 3,
            nodes: 2
        }
    );
    assert_eq!(m.stats("room"), (3, 2));
    assert_eq!(m.stats("other"), (1, 1));
    assert_eq!(m.stats("nobody"), (0, 0));
    let p = m.presence("room");
    assert_eq!(p.len(), 3);
    assert_eq!(p["c3"].user, "bob");
    assert_eq!(p["c3"].node, "b");
    assert_eq!(&p["c3"].chan_info[..], b"{\"role\":\"op\"}");
    assert_eq!(&p["c1"].conn_info[..], b"{\"n\":1}");
    assert_eq!(p["c1"].node, "a");

    let s = m.user_status("alice");
    assert!(s.online);
    assert_eq!(s.num_clients, 2);
    assert_eq!(s.channels, vec!["other".to_string(), "room".to_string()]);
    let s = m.user_status("carol");
    assert!(!s.online);
    assert_eq!(s.user, "carol");

    remove(&mut m, a, "room", "c1", &mut NoEvents);
    remove(&mut m, a, "room", "c1", &mut NoEvents); // absent: no error
    assert_eq!(m.stats("room"), (2, 2));
    assert_eq!(m.user_status("alice").channels, vec!["other", "room"]);
    remove(&mut m, a, "room", "c2", &mut NoEvents);
    assert_eq!(m.user_status("alice").channels, vec!["other"]);
    assert_eq!(m.user_status("alice").num_clients, 1);
    remove(&mut m, a, "other", "c1", &mut NoEvents);
    assert!(!m.user_status("alice").online);
    assert_eq!(m.counts().users, 1);
    assert_eq!(m.counts().clients, 1);
    assert_eq!(m.counts().channels, 1);
    assert_eq!(m.node_entries(a), 0);
    assert_eq!(m.node_entries(b), 1);
}

#[test]
fn another_nodes_clients_are_refused_without_change() {
    let now = Instant::now();
    let mut m = Model::new(3);
    let a = m.node("a", now);
    let b = m.node("b", now);
    add(&mut m, a, entry("room", "alice", "c1"), &mut NoEvents);
    let before = m.counts();

    let hostile = [
        Op::Add(entry("room", "mallory", "m1")),
        Op::Remove {
            channel: "room",
            client: "c1",
        },
    ];
    assert_eq!(
        m.check(b, hostile.iter().copied(), false),
        Err(Refusal::ForeignClient {
            client: "c1".into()
        })
    );
    assert_eq!(
        m.check(
            b,
            std::iter::once(Op::Add(entry("x", "alice", "c1"))),
            false
        ),
        Err(Refusal::ForeignClient {
            client: "c1".into()
        })
    );
    // A client keeps its user, within a batch too.
    assert!(matches!(
        m.check(a, std::iter::once(Op::Add(entry("x", "eve", "c1"))), false),
        Err(Refusal::UserMismatch { .. })
    ));
    let two_users = [
        Op::Add(entry("x", "u1", "n1")),
        Op::Add(entry("y", "u2", "n1")),
    ];
    assert!(matches!(
        m.check(a, two_users.iter().copied(), false),
        Err(Refusal::UserMismatch { .. })
    ));
    // The per-node bound.
    let many = [
        Op::Add(entry("x", "u", "k1")),
        Op::Add(entry("x", "u", "k2")),
        Op::Add(entry("x", "u", "k3")),
    ];
    assert_eq!(
        m.check(a, many.iter().copied(), false),
        Err(Refusal::TooManyEntries { limit: 3 })
    );
    assert_eq!(m.check(a, many.iter().copied(), true), Ok(()));
    assert_eq!(m.counts(), before);
}

#[test]
fn snapshot_replaces_a_nodes_entries_with_events_only_for_changes() {
    let now = Instant::now();
    let mut m = Model::new(1000);
    let a = m.node("a", now);
    let b = m.node("b", now);
    add(&mut m, a, entry("room", "alice", "c1"), &mut NoEvents);
    add(&mut m, a, entry("room", "ann", "c2"), &mut NoEvents);
    add(&mut m, b, entry("room", "bob", "c3"), &mut NoEvents);

    let mut ev = Recorder {
        channels: vec!["room".into()],
        users: vec!["alice".into(), "ann".into(), "amy".into()],
        ..Recorder::default()
    };
    let snapshot = [entry("room", "alice", "c1"), entry("room", "amy", "c4")];
    m.replace_node(a, &snapshot, &mut ev);
    assert_eq!(
        ev.seen,
        vec![
            (Kind::Join, "room".to_string(), "c4".to_string()),
            (Kind::UserOnline, "room".to_string(), "c4".to_string()),
            (Kind::Leave, "room".to_string(), "c2".to_string()),
            (Kind::UserOffline, "room".to_string(), "c2".to_string()),
        ]
    );
    let mut clients: Vec<String> = m.presence("room").into_keys().collect();
    clients.sort();
    assert_eq!(clients, ["c1", "c3", "c4"]);
    assert_eq!(m.node_entries(a), 2);
    assert_eq!(m.node_entries(b), 1);
}

#[test]
fn dropping_a_node_removes_exactly_its_entries() {
    let now = Instant::now();
    let mut m = Model::new(1000);
    let a = m.node("a", now);
    let b = m.node("b", now);
    add(&mut m, a, entry("room", "alice", "c1"), &mut NoEvents);
    add(&mut m, a, entry("lobby", "alice", "c1"), &mut NoEvents);
    add(&mut m, b, entry("room", "alice", "c2"), &mut NoEvents);
    add(&mut m, b, entry("room", "bob", "c3"), &mut NoEvents);

    let mut ev = Recorder {
        channels: vec!["room".into()],
        users: vec!["alice".into()],
        ..Recorder::default()
    };
    let later = now + std::time::Duration::from_secs(5);
    m.touch(b, later);
    assert_eq!(m.lapsed(later, std::time::Duration::from_secs(5)), vec![a]);
    let mut removed = Vec::new();
    m.drop_node(a, &mut removed, &mut ev);
    removed.sort_by(|x, y| x.0.cmp(&y.0));
    let removed: Vec<(String, String, String)> = removed
        .into_iter()
        .map(|(ch, i)| (ch, i.client, i.node))
        .collect();
    assert_eq!(
        removed,
        vec![
            ("lobby".into(), "c1".into(), "a".into()),
            ("room".into(), "c1".into(), "a".into())
        ]
    );
    // alice still has c2 on node b: no USER_OFFLINE.
    assert_eq!(
        ev.seen,
        vec![(Kind::Leave, "room".to_string(), "c1".to_string())]
    );
    assert_eq!(m.stats("room"), (2, 2));
    assert_eq!(m.stats("lobby"), (0, 0));
    assert!(m.find_node("a").is_none());
    assert_eq!(m.user_status("alice").num_clients, 1);
    assert_eq!(m.counts().nodes, 1);
}

#[test]
fn uuid_client_ids_are_found_by_their_string() {
    let now = Instant::now();
    let mut m = Model::new(10);
    let a = m.node("a", now);
    let id = "6f1d2c3b-4a59-4e87-b6c5-d4e3f2a1b0c9";
    add(&mut m, a, entry("room", "alice", id), &mut NoEvents);
    assert!(m.presence("room").contains_key(id));
    remove(&mut m, a, "room", id, &mut NoEvents);
    assert_eq!(
        m.counts(),
        Counts {
            nodes: 1,
            ..Counts::default()
        }
    );
}
