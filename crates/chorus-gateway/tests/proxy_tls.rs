//! Backend hooks over TLS, against backends in this process with certificates from a private
//! CA (rcgen): an `https://` connect hook verified with `http.tls.server_ca_pem`, the same
//! backend failing the hook (error 100) when chorus does not trust its CA, mutual TLS with a
//! client certificate read from files, a token's `meta` claim reaching the publish hook, and a
//! gRPC hook over mutual TLS with `server_name` and gzip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use chorus_core::proxy::{Caller, HookReply, Proxy, ProxyError, PublishRequest};
use chorus_gateway::config::proxy::{ProxyConfig, ProxyTlsConfig};
use chorus_gateway::config::Config;
use chorus_gateway::proxy::grpc::GrpcProxy;
use common::grpc::SECRET;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A private certificate authority.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names`: (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A rustls server configuration for `leaf`, requiring a client certificate from
/// `client_ca` when given.
fn server_config(
    leaf: &(String, String),
    client_ca: Option<&Ca>,
    alpn: &[u8],
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.0.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// What an HTTPS backend received: (path, JSON body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTPS hook backend: `/connect` answers user `alice`, anything else an empty result.
async fn https_backend(tls: Arc<rustls::ServerConfig>) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let acceptor = TlsAcceptor::from(tls);
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), recorded.clone());
            tokio::spawn(async move {
                // A handshake the client refuses ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await?.to_bytes();
                        let body: Value = serde_json::from_slice(&body).unwrap();
                        seen.lock().unwrap().push((path.clone(), body));
                        let answer = match path.as_str() {
                            "/connect" => r#"{"result":{"user":"alice"}}"#,
                            _ => r#"{"result":{}}"#,
                        };
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, seen)
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chorus-proxy-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A gateway whose connect hook is `https://localhost:{port}/connect` with `tls`.
fn connect_hook_config(port: u16, tls: ProxyTlsConfig) -> Config {
    let mut config = test_config();
    let connect = &mut config.client.proxy.connect;
    connect.enabled = true;
    connect.proxy.endpoint = format!("https://localhost:{port}/connect");
    connect.proxy.http.tls = tls;
    config.validate().unwrap();
    config
}

