//! Exact bytes of JSON-encoded replies and pushes (docs/protocol.md §1.4, §1.5, §1.11).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use bytes::Bytes;
use chorus_protocol::*;

fn json(reply: &Reply) -> String {
    let bytes = encode_reply(Protocol::Json, reply).expect("encodes");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[test]
fn connect_result() {
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c1".into(),
            ping: 25,
            pong: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":1,"connect":{"client":"c1","ping":25,"pong":true}}"#
    );
}

#[test]
fn connect_result_client_always_emitted_and_full() {
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult::default()),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":1,"connect":{"client":""}}"#);
    let mut subs = HashMap::new();
    subs.insert("s".to_string(), SubscribeResult::default());
    let full = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c".into(),
            version: "0.1.0".into(),
            expires: true,
            ttl: 60,
            data: Bytes::from_static(b"[1]"),
            subs,
            ping: 25,
            pong: true,
            session: "s1".into(),
            node: "n1".into(),
            time: 1_700_000_000_000,
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&full),
        r#"{"id":1,"connect":{"client":"c","version":"0.1.0","expires":true,"ttl":60,"data":[1],"subs":{"s":{}},"ping":25,"pong":true,"session":"s1","node":"n1","time":1700000000000}}"#
    );
}

#[test]
fn empty_results_are_emitted() {
    let reply = Reply {
        id: 3,
        unsubscribe: Some(UnsubscribeResult::default()),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":3,"unsubscribe":{}}"#);
    let reply = Reply {
        id: 4,
        publish: Some(PublishResult::default()),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":4,"publish":{}}"#);
    let reply = Reply {
        id: 5,
        subscribe: Some(SubscribeResult::default()),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":5,"subscribe":{}}"#);
}

#[test]
fn subscribe_result_fields() {
    let reply = Reply {
        id: 2,
        subscribe: Some(SubscribeResult {
            recoverable: true,
            epoch: "kQzLmnPa".into(),
            offset: 41,
            positioned: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"kQzLmnPa","offset":41,"positioned":true}}"#
    );
    let recovered = Reply {
        id: 2,
        subscribe: Some(SubscribeResult {
            expires: true,
            ttl: 30,
            recoverable: true,
            epoch: "e".into(),
            publications: vec![Publication {
                data: Bytes::from_static(b"1"),
                offset: 7,
                ..Default::default()
            }],
            recovered: true,
            offset: 7,
            positioned: true,
            data: Bytes::from_static(br#""x""#),
            was_recovering: true,
            delta: true,
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&recovered),
        r#"{"id":2,"subscribe":{"expires":true,"ttl":30,"recoverable":true,"epoch":"e","publications":[{"data":1,"offset":7}],"recovered":true,"offset":7,"positioned":true,"data":"x","was_recovering":true,"delta":true}}"#
    );
}

#[test]
fn publication_push() {
    let push = Reply::from_push(Push {
        channel: "chat:1".into(),
        publication: Some(Publication {
            data: Bytes::from_static(br#"{"a":1}"#),
            offset: 42,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&push),
        r#"{"push":{"channel":"chat:1","pub":{"data":{"a":1},"offset":42}}}"#
    );
    // Delta mode: data is a JSON string (the delta or the payload text), the flag after tags.
    let delta = Reply::from_push(Push {
        channel: "chat:1".into(),
        publication: Some(Publication {
            data: Bytes::from_static(br#""7\nA@0,1:2xY;""#),
            offset: 43,
            delta: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&delta),
        r#"{"push":{"channel":"chat:1","pub":{"data":"7\nA@0,1:2xY;","offset":43,"delta":true}}}"#
    );
}

#[test]
fn publication_data_always_emitted_and_info_tags() {
    let push = Reply::from_push(Push {
        channel: "c".into(),
        publication: Some(Publication {
            info: Some(ClientInfo {
                user: "42".into(),
                client: "9ab".into(),
                conn_info: Bytes::from_static(br#"{"n":"x"}"#),
                chan_info: Bytes::new(),
            }),
            tags: HashMap::from([("k".to_string(), "v".to_string())]),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&push),
        r#"{"push":{"channel":"c","pub":{"data":null,"info":{"user":"42","client":"9ab","conn_info":{"n":"x"}},"tags":{"k":"v"}}}}"#
    );
}

#[test]
fn join_leave_unsubscribe_message_subscribe_disconnect_pushes() {
    let info = ClientInfo {
        user: "42".into(),
        client: "9ab".into(),
        ..Default::default()
    };
    let join = Reply::from_push(Push {
        channel: "chat:1".into(),
        join: Some(Join {
            info: Some(info.clone()),
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&join),
        r#"{"push":{"channel":"chat:1","join":{"info":{"user":"42","client":"9ab"}}}}"#
    );
    let leave = Reply::from_push(Push {
        channel: "chat:1".into(),
        leave: Some(Leave { info: None }),
        ..Default::default()
    });
    assert_eq!(json(&leave), r#"{"push":{"channel":"chat:1","leave":{}}}"#);
    let unsub = Reply::from_push(Push {
        channel: "c".into(),
        unsubscribe: Some(Unsubscribe {
            code: 2000,
            reason: "server unsubscribe".into(),
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&unsub),
        r#"{"push":{"channel":"c","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}"#
    );
    let message = Reply::from_push(Push {
        message: Some(Message {
            data: Bytes::from_static(b"true"),
        }),
        ..Default::default()
    });
    assert_eq!(json(&message), r#"{"push":{"message":{"data":true}}}"#);
    let sub = Reply::from_push(Push {
        channel: "c".into(),
        subscribe: Some(Subscribe {
            recoverable: true,
            epoch: "e".into(),
            offset: 3,
            positioned: true,
            data: Bytes::new(),
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&sub),
        r#"{"push":{"channel":"c","subscribe":{"recoverable":true,"epoch":"e","offset":3,"positioned":true}}}"#
    );
    let disconnect = Reply::from_push(Push {
        disconnect: Some(Disconnect {
            code: 3001,
            reason: "shutdown".into(),
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&disconnect),
        r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}"#
    );
}

#[test]
fn presence_always_emits_map() {
    let reply = Reply {
        id: 3,
        presence: Some(PresenceResult::default()),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":3,"presence":{"presence":{}}}"#);
    let mut presence = HashMap::new();
    presence.insert(
        "9ab".to_string(),
        ClientInfo {
            user: "42".into(),
            client: "9ab".into(),
            ..Default::default()
        },
    );
    let reply = Reply {
        id: 3,
        presence: Some(PresenceResult { presence }),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":3,"presence":{"presence":{"9ab":{"user":"42","client":"9ab"}}}}"#
    );
}

#[test]
fn client_info_user_and_client_always_emitted() {
    let reply = Reply::from_push(Push {
        join: Some(Join {
            info: Some(ClientInfo::default()),
        }),
        ..Default::default()
    });
    assert_eq!(
        json(&reply),
        r#"{"push":{"join":{"info":{"user":"","client":""}}}}"#
    );
}

#[test]
fn presence_stats_and_history_always_emitted() {
    let reply = Reply {
        id: 5,
        presence_stats: Some(PresenceStatsResult::default()),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":5,"presence_stats":{"num_clients":0,"num_users":0}}"#
    );
    let reply = Reply {
        id: 4,
        history: Some(HistoryResult::default()),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":4,"history":{"publications":[],"epoch":"","offset":0}}"#
    );
}

#[test]
fn error_reply_and_others() {
    let reply = Reply::from_error(7, chorus_protocol::codes::ERROR_BAD_REQUEST.to_error());
    assert_eq!(
        json(&reply),
        r#"{"id":7,"error":{"code":107,"message":"bad request"}}"#
    );
    let reply = Reply::from_error(8, chorus_protocol::codes::ERROR_INTERNAL.to_error());
    assert_eq!(
        json(&reply),
        r#"{"id":8,"error":{"code":100,"message":"internal server error","temporary":true}}"#
    );
    let reply = Reply::from_error(9, Error::default());
    assert_eq!(json(&reply), r#"{"id":9,"error":{"code":0,"message":""}}"#);
    let reply = Reply {
        id: 10,
        rpc: Some(RpcResult {
            data: Bytes::from_static(br#"{"ok":true}"#),
        }),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":10,"rpc":{"data":{"ok":true}}}"#);
    let reply = Reply {
        id: 11,
        refresh: Some(RefreshResult {
            client: "c".into(),
            version: "v".into(),
            expires: true,
            ttl: 9,
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":11,"refresh":{"client":"c","version":"v","expires":true,"ttl":9}}"#
    );
    let reply = Reply {
        id: 12,
        sub_refresh: Some(SubRefreshResult::default()),
        ..Default::default()
    };
    assert_eq!(json(&reply), r#"{"id":12,"sub_refresh":{}}"#);
}

#[test]
fn large_offsets_are_numbers() {
    let reply = Reply {
        id: 1,
        history: Some(HistoryResult {
            offset: u64::MAX,
            epoch: "e".into(),
            publications: vec![],
        }),
        ..Default::default()
    };
    assert_eq!(
        json(&reply),
        r#"{"id":1,"history":{"publications":[],"epoch":"e","offset":18446744073709551615}}"#
    );
}

#[test]
fn ping_is_empty_object_and_is_ping() {
    assert_eq!(json(&Reply::default()), "{}");
    assert_eq!(ping_message(Protocol::Json), Bytes::from_static(b"{}"));
    assert!(Reply::default().is_ping());
    assert!(!Reply::from_push(Push::default()).is_ping());
}

#[test]
fn invalid_json_payload_is_an_encode_error() {
    for bad in [
        &b"hello"[..],
        b"{\"a\":",
        b"\xff\xfe",
        b"1 2",
        b"{\"a\":1}}",
    ] {
        let push = Reply::from_push(Push {
            channel: "c".into(),
            publication: Some(Publication {
                data: Bytes::copy_from_slice(bad),
                ..Default::default()
            }),
            ..Default::default()
        });
        let err = encode_reply(Protocol::Json, &push);
        assert!(matches!(err, Err(EncodeError::NotJson(_))), "{bad:?}");
        // The same payload is fine for Protobuf clients.
        assert!(encode_reply(Protocol::Protobuf, &push).is_ok());
    }
    let info = Reply::from_push(Push {
        join: Some(Join {
            info: Some(ClientInfo {
                conn_info: Bytes::from_static(b"not json"),
                ..Default::default()
            }),
        }),
        ..Default::default()
    });
    assert!(matches!(
        encode_reply(Protocol::Json, &info),
        Err(EncodeError::NotJson(_))
    ));
}

#[test]
fn newlines_in_payload_are_stripped() {
    let push = Reply::from_push(Push {
        channel: "c".into(),
        publication: Some(Publication {
            data: Bytes::from_static(b"{\n  \"a\": [1,\r\n 2]\n}\n"),
            ..Default::default()
        }),
        ..Default::default()
    });
    let out = json(&push);
    assert_eq!(
        out,
        r#"{"push":{"channel":"c","pub":{"data":{  "a": [1, 2]}}}}"#
    );
    assert!(!out.contains('\n'));
}

#[test]
fn join_frame_json_and_protobuf() {
    let a = Bytes::from_static(b"{\"id\":1}");
    let b = Bytes::from_static(b"{}");
    assert_eq!(
        join_frame(Protocol::Json, &[a.clone(), b.clone()]),
        Bytes::from_static(b"{\"id\":1}\n{}")
    );
    assert_eq!(join_frame(Protocol::Json, std::slice::from_ref(&a)), a);
    assert_eq!(join_frame(Protocol::Json, &[]), Bytes::new());
    let p1 = Bytes::from_static(&[2, 8, 1]);
    let p2 = Bytes::from_static(&[0]);
    assert_eq!(
        join_frame(Protocol::Protobuf, &[p1, p2]),
        Bytes::from_static(&[2, 8, 1, 0])
    );
}
