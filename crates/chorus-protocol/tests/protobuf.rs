//! Protobuf framing and round trips of every message type (docs/protocol.md §1.2–§1.9).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt::Debug;

use bytes::Bytes;
use chorus_protocol::*;
use prost::Message as _;

fn roundtrip<T: prost::Message + Default + PartialEq + Debug>(value: T) {
    let bytes = value.encode_to_vec();
    assert_eq!(T::decode(bytes.as_slice()).unwrap(), value);
}

fn info() -> ClientInfo {
    ClientInfo {
        user: "42".into(),
        client: "9ab".into(),
        conn_info: Bytes::from_static(b"\x00\x01binary"),
        chan_info: Bytes::from_static(br#"{"c":1}"#),
    }
}

fn publication() -> Publication {
    Publication {
        data: Bytes::from_static(b"\xffnot json"),
        info: Some(info()),
        offset: u64::MAX,
        tags: HashMap::from([("a".into(), "b".into()), ("c".into(), String::new())]),
        delta: true,
    }
}

fn subscribe_request() -> SubscribeRequest {
    SubscribeRequest {
        channel: "chat:1".into(),
        token: "t".into(),
        recover: true,
        epoch: "e".into(),
        offset: 41,
        data: Bytes::from_static(b"d"),
        positioned: true,
        recoverable: true,
        join_leave: true,
        delta: "fossil".into(),
        flag: 3,
        r#type: 1,
    }
}

fn subscribe_result() -> SubscribeResult {
    SubscribeResult {
        expires: true,
        ttl: 30,
        recoverable: true,
        epoch: "e".into(),
        publications: vec![publication(), Publication::default()],
        recovered: true,
        offset: 9,
        positioned: true,
        data: Bytes::from_static(b"x"),
        was_recovering: true,
        delta: true,
    }
}

/// A command with every request set (not a valid command, but a valid message).
pub fn full_command() -> Command {
    Command {
        id: u32::MAX,
        connect: Some(ConnectRequest {
            token: "jwt".into(),
            data: Bytes::from_static(b"{}"),
            subs: HashMap::from([("s".into(), subscribe_request())]),
            name: "js".into(),
            version: "5.7.1".into(),
            headers: HashMap::from([("h".into(), "v".into())]),
            flag: -1,
        }),
        subscribe: Some(subscribe_request()),
        unsubscribe: Some(UnsubscribeRequest {
            channel: "u".into(),
        }),
        publish: Some(PublishRequest {
            channel: "p".into(),
            data: Bytes::from_static(b"1"),
        }),
        presence: Some(PresenceRequest {
            channel: "pr".into(),
        }),
        presence_stats: Some(PresenceStatsRequest {
            channel: "ps".into(),
        }),
        history: Some(HistoryRequest {
            channel: "h".into(),
            limit: -1,
            since: Some(StreamPosition {
                offset: 5,
                epoch: "e".into(),
            }),
            reverse: true,
        }),
        ping: Some(PingRequest {}),
        send: Some(SendRequest {
            data: Bytes::from_static(b"s"),
        }),
        rpc: Some(RpcRequest {
            data: Bytes::from_static(b"r"),
            method: "m".into(),
        }),
        refresh: Some(RefreshRequest { token: "t2".into() }),
        sub_refresh: Some(SubRefreshRequest {
            channel: "sr".into(),
            token: "t3".into(),
        }),
    }
}

fn full_reply() -> Reply {
    Reply {
        id: 7,
        error: Some(Error {
            code: 100,
            message: "internal server error".into(),
            temporary: true,
        }),
        push: Some(Push {
            channel: "c".into(),
            publication: Some(publication()),
            join: Some(Join { info: Some(info()) }),
            leave: Some(Leave { info: Some(info()) }),
            unsubscribe: Some(Unsubscribe {
                code: 2500,
                reason: "insufficient state".into(),
            }),
            message: Some(Message {
                data: Bytes::from_static(b"m"),
            }),
            subscribe: Some(Subscribe {
                recoverable: true,
                epoch: "e".into(),
                offset: 1,
                positioned: true,
                data: Bytes::from_static(b"d"),
            }),
            disconnect: Some(Disconnect {
                code: 3001,
                reason: "shutdown".into(),
            }),
        }),
        connect: Some(ConnectResult {
            client: "c".into(),
            version: "v".into(),
            expires: true,
            ttl: 60,
            data: Bytes::from_static(b"d"),
            subs: HashMap::from([("s".into(), subscribe_result())]),
            ping: 25,
            pong: true,
            session: "s".into(),
            node: "n".into(),
            time: i64::MIN,
        }),
        subscribe: Some(subscribe_result()),
        unsubscribe: Some(UnsubscribeResult {}),
        publish: Some(PublishResult {}),
        presence: Some(PresenceResult {
            presence: HashMap::from([("9ab".into(), info())]),
        }),
        presence_stats: Some(PresenceStatsResult {
            num_clients: 3,
            num_users: 2,
        }),
        history: Some(HistoryResult {
            publications: vec![publication()],
            epoch: "e".into(),
            offset: 42,
        }),
        ping: Some(PingResult {}),
        rpc: Some(RpcResult {
            data: Bytes::from_static(b"r"),
        }),
        refresh: Some(RefreshResult {
            client: "c".into(),
            version: "v".into(),
            expires: true,
            ttl: 1,
        }),
        sub_refresh: Some(SubRefreshResult {
            expires: true,
            ttl: 2,
        }),
    }
}

#[test]
fn every_message_roundtrips() {
    roundtrip(full_command());
    roundtrip(full_reply());
    roundtrip(Command::default());
    roundtrip(Reply::default());
    roundtrip(subscribe_request());
    roundtrip(subscribe_result());
    roundtrip(publication());
    roundtrip(info());
    roundtrip(StreamPosition {
        offset: 1,
        epoch: "e".into(),
    });
}

#[test]
fn framed_roundtrip_of_commands_and_replies() {
    let cmds = vec![full_command(), Command::default(), full_command()];
    let frames: Vec<Bytes> = cmds
        .iter()
        .map(|c| encode_command(Protocol::Protobuf, c).unwrap())
        .collect();
    let frame = join_frame(Protocol::Protobuf, &frames);
    assert_eq!(decode_commands(Protocol::Protobuf, &frame).unwrap(), cmds);

    let replies = vec![full_reply(), Reply::default()];
    let frames: Vec<Bytes> = replies
        .iter()
        .map(|r| encode_reply(Protocol::Protobuf, r).unwrap())
        .collect();
    let frame = join_frame(Protocol::Protobuf, &frames);
    assert_eq!(decode_replies(Protocol::Protobuf, &frame).unwrap(), replies);
}

#[test]
fn ping_and_pong_are_a_zero_byte() {
    assert_eq!(ping_message(Protocol::Protobuf), Bytes::from_static(&[0]));
    assert_eq!(
        encode_reply(Protocol::Protobuf, &Reply::default()).unwrap(),
        Bytes::from_static(&[0])
    );
    let cmds = decode_commands(Protocol::Protobuf, &[0]).unwrap();
    assert_eq!(cmds, vec![Command::default()]);
    assert!(cmds[0].is_pong());
    assert_eq!(
        decode_commands(Protocol::Protobuf, &[0, 0]).unwrap().len(),
        2
    );
}

#[test]
fn exact_bytes() {
    // id=1 (field 1 varint), connect (field 5, len 4) { client (field 1, len 2) "c1" }.
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "c1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Protocol::Protobuf, &reply).unwrap().as_ref(),
        &[8, 0x08, 0x01, 0x2a, 0x04, 0x0a, 0x02, b'c', b'1']
    );
    // Empty result still present on the wire: unsubscribe (field 7) with length 0.
    let reply = Reply {
        id: 3,
        unsubscribe: Some(UnsubscribeResult {}),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Protocol::Protobuf, &reply).unwrap().as_ref(),
        &[4, 0x08, 0x03, 0x3a, 0x00]
    );
    // Delta mode: SubscribeResult.delta is field 13, Publication.delta field 8 (varints).
    let reply = Reply {
        id: 4,
        subscribe: Some(SubscribeResult {
            delta: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Protocol::Protobuf, &reply).unwrap().as_ref(),
        &[6, 0x08, 0x04, 0x32, 0x02, 0x68, 0x01]
    );
    let push = Reply::from_push(Push {
        publication: Some(Publication {
            data: Bytes::from_static(b"d"),
            delta: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    // push (field 4) { pub (field 4) { data (field 4) "d", delta (field 8) 1 } }.
    assert_eq!(
        encode_reply(Protocol::Protobuf, &push).unwrap().as_ref(),
        &[9, 0x22, 0x07, 0x22, 0x05, 0x22, 0x01, b'd', 0x40, 0x01]
    );
    let cmd = [
        12, 0x08, 0x02, 0x2a, 0x08, 0x0a, 0x01, b'c', 0x62, 0x03, b'f', b'o', b's',
    ];
    let cmds = decode_commands(Protocol::Protobuf, &cmd).unwrap();
    assert_eq!(cmds[0].subscribe.as_ref().unwrap().delta, "fos");
    // Subscribe command: id=2, subscribe (field 5) { channel "c" (field 1), flag 1 (field 14) }.
    let frame = [9, 0x08, 0x02, 0x2a, 0x05, 0x0a, 0x01, b'c', 0x70, 0x01];
    let cmds = decode_commands(Protocol::Protobuf, &frame).unwrap();
    let sub = cmds[0].subscribe.as_ref().unwrap();
    assert_eq!((cmds[0].id, sub.channel.as_str(), sub.flag), (2, "c", 1));
}

#[test]
fn long_messages_use_multi_byte_length() {
    let cmd = Command {
        id: 1,
        publish: Some(PublishRequest {
            channel: "c".into(),
            data: Bytes::from(vec![b'x'; 300]),
        }),
        ..Default::default()
    };
    let bytes = encode_command(Protocol::Protobuf, &cmd).unwrap();
    let body = cmd.encoded_len();
    assert_eq!(bytes.len(), body + 2);
    assert_eq!(
        decode_commands(Protocol::Protobuf, &bytes).unwrap(),
        vec![cmd]
    );
}

#[test]
fn truncated_and_malformed_frames_are_errors() {
    let good = encode_command(Protocol::Protobuf, &full_command()).unwrap();
    for cut in 1..good.len() {
        assert!(
            decode_commands(Protocol::Protobuf, &good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        decode_commands(Protocol::Protobuf, &[]),
        Err(DecodeError::Empty)
    ));
    assert!(matches!(
        decode_commands(Protocol::Protobuf, &[5, 8, 1]),
        Err(DecodeError::Truncated)
    ));
    // Unterminated varint length.
    assert!(decode_commands(Protocol::Protobuf, &[0x80]).is_err());
    assert!(decode_commands(Protocol::Protobuf, &[0xff; 11]).is_err());
    // Huge declared length.
    assert!(decode_commands(Protocol::Protobuf, &[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    // id with the wrong wire type (length-delimited instead of varint).
    assert!(decode_commands(Protocol::Protobuf, &[3, 0x0a, 0x01, 0x00]).is_err());
    // Invalid UTF-8 in a string field: subscribe { channel: 0xff }.
    assert!(decode_commands(Protocol::Protobuf, &[5, 0x2a, 0x03, 0x0a, 0x01, 0xff]).is_err());
}

#[test]
fn unknown_fields_are_skipped() {
    // Command { id: 1, field 99 varint 5, subscribe { channel "c", field 13 (tf) bytes "" } }.
    let body = [
        0x08, 0x01, 0x98, 0x06, 0x05, 0x2a, 0x05, 0x0a, 0x01, b'c', 0x6a, 0x00,
    ];
    let mut frame = vec![body.len() as u8];
    frame.extend_from_slice(&body);
    let cmds = decode_commands(Protocol::Protobuf, &frame).unwrap();
    assert_eq!(cmds[0].subscribe.as_ref().unwrap().channel, "c");
}
