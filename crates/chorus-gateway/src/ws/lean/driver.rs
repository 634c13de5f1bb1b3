//! The connection's task as a hand-written future ([`Driver`]).
//!
//! An idle connection's task is per-connection memory, and an `async fn` stores every live
//! variable of every state side by side with its nested futures: the `run` of before (a
//! `select!` over the reader and writer futures, each with copies of its arguments) was
//! 920 B. This struct holds the session, the socket, the reader's and writer's state and the
//! limits; what only a closing connection needs (the close handshake, the linger) is a boxed
//! future built when the open phase ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use fastwebsockets::OpCode;
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::reader::Reader;
use super::{close_now, drain, ReadEnd, Socket};
use crate::metrics;
use crate::ws::conn::{ConnLimits, Ctrl};
use crate::ws::deflate::Deflate;
use crate::ws::frame::{compressed_frame, server_frame};
use crate::ws::message::{close_echo, close_payload, violation_close};
use crate::ws::session::{Outgoing, Session};

/// The frame the connection's task is writing (what the socket did not take at once).
#[derive(Default)]
pub(super) struct Writer {
    pub(super) pending: Bytes,
    /// The write deadline, armed when the socket first refuses bytes of `pending`.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Writer {
    /// Writes `pending` to the end within `limit` (counted from the first time the socket
    /// is full); false when a write fails or the deadline passes. Progress is kept in `self`.
    pub(super) fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        sock: &Socket,
        limit: Duration,
    ) -> Poll<bool> {
        while !self.pending.is_empty() {
            match sock.stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => match sock.stream.try_write(&self.pending) {
                    Ok(0) => return self.done(false),
                    Ok(n) => self.pending.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return self.done(false),
                },
                Poll::Ready(Err(_)) => return self.done(false),
                Poll::Pending => {
                    let deadline = self.deadline.get_or_insert_with(|| Box::pin(sleep(limit)));
                    if deadline.as_mut().poll(cx).is_ready() {
                        return self.done(false);
                    }
                    return Poll::Pending;
                }
            }
        }
        self.done(true)
    }

    fn done(&mut self, ok: bool) -> Poll<bool> {
        self.deadline = None;
        Poll::Ready(ok)
    }

    /// [`Writer::poll_flush`] as a future, for the close handshake.
    pub(super) async fn flush_by(&mut self, sock: &Socket, limit: Duration) -> bool {
        std::future::poll_fn(|cx| self.poll_flush(cx, sock, limit)).await
    }
}

/// The echo endpoint's extra state (Autobahn only): the reader → writer channel and the
/// server's shutdown signal. Boxed: client connections carry one pointer for it.
pub(super) struct Echo {
    pub(super) tx: mpsc::Sender<Ctrl>,
    pub(super) rx: mpsc::Receiver<Ctrl>,
    pub(super) shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Echo {
    /// The next write: an echoed message or pong, or the close at shutdown (1001).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Outgoing> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ctrl::Data(op, b))) => return Poll::Ready(Outgoing::Data(op, b)),
            Poll::Ready(Some(Ctrl::Pong(b))) => {
                return Poll::Ready(Outgoing::Raw(server_frame(OpCode::Pong, &b)))
            }
            Poll::Ready(Some(Ctrl::Raw(b))) => return Poll::Ready(Outgoing::Raw(b)),
            // The reader's close goes through `ReadEnd`; nothing more comes from it.
            Poll::Ready(Some(Ctrl::Close(_)) | None) | Poll::Pending => {}
        }
        self.shutdown.as_mut().poll(cx).map(|()| Outgoing::Close {
            code: 1001,
            reason: "shutdown".into(),
        })
    }
}

/// What only some connections need (see [`Driver`]).
pub(super) struct Extra {
    echo: Option<Echo>,
    /// Only when negotiated.
    deflate: Option<Deflate>,
}

/// How the writer stopped.
enum WriteEnd {
    /// The close frame (none for 3000) is out and TCP half-closed.
    Closed,
    /// A write failed or timed out.
    Failed,
}

type Tail = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One connection's task: reads and handles input, writes what the session queues, then runs
/// the close handshake and cleans the session up. `hold` is dropped at the very end.
pub struct Driver<H> {
    session: Session,
    sock: Arc<Socket>,
    reader: Reader,
    writer: Writer,
    /// The session's close frame is written: once flushed, half-close and stop writing.
    closing: bool,
    /// The echo endpoint's state and the permessage-deflate state, boxed together and only
    /// when either exists: a plain client connection carries one null pointer for both.
    extra: Option<Box<Extra>>,
    limits: ConnLimits,
    /// Set when the open phase ends: the close handshake and the session's cleanup.
    tail: Option<Tail>,
    hold: Option<H>,
}

// No field is ever pinned in place: the futures it holds are boxed.
impl<H> Unpin for Driver<H> {}

impl<H> std::fmt::Debug for Driver<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("session", &self.session)
            .field("closing", &self.closing)
            .field("ended", &self.tail.is_some())
            .finish_non_exhaustive()
    }
}

