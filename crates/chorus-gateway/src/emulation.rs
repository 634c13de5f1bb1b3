//! Bidirectional emulation: the HTTP-streaming and SSE fallback transports of centrifuge-js
//! and the `/emulation` endpoint that carries their commands after the connect.
//!
//! Parts:
//! * this file — the opening request (`POST http_stream.handler_prefix`,
//!   `GET|POST sse.handler_prefix`): the connect command runs inside it, then the response
//!   streams what the client's write queue produces ([`stream::StreamBody`]); the
//!   `/emulation` request (`{"session","node","data"}` JSON, or the Protobuf
//!   `EmulationRequest`), fed to the session's [`Client::handle_frame`] as if read from a
//!   socket; CORS for the three;
//! * [`stream`] — the streaming body (JSON lines, varint-delimited Protobuf, SSE events) and
//!   the guard that ends the session when the response is gone;
//! * [`Sessions`] — session id → client on this node. An entry exists only while its stream
//!   does, so the node's connection limit bounds it. It is also the node's
//!   [`SessionSink`]: `/emulation` requests that reach another node of the cluster are
//!   forwarded here over the broker ([`chorus_core::emulation`]).
//!
//! A session id is a random UUID known only to the client that opened the stream (the client
//! id is visible to others through presence, so it cannot address a session).

pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use chorus_core::emulation::{ForwardError, Refused, SessionSink};
use chorus_core::sync::lock;
use chorus_core::{Client, ClientParams};
use chorus_protocol::{Method, Protocol};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ALLOW,
    CONTENT_TYPE, ORIGIN,
};
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::server::conns::Conn;
use crate::server::ServerState;
use stream::StreamBody;

/// Which fallback transport a stream serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `http_stream`: JSON lines or varint-delimited Protobuf.
    HttpStream,
    /// `sse`: `text/event-stream`, JSON only.
    Sse,
}

impl Kind {
    /// The transport's name (metric label, route name).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::HttpStream => "http_stream",
            Kind::Sse => "sse",
        }
    }
}

/// Session id → the client of an open stream on this node.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<Box<str>, Entry>>);

/// A session's client (weak: the stream's guard owns it) and transport.
type Entry = (Weak<Client>, Kind);

impl Sessions {
    fn insert(&self, session: &str, client: &Arc<Client>, kind: Kind) {
        lock(&self.0).insert(session.into(), (Arc::downgrade(client), kind));
    }

    /// The client of `session` and its transport, while its stream is open.
    pub fn get(&self, session: &str) -> Option<(Arc<Client>, Kind)> {
        let (client, kind) = lock(&self.0).get(session).cloned()?;
        Some((client.upgrade()?, kind))
    }

    pub(crate) fn remove(&self, session: &str) {
        lock(&self.0).remove(session);
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Commands for a session of this node, from an `/emulation` request here or forwarded by
/// another node.
#[async_trait::async_trait]
impl SessionSink for Sessions {
    async fn deliver(&self, session: &str, protocol: Protocol, data: Bytes) -> Result<(), Refused> {
        let Some((client, kind)) = self.get(session) else {
            return Ok(());
        };
        if client.protocol() != protocol {
            return Err(Refused::EncodingMismatch);
        }
        crate::metrics::transport_message_received(kind.as_str(), data.len());
        client.handle_frame(&data).await;
        Ok(())
    }
}

type Resp = Response<Full<Bytes>>;

/// A streaming answer or a complete one.
pub type Body = http_body_util::Either<Full<Bytes>, StreamBody>;

/// Marks a response whose body is a session stream: the connection stays out of the idle
/// state (never shed) until the stream ends.
#[derive(Debug, Clone, Copy)]
pub struct Streaming;

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Adds the CORS headers when the request's `Origin` passes `client.allowed_origins`; a
/// failing origin gets none (it is not refused).
pub fn cors(state: &ServerState, req: &HeaderMap, resp: &mut HeaderMap) {
    let Some(origin) = req.get(ORIGIN) else {
        return;
    };
    if !state.ws.settings.origin_allowed(Some(origin)) {
        return;
    }
    resp.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    resp.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    if let Some(asked) = req.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        resp.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
}

/// `OPTIONS` on any of the three endpoints: 204 with the preflight headers.
fn preflight(state: &ServerState, req: &HeaderMap) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("300"));
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    cors(state, req, h);
    resp
}

fn not_allowed(allow: &'static str) -> Resp {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream"))
        })
}

