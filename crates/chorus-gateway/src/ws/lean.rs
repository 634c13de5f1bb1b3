//! The lean connection driver: a WebSocket over our own TCP socket, with direct writes.
//!
//! Used for every upgrade over chorus' own listener (a plain `TcpStream`); anything else goes
//! through the generic [`super::conn`] driver. Two things make it lean:
//!
//! * **Direct writes.** The socket is shared ([`Socket`]) and registered with the client as its
//!   [`DirectWrite`]: when nothing is queued, a fan-out delivery, a reply or a ping is framed and
//!   written with one non-blocking `writev` from the task that produced it. The connection's
//!   own task wakes only to read, or to flush what the socket did not take. Before (S2a, 5,000
//!   subscribers × 10 msgs/s, perf): each delivery woke the connection task, polled its
//!   reader and writer futures, armed a write timer and copied the frame — 48 % of server CPU
//!   was user space.
//! * **Nothing held while idle.** Bytes are read into a per-thread scratch buffer and parsed
//!   in place (`Parser`); the command future is boxed only while a command runs; the task is
//!   a hand-written future ([`Driver`], 216 B) whose reader is a poll function ([`reader`]),
//!   and waiting holds only wakers (no timer, no `Notified`, no cancellation future). Before
//!   (heaptrack, idle subscribed connection): an 8.2 KiB task (the reader and writer futures
//!   with their selects, timers and fastwebsockets state) plus an 8 KiB read buffer; then a
//!   920 B `async fn`.
//!
//! Close handshake (as [`super::conn`]): the peer's Close is echoed (status code only) after the
//! frame on the wire is finished, TCP is half-closed, and input is drained until EOF or
//! `close_linger`; a protocol violation closes with 1002/1007/1009 the same way; a server-side
//! close flushes what the session queued, writes the close (none for 3000), half-closes and
//! lingers; a write error or timeout ends the session (3009) at once.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chorus_core::outbound::{Direct, DirectWrite};
use fastwebsockets::OpCode;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::conn::{ConnLimits, Ctrl};
use super::deflate::Deflate;
use super::frame::{server_frame, server_head, MAX_HEAD};
use super::message::Violation;
use super::session::{data_opcode, Session};
use crate::metrics;

mod driver;
mod reader;

pub use driver::Driver;
use driver::{Echo, Writer};

/// Per-thread read buffer. 32 KiB: a read takes what the socket holds up to this; a bigger
/// frame is assembled over several reads in the connection's `partial` buffer.
const SCRATCH: usize = 32 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// Capacity of the echo endpoint's reader → writer channel (as [`super::conn`]).
const ECHO_CAPACITY: usize = 16;

/// The connection's socket, shared by its task and every task that writes to it directly.
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    opcode: OpCode,
}

/// Messages up to this size are framed into one buffer and written with one `send(2)`;
/// bigger ones go out with `writev(2)` of header and payload (no copy).
const COPY_MAX: usize = 4096;

thread_local! {
    /// The last message this thread framed, and its frame: a fan-out writes the same message
    /// to every subscriber, so it is framed once per thread, not once per delivery. Keeping
    /// the source alive keeps its address unique, so (pointer, length, opcode) identify it.
    static LAST_FRAMED: RefCell<Option<(Bytes, OpCode, Bytes)>> = const { RefCell::new(None) };
}

/// `message` framed for `opcode`, from the per-thread cache when it was the last one framed.
fn framed(opcode: OpCode, message: &Bytes) -> Bytes {
    LAST_FRAMED.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some((src, op, frame)) = cell.as_ref() {
            if src.as_ptr() == message.as_ptr() && src.len() == message.len() && *op == opcode {
                return frame.clone();
            }
        }
        let frame = server_frame(opcode, message);
        *cell = Some((message.clone(), opcode, frame.clone()));
        frame
    })
}

impl DirectWrite for Socket {
    fn try_write(&self, message: &Bytes) -> Direct {
        if message.len() <= COPY_MAX {
            // One contiguous buffer and send(2): measured cheaper than writev(2) of two
            // slices on this path (no iovec import, no VFS layer; see docs/benchmarks.md).
            let frame = framed(self.opcode, message);
            let sent = self.stream.try_io(Interest::WRITABLE, || {
                socket2::SockRef::from(&self.stream).send(&frame)
            });
            return match sent {
                Ok(0) | Err(_) => Direct::NotNow,
                Ok(n) => {
                    metrics::frame_sent(message.len());
                    if n == frame.len() {
                        Direct::Written
                    } else {
                        Direct::Partial(frame.slice(n..))
                    }
                }
            };
        }
        let mut head = [0u8; MAX_HEAD];
        let h = server_head(&mut head, self.opcode, message.len());
        let bufs = [IoSlice::new(&head[..h]), IoSlice::new(message)];
        match self.stream.try_write_vectored(&bufs) {
            Ok(0) | Err(_) => Direct::NotNow,
            Ok(n) => {
                metrics::frame_sent(message.len());
                if n == h + message.len() {
                    Direct::Written
                } else if n >= h {
                    Direct::Partial(message.slice(n - h..))
                } else {
                    let mut tail = BytesMut::with_capacity(h - n + message.len());
                    tail.extend_from_slice(&head[n..h]);
                    tail.extend_from_slice(message);
                    Direct::Partial(tail.freeze())
                }
            }
        }
    }
}

