//! The generic driver's reader and writer for a connection that negotiated permessage-deflate
//! (a `wss://` connection behind chorus' own TLS).
//!
//! fastwebsockets 0.10 has no RSV1 support, so such a connection is framed by our own
//! [`Parser`] (the lean driver's: masking, RSV1 on a message's first frame, inflation capped at
//! `websocket.message_size_limit` → 1009, UTF-8 after inflation, control-frame rules), and its
//! writer writes whole frames built with [`server_frame`] / [`compressed_frame`]. The close
//! handshake, the signals the reader watches and the reader → writer [`Ctrl`] channel are
//! those of [`super`]; only the framing differs.
//!
//! The compressor and decompressor sit in one [`Deflate`] behind a `Mutex` that both halves
//! lock for one (de)compression at a time, never across an `.await`. The halves are futures of
//! one task, so the lock is never contended; the single writer keeps the compressor fed in
//! wire order, which context takeover needs.

use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::sync::lock;
use fastwebsockets::OpCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use super::{
    fail, next_ctrl, write_outcome, BoxRead, BoxWrite, ConnLimits, Ctrl, ReadEnd, Tokens, WriteEnd,
};
use crate::metrics;
use crate::ws::deflate::Deflate;
use crate::ws::frame::{compressed_frame, server_frame, Event, Parser};
use crate::ws::message::close_echo;
use crate::ws::session::Session;

/// Bytes asked of the transport per read (a TLS record is at most 16 KiB of plaintext).
const READ_CHUNK: usize = 16 * 1024;

/// [`super::read_frames`] with our parser: reads until the connection ends or the closing
/// handshake starts.
pub(super) async fn read_frames(
    session: &Session,
    rd: &mut BoxRead,
    ctrl: &mpsc::Sender<Ctrl>,
    tokens: Tokens<'_>,
    limits: ConnLimits,
    deflate: &Mutex<Box<Deflate>>,
) -> ReadEnd {
    let mut parser = Parser::new(limits.message_size_limit);
    let mut events = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];

    let mut session_closed = pin!(session.closed());
    let mut discard = false;
    let mut shutdown_seen = false;
    let linger = sleep_until(Instant::now());
    let mut linger = pin!(linger);
    let mut lingering = false;

    loop {
        for event in events.drain(..) {
            match event {
                Event::Message(opcode, payload) => {
                    if discard || session.is_closing() {
                        discard = true;
                        continue;
                    }
                    metrics::message_received(payload.len());
                    if !Box::pin(session.on_message(opcode, payload, Some(ctrl))).await {
                        discard = true;
                    }
                }
                Event::Ping(payload) => {
                    if !lingering && ctrl.send(Ctrl::Pong(payload)).await.is_err() {
                        return ReadEnd::Abort;
                    }
                }
                Event::Pong => {}
                Event::Close(payload) => {
                    if !lingering {
                        let _ = ctrl.send(Ctrl::Close(close_echo(&payload))).await;
                    }
                    // Our close is out (lingering) and the peer answered, or we queued the echo.
                    return ReadEnd::Drain(Instant::now() + limits.close_linger);
                }
                Event::Violation(_) if lingering => return ReadEnd::Abort,
                Event::Violation(v) => return fail(ctrl, v, limits).await,
            }
        }
        // `read` is cancel-safe: a read that loses the race consumed nothing.
        let n = tokio::select! {
            biased;
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return ReadEnd::Abort,
                Ok(n) => n,
            },
            _ = tokens.writer_failed.cancelled() => return ReadEnd::Abort,
            _ = &mut session_closed, if !discard => {
                discard = true;
                continue;
            }
            _ = tokens.shutdown.cancelled(), if !shutdown_seen => {
                shutdown_seen = true;
                session.server_shutdown();
                continue;
            }
            _ = tokens.close_sent.cancelled(), if !lingering => {
                lingering = true;
                discard = true;
                linger.as_mut().reset(Instant::now() + limits.close_linger);
                continue;
            }
            _ = &mut linger, if lingering => return ReadEnd::Abort,
        };
        let mut d = lock(deflate);
        parser.feed_with(&buf[..n], &mut events, Some(&mut **d));
    }
}

/// [`super::write_frames`] writing our own frames: data compressed when the session's
/// message is at least `websocket.compression_min_size`.
pub(super) async fn write_frames(
    session: &Session,
    wr: &mut BoxWrite,
    ctrl: &mut mpsc::Receiver<Ctrl>,
    write_timeout: Duration,
    deflate: &Mutex<Box<Deflate>>,
) -> WriteEnd {
    loop {
        let next = match next_ctrl(session, ctrl).await {
            Ok(next) => next,
            Err(end) => return end,
        };
        let (frame, last) = match next {
            Ctrl::Data(opcode, bytes) => (data_frame(opcode, &bytes, deflate), false),
            Ctrl::Pong(bytes) => (server_frame(OpCode::Pong, &bytes), false),
            Ctrl::Close(bytes) => (server_frame(OpCode::Close, &bytes), true),
            Ctrl::Raw(_) => {
                // As in `super::write_frames`: only the lean driver queues pre-framed bytes.
                tracing::error!("pre-framed bytes on the generic websocket writer");
                return WriteEnd::Failed;
            }
        };
        let write = async {
            wr.write_all(&frame).await?;
            wr.flush().await
        };
        if let Some(end) = write_outcome(timeout(write_timeout, write).await, last) {
            return end;
        }
    }
}

/// One data message as a frame: compressed (RSV1) when long enough, as the lean driver does.
fn data_frame(opcode: OpCode, bytes: &Bytes, deflate: &Mutex<Box<Deflate>>) -> Bytes {
    metrics::frame_sent(bytes.len());
    let mut d = lock(deflate);
    if d.wants(bytes.len()) {
        let packed = d.compress(bytes);
        metrics::compressed(bytes.len(), packed.len());
        compressed_frame(opcode, &packed)
    } else {
        server_frame(opcode, bytes)
    }
}