/// The opening request of a `kind` stream. The caller marked the connection busy.
pub async fn open(
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    kind: Kind,
    state: &ServerState,
    conn: &Conn,
) -> Response<Body> {
    let headers = req.headers().clone();
    let left = |mut resp: Resp| {
        cors(state, &headers, resp.headers_mut());
        resp.map(http_body_util::Either::Left)
    };
    let method = req.method().clone();
    if method == HttpMethod::OPTIONS {
        return preflight(state, &headers).map(http_body_util::Either::Left);
    }
    let (protocol, limit) = match kind {
        Kind::HttpStream => {
            if method != HttpMethod::POST {
                return left(not_allowed("POST, OPTIONS"));
            }
            let protocol = if is_octet_stream(&headers) {
                Protocol::Protobuf
            } else {
                Protocol::Json
            };
            (protocol, state.config.http_stream.max_request_body_size)
        }
        Kind::Sse => {
            if method != HttpMethod::GET && method != HttpMethod::POST {
                return left(not_allowed("GET, POST, OPTIONS"));
            }
            (Protocol::Json, state.config.sse.max_request_body_size)
        }
    };
    let connect = if method == HttpMethod::GET {
        let query = req.uri().query().unwrap_or("");
        match crate::server::routes::query_param(query, "cf_connect") {
            Some(c) if c.len() <= limit => Bytes::from(c),
            Some(_) => return left(text(StatusCode::PAYLOAD_TOO_LARGE, "connect too large\n")),
            None => return left(text(StatusCode::BAD_REQUEST, "cf_connect required\n")),
        }
    } else {
        match crate::server::routes::read_limited(req, state, conn, limit).await {
            Ok((_, body)) => body,
            Err(refused) => return left(refused),
        }
    };
    // The opening request carries the connect command and nothing else.
    match chorus_protocol::decode_commands(protocol, &connect) {
        Ok(commands) if commands.len() == 1 && commands[0].method() == Method::Connect => {}
        Ok(_) => {
            return left(text(
                StatusCode::BAD_REQUEST,
                "the request must hold one connect command\n",
            ))
        }
        Err(error) => {
            tracing::debug!(%error, transport = kind.as_str(), "malformed connect request");
            return left(text(StatusCode::BAD_REQUEST, "malformed request\n"));
        }
    }
    let node = &state.node;
    let client = match node.try_new_client(ClientParams {
        protocol,
        remote_addr: Some(peer),
    }) {
        Ok(client) => client,
        Err(_) => {
            crate::metrics::upgrade_rejected(crate::metrics::RejectReason::Limit);
            return left(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection limit reached\n",
            ));
        }
    };
    crate::ws::forward_headers(node, &client, &headers);
    let session = uuid::Uuid::new_v4().to_string();
    client.set_session(&session);
    state.sessions.insert(&session, &client, kind);
    // From here the guard owns the session: whatever happens, dropping it ends the client.
    let guard = stream::Guard::new(client.clone(), session, kind, state, conn.clone());
    crate::metrics::transport_message_received(kind.as_str(), connect.len());
    client.handle_frame(&connect).await;
    conn.set_upgraded();
    let mut resp = Response::new(http_body_util::Either::Right(StreamBody::new(
        guard, kind, protocol,
    )));
    let h = resp.headers_mut();
    stream::set_stream_headers(h, kind);
    cors(state, &headers, h);
    resp.extensions_mut().insert(Streaming);
    resp
}

/// `emulation.handler_prefix`: commands of an open session. 204 once they ran (their replies
/// travel on the stream), 400 unparsable or not in the session's encoding, 413 over
/// `emulation.max_request_body_size`, 405 other methods. A session of another node is
/// forwarded to that node over the broker ([`chorus_core::emulation`]): 404 when that node is
/// not a live node of the cluster, 503 when it did not answer within 3 s or the broker
/// failed, 500 when it failed otherwise. An unknown session on the node that should hold it
/// is dropped silently (204), as Centrifugo does.
pub async fn emulate(req: Request<Incoming>, state: &ServerState, conn: &Conn) -> Resp {
    let headers = req.headers().clone();
    if req.method() == HttpMethod::OPTIONS {
        return preflight(state, &headers);
    }
    let mut resp = emulate_inner(req, state, conn).await;
    cors(state, &headers, resp.headers_mut());
    resp
}

