//! What sits behind a WebSocket connection: a chorus client session or the echo endpoint.
//!
//! The reader and writer in [`super::conn`] are shared; they only see this enum: where
//! complete messages go ([`Session::on_message`]), what to write next ([`Session::next_write`]),
//! when the server wants the connection closed ([`Session::closed`]) and what to do when the
//! transport is gone ([`Session::cleanup`]).

use std::sync::Arc;

use bytes::Bytes;
use chorus_core::{Client, Disconnect, WriteEvent};
use chorus_protocol::codes::{DISCONNECT_BAD_REQUEST, DISCONNECT_SHUTDOWN, DISCONNECT_WRITE_ERROR};
use chorus_protocol::Protocol;
use fastwebsockets::OpCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::Ctrl;
use crate::metrics::{self, ProtocolErrorKind};

/// What the session wants written.
#[derive(Debug)]
pub enum Outgoing {
    /// One data frame.
    Data(OpCode, Bytes),
    /// Bytes already framed (a pong the transport queued through the session, or the tail of
    /// a partial direct write): written as they are.
    Raw(Bytes),
    /// A close frame with this code and reason, then stop (code 3000: no frame, just close).
    Close { code: u16, reason: String },
}

/// The session behind one connection. Cloning is one reference count: a command's future
/// owns a clone, so it does not borrow the connection's state.
#[derive(Clone)]
pub enum Session {
    /// A client of the v2 protocol, run by the core.
    Client(Arc<Client>),
    /// `/connection/echo`: every complete message is sent back with its opcode. The token is
    /// the server's shutdown signal (closes with 1001).
    Echo(CancellationToken),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Session::Client(c) => f.debug_tuple("Client").field(&c.id()).finish(),
            Session::Echo(_) => f.write_str("Echo"),
        }
    }
}

impl Outgoing {
    /// What `client`'s write event means on the wire.
    pub fn of(client: &Client, event: WriteEvent) -> Outgoing {
        match event {
            WriteEvent::Frame(bytes) => Outgoing::Data(data_opcode(client.protocol()), bytes),
            WriteEvent::Raw(bytes) => Outgoing::Raw(bytes),
            WriteEvent::Close(d) => Outgoing::Close {
                code: d.code,
                reason: d.reason,
            },
        }
    }
}

pub(super) fn data_opcode(protocol: Protocol) -> OpCode {
    match protocol {
        Protocol::Json => OpCode::Text,
        Protocol::Protobuf => OpCode::Binary,
    }
}

impl Session {
    /// Handles one complete data message. Returns `false` when further messages must be
    /// discarded (the session is closing). `echo` carries the echo endpoint's messages to its
    /// writer.
    pub async fn on_message(
        &self,
        opcode: OpCode,
        payload: Bytes,
        echo: Option<&mpsc::Sender<Ctrl>>,
    ) -> bool {
        match (self, echo) {
            (Session::Client(client), _) => {
                if opcode != data_opcode(client.protocol()) {
                    tracing::debug!(
                        ?opcode,
                        "message opcode does not match the connection's protocol"
                    );
                    metrics::protocol_error(ProtocolErrorKind::WrongOpcode);
                    client.disconnect(Disconnect::from(DISCONNECT_BAD_REQUEST));
                    return false;
                }
                // Callers box this future: a command's future (subscribe awaits the broker) is
                // large, and only exists while the command runs — not in every idle
                // connection's task.
                client.handle_frame(&payload).await;
                !client.is_closed()
            }
            (Session::Echo(_), Some(tx)) => tx.send(Ctrl::Data(opcode, payload)).await.is_ok(),
            (Session::Echo(_), None) => false,
        }
    }

    /// The next thing to write. Cancel-safe.
    pub async fn next_write(&self) -> Outgoing {
        match self {
            Session::Client(client) => Outgoing::of(client, client.next_write().await),
            Session::Echo(shutdown) => {
                shutdown.cancelled().await;
                Outgoing::Close {
                    code: 1001,
                    reason: "shutdown".into(),
                }
            }
        }
    }

    /// Resolves once the server decided to close this connection.
    pub async fn closed(&self) {
        match self {
            Session::Client(client) => client.closed().await,
            Session::Echo(shutdown) => shutdown.cancelled().await,
        }
    }

    /// Whether the server decided to close this connection (its input is then discarded).
    pub fn is_closing(&self) -> bool {
        match self {
            Session::Client(client) => client.is_closed(),
            Session::Echo(shutdown) => shutdown.is_cancelled(),
        }
    }

    /// A write failed or timed out.
    pub fn write_failed(&self) {
        if let Session::Client(client) = self {
            client.disconnect(Disconnect::from(DISCONNECT_WRITE_ERROR));
        }
    }

    /// The server is shutting down and this connection is still open (the node drained its
    /// clients already; this catches connections it did not know yet).
    pub fn server_shutdown(&self) {
        if let Session::Client(client) = self {
            client.disconnect(Disconnect::from(DISCONNECT_SHUTDOWN));
        }
    }

    /// The transport is gone. Idempotent.
    pub async fn cleanup(&self) {
        if let Session::Client(client) = self {
            client.cleanup().await;
        }
    }
}
