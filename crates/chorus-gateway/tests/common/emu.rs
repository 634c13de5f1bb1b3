//! A raw client of the emulation transports: opens an `http_stream` (JSON lines) or `sse`
//! (`GET ?cf_connect=`) stream, decodes the chunked body into JSON messages, and sends its
//! commands through `/emulation`, as centrifuge-js does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{header, http, parse_status, read_head};

/// Which fallback transport a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    HttpStream,
    Sse,
}

/// Both transports, for tests that run every case on each.
pub const TRANSPORTS: [Transport; 2] = [Transport::HttpStream, Transport::Sse];

impl Transport {
    /// The `transport` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Transport::HttpStream => "http_stream",
            Transport::Sse => "sse",
        }
    }

    /// The opening request carrying `connect` (one JSON command).
    pub fn request(self, connect: &str) -> String {
        match self {
            Transport::HttpStream => format!(
                "POST /connection/http_stream HTTP/1.1\r\nHost: t\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{connect}",
                connect.len()
            ),
            Transport::Sse => {
                let q: String = form_urlencoded::byte_serialize(connect.as_bytes()).collect();
                format!("GET /connection/sse?cf_connect={q} HTTP/1.1\r\nHost: t\r\n\r\n")
            }
        }
    }
}

/// An open emulation session.
pub struct EmuClient {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub tcp: TcpStream,
    pub head: String,
    /// Response bytes not dechunked yet.
    raw: Vec<u8>,
    /// Dechunked body bytes not split into messages yet.
    body: Vec<u8>,
    pending: VecDeque<Value>,
    /// The terminating chunk (or EOF) was read.
    pub ended: bool,
    /// Data chunks and their payload bytes read so far (the stream's frames).
    pub chunks: usize,
    pub body_bytes: usize,
    pub session: String,
    pub node: String,
    pub client: String,
    /// The connect reply.
    pub connect: Value,
}

impl EmuClient {
    /// Opens a session with `{"id":1,"connect":{}}` and reads its connect reply.
    pub async fn open(addr: SocketAddr, transport: Transport) -> EmuClient {
        Self::open_with(addr, transport, r#"{"id":1,"connect":{}}"#).await
    }

    /// Opens a session with the given connect command (its id must be 1).
    pub async fn open_with(addr: SocketAddr, transport: Transport, connect: &str) -> EmuClient {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(transport.request(connect).as_bytes())
            .await
            .unwrap();
        let (head, raw) = read_head(&mut tcp).await.unwrap();
        assert_eq!(parse_status(&head).unwrap(), 200, "{head}");
        let mut c = EmuClient {
            transport,
            addr,
            tcp,
            head,
            raw,
            body: Vec::new(),
            pending: VecDeque::new(),
            ended: false,
            chunks: 0,
            body_bytes: 0,
            session: String::new(),
            node: String::new(),
            client: String::new(),
            connect: Value::Null,
        };
        let reply = c.until(|v| v["id"] == 1).await.pop().unwrap();
        assert!(reply.get("error").is_none(), "{reply}");
        let s = |k: &str| reply["connect"][k].as_str().unwrap_or_default().to_owned();
        (c.session, c.node, c.client) = (s("session"), s("node"), s("client"));
        c.connect = reply;
        c
    }

    /// Posts `data` (newline-separated JSON commands) to `/emulation`; returns the status.
    pub async fn send(&self, data: &str) -> u16 {
        let body = serde_json::json!({"session": self.session, "node": self.node, "data": data})
            .to_string();
        let headers = [("Content-Type", "application/json")];
        http(self.addr, "POST", "/emulation", &headers, body.as_bytes())
            .await
            .0
    }

    /// The next message; `None` once the stream ended. Fails after 5 s.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("timed out reading the stream")
    }

    /// The next message within `within` (`Err` on timeout); `Ok(None)` once the stream ended.
    pub async fn next_within(&mut self, within: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.dechunk();
            self.split();
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            if self.ended {
                return Ok(None);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Err(_) => return Err(()),
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
            };
            if n == 0 {
                self.ended = true;
                continue;
            }
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }

    /// Messages up to and including the first matching `pred`.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = match self.next_within(Duration::from_secs(5)).await {
                Ok(Some(v)) => v,
                Ok(None) => panic!("{:?}: the stream ended; seen {seen:?}", self.transport),
                Err(()) => panic!("{:?}: timed out; seen {seen:?}", self.transport),
            };
            let done = pred(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    /// Every message until the stream ends.
    pub async fn rest(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            match self.next_within(Duration::from_secs(5)).await {
                Ok(Some(v)) => seen.push(v),
                Ok(None) => return seen,
                Err(()) => panic!(
                    "{:?}: the stream did not end; seen {seen:?}",
                    self.transport
                ),
            }
        }
    }

    fn dechunk(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_line = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size = usize::from_str_radix(size_line.trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.chunks += 1;
            self.body_bytes += size;
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    fn split(&mut self) {
        let (sep, prefix): (&[u8], &str) = match self.transport {
            Transport::HttpStream => (b"\n", ""),
            Transport::Sse => (b"\n\n", "data: "),
        };
        if self.transport == Transport::Sse && self.body.starts_with(b"\r\n") {
            self.body.drain(..2);
        }
        while let Some(pos) = self.body.windows(sep.len()).position(|w| w == sep) {
            let msg = String::from_utf8(self.body[..pos].to_vec()).unwrap();
            self.body.drain(..pos + sep.len());
            let json = msg
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("not an event: {msg:?}"));
            self.pending.push_back(serde_json::from_str(json).unwrap());
        }
    }

    /// The value of a response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }
}

/// `{"push":{"disconnect":{"code":…}}}`: the code, if `v` is a disconnect push.
pub fn disconnect_code(v: &Value) -> Option<u64> {
    v["push"]["disconnect"]["code"].as_u64()
}
