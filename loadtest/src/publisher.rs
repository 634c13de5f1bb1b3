//! Open-loop publishing through the server HTTP API (`POST {api}/publish`, `X-API-Key`)
//! over keep-alive HTTP/1.1 connections. Rooms are split between workers so that each
//! room's publications leave in order on one connection.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::error::LoadError;
use crate::net::{self, Target};
use crate::stats::{encode_payload, Counter, Shared};

/// The API endpoint and key.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    pub target: Target,
    pub key: String,
}

/// `http://host:port/api` → `POST /api/publish` on that host.
pub async fn parse_api(url: &str, key: &str) -> Result<ApiTarget, LoadError> {
    let mut target = net::resolve(url, "http").await?;
    target.path = format!("{}/publish", target.path.trim_end_matches('/'));
    Ok(ApiTarget {
        target,
        key: key.to_string(),
    })
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("api connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("api http: {0}")]
    Http(#[from] hyper::Error),
    #[error("api request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("api status {0}")]
    Status(hyper::StatusCode),
    #[error("api error reply: {0}")]
    Reply(String),
}

async fn connect(t: &ApiTarget) -> Result<SendRequest<Full<Bytes>>, PublishError> {
    let stream = tokio::net::TcpStream::connect(t.target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends with the sender (dropped when the worker ends).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What one API worker publishes.
#[derive(Debug, Clone)]
pub struct ApiPlan {
    pub worker: usize,
    pub workers: usize,
    pub rooms: usize,
    pub channel_prefix: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub period_ns: f64,
    pub payload_bytes: usize,
}

/// Publishes every global publication `k` whose room `k % rooms` belongs to this worker, at
/// `start_ns + k * period_ns`; late sends go out at once (latency still counts from the
/// scheduled time). Publisher id 0, sequence `k / rooms` per room.
pub async fn run_api_worker(t: ApiTarget, plan: ApiPlan, shared: Arc<Shared>) {
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let rooms = plan.rooms as u64;
    // The first publication of this worker's first room, then every `workers` rooms.
    let mut k: u64 = plan.worker as u64;
    loop {
        if (k % rooms) as usize % plan.workers != plan.worker {
            k += 1;
            continue;
        }
        let room = (k % rooms) as usize;
        let at = plan.start_ns + (k as f64 * plan.period_ns) as u64;
        if at >= plan.end_ns {
            break;
        }
        let seq = k / rooms;
        k += 1;
        tokio::time::sleep_until(shared.clock.instant_at(at).into()).await;
        let payload = encode_payload(0, seq, at, plan.payload_bytes);
        let mut body = Vec::with_capacity(payload.len() + 64);
        body.extend_from_slice(b"{\"channel\":\"");
        body.extend_from_slice(format!("{}:{room}", plan.channel_prefix).as_bytes());
        body.extend_from_slice(b"\",\"data\":");
        body.extend_from_slice(&payload);
        body.push(b'}');
        match publish_once(&t, &mut sender, Bytes::from(body)).await {
            Ok(()) => shared.published_ok(room, 0),
            Err(e) => {
                if shared.bump(Counter::PublishErrors) < 3 {
                    crate::progress::log(&format!("publish: {e}"));
                }
                sender = None;
            }
        }
    }
}

async fn publish_once(
    t: &ApiTarget,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    body: Bytes,
) -> Result<(), PublishError> {
    let s = match sender {
        Some(s) if !s.is_closed() => s,
        _ => sender.insert(connect(t).await?),
    };
    s.ready().await?;
    let req = hyper::Request::builder()
        .method("POST")
        .uri(t.target.path.as_str())
        .header("Host", t.target.authority.as_str())
        .header("Content-Type", "application/json")
        .header("X-API-Key", t.key.as_str())
        .body(Full::new(body))?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(PublishError::Status(status));
    }
    if body.windows(8).any(|w| w == b"\"error\":") {
        return Err(PublishError::Reply(
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    Ok(())
}
