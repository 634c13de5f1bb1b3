//! Session behaviour through the transport-facing API: connect, subscribe, publish, presence,
//! history, recovery, permissions, limits, protocol violations, timers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use chorus_core::api::PublishRequest;
use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelOptions, Namespace};
use chorus_protocol::Protocol;
use common::{node, node_with, options, pubs, TestClient};

#[tokio::test]
async fn connect_reply_carries_client_ping_and_pong() {
    let node = node();
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(r#"{"id":1,"connect":{"token":"user:42","name":"js"}}"#)
        .await;
    let r = c.next().await.unwrap();
    assert_eq!(r.id, 1);
    let res = r.connect.unwrap();
    assert_eq!(res.client, c.client.id());
    assert_eq!(res.ping, 25);
    assert!(res.pong);
    assert!(!res.expires);
    assert_eq!(res.version, "0.0.0-test");
}

#[tokio::test]
async fn optimistic_subscribe_in_the_connect_frame_and_live_publications() {
    let node = node();
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send("{\"id\":1,\"connect\":{\"token\":\"user:1\"}}\n{\"id\":2,\"subscribe\":{\"channel\":\"chat:a\",\"flag\":1}}")
        .await;
    let r1 = c.next().await.unwrap();
    assert!(r1.connect.is_some());
    let r2 = c.next().await.unwrap();
    assert_eq!(r2.id, 2);
    let sub = r2.subscribe.unwrap();
    assert!(sub.recoverable && sub.positioned);
    assert_eq!(sub.offset, 0);
    assert_eq!(sub.epoch.len(), 8);
    // own join push
    let join = c.next().await.unwrap();
    assert_eq!(join.push.unwrap().join.unwrap().info.unwrap().user, "1");
    node.api()
        .publish(PublishRequest::new(
            "chat:a",
            Bytes::from_static(b"{\"n\":1}"),
        ))
        .await
        .unwrap();
    let p = c.next().await.unwrap().push.unwrap();
    assert_eq!(p.channel, "chat:a");
    let publication = p.publication.unwrap();
    assert_eq!(publication.offset, 1);
    assert_eq!(&publication.data[..], b"{\"n\":1}");
}

#[tokio::test]
async fn client_publish_reaches_other_subscriber_with_info() {
    let node = node();
    let mut a = TestClient::connect(&node, "alice").await;
    let mut b = TestClient::connect(&node, "bob").await;
    for c in [&a, &b] {
        c.send(r#"{"id":2,"subscribe":{"channel":"chat:r"}}"#).await;
    }
    a.drain().await;
    b.drain().await;
    a.send(r#"{"id":3,"publish":{"channel":"chat:r","data":{"text":"hi"}}}"#)
        .await;
    let replies = a.drain().await;
    assert!(replies.iter().any(|r| r.id == 3 && r.publish.is_some()));
    let got = b.drain().await;
    let p = got
        .iter()
        .find_map(|r| r.push.as_ref()?.publication.clone())
        .unwrap();
    assert_eq!(&p.data[..], br#"{"text":"hi"}"#);
    let info = p.info.unwrap();
    assert_eq!(info.user, "alice");
    assert_eq!(&info.conn_info[..], br#"{"name":"tester"}"#);
}

#[tokio::test]
async fn presence_stats_history_and_leave() {
    let node = node();
    let mut a = TestClient::connect(&node, "u1").await;
    let mut b = TestClient::connect(&node, "u2").await;
    a.send(r#"{"id":2,"subscribe":{"channel":"chat:p"}}"#).await;
    b.send(r#"{"id":2,"subscribe":{"channel":"chat:p"}}"#).await;
    a.drain().await;
    b.drain().await;
    a.send(r#"{"id":3,"presence":{"channel":"chat:p"}}"#).await;
    let r = a.next().await.unwrap();
    let presence = r.presence.unwrap().presence;
    assert_eq!(presence.len(), 2);
    assert_eq!(presence[b.client.id()].user, "u2");
    a.send(r#"{"id":4,"presence_stats":{"channel":"chat:p"}}"#)
        .await;
    let stats = a.next().await.unwrap().presence_stats.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (2, 2));
    for i in 0..3 {
        a.send(&format!(
            r#"{{"id":{},"publish":{{"channel":"chat:p","data":{{"i":{i}}}}}}}"#,
            10 + i
        ))
        .await;
    }
    let acks = a.drain().await;
    assert_eq!(
        acks.iter().filter(|r| r.publish.is_some()).count(),
        3,
        "{acks:?}"
    );
    a.send(r#"{"id":20,"history":{"channel":"chat:p","limit":2,"reverse":true}}"#)
        .await;
    let r = a.next().await.unwrap();
    let h = r.history.clone().unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(h.offset, 3, "{r:?}");
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![3, 2]
    );
    a.send(&format!(
        r#"{{"id":21,"history":{{"channel":"chat:p","limit":-1,"since":{{"offset":1,"epoch":"{}"}}}}}}"#,
        h.epoch
    ))
    .await;
    let h2 = a.next().await.unwrap().history.unwrap();
    assert_eq!(
        h2.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![2, 3]
    );
    a.send(r#"{"id":22,"history":{"channel":"chat:p","limit":5,"since":{"offset":1,"epoch":"XXXXXXXX"}}}"#)
        .await;
    assert_eq!(a.next().await.unwrap().error.unwrap().code, 112);
    // b leaves: a sees the leave, presence shrinks
    assert_eq!(pubs(&b.drain().await).len(), 3);
    b.send(r#"{"id":3,"unsubscribe":{"channel":"chat:p"}}"#)
        .await;
    let r = b.next().await.unwrap();
    assert_eq!(r.id, 3);
    assert!(r.unsubscribe.is_some());
    let got = a.drain().await;
    let leave = got
        .iter()
        .find_map(|r| r.push.as_ref()?.leave.clone())
        .unwrap();
    assert_eq!(leave.info.unwrap().user, "u2");
    a.send(r#"{"id":30,"presence_stats":{"channel":"chat:p"}}"#)
        .await;
    let stats = a.next().await.unwrap().presence_stats.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));
}

#[tokio::test]
async fn recovery_replays_exactly_the_missed_publications() {
    let node = node();
    let mut a = TestClient::connect(&node, "u").await;
    a.send(r#"{"id":2,"subscribe":{"channel":"chat:rec"}}"#)
        .await;
    let sub = a.next().await.unwrap().subscribe.unwrap();
    let epoch = sub.epoch.clone();
    for i in 1..=2 {
        node.api()
            .publish(PublishRequest::new(
                "chat:rec",
                Bytes::from(format!("{{\"i\":{i}}}")),
            ))
            .await
            .unwrap();
    }
    let seen = pubs(&a.drain().await);
    assert_eq!(seen.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2]);
    a.client.cleanup().await;
    for i in 3..=6 {
        node.api()
            .publish(PublishRequest::new(
                "chat:rec",
                Bytes::from(format!("{{\"i\":{i}}}")),
            ))
            .await
            .unwrap();
    }
    let mut b = TestClient::connect(&node, "u").await;
    b.send(&format!(
        r#"{{"id":2,"subscribe":{{"channel":"chat:rec","recover":true,"offset":2,"epoch":"{epoch}"}}}}"#
    ))
    .await;
    let r = b.next().await.unwrap().subscribe.unwrap();
    assert!(r.recovered && r.was_recovering);
    assert_eq!(r.offset, 2);
    assert_eq!(r.epoch, epoch);
    assert_eq!(
        r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    // live continues at 7, no duplicates
    node.api()
        .publish(PublishRequest::new("chat:rec", Bytes::from_static(b"{}")))
        .await
        .unwrap();
    let live = pubs(&b.drain().await);
    assert_eq!(live.iter().map(|p| p.0).collect::<Vec<_>>(), vec![7]);
}

#[tokio::test]
async fn recovery_fails_explicitly_on_epoch_mismatch_or_trimmed_history() {
    let node = node();
    for _ in 0..15 {
        node.api()
            .publish(PublishRequest::new("chat:t", Bytes::from_static(b"{}")))
            .await
            .unwrap();
    }
    let mut c = TestClient::connect(&node, "u").await;
    c.send(
        r#"{"id":2,"subscribe":{"channel":"chat:t","recover":true,"offset":1,"epoch":"wrongepo"}}"#,
    )
    .await;
    let r = c.next().await.unwrap().subscribe.unwrap();
    assert!(!r.recovered && r.was_recovering);
    assert_eq!(r.offset, 15);
    assert!(r.publications.is_empty());
    let epoch = r.epoch;
    let mut d = TestClient::connect(&node, "u").await;
    // history_size 10: offsets 6..15 kept, client at 2 missed 3..15 → gap
    d.send(&format!(
        r#"{{"id":2,"subscribe":{{"channel":"chat:t","recover":true,"offset":2,"epoch":"{epoch}"}}}}"#
    ))
    .await;
    let r = d.next().await.unwrap().subscribe.unwrap();
    assert!(!r.recovered);
    assert_eq!(r.offset, 15);
    // flag 2 (reject unrecovered) → error 112 instead
    let mut e = TestClient::connect(&node, "u").await;
    e.send(&format!(
        r#"{{"id":2,"subscribe":{{"channel":"chat:t","recover":true,"offset":2,"epoch":"{epoch}","flag":3}}}}"#
    ))
    .await;
    assert_eq!(e.next().await.unwrap().error.unwrap().code, 112);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_under_concurrent_publishing_has_no_gap_and_no_duplicate() {
    let node = node();
    let publisher = {
        let node = node.clone();
        tokio::spawn(async move {
            for i in 1..=400u32 {
                node.api()
                    .publish(PublishRequest::new(
                        "chat:race",
                        Bytes::from(format!("{{\"i\":{i}}}")),
                    ))
                    .await
                    .unwrap();
                if i % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Subscribe (with and without recovery) while publications flow.
    let mut clients = Vec::new();
    for k in 0..8 {
        tokio::task::yield_now().await;
        let c = TestClient::connect(&node, &format!("u{k}")).await;
        c.send(r#"{"id":2,"subscribe":{"channel":"chat:race","recover":true,"offset":0}}"#)
            .await;
        clients.push(c);
    }
    publisher.await.unwrap();
    for mut c in clients {
        let mut replies = Vec::new();
        while let Some(r) = c.next().await {
            replies.push(r);
            if pubs(&replies).last().map(|p| p.0) == Some(400) {
                break;
            }
            let sub = replies.iter().find_map(|r| r.subscribe.clone());
            if sub
                .as_ref()
                .is_some_and(|s| s.publications.last().map(|p| p.offset) == Some(400))
            {
                break;
            }
        }
        let sub = replies.iter().find_map(|r| r.subscribe.clone()).unwrap();
        let mut offsets: Vec<u64> = if sub.recovered {
            sub.publications.iter().map(|p| p.offset).collect()
        } else {
            Vec::new()
        };
        offsets.extend(pubs(&replies).iter().map(|p| p.0));
        let start = if sub.recovered { 1 } else { sub.offset + 1 };
        let expected: Vec<u64> = (start..=400).collect();
        assert_eq!(
            offsets, expected,
            "recovered={} offset={}",
            sub.recovered, sub.offset
        );
    }
}

#[tokio::test]
async fn errors_and_codes() {
    let node = node();
    let mut c = TestClient::connect(&node, "u").await;
    c.send(r#"{"id":2,"subscribe":{"channel":"nope:x"}}"#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 102);
    c.send(r#"{"id":3,"subscribe":{"channel":"plain"}}"#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 103);
    c.send(&format!(
        r#"{{"id":4,"subscribe":{{"channel":"{}"}}}}"#,
        "a".repeat(256)
    ))
    .await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 107);
    c.send(r#"{"id":5,"subscribe":{"channel":"news:x"}}"#).await;
    assert!(c.next().await.unwrap().subscribe.is_some());
    c.send(r#"{"id":6,"subscribe":{"channel":"news:x"}}"#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 105);
    c.send(r#"{"id":7,"publish":{"channel":"news:x","data":{}}}"#)
        .await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 103);
    c.send(r#"{"id":8,"presence":{"channel":"news:x"}}"#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 108);
    c.send(r#"{"id":9,"history":{"channel":"news:x"}}"#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 108);
    // No rpc handler configured (no proxy, no ping): 108 "not available", as Centrifugo.
    c.send(r#"{"id":10,"rpc":{"method":"x","data":{}}}"#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 108);
    c.send(r#"{"id":11,"subscribe":{"channel":"$news:x"}}"#)
        .await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 103);
    c.send(r#"{"id":12,"subscribe":{"channel":"$news:y","token":"sub:u:$news:y"}}"#)
        .await;
    assert!(c.next().await.unwrap().subscribe.is_some());
    c.send(r#"{"id":13,"subscribe":{"channel":"news:z","token":"sub:other:news:z"}}"#)
        .await;
    assert_eq!(c.close_code().await, Some(3500));
}

/// A command with several request fields runs the first one in field order — the same one
/// `Command::method` names for the metric label (`rpc` before `refresh` here, `publish` before
/// `history`).
#[tokio::test]
async fn several_requests_in_one_command_run_the_first_in_field_order() {
    let node = node();
    let mut c = TestClient::connect(&node, "u").await;
    c.send(r#"{"id":2,"refresh":{"token":"user:u"},"rpc":{"method":"m"}}"#)
        .await;
    let reply = c.next().await.unwrap();
    assert_eq!(reply.error.unwrap().code, 108, "rpc ran, not refresh");
    c.send(r#"{"id":3,"history":{"channel":"news:x"},"publish":{"channel":"news:x","data":{}}}"#)
        .await;
    let reply = c.next().await.unwrap();
    assert_eq!(reply.id, 3);
    assert_eq!(
        reply.error.unwrap().code,
        103,
        "publish ran (permission), not history (108)"
    );
}

#[tokio::test]
async fn channel_limit_answers_106() {
    let mut o = options();
    o.client.channel_limit = 2;
    let node = common::node_with(o);
    let mut c = TestClient::connect(&node, "u").await;
    for (i, ch) in ["news:1", "news:2", "news:3"].iter().enumerate() {
        c.send(&format!(
            r#"{{"id":{},"subscribe":{{"channel":"{ch}"}}}}"#,
            i + 2
        ))
        .await;
    }
    let replies = c.drain().await;
    assert!(replies[0].subscribe.is_some() && replies[1].subscribe.is_some());
    assert_eq!(replies[2].error.as_ref().unwrap().code, 106);
}

#[tokio::test]
async fn protocol_violations_disconnect_with_3501() {
    let node = node();
    for frame in [
        "not json",
        r#"{"id":"x","connect":{}}"#,
        r#"{"id":1,"subscribe":{"channel":"chat:a"}}"#,
        r#"{"id":1,"unknown_command":{}}"#,
        r#"{"id":0,"connect":{"token":"user:1"}}"#,
    ] {
        let mut c = TestClient::new(&node, Protocol::Json);
        c.send(frame).await;
        assert_eq!(c.close_code().await, Some(3501), "frame {frame}");
    }
    let mut c = TestClient::connect(&node, "u").await;
    c.send(r#"{"id":2,"connect":{"token":"user:1"}}"#).await;
    assert_eq!(c.close_code().await, Some(3501));
}

#[tokio::test]
async fn tokens() {
    let node = node();
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(r#"{"id":1,"connect":{"token":"garbage"}}"#).await;
    assert_eq!(c.close_code().await, Some(3500));
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(r#"{"id":1,"connect":{"token":"expired"}}"#).await;
    assert_eq!(c.next().await.unwrap().error.unwrap().code, 109);
    assert_eq!(c.close_code().await, Some(3000));
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(r#"{"id":1,"connect":{}}"#).await;
    assert_eq!(c.close_code().await, Some(3501));
    let exp = chorus_core::clock::unix_now() + 100;
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(&format!(
        r#"{{"id":1,"connect":{{"token":"user:u;exp={exp}"}}}}"#
    ))
    .await;
    let r = c.next().await.unwrap().connect.unwrap();
    assert!(r.expires);
    assert!((98..=100).contains(&r.ttl));
}

#[tokio::test]
async fn server_side_subscriptions_from_token() {
    let node = node();
    let mut c = TestClient::new(&node, Protocol::Json);
    c.send(r#"{"id":1,"connect":{"token":"user:u;channels=news:a,chat:b"}}"#)
        .await;
    let r = c.next().await.unwrap().connect.unwrap();
    let mut keys: Vec<_> = r.subs.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, vec!["chat:b", "news:a"]);
    assert!(r.subs["chat:b"].recoverable);
    node.api()
        .publish(PublishRequest::new(
            "news:a",
            Bytes::from_static(b"{\"x\":1}"),
        ))
        .await
        .unwrap();
    let got = pubs(&c.drain().await);
    assert_eq!(got, vec![(0, "{\"x\":1}".to_string())]);
}

#[tokio::test]
async fn protobuf_client_round_trip() {
    use chorus_protocol::{encode_command, Command, ConnectRequest, SubscribeRequest};
    let node = node();
    let mut c = TestClient::new(&node, Protocol::Protobuf);
    let mut frame = encode_command(
        Protocol::Protobuf,
        &Command {
            id: 1,
            connect: Some(ConnectRequest {
                token: "user:p".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .unwrap()
    .to_vec();
    frame.extend_from_slice(
        &encode_command(
            Protocol::Protobuf,
            &Command {
                id: 2,
                subscribe: Some(SubscribeRequest {
                    channel: "bin:pb".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    c.client.handle_frame(&frame).await;
    assert!(c.next().await.unwrap().connect.is_some());
    assert!(c.next().await.unwrap().subscribe.is_some());
    node.api()
        .publish(PublishRequest::new(
            "bin:pb",
            Bytes::from_static(&[0xff, 0x00, 0x01]),
        ))
        .await
        .unwrap();
    let p = c.next().await.unwrap().push.unwrap().publication.unwrap();
    assert_eq!(&p.data[..], &[0xff, 0x00, 0x01]);
}

#[tokio::test]
async fn non_json_data_never_reaches_a_json_client() {
    let node = node();
    let mut json = TestClient::connect(&node, "j").await;
    json.send(r#"{"id":2,"subscribe":{"channel":"news:bin"}}"#)
        .await;
    json.drain().await;
    // Refused at the door (107) in a namespace without allow_binary_data...
    let refused = node
        .api()
        .publish(PublishRequest::new(
            "news:bin",
            Bytes::from_static(&[0xff, 0xfe]),
        ))
        .await;
    assert_eq!(refused.map_err(|e| e.code), Err(107));
    // ...so the JSON subscriber stays and gets the next (JSON) publication.
    node.api()
        .publish(PublishRequest::new(
            "news:bin",
            Bytes::from_static(b"{\"ok\":1}"),
        ))
        .await
        .unwrap();
    assert_eq!(
        pubs(&json.drain().await),
        vec![(0, "{\"ok\":1}".to_string())]
    );
    assert_eq!(json.closed, None);
    // A binary namespace is closed to JSON connections (103), subscribe and history alike.
    json.send(r#"{"id":3,"subscribe":{"channel":"bin:x"}}"#)
        .await;
    json.send(r#"{"id":4,"history":{"channel":"bin:x","limit":10}}"#)
        .await;
    let errors: Vec<(u32, u32)> = json
        .drain()
        .await
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| (r.id, e.code)))
        .collect();
    assert_eq!(errors, vec![(3, 103), (4, 103)]);
    assert_eq!(json.closed, None);
}

/// `force_recovery_mode: cache` (with `history_size: 1`): a client that missed several
/// publications gets exactly the latest one and `recovered: true`; one that has the latest
/// gets nothing; one from another epoch gets the latest; live delivery continues after it.
#[tokio::test]
async fn cache_recovery_delivers_only_the_latest_publication() {
    let mut o = options();
    o.channel.namespaces.push(Namespace {
        name: "ticker".into(),
        options: ChannelOptions {
            history_size: 1,
            history_ttl: ConfigDuration::from_secs(60),
            force_recovery: true,
            force_recovery_mode: chorus_core::options::RecoveryMode::Cache,
            allow_subscribe_for_client: true,
            ..Default::default()
        },
    });
    let node = node_with(o);
    let publish = |i: u32| {
        let node = node.clone();
        async move {
            node.api()
                .publish(PublishRequest::new(
                    "ticker:BTC",
                    Bytes::from(format!("{{\"p\":{i}}}")),
                ))
                .await
                .unwrap();
        }
    };
    publish(1).await;
    let mut a = TestClient::connect(&node, "u").await;
    a.send(r#"{"id":2,"subscribe":{"channel":"ticker:BTC"}}"#)
        .await;
    let sub = a.next().await.unwrap().subscribe.unwrap();
    let epoch = sub.epoch.clone();
    assert_eq!(sub.offset, 1);
    a.client.cleanup().await;
    for i in 2..=5 {
        publish(i).await;
    }

    let mut b = TestClient::connect(&node, "u").await;
    b.send(&format!(
        r#"{{"id":2,"subscribe":{{"channel":"ticker:BTC","recover":true,"offset":1,"epoch":"{epoch}"}}}}"#
    ))
    .await;
    let r = b.next().await.unwrap().subscribe.unwrap();
    assert!(r.recovered && r.was_recovering);
    assert_eq!(r.epoch, epoch);
    assert_eq!(
        r.publications
            .iter()
            .map(|p| (p.offset, String::from_utf8_lossy(&p.data).into_owned()))
            .collect::<Vec<_>>(),
        vec![(5, r#"{"p":5}"#.to_string())]
    );
    publish(6).await;
    assert_eq!(
        pubs(&b.drain().await)
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        vec![6]
    );

    // Already at the latest: recovered, nothing to deliver.
    let mut c = TestClient::connect(&node, "u").await;
    c.send(&format!(
        r#"{{"id":2,"subscribe":{{"channel":"ticker:BTC","recover":true,"offset":6,"epoch":"{epoch}"}}}}"#
    ))
    .await;
    let r = c.next().await.unwrap().subscribe.unwrap();
    assert!(r.recovered);
    assert!(r.publications.is_empty());
    assert_eq!(r.offset, 6);

    // Another epoch: the latest publication is the state.
    let mut d = TestClient::connect(&node, "u").await;
    d.send(
        r#"{"id":2,"subscribe":{"channel":"ticker:BTC","recover":true,"offset":3,"epoch":"oldepoch"}}"#,
    )
    .await;
    let r = d.next().await.unwrap().subscribe.unwrap();
    assert!(r.recovered);
    assert_eq!(
        r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![6]
    );
}

/// `client.subscribe_to_user_personal_channel`: a connection of user `u` is subscribed
/// server-side to `personal:#u` (the connect reply lists it, a publication there reaches it);
/// an anonymous connection is not; with `single_connection`, a second connection of `u`
/// closes the first with 3504 and stays.
#[tokio::test]
async fn personal_channel_subscription_and_single_connection() {
    let personal_ns = |single: bool| {
        let mut o = options();
        o.channel.namespaces.push(Namespace {
            name: "personal".into(),
            options: ChannelOptions {
                presence: true,
                history_size: 10,
                history_ttl: ConfigDuration::from_secs(60),
                force_recovery: true,
                ..Default::default()
            },
        });
        let p = &mut o.client.subscribe_to_user_personal_channel;
        p.enabled = true;
        p.personal_channel_namespace = "personal".into();
        p.single_connection = single;
        node_with(o)
    };

    let node = personal_ns(false);
    let mut a = TestClient::new(&node, chorus_protocol::Protocol::Json);
    a.send(r#"{"id":1,"connect":{"token":"user:u"}}"#).await;
    let connect = a.next().await.unwrap().connect.unwrap();
    assert_eq!(connect.subs.keys().collect::<Vec<_>>(), vec!["personal:#u"]);
    assert!(connect.subs["personal:#u"].recoverable);
    let mut b = TestClient::connect(&node, "u").await;
    node.api()
        .publish(PublishRequest::new(
            "personal:#u",
            Bytes::from_static(b"{\"s\":1}"),
        ))
        .await
        .unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(pubs(&c.drain().await), vec![(1, "{\"s\":1}".to_string())]);
    }
    let mut anon = TestClient::new(&node, chorus_protocol::Protocol::Json);
    anon.send(r#"{"id":1,"connect":{"token":"user:"}}"#).await;
    assert!(anon.next().await.unwrap().connect.unwrap().subs.is_empty());

    let node = personal_ns(true);
    let mut first = TestClient::connect(&node, "u").await;
    let mut other_user = TestClient::connect(&node, "v").await;
    let _second = TestClient::connect(&node, "u").await;
    assert_eq!(first.close_code().await, Some(3504));
    assert!(other_user.drain().await.is_empty() && other_user.closed.is_none());
}
