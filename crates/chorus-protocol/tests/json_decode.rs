//! JSON command decoding: framing, field types, unknown fields, SDK quirks (docs/protocol.md
//! §1.2, §1.3, §1.5, §1.11).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_protocol::*;

fn decode(frame: &str) -> Result<Vec<Command>, DecodeError> {
    decode_commands(Protocol::Json, frame.as_bytes())
}

#[test]
fn illustrative_exchange_commands() {
    let cmds = decode(
        "{\"id\":1,\"connect\":{\"token\":\"<jwt>\",\"name\":\"js\"}}\n{\"id\":2,\"subscribe\":{\"channel\":\"chat:1\",\"flag\":1}}",
    )
    .unwrap();
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[0].id, 1);
    let connect = cmds[0].connect.as_ref().unwrap();
    assert_eq!(connect.token, "<jwt>");
    assert_eq!(connect.name, "js");
    assert_eq!(cmds[0].method(), Method::Connect);
    assert_eq!(cmds[1].id, 2);
    let sub = cmds[1].subscribe.as_ref().unwrap();
    assert_eq!(sub.channel, "chat:1");
    assert_eq!(sub.flag, 1);
    assert_eq!(cmds[1].method(), Method::Subscribe);

    let pong = decode("{}").unwrap();
    assert_eq!(pong, vec![Command::default()]);
    assert!(pong[0].is_pong());
    assert_eq!(pong[0].method(), Method::Pong);

    let presence = decode(r#"{"id":3,"presence":{"channel":"chat:1"}}"#).unwrap();
    assert_eq!(presence[0].presence.as_ref().unwrap().channel, "chat:1");
    assert!(!presence[0].is_pong());

    let history =
        decode(r#"{"id":4,"history":{"channel":"chat:1","limit":10,"reverse":true}}"#).unwrap();
    let h = history[0].history.as_ref().unwrap();
    assert_eq!(
        (h.channel.as_str(), h.limit, h.reverse),
        ("chat:1", 10, true)
    );
    assert_eq!(h.since, None);
}

#[test]
fn illustrative_exchange_replies_roundtrip() {
    let frame = concat!(
        r#"{"id":1,"connect":{"client":"7d2","version":"6.9.1","ping":25,"pong":true}}"#,
        "\n",
        r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"kQzLmnPa","offset":41,"positioned":true}}"#,
        "\n",
        r#"{"push":{"channel":"chat:1","pub":{"data":{"text":"hi"},"offset":42}}}"#,
        "\n",
        r#"{"push":{"channel":"chat:1","join":{"info":{"user":"42","client":"9ab"}}}}"#,
        "\n",
        "{}",
        "\n",
        r#"{"id":3,"presence":{"presence":{"9ab":{"user":"42","client":"9ab"}}}}"#,
        "\n",
        r#"{"id":4,"history":{"publications":[{"data":{"text":"hi"},"offset":42}],"epoch":"kQzLmnPa","offset":42}}"#,
    );
    let replies = decode_replies(Protocol::Json, frame.as_bytes()).unwrap();
    assert_eq!(replies.len(), 7);
    assert_eq!(replies[0].connect.as_ref().unwrap().ping, 25);
    assert_eq!(
        replies[2]
            .push
            .as_ref()
            .unwrap()
            .publication
            .as_ref()
            .unwrap()
            .data,
        Bytes::from_static(br#"{"text":"hi"}"#)
    );
    assert!(replies[4].is_ping());
    // Re-encoding gives back the exact frame (maps with one key are order-stable).
    let encoded: Vec<Bytes> = replies
        .iter()
        .map(|r| encode_reply(Protocol::Json, r).unwrap())
        .collect();
    assert_eq!(join_frame(Protocol::Json, &encoded), Bytes::from(frame));
}

