//! One upgraded WebSocket connection: a reader and a single writer over split socket halves.
//!
//! Both run as two futures of ONE task (joined), so a connection costs one task; they talk
//! through a small bounded channel of [`Ctrl`] frames (pongs, close echoes, protocol-error
//! closes and — for the echo endpoint — the echoed messages, so echoes and the final close keep
//! their order). Everything the session itself wants written comes from
//! [`Session::next_write`]. fastwebsockets' `auto_close`/`auto_pong` are off: with split halves
//! their obligations would land on the reader, which cannot write.
//!
//! Close handshake:
//! * peer sends Close → reader validates it, queues the echo, then drains until EOF; the writer
//!   writes the echo and half-closes TCP (the server closes first, RFC 6455 §7.1.1);
//! * protocol violation → reader queues Close 1002/1007/1009 and drains the same way
//!   (draining instead of dropping avoids a TCP RST that could destroy the close frame);
//! * server-side disconnect → the writer flushes what the session queued, writes the close
//!   (code 3000: none), half-closes; the reader then waits up to `close_linger` for the peer's
//!   Close or EOF;
//! * write timeout or error → the session is told (3009) and both halves stop at once.
//!
//! With permessage-deflate negotiated, `deflated` frames both directions (fastwebsockets
//! cannot); everything above holds for it too.

mod deflated;

use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::deflate::Deflate;
use super::message::{
    check_close_payload, close_echo, close_payload, violation_close, Assembler, Violation,
    MAX_CONTROL_PAYLOAD,
};
use super::session::{Outgoing, Session};
use crate::metrics;

/// Read half of the upgraded socket.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// Write half of the upgraded socket.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Capacity of the reader → writer channel. A peer flooding pings (or echo messages) while
/// not reading its socket stalls its own reader here instead of growing memory.
const CTRL_CAPACITY: usize = 16;

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Cumulative payload cap of one message (`websocket.message_size_limit`).
    pub message_size_limit: usize,
    /// Deadline of each frame write (`websocket.write_timeout`).
    pub write_timeout: Duration,
    /// How long to wait for the peer's Close / EOF once the closing handshake started.
    pub close_linger: Duration,
}

/// Frames the reader hands to the writer.
#[derive(Debug)]
pub enum Ctrl {
    /// A data message to write as is (the echo endpoint).
    Data(OpCode, Bytes),
    /// Bytes already framed, written as they are.
    Raw(Bytes),
    /// Answer to a Ping.
    Pong(Bytes),
    /// Close frame payload (echo of the peer's, or our protocol-error close); the writer
    /// writes it and stops.
    Close(Bytes),
}

/// How the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteEnd {
    /// A close frame (or, for code 3000, nothing) was written and TCP half-closed.
    Closed,
    /// The reader is gone (EOF); nothing more to write.
    ReaderGone,
    /// A write failed or timed out.
    Failed,
}

/// What one timed frame write means for the writer loop: `Some(end)` to stop (the last frame
/// is out, or the write failed or timed out), `None` to go on.
fn write_outcome<E: std::fmt::Display>(
    result: Result<Result<(), E>, tokio::time::error::Elapsed>,
    last: bool,
) -> Option<WriteEnd> {
    match result {
        Ok(Ok(())) if last => Some(WriteEnd::Closed),
        Ok(Ok(())) => None,
        Ok(Err(error)) => {
            tracing::debug!(%error, "websocket write failed");
            Some(WriteEnd::Failed)
        }
        Err(_) => {
            tracing::debug!("websocket write timed out");
            Some(WriteEnd::Failed)
        }
    }
}

/// How the frame loop of the reader stopped.
enum ReadEnd {
    /// EOF, I/O error, or the writer failed: stop now.
    Abort,
    /// The closing handshake is under way: discard input until EOF or the deadline.
    Drain(Instant),
}

