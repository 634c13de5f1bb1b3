//! Sessions of the emulation transports (HTTP streaming, SSE) across nodes.
//!
//! A client on such a transport holds its stream open on one node and sends its commands in
//! separate `/emulation` requests naming that node (the id it got in the connect reply). A
//! load balancer may send such a request to any node: the node that receives it forwards the
//! commands to the named node over the broker's control channel
//! ([`crate::Node::forward_emulation`],
//! a targeted survey with op [`crate::control::SurveyOp::Emulation`]) and answers once that
//! node ran them, so the client sees the same outcome as on a direct hit.
//!
//! The transport owns its sessions: it installs a [`SessionSink`] on the node
//! ([`crate::Node::set_session_sink`]), which the node calls for commands forwarded to it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chorus_protocol::Protocol;

use crate::broker::BrokerError;

/// Where commands forwarded to this node go: the transport's table of open sessions.
#[async_trait::async_trait]
pub trait SessionSink: Send + Sync + 'static {
    /// Runs `data` (commands in `protocol`'s framing) on the session `session` of this node,
    /// as if they had arrived in an `/emulation` request here. An unknown session is not an
    /// error: the commands are dropped, as for a direct request.
    async fn deliver(&self, session: &str, protocol: Protocol, data: Bytes) -> Result<(), Refused>;
}

/// Why a node refused forwarded commands (the client's request was wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The request's encoding (JSON or Protobuf) is not the session's.
    #[error("encoding does not match the session")]
    EncodingMismatch,
}

impl Refused {
    /// The error string carried in the survey answer.
    fn wire(&self) -> &'static str {
        match self {
            Refused::EncodingMismatch => "encoding",
        }
    }
}

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The named node is not a live node of the cluster (never heard of, shut down, or its
    /// heartbeats stopped [`crate::node::cluster::NODE_INFO_TTL`] ago).
    #[error("unknown node")]
    UnknownNode,
    /// The node did not answer within [`crate::node::cluster::SURVEY_TIMEOUT`].
    #[error("no answer from the node")]
    NoAnswer,
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The node refused the commands.
    #[error(transparent)]
    Refused(Refused),
    /// The node answered with an error this version does not know, or has no sink.
    #[error("node failed: {0}")]
    Remote(String),
}

impl ForwardError {
    /// The metric label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            ForwardError::UnknownNode => "unknown_node",
            ForwardError::NoAnswer => "no_answer",
            ForwardError::Broker(_) => "broker_error",
            ForwardError::Refused(_) => "refused",
            ForwardError::Remote(_) => "failed",
        }
    }

    /// Maps a survey answer's error string back.
    pub(crate) fn from_wire(error: &str) -> ForwardError {
        match error {
            "encoding" => ForwardError::Refused(Refused::EncodingMismatch),
            other => ForwardError::Remote(other.to_string()),
        }
    }
}

/// The survey request: a protocol byte (0 JSON, 1 Protobuf), the session id (u16
/// big-endian length, then the id), then the commands.
pub(crate) fn encode(session: &str, protocol: Protocol, data: &[u8]) -> Option<Bytes> {
    let len = u16::try_from(session.len()).ok()?;
    let mut out = BytesMut::with_capacity(3 + session.len() + data.len());
    out.put_u8(match protocol {
        Protocol::Json => 0,
        Protocol::Protobuf => 1,
    });
    out.put_u16(len);
    out.put_slice(session.as_bytes());
    out.put_slice(data);
    Some(out.freeze())
}

/// The inverse of [`encode`]; `None` for anything malformed.
pub(crate) fn decode(mut raw: Bytes) -> Option<(String, Protocol, Bytes)> {
    if raw.remaining() < 3 {
        return None;
    }
    let protocol = match raw.get_u8() {
        0 => Protocol::Json,
        1 => Protocol::Protobuf,
        _ => return None,
    };
    let len = usize::from(raw.get_u16());
    if raw.remaining() < len {
        return None;
    }
    let session = String::from_utf8(raw.split_to(len).to_vec()).ok()?;
    Some((session, protocol, raw))
}

/// Runs a forwarded request on this node: `(answer, error)` of the survey.
pub(crate) async fn answer(sink: Option<&dyn SessionSink>, raw: Bytes) -> (Bytes, String) {
    let Some((session, protocol, data)) = decode(raw) else {
        return (Bytes::new(), "malformed".to_string());
    };
    let Some(sink) = sink else {
        return (Bytes::new(), "no emulation transport".to_string());
    };
    match sink.deliver(&session, protocol, data).await {
        Ok(()) => (Bytes::new(), String::new()),
        Err(refused) => (Bytes::new(), refused.wire().to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let raw = encode("s-1", Protocol::Protobuf, &[1, 2, 3]).expect("short session");
        assert_eq!(
            decode(raw),
            Some((
                "s-1".to_string(),
                Protocol::Protobuf,
                Bytes::from_static(&[1, 2, 3])
            ))
        );
        let raw = encode("", Protocol::Json, b"").expect("empty");
        assert_eq!(
            decode(raw),
            Some((String::new(), Protocol::Json, Bytes::new()))
        );
    }

    #[test]
    fn malformed_requests_decode_to_none() {
        assert_eq!(decode(Bytes::from_static(&[0, 0])), None);
        assert_eq!(decode(Bytes::from_static(&[7, 0, 0])), None);
        assert_eq!(decode(Bytes::from_static(&[0, 0, 5, b'a'])), None);
        assert_eq!(decode(Bytes::from_static(&[0, 0, 1, 0xff])), None);
        assert!(encode(&"x".repeat(70_000), Protocol::Json, b"").is_none());
    }

    #[test]
    fn errors_round_trip_through_the_wire_string() {
        let e = ForwardError::from_wire(Refused::EncodingMismatch.wire());
        assert!(matches!(
            e,
            ForwardError::Refused(Refused::EncodingMismatch)
        ));
        assert_eq!(e.label(), "refused");
        assert!(matches!(
            ForwardError::from_wire("no emulation transport"),
            ForwardError::Remote(_)
        ));
    }
}