async fn emulate_inner(req: Request<Incoming>, state: &ServerState, conn: &Conn) -> Resp {
    if req.method() != HttpMethod::POST {
        return not_allowed("POST, OPTIONS");
    }
    let protobuf = is_octet_stream(req.headers());
    let limit = state.config.emulation.max_request_body_size;
    let body = match crate::server::routes::read_limited(req, state, conn, limit).await {
        Ok((_, body)) => body,
        Err(refused) => return refused,
    };
    let request = if protobuf {
        decode_protobuf(&body)
    } else {
        decode_json(&body)
    };
    let Some(request) = request else {
        return text(StatusCode::BAD_REQUEST, "malformed request\n");
    };
    let protocol = if protobuf {
        Protocol::Protobuf
    } else {
        Protocol::Json
    };
    let result = if request.node == state.node.id() {
        state
            .sessions
            .deliver(&request.session, protocol, request.data)
            .await
            .map_err(ForwardError::Refused)
    } else {
        let result = state
            .node
            .forward_emulation(&request.node, &request.session, protocol, &request.data)
            .await;
        crate::metrics::emulation_forwarded(match &result {
            Ok(()) => "ok",
            Err(e) => e.label(),
        });
        result
    };
    match result {
        Ok(()) => {}
        Err(ForwardError::Refused(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "encoding does not match the session\n",
            )
        }
        Err(ForwardError::UnknownNode) => return text(StatusCode::NOT_FOUND, "unknown node\n"),
        Err(error @ (ForwardError::NoAnswer | ForwardError::Broker(_))) => {
            tracing::debug!(%error, node = %request.node, "emulation request not forwarded");
            return text(StatusCode::SERVICE_UNAVAILABLE, "node unreachable\n");
        }
        Err(error @ ForwardError::Remote(_)) => {
            tracing::warn!(%error, node = %request.node, "emulation request failed on its node");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "forwarding failed\n");
        }
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// One `/emulation` request.
#[derive(Debug, Default, PartialEq, Eq)]
struct EmulationRequest {
    node: String,
    session: String,
    data: Bytes,
}

fn decode_json(body: &[u8]) -> Option<EmulationRequest> {
    #[derive(serde::Deserialize)]
    struct Json {
        #[serde(default)]
        node: String,
        #[serde(default)]
        session: String,
        #[serde(default)]
        data: String,
    }
    let j: Json = serde_json::from_slice(body).ok()?;
    Some(EmulationRequest {
        node: j.node,
        session: j.session,
        data: Bytes::from(j.data),
    })
}

/// `EmulationRequest { string node = 1; string session = 2; bytes data = 3; }`
fn decode_protobuf(mut body: &[u8]) -> Option<EmulationRequest> {
    use chorus_protocol::prost::encoding::{self, DecodeContext, WireType};
    let mut out = EmulationRequest::default();
    let mut data: Vec<u8> = Vec::new();
    while !body.is_empty() {
        let (tag, wire) = encoding::decode_key(&mut body).ok()?;
        let ctx = DecodeContext::default();
        let r = match (tag, wire) {
            (1, WireType::LengthDelimited) => {
                encoding::string::merge(wire, &mut out.node, &mut body, ctx)
            }
            (2, WireType::LengthDelimited) => {
                encoding::string::merge(wire, &mut out.session, &mut body, ctx)
            }
            (3, WireType::LengthDelimited) => {
                encoding::bytes::merge(wire, &mut data, &mut body, ctx)
            }
            _ => encoding::skip_field(wire, tag, &mut body, ctx),
        };
        r.ok()?;
    }
    out.data = Bytes::from(data);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request() {
        let r = decode_json(br#"{"session":"s","node":"n","data":"{\"id\":1}\n{\"id\":2}"}"#);
        assert_eq!(
            r,
            Some(EmulationRequest {
                node: "n".into(),
                session: "s".into(),
                data: Bytes::from_static(b"{\"id\":1}\n{\"id\":2}"),
            })
        );
        assert_eq!(decode_json(b"garbage"), None);
        assert_eq!(decode_json(br#"{"data":5}"#), None);
    }

    #[test]
    fn protobuf_request() {
        // node "n1", session "s", data [1, 2]
        let body = [0x0a, 2, b'n', b'1', 0x12, 1, b's', 0x1a, 2, 1, 2];
        assert_eq!(
            decode_protobuf(&body),
            Some(EmulationRequest {
                node: "n1".into(),
                session: "s".into(),
                data: Bytes::from_static(&[1, 2]),
            })
        );
        assert_eq!(decode_protobuf(&[0x0a, 9, b'x']), None);
    }
}
