//! Opening one connection: TCP connect (from a chosen source address), WebSocket upgrade,
//! then `connect` and `subscribe` in one frame (like centrifuge-js) and both replies. Every
//! way this can fail is a [`HandshakeError`] with a short reason key for the report.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use chorus_protocol::{
    encode_command, join_frame, Command, ConnectRequest, DecodeError, EncodeError, Protocol,
    SubscribeResult,
};
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use super::adapter::{self, Event};
use super::ConnPlan;
use crate::net::Target;
use crate::recovery::SubState;

pub type Ws = WebSocket<TokioIo<Upgraded>>;

pub const CONNECT_ID: u32 = 1;
pub const SUBSCRIBE_ID: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("bind {ip}: {source}")]
    Bind {
        ip: IpAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("tcp connect: {0}")]
    Tcp(#[source] std::io::Error),
    #[error("websocket upgrade: {0}")]
    Upgrade(#[source] WebSocketError),
    #[error("websocket: {0}")]
    Ws(#[source] WebSocketError),
    #[error("connect error {code} {message}")]
    ConnectRefused { code: u32, message: String },
    #[error("subscribe error {code} {message}")]
    SubscribeRefused { code: u32, message: String },
    #[error("disconnect push {code} {reason}")]
    Disconnected { code: u32, reason: String },
    #[error("closed by server during handshake (code {code:?})")]
    Closed { code: Option<u16> },
    #[error("undecodable reply: {0}")]
    Decode(#[from] DecodeError),
    #[error("unencodable command: {0}")]
    Encode(#[from] EncodeError),
    #[error("not established within --connect-timeout")]
    Timeout,
    #[error("run stopped during connect")]
    Stopped,
}

impl HandshakeError {
    /// The key under which the report counts this failure (`failures_by_reason`).
    pub fn reason(&self) -> String {
        match self {
            HandshakeError::Bind { .. } => "bind".into(),
            HandshakeError::Tcp(e) => match e.kind() {
                ErrorKind::ConnectionRefused => "tcp_refused".into(),
                ErrorKind::TimedOut => "tcp_timeout".into(),
                ErrorKind::AddrNotAvailable | ErrorKind::AddrInUse => "tcp_no_local_port".into(),
                ErrorKind::ConnectionReset => "tcp_reset".into(),
                _ => "tcp_other".into(),
            },
            HandshakeError::Upgrade(WebSocketError::InvalidStatusCode(s)) => format!("upgrade_{s}"),
            HandshakeError::Upgrade(_) => "upgrade".into(),
            HandshakeError::Ws(_) => "ws_io".into(),
            HandshakeError::ConnectRefused { code, .. } => format!("connect_error_{code}"),
            HandshakeError::SubscribeRefused { code, .. } => format!("subscribe_error_{code}"),
            HandshakeError::Disconnected { code, .. } => format!("disconnect_{code}"),
            HandshakeError::Closed { code: Some(c) } => format!("closed_{c}"),
            HandshakeError::Closed { code: None } => "closed".into(),
            HandshakeError::Decode(_) => "decode".into(),
            HandshakeError::Encode(_) => "encode".into(),
            HandshakeError::Timeout => "timeout".into(),
            HandshakeError::Stopped => "stopped".into(),
        }
    }

    /// Whether the connection got as far as the subscribe reply.
    pub fn at_subscribe(&self) -> bool {
        matches!(self, HandshakeError::SubscribeRefused { .. })
    }
}

struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

/// TCP connect (bound to `source` with port 0 first) and WebSocket upgrade.
pub async fn open(
    target: &Target,
    source: Option<IpAddr>,
    protocol: Protocol,
) -> Result<Ws, HandshakeError> {
    let sock = TcpSocket::new_v4().map_err(HandshakeError::Tcp)?;
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|source| HandshakeError::Bind { ip, source })?;
    }
    let stream = sock
        .connect(target.addr)
        .await
        .map_err(HandshakeError::Tcp)?;
    stream.set_nodelay(true).map_err(HandshakeError::Tcp)?;
    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(target.path.as_str())
        .header("Host", target.authority.as_str())
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13");
    if protocol == Protocol::Protobuf {
        req = req.header("Sec-WebSocket-Protocol", "centrifuge-protobuf");
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| HandshakeError::Tcp(std::io::Error::other(e)))?;
    let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
        .await
        .map_err(HandshakeError::Upgrade)?;
    Ok(ws)
}

pub fn frame_of(protocol: Protocol, data: Bytes) -> Frame<'static> {
    let payload = Payload::Owned(data.to_vec());
    match protocol {
        Protocol::Json => Frame::text(payload),
        Protocol::Protobuf => Frame::binary(payload),
    }
}

/// The close code of a close frame's payload, when it has one.
fn close_code(payload: &[u8]) -> Option<u16> {
    match payload {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// What a handshake yields: the socket, the subscribe result and the events that came
/// along with the replies (publications already flowing, pings).
pub type Opened = (Ws, SubscribeResult, Vec<Event>);

/// Opens the socket, sends `connect` and `subscribe` (with recovery after the first time)
/// in one frame and waits for both replies.
pub async fn handshake(
    target: &Target,
    source: Option<IpAddr>,
    plan: &ConnPlan,
    sub: &SubState,
) -> Result<Opened, HandshakeError> {
    let mut ws = open(target, source, plan.protocol).await?;
    let connect = Command {
        id: CONNECT_ID,
        connect: Some(ConnectRequest {
            token: plan.token.clone(),
            name: "chorus-load".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let subscribe = Command {
        id: SUBSCRIBE_ID,
        subscribe: Some(sub.subscribe_request(&plan.channel)),
        ..Default::default()
    };
    let frame = join_frame(
        plan.protocol,
        &[
            encode_command(plan.protocol, &connect)?,
            encode_command(plan.protocol, &subscribe)?,
        ],
    );
    ws.write_frame(frame_of(plan.protocol, frame))
        .await
        .map_err(HandshakeError::Ws)?;
    let mut extra = Vec::new();
    let (mut connected, mut subscribed) = (false, None);
    while !(connected && subscribed.is_some()) {
        let f = ws.read_frame().await.map_err(HandshakeError::Ws)?;
        match f.opcode {
            OpCode::Text | OpCode::Binary => {}
            OpCode::Close => {
                return Err(HandshakeError::Closed {
                    code: close_code(&f.payload),
                })
            }
            _ => continue,
        }
        for event in adapter::decode(plan.protocol, &f.payload)? {
            match event {
                Event::Connected { id: CONNECT_ID, .. } => connected = true,
                Event::Subscribed {
                    id: SUBSCRIBE_ID,
                    result,
                } => subscribed = Some(result),
                Event::Error {
                    id: CONNECT_ID,
                    code,
                    message,
                } => return Err(HandshakeError::ConnectRefused { code, message }),
                Event::Error {
                    id: SUBSCRIBE_ID,
                    code,
                    message,
                } => return Err(HandshakeError::SubscribeRefused { code, message }),
                Event::Disconnect { code, reason } => {
                    return Err(HandshakeError::Disconnected { code, reason })
                }
                other => extra.push(other),
            }
        }
    }
    Ok((ws, subscribed.unwrap_or_default(), extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_short_stable_keys() {
        let refused = HandshakeError::Tcp(std::io::Error::from(ErrorKind::ConnectionRefused));
        assert_eq!(refused.reason(), "tcp_refused");
        let ports = HandshakeError::Tcp(std::io::Error::from(ErrorKind::AddrNotAvailable));
        assert_eq!(ports.reason(), "tcp_no_local_port");
        assert_eq!(
            HandshakeError::Upgrade(WebSocketError::InvalidStatusCode(503)).reason(),
            "upgrade_503"
        );
        let sub = HandshakeError::SubscribeRefused {
            code: 103,
            message: "permission denied".into(),
        };
        assert_eq!(
            (sub.reason().as_str(), sub.at_subscribe()),
            ("subscribe_error_103", true)
        );
        assert_eq!(
            HandshakeError::Closed { code: Some(3500) }.reason(),
            "closed_3500"
        );
        assert_eq!(close_code(&[0x0d, 0xac, b'x']), Some(3500));
        assert_eq!(close_code(&[]), None);
    }
}
