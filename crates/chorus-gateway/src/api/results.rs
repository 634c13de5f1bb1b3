//! Result objects of the API methods, serialized with the JSON rules of Centrifugo's API:
//! snake_case names, zero values omitted except the always-emitted fields that `cent`'s models
//! and centrifuge-js require (`presence`, `channels`, `nodes[].uid/name/...`, the presence
//! counters). History and presence stats reuse the protocol types of `chorus_protocol`.

use std::collections::BTreeMap;

use serde::Serialize;

use chorus_core::control::NodeInfo;
use chorus_protocol::{ClientInfo, StreamPosition};

use super::ErrorBody;

/// `{}` for a channel without history, else `{"offset":N,"epoch":"…"}`.
#[derive(Serialize)]
pub struct PublishResult {
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl From<Option<StreamPosition>> for PublishResult {
    fn from(position: Option<StreamPosition>) -> Self {
        let position = position.unwrap_or_default();
        PublishResult {
            offset: position.offset,
            epoch: position.epoch,
        }
    }
}

/// One entry of `broadcast` `responses`: `{"result":{…}}` or `{"error":{…}}`.
#[derive(Serialize)]
pub struct PublishResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<PublishResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
pub struct BroadcastResult<'a> {
    pub responses: Vec<PublishResponse<'a>>,
}

#[derive(Serialize)]
pub struct PresenceResult<'a> {
    /// Always present, `{}` when nobody is there (`cent` and centrifuge-js require it).
    pub presence: BTreeMap<&'a str, &'a ClientInfo>,
}

#[derive(Serialize)]
pub struct ChannelInfo {
    pub num_clients: u32,
}

#[derive(Serialize)]
pub struct ChannelsResult {
    /// Always present; sorted by name.
    pub channels: BTreeMap<String, ChannelInfo>,
}

/// `info`: one entry per node (no `metrics`/`process` sections).
#[derive(Serialize)]
pub struct InfoResult<'a> {
    pub nodes: Vec<NodeResult<'a>>,
}

/// One node of `info`; every field is always present (`cent` requires `uid` and `name`).
#[derive(Serialize)]
pub struct NodeResult<'a> {
    pub uid: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub num_clients: u32,
    pub num_users: u32,
    pub num_subs: u32,
    pub num_channels: u32,
    pub uptime: u32,
}

impl<'a> From<&'a NodeInfo> for NodeResult<'a> {
    fn from(n: &'a NodeInfo) -> Self {
        NodeResult {
            uid: &n.uid,
            name: &n.name,
            version: &n.version,
            num_clients: n.num_clients,
            num_users: n.num_users,
            num_subs: n.num_subs,
            num_channels: n.num_channels,
            uptime: n.uptime,
        }
    }
}
