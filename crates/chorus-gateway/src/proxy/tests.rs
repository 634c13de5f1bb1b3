//! The adapters against real servers in the process: an HTTP backend on hyper and a gRPC
//! backend on tonic, plus the exact JSON shapes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chorus_core::proxy::*;
use chorus_protocol::Protocol;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::grpc::GrpcProxy;
use super::http::HttpProxy;
use super::json;
use crate::config::proxy::{ProxyConfig, StatusTransform, TransformDisconnect, TransformError};

fn caller() -> Caller {
    Caller {
        client: Arc::from("c-1"),
        transport: TRANSPORT_WEBSOCKET,
        protocol: Protocol::Json,
        user: Arc::from(""),
        meta: Some(Bytes::from_static(br#"{"plan":"gold"}"#)),
        headers: Some(Arc::new(vec![
            ("authorization".into(), "Bearer t".into()),
            ("cookie".into(), "sid=1".into()),
            ("x-other".into(), "no".into()),
        ])),
        emulated_headers: Some(Arc::new(vec![("x-emulated".into(), "e".into())])),
    }
}

fn cfg() -> ProxyConfig {
    ProxyConfig {
        http_headers: vec!["Cookie".into(), "AUTHORIZATION".into()],
        emulated_headers: vec!["X-Emulated".into()],
        ..Default::default()
    }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn request_bodies_have_centrifugos_shape() {
    let mut cfg = cfg();
    let connect = ConnectRequest {
        caller: caller(),
        data: Bytes::from_static(br#"{"k": [1, 2]}"#),
        name: "js".into(),
        version: "5.8.0".into(),
        channels: vec!["a".into()],
    };
    assert_eq!(
        text(&json::connect_body(&cfg, &connect).unwrap()),
        r#"{"client":"c-1","transport":"websocket","protocol":"json","encoding":"json","data":{"k": [1, 2]},"name":"js","version":"5.8.0","channels":["a"]}"#
    );
    let sub = SubscribeRequest {
        caller: caller(),
        channel: "chat:1".into(),
        token: String::new(),
        data: Bytes::new(),
    };
    // `user` is always there (even empty); meta only with include_connection_meta.
    assert_eq!(
        text(&json::subscribe_body(&cfg, &sub).unwrap()),
        r#"{"client":"c-1","transport":"websocket","protocol":"json","encoding":"json","user":"","channel":"chat:1"}"#
    );
    cfg.include_connection_meta = true;
    let publish = PublishRequest {
        caller: caller(),
        channel: "chat:1".into(),
        data: Bytes::from_static(b"\"hi\""),
    };
    assert_eq!(
        text(&json::publish_body(&cfg, &publish).unwrap()),
        r#"{"client":"c-1","transport":"websocket","protocol":"json","encoding":"json","user":"","channel":"chat:1","meta":{"plan":"gold"},"data":"hi"}"#
    );
    cfg.binary_encoding = true;
    let rpc = RpcRequest {
        caller: caller(),
        method: "m".into(),
        data: Bytes::from_static(&[0, 1, 2]),
    };
    assert_eq!(
        text(&json::rpc_body(&cfg, &rpc).unwrap()),
        r#"{"client":"c-1","transport":"websocket","protocol":"json","encoding":"binary","user":"","method":"m","meta":{"plan":"gold"},"b64data":"AAEC"}"#
    );
    cfg.binary_encoding = false;
    assert!(matches!(
        json::rpc_body(&cfg, &rpc),
        Err(ProxyError::BadRequest(_))
    ));
    let refresh = RefreshRequest { caller: caller() };
    assert_eq!(
        text(&json::refresh_body(&cfg, &refresh)),
        r#"{"client":"c-1","transport":"websocket","protocol":"json","encoding":"json","user":"","meta":{"plan":"gold"}}"#
    );
}

#[test]
fn responses_decode_with_centrifugos_precedence() {
    let r = json::connect_reply(
        br#"{"result":{"user":"56","expire_at":1700000000,"info":{"a":1},"b64info":"eyJiIjoyfQ==",
            "data":[1],"channels":["x"],"subs":{"y":{"data":{"d":1},"override":{"presence":{"value":true}}}},
            "meta":{"m":1},"caps":[{"channels":["z"]}],"unknown":true}}"#,
    )
    .unwrap();
    let HookReply::Result(Some(c)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(c.user, "56");
    assert_eq!(c.expire_at, 1_700_000_000);
    // b64info wins over info.
    assert_eq!(&c.info[..], br#"{"b":2}"#);
    assert_eq!(&c.data[..], b"[1]");
    assert_eq!(c.channels, ["x"]);
    assert_eq!(&c.subs["y"].data[..], br#"{"d":1}"#);
    assert_eq!(c.subs["y"].override_options.presence, Some(true));
    assert_eq!(c.subs["y"].override_options.join_leave, None);
    assert_eq!(c.meta.as_deref(), Some(&br#"{"m":1}"#[..]));

    // Publish: data wins over b64data.
    let r = json::publish_reply(
        br#"{"result":{"data":{"x":1},"b64data":"AAEC","skip_history":true,"tags":{"t":"v"}}}"#,
    )
    .unwrap();
    let HookReply::Result(Some(p)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(p.data.as_deref(), Some(&br#"{"x":1}"#[..]));
    assert!(p.skip_history);
    assert!(!p.delta);
    assert_eq!(p.tags, HashMap::from([("t".into(), "v".into())]));
    // `delta` (field 6) makes the publication delta-compressible.
    let r = json::publish_reply(br#"{"result":{"delta":true}}"#).unwrap();
    assert_eq!(
        r,
        HookReply::Result(Some(PublishResult {
            delta: true,
            ..Default::default()
        }))
    );
    let r = json::publish_reply(br#"{"result":{"b64data":"AAEC"}}"#).unwrap();
    assert_eq!(
        r,
        HookReply::Result(Some(PublishResult {
            data: Some(Bytes::from_static(&[0, 1, 2])),
            ..Default::default()
        }))
    );
    assert_eq!(
        json::publish_reply(br#"{"result":{}}"#).unwrap(),
        HookReply::Result(Some(PublishResult::default()))
    );

    // disconnect, then error, then result.
    let both = br#"{"result":{},"error":{"code":403,"message":"no"},"disconnect":{"code":4501,"reason":"bye"}}"#;
    assert!(matches!(
        json::rpc_reply(both).unwrap(),
        HookReply::Disconnect(d) if d.code == 4501 && d.reason == "bye"
    ));
    assert_eq!(
        json::rpc_reply(br#"{"error":{"code":403,"message":"no","temporary":true}}"#).unwrap(),
        HookReply::Error(HookError {
            code: 403,
            message: "no".into(),
            temporary: true
        })
    );
    assert_eq!(json::rpc_reply(b"{}").unwrap(), HookReply::Result(None));
    let r = json::refresh_reply(br#"{"result":{"expire_at":5}}"#).unwrap();
    assert_eq!(
        r,
        HookReply::Result(Some(RefreshResult {
            expired: false,
            expire_at: 5,
            info: None,
            meta: None
        }))
    );
    for garbage in [
        &b"not json"[..],
        br#"{"result":{"b64data":"!!"}}"#,
        br#"{"disconnect":{"code":70000}}"#,
        br#"{"result":{"data":1,"b64data":5}}"#,
    ] {
        assert!(
            matches!(json::rpc_reply(garbage), Err(ProxyError::BadResponse(_))),
            "{}",
            text(garbage)
        );
    }
}

/// What the HTTP test backend saw: path, headers, body.
type Seen = Arc<Mutex<Vec<(String, HashMap<String, String>, String)>>>;

/// An HTTP backend answering by path: `/ok` echoes rpc data, `/status/N` answers N, `/big`
/// answers 2 KiB, `/slow` never answers.
async fn http_backend() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                            .collect();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        log.lock()
                            .unwrap()
                            .push((path.clone(), headers, text(&body).to_string()));
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                            br#"{"result":{"data":{"echo":true}}}"#,
                        )));
                        if let Some(code) = path.strip_prefix("/status/") {
                            *resp.status_mut() = code.parse::<u16>().unwrap().try_into().unwrap();
                        } else if path == "/big" {
                            *resp.body_mut() = Full::new(Bytes::from(vec![b' '; 2048]));
                        } else if path == "/slow" {
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn rpc_req() -> RpcRequest {
    RpcRequest {
        caller: caller(),
        method: "m".into(),
        data: Bytes::from_static(b"{}"),
    }
}

#[tokio::test]
async fn http_proxy_posts_json_forwards_named_headers_only_and_maps_statuses() {
    let (base, seen) = http_backend().await;
    let mut cfg = cfg();
    cfg.http.static_headers = [
        ("X-Static".to_string(), "s".to_string()),
        ("Cookie".to_string(), "overridden".to_string()),
    ]
    .into();
    cfg.http.status_to_code_transforms = vec![
        StatusTransform {
            status_code: 403,
            to_error: TransformError {
                code: 4030,
                message: "forbidden".into(),
                temporary: false,
            },
            ..Default::default()
        },
        StatusTransform {
            status_code: 401,
            to_disconnect: TransformDisconnect {
                code: 4501,
                reason: "unauthorized".into(),
            },
            ..Default::default()
        },
    ];
    cfg.max_response_size = 1024;
    let proxy = |path: &str| HttpProxy::new(&cfg, &format!("{base}{path}"), None).unwrap();

    let r = proxy("/ok").rpc(&rpc_req()).await.unwrap();
    assert_eq!(
        r,
        HookReply::Result(Some(RpcResult {
            data: Bytes::from_static(br#"{"echo":true}"#)
        }))
    );
    let (path, headers, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/ok");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["authorization"], "Bearer t");
    // Forwarded headers override static ones; unlisted ones stay behind.
    assert_eq!(headers["cookie"], "sid=1");
    assert_eq!(headers["x-static"], "s");
    assert_eq!(headers["x-emulated"], "e");
    assert!(!headers.contains_key("x-other"));
    assert_eq!(
        body,
        r#"{"client":"c-1","transport":"websocket","protocol":"json","encoding":"json","user":"","method":"m","data":{}}"#
    );

    assert_eq!(
        proxy("/status/403").rpc(&rpc_req()).await.unwrap(),
        HookReply::Error(HookError {
            code: 4030,
            message: "forbidden".into(),
            temporary: false
        })
    );
    assert!(matches!(
        proxy("/status/401").rpc(&rpc_req()).await.unwrap(),
        HookReply::Disconnect(d) if d.code == 4501
    ));
    assert_eq!(
        proxy("/status/500").rpc(&rpc_req()).await,
        Err(ProxyError::Unavailable("status 500".into()))
    );
    assert!(matches!(
        proxy("/big").rpc(&rpc_req()).await,
        Err(ProxyError::BadResponse(_))
    ));
    // A refused connection.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let down = HttpProxy::new(&cfg, &format!("http://{addr}/"), None).unwrap();
    let err = down.rpc(&rpc_req()).await.unwrap_err();
    assert!(
        matches!(&err, ProxyError::Unavailable(m) if m.contains("refused")),
        "{err:?}"
    );
    // Slow: the handle's timeout cancels the call.
    let slow = ProxyHandle::new(
        "slow",
        Arc::new(proxy("/slow")),
        std::time::Duration::from_millis(100),
        0,
    );
    assert_eq!(slow.rpc(&rpc_req()).await, Err(ProxyError::Timeout));
}

mod grpc_backend {
    use super::*;
    use chorus_proto::proxy as pb;
    use chorus_proto::proxy::centrifugo_proxy_server::{CentrifugoProxy, CentrifugoProxyServer};
    use tonic::{Request, Response, Status};

    /// Metadata and messages the backend saw.
    pub type Seen = Arc<Mutex<Vec<(HashMap<String, String>, String)>>>;

    pub struct Backend {
        pub seen: Seen,
    }

    fn md<T>(req: &Request<T>) -> HashMap<String, String> {
        req.metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.to_string(), v.to_str().unwrap().to_string()))
                }
                _ => None,
            })
            .collect()
    }

    #[tonic::async_trait]
    impl CentrifugoProxy for Backend {
        async fn connect(
            &self,
            req: Request<pb::ConnectRequest>,
        ) -> Result<Response<pb::ConnectResponse>, Status> {
            let m = req.get_ref();
            self.seen
                .lock()
                .unwrap()
                .push((md(&req), format!("connect {} {}", m.b64data, m.name)));
            Ok(Response::new(pb::ConnectResponse {
                result: Some(pb::ConnectResult {
                    user: "grpc-user".into(),
                    b64info: "eyJhIjoxfQ==".into(),
                    data: Bytes::from_static(br#"{"hi":1}"#),
                    channels: vec!["c".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        async fn refresh(
            &self,
            _: Request<pb::RefreshRequest>,
        ) -> Result<Response<pb::RefreshResponse>, Status> {
            Err(Status::unimplemented("no"))
        }
        async fn subscribe(
            &self,
            req: Request<pb::SubscribeRequest>,
        ) -> Result<Response<pb::SubscribeResponse>, Status> {
            let m = req.get_ref();
            self.seen.lock().unwrap().push((
                md(&req),
                format!("subscribe {} {} {}", m.user, m.channel, text(&m.meta)),
            ));
            Ok(Response::new(pb::SubscribeResponse {
                error: Some(pb::Error {
                    code: 4030,
                    message: "no".into(),
                    temporary: false,
                }),
                ..Default::default()
            }))
        }
        async fn publish(
            &self,
            _: Request<pb::PublishRequest>,
        ) -> Result<Response<pb::PublishResponse>, Status> {
            Ok(Response::new(pb::PublishResponse {
                result: Some(pb::PublishResult {
                    data: Bytes::from_static(b"1"),
                    b64data: "Mg==".into(),
                    skip_history: true,
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        async fn rpc(
            &self,
            req: Request<pb::RpcRequest>,
        ) -> Result<Response<pb::RpcResponse>, Status> {
            Ok(Response::new(pb::RpcResponse {
                disconnect: Some(pb::Disconnect {
                    code: 4500,
                    reason: req.into_inner().method,
                }),
                ..Default::default()
            }))
        }
        async fn sub_refresh(
            &self,
            _: Request<pb::SubRefreshRequest>,
        ) -> Result<Response<pb::SubRefreshResponse>, Status> {
            Ok(Response::new(pb::SubRefreshResponse {
                result: Some(pb::SubRefreshResult {
                    expire_at: 9,
                    info: Bytes::from_static(b"{}"),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
    }

    pub async fn start() -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let backend = Backend { seen: seen.clone() };
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(CentrifugoProxyServer::new(backend))
                .serve_with_incoming(incoming)
                .await;
        });
        (format!("grpc://{addr}"), seen)
    }
}

#[tokio::test]
async fn grpc_proxy_calls_centrifugo_proxy_with_metadata() {
    let (endpoint, seen) = grpc_backend::start().await;
    let mut cfg = cfg();
    cfg.binary_encoding = true;
    cfg.include_connection_meta = true;
    cfg.grpc.credentials_key = "authorization".into();
    cfg.grpc.credentials_value = "Bearer backend".into();
    cfg.grpc.static_metadata = [("x-static".to_string(), "s".to_string())].into();
    let target = endpoint.strip_prefix("grpc://").unwrap();
    let proxy = GrpcProxy::new(&cfg, target, None).unwrap();

    let connect = ConnectRequest {
        caller: caller(),
        data: Bytes::from_static(&[0xff]),
        name: "js".into(),
        version: String::new(),
        channels: Vec::new(),
    };
    let r = proxy.connect(&connect).await.unwrap();
    let HookReply::Result(Some(c)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(c.user, "grpc-user");
    assert_eq!(&c.info[..], br#"{"a":1}"#);
    assert_eq!(&c.data[..], br#"{"hi":1}"#);
    assert_eq!(c.channels, ["c"]);
    assert_eq!(c.meta, None);
    let (md, what) = seen.lock().unwrap()[0].clone();
    assert_eq!(what, "connect /w== js");
    // Credentials win over the forwarded Authorization header; unlisted headers stay behind.
    assert_eq!(md["authorization"], "Bearer backend");
    assert_eq!(md["cookie"], "sid=1");
    assert_eq!(md["x-static"], "s");
    assert_eq!(md["x-emulated"], "e");
    assert!(!md.contains_key("x-other"));
    assert!(md.contains_key("grpc-timeout"));

    let sub = SubscribeRequest {
        caller: caller(),
        channel: "chat:1".into(),
        token: String::new(),
        data: Bytes::new(),
    };
    assert_eq!(
        proxy.subscribe(&sub).await.unwrap(),
        HookReply::Error(HookError {
            code: 4030,
            message: "no".into(),
            temporary: false
        })
    );
    assert_eq!(
        seen.lock().unwrap()[1].1,
        r#"subscribe  chat:1 {"plan":"gold"}"#
    );
    let publish = PublishRequest {
        caller: caller(),
        channel: "c".into(),
        data: Bytes::from_static(b"3"),
    };
    // Publish prefers `data` over `b64data`.
    assert_eq!(
        proxy.publish(&publish).await.unwrap(),
        HookReply::Result(Some(PublishResult {
            data: Some(Bytes::from_static(b"1")),
            skip_history: true,
            ..Default::default()
        }))
    );
    assert!(matches!(
        proxy.rpc(&rpc_req()).await.unwrap(),
        HookReply::Disconnect(d) if d.code == 4500 && d.reason == "m"
    ));
    let refresh = RefreshRequest { caller: caller() };
    assert!(matches!(
        proxy.refresh(&refresh).await,
        Err(ProxyError::Unavailable(m)) if m.contains("Unimplemented")
    ));
    let sr = SubRefreshRequest {
        caller: caller(),
        channel: "c".into(),
    };
    assert_eq!(
        proxy.sub_refresh(&sr).await.unwrap(),
        HookReply::Result(Some(SubRefreshResult {
            expired: false,
            expire_at: 9,
            info: Some(Bytes::from_static(b"{}"))
        }))
    );
}
