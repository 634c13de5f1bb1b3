//! One client connection's protocol state machine.
//!
//! The transport feeds complete messages to [`Client::handle_frame`] (commands of a frame run
//! strictly in order, under the connection's command lock) and runs a single writer that loops
//! on [`Client::next_write`]. The timers — server pings, the pong deadline (3012), the
//! stale-connection deadline (3502) and connection expiry (3005) — live in the node's timer
//! wheel (`timers.rs`, [`crate::wheel`]). When the transport ends it calls [`Client::cleanup`].
//! Backend hooks (`hooks.rs`, [`crate::proxy`]) run inside the command that needs them: a
//! connection waits for its own hook, never for another connection's.

mod commands;
mod connect;
mod hooks;
pub mod rate;
mod recovery;
mod server_ops;
mod subs;
mod subscribe;
mod timers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use bytes::Bytes;
use chorus_protocol::codes::{self, DisconnectCode, ErrorCode};
use chorus_protocol::{
    decode_commands, encode_reply, join_frame, ClientInfo, Command, Method, Protocol, Reply,
};

use crate::auth::TokenError;
use crate::disconnect::Disconnect;
use crate::hub::subscriber::Subscriber;
use crate::metrics;
use crate::node::Node;
use crate::outbound::{Outbound, Taken};
use crate::sync;

/// How the transport describes a new connection.
#[derive(Debug, Clone)]
pub struct ClientParams {
    pub protocol: Protocol,
    pub remote_addr: Option<SocketAddr>,
}

/// What the connection's single writer must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteEvent {
    /// One transport frame: several messages already packed (text for JSON, binary for
    /// Protobuf).
    Frame(Bytes),
    /// Bytes the transport framed itself ([`Client::push_transport_frame`], or the unwritten
    /// tail of a direct write): write them as they are.
    Raw(Bytes),
    /// Write a close frame with this code and reason, then stop writing.
    Close(Disconnect),
}

/// A reply over `client.reply_max_size` (nothing was queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyTooLarge;

/// Why a command failed: an error reply, or a disconnect.
#[derive(Debug)]
pub(crate) enum Fail {
    Error(chorus_protocol::Error),
    Disconnect(Disconnect),
}

impl From<ErrorCode> for Fail {
    fn from(e: ErrorCode) -> Self {
        Fail::Error(e.to_error())
    }
}

impl From<DisconnectCode> for Fail {
    fn from(d: DisconnectCode) -> Self {
        Fail::Disconnect(d.into())
    }
}

/// One subscription as the connection sees it.
#[derive(Debug)]
pub(crate) struct ClientSub {
    pub(crate) subscriber: Arc<Subscriber>,
    pub(crate) server_side: bool,
    pub(crate) presence: bool,
    pub(crate) join_leave: bool,
    pub(crate) chan_info: Bytes,
    /// Unix seconds; the subscription ends (2501) if not refreshed by then.
    pub(crate) expires_at: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) connected: bool,
    pub(crate) user: Arc<str>,
    pub(crate) conn_info: Bytes,
    /// Unix seconds; the connection ends (3005) if not refreshed by then (+ grace).
    pub(crate) expires_at: Option<i64>,
    pub(crate) subs: subs::Subs,
    /// What the backend hooks need of this connection (headers, meta); none without hooks.
    pub(crate) hooks: Option<Box<hooks::HookState>>,
    /// The session id of a connection over an emulation transport (HTTP streaming, SSE):
    /// sent in the connect reply with the node id, so the client can address `/emulation`.
    pub(crate) session: Option<Box<str>>,
}

pub struct Client {
    node: Node,
    me: Weak<Client>,
    id: Arc<str>,
    params: ClientParams,
    outbound: Arc<Outbound>,
    /// Serializes command processing with server-API-initiated changes of this connection.
    cmd_lock: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    timers: Mutex<timers::Timers>,
    /// `client.command_rate_limit` (only the reader touches it; the lock is uncontended).
    rate: Mutex<rate::Bucket>,
    cleaned: AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("protocol", &self.params.protocol)
            .finish()
    }
}

