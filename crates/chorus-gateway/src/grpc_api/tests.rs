//! Unit tests of the gRPC mappings: the code map, error-mode selection, method paths, batch
//! commands. The service over a real socket is tested in `tests/grpc_api.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_core::api::{Method, Request};
use chorus_proto::api;
use tonic::metadata::MetadataMap;
use tonic::Code;

use super::convert;
use super::guard::{method_of, METHODS};
use super::status::{grpc_code, mode_of, to_status};
use crate::config::GrpcErrorMode;

#[test]
fn code_map() {
    let expected = [
        (100, Code::Internal),
        (101, Code::Unauthenticated),
        (102, Code::NotFound),
        (103, Code::PermissionDenied),
        (104, Code::NotFound),
        (105, Code::AlreadyExists),
        (106, Code::ResourceExhausted),
        (107, Code::InvalidArgument),
        (108, Code::InvalidArgument),
        (109, Code::Unauthenticated),
        (110, Code::Unauthenticated),
        (111, Code::ResourceExhausted),
        (112, Code::OutOfRange),
        (113, Code::AlreadyExists),
        (0, Code::Unknown),
        (99, Code::Unknown),
        (114, Code::Unknown),
        (4000, Code::Unknown),
    ];
    for (api_code, code) in expected {
        assert_eq!(grpc_code(api_code), code, "{api_code}");
    }
    let status = to_status(&chorus_protocol::codes::ERROR_UNKNOWN_CHANNEL.into());
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "102: unknown channel");
}

#[test]
fn error_mode_by_config_and_metadata() {
    let none = MetadataMap::new();
    assert_eq!(mode_of(GrpcErrorMode::Body, &none), GrpcErrorMode::Body);
    assert_eq!(
        mode_of(GrpcErrorMode::Transport, &none),
        GrpcErrorMode::Transport
    );
    let mut asked = MetadataMap::new();
    asked.insert("x-centrifugo-error-mode", "transport".parse().unwrap());
    assert_eq!(
        mode_of(GrpcErrorMode::Body, &asked),
        GrpcErrorMode::Transport
    );
    let mut other = MetadataMap::new();
    other.insert("x-centrifugo-error-mode", "body".parse().unwrap());
    assert_eq!(mode_of(GrpcErrorMode::Body, &other), GrpcErrorMode::Body);
    // The metadata only switches transport mode on.
    assert_eq!(
        mode_of(GrpcErrorMode::Transport, &other),
        GrpcErrorMode::Transport
    );
}

#[test]
fn method_paths() {
    assert_eq!(
        method_of("/centrifugal.centrifugo.api.CentrifugoApi/Publish"),
        Some(Method::Publish)
    );
    assert_eq!(
        method_of("/centrifugal.centrifugo.api.CentrifugoApi/RPC"),
        Some(Method::Rpc)
    );
    assert_eq!(
        method_of("/centrifugal.centrifugo.api.CentrifugoApi/Connections"),
        None
    );
    assert_eq!(method_of("/other.Service/Publish"), None);
    assert_eq!(method_of("Publish"), None);
    // Every API method has a gRPC method, once — but chorus's own `user_status`, which
    // Centrifugo's gRPC API does not have (HTTP only).
    for method in Method::ALL {
        let expected = usize::from(method != Method::UserStatus);
        assert_eq!(
            METHODS.iter().filter(|(_, m)| *m == method).count(),
            expected,
            "{method:?}"
        );
    }
}

#[test]
fn batch_command_picks_the_first_field_in_method_order() {
    let only = api::Command {
        presence_stats: Some(api::PresenceStatsRequest {
            channel: "c".into(),
        }),
        ..Default::default()
    };
    match convert::command(only) {
        Some(Request::PresenceStats(r)) => assert_eq!(r.channel, "c"),
        other => panic!("{other:?}"),
    }
    // history comes before presence in Method::ALL, as over HTTP.
    let two = api::Command {
        presence: Some(api::PresenceRequest::default()),
        history: Some(api::HistoryRequest {
            channel: "h".into(),
            limit: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    match convert::command(two) {
        Some(Request::History(r)) => assert_eq!((r.channel.as_str(), r.limit), ("h", 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(convert::command(api::Command::default()), None);
}

#[test]
fn payloads_are_bytes_both_ways() {
    let req = convert::publish(api::PublishRequest {
        channel: "c".into(),
        data: Bytes::from_static(b"\x00\xffnot json"),
        tags: [("k".to_owned(), "v".to_owned())].into(),
        delta: true,
        version: 3,
        ..Default::default()
    });
    assert_eq!(req.data, Bytes::from_static(b"\x00\xffnot json"));
    assert_eq!(req.tags.get("k").map(String::as_str), Some("v"));
    let history = convert::history_result(chorus_core::api::HistoryResult {
        publications: vec![chorus_protocol::Publication {
            data: Bytes::from_static(b"\x01\x02"),
            offset: 7,
            ..Default::default()
        }],
        epoch: "e".into(),
        offset: 7,
    });
    assert_eq!(
        history.publications[0].data,
        Bytes::from_static(b"\x01\x02")
    );
    assert_eq!((history.epoch.as_str(), history.offset), ("e", 7));
}

#[test]
fn publish_and_broadcast_keep_delta() {
    let p = convert::publish(api::PublishRequest {
        channel: "c".into(),
        data: Bytes::from_static(b"1"),
        delta: true,
        ..Default::default()
    });
    assert!(p.delta);
    let b = convert::broadcast(api::BroadcastRequest {
        channels: vec!["c".into()],
        data: Bytes::from_static(b"1"),
        delta: true,
        ..Default::default()
    });
    assert!(b.delta);
    assert!(!convert::publish(api::PublishRequest::default()).delta);
}
