//! The lean driver's reader as a hand-written poll function rather than an `async fn`.
//!
//! Every idle connection's task holds its reader's state, so its size is per-connection
//! memory. As an `async fn` (parser, event list, drain iterator, the awaited message and
//! readiness futures, and copies of its arguments) it was 560 B; this struct is about 150 B:
//! a command's future lives in a box only while it runs (it owns a clone of the session, so
//! nothing borrows the connection's state), and waiting for input holds nothing
//! (`poll_read_ready` registers the task's waker with the socket).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::{pong, ReadEnd, Socket, SCRATCH_BUF};
use crate::metrics;
use crate::ws::conn::Ctrl;
use crate::ws::deflate::Deflate;
use crate::ws::frame::{Event, Parser};
use crate::ws::session::Session;

/// A message or ping being handled; resolves to false once input must be discarded.
type Running = Pin<Box<dyn Future<Output = bool> + Send>>;

pub(super) struct Reader {
    parser: Parser,
    /// Events parsed from the last read, handled in order from `next`.
    events: Vec<Event>,
    next: usize,
    /// The session is closing (or a message failed): input is read and dropped.
    discard: bool,
    running: Option<Running>,
}

impl Reader {
    /// A reader that first handles `early` (bytes read past the handshake).
    pub(super) fn new(
        message_size_limit: usize,
        early: &[u8],
        deflate: Option<&mut Deflate>,
    ) -> Self {
        let mut reader = Reader {
            parser: Parser::new(message_size_limit),
            events: Vec::new(),
            next: 0,
            discard: false,
            running: None,
        };
        if !early.is_empty() {
            reader.parser.feed_with(early, &mut reader.events, deflate);
        }
        reader
    }

    /// Reads, parses and handles messages one at a time, in order, until the transport ends,
    /// the peer closes, or a violation.
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session,
        sock: &Socket,
        echo: Option<&mpsc::Sender<Ctrl>>,
        mut deflate: Option<&mut Deflate>,
    ) -> Poll<ReadEnd> {
        loop {
            if let Some(running) = self.running.as_mut() {
                let ok = std::task::ready!(running.as_mut().poll(cx));
                self.running = None;
                self.discard |= !ok;
            }
            if self.next < self.events.len() {
                let event = std::mem::replace(&mut self.events[self.next], Event::Pong);
                self.next += 1;
                if let Some(end) = self.start(event, session, echo) {
                    return Poll::Ready(end);
                }
                continue;
            }
            // Release the event list's memory between reads: idle connections hold nothing.
            self.events = Vec::new();
            self.next = 0;
            if std::task::ready!(sock.stream.poll_read_ready(cx)).is_err() {
                return Poll::Ready(ReadEnd::Gone);
            }
            let parser = &mut self.parser;
            let events = &mut self.events;
            let deflate = deflate.as_deref_mut();
            let read = SCRATCH_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                match sock.stream.try_read(&mut buf) {
                    Ok(0) => Err(()),
                    Ok(n) => {
                        parser.feed_with(&buf[..n], events, deflate);
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(_) => Err(()),
                }
            });
            if read.is_err() {
                return Poll::Ready(ReadEnd::Gone);
            }
        }
    }

    /// Starts handling one event; `Some` ends the reader.
    fn start(
        &mut self,
        event: Event,
        session: &Session,
        echo: Option<&mpsc::Sender<Ctrl>>,
    ) -> Option<ReadEnd> {
        match event {
            Event::Message(opcode, payload) => {
                if self.discard || session.is_closing() {
                    self.discard = true;
                    return None;
                }
                metrics::message_received(payload.len());
                let (session, echo) = (session.clone(), echo.cloned());
                self.running = Some(Box::pin(async move {
                    session.on_message(opcode, payload, echo.as_ref()).await
                }));
            }
            Event::Ping(payload) => {
                if !self.discard {
                    let (session, echo) = (session.clone(), echo.cloned());
                    self.running = Some(Box::pin(async move {
                        pong(&session, payload, echo.as_ref()).await
                    }));
                }
            }
            Event::Pong => {}
            Event::Close(payload) => return Some(ReadEnd::PeerClose(payload)),
            Event::Violation(v) => return Some(ReadEnd::Violation(v)),
        }
        None
    }
}

impl Reader {
    /// Stops handling input: a command still running is dropped (the connection is ending).
    pub(super) fn stop(&mut self) {
        self.running = None;
        self.events = Vec::new();
        self.next = 0;
    }
}
