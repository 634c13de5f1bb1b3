//! The Sync protocol against a real replica on port 0: snapshot, deltas, heartbeats, leases,
//! goodbye, replacement, warm-up, auth and hostile streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_proto::presence as pb;
use chorus_proto::presence::node_message::Kind as Out;
use common::*;
use tonic::Code;

#[tokio::test]
async fn snapshot_then_deltas_are_exact_and_acknowledged() {
    let r = start(config()).await;
    let mut q = rpc(r.addr).await;
    let mut a = RawNode::synced(
        r.addr,
        "gw-a",
        vec![entry("room", "alice", "a1"), entry("room", "ann", "a2")],
    )
    .await;
    assert_eq!(presence_of(&mut q, "room").await, ["a1", "a2"]);

    a.deltas(vec![
        add("room", "amy", "a3"),
        rem("room", "a1"),
        add("lobby", "ann", "a2"),
        add("room", "zed", "a4"),
        rem("room", "a4"), // added and removed in one batch: applied in order
        rem("room", "never-there"),
    ])
    .await
    .unwrap();
    assert_eq!(presence_of(&mut q, "room").await, ["a2", "a3"]);
    assert_eq!(stats_of(&mut q, "room").await, (2, 2));
    assert_eq!(presence_of(&mut q, "lobby").await, ["a2"]);
    let p = q
        .presence(pb::PresenceRequest {
            channel: "room".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .presence;
    assert_eq!(p["a3"].user, "amy");
    assert_eq!(p["a3"].node, "gw-a");
    assert_eq!(&p["a3"].conn_info[..], b"{\"name\":\"amy\"}");
    a.heartbeat().await.unwrap();

    // A second snapshot (a reconnect) replaces the node's entries atomically.
    let mut a2 = RawNode::synced(r.addr, "gw-a", vec![entry("room", "bob", "b1")]).await;
    assert_eq!(presence_of(&mut q, "room").await, ["b1"]);
    assert_eq!(presence_of(&mut q, "lobby").await, Vec::<String>::new());
    // The older stream was replaced.
    let err = a.next_expired().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("replaced"), "{err:?}");
    a2.heartbeat().await.unwrap();
    r.stop().await;
}

#[tokio::test]
async fn snapshot_in_chunks_applies_at_the_last_one() {
    let r = start(config()).await;
    let mut q = rpc(r.addr).await;
    let _old = RawNode::synced(r.addr, "gw", vec![entry("room", "old", "o1")]).await;
    let (mut n, welcome) = RawNode::open(r.addr, "gw").await.unwrap();
    assert_eq!(welcome.lease_ttl_ms, 2000);
    assert_eq!(welcome.heartbeat_interval_ms, 500);
    n.send(Out::Snapshot(pb::SnapshotChunk {
        entries: vec![entry("room", "u1", "c1")],
        last: false,
        seq: 0,
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Not applied yet: the previous entries stay until the last chunk.
    assert_eq!(presence_of(&mut q, "room").await, ["o1"]);
    n.seq = 1;
    n.send(Out::Snapshot(pb::SnapshotChunk {
        entries: vec![entry("room", "u2", "c2")],
        last: true,
        seq: 1,
    }))
    .await;
    n.expect_ack(1).await.unwrap();
    assert_eq!(presence_of(&mut q, "room").await, ["c1", "c2"]);
    r.stop().await;
}

#[tokio::test]
async fn lease_expiry_drops_exactly_that_node_and_tells_the_others() {
    let mut c = config();
    c.lease_ttl = Duration::from_millis(600);
    let r = start(c).await;
    let mut q = rpc(r.addr).await;
    let mut a = RawNode::synced(
        r.addr,
        "gw-a",
        vec![entry("room", "alice", "a1"), entry("side", "alice", "a1")],
    )
    .await;
    let mut b = RawNode::synced(r.addr, "gw-b", vec![entry("room", "bob", "b1")]).await;
    // b keeps heartbeating; a goes silent (as if killed: its socket stays open).
    let beat = tokio::spawn(async move {
        let mut expired = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        while tokio::time::Instant::now() < deadline {
            b.seq += 1;
            let seq = b.seq;
            b.send(Out::Heartbeat(pb::Heartbeat { seq })).await;
            loop {
                match b.rx.message().await.unwrap() {
                    Some(pb::ServiceMessage {
                        kind: Some(pb::service_message::Kind::Expired(e)),
                    }) => expired.push(e),
                    Some(pb::ServiceMessage {
                        kind: Some(pb::service_message::Kind::Ack(ack)),
                    }) if ack.seq == seq => break,
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        expired
    });
    let started = tokio::time::Instant::now();
    assert!(
        wait_for(Duration::from_secs(3), || {
            let mut q = q.clone();
            async move { presence_of(&mut q, "room").await == ["b1"] }
        })
        .await
    );
    let took = started.elapsed();
    assert!(took < Duration::from_millis(600 + 500 + 300), "{took:?}");
    assert_eq!(presence_of(&mut q, "side").await, Vec::<String>::new());
    let expired = beat.await.unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    let e = &expired[0];
    assert_eq!(e.node, "gw-a");
    assert_eq!(e.reason, pb::expired::Reason::LeaseExpired as i32);
    let mut removed: Vec<(String, String, String)> = e
        .entries
        .iter()
        .map(|x| {
            let i = x.info.clone().unwrap();
            (x.channel.clone(), i.client, i.node)
        })
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            ("room".into(), "a1".into(), "gw-a".into()),
            ("side".into(), "a1".into(), "gw-a".into())
        ]
    );
    // The expired node's stream was closed.
    let err = a.next_expired().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    r.stop().await;
}

#[tokio::test]
async fn a_broken_stream_keeps_entries_until_the_lease_ends() {
    let mut c = config();
    c.lease_ttl = Duration::from_millis(800);
    let r = start(c).await;
    let mut q = rpc(r.addr).await;
    let a = RawNode::synced(r.addr, "gw-a", vec![entry("room", "alice", "a1")]).await;
    drop(a); // the stream ends without Goodbye
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(presence_of(&mut q, "room").await, ["a1"]);
    assert!(
        wait_for(Duration::from_secs(2), || {
            let mut q = q.clone();
            async move { presence_of(&mut q, "room").await.is_empty() }
        })
        .await
    );
    r.stop().await;
}

#[tokio::test]
async fn goodbye_drops_the_node_at_once_and_tells_the_others() {
    let r = start(config()).await;
    let mut q = rpc(r.addr).await;
    let mut a = RawNode::synced(r.addr, "gw-a", vec![entry("room", "alice", "a1")]).await;
    let mut b = RawNode::synced(r.addr, "gw-b", vec![entry("room", "bob", "b1")]).await;
    a.send(Out::Goodbye(pb::Goodbye {})).await;
    // The stream ends OK once the entries are gone.
    assert!(matches!(a.next_expired().await, Ok(None)));
    assert_eq!(presence_of(&mut q, "room").await, ["b1"]);
    let e = b.next_expired().await.unwrap().unwrap();
    assert_eq!(e.node, "gw-a");
    assert_eq!(e.reason, pb::expired::Reason::Goodbye as i32);
    assert_eq!(e.entries.len(), 1);
    assert_eq!(e.entries[0].info.as_ref().unwrap().client, "a1");
    r.stop().await;
}

#[tokio::test]
async fn every_method_needs_the_key() {
    let r = start(config()).await;
    for key in ["wrong", ""] {
        let mut c = rpc_with_key(r.addr, key).await;
        let e = c
            .presence(pb::PresenceRequest {
                channel: "x".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = c
            .presence_stats(pb::PresenceStatsRequest {
                channel: "x".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = c
            .user_status(pb::UserStatusRequest {
                users: vec!["u".into()],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = c
            .watch(pb::WatchRequest {
                channels: vec!["x".into()],
                users: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let hello = msg(Out::Hello(pb::Hello {
            node: "gw".into(),
            session: String::new(),
        }));
        let e = c.sync(tokio_stream::iter(vec![hello])).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    // Without any metadata at all.
    let channel = tonic::transport::Endpoint::from_shared(r.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bare = pb::presence_client::PresenceClient::new(channel);
    let e = bare
        .presence(pb::PresenceRequest {
            channel: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("apikey"), "{e:?}");
    r.stop().await;
}

/// Every hostile stream is refused with a clear status and leaves the other nodes' entries
/// exactly as they were.
#[tokio::test]
async fn hostile_streams_are_refused_without_touching_others() {
    let mut c = config();
    c.max_node_entries = 10;
    c.max_message_size = 64 << 10;
    let r = start(c).await;
    let mut q = rpc(r.addr).await;
    let _victim = RawNode::synced(
        r.addr,
        "victim",
        vec![entry("room", "vic", "v1"), entry("room", "val", "v2")],
    )
    .await;
    let expect_intact = |q: &RpcClient| {
        let mut q = q.clone();
        async move {
            assert_eq!(presence_of(&mut q, "room").await, ["v1", "v2"]);
            let p = q
                .presence(pb::PresenceRequest {
                    channel: "room".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .presence;
            assert!(p.values().all(|i| i.node == "victim"));
        }
    };

    // 1. First message not Hello.
    let mut c = rpc(r.addr).await;
    let e = c
        .sync(tokio_stream::iter(vec![msg(Out::Heartbeat(
            pb::Heartbeat { seq: 1 },
        ))]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("Hello"), "{e:?}");
    // 2. Empty node id.
    let e = RawNode::open(r.addr, "").await.err().unwrap();
    assert_eq!(e.code(), Code::InvalidArgument);

    type Case = (&'static str, Vec<pb::Delta>, Code, &'static str);
    let foreign_node = pb::Delta {
        op: Some(pb::delta::Op::Add(pb::Entry {
            channel: "room".into(),
            info: Some(pb::ClientInfo {
                node: "victim".into(),
                ..info("mallory", "m9")
            }),
        })),
    };
    let cases: Vec<Case> = vec![
        (
            "remove another node's client",
            vec![add("room", "mallory", "m1"), rem("room", "v1")],
            Code::PermissionDenied,
            "belongs to another node",
        ),
        (
            "re-add another node's client",
            vec![add("room", "vic", "v2")],
            Code::PermissionDenied,
            "belongs to another node",
        ),
        (
            "entry naming another node",
            vec![foreign_node],
            Code::PermissionDenied,
            "this stream belongs to node",
        ),
        (
            "entry without info",
            vec![pb::Delta {
                op: Some(pb::delta::Op::Add(pb::Entry {
                    channel: "room".into(),
                    info: None,
                })),
            }],
            Code::InvalidArgument,
            "has no info",
        ),
        (
            "delta without op",
            vec![pb::Delta { op: None }],
            Code::InvalidArgument,
            "without op",
        ),
        (
            "empty channel",
            vec![add("", "u", "m2")],
            Code::InvalidArgument,
            "channel must be",
        ),
        (
            "empty client",
            vec![add("room", "u", "")],
            Code::InvalidArgument,
            "client must be",
        ),
        (
            "name too long",
            vec![add(&"x".repeat(1025), "u", "m3")],
            Code::InvalidArgument,
            "1024 bytes",
        ),
        (
            "over the node's entry limit",
            (0..11)
                .map(|i| add("spam", "u", &format!("s{i}")))
                .collect(),
            Code::ResourceExhausted,
            "at most 10 entries",
        ),
    ];
    for (name, deltas, code, text) in cases {
        let mut m = RawNode::synced(r.addr, "mallory", vec![]).await;
        let e = m.deltas(deltas).await.unwrap_err();
        assert_eq!(e.code(), code, "{name}: {e:?}");
        assert!(e.message().contains(text), "{name}: {e:?}");
        expect_intact(&q).await;
        // Nothing of a refused batch was applied, not even its valid first operation.
        assert_eq!(
            presence_of(&mut q, "spam").await,
            Vec::<String>::new(),
            "{name}"
        );
        assert!(
            !presence_of(&mut q, "room")
                .await
                .contains(&"m1".to_string()),
            "{name}"
        );
    }

    // Protocol order: deltas before a snapshot, seq going backwards, Hello twice.
    let (mut m, _) = RawNode::open(r.addr, "mallory").await.unwrap();
    let e = m.deltas(vec![add("room", "m", "m4")]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let mut m = RawNode::synced(r.addr, "mallory", vec![]).await;
    m.seq = 0;
    let e = m.deltas(vec![add("room", "m", "m5")]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("seq"), "{e:?}");
    let mut m = RawNode::synced(r.addr, "mallory", vec![]).await;
    m.send(Out::Hello(pb::Hello {
        node: "victim".into(),
        session: String::new(),
    }))
    .await;
    let e = m.next_expired().await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("Hello sent twice"), "{e:?}");
    // A snapshot claiming another node's client.
    let (mut m, _) = RawNode::open(r.addr, "mallory").await.unwrap();
    let e = m
        .snapshot(vec![entry("room", "vic", "v1")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // An oversized message (limit 64 KiB here).
    let (mut m, _) = RawNode::open(r.addr, "mallory").await.unwrap();
    let big: Vec<pb::Entry> = (0..2000)
        .map(|i| entry("room", "mallory", &format!("big-client-{i:040}")))
        .collect();
    let e = m.snapshot(big).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("too large"), "{e:?}");
    // Garbage bytes that are not a NodeMessage: sent as a raw gRPC frame.
    let e = send_garbage(&r).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("malformed"), "{e:?}");

    expect_intact(&q).await;
    r.stop().await;
}

/// A Sync call whose first frame is not a valid protobuf message.
async fn send_garbage(r: &Replica) -> tonic::Status {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // gRPC frame: not compressed, length 4, bytes that are an invalid tag (field 0).
    let frame = bytes::Bytes::from_static(&[0, 0, 0, 0, 4, 0x00, 0xff, 0xff, 0xff]);
    let req = http::Request::post(format!("{}/chorus.presence.v1.Presence/Sync", r.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("apikey {KEY}"))
        .body(http_body_util::Full::new(frame))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned().unwrap_or(headers);
    tonic::Status::from_header_map(&trailers).expect("a grpc status")
}

#[tokio::test]
async fn a_fresh_replica_answers_only_after_its_warm_up() {
    let mut c = config();
    c.warmup = Duration::from_millis(700);
    let r = start(c).await;
    let mut q = rpc(r.addr).await;
    // Gateways may stream during the warm-up…
    let _a = RawNode::synced(r.addr, "gw-a", vec![entry("room", "alice", "a1")]).await;
    // …but reads are refused until every gateway had the time to send its snapshot.
    let e = q
        .presence(pb::PresenceRequest {
            channel: "room".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("warming up"), "{e:?}");
    let e = q
        .user_status(pb::UserStatusRequest {
            users: vec!["alice".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let e = q
        .watch(pb::WatchRequest {
            channels: vec!["room".into()],
            users: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    tokio::time::sleep(Duration::from_millis(750)).await;
    assert_eq!(presence_of(&mut q, "room").await, ["a1"]);
    r.stop().await;
}