#[test]
fn python_style_spaces_and_raw_data() {
    let cmds =
        decode(r#"{"id": 5, "publish": {"channel": "chat", "data": {"a": [1, 2]}}}"#).unwrap();
    let p = cmds[0].publish.as_ref().unwrap();
    assert_eq!(p.channel, "chat");
    // Raw JSON copied verbatim, inner whitespace included.
    assert_eq!(p.data, Bytes::from_static(br#"{"a": [1, 2]}"#));
    let cmds = decode(r#"{"id":6,"rpc":{"method":"m","data":"text"}}"#).unwrap();
    assert_eq!(
        cmds[0].rpc.as_ref().unwrap().data,
        Bytes::from_static(b"\"text\"")
    );
    let cmds = decode(r#"{"id":7,"rpc":{"method":"m","data":null}}"#).unwrap();
    assert!(cmds[0].rpc.as_ref().unwrap().data.is_empty());
}

#[test]
fn every_request_decodes() {
    let frame = [
        r#"{"id":1,"connect":{"token":"t","data":{"x":1},"subs":{"s":{"recover":true,"epoch":"e","offset":5}},"name":"js","version":"1","headers":{"h":"v"},"flag":2,"dict":"d","profile":"p"}}"#,
        r#"{"id":2,"subscribe":{"channel":"c","token":"t","recover":true,"epoch":"e","offset":9,"data":[1],"positioned":true,"recoverable":true,"join_leave":true,"delta":"fossil","flag":3,"type":0,"tf":{"op":1}}}"#,
        r#"{"id":3,"unsubscribe":{"channel":"c"}}"#,
        r#"{"id":4,"publish":{"channel":"c","data":1}}"#,
        r#"{"id":5,"presence_stats":{"channel":"c"}}"#,
        r#"{"id":6,"history":{"channel":"c","limit":-1,"since":{"offset":3,"epoch":"e"}}}"#,
        r#"{"send":{"data":{}}}"#,
        r#"{"id":8,"refresh":{"token":"t2"}}"#,
        r#"{"id":9,"sub_refresh":{"channel":"c","token":"t3"}}"#,
        r#"{"id":10,"ping":{}}"#,
    ]
    .join("\n");
    let cmds = decode(&frame).unwrap();
    let names: Vec<_> = cmds.iter().map(|c| c.method().name()).collect();
    assert_eq!(
        names,
        [
            "connect",
            "subscribe",
            "unsubscribe",
            "publish",
            "presence_stats",
            "history",
            "send",
            "refresh",
            "sub_refresh",
            "ping"
        ]
    );
    let c = cmds[0].connect.as_ref().unwrap();
    assert_eq!(c.data, Bytes::from_static(br#"{"x":1}"#));
    assert_eq!(c.subs["s"].offset, 5);
    assert!(c.subs["s"].recover);
    assert_eq!(c.headers["h"], "v");
    assert_eq!(c.flag, 2);
    let s = cmds[1].subscribe.as_ref().unwrap();
    assert_eq!((s.offset, s.flag, s.delta.as_str()), (9, 3, "fossil"));
    assert!(s.recover && s.positioned && s.recoverable && s.join_leave);
    assert_eq!(
        cmds[5].history.as_ref().unwrap().since,
        Some(StreamPosition {
            offset: 3,
            epoch: "e".into()
        })
    );
    assert_eq!(cmds[5].history.as_ref().unwrap().limit, -1);
    assert_eq!(cmds[6].id, 0);
    assert!(!cmds[6].is_pong());
}

#[test]
fn unknown_fields_are_ignored() {
    let cmds =
        decode(r#"{"id":1,"future":{"x":[1,2]},"subscribe":{"channel":"c","zzz":true}}"#).unwrap();
    assert_eq!(cmds[0].subscribe.as_ref().unwrap().channel, "c");
}

#[test]
fn wrong_types_are_errors() {
    for bad in [
        r#"{"id":"x"}"#,
        r#"{"id":-1}"#,
        r#"{"id":1.5}"#,
        r#"{"id":4294967296}"#,
        r#"{"id":1,"subscribe":{"channel":5}}"#,
        r#"{"id":1,"subscribe":"c"}"#,
        r#"{"id":1,"subscribe":{"offset":"1"}}"#,
        r#"{"id":1,"subscribe":{"recover":1}}"#,
        r#"{"id":1,"connect":{"headers":{"a":1}}}"#,
        r#"{"id":1,"connect":{"subs":[]}}"#,
        r#"{"id":1,"history":{"since":5}}"#,
        r#"[]"#,
        r#" [1, null]"#,
        r#"1"#,
        r#"null"#,
        r#"{"id":1,"id":2}"#,
        r#"{"id":1"#,
        r#"{"id":1}{"id":2}"#,
    ] {
        assert!(decode(bad).is_err(), "{bad}");
    }
}

#[test]
fn framing_rules() {
    assert_eq!(decode("{\"id\":1}\n").unwrap().len(), 1);
    assert_eq!(decode("{}\n{}\n").unwrap().len(), 2);
    assert!(matches!(decode(""), Err(DecodeError::Empty)));
    assert!(matches!(decode("\n"), Err(DecodeError::Empty)));
    // More than one trailing newline, empty lines between commands, leading newline.
    assert!(decode("{}\n\n").is_err());
    assert!(decode("{}\n\n{}").is_err());
    assert!(decode("\n{}").is_err());
    // Whitespace around an object is JSON whitespace, and `\r\n` ends a line too.
    assert_eq!(decode(" {} \r\n{}").unwrap().len(), 2);
}

#[test]
fn json_command_roundtrip() {
    let cmd = Command {
        id: 12,
        subscribe: Some(SubscribeRequest {
            channel: "c".into(),
            recover: true,
            offset: 3,
            epoch: "e".into(),
            data: Bytes::from_static(br#"{"a":1}"#),
            flag: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = encode_command(Protocol::Json, &cmd).unwrap();
    assert_eq!(
        bytes,
        Bytes::from_static(
            br#"{"id":12,"subscribe":{"channel":"c","recover":true,"epoch":"e","offset":3,"data":{"a":1},"flag":1}}"#
        )
    );
    assert_eq!(decode_commands(Protocol::Json, &bytes).unwrap(), vec![cmd]);
    assert_eq!(
        encode_command(Protocol::Json, &Command::default()).unwrap(),
        Bytes::from_static(b"{}")
    );
}