impl Socket {
    /// Half-closes: the server closes TCP first; the peer's close is still read.
    fn shutdown_write(&self) {
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
    }
}

/// How the reader stopped.
enum ReadEnd {
    /// EOF or a read error: the transport is gone.
    Gone,
    /// The peer sent a valid Close: echo this payload.
    PeerClose(Bytes),
    /// The peer broke the protocol.
    Violation(Violation),
}

/// The task that runs a connection over our own TCP socket to its end, then cleans the
/// session up (see [`Driver`]). `early` holds bytes hyper read past the handshake; `hold` is
/// kept until the end (the connection's registry entry and gauge guard).
///
/// No shutdown signal of its own: at shutdown the node closes every client it holds (3001,
/// spread over the drain window, then any that registered meanwhile), and the echo session
/// watches its own token. (Waiting on a cancellation token here cost 72 B per connection.)
pub fn run<H: Send>(
    session: Session,
    stream: TcpStream,
    early: Bytes,
    limits: ConnLimits,
    mut deflate: Option<Box<Deflate>>,
    hold: H,
) -> Driver<H> {
    let opcode = match &session {
        Session::Client(c) => data_opcode(c.protocol()),
        Session::Echo(_) => OpCode::Text,
    };
    let sock = Arc::new(Socket { stream, opcode });
    let echo = match &session {
        Session::Client(client) => {
            // A compressed connection writes only from its task: with context takeover the
            // deflate stream must be compressed in wire order, and a direct write that the
            // socket refuses would hand the uncompressed message back to the queue.
            if deflate.is_none() {
                client.set_direct_writer(sock.clone());
            }
            None
        }
        Session::Echo(shutdown) => {
            let (tx, rx) = mpsc::channel(ECHO_CAPACITY);
            let shutdown = Box::pin(shutdown.clone().cancelled_owned());
            Some(Box::new(Echo { tx, rx, shutdown }))
        }
    };
    let reader = reader::Reader::new(limits.message_size_limit, &early, deflate.as_deref_mut());
    Driver::new(session, sock, reader, echo, deflate, limits, hold)
}

/// Closes from our side at once (peer close, violation): finishes the frame on the wire,
/// writes the close frame, half-closes and drains.
async fn close_now(
    session: &Session,
    sock: &Socket,
    writer: &mut Writer,
    close: Bytes,
    limits: ConnLimits,
) {
    if !writer.flush_by(sock, limits.write_timeout).await {
        return;
    }
    if let Session::Client(client) = session {
        for raw in client.close_transport() {
            writer.pending = raw;
            if !writer.flush_by(sock, limits.write_timeout).await {
                return;
            }
        }
    }
    writer.pending = server_frame(OpCode::Close, &close);
    if !writer.flush_by(sock, limits.write_timeout).await {
        return;
    }
    sock.shutdown_write();
    // Nothing more will be written: the client is gone for the node while we linger.
    session.cleanup().await;
    drain(sock, Instant::now() + limits.close_linger).await;
}

/// Answers a ping, in order with everything else the connection writes.
async fn pong(session: &Session, payload: Bytes, echo: Option<&mpsc::Sender<Ctrl>>) -> bool {
    match (session, echo) {
        (Session::Client(client), _) => {
            // A peer that pings and does not read is bounded like unread replies.
            client.reply_room().await;
            client.push_transport_frame(server_frame(OpCode::Pong, &payload))
        }
        (Session::Echo(_), Some(tx)) => tx.send(Ctrl::Pong(payload)).await.is_ok(),
        (Session::Echo(_), None) => false,
    }
}

/// Discards input until EOF, an error, or the deadline.
async fn drain(sock: &Socket, deadline: Instant) {
    let mut sleep = pin!(sleep_until(deadline));
    loop {
        tokio::select! {
            r = sock.stream.readable() => {
                if r.is_err() {
                    return;
                }
                let gone = SCRATCH_BUF.with(|buf| {
                    match sock.stream.try_read(&mut buf.borrow_mut()) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                    }
                });
                if gone {
                    return;
                }
            }
            _ = &mut sleep => return,
        }
    }
}
