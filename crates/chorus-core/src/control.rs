//! Node-to-node commands carried by the broker's control channel: node heartbeats (for the
//! cluster-wide `info`), server API operations on users whose connections may be on any node,
//! and surveys (request/response across nodes, e.g. the `channels` API).
//!
//! These are plain values; a broker that crosses processes owns their wire encoding (the Redis
//! broker uses `proto/backplane.proto`).

use bytes::Bytes;

use crate::node::api::{NodeInfo, ServerSubscribe};

/// A control command.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Periodic heartbeat of a node.
    NodeInfo(NodeInfo),
    SubscribeUser(ServerSubscribe),
    UnsubscribeUser {
        user: String,
        channel: String,
        client: String,
        session: String,
    },
    DisconnectUser {
        user: String,
        client: String,
        session: String,
        whitelist: Vec<String>,
        code: u16,
        reason: String,
    },
    /// A question to every node; each answers with a `SurveyResponse` targeted at the asker.
    SurveyRequest {
        id: u64,
        op: String,
        data: Bytes,
    },
    SurveyResponse {
        id: u64,
        data: Bytes,
        error: String,
    },
    /// The sending node is shutting down (drop it from the registry now).
    Shutdown,
}

/// A control command with its routing.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlMessage {
    /// Id of the sending node.
    pub from: String,
    /// Id of the node it is for; empty = every node.
    pub target: String,
    pub control: Control,
}