/// Which kind of token was refused: the protocol answers them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Connection,
    Subscription,
}

impl TokenKind {
    /// The one mapping of a token refusal to the protocol: expired → error 109 (the SDK gets a
    /// new token and retries); invalid → disconnect 3500 for a connection token, error 103
    /// for a subscription token.
    pub(crate) fn refusal(self, error: &TokenError) -> Fail {
        match (error, self) {
            (TokenError::Expired, _) => codes::ERROR_TOKEN_EXPIRED.into(),
            (TokenError::Invalid(_), TokenKind::Connection) => {
                codes::DISCONNECT_INVALID_TOKEN.into()
            }
            (TokenError::Invalid(_), TokenKind::Subscription) => {
                codes::ERROR_PERMISSION_DENIED.into()
            }
        }
    }
}

impl Client {
    pub(crate) fn new(node: Node, params: ClientParams) -> Arc<Client> {
        let opts = &node.options().client;
        let outbound = Arc::new(Outbound::for_client(
            opts.queue_max_size,
            opts.direct_write_min_interval.get(),
            params.protocol,
        ));
        let timers = timers::Timers::new(opts, node.wheel());
        Arc::new_cyclic(|me| Client {
            node: node.clone(),
            me: me.clone(),
            id: Arc::from(uuid::Uuid::new_v4().to_string()),
            params,
            outbound,
            cmd_lock: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::default()),
            timers: Mutex::new(timers),
            rate: Mutex::new(rate::Bucket::new(opts.command_rate_limit)),
            cleaned: AtomicBool::new(false),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_shared(&self) -> Arc<str> {
        self.id.clone()
    }

    pub fn protocol(&self) -> Protocol {
        self.params.protocol
    }

    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.params.remote_addr
    }

    pub(crate) fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        sync::lock(&self.state)
    }

    /// The authenticated user ("" before connect and for anonymous connections).
    pub fn user(&self) -> Arc<str> {
        self.lock_state().user.clone()
    }

    pub fn is_connected(&self) -> bool {
        self.lock_state().connected
    }

    pub(crate) fn info(&self, chan_info: Bytes) -> ClientInfo {
        let st = self.lock_state();
        ClientInfo {
            user: st.user.to_string(),
            client: self.id.to_string(),
            conn_info: st.conn_info.clone(),
            chan_info,
        }
    }

    /// Server-initiated close (idempotent; the first one wins).
    pub fn disconnect(&self, d: Disconnect) {
        let code = d.code;
        if self.outbound.close(d) {
            tracing::debug!(client = %self.id, code, "disconnecting client");
        }
    }

    pub fn is_closed(&self) -> bool {
        self.outbound.is_closed()
    }

    /// Marks this connection as one over an emulation transport, addressed by `session`
    /// (a secret the transport generated): the connect reply then carries `session` and the
    /// node's id. Call before the connect command runs.
    pub fn set_session(&self, session: &str) {
        self.lock_state().session = Some(session.into());
    }

    /// Lets the transport write messages straight from the pushing task when nothing is
    /// queued (see [`crate::outbound`]). Set once, before the first command.
    pub fn set_direct_writer(&self, direct: Arc<dyn crate::outbound::DirectWrite>) {
        self.outbound.set_direct(direct);
    }

    /// Queues a frame the transport built itself (a pong), in order with everything else;
    /// it comes back from [`Client::next_write`] as [`WriteEvent::Raw`]. False if closing.
    pub fn push_transport_frame(&self, frame: Bytes) -> bool {
        self.outbound.push_raw(frame)
    }

    /// For a transport closing on its own (the peer's close, a protocol violation): closes the
    /// queue (no more direct writes) and returns the pre-framed bytes at its front — the
    /// unwritten tail of a direct write — to finish before the close frame.
    pub fn close_transport(&self) -> Vec<Bytes> {
        self.outbound
            .close(codes::DISCONNECT_CONNECTION_CLOSED.into());
        self.outbound.take_raw_front()
    }