/// Runs a connection to its end, then cleans the session up.
///
/// `shutdown` is the server's: a client session still open when it fires is closed with 3001.
/// `deflate` is the connection's permessage-deflate state when negotiated.
pub async fn run(
    session: Session,
    rd: BoxRead,
    wr: BoxWrite,
    limits: ConnLimits,
    deflate: Option<Box<Deflate>>,
    shutdown: CancellationToken,
) {
    let deflate = deflate.map(Mutex::new);
    let deflate = deflate.as_ref();
    let (ctrl_tx, ctrl_rx) = mpsc::channel(CTRL_CAPACITY);
    let close_sent = CancellationToken::new();
    let writer_failed = CancellationToken::new();
    let tokens = Tokens {
        close_sent: &close_sent,
        writer_failed: &writer_failed,
        shutdown: &shutdown,
    };
    let reader = read_half(&session, rd, ctrl_tx, tokens, limits, deflate);
    let writer = async {
        let end = write_half(&session, wr, ctrl_rx, limits.write_timeout, deflate).await;
        match end {
            WriteEnd::Failed => {
                session.write_failed();
                writer_failed.cancel();
            }
            WriteEnd::Closed | WriteEnd::ReaderGone => close_sent.cancel(),
        }
        // The client is gone for the node as soon as nothing more can be written; the reader
        // may still linger for the peer's close.
        session.cleanup().await;
    };
    tokio::join!(reader, writer);
    session.cleanup().await;
}

/// Signals the reader watches.
#[derive(Clone, Copy)]
struct Tokens<'a> {
    /// The writer wrote its close frame (or has nothing more to write).
    close_sent: &'a CancellationToken,
    writer_failed: &'a CancellationToken,
    /// Server shutdown.
    shutdown: &'a CancellationToken,
}

async fn read_half(
    session: &Session,
    mut rd: BoxRead,
    ctrl: mpsc::Sender<Ctrl>,
    tokens: Tokens<'_>,
    limits: ConnLimits,
    deflate: Option<&Mutex<Box<Deflate>>>,
) {
    let end = match deflate {
        Some(d) => deflated::read_frames(session, &mut rd, &ctrl, tokens, limits, d).await,
        None => read_frames(session, &mut rd, &ctrl, tokens, limits).await,
    };
    drop(ctrl);
    if let ReadEnd::Drain(deadline) = end {
        drain(&mut rd, deadline, tokens.writer_failed).await;
    }
}

