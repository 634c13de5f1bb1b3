//! Open-loop publishing through the server HTTP API (`POST {api}/publish`, `X-API-Key`)
//! over keep-alive HTTP/1.1 connections. Rooms are split between workers so that each
//! room's publications leave in order on one connection.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::stats::{encode_payload, Shared};

#[derive(Debug, Clone)]
pub struct ApiTarget {
    pub addr: std::net::SocketAddr,
    pub authority: String,
    pub path: String,
    pub key: String,
}

pub async fn parse_api(url: &str, key: &str) -> anyhow::Result<ApiTarget> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// API URLs are supported: {url}"))?;
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let hostport = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(&hostport)
        .await?
        .find(std::net::SocketAddr::is_ipv4)
        .ok_or_else(|| anyhow!("cannot resolve {hostport}"))?;
    Ok(ApiTarget {
        addr,
        authority: authority.to_string(),
        path: format!("{base}/publish"),
        key: key.to_string(),
    })
}

async fn connect(t: &ApiTarget) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(t.addr)
        .await
        .context("api connect")?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
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
    let mut k: u64 = 0;
    let rooms = plan.rooms as u64;
    loop {
        let room = (k % rooms) as usize;
        if room % plan.workers != plan.worker {
            k += 1;
            continue;
        }
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
                if shared.publish_errors.fetch_add(1, Relaxed) < 3 {
                    eprintln!("publish: {e:#}");
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
) -> anyhow::Result<()> {
    let s = match sender {
        Some(s) if !s.is_closed() => s,
        _ => sender.insert(connect(t).await?),
    };
    s.ready().await?;
    let req = hyper::Request::builder()
        .method("POST")
        .uri(t.path.as_str())
        .header("Host", t.authority.as_str())
        .header("Content-Type", "application/json")
        .header("X-API-Key", t.key.as_str())
        .body(Full::new(body))?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(anyhow!("HTTP {status}"));
    }
    if body.windows(8).any(|w| w == b"\"error\":") {
        return Err(anyhow!("api error: {}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}
