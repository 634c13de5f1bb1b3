//! Queries and Watch against a real replica on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_proto::presence as pb;
use chorus_proto::presence::presence_event::Kind;
use common::*;
use tonic::Code;

#[tokio::test]
async fn user_status_answers_a_contact_list_of_1000_in_request_order() {
    let r = start(config()).await;
    let mut q = rpc(r.addr).await;
    // Users u0..u1999 exist in the request; the odd ones below 1000 are online, u7 twice
    // (two connections) and in two channels.
    let mut snapshot = Vec::new();
    for i in (1..1000).step_by(2) {
        snapshot.push(entry(
            &format!("room{}", i % 10),
            &format!("u{i}"),
            &format!("c{i}"),
        ));
    }
    snapshot.push(entry("dm:u7", "u7", "c7"));
    snapshot.push(entry("room7", "u7", "c7-phone"));
    let _gw = RawNode::synced(r.addr, "gw", snapshot).await;

    // Reverse order, with a duplicate and unknown users.
    let mut users: Vec<String> = (0..998).rev().map(|i| format!("u{i}")).collect();
    users.push("u7".into());
    users.push("nobody".into());
    assert_eq!(users.len(), 1000);
    let statuses = q
        .user_status(pb::UserStatusRequest {
            users: users.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert_eq!(statuses.len(), 1000);
    for (asked, got) in users.iter().zip(&statuses) {
        assert_eq!(&got.user, asked);
        let i: Option<u32> = asked.strip_prefix('u').and_then(|n| n.parse().ok());
        let online = i.is_some_and(|i| i % 2 == 1);
        assert_eq!(got.online, online, "{asked}");
        if asked == "u7" {
            assert_eq!(got.num_clients, 2);
            assert_eq!(got.channels, ["dm:u7", "room7"]);
        } else if online {
            assert_eq!(got.num_clients, 1, "{asked}");
            assert_eq!(got.channels, [format!("room{}", i.unwrap() % 10)]);
        } else {
            assert_eq!(got.num_clients, 0);
            assert!(got.channels.is_empty());
        }
    }
    let e = q
        .user_status(pb::UserStatusRequest {
            users: vec!["u".into(); 10_001],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    r.stop().await;
}

async fn next_event(w: &mut tonic::Streaming<pb::PresenceEvent>) -> (Kind, String, String) {
    let e = tokio::time::timeout(Duration::from_secs(3), w.message())
        .await
        .expect("an event within 3 s")
        .unwrap()
        .unwrap();
    let info = e.info.unwrap();
    (
        Kind::try_from(e.kind).unwrap(),
        e.channel,
        format!("{}/{}@{}", info.user, info.client, info.node),
    )
}

#[tokio::test]
async fn watch_reports_joins_leaves_and_users_going_online_and_offline() {
    let mut c = config();
    c.lease_ttl = Duration::from_millis(600);
    let r = start(c).await;
    let mut q = rpc(r.addr).await;
    let mut w = q
        .watch(pb::WatchRequest {
            channels: vec!["room".into()],
            users: vec!["alice".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut a = RawNode::synced(r.addr, "gw-a", vec![]).await;
    a.deltas(vec![add("room", "alice", "a1")]).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        (Kind::Join, "room".into(), "alice/a1@gw-a".into())
    );
    assert_eq!(
        next_event(&mut w).await,
        (Kind::UserOnline, "room".into(), "alice/a1@gw-a".into())
    );
    // Not watched: no event. alice's second entry: no USER_ONLINE again.
    a.deltas(vec![add("other", "bob", "b1"), add("other", "alice", "a1")])
        .await
        .unwrap();
    a.deltas(vec![rem("room", "a1")]).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        (Kind::Leave, "room".into(), "alice/a1@gw-a".into())
    );
    a.deltas(vec![rem("other", "a1")]).await.unwrap();
    assert_eq!(
        next_event(&mut w).await,
        (Kind::UserOffline, "other".into(), "alice/a1@gw-a".into())
    );
    // A node's lease expiry reports LEAVE (and USER_OFFLINE) like any removal.
    let _b = RawNode::synced(r.addr, "gw-b", vec![entry("room", "alice", "a2")]).await;
    assert_eq!(
        next_event(&mut w).await,
        (Kind::Join, "room".into(), "alice/a2@gw-b".into())
    );
    assert_eq!(
        next_event(&mut w).await,
        (Kind::UserOnline, "room".into(), "alice/a2@gw-b".into())
    );
    assert_eq!(
        next_event(&mut w).await,
        (Kind::Leave, "room".into(), "alice/a2@gw-b".into())
    );
    assert_eq!(
        next_event(&mut w).await,
        (Kind::UserOffline, "room".into(), "alice/a2@gw-b".into())
    );
    drop(a);
    let e = q.watch(pb::WatchRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Shutdown ends the watch with UNAVAILABLE.
    r.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match w.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end.unwrap_err().code(), Code::Unavailable);
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_dropped_not_waited_for() {
    let r = start(config()).await;
    let mut q = rpc(r.addr).await;
    let mut w = q
        .watch(pb::WatchRequest {
            channels: vec!["busy".into()],
            users: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let mut gw = RawNode::synced(r.addr, "gw", vec![]).await;
    // 8,000 joins and leaves of 8 KiB each while the watcher reads nothing (more than its
    // queue plus the HTTP/2 buffers hold): writes are never delayed.
    let started = std::time::Instant::now();
    for round in 0..16 {
        let big = |i: usize| pb::Delta {
            op: Some(pb::delta::Op::Add(pb::Entry {
                channel: "busy".into(),
                info: Some(pb::ClientInfo {
                    conn_info: bytes::Bytes::from(vec![b'x'; 8 << 10]),
                    ..info("u", &format!("c{round}-{i}"))
                }),
            })),
        };
        gw.deltas((0..250).map(big).collect()).await.unwrap();
        let rems = (0..250)
            .map(|i| rem("busy", &format!("c{round}-{i}")))
            .collect();
        gw.deltas(rems).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut received = 0;
    let status = loop {
        match w.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(received < 8_000, "{received}");
    r.stop().await;
}
