//! The gRPC API's listener: API key, methods chorus does not serve, the message size limit,
//! metrics, reflection, and the shutdown that finishes a call in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chorus_core::duration::ConfigDuration;
use chorus_proto::api;
use common::grpc::*;
use common::metric;
use futures_util::StreamExt as _;
use http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;
use tonic_prost::ProstCodec;

const PUBLISH: &str = "/centrifugal.centrifugo.api.CentrifugoApi/Publish";

/// A raw unary call of `path` (any method name, served or not).
async fn raw_call(
    channel: Channel,
    path: &'static str,
    request: tonic::Request<api::InfoRequest>,
) -> Result<api::InfoResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        ProstCodec::<api::InfoRequest, api::InfoResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn channel(grpc: &GrpcServer) -> Channel {
    Channel::from_shared(format!("http://{}", grpc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let mut config = grpc_config();
    config.grpc_api.key = "sesame".into();
    let (http, grpc) = start_both(config).await;
    let mut c = grpc.client().await;
    let before = metric("chorus_grpc_api_requests_total{method=\"info\",code=\"unauthenticated\"}");

    let s = c.info(api::InfoRequest {}).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    let s = c
        .info(with_key(api::InfoRequest {}, "wrong"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    let mut bearer = tonic::Request::new(api::InfoRequest {});
    bearer
        .metadata_mut()
        .insert("authorization", "Bearer sesame".parse().unwrap());
    assert_eq!(
        c.info(bearer).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // `x-api-key` is the HTTP API's header, not the gRPC API's.
    let mut header = tonic::Request::new(api::InfoRequest {});
    header
        .metadata_mut()
        .insert("x-api-key", "sesame".parse().unwrap());
    assert_eq!(
        c.info(header).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        metric("chorus_grpc_api_requests_total{method=\"info\",code=\"unauthenticated\"}") - before,
        4.0
    );

    let info = c
        .info(with_key(api::InfoRequest {}, "sesame"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.result.unwrap().nodes.len(), 1);
    // Scheme case-insensitive, as over HTTP.
    let mut upper = tonic::Request::new(api::InfoRequest {});
    upper
        .metadata_mut()
        .insert("authorization", "ApiKey sesame".parse().unwrap());
    assert!(c.info(upper).await.is_ok());
    // Methods chorus does not serve need the key too.
    let s = raw_call(
        channel(&grpc).await,
        "/centrifugal.centrifugo.api.CentrifugoApi/Connections",
        tonic::Request::new(api::InfoRequest {}),
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    drop(grpc);
    http.stop().await.unwrap();
}

#[tokio::test]
async fn methods_not_served_are_unimplemented() {
    let (http, grpc) = start_both(grpc_config()).await;
    let before =
        metric("chorus_grpc_api_requests_total{method=\"unknown\",code=\"unimplemented\"}");
    for path in [
        "/centrifugal.centrifugo.api.CentrifugoApi/Connections",
        "/centrifugal.centrifugo.api.CentrifugoApi/UpdateUserStatus",
        "/centrifugal.centrifugo.api.CentrifugoApi/MapPublish",
    ] {
        let s = raw_call(
            channel(&grpc).await,
            path,
            tonic::Request::new(api::InfoRequest {}),
        )
        .await
        .unwrap_err();
        assert_eq!(s.code(), Code::Unimplemented, "{path}");
    }
    assert_eq!(
        metric("chorus_grpc_api_requests_total{method=\"unknown\",code=\"unimplemented\"}")
            - before,
        3.0
    );
    // The same client still works for served methods.
    let r = raw_call(
        channel(&grpc).await,
        "/centrifugal.centrifugo.api.CentrifugoApi/Info",
        tonic::Request::new(api::InfoRequest {}),
    )
    .await
    .unwrap();
    assert_eq!(r.result.unwrap().nodes.len(), 1);
    drop(grpc);
    http.stop().await.unwrap();
}

#[tokio::test]
async fn message_size_limit_is_resource_exhausted() {
    let mut config = grpc_config();
    config.grpc_api.max_receive_message_size = 2048;
    let (http, grpc) = start_both(config).await;
    let mut c = grpc.client().await;
    let series = "chorus_grpc_api_requests_total{method=\"publish\",code=\"resource_exhausted\"}";
    let errors = "chorus_api_errors_total{method=\"publish\",code=\"grpc_resource_exhausted\"}";
    let (before, errors_before) = (metric(series), metric(errors));

    let big = api::PublishRequest {
        channel: "chat:big".into(),
        data: Bytes::from(format!("\"{}\"", "x".repeat(3000))),
        ..Default::default()
    };
    let s = c.publish(big).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message()
            .contains("grpc_api.max_receive_message_size (2048 bytes)"),
        "{}",
        s.message()
    );
    assert_eq!(metric(series) - before, 1.0);
    assert_eq!(metric(errors) - errors_before, 1.0);
    // Just under the limit is fine.
    let fits = api::PublishRequest {
        channel: "chat:big".into(),
        data: Bytes::from(format!("\"{}\"", "x".repeat(1900))),
        ..Default::default()
    };
    let r = c.publish(fits).await.unwrap().into_inner();
    assert_eq!(r.result.unwrap().offset, 1);
    drop(grpc);
    http.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_per_method_and_code() {
    let (http, grpc) = start_both(grpc_config()).await;
    let mut c = grpc.client().await;
    let ok = "chorus_grpc_api_requests_total{method=\"presence_stats\",code=\"ok\"}";
    let not_found = "chorus_grpc_api_requests_total{method=\"presence_stats\",code=\"not_found\"}";
    let core = "chorus_api_requests_total{method=\"presence_stats\"}";
    let (ok0, nf0, core0) = (metric(ok), metric(not_found), metric(core));
    let req = |channel: &str| api::PresenceStatsRequest {
        channel: channel.into(),
    };
    c.presence_stats(req("chat:m")).await.unwrap();
    // Body mode: status OK even though the API answered 102.
    let r = c.presence_stats(req("nope:m")).await.unwrap().into_inner();
    assert_eq!(r.error.unwrap().code, 102);
    assert!(c.presence_stats(transport(req("nope:m"))).await.is_err());
    assert_eq!(metric(ok) - ok0, 2.0);
    assert_eq!(metric(not_found) - nf0, 1.0);
    // Commands are counted by the core, once per call, whichever API carried them.
    assert_eq!(metric(core) - core0, 3.0);
    let rendered = chorus_gateway::metrics::install().render();
    assert!(
        rendered.contains("chorus_grpc_api_request_duration_seconds"),
        "{rendered}"
    );
    drop(grpc);
    http.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_lists_the_service_when_enabled() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let list = |key: Option<&'static str>| async move {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        (key, futures_util::stream::iter(vec![request]))
    };
    let mut config = grpc_config();
    config.grpc_api.reflection = true;
    config.grpc_api.key = "k".into();
    let (http, grpc) = start_both(config.clone()).await;
    let mut client = ServerReflectionClient::new(channel(&grpc).await);
    let (_, requests) = list(None).await;
    let s = client
        .server_reflection_info(tonic::Request::new(requests))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    let (key, requests) = list(Some("k")).await;
    let mut responses = client
        .server_reflection_info(with_key(requests, key.unwrap()))
        .await
        .unwrap()
        .into_inner();
    let first = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(services)) = first.message_response else {
        panic!("{first:?}");
    };
    let names: Vec<&str> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"centrifugal.centrifugo.api.CentrifugoApi"),
        "{names:?}"
    );
    drop(grpc);

    // Off by default: the reflection service is not there.
    config.grpc_api.reflection = false;
    let grpc = GrpcServer::start(&config, http.node.clone()).await;
    let mut client = ServerReflectionClient::new(channel(&grpc).await);
    let (key, requests) = list(Some("k")).await;
    let s = client
        .server_reflection_info(with_key(requests, key.unwrap()))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);
    drop(grpc);
    http.stop().await.unwrap();
}

/// A call in flight when the signal comes finishes; new connections are refused; `serve`
/// returns once it is done. A call that never completes is abandoned at `shutdown.timeout`.
#[tokio::test]
async fn shutdown_finishes_a_call_in_flight() {
    let mut config = grpc_config();
    config.shutdown.timeout = ConfigDuration::from_secs(2);
    let (http, mut grpc) = start_both(config.clone()).await;

    // The call's headers go now, its message only when `send` fires: it is in flight (on the
    // server) across the signal.
    let (send, ready) = tokio::sync::oneshot::channel::<()>();
    let message = futures_util::stream::once(async move {
        let _ = ready.await;
        api::PublishRequest {
            channel: "chat:inflight".into(),
            data: Bytes::from_static(b"{\"late\":true}"),
            ..Default::default()
        }
    });
    let mut raw = tonic::client::Grpc::new(channel(&grpc).await);
    raw.ready().await.unwrap();
    let call = tokio::spawn(async move {
        raw.client_streaming(
            tonic::Request::new(message),
            PathAndQuery::from_static(PUBLISH),
            ProstCodec::<api::PublishRequest, api::PublishResponse>::default(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    grpc.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!grpc.finished(), "serve returned with a call in flight");
    // The listener is closed: a new connection is refused.
    assert!(tokio::net::TcpStream::connect(grpc.addr).await.is_err());
    send.send(()).unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(reply.result.unwrap().offset, 1);
    grpc.stop_within(Duration::from_secs(2)).await.unwrap();

    // A call whose message never comes: abandoned at the grace.
    let mut grpc = GrpcServer::start(&config, http.node.clone()).await;
    let never = futures_util::stream::pending::<api::PublishRequest>();
    let mut raw = tonic::client::Grpc::new(channel(&grpc).await);
    raw.ready().await.unwrap();
    let _stuck = tokio::spawn(async move {
        raw.client_streaming(
            tonic::Request::new(never),
            PathAndQuery::from_static(PUBLISH),
            ProstCodec::<api::PublishRequest, api::PublishResponse>::default(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    grpc.begin_shutdown();
    grpc.stop_within(Duration::from_secs(5)).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    http.stop().await.unwrap();
}