/// Connects without a token (so the connect hook decides); the first reply.
async fn connect(server: &TestServer) -> Value {
    let (status, head, ws) = RawWs::connect(server.addr, "/connection/websocket", &[])
        .await
        .unwrap();
    assert_eq!(status, 101, "{head}");
    let mut ws = ws.unwrap();
    ws.send_text(r#"{"id":1,"connect":{}}"#).await;
    let frame = ws.read_data().await.expect("connect reply");
    serde_json::from_slice(&frame.payload).unwrap()
}

#[tokio::test]
async fn https_connect_hook_is_verified_with_the_configured_ca() {
    let ca = Ca::new("hooks CA");
    let (port, seen) =
        https_backend(server_config(&ca.leaf(&["localhost"]), None, b"http/1.1")).await;

    let trusted = ProxyTlsConfig {
        enabled: true,
        server_ca_pem: ca.pem.clone(),
        ..Default::default()
    };
    let server = TestServer::start(connect_hook_config(port, trusted)).await;
    let reply = connect(&server).await;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "/connect");
        assert_eq!(seen[0].1["client"], reply["connect"]["client"]);
    }
    // A second connection reuses the pooled TLS connection or opens another: either way
    // the hook answers.
    assert!(connect(&server).await["connect"]["client"].is_string());
    server.stop().await.unwrap();

    // The same backend, with chorus trusting another CA: the handshake fails, the hook
    // fails, the client gets error 100 and the backend never sees a request.
    let other = ProxyTlsConfig {
        enabled: true,
        server_ca_pem: Ca::new("someone else").pem,
        ..Default::default()
    };
    let server = TestServer::start(connect_hook_config(port, other)).await;
    let reply = connect(&server).await;
    assert_eq!(reply["error"]["code"], 100, "{reply}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate_from_files() {
    let ca = Ca::new("hooks CA");
    let clients = Ca::new("chorus clients");
    let (port, seen) = https_backend(server_config(
        &ca.leaf(&["localhost"]),
        Some(&clients),
        b"http/1.1",
    ))
    .await;
    let dir = tempdir();
    let (cert, key) = clients.leaf(&["chorus"]);
    let path = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let with_cert = ProxyTlsConfig {
        enabled: true,
        server_ca_pem_file: path("ca.pem", &ca.pem),
        cert_pem_file: path("cert.pem", &cert),
        key_pem_file: path("key.pem", &key),
        ..Default::default()
    };
    let without_cert = ProxyTlsConfig {
        cert_pem_file: String::new(),
        key_pem_file: String::new(),
        ..with_cert.clone()
    };

    // Without a client certificate the backend refuses the handshake: error 100.
    let server = TestServer::start(connect_hook_config(port, without_cert)).await;
    assert_eq!(connect(&server).await["error"]["code"], 100);
    server.stop().await.unwrap();
    assert!(seen.lock().unwrap().is_empty());

    let server = TestServer::start(connect_hook_config(port, with_cert)).await;
    let reply = connect(&server).await;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_tokens_meta_claim_reaches_the_publish_hook() {
    let ca = Ca::new("hooks CA");
    let (port, seen) =
        https_backend(server_config(&ca.leaf(&["localhost"]), None, b"http/1.1")).await;
    let mut config = test_config();
    config.client.token.hmac_secret_key = SECRET.into();
    config.channel.without_namespace.publish_proxy_enabled = true;
    let publish = &mut config.channel.proxy.publish;
    publish.endpoint = format!("https://localhost:{port}/publish");
    publish.include_connection_meta = true;
    publish.http.tls = ProxyTlsConfig {
        enabled: true,
        server_ca_pem: ca.pem.clone(),
        ..Default::default()
    };
    config.validate().unwrap();
    let server = TestServer::start(config).await;

    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "bob", "meta": {"plan": "gold", "n": [1, 2]}}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (_, _, ws) = RawWs::connect(server.addr, "/connection/websocket", &[])
        .await
        .unwrap();
    let mut ws = ws.unwrap();
    ws.send_text(&format!(
        r#"{{"id":1,"connect":{{"token":"{token}"}}}}
{{"id":2,"publish":{{"channel":"news","data":{{"text":"hi"}}}}}}"#
    ))
    .await;
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let frame = ws.read_data().await.expect("reply");
        for line in String::from_utf8(frame.payload).unwrap().lines() {
            replies.push(serde_json::from_str::<Value>(line).unwrap());
        }
    }
    // Meta is never sent to the client.
    assert!(!replies[0].to_string().contains("gold"), "{}", replies[0]);
    assert_eq!(replies[1], serde_json::json!({"id": 2, "publish": {}}));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "/publish");
    assert_eq!(seen[0].1["user"], "bob");
    assert_eq!(
        seen[0].1["meta"],
        serde_json::json!({"plan": "gold", "n": [1, 2]})
    );
    assert_eq!(seen[0].1["data"], serde_json::json!({"text": "hi"}));
    server.stop().await.unwrap();
}

mod grpc_backend {
    use super::*;
    use chorus_proto::proxy as pb;
    use chorus_proto::proxy::centrifugo_proxy_server::{CentrifugoProxy, CentrifugoProxyServer};
    use tonic::codec::CompressionEncoding;
    use tonic::{Request, Response, Status};

    /// The metadata of each publish call.
    pub type Metadata = Arc<Mutex<Vec<HashMap<String, String>>>>;

    struct Backend(Metadata);

