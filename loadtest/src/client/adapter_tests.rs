//! The adapter against frames made by the server's own encoder (`chorus_protocol`'s
//! `encode_reply` + `join_frame`, as the gateway's writer sends them), in both protocols.

use bytes::Bytes;
use chorus_protocol::{
    encode_reply, join_frame, ping_message, ConnectResult, Disconnect, Error, Join, Publication,
    PublishResult, Push, Reply, SubscribeResult, Unsubscribe,
};

use super::*;
use crate::stats::{decode_payload, encode_payload};

const BOTH: [Protocol; 2] = [Protocol::Json, Protocol::Protobuf];

fn frame(protocol: Protocol, replies: &[Reply]) -> Bytes {
    let encoded: Vec<Bytes> = replies
        .iter()
        .map(|r| encode_reply(protocol, r).expect("encodable"))
        .collect();
    join_frame(protocol, &encoded)
}

fn publication(offset: u64, seq: u64) -> Publication {
    Publication {
        data: encode_payload(3, seq, 1_700_000_000_000_000_000 + seq, 60).into(),
        offset,
        ..Default::default()
    }
}

#[test]
fn connect_and_subscribe_replies_in_one_frame() {
    for p in BOTH {
        let connect = Reply {
            id: 1,
            connect: Some(ConnectResult {
                client: "c-42".into(),
                version: "0.1.0".into(),
                ping: 25,
                pong: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let sub = SubscribeResult {
            epoch: "ep".into(),
            offset: 7,
            recoverable: true,
            recovered: true,
            publications: vec![publication(6, 0), publication(7, 1)],
            ..Default::default()
        };
        let subscribe = Reply {
            id: 2,
            subscribe: Some(sub.clone()),
            ..Default::default()
        };
        let events = decode(p, &frame(p, &[connect, subscribe])).expect("decodes");
        assert_eq!(
            events,
            [
                Event::Connected {
                    id: 1,
                    client: "c-42".into()
                },
                Event::Subscribed { id: 2, result: sub }
            ],
            "{p:?}"
        );
        let Event::Subscribed { result, .. } = &events[1] else {
            unreachable!()
        };
        let seqs: Vec<u64> = result
            .publications
            .iter()
            .map(|p| decode_payload(&p.data).expect("our payload").1)
            .collect();
        assert_eq!(seqs, [0, 1]);
    }
}

#[test]
fn an_empty_subscribe_result_is_still_a_subscribe_reply() {
    for p in BOTH {
        let r = Reply {
            id: 2,
            subscribe: Some(SubscribeResult::default()),
            ..Default::default()
        };
        assert_eq!(
            decode(p, &frame(p, &[r])).expect("decodes"),
            [Event::Subscribed {
                id: 2,
                result: SubscribeResult::default()
            }],
            "{p:?}"
        );
    }
}

#[test]
fn errors_publish_acks_and_pings() {
    for p in BOTH {
        let err = Reply::from_error(
            2,
            Error {
                code: 103,
                message: "permission denied".into(),
                temporary: false,
            },
        );
        let ack = Reply {
            id: 9,
            publish: Some(PublishResult {}),
            ..Default::default()
        };
        let events = decode(p, &frame(p, &[err, ack])).expect("decodes");
        assert_eq!(
            events,
            [
                Event::Error {
                    id: 2,
                    code: 103,
                    message: "permission denied".into()
                },
                Event::Ok { id: 9 }
            ],
            "{p:?}"
        );
        // The server's ping bytes, alone in a frame.
        assert_eq!(
            decode(p, &ping_message(p)).expect("decodes"),
            [Event::Ping],
            "{p:?}"
        );
    }
}

#[test]
fn publication_unsubscribe_disconnect_and_other_pushes() {
    for p in BOTH {
        let pubs = [publication(11, 5), publication(12, 6)];
        let mut replies: Vec<Reply> = pubs
            .iter()
            .map(|pb| {
                Reply::from_push(Push {
                    channel: "chat:1".into(),
                    publication: Some(pb.clone()),
                    ..Default::default()
                })
            })
            .collect();
        replies.push(Reply::from_push(Push {
            channel: "chat:1".into(),
            join: Some(Join::default()),
            ..Default::default()
        }));
        replies.push(Reply::from_push(Push {
            channel: "chat:1".into(),
            unsubscribe: Some(Unsubscribe {
                code: 2500,
                reason: "insufficient state".into(),
            }),
            ..Default::default()
        }));
        replies.push(Reply::from_push(Push {
            disconnect: Some(Disconnect {
                code: 3001,
                reason: "shutdown".into(),
            }),
            ..Default::default()
        }));
        let events = decode(p, &frame(p, &replies)).expect("decodes");
        assert_eq!(events.len(), 5, "{p:?}");
        for (e, want) in events.iter().zip(&pubs) {
            assert_eq!(
                e,
                &Event::Publication {
                    channel: "chat:1".into(),
                    publication: want.clone()
                }
            );
        }
        assert_eq!(events[2], Event::Other);
        assert_eq!(
            events[3],
            Event::Unsubscribed {
                channel: "chat:1".into(),
                code: 2500
            }
        );
        assert_eq!(
            events[4],
            Event::Disconnect {
                code: 3001,
                reason: "shutdown".into()
            }
        );
    }
}

#[test]
fn json_frames_are_the_documented_wire_text() {
    // The exact text the gateway sends (docs/protocol.md), not only what our encoder makes.
    let text = b"{\"id\":1,\"connect\":{\"client\":\"abc\",\"version\":\"0.1.0\",\"ping\":25,\"pong\":true}}\n\
{\"push\":{\"channel\":\"chat:0\",\"pub\":{\"data\":\"0:0:1:\",\"offset\":1}}}\n{}";
    let events = decode(Protocol::Json, text).expect("decodes");
    assert_eq!(
        events[0],
        Event::Connected {
            id: 1,
            client: "abc".into()
        }
    );
    let Event::Publication {
        channel,
        publication,
    } = &events[1]
    else {
        panic!("{events:?}")
    };
    assert_eq!(channel, "chat:0");
    assert_eq!(publication.offset, 1);
    assert_eq!(decode_payload(&publication.data), Some((0, 0, 1)));
    assert_eq!(events[2], Event::Ping);
}

#[test]
fn garbage_is_a_decode_error() {
    assert!(decode(Protocol::Json, b"not json").is_err());
    assert!(decode(Protocol::Json, b"").is_err());
    assert!(decode(Protocol::Protobuf, &[0x05, 0x01]).is_err());
}
