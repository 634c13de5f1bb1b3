//! A push encoded at most once per protocol, shared by every subscriber as cheap `Bytes`
//! clones. Encoding happens lazily on first use by a subscriber of that protocol, so a room
//! with only JSON clients never pays for Protobuf and vice versa.

use std::sync::OnceLock;

use bytes::Bytes;
use chorus_protocol::codes::UnsubscribeCode;
use chorus_protocol::{
    encode_reply, ClientInfo, Join, Leave, Protocol, Publication, Push, Reply, Unsubscribe,
};

#[derive(Debug)]
pub struct Encoded {
    reply: Reply,
    json: OnceLock<Option<Bytes>>,
    protobuf: OnceLock<Option<Bytes>>,
}

impl Encoded {
    pub fn new(reply: Reply) -> Self {
        Encoded {
            reply,
            json: OnceLock::new(),
            protobuf: OnceLock::new(),
        }
    }

    fn push(channel: &str, f: impl FnOnce(&mut Push)) -> Self {
        let mut push = Push {
            channel: channel.to_string(),
            ..Default::default()
        };
        f(&mut push);
        Encoded::new(Reply {
            push: Some(push),
            ..Default::default()
        })
    }

    pub fn publication(channel: &str, publication: Publication) -> Self {
        Self::push(channel, |p| p.publication = Some(publication))
    }

    pub fn join(channel: &str, info: ClientInfo) -> Self {
        Self::push(channel, |p| p.join = Some(Join { info: Some(info) }))
    }

    pub fn leave(channel: &str, info: ClientInfo) -> Self {
        Self::push(channel, |p| p.leave = Some(Leave { info: Some(info) }))
    }

    pub fn unsubscribe(channel: &str, code: UnsubscribeCode) -> Self {
        Self::push(channel, |p| {
            p.unsubscribe = Some(Unsubscribe {
                code: code.code,
                reason: code.reason.to_string(),
            })
        })
    }

    /// The publication this push carries, if it is one.
    pub fn carried_publication(&self) -> Option<&Publication> {
        self.reply.push.as_ref()?.publication.as_ref()
    }

    /// The encoded message for `protocol`, or `None` if the payload cannot be carried by it
    /// (non-JSON data for a JSON client).
    pub fn get(&self, protocol: Protocol) -> Option<Bytes> {
        let cell = match protocol {
            Protocol::Json => &self.json,
            Protocol::Protobuf => &self.protobuf,
        };
        cell.get_or_init(|| encode_reply(protocol, &self.reply).ok())
            .clone()
    }
}
