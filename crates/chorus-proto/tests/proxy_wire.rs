//! Wire facts of the backend hooks (`proto/proxy.proto`): the service name and the field
//! numbers of Centrifugo v6's `CentrifugoProxy` messages (docs/backend.md). Every message is
//! encoded with all its fields set and the field numbers read back from the bytes, so a
//! renumbered field fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use bytes::Bytes;
use chorus_proto::proxy as pb;
use prost::Message;

/// The field numbers of an encoded message, in wire order (every field here is set once).
fn fields(bytes: &[u8]) -> Vec<u32> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut b = bytes;
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        out.push((key >> 3) as u32);
        match key & 7 {
            0 => {
                varint(&mut b);
            }
            2 => {
                let len = varint(&mut b) as usize;
                b = &b[len..];
            }
            wt => panic!("unexpected wire type {wt}"),
        }
    }
    out
}

fn s(v: &str) -> String {
    v.to_string()
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn labels() -> HashMap<String, String> {
    HashMap::from([(s("k"), s("v"))])
}

#[test]
fn service_name_is_centrifugos() {
    assert_eq!(
        pb::centrifugo_proxy_server::SERVICE_NAME,
        "centrifugal.centrifugo.proxy.CentrifugoProxy"
    );
}

#[test]
fn request_field_numbers() {
    let connect = pb::ConnectRequest {
        client: s("c"),
        transport: s("t"),
        protocol: s("p"),
        encoding: s("e"),
        data: b(b"1"),
        b64data: s("MQ=="),
        name: s("js"),
        version: s("5"),
        channels: vec![s("x")],
    };
    assert_eq!(
        fields(&connect.encode_to_vec()),
        [1, 2, 3, 4, 10, 11, 12, 13, 14]
    );
    let refresh = pb::RefreshRequest {
        client: s("c"),
        transport: s("t"),
        protocol: s("p"),
        encoding: s("e"),
        user: s("u"),
        meta: b(b"{}"),
        labels: labels(),
    };
    assert_eq!(fields(&refresh.encode_to_vec()), [1, 2, 3, 4, 10, 11, 12]);
    let subscribe = pb::SubscribeRequest {
        client: s("c"),
        transport: s("t"),
        protocol: s("p"),
        encoding: s("e"),
        user: s("u"),
        channel: s("ch"),
        token: s("tok"),
        meta: b(b"{}"),
        data: b(b"1"),
        b64data: s("MQ=="),
        labels: labels(),
    };
    assert_eq!(
        fields(&subscribe.encode_to_vec()),
        [1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16]
    );
    let publish = pb::PublishRequest {
        client: s("c"),
        transport: s("t"),
        protocol: s("p"),
        encoding: s("e"),
        user: s("u"),
        channel: s("ch"),
        data: b(b"1"),
        b64data: s("MQ=="),
        meta: b(b"{}"),
        labels: labels(),
    };
    assert_eq!(
        fields(&publish.encode_to_vec()),
        [1, 2, 3, 4, 10, 11, 12, 13, 14, 15]
    );
    let rpc = pb::RpcRequest {
        client: s("c"),
        transport: s("t"),
        protocol: s("p"),
        encoding: s("e"),
        user: s("u"),
        method: s("m"),
        data: b(b"1"),
        b64data: s("MQ=="),
        meta: b(b"{}"),
        labels: labels(),
    };
    assert_eq!(
        fields(&rpc.encode_to_vec()),
        [1, 2, 3, 4, 10, 11, 12, 13, 14, 15]
    );
    let sub_refresh = pb::SubRefreshRequest {
        client: s("c"),
        transport: s("t"),
        protocol: s("p"),
        encoding: s("e"),
        user: s("u"),
        channel: s("ch"),
        meta: b(b"{}"),
        labels: labels(),
    };
    assert_eq!(
        fields(&sub_refresh.encode_to_vec()),
        [1, 2, 3, 4, 10, 11, 12, 13]
    );
}

#[test]
fn result_and_envelope_field_numbers() {
    let yes = || Some(pb::BoolValue { value: true });
    let over = pb::SubscribeOptionOverride {
        presence: yes(),
        join_leave: yes(),
        force_recovery: yes(),
        force_positioning: yes(),
        force_push_join_leave: yes(),
    };
    assert_eq!(fields(&over.encode_to_vec()), [1, 2, 3, 4, 5]);
    let opts = pb::SubscribeOptions {
        expire_at: 1,
        info: b(b"{}"),
        b64info: s("e30="),
        data: b(b"1"),
        b64data: s("MQ=="),
        r#override: Some(over),
        server_tags_filter: Some(pb::FilterNode {
            op: s("eq"),
            ..Default::default()
        }),
        cache_recover: true,
    };
    assert_eq!(fields(&opts.encode_to_vec()), [1, 2, 3, 4, 5, 6, 7, 8]);
    let connect = pb::ConnectResult {
        user: s("u"),
        expire_at: 1,
        info: b(b"{}"),
        b64info: s("e30="),
        data: b(b"1"),
        b64data: s("MQ=="),
        channels: vec![s("x")],
        subs: HashMap::from([(s("y"), opts)]),
        meta: b(b"{}"),
        caps: vec![pb::ChannelsCapability {
            channels: vec![s("z")],
            ..Default::default()
        }],
        labels: labels(),
    };
    assert_eq!(
        fields(&connect.encode_to_vec()),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    );
    let refresh = pb::RefreshResult {
        expired: true,
        expire_at: 1,
        info: b(b"{}"),
        b64info: s("e30="),
        meta: b(b"{}"),
        caps: vec![pb::ChannelsCapability::default()],
    };
    assert_eq!(fields(&refresh.encode_to_vec()), [1, 2, 3, 4, 5, 6]);
    let subscribe = pb::SubscribeResult {
        expire_at: 1,
        info: b(b"{}"),
        b64info: s("e30="),
        data: b(b"1"),
        b64data: s("MQ=="),
        r#override: Some(over),
        allow: vec![s("pub")],
        server_tags_filter: Some(pb::FilterNode::default()),
    };
    assert_eq!(fields(&subscribe.encode_to_vec()), [1, 2, 3, 4, 5, 6, 7, 8]);
    let publish = pb::PublishResult {
        data: b(b"1"),
        b64data: s("MQ=="),
        skip_history: true,
        tags: labels(),
        idempotency_key: s("i"),
        delta: true,
        version: 2,
        version_epoch: s("v"),
    };
    assert_eq!(fields(&publish.encode_to_vec()), [1, 2, 3, 4, 5, 6, 7, 8]);
    let rpc = pb::RpcResult {
        data: b(b"1"),
        b64data: s("MQ=="),
    };
    assert_eq!(fields(&rpc.encode_to_vec()), [1, 2]);
    let sub_refresh = pb::SubRefreshResult {
        expired: true,
        expire_at: 1,
        info: b(b"{}"),
        b64info: s("e30="),
    };
    assert_eq!(fields(&sub_refresh.encode_to_vec()), [1, 2, 3, 4]);
    let error = pb::Error {
        code: 403,
        message: s("no"),
        temporary: true,
    };
    assert_eq!(fields(&error.encode_to_vec()), [1, 2, 3]);
    let disconnect = pb::Disconnect {
        code: 4501,
        reason: s("bye"),
    };
    assert_eq!(fields(&disconnect.encode_to_vec()), [1, 2]);
    let response = pb::RpcResponse {
        result: Some(pb::RpcResult::default()),
        error: Some(error),
        disconnect: Some(disconnect),
    };
    assert_eq!(fields(&response.encode_to_vec()), [1, 2, 3]);
}