    /// Resolves once fewer than `client.reply_max_size` reply (and transport) bytes wait to be
    /// written: a transport awaits this before queueing another frame of its own.
    pub async fn reply_room(&self) {
        let max = self.node.options().client.reply_max_size;
        self.outbound.reply_room(max).await
    }

    /// Resolves once a disconnect was requested.
    pub async fn closed(&self) {
        self.outbound.closed().await
    }

    /// Encodes a message for this connection; a payload its encoding cannot carry closes it
    /// with 3506 (`None`).
    fn encode(&self, reply: &Reply) -> Option<Bytes> {
        match encode_reply(self.params.protocol, reply) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::debug!(client = %self.id, error = %e, "reply cannot be encoded");
                self.disconnect(codes::DISCONNECT_INAPPROPRIATE_PROTOCOL.into());
                None
            }
        }
    }

    /// Enqueues a server-initiated push (bounded by `client.queue_max_size`, like fan-out).
    pub(crate) fn send_push(&self, push: &Reply) {
        if let Some(bytes) = self.encode(push) {
            self.outbound.push(bytes);
            metrics::client_sent(metrics::MessageType::Push, 1);
        }
    }

    /// Enqueues the reply to one of the client's commands. Over `client.reply_max_size` nothing
    /// is queued and `Err(ReplyTooLarge)` lets the caller answer otherwise.
    pub(crate) fn send_reply(&self, reply: &Reply) -> Result<(), ReplyTooLarge> {
        let Some(bytes) = self.encode(reply) else {
            return Ok(());
        };
        let max = self.node.options().client.reply_max_size;
        if bytes.len() > max {
            tracing::debug!(client = %self.id, size = bytes.len(), max, "reply too large");
            return Err(ReplyTooLarge);
        }
        self.outbound.push_reply(bytes);
        metrics::client_sent(metrics::MessageType::Reply, 1);
        Ok(())
    }

    /// Answers a command with an error.
    pub(crate) fn send_error(&self, id: u32, error: chorus_protocol::Error) {
        let reply = Reply {
            id,
            error: Some(error),
            ..Default::default()
        };
        // An error reply is a few dozen bytes: never over the bound.
        let _ = self.send_reply(&reply);
    }

    /// Decodes and runs the commands of one complete transport message, strictly in order.
    pub async fn handle_frame(&self, frame: &[u8]) {
        if self.is_closed() {
            return;
        }
        let commands = match decode_commands(self.params.protocol, frame) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(client = %self.id, error = %e, "malformed frame");
                metrics::bad_frame("decode");
                self.disconnect(codes::DISCONNECT_BAD_REQUEST.into());
                return;
            }
        };
        let _serial = self.cmd_lock.lock().await;
        let reply_max = self.node.options().client.reply_max_size;
        for command in commands {
            // Replies the client has not read yet hold its next command back (see Outbound).
            self.outbound.reply_room(reply_max).await;
            if self.is_closed() {
                break;
            }
            if let Err(d) = self.dispatch(command).await {
                self.disconnect(d);
                break;
            }
        }
    }

    async fn dispatch(&self, cmd: Command) -> Result<(), Disconnect> {
        let id = cmd.id;
        let method = cmd.method();
        let label = method.name();
        if method == Method::Pong {
            self.on_pong();
            return Ok(());
        }
        let verdict = sync::lock(&self.rate).take(tokio::time::Instant::now());
        match verdict {
            rate::Verdict::Run => {}
            rate::Verdict::Refuse => {
                metrics::rate_limited("refused");
                metrics::command_error(label, codes::ERROR_TOO_MANY_REQUESTS.code);
                if id != 0 {
                    self.send_error(id, codes::ERROR_TOO_MANY_REQUESTS.to_error());
                }
                return Ok(());
            }
            rate::Verdict::Disconnect => {
                metrics::rate_limited("disconnect");
                return Err(codes::DISCONNECT_TOO_MANY_REQUESTS.into());
            }
        }
        // Only `send` is fire-and-forget; every other command needs an id for its reply.
        if id == 0 && method != Method::Send {
            metrics::bad_frame("no_id");
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        let connected = self.is_connected();
        if method != Method::Connect && !connected {
            metrics::bad_frame("not_connected");
            return Err(codes::DISCONNECT_BAD_REQUEST.into());
        }
        let started = Instant::now();
        let result = self.run_command(method, cmd, connected).await;
        metrics::command(label, started.elapsed());
        match result {
            Ok(Some(reply)) => {
                if self.send_reply(&reply).is_err() {
                    metrics::reply_too_large(label, "error");
                    metrics::command_error(label, codes::ERROR_LIMIT_EXCEEDED.code);
                    self.send_error(id, codes::ERROR_LIMIT_EXCEEDED.to_error());
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(Fail::Error(error)) => {
                metrics::command_error(label, error.code);
                self.send_error(id, error);
                if method == Method::Connect {
                    // After a failed connect the server stops reading and closes.
                    return Err(codes::DISCONNECT_CONNECTION_CLOSED.into());
                }
                Ok(())
            }
            Err(Fail::Disconnect(d)) => Err(d),
        }
    }

    /// Packs what is queued into the next frame, or waits. Cancel-safe. (Timers run on the
    /// node's wheel task and queue or write directly what they send.)
    pub async fn next_write(&self) -> WriteEvent {
        std::future::poll_fn(|cx| self.poll_next_write(cx)).await
    }

    /// [`Client::next_write`] as a poll function: waiting holds no state (only the task's
    /// waker, registered with the queue). For the connection's single writer.
    pub fn poll_next_write(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<WriteEvent> {
        let opts = &self.node.options().client;
        let max_messages = opts.write_batch_max_messages.max(1);
        let max_bytes = opts.write_batch_max_bytes.max(1);
        loop {
            if let Some(taken) = self.outbound.try_take(max_messages, max_bytes) {
                return std::task::Poll::Ready(match taken {
                    Taken::Messages(m) => WriteEvent::Frame(join_frame(self.params.protocol, &m)),
                    Taken::Raw(b) => WriteEvent::Raw(b),
                    Taken::Close(d) => {
                        metrics::disconnect(d.code);
                        WriteEvent::Close(d)
                    }
                });
            }
            std::task::ready!(self.outbound.poll_wait(cx));
        }
    }

    /// Removes everything this connection holds: subscriptions (with presence removal and
    /// leave events), hub registration. Idempotent; call once the transport is gone.
    pub async fn cleanup(&self) {
        if self.cleaned.swap(true, Ordering::AcqRel) {
            return;
        }
        self.outbound
            .close(codes::DISCONNECT_CONNECTION_CLOSED.into());
        self.stop_timers();
        let _serial = self.cmd_lock.lock().await;
        let channels: Vec<Arc<str>> = self.lock_state().subs.keys().cloned().collect();
        for channel in channels {
            self.remove_subscription(&channel, None).await;
        }
        let user = self.user();
        self.node.unregister_client(&self.id, &user);
    }
}

#[cfg(test)]
mod size_guard {
    /// Every idle connection holds one `Client` and one `Outbound` (each in an `Arc`):
    /// jemalloc rounds `Client` (+16 B) up to 384 B and `Outbound` (+16 B) to 256 B. Growing
    /// either past these bounds costs 64 B per connection or more; see docs/benchmarks.md (S1).
    #[test]
    fn per_connection_structs_stay_within_their_size_class() {
        assert!(std::mem::size_of::<super::Client>() <= 368);
        assert!(std::mem::size_of::<crate::outbound::Outbound>() <= 240);
    }
}
