//! Helpers of the gRPC API tests: the gRPC server of a node on port 0, a tonic client
//! generated from the same `proto/api.proto`, per-call metadata, and WebSocket users.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_core::duration::ConfigDuration;
use chorus_core::options::{ChannelOptions, Namespace};
use chorus_core::Node;
use chorus_gateway::config::Config;
use chorus_gateway::grpc_api::{self, GrpcServeError};
use chorus_proto::api::centrifugo_api_client::CentrifugoApiClient;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::{test_config, RawWs, TestServer};

/// HMAC secret of the connection tokens of these tests.
pub const SECRET: &str = "grpc-test-secret";

pub type Client = CentrifugoApiClient<Channel>;

/// The gateway test config with known token secret, the gRPC API on (port 0) and a `bin`
/// namespace that takes binary payloads.
pub fn grpc_config() -> Config {
    let mut config = test_config();
    config.client.token.hmac_secret_key = SECRET.into();
    config.grpc_api.enabled = true;
    config.grpc_api.address = "127.0.0.1".into();
    config.grpc_api.port = 0;
    config.channel.namespaces.push(Namespace {
        name: "bin".into(),
        options: ChannelOptions {
            history_size: 10,
            history_ttl: ConfigDuration::from_secs(60),
            allow_binary_data: true,
            ..ChannelOptions::default()
        },
    });
    config
}

/// The gRPC API of `node`, served in this process.
pub struct GrpcServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), GrpcServeError>>>,
}

impl GrpcServer {
    pub async fn start(config: &Config, node: Node) -> GrpcServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(grpc_api::serve(
            listener,
            Arc::new(config.clone()),
            node,
            async move {
                let _ = rx.await;
            },
        ));
        GrpcServer {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn client(&self) -> Client {
        CentrifugoApiClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Signals shutdown (without waiting).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Whether `serve` has returned.
    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Signals shutdown and waits (at most `within`) for `serve` to return.
    pub async fn stop_within(mut self, within: Duration) -> anyhow::Result<()> {
        self.begin_shutdown();
        let handle = self.handle.take().context("already stopped")?;
        Ok(tokio::time::timeout(within, handle).await???)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// An HTTP server (for WebSocket users) and the gRPC API of the same node.
pub async fn start_both(config: Config) -> (TestServer, GrpcServer) {
    let http = TestServer::start(config.clone()).await;
    let grpc = GrpcServer::start(&config, http.node.clone()).await;
    (http, grpc)
}

/// A request carrying `authorization: apikey <key>`.
pub fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("apikey {key}").parse().unwrap());
    request
}

/// A request asking for transport error mode (`x-centrifugo-error-mode: transport`).
pub fn transport<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-centrifugo-error-mode", "transport".parse().unwrap());
    request
}

/// An HS256 connection token of `user`.
pub fn token(user: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": user }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A WebSocket connection of `user` (JSON protocol): the socket and its client id.
pub async fn connect_user(addr: SocketAddr, user: &str) -> (RawWs, String) {
    let (status, head, ws) = RawWs::connect(addr, "/connection/websocket", &[])
        .await
        .unwrap();
    assert_eq!(status, 101, "{head}");
    let mut ws = ws.unwrap();
    ws.send_text(&format!(
        "{{\"id\":1,\"connect\":{{\"token\":\"{}\"}}}}",
        token(user)
    ))
    .await;
    let frame = ws.read_data().await.expect("connect reply");
    let reply: Value = serde_json::from_slice(&frame.payload).unwrap();
    let client = reply["connect"]["client"]
        .as_str()
        .unwrap_or_else(|| panic!("connect reply {reply}"))
        .to_owned();
    (ws, client)
}

/// The next push of `ws` that `pick` accepts (other messages are skipped).
pub async fn next_push(ws: &mut RawWs, pick: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = ws.read_data().await.expect("connection ended");
        for line in String::from_utf8(frame.payload).unwrap().split('\n') {
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap();
            if pick(&v["push"]) {
                return v["push"].clone();
            }
        }
    }
}
