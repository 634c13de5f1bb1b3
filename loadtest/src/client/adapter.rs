//! The protocol adapter: what a frame from the server means to a load client. Decoding is
//! `chorus_protocol::decode_replies` (JSON lines or varint-delimited Protobuf); this module
//! turns each reply into one [`Event`], so the connection logic never looks at raw fields.

use chorus_protocol::{decode_replies, DecodeError, Protocol, Publication, Reply, SubscribeResult};

/// One server message as the load client acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server ping (an empty reply); answered with an empty command.
    Ping,
    /// The successful reply to `connect`.
    Connected { id: u32, client: String },
    /// The successful reply to `subscribe` (recovered publications inside).
    Subscribed { id: u32, result: SubscribeResult },
    /// Any other successful reply (`publish` among them).
    Ok { id: u32 },
    /// An error reply to command `id`.
    Error { id: u32, code: u32, message: String },
    /// A publication push.
    Publication {
        channel: String,
        publication: Publication,
    },
    /// A server-side unsubscribe; codes ≥ 2500 ask the client to resubscribe.
    Unsubscribed { channel: String, code: u32 },
    /// The server says it is closing the connection, and why.
    Disconnect { code: u32, reason: String },
    /// Pushes a load client ignores (join, leave, message, subscribe, …).
    Other,
}

/// Decodes every message of one frame into events, in order.
pub fn decode(protocol: Protocol, frame: &[u8]) -> Result<Vec<Event>, DecodeError> {
    Ok(decode_replies(protocol, frame)?
        .into_iter()
        .map(classify)
        .collect())
}

pub fn classify(reply: Reply) -> Event {
    if reply.is_ping() {
        return Event::Ping;
    }
    if let Some(e) = reply.error {
        return Event::Error {
            id: reply.id,
            code: e.code,
            message: e.message,
        };
    }
    if reply.id != 0 {
        return match (reply.connect, reply.subscribe) {
            (Some(c), _) => Event::Connected {
                id: reply.id,
                client: c.client,
            },
            (None, Some(result)) => Event::Subscribed {
                id: reply.id,
                result,
            },
            (None, None) => Event::Ok { id: reply.id },
        };
    }
    let Some(push) = reply.push else {
        return Event::Other;
    };
    if let Some(publication) = push.publication {
        return Event::Publication {
            channel: push.channel,
            publication,
        };
    }
    if let Some(u) = push.unsubscribe {
        return Event::Unsubscribed {
            channel: push.channel,
            code: u.code,
        };
    }
    if let Some(d) = push.disconnect {
        return Event::Disconnect {
            code: d.code,
            reason: d.reason,
        };
    }
    Event::Other
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
#[path = "adapter_tests.rs"]
mod tests;