/// Reads frames until the connection ends or the closing handshake starts.
async fn read_frames(
    session: &Session,
    rd: &mut BoxRead,
    ctrl: &mpsc::Sender<Ctrl>,
    tokens: Tokens<'_>,
    limits: ConnLimits,
) -> ReadEnd {
    let (mut ws, _) =
        fastwebsockets::after_handshake_split(&mut *rd, tokio::io::sink(), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    ws.set_auto_apply_mask(true);
    // fastwebsockets rejects a frame whose length is >= this, before reading its payload.
    ws.set_max_message_size(limits.message_size_limit.saturating_add(1));
    let mut assembler = Assembler::new(limits.message_size_limit);
    let mut no_obligation = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };

    let mut session_closed = pin!(session.closed());
    let mut discard = false;
    let mut shutdown_seen = false;
    let linger = sleep_until(Instant::now());
    let mut linger = pin!(linger);
    let mut lingering = false;

    loop {
        // read_frame is not cancel-safe (a half-read header would be lost), so the same
        // future is kept alive while other events are handled.
        let result = {
            let read = ws.read_frame(&mut no_obligation);
            let mut read = pin!(read);
            loop {
                tokio::select! {
                    biased;
                    r = &mut read => break r,
                    _ = tokens.writer_failed.cancelled() => return ReadEnd::Abort,
                    _ = &mut session_closed, if !discard => discard = true,
                    _ = tokens.shutdown.cancelled(), if !shutdown_seen => {
                        shutdown_seen = true;
                        session.server_shutdown();
                    }
                    _ = tokens.close_sent.cancelled(), if !lingering => {
                        lingering = true;
                        discard = true;
                        linger.as_mut().reset(Instant::now() + limits.close_linger);
                    }
                    _ = &mut linger, if lingering => return ReadEnd::Abort,
                }
            }
        };
        let mut frame = match result {
            Ok(frame) => frame,
            Err(error) => {
                if lingering {
                    return ReadEnd::Abort;
                }
                return match violation_of(&error) {
                    Some(v) => fail(ctrl, v, limits).await,
                    None => ReadEnd::Abort,
                };
            }
        };
        if !is_masked(&mut frame) {
            if lingering {
                return ReadEnd::Abort;
            }
            return fail(ctrl, Violation::UNMASKED, limits).await;
        }
        let fin = frame.fin;
        let opcode = frame.opcode;
        let payload = into_bytes_mut(frame.payload);
        match opcode {
            OpCode::Close => {
                if lingering {
                    // Our close is out and the peer answered: the handshake is complete.
                    return ReadEnd::Drain(Instant::now() + limits.close_linger);
                }
                if payload.len() > MAX_CONTROL_PAYLOAD {
                    return fail(ctrl, Violation::protocol("control frame too long"), limits).await;
                }
                if let Err(v) = check_close_payload(&payload) {
                    return fail(ctrl, v, limits).await;
                }
                let _ = ctrl.send(Ctrl::Close(close_echo(&payload))).await;
                return ReadEnd::Drain(Instant::now() + limits.close_linger);
            }
            OpCode::Ping => {
                // Ping > 125 bytes and fragmented control frames are rejected by fastwebsockets.
                if !lingering && ctrl.send(Ctrl::Pong(payload.freeze())).await.is_err() {
                    return ReadEnd::Abort;
                }
            }
            OpCode::Pong => {
                if payload.len() > MAX_CONTROL_PAYLOAD && !lingering {
                    return fail(ctrl, Violation::protocol("control frame too long"), limits).await;
                }
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let message = match assembler.push(fin, opcode, payload) {
                    Ok(Some(message)) => message,
                    Ok(None) => continue,
                    Err(_) if lingering => return ReadEnd::Abort,
                    Err(v) => return fail(ctrl, v, limits).await,
                };
                if discard {
                    continue;
                }
                metrics::message_received(message.1.len());
                if !Box::pin(session.on_message(message.0, message.1, Some(ctrl))).await {
                    discard = true;
                }
            }
        }
    }
}

/// Counts a violation, queues the matching close frame and starts draining.
async fn fail(ctrl: &mpsc::Sender<Ctrl>, v: Violation, limits: ConnLimits) -> ReadEnd {
    let _ = ctrl.send(Ctrl::Close(violation_close(&v))).await;
    ReadEnd::Drain(Instant::now() + limits.close_linger)
}

/// Maps a fastwebsockets read error to the close it deserves; `None` = the transport is gone.
fn violation_of(error: &WebSocketError) -> Option<Violation> {
    match error {
        WebSocketError::FrameTooLarge => Some(Violation::TOO_BIG),
        WebSocketError::InvalidUTF8 => Some(Violation::UTF8),
        WebSocketError::ReservedBitsNotZero => Some(Violation::protocol("reserved bits set")),
        WebSocketError::InvalidValue => Some(Violation::protocol("reserved opcode")),
        WebSocketError::ControlFrameFragmented => {
            Some(Violation::protocol("fragmented control frame"))
        }
        WebSocketError::PingFrameTooLarge => Some(Violation::protocol("control frame too long")),
        WebSocketError::InvalidCloseFrame => Some(Violation::protocol("invalid close frame")),
        WebSocketError::InvalidCloseCode => Some(Violation::protocol("invalid close code")),
        _ => None,
    }
}

