//! Shared helpers of the gateway integration tests: an in-process server on port 0, a
//! hand-rolled WebSocket client (so malformed frames can be sent on purpose) and raw HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod deflate;
pub mod emu;
pub mod grpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chorus_core::Node;
use chorus_gateway::config::Config;
use chorus_gateway::server;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A test configuration: the embedded default (insecure clients, `chat` namespace, demo),
/// plus the echo endpoint, a 1 KiB message limit and a short header timeout.
pub fn test_config() -> Config {
    let mut config = Config::embedded_default();
    config.http_server.address = "127.0.0.1".into();
    config.http_server.port = 0;
    config.websocket.echo_endpoint = true;
    config.websocket.message_size_limit = 1024;
    config.http_server.header_read_timeout =
        chorus_core::duration::ConfigDuration::from_millis(500);
    config.shutdown.drain_window = chorus_core::duration::ConfigDuration::from_millis(300);
    config.shutdown.timeout = chorus_core::duration::ConfigDuration::from_secs(5);
    config
}

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The internal listener's address ([`TestServer::start_split`] only).
    pub internal: Option<SocketAddr>,
    pub node: Node,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), server::ServeError>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let node = server::build_node(&config).unwrap();
        Self::start_node(config, node).await
    }

    /// Serves a node the test built itself (to keep handles on its parts).
    pub async fn start_node(config: Config, node: Node) -> TestServer {
        chorus_gateway::metrics::install();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve(
            listener,
            Arc::new(config),
            node.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            internal: None,
            node,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A server with an external and an internal listener (as with
    /// `http_server.internal_port`): `addr` is the external one, `internal` the other.
    pub async fn start_split(config: Config) -> TestServer {
        chorus_gateway::metrics::install();
        let node = server::build_node(&config).unwrap();
        let external = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, internal_addr) = (
            external.local_addr().unwrap(),
            internal.local_addr().unwrap(),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve_with(
            external,
            Some(internal),
            Arc::new(config),
            node.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        TestServer {
            addr,
            internal: Some(internal_addr),
            node,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Signals shutdown (without waiting).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_shutdown();
        let handle = self.handle.take().context("already stopped")?;
        Ok(tokio::time::timeout(Duration::from_secs(15), handle).await???)
    }

    pub async fn ws(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, Option<RawWs>) {
        RawWs::connect(self.addr, path, headers).await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A minimal WebSocket client over a raw TCP stream.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// One frame as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFrame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawWs {
    /// Performs the handshake. Returns the status, the response head and, on 101, the client.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String, Option<RawWs>)> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let (head, rest) = read_head(&mut stream).await?;
        let status = parse_status(&head)?;
        if status == 101 {
            Ok((status, head, Some(RawWs { stream, buf: rest })))
        } else {
            Ok((status, head, None))
        }
    }

    /// Writes one frame (masked unless told otherwise).
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        let frame = encode_frame(fin, opcode, payload, masked);
        self.stream.write_all(&frame).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes(), true).await;
    }

    /// Reads one frame; `None` on EOF or reset. Fails after 5 s.
    pub async fn read_frame(&mut self) -> Option<RxFrame> {
        tokio::time::timeout(Duration::from_secs(5), self.read_frame_inner())
            .await
            .expect("timed out reading a frame")
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    async fn read_frame_inner(&mut self) -> Option<RxFrame> {
        if !self.fill(2).await {
            return None;
        }
        let fin = self.buf[0] & 0x80 != 0;
        let opcode = self.buf[0] & 0x0f;
        let masked = self.buf[1] & 0x80 != 0;
        let (len, hl) = match self.buf[1] & 0x7f {
            126 => {
                if !self.fill(4).await {
                    return None;
                }
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                if !self.fill(10).await {
                    return None;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let hl = hl + if masked { 4 } else { 0 };
        if !self.fill(hl + len).await {
            return None;
        }
        let payload = self.buf[hl..hl + len].to_vec();
        self.buf.drain(..hl + len);
        Some(RxFrame {
            fin,
            opcode,
            masked,
            payload,
        })
    }

    /// Reads frames until a data frame; answers nothing (server pings are app-level JSON).
    pub async fn read_data(&mut self) -> Option<RxFrame> {
        loop {
            let f = self.read_frame().await?;
            if matches!(f.opcode, OP_TEXT | OP_BINARY | OP_CONT) {
                return Some(f);
            }
            if f.opcode == OP_CLOSE {
                return Some(f);
            }
        }
    }

    /// Reads until a close frame and returns its code and reason (`None`: EOF first).
    pub async fn read_close(&mut self) -> Option<(u16, String)> {
        loop {
            let f = self.read_frame().await?;
            if f.opcode == OP_CLOSE {
                if f.payload.len() < 2 {
                    return Some((1005, String::new()));
                }
                let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                return Some((code, String::from_utf8_lossy(&f.payload[2..]).into_owned()));
            }
        }
    }

    /// Waits for EOF (or reset) within `within`; true if the server closed the socket.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        stream_closed_within(&mut self.stream, within).await
    }
}

/// Reads and discards until EOF (or reset) within `within`; true if the peer closed.
pub async fn stream_closed_within<R: AsyncRead + Unpin>(stream: &mut R, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Encodes one client frame.
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37u8, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads an HTTP response head; returns it and the bytes read past it.
pub async fn read_head<R: AsyncRead + Unpin>(stream: &mut R) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos + 4]).into_owned();
            return Ok((head, buf[pos + 4..].to_vec()));
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await??;
        if n == 0 {
            bail!("EOF before the response head ({} bytes)", buf.len());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn parse_status(head: &str) -> anyhow::Result<u16> {
    head.split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()
        .context("bad status")
}

/// Value of a response header (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A keep-alive HTTP/1.1 connection for simple requests with Content-Length answers.
pub struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> Http {
        Http {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Sends a request and returns (status, head, body).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<(u16, String, Vec<u8>)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        self.stream.write_all(body).await?;
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..pos + 4]).into_owned();
                let len: usize = header(&head, "content-length")
                    .map(|v| v.parse())
                    .transpose()?
                    .unwrap_or(0);
                while self.buf.len() < pos + 4 + len {
                    self.read_more().await?;
                }
                let body = self.buf[pos + 4..pos + 4 + len].to_vec();
                self.buf.drain(..pos + 4 + len);
                return Ok((parse_status(&head)?, head, body));
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 8192];
        let n =
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await??;
        if n == 0 {
            bail!("EOF");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// One request on a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    Http::connect(addr)
        .await
        .request(method, path, headers, body)
        .await
        .unwrap()
}

/// A client connected over the JSON protocol and subscribed to `channel`.
pub async fn subscribed(server: &TestServer, channel: &str) -> RawWs {
    subscribed_at(server.addr, channel).await
}

/// [`subscribed`] for any address.
pub async fn subscribed_at(addr: SocketAddr, channel: &str) -> RawWs {
    let (status, head, ws) = RawWs::connect(addr, "/connection/websocket", &[])
        .await
        .unwrap();
    assert_eq!(status, 101, "{head}");
    let mut ws = ws.unwrap();
    ws.send_text(&format!(
        "{{\"id\":1,\"connect\":{{}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"{channel}\"}}}}"
    ))
    .await;
    let mut got_sub = false;
    while !got_sub {
        let f = ws.read_data().await.expect("reply");
        for line in String::from_utf8(f.payload).unwrap().split('\n') {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(v.get("error").is_none(), "{v}");
            got_sub |= v["id"] == 2;
        }
    }
    ws
}

/// The `data` of the next publication pushed on `channel` (other messages are skipped).
pub async fn next_publication(ws: &mut RawWs, channel: &str) -> Value {
    loop {
        let f = ws.read_data().await.expect("connection ended");
        assert_eq!(f.opcode, OP_TEXT, "unexpected frame {f:?}");
        for line in String::from_utf8(f.payload).unwrap().split('\n') {
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap();
            if v["push"]["channel"] == channel && !v["push"]["pub"].is_null() {
                return v["push"]["pub"]["data"].clone();
            }
        }
    }
}

/// The value of one series of the process-wide metrics registry (the one `/metrics` renders),
/// read without opening a connection; 0 when the series does not exist yet. `series` is the
/// exact exposition name with labels, e.g. `chorus_http_connections{state="idle"}`.
pub fn metric(series: &str) -> f64 {
    let text = chorus_gateway::metrics::install().render();
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// Opens a TCP connection and writes `bytes` (a request, or part of one).
pub async fn raw_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads one response (head and Content-Length body) from a raw stream: (status, head, body).
pub async fn read_response<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let (head, mut rest) = read_head(stream).await?;
    let len: usize = header(&head, "content-length")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(0);
    while rest.len() < len {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await??;
        if n == 0 {
            bail!("EOF in the body");
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    rest.truncate(len);
    Ok((parse_status(&head)?, head, rest))
}
