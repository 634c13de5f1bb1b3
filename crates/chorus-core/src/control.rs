//! The control port: node-to-node commands carried by the broker's control channel — node
//! heartbeats (for the cluster-wide `info`), server API operations on users whose connections
//! may be on any node, and surveys (a question every node answers, e.g. the `channels` API).
//!
//! These are plain values owned by this port: a broker that crosses processes imports them
//! from here and owns their wire encoding (the Redis broker uses `proto/backplane.proto`).
//! User operations select the user's connections, or only the one with id `client`;
//! connections have no session id on the WebSocket transport, so `session` is carried for
//! compatibility and selects nothing more.

use bytes::Bytes;
use chorus_protocol::StreamPosition;

use crate::auth::SubscribeOverride;
use crate::disconnect::Disconnect;

/// A control command with its routing.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlMessage {
    /// Id of the sending node.
    pub from: String,
    /// Id of the node it is for; empty = every node.
    pub target: String,
    pub control: Control,
}

/// A control command.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Periodic heartbeat of a node.
    NodeInfo(NodeInfo),
    /// Server API `subscribe` of a user's connections.
    Subscribe(SubscribeUser),
    /// Server API `unsubscribe`.
    Unsubscribe(UnsubscribeUser),
    /// Server API `disconnect`.
    Disconnect(DisconnectUser),
    /// Server API `refresh`.
    Refresh(RefreshUser),
    /// A question to every node; each answers with a [`Control::SurveyResponse`] targeted at
    /// the asker.
    SurveyRequest(SurveyRequest),
    SurveyResponse(SurveyResponse),
    /// The sending node is shutting down (drop it from the registry now).
    Shutdown,
}

/// What a node reports about itself (one entry of the server API `info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node id.
    pub uid: String,
    pub name: String,
    pub version: String,
    pub num_clients: u32,
    pub num_users: u32,
    pub num_subs: u32,
    pub num_channels: u32,
    /// Seconds since start.
    pub uptime: u32,
}

/// Subscribe a user's connections to a channel (each gets a `subscribe` push).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeUser {
    pub user: String,
    pub channel: String,
    /// Only this connection ("" = all of the user's connections).
    pub client: String,
    pub session: String,
    /// Channel info (`chan_info` in presence and join/leave).
    pub info: Bytes,
    /// Data for the subscribe push.
    pub data: Bytes,
    pub expire_at: i64,
    pub recover_since: Option<StreamPosition>,
    pub override_options: SubscribeOverride,
}

/// Unsubscribe a user's connections from a channel (unsubscribe push 2000).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeUser {
    pub user: String,
    pub channel: String,
    /// Only this connection ("" = all of the user's connections).
    pub client: String,
    pub session: String,
}

/// Close a user's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectUser {
    pub user: String,
    /// Only this connection ("" = all of the user's connections).
    pub client: String,
    pub session: String,
    /// Connection ids that stay connected.
    pub whitelist: Vec<String>,
    /// The close frame sent.
    pub disconnect: Disconnect,
}

/// Refresh a user's connections: expire them, or change their expiry or info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshUser {
    pub user: String,
    /// Only this connection ("" = all of the user's connections).
    pub client: String,
    pub session: String,
    /// Close the connections now with 3005 "connection expired".
    pub expired: bool,
    /// New expiry, unix seconds (0 = unchanged; not in the future = expired now).
    pub expire_at: i64,
    /// New connection info; `None` = unchanged.
    pub info: Option<Bytes>,
}

/// What a survey asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SurveyOp {
    /// Channel → number of local subscribers (answer: JSON object).
    Channels,
    /// The local presence entries of a channel (request: the channel name; answer: a
    /// Protobuf `PresenceResult`).
    Presence,
    /// The local status of users (request: a JSON array of user ids; answer: a JSON array of
    /// `UserStatus`, in request order).
    UserStatus,
    /// Commands for an emulation session held by the asked node (targeted; see
    /// [`crate::emulation`]; answer: empty, or an error).
    Emulation,
    /// An operation this node does not know (a newer peer asked); answered with an error.
    Unknown,
}

impl SurveyOp {
    /// The operation's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SurveyOp::Channels => "channels",
            SurveyOp::Presence => "presence",
            SurveyOp::UserStatus => "user_status",
            SurveyOp::Emulation => "emulation",
            SurveyOp::Unknown => "unknown",
        }
    }

    /// The operation named `name` on the wire; [`SurveyOp::Unknown`] for anything else.
    pub fn from_name(name: &str) -> SurveyOp {
        match name {
            "channels" => SurveyOp::Channels,
            "presence" => SurveyOp::Presence,
            "user_status" => SurveyOp::UserStatus,
            "emulation" => SurveyOp::Emulation,
            _ => SurveyOp::Unknown,
        }
    }
}

/// A survey question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyRequest {
    /// Correlates the answers with the question (unique per asking node).
    pub id: u64,
    pub op: SurveyOp,
    /// Operation-specific parameters.
    pub data: Bytes,
}

/// One node's answer to a survey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyResponse {
    pub id: u64,
    /// Operation-specific answer; empty when `error` is set.
    pub data: Bytes,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_op_names_round_trip() {
        for op in [
            SurveyOp::Channels,
            SurveyOp::Presence,
            SurveyOp::UserStatus,
            SurveyOp::Emulation,
        ] {
            assert_eq!(SurveyOp::from_name(op.name()), op);
        }
        assert_eq!(SurveyOp::from_name("presence_v9"), SurveyOp::Unknown);
    }
}