    #[tonic::async_trait]
    impl CentrifugoProxy for Backend {
        async fn connect(
            &self,
            _: Request<pb::ConnectRequest>,
        ) -> Result<Response<pb::ConnectResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn refresh(
            &self,
            _: Request<pb::RefreshRequest>,
        ) -> Result<Response<pb::RefreshResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn subscribe(
            &self,
            _: Request<pb::SubscribeRequest>,
        ) -> Result<Response<pb::SubscribeResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn rpc(
            &self,
            _: Request<pb::RpcRequest>,
        ) -> Result<Response<pb::RpcResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn sub_refresh(
            &self,
            _: Request<pb::SubRefreshRequest>,
        ) -> Result<Response<pb::SubRefreshResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
        async fn publish(
            &self,
            req: Request<pb::PublishRequest>,
        ) -> Result<Response<pb::PublishResponse>, Status> {
            let md = req
                .metadata()
                .iter()
                .filter_map(|kv| match kv {
                    tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                        Some((k.to_string(), v.to_str().unwrap().to_string()))
                    }
                    _ => None,
                })
                .collect();
            self.0.lock().unwrap().push(md);
            Ok(Response::new(pb::PublishResponse {
                result: Some(pb::PublishResult {
                    data: req.into_inner().data,
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
    }

    /// A TLS stream tonic can serve (it needs `Connected`).
    struct Tls(tokio_rustls::server::TlsStream<TcpStream>);

    impl tonic::transport::server::Connected for Tls {
        type ConnectInfo = ();
        fn connect_info(&self) {}
    }

    impl AsyncRead for Tls {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Tls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// A `CentrifugoProxy` over TLS that accepts gzip; its address and what it saw.
    pub async fn start(tls: Arc<rustls::ServerConfig>) -> (std::net::SocketAddr, Metadata) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Metadata = Arc::default();
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Tls>>(8);
        let acceptor = TlsAcceptor::from(tls);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(s) = acceptor.accept(tcp).await {
                        let _ = tx.send(Ok(Tls(s))).await;
                    }
                });
            }
        });
        let incoming =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|s| (s, rx)) },
            );
        let service = CentrifugoProxyServer::new(Backend(seen.clone()))
            .accept_compressed(CompressionEncoding::Gzip);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        (addr, seen)
    }
}

fn publish_request() -> PublishRequest {
    PublishRequest {
        caller: Caller {
            client: Arc::from("c-1"),
            transport: chorus_core::proxy::TRANSPORT_WEBSOCKET,
            protocol: chorus_protocol::Protocol::Json,
            user: Arc::from("u"),
            meta: None,
            headers: None,
            emulated_headers: None,
        },
        channel: "c".into(),
        data: Bytes::from_static(br#"{"x":1}"#),
    }
}

#[tokio::test]
async fn grpc_hook_over_mutual_tls_with_server_name_and_gzip() {
    let ca = Ca::new("hooks CA");
    let clients = Ca::new("chorus clients");
    // The certificate names `backend.test`, reached at 127.0.0.1: `server_name` bridges it.
    let tls = server_config(&ca.leaf(&["backend.test"]), Some(&clients), b"h2");
    let (addr, seen) = grpc_backend::start(tls).await;
    let (cert, key) = clients.leaf(&["chorus"]);
    let mut cfg = ProxyConfig {
        endpoint: format!("grpc://{addr}"),
        ..Default::default()
    };
    cfg.grpc.compression = true;
    cfg.grpc.tls = ProxyTlsConfig {
        enabled: true,
        server_ca_pem: ca.pem.clone(),
        cert_pem: cert,
        key_pem: key,
        server_name: "backend.test".into(),
        ..Default::default()
    };
    let target = addr.to_string();
    let proxy = GrpcProxy::new(&cfg, &target, cfg.load_tls("rpc.proxy").unwrap()).unwrap();
    let reply = proxy.publish(&publish_request()).await.unwrap();
    let HookReply::Result(Some(r)) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(r.data.as_deref(), Some(&br#"{"x":1}"#[..]));
    assert_eq!(seen.lock().unwrap()[0]["grpc-encoding"], "gzip");

    // Without `server_name` the certificate does not match 127.0.0.1; without the client
    // certificate the backend refuses: both fail the call.
    for tls in [
        ProxyTlsConfig {
            server_name: String::new(),
            ..cfg.grpc.tls.clone()
        },
        ProxyTlsConfig {
            cert_pem: String::new(),
            key_pem: String::new(),
            ..cfg.grpc.tls.clone()
        },
    ] {
        let mut bad = cfg.clone();
        bad.grpc.tls = tls;
        let proxy = GrpcProxy::new(&bad, &target, bad.load_tls("k").unwrap()).unwrap();
        let r = proxy.publish(&publish_request()).await;
        assert!(matches!(r, Err(ProxyError::Unavailable(_))), "{r:?}");
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
}