/// Whether the frame carried a masking key. fastwebsockets keeps the key private but still
/// formats it into a frame header (and keeps it after unmasking), so the header tells.
fn is_masked(frame: &mut Frame<'_>) -> bool {
    let mut head = [0u8; 16];
    frame.fmt_head(&mut head);
    head[1] & 0x80 != 0
}

fn into_bytes_mut(payload: Payload<'_>) -> BytesMut {
    match payload {
        Payload::Bytes(b) => b,
        other => BytesMut::from(&other[..]),
    }
}

/// Discards input until EOF, an error, the deadline, or a failed writer.
async fn drain(rd: &mut BoxRead, deadline: Instant, writer_failed: &CancellationToken) {
    let mut scratch = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = rd.read(&mut scratch) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = sleep_until(deadline) => return,
            _ = writer_failed.cancelled() => return,
        }
    }
}

async fn write_half(
    session: &Session,
    mut wr: BoxWrite,
    mut ctrl: mpsc::Receiver<Ctrl>,
    write_timeout: Duration,
    deflate: Option<&Mutex<Box<Deflate>>>,
) -> WriteEnd {
    let end = match deflate {
        Some(d) => deflated::write_frames(session, &mut wr, &mut ctrl, write_timeout, d).await,
        None => write_frames(session, &mut wr, &mut ctrl, write_timeout).await,
    };
    if end == WriteEnd::Failed {
        return end;
    }
    // Half-close: the server closes TCP first; the reader keeps reading the peer's close.
    if timeout(write_timeout, wr.shutdown()).await.is_err() {
        return WriteEnd::Failed;
    }
    end
}

/// The next frame to write: from the reader first, then the session. `Err` ends the writer
/// (the reader is gone, or the session closed with 3000: nothing to write).
async fn next_ctrl(session: &Session, ctrl: &mut mpsc::Receiver<Ctrl>) -> Result<Ctrl, WriteEnd> {
    tokio::select! {
        biased;
        c = ctrl.recv() => c.ok_or(WriteEnd::ReaderGone),
        out = session.next_write() => match out {
            Outgoing::Data(opcode, bytes) => Ok(Ctrl::Data(opcode, bytes)),
            Outgoing::Raw(bytes) => Ok(Ctrl::Raw(bytes)),
            Outgoing::Close { code: 3000, .. } => Err(WriteEnd::Closed),
            Outgoing::Close { code, reason } => {
                metrics::close_sent(code);
                Ok(Ctrl::Close(Bytes::from(close_payload(code, &reason))))
            }
        },
    }
}

/// Writes frames with fastwebsockets until the close frame is out or writing fails.
async fn write_frames(
    session: &Session,
    wr: &mut BoxWrite,
    ctrl: &mut mpsc::Receiver<Ctrl>,
    write_timeout: Duration,
) -> WriteEnd {
    let (_, mut ws) = fastwebsockets::after_handshake_split(tokio::io::empty(), wr, Role::Server);
    loop {
        let next = match next_ctrl(session, ctrl).await {
            Ok(next) => next,
            Err(end) => return end,
        };
        let (frame, last) = match &next {
            Ctrl::Data(opcode, bytes) => {
                metrics::frame_sent(bytes.len());
                (
                    Frame::new(true, *opcode, None, Payload::Borrowed(bytes)),
                    false,
                )
            }
            Ctrl::Pong(bytes) => (Frame::pong(Payload::Borrowed(bytes)), false),
            Ctrl::Close(bytes) => (Frame::close_raw(Payload::Borrowed(bytes)), true),
            Ctrl::Raw(_) => {
                // Only the lean driver queues pre-framed bytes (it registers the direct
                // writer and queues pongs that way); reaching here is a bug, not input.
                tracing::error!("pre-framed bytes on the generic websocket writer");
                return WriteEnd::Failed;
            }
        };
        if let Some(end) = write_outcome(timeout(write_timeout, ws.write_frame(frame)).await, last)
        {
            return end;
        }
    }
}
