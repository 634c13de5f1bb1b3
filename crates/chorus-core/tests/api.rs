//! The typed server API (`chorus_core::api`) called directly: every method's validation codes
//! in their order, its results, `call` and `batch`. User operations on real connections are in
//! `api_users.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use chorus_core::api::*;
use chorus_protocol::StreamPosition;
use common::{node, TestClient};

fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> u32 {
    r.expect_err("an error").code
}

fn publish(channel: &str, data: &str) -> PublishRequest {
    PublishRequest::new(channel, Bytes::copy_from_slice(data.as_bytes()))
}

fn history(channel: &str, limit: i32) -> HistoryRequest {
    HistoryRequest {
        channel: channel.into(),
        limit,
        ..Default::default()
    }
}

fn datas(r: &HistoryResult) -> Vec<(u64, String)> {
    r.publications
        .iter()
        .map(|p| (p.offset, String::from_utf8_lossy(&p.data).into_owned()))
        .collect()
}

#[tokio::test]
async fn publish_validates_in_order_and_answers_the_position() {
    let api = node().api();
    // 107: no channel, no data (raw or base64), invalid base64, a name over max_length.
    assert_eq!(code(api.publish(publish("", "{}")).await), 107);
    assert_eq!(code(api.publish(publish("chat:a", "")).await), 107);
    let bad_b64 = PublishRequest {
        b64data: "!!".into(),
        ..publish("nope:a", "{}")
    };
    assert_eq!(code(api.publish(bad_b64).await), 107, "107 before 102");
    let long = "a".repeat(256);
    assert_eq!(code(api.publish(publish(&long, "{}")).await), 107);
    // 102: unknown namespace; 107: not JSON where the namespace wants JSON.
    assert_eq!(code(api.publish(publish("nope:a", "{}")).await), 102);
    assert_eq!(code(api.publish(publish("chat:a", "not json")).await), 107);

    let first = api.publish(publish("chat:a", r#"{"n":1}"#)).await.unwrap();
    let position = first.position.expect("chat keeps history");
    assert_eq!(position.offset, 1);
    assert!(!position.epoch.is_empty());
    // No history: skip_history, or a namespace without it.
    let skipped = PublishRequest {
        skip_history: true,
        ..publish("chat:a", "{}")
    };
    assert_eq!(api.publish(skipped).await.unwrap().position, None);
    assert_eq!(
        api.publish(publish("news:a", "{}")).await.unwrap(),
        PublishResult { position: None }
    );
    // base64 wins over raw data; binary is fine where allowed.
    let both = PublishRequest {
        b64data: "WzEsMl0=".into(),
        ..publish("chat:a", r#"{"raw":true}"#)
    };
    assert_eq!(api.publish(both).await.unwrap().position.unwrap().offset, 2);
    let binary = PublishRequest {
        b64data: "//79".into(),
        ..publish("bin:a", "")
    };
    assert!(api.publish(binary).await.unwrap().position.is_some());
    let h = api.history(history("chat:a", -1)).await.unwrap();
    assert_eq!(
        datas(&h),
        vec![(1, r#"{"n":1}"#.to_owned()), (2, "[1,2]".to_owned())]
    );
    // The same idempotency key publishes once and answers the first position.
    let keyed = || PublishRequest {
        idempotency_key: "k1".into(),
        ..publish("chat:idem", "{}")
    };
    let a = api.publish(keyed()).await.unwrap();
    let b = api.publish(keyed()).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.position.unwrap().offset, 1);
}

#[tokio::test]
async fn broadcast_answers_per_channel_in_order() {
    let api = node().api();
    let req = |channels: &[&str], data: &str| BroadcastRequest {
        channels: channels.iter().map(|c| c.to_string()).collect(),
        data: Bytes::copy_from_slice(data.as_bytes()),
        ..Default::default()
    };
    assert_eq!(code(api.broadcast(req(&[], "{}")).await), 107);
    assert_eq!(code(api.broadcast(req(&["chat:a"], "")).await), 107);
    let r = api
        .broadcast(req(&["chat:a", "nope:b", "", "news:c"], r#"{"x":1}"#))
        .await
        .unwrap();
    let summary: Vec<Result<Option<u64>, u32>> = r
        .responses
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|p| p.position.as_ref().map(|p| p.offset))
                .map_err(|e| e.code)
        })
        .collect();
    assert_eq!(summary, vec![Ok(Some(1)), Err(102), Err(107), Ok(None)]);
}

#[tokio::test]
async fn presence_and_stats_validate_and_count_every_connection() {
    let node = node();
    let api = node.api();
    let presence = |c: &str| PresenceRequest { channel: c.into() };
    let stats = |c: &str| PresenceStatsRequest { channel: c.into() };
    assert_eq!(code(api.presence(presence("")).await), 107);
    assert_eq!(code(api.presence(presence("nope:x")).await), 102);
    assert_eq!(code(api.presence(presence("news:x")).await), 108);
    assert_eq!(code(api.presence_stats(stats("")).await), 107);
    assert_eq!(code(api.presence_stats(stats("nope:x")).await), 102);
    assert_eq!(code(api.presence_stats(stats("news:x")).await), 108);
    assert!(api
        .presence(presence("chat:p"))
        .await
        .unwrap()
        .presence
        .is_empty());

    let mut clients = Vec::new();
    for user in ["ann", "bob", "bob"] {
        let mut c = TestClient::connect(&node, user).await;
        c.send(r#"{"id":2,"subscribe":{"channel":"chat:p"}}"#).await;
        assert!(c.next().await.unwrap().subscribe.is_some());
        clients.push(c);
    }
    let p = api.presence(presence("chat:p")).await.unwrap().presence;
    assert_eq!(p.len(), 3);
    let ann = &p[clients[0].client.id()];
    assert_eq!(
        (ann.user.as_str(), ann.client.as_str()),
        ("ann", clients[0].client.id())
    );
    assert_eq!(&ann.conn_info[..], br#"{"name":"tester"}"#);
    assert_eq!(
        api.presence_stats(stats("chat:p")).await.unwrap(),
        PresenceStatsResult {
            num_clients: 3,
            num_users: 2
        }
    );
}

#[tokio::test]
async fn history_validates_in_order_and_reads_the_stream() {
    let api = node().api();
    for i in 1..=5 {
        api.publish(publish("chat:h", &format!("{{\"i\":{i}}}")))
            .await
            .unwrap();
    }
    assert_eq!(code(api.history(history("", 0)).await), 107);
    // reverse from offset 0 is a bad request — before the channel is even resolved.
    let from_zero = |channel: &str| HistoryRequest {
        since: Some(StreamPosition {
            offset: 0,
            epoch: String::new(),
        }),
        reverse: true,
        ..history(channel, 2)
    };
    assert_eq!(code(api.history(from_zero("nope:h")).await), 107);
    assert_eq!(code(api.history(from_zero("chat:h")).await), 107);
    assert_eq!(code(api.history(history("nope:h", 0)).await), 102);
    assert_eq!(code(api.history(history("news:h", 0)).await), 108);

    let top = api.history(history("chat:h", 0)).await.unwrap();
    assert!(top.publications.is_empty());
    assert_eq!(top.offset, 5);
    let epoch = top.epoch.clone();
    let all = api.history(history("chat:h", -1)).await.unwrap();
    assert_eq!(all.publications.len(), 5);
    let since = |offset: u64, epoch: &str| {
        Some(StreamPosition {
            offset,
            epoch: epoch.into(),
        })
    };
    let after_2 = HistoryRequest {
        since: since(2, &epoch),
        ..history("chat:h", 2)
    };
    let page = api.history(after_2).await.unwrap();
    assert_eq!(
        datas(&page),
        vec![(3, r#"{"i":3}"#.into()), (4, r#"{"i":4}"#.into())]
    );
    assert_eq!((page.offset, page.epoch.as_str()), (5, epoch.as_str()));
    let last_2 = HistoryRequest {
        reverse: true,
        ..history("chat:h", 2)
    };
    let offsets: Vec<u64> = datas(&api.history(last_2).await.unwrap())
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(offsets, vec![5, 4]);
    let wrong_epoch = HistoryRequest {
        since: since(1, "not-the-epoch"),
        ..history("chat:h", -1)
    };
    assert_eq!(code(api.history(wrong_epoch).await), 112);

    let remove = |c: &str| HistoryRemoveRequest { channel: c.into() };
    assert_eq!(code(api.history_remove(remove("")).await), 107);
    assert_eq!(code(api.history_remove(remove("nope:h")).await), 102);
    assert_eq!(code(api.history_remove(remove("news:h")).await), 108);
    api.history_remove(remove("chat:h")).await.unwrap();
    let after = api.history(history("chat:h", -1)).await.unwrap();
    assert!(after.publications.is_empty());
    assert_eq!(
        (after.offset, after.epoch),
        (5, epoch),
        "the position stays"
    );
}

#[tokio::test]
async fn channels_filters_by_glob_and_info_lists_this_node() {
    let node = node();
    let api = node.api();
    let mut clients = Vec::new();
    for (i, ch) in ["chat:a", "chat:b", "news:x"].iter().enumerate() {
        let c = TestClient::connect(&node, &format!("u{i}")).await;
        c.send(&format!(r#"{{"id":2,"subscribe":{{"channel":"{ch}"}}}}"#))
            .await;
        clients.push(c);
    }
    let all = api.channels(ChannelsRequest::default()).await.unwrap();
    let names: Vec<&str> = all.channels.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["chat:a", "chat:b", "news:x"]);
    assert_eq!(all.channels["chat:a"], ChannelInfo { num_clients: 1 });
    let chat = ChannelsRequest {
        pattern: "chat:[!a]*".into(),
    };
    let names: Vec<String> = api
        .channels(chat)
        .await
        .unwrap()
        .channels
        .into_keys()
        .collect();
    assert_eq!(names, vec!["chat:b"]);
    let invalid = ChannelsRequest {
        pattern: "chat:[".into(),
    };
    assert_eq!(code(api.channels(invalid).await), 107);

    let info = api.info(InfoRequest {}).await.unwrap();
    assert_eq!(info.nodes.len(), 1);
    let me = &info.nodes[0];
    assert_eq!(
        (me.uid.as_str(), me.name.as_str(), me.version.as_str()),
        ("test-node", "test", "0.0.0-test")
    );
    assert_eq!(
        (me.num_clients, me.num_users, me.num_subs, me.num_channels),
        (3, 3, 3, 3)
    );
}

#[tokio::test]
async fn rpc_has_no_methods() {
    let api = node().api();
    let rpc = |m: &str| RpcRequest {
        method: m.into(),
        params: Bytes::from_static(b"{}"),
    };
    assert_eq!(code(api.rpc(rpc("")).await), 107);
    assert_eq!(code(api.rpc(rpc("getUserStatus")).await), 104);
}

#[tokio::test]
async fn call_dispatches_every_method_like_the_typed_methods() {
    let api = node().api();
    let r = api.call(Request::Publish(publish("chat:c", "{}"))).await;
    let Ok(Response::Publish(p)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(p.position.unwrap().offset, 1);
    let r = api
        .call(Request::PresenceStats(PresenceStatsRequest {
            channel: "chat:c".into(),
        }))
        .await;
    assert_eq!(
        r,
        Ok(Response::PresenceStats(PresenceStatsResult::default()))
    );
    let r = api.call(Request::Info(InfoRequest {})).await.unwrap();
    assert_eq!(r.method(), Method::Info);
    assert_eq!(
        api.call(Request::Refresh(RefreshRequest::default()))
            .await
            .map_err(|e| e.code),
        Err(107)
    );
    for m in Method::ALL {
        assert_eq!(Method::from_name(m.name()), Some(m));
    }
    assert_eq!(Method::from_name("connections"), None);
}

#[tokio::test]
async fn batch_answers_every_command_in_order() {
    let api = node().api();
    for parallel in [false, true] {
        let channel = format!("chat:batch-{parallel}");
        let req = BatchRequest {
            commands: vec![
                Some(Request::Publish(publish(&channel, r#"{"n":1}"#))),
                Some(Request::Publish(publish("nope:x", "{}"))),
                None,
                Some(Request::Batch(BatchRequest::default())),
                Some(Request::Rpc(RpcRequest::default())),
                Some(Request::PresenceStats(PresenceStatsRequest {
                    channel: channel.clone(),
                })),
            ],
            parallel,
        };
        let replies = api.batch(req).await.unwrap().replies;
        let summary: Vec<Result<Method, u32>> = replies
            .iter()
            .map(|r| r.as_ref().map(Response::method).map_err(|e| e.code))
            .collect();
        assert_eq!(
            summary,
            vec![
                Ok(Method::Publish),
                Err(102),
                Err(104),
                Err(104),
                Err(107),
                Ok(Method::PresenceStats)
            ],
            "parallel: {parallel}"
        );
    }
    // Strictly in order: each publish sees the previous one.
    let req = BatchRequest {
        commands: (0..3)
            .map(|_| Some(Request::Publish(publish("chat:seq", "{}"))))
            .collect(),
        parallel: false,
    };
    let offsets: Vec<u64> = api
        .call(Request::Batch(req))
        .await
        .map(|r| match r {
            Response::Batch(b) => b.replies,
            other => panic!("{other:?}"),
        })
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Ok(Response::Publish(p)) => p.position.unwrap().offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(offsets, vec![1, 2, 3]);
}
