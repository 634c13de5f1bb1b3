//! Wire facts of the server API (docs/protocol.md §9.2) and the backplane envelope.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use bytes::Bytes;
use chorus_proto::{api, backplane};
use prost::Message;

#[test]
fn service_name_forms_centrifugo_paths() {
    assert_eq!(
        api::centrifugo_api_server::SERVICE_NAME,
        "centrifugal.centrifugo.api.CentrifugoApi"
    );
}

#[test]
fn publish_request_field_numbers() {
    let req = api::PublishRequest {
        channel: "c".into(),
        data: Bytes::from_static(b"1"),
        b64data: "MQ==".into(),
        skip_history: true,
        tags: HashMap::from([("k".into(), "v".into())]),
        idempotency_key: "i".into(),
        delta: true,
        version: 2,
        version_epoch: "e".into(),
    };
    let mut expected = vec![
        0x0a, 1, b'c', 0x12, 1, b'1', 0x1a, 4, b'M', b'Q', b'=', b'=',
    ];
    expected.extend_from_slice(&[0x20, 1]); // 4 skip_history
    expected.extend_from_slice(&[0x2a, 6, 0x0a, 1, b'k', 0x12, 1, b'v']); // 5 tags entry
    expected.extend_from_slice(&[0x32, 1, b'i', 0x38, 1, 0x40, 2, 0x4a, 1, b'e']); // 6..9
    assert_eq!(req.encode_to_vec(), expected);
}

#[test]
fn response_wrapper_and_batch_numbers() {
    let resp = api::PublishResponse {
        error: Some(api::Error {
            code: 102,
            message: "unknown channel".into(),
        }),
        result: Some(api::PublishResult {
            offset: 3,
            epoch: "x".into(),
        }),
    };
    let bytes = resp.encode_to_vec();
    assert_eq!(bytes[0], 0x0a); // field 1: error
    assert_eq!(
        &bytes[bytes.len() - 7..],
        &[0x12, 5, 0x08, 3, 0x12, 1, b'x']
    ); // field 2: result
    let batch = api::BatchRequest {
        commands: vec![api::Command {
            channels: Some(api::ChannelsRequest::default()),
            ..Default::default()
        }],
        parallel: true,
    };
    // commands (1) { channels (16): tag (16<<3|2) = 0x82 0x01, len 0 }, parallel (2).
    assert_eq!(
        batch.encode_to_vec(),
        vec![0x0a, 3, 0x82, 0x01, 0x00, 0x10, 1]
    );
    let reply = api::Reply {
        publish: Some(api::PublishResult::default()),
        ..Default::default()
    };
    assert_eq!(reply.encode_to_vec(), vec![0x22, 0]); // publish = 4
    let publication = api::Publication {
        data: Bytes::from_static(b"d"),
        offset: 1,
        ..Default::default()
    };
    assert_eq!(publication.encode_to_vec(), vec![0x12, 1, b'd', 0x20, 1]);
}

#[test]
fn backplane_envelope_roundtrip() {
    let envelopes = [
        backplane::Envelope {
            node: "n1".into(),
            kind: Some(backplane::envelope::Kind::Publication(
                backplane::Publication {
                    channel: "chat:1".into(),
                    data: Bytes::from_static(br#"{"a":1}"#),
                    info: Some(backplane::ClientInfo {
                        user: "42".into(),
                        client: "c".into(),
                        ..Default::default()
                    }),
                    offset: 42,
                    epoch: "e".into(),
                    tags: HashMap::from([("k".into(), "v".into())]),
                    time_ms: 1_700_000_000_000,
                    delta: false,
                },
            )),
        },
        backplane::Envelope {
            node: "n2".into(),
            kind: Some(backplane::envelope::Kind::Control(backplane::Control {
                target: String::new(),
                command: Some(backplane::control::Command::Disconnect(
                    backplane::DisconnectUser {
                        user: "42".into(),
                        whitelist: vec!["keep".into()],
                        code: 3503,
                        reason: "force disconnect".into(),
                        ..Default::default()
                    },
                )),
            })),
        },
        backplane::Envelope {
            node: "n3".into(),
            kind: Some(backplane::envelope::Kind::Leave(backplane::Leave {
                channel: "c".into(),
                info: None,
            })),
        },
    ];
    for env in envelopes {
        let bytes = env.encode_to_vec();
        assert_eq!(backplane::Envelope::decode(bytes.as_slice()).unwrap(), env);
    }
}
