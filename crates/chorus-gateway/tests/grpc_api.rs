//! The gRPC server API over a real socket, with a tonic client generated from the same
//! `proto/api.proto`: every method, payload bytes, batch (sequential and parallel), the two
//! error modes (by config and by metadata), per-item errors of batch and broadcast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chorus_gateway::config::GrpcErrorMode;
use chorus_proto::api;
use common::grpc::*;
use tonic::Code;

fn publish(channel: &str, data: &'static [u8]) -> api::PublishRequest {
    api::PublishRequest {
        channel: channel.into(),
        data: Bytes::from_static(data),
        ..Default::default()
    }
}

#[tokio::test]
async fn publish_history_and_payload_bytes() {
    let (http, grpc) = start_both(grpc_config()).await;
    let mut c = grpc.client().await;

    let first = c
        .publish(publish("chat:g1", br#"{"n":1}"#))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.error, None);
    let first = first.result.unwrap();
    assert_eq!(first.offset, 1);
    assert!(!first.epoch.is_empty());
    // b64data wins over data.
    let second = c
        .publish(api::PublishRequest {
            channel: "chat:g1".into(),
            data: Bytes::from_static(b"ignored"),
            b64data: "eyJiIjoyfQ==".into(),
            tags: [("k".to_owned(), "v".to_owned())].into(),
            idempotency_key: "once".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.error, None);
    let second = second.result.unwrap();
    assert_eq!(
        (second.offset, second.epoch.as_str()),
        (2, first.epoch.as_str())
    );
    // Bytes that are not JSON, where the namespace allows them, come back unchanged (the
    // JSON API cannot return them).
    for (data, b64data) in [
        (Bytes::from_static(&[0, 1, 0xff]), ""),
        (Bytes::new(), "AAH/"),
    ] {
        let p = c
            .publish(api::PublishRequest {
                channel: "bin:g1".into(),
                data,
                b64data: b64data.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(p.error, None);
    }
    let h = c
        .history(api::HistoryRequest {
            channel: "bin:g1".into(),
            limit: -1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(h.publications.len(), 2);
    for p in &h.publications {
        assert_eq!(p.data.as_ref(), &[0, 1, 0xff]);
    }
    // Not JSON where the namespace does not allow it: 107, as over HTTP.
    let r = c
        .publish(publish("chat:g1", b"\xff"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().code, 107);
    // Without history: an empty result.
    let none = c
        .publish(publish("g1nohist", b"{}"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.result, Some(api::PublishResult::default()));

    let h = c
        .history(api::HistoryRequest {
            channel: "chat:g1".into(),
            limit: -1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!((h.offset, h.epoch.as_str()), (2, first.epoch.as_str()));
    let data: Vec<&[u8]> = h.publications.iter().map(|p| p.data.as_ref()).collect();
    assert_eq!(data, vec![&br#"{"n":1}"#[..], &br#"{"b":2}"#[..]]);
    assert_eq!(
        h.publications[1].tags.get("k").map(String::as_str),
        Some("v")
    );
    assert_eq!(h.publications[1].offset, 2);

    let h = c
        .history(api::HistoryRequest {
            channel: "chat:g1".into(),
            limit: 10,
            since: Some(api::StreamPosition {
                offset: 1,
                epoch: first.epoch.clone(),
            }),
            reverse: false,
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(h.publications.len(), 1);
    assert_eq!(h.publications[0].offset, 2);

    let bad_epoch = c
        .history(api::HistoryRequest {
            channel: "chat:g1".into(),
            limit: 10,
            since: Some(api::StreamPosition {
                offset: 1,
                epoch: "wrong".into(),
            }),
            reverse: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad_epoch.result, None);
    assert_eq!(bad_epoch.error.unwrap().code, 112);

    let removed = c
        .history_remove(api::HistoryRemoveRequest {
            channel: "chat:g1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.result, Some(api::HistoryRemoveResult {}));
    let h = c
        .history(api::HistoryRequest {
            channel: "chat:g1".into(),
            limit: -1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!((h.publications.len(), h.offset), (0, 2));
    drop(grpc);
    http.stop().await.unwrap();
}

#[tokio::test]
async fn users_presence_channels_info() {
    let (http, grpc) = start_both(grpc_config()).await;
    let mut c = grpc.client().await;
    let (mut ws, client) = connect_user(http.addr, "ann").await;

    // subscribe: the connection gets a subscribe push with chan_info and data.
    let r = c
        .subscribe(api::SubscribeRequest {
            channel: "chat:room".into(),
            user: "ann".into(),
            info: Bytes::from_static(br#"{"role":"mod"}"#),
            data: Bytes::from_static(br#"{"hi":1}"#),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error, None);
    let push = next_push(&mut ws, |p| !p["subscribe"].is_null()).await;
    assert_eq!(push["channel"], "chat:room");
    assert_eq!(push["subscribe"]["data"], serde_json::json!({"hi": 1}));

    let p = c
        .presence(api::PresenceRequest {
            channel: "chat:room".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    let me = &p.presence[&client];
    assert_eq!(
        (me.user.as_str(), me.client.as_str()),
        ("ann", client.as_str())
    );
    assert_eq!(me.chan_info, Bytes::from_static(br#"{"role":"mod"}"#));
    let stats = c
        .presence_stats(api::PresenceStatsRequest {
            channel: "chat:room".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));

    let chans = c
        .channels(api::ChannelsRequest {
            pattern: "chat:*".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(chans.channels.len(), 1);
    assert_eq!(chans.channels["chat:room"].num_clients, 1);

    let info = c
        .info(api::InfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(info.nodes.len(), 1);
    let node = &info.nodes[0];
    assert_eq!(node.uid, http.node.id());
    assert_eq!((node.num_clients, node.num_users, node.num_subs), (1, 1, 1));
    assert_eq!(node.version, env!("CARGO_PKG_VERSION"));

    // unsubscribe: push with code 2000.
    let r = c
        .unsubscribe(api::UnsubscribeRequest {
            channel: "chat:room".into(),
            user: "ann".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result, Some(api::UnsubscribeResult {}));
    let push = next_push(&mut ws, |p| !p["unsubscribe"].is_null()).await;
    assert_eq!(push["unsubscribe"]["code"], 2000);

    // refresh: a bad request, then expired → closed with 3005.
    let r = c
        .refresh(api::RefreshRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().code, 107);
    let (mut ws2, _) = connect_user(http.addr, "bob").await;
    let r = c
        .refresh(api::RefreshRequest {
            user: "bob".into(),
            expired: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result, Some(api::RefreshResult {}));
    assert_eq!(ws2.read_close().await.unwrap().0, 3005);

    // disconnect with a custom code.
    let r = c
        .disconnect(api::DisconnectRequest {
            user: "ann".into(),
            disconnect: Some(api::Disconnect {
                code: 4501,
                reason: "bye".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result, Some(api::DisconnectResult {}));
    assert_eq!(ws.read_close().await.unwrap(), (4501, "bye".to_owned()));

    // rpc: no extensions.
    let r = c
        .rpc(api::RpcRequest {
            method: "x".into(),
            params: Bytes::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().code, 104);
    drop(grpc);
    http.stop().await.unwrap();
}

#[tokio::test]
async fn broadcast_and_batch_keep_per_item_errors_in_both_modes() {
    for mode in [GrpcErrorMode::Body, GrpcErrorMode::Transport] {
        let mut config = grpc_config();
        config.grpc_api.error_mode = mode;
        let (http, grpc) = start_both(config).await;
        let mut c = grpc.client().await;

        let b = c
            .broadcast(api::BroadcastRequest {
                channels: vec!["chat:b1".into(), "nope:b".into(), String::new()],
                data: Bytes::from_static(b"{}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap();
        let codes: Vec<Option<u32>> = b
            .responses
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.code))
            .collect();
        assert_eq!(codes, vec![None, Some(102), Some(107)], "{mode:?}");
        assert_eq!(b.responses[0].result.as_ref().unwrap().offset, 1);

        for parallel in [false, true] {
            let command = |c: api::Command| c;
            let replies = c
                .batch(api::BatchRequest {
                    commands: vec![
                        command(api::Command {
                            publish: Some(publish("chat:batch", b"1")),
                            ..Default::default()
                        }),
                        command(api::Command {
                            publish: Some(publish("nope:x", b"1")),
                            ..Default::default()
                        }),
                        // A command naming nothing chorus serves.
                        api::Command::default(),
                        command(api::Command {
                            presence_stats: Some(api::PresenceStatsRequest {
                                channel: "chat:batch".into(),
                            }),
                            ..Default::default()
                        }),
                        command(api::Command {
                            info: Some(api::InfoRequest {}),
                            ..Default::default()
                        }),
                    ],
                    parallel,
                })
                .await
                .unwrap()
                .into_inner()
                .replies;
            assert_eq!(replies.len(), 5);
            assert!(replies[0].publish.as_ref().unwrap().offset >= 1);
            assert_eq!(replies[1].error.as_ref().unwrap().code, 102);
            assert_eq!(replies[2].error.as_ref().unwrap().code, 104);
            assert_eq!(
                replies[3].presence_stats,
                Some(api::PresenceStatsResult::default())
            );
            assert_eq!(replies[4].info.as_ref().unwrap().nodes.len(), 1);
        }
        // Sequential batches apply in order.
        let replies = c
            .batch(api::BatchRequest {
                commands: (0..5)
                    .map(|_| api::Command {
                        publish: Some(publish("chat:order", b"1")),
                        ..Default::default()
                    })
                    .collect(),
                parallel: false,
            })
            .await
            .unwrap()
            .into_inner()
            .replies;
        let offsets: Vec<u64> = replies
            .iter()
            .map(|r| r.publish.as_ref().unwrap().offset)
            .collect();
        assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
        drop(grpc);
        http.stop().await.unwrap();
    }
}

#[tokio::test]
async fn error_modes_by_config_and_by_metadata() {
    // Body mode (default): status OK, the error in the body.
    let (http, grpc) = start_both(grpc_config()).await;
    let mut c = grpc.client().await;
    let r = c
        .publish(publish("nope:x", b"{}"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.result, None);
    let e = r.error.unwrap();
    assert_eq!((e.code, e.message.as_str()), (102, "unknown channel"));
    // The metadata switches one call to transport mode.
    let s = c
        .publish(transport(publish("nope:x", b"{}")))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::NotFound, "102: unknown channel")
    );
    let cases: [(api::PublishRequest, Code, &str); 3] = [
        (
            publish("", b"{}"),
            Code::InvalidArgument,
            "107: bad request",
        ),
        (
            publish("g2", b""),
            Code::InvalidArgument,
            "107: bad request",
        ),
        (publish("chat:ok", b"{}"), Code::Ok, ""),
    ];
    for (req, code, message) in cases {
        match c.publish(transport(req)).await {
            Ok(r) => assert_eq!(code, Code::Ok, "{r:?}"),
            Err(s) => assert_eq!((s.code(), s.message()), (code, message)),
        }
    }
    let s = c
        .history(transport(api::HistoryRequest {
            channel: "g2nohistory".into(),
            limit: 1,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::InvalidArgument, "108: not available")
    );
    let s = c
        .rpc(transport(api::RpcRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    drop(grpc);
    http.stop().await.unwrap();

    // Transport mode by config.
    let mut config = grpc_config();
    config.grpc_api.error_mode = GrpcErrorMode::Transport;
    let (http, grpc) = start_both(config).await;
    let mut c = grpc.client().await;
    let s = c.publish(publish("nope:x", b"{}")).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (Code::NotFound, "102: unknown channel")
    );
    let p = c
        .publish(publish("chat:t", b"{}"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.error, None);
    let s = c
        .history(api::HistoryRequest {
            channel: "chat:t".into(),
            limit: 1,
            since: Some(api::StreamPosition {
                offset: 0,
                epoch: "other".into(),
            }),
            reverse: false,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::OutOfRange);
    assert!(s.message().starts_with("112: "), "{}", s.message());
    // A whole-call failure of broadcast follows the mode.
    let s = c
        .broadcast(api::BroadcastRequest::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(grpc);
    http.stop().await.unwrap();
}
