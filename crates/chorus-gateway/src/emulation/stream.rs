//! The streaming response of an emulation session: hyper polls [`StreamBody`], which polls
//! the client's write queue ([`Client::poll_next_write`]) — the body is the connection's
//! single writer, and waiting holds nothing but the task's waker.
//!
//! Framing of one batch of messages: `http_stream` JSON — each reply followed by `\n`;
//! `http_stream` Protobuf — the varint-length-prefixed replies as they are; SSE — each reply
//! as one event `data: <json>\n\n`, after an initial `\r\n`. When the server closes the
//! session (any code but 3000) the last thing written is a `disconnect` push carrying the
//! code, then the stream ends; the stream ending is the connection closing.
//!
//! A client that stops reading fills its queue to `client.queue_max_size` (3008) like any
//! other, and its session leaves its channels at once ([`Guard::new`]); a response write
//! blocked for `http_server.request_timeout` ends the connection (the socket wrapper's write
//! deadline).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use chorus_core::{Client, WriteEvent};
use chorus_protocol::{Protocol, Push, Reply};
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, PRAGMA};
use http::{HeaderMap, HeaderName, HeaderValue};
use hyper::body::Frame;
use tokio_util::task::TaskTracker;

use super::{Kind, Sessions};
use crate::server::conns::Conn;
use crate::server::ServerState;

/// Owns an emulation session: dropping it (the response finished or was dropped with its
/// connection) forgets the session id, releases the HTTP connection and cleans the client up
/// (subscriptions, presence, leave events).
pub struct Guard {
    client: Arc<Client>,
    session: String,
    kind: Kind,
    sessions: Arc<Sessions>,
    tracker: TaskTracker,
    conn: Conn,
}

impl Guard {
    pub(super) fn new(
        client: Arc<Client>,
        session: String,
        kind: Kind,
        state: &ServerState,
        conn: Conn,
    ) -> Guard {
        crate::metrics::transport_opened(kind.as_str());
        // A session the server closes (3008 slow, 3012 no pong, 3005, a disconnect by the API)
        // leaves its channels and presence at once, as a WebSocket one does within
        // `websocket.write_timeout`: this stream may stay blocked on a client that stopped
        // reading until `http_server.request_timeout`, and hyper does not poll the body (so
        // does not see the close) while its write buffer is full. Dropping the guard closes
        // the client too, so this task always ends.
        let watched = client.clone();
        state.ws.tracker.spawn(async move {
            watched.closed().await;
            watched.cleanup().await;
        });
        Guard {
            client,
            session,
            kind,
            sessions: state.sessions.clone(),
            tracker: state.ws.tracker.clone(),
            conn,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        crate::metrics::transport_closed(self.kind.as_str());
        self.sessions.remove(&self.session);
        self.conn.request_done();
        let client = self.client.clone();
        self.tracker.spawn(async move { client.cleanup().await });
    }
}

/// The body of a streaming answer.
pub struct StreamBody {
    guard: Guard,
    protocol: Protocol,
    /// SSE's initial `\r\n`, written first.
    preamble: Option<Bytes>,
    done: bool,
}

impl StreamBody {
    pub(super) fn new(guard: Guard, kind: Kind, protocol: Protocol) -> StreamBody {
        StreamBody {
            guard,
            protocol,
            preamble: (kind == Kind::Sse).then(|| Bytes::from_static(b"\r\n")),
            done: false,
        }
    }

    fn frame(&self, batch: Bytes) -> Bytes {
        let bytes = match self.guard.kind {
            Kind::HttpStream => match self.protocol {
                Protocol::Json => {
                    let mut buf = BytesMut::with_capacity(batch.len() + 1);
                    buf.put_slice(&batch);
                    buf.put_u8(b'\n');
                    buf.freeze()
                }
                Protocol::Protobuf => batch,
            },
            Kind::Sse => sse_events(&batch),
        };
        crate::metrics::transport_frame_sent(self.guard.kind.as_str(), bytes.len());
        bytes
    }
}

/// One `data:` event per `\n`-separated JSON message (JSON never holds a raw newline).
fn sse_events(batch: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(batch.len() + 16);
    for line in batch.split(|b| *b == b'\n') {
        buf.put_slice(b"data: ");
        buf.put_slice(line);
        buf.put_slice(b"\n\n");
    }
    buf.freeze()
}

impl hyper::body::Body for StreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(preamble) = this.preamble.take() {
            crate::metrics::transport_frame_sent(this.guard.kind.as_str(), preamble.len());
            return Poll::Ready(Some(Ok(Frame::data(preamble))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let event = std::task::ready!(this.guard.client.poll_next_write(cx));
            match event {
                WriteEvent::Frame(batch) => {
                    return Poll::Ready(Some(Ok(Frame::data(this.frame(batch)))));
                }
                // Only WebSocket pongs and direct-write tails: neither exists here.
                WriteEvent::Raw(_) => continue,
                WriteEvent::Close(d) => {
                    this.done = true;
                    if d.code == chorus_protocol::codes::DISCONNECT_CONNECTION_CLOSED.code {
                        return Poll::Ready(None);
                    }
                    let reply = Reply {
                        push: Some(Push {
                            disconnect: Some(chorus_protocol::Disconnect {
                                code: u32::from(d.code),
                                reason: d.reason,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    return match chorus_protocol::encode_reply(this.protocol, &reply) {
                        Ok(bytes) => Poll::Ready(Some(Ok(Frame::data(this.frame(bytes))))),
                        Err(_) => Poll::Ready(None),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.preamble.is_none()
    }
}

/// The headers of a streaming answer.
pub(super) fn set_stream_headers(h: &mut HeaderMap, kind: Kind) {
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("expire"),
        HeaderValue::from_static("0"),
    );
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    let content_type = match kind {
        Kind::Sse => "text/event-stream; charset=utf-8",
        // Centrifugo sets none (Go sniffs one); a fixed type keeps proxies from guessing.
        Kind::HttpStream => "application/octet-stream",
    };
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_framing() {
        assert_eq!(
            &sse_events(b"{\"id\":1}\n{}")[..],
            b"data: {\"id\":1}\n\ndata: {}\n\n"
        );
    }
}