impl<H> Driver<H> {
    pub(super) fn new(
        session: Session,
        sock: Arc<Socket>,
        reader: Reader,
        echo: Option<Box<Echo>>,
        deflate: Option<Box<Deflate>>,
        limits: ConnLimits,
        hold: H,
    ) -> Self {
        Driver {
            session,
            sock,
            reader,
            writer: Writer::default(),
            closing: false,
            extra: (echo.is_some() || deflate.is_some()).then(|| {
                Box::new(Extra {
                    echo: echo.map(|e| *e),
                    deflate: deflate.map(|d| *d),
                })
            }),
            limits,
            tail: None,
            hold: Some(hold),
        }
    }

    /// Writes what the session queues until it closes or a write fails. The writer goes
    /// first (as a `biased` select would): a queued close is not overtaken by input.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<WriteEnd> {
        loop {
            if !self.writer.pending.is_empty() {
                // Only a socket that did not take a frame at once gets here.
                let limit = self.limits.write_timeout;
                if !ready!(self.writer.poll_flush(cx, &self.sock, limit)) {
                    tracing::debug!("websocket write failed or timed out");
                    return Poll::Ready(WriteEnd::Failed);
                }
            }
            if self.closing {
                self.sock.shutdown_write();
                return Poll::Ready(WriteEnd::Closed);
            }
            let echo = self.extra.as_deref_mut().and_then(|x| x.echo.as_mut());
            let next = match (echo, &self.session) {
                (Some(echo), _) => ready!(echo.poll_next(cx)),
                (None, Session::Client(client)) => {
                    let event = ready!(client.poll_next_write(cx));
                    Outgoing::of(client, event)
                }
                // `run` gives every echo session its `Echo`; without one, just close.
                (None, Session::Echo(_)) => Outgoing::Close {
                    code: 3000,
                    reason: String::new(),
                },
            };
            match next {
                Outgoing::Data(opcode, bytes) => {
                    metrics::frame_sent(bytes.len());
                    let deflate = self.extra.as_deref_mut().and_then(|x| x.deflate.as_mut());
                    self.writer.pending = match deflate {
                        Some(d) if d.wants(bytes.len()) => {
                            let packed = d.compress(&bytes);
                            metrics::compressed(bytes.len(), packed.len());
                            compressed_frame(opcode, &packed)
                        }
                        _ => server_frame(opcode, &bytes),
                    };
                }
                Outgoing::Raw(bytes) => self.writer.pending = bytes,
                Outgoing::Close { code: 3000, .. } => {
                    self.sock.shutdown_write();
                    return Poll::Ready(WriteEnd::Closed);
                }
                Outgoing::Close { code, reason } => {
                    metrics::close_sent(code);
                    self.writer.pending =
                        server_frame(OpCode::Close, &close_payload(code, &reason));
                    self.closing = true;
                }
            }
        }
    }

    /// The rest of the connection once the open phase ended.
    fn tail(&mut self, end: Result<WriteEnd, ReadEnd>) -> Tail {
        self.reader.stop();
        self.extra = None;
        let session = self.session.clone();
        let sock = self.sock.clone();
        let mut writer = std::mem::take(&mut self.writer);
        let limits = self.limits;
        let close = match end {
            Ok(WriteEnd::Closed) => {
                // Our close is out: the client is gone for the node; wait for the peer's
                // close (or EOF) a little.
                return Box::pin(async move {
                    session.cleanup().await;
                    drain(&sock, Instant::now() + limits.close_linger).await;
                });
            }
            Ok(WriteEnd::Failed) => {
                session.write_failed();
                None
            }
            Err(ReadEnd::Gone) => None,
            Err(ReadEnd::PeerClose(payload)) => Some(close_echo(&payload)),
            Err(ReadEnd::Violation(v)) => Some(violation_close(&v)),
        };
        Box::pin(async move {
            if let Some(close) = close {
                close_now(&session, &sock, &mut writer, close, limits).await;
            }
            session.cleanup().await;
        })
    }
}

impl<H> Future for Driver<H> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if let Some(tail) = this.tail.as_mut() {
                ready!(tail.as_mut().poll(cx));
                this.tail = None;
                drop(this.hold.take());
                return Poll::Ready(());
            }
            let end = match this.poll_write(cx) {
                Poll::Ready(w) => Ok(w),
                Poll::Pending => {
                    let (echo, deflate) = match this.extra.as_deref_mut() {
                        Some(x) => (x.echo.as_ref().map(|e| &e.tx), x.deflate.as_mut()),
                        None => (None, None),
                    };
                    match this
                        .reader
                        .poll_read(cx, &this.session, &this.sock, echo, deflate)
                    {
                        Poll::Ready(r) => Err(r),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            };
            this.tail = Some(this.tail(end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The task of every idle connection holds a `Driver`; tokio rounds a task's cell up to
    /// 128 B, so a few bytes more can cost 128 per connection.
    #[test]
    fn an_idle_connection_task_stays_small() {
        assert!(std::mem::size_of::<Driver<()>>() <= 216);
        assert!(std::mem::size_of::<Reader>() <= 80);
    }
}
