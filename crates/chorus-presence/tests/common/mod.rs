//! Shared helpers: replicas on port 0, raw gRPC clients with the key, raw Sync streams,
//! `wait_for` instead of sleeps.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chorus_presence::auth::ApiKeyHeader;
use chorus_presence::{serve, Listeners, ServiceConfig};
use chorus_proto::presence as pb;
use chorus_proto::presence::node_message::Kind as Out;
use chorus_proto::presence::presence_client::PresenceClient as Rpc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

pub const KEY: &str = "test-presence-key";

pub type RpcClient = Rpc<InterceptedService<Channel, ApiKeyHeader>>;

/// A replica running in this process.
pub struct Replica {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: streams end with UNAVAILABLE, the process-equivalent goes away.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Short lease and no warm-up unless the test sets them.
pub fn config() -> ServiceConfig {
    let mut c = ServiceConfig::new(KEY);
    c.lease_ttl = Duration::from_secs(2);
    c.warmup = Duration::ZERO;
    c.shutdown_timeout = Duration::from_secs(2);
    c
}

pub async fn start(config: ServiceConfig) -> Replica {
    start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), config).await
}

pub async fn start_on(listener: TcpListener, config: ServiceConfig) -> Replica {
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let task = tokio::spawn(async move {
        serve(
            Listeners {
                grpc: listener,
                metrics: None,
            },
            config,
            async move { signal.cancelled().await },
        )
        .await
        .unwrap();
    });
    Replica { addr, stop, task }
}

pub async fn rpc(addr: SocketAddr) -> RpcClient {
    rpc_with_key(addr, KEY).await
}

pub async fn rpc_with_key(addr: SocketAddr, key: &str) -> RpcClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Rpc::with_interceptor(channel, ApiKeyHeader::new(key)).max_decoding_message_size(64 << 20)
}

/// Polls `check` every 10 ms until it returns true or `within` passes.
pub async fn wait_for<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn info(user: &str, client: &str) -> pb::ClientInfo {
    pb::ClientInfo {
        user: user.into(),
        client: client.into(),
        conn_info: bytes::Bytes::from(format!("{{\"name\":\"{user}\"}}")),
        chan_info: bytes::Bytes::new(),
        node: String::new(),
    }
}

pub fn entry(channel: &str, user: &str, client: &str) -> pb::Entry {
    pb::Entry {
        channel: channel.into(),
        info: Some(info(user, client)),
    }
}

pub fn add(channel: &str, user: &str, client: &str) -> pb::Delta {
    pb::Delta {
        op: Some(pb::delta::Op::Add(entry(channel, user, client))),
    }
}

pub fn rem(channel: &str, client: &str) -> pb::Delta {
    pb::Delta {
        op: Some(pb::delta::Op::Remove(pb::Removal {
            channel: channel.into(),
            client: client.into(),
        })),
    }
}

/// A raw gateway stream, driven message by message.
pub struct RawNode {
    pub tx: mpsc::Sender<pb::NodeMessage>,
    pub rx: Streaming<pb::ServiceMessage>,
    pub seq: u64,
}

pub fn msg(kind: Out) -> pb::NodeMessage {
    pb::NodeMessage { kind: Some(kind) }
}

impl RawNode {
    /// Opens a stream and sends Hello; returns the Welcome too.
    pub async fn open(addr: SocketAddr, node: &str) -> Result<(RawNode, pb::Welcome), Status> {
        let mut client = rpc(addr).await;
        let (tx, rx) = mpsc::channel(64);
        tx.send(msg(Out::Hello(pb::Hello {
            node: node.into(),
            session: "s".into(),
        })))
        .await
        .unwrap();
        let mut inbound = client.sync(ReceiverStream::new(rx)).await?.into_inner();
        let welcome = match inbound.message().await? {
            Some(pb::ServiceMessage {
                kind: Some(pb::service_message::Kind::Welcome(w)),
            }) => w,
            other => panic!("expected Welcome, got {other:?}"),
        };
        Ok((
            RawNode {
                tx,
                rx: inbound,
                seq: 0,
            },
            welcome,
        ))
    }

    /// Opens, sends a one-chunk snapshot and waits for its Ack.
    pub async fn synced(addr: SocketAddr, node: &str, entries: Vec<pb::Entry>) -> RawNode {
        let (mut n, _) = RawNode::open(addr, node).await.unwrap();
        n.snapshot(entries).await.unwrap();
        n
    }

    pub async fn send(&mut self, kind: Out) {
        self.tx.send(msg(kind)).await.unwrap();
    }

    /// Sends a last snapshot chunk and waits for the Ack.
    pub async fn snapshot(&mut self, entries: Vec<pb::Entry>) -> Result<(), Status> {
        self.seq += 1;
        let seq = self.seq;
        self.send(Out::Snapshot(pb::SnapshotChunk {
            entries,
            last: true,
            seq,
        }))
        .await;
        self.expect_ack(seq).await
    }

    /// Sends Deltas and waits for the Ack (or the refusal).
    pub async fn deltas(&mut self, deltas: Vec<pb::Delta>) -> Result<(), Status> {
        self.seq += 1;
        let seq = self.seq;
        self.send(Out::Deltas(pb::Deltas { seq, deltas })).await;
        self.expect_ack(seq).await
    }

    pub async fn heartbeat(&mut self) -> Result<(), Status> {
        self.seq += 1;
        let seq = self.seq;
        self.send(Out::Heartbeat(pb::Heartbeat { seq })).await;
        self.expect_ack(seq).await
    }

    /// Next message that is not an Ack: an Expired, or the stream's end/status.
    pub async fn next_expired(&mut self) -> Result<Option<pb::Expired>, Status> {
        loop {
            match self.rx.message().await? {
                Some(pb::ServiceMessage {
                    kind: Some(pb::service_message::Kind::Expired(e)),
                }) => return Ok(Some(e)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Waits for Ack{seq}, skipping other messages; the stream's error status otherwise.
    pub async fn expect_ack(&mut self, seq: u64) -> Result<(), Status> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.rx.message())
                .await
                .map_err(|_| Status::deadline_exceeded("no ack in 5 s"))??;
            match m {
                Some(pb::ServiceMessage {
                    kind: Some(pb::service_message::Kind::Ack(a)),
                }) if a.seq == seq => return Ok(()),
                Some(_) => continue,
                None => return Err(Status::cancelled("stream ended")),
            }
        }
    }
}

pub async fn presence_of(client: &mut RpcClient, channel: &str) -> Vec<String> {
    let mut clients: Vec<String> = client
        .presence(pb::PresenceRequest {
            channel: channel.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .presence
        .into_keys()
        .collect();
    clients.sort();
    clients
}

pub async fn stats_of(client: &mut RpcClient, channel: &str) -> (u32, u32) {
    let r = client
        .presence_stats(pb::PresenceStatsRequest {
            channel: channel.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (r.num_clients, r.num_users)
}
