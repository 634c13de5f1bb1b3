//! Frame codecs: decoding the commands of one WebSocket message and encoding replies and pushes.
//!
//! * JSON: one object per command, several objects joined by a single `\n` in one text message
//!   (at most one trailing `\n` tolerated).
//! * Protobuf: each message prefixed by its length as a varint, messages concatenated.
//!
//! Encoded messages carry no separator; [`join_frame`] packs several of them into one frame the
//! way the protocol allows, so the writer can send a batch with one write.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::messages::{Command, Reply};

/// The encoding of a connection, fixed at upgrade time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Text frames, `\n`-separated JSON objects, payloads as raw JSON.
    Json,
    /// Binary frames, varint-length-delimited Protobuf messages.
    Protobuf,
}

impl Protocol {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Protobuf => "protobuf",
        }
    }
}

/// Why a frame could not be decoded. Every variant maps to disconnect 3501 (bad request).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid json command: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid protobuf command: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("truncated length-delimited message")]
    Truncated,
    #[error("empty frame")]
    Empty,
}

/// Why a message could not be encoded for a connection.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A payload that is not valid JSON cannot be sent to a JSON client (disconnect 3506).
    #[error("payload cannot be carried by the json protocol: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// Decodes all commands of one transport message, in order.
pub fn decode_commands(protocol: Protocol, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    match protocol {
        Protocol::Json => decode_json(frame),
        Protocol::Protobuf => decode_protobuf(frame),
    }
}

fn decode_json(frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let frame = frame.strip_suffix(b"\n").unwrap_or(frame);
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    frame
        .split(|b| *b == b'\n')
        .map(|line| serde_json::from_slice::<Command>(line).map_err(DecodeError::from))
        .collect()
}

fn decode_protobuf(frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut buf = frame;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = prost::encoding::decode_varint(&mut buf)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
        if len > buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (msg, rest) = buf.split_at(len);
        out.push(Command::decode(msg)?);
        buf = rest;
    }
    Ok(out)
}

/// Encodes one reply or push for a connection of `protocol`, without separator.
pub fn encode_reply(protocol: Protocol, reply: &Reply) -> Result<Bytes, EncodeError> {
    match protocol {
        Protocol::Json => Ok(Bytes::from(serde_json::to_vec(reply)?)),
        Protocol::Protobuf => {
            let len = reply.encoded_len();
            let mut buf = BytesMut::with_capacity(len + prost::length_delimiter_len(len));
            // Encoding into a buffer of sufficient capacity cannot fail.
            reply
                .encode_length_delimited(&mut buf)
                .map_err(|_| unreachable_capacity())?;
            Ok(buf.freeze())
        }
    }
}

fn unreachable_capacity() -> EncodeError {
    EncodeError::NotJson(serde::de::Error::custom("buffer capacity"))
}

/// Encodes a command (used by tests and the load generator).
pub fn encode_command(protocol: Protocol, command: &Command) -> Result<Bytes, EncodeError> {
    match protocol {
        Protocol::Json => Ok(Bytes::from(serde_json::to_vec(command)?)),
        Protocol::Protobuf => {
            let mut buf = BytesMut::with_capacity(command.encoded_len() + 5);
            command
                .encode_length_delimited(&mut buf)
                .map_err(|_| unreachable_capacity())?;
            Ok(buf.freeze())
        }
    }
}

/// Decodes the replies of one frame (used by tests and the load generator).
pub fn decode_replies(protocol: Protocol, frame: &[u8]) -> Result<Vec<Reply>, DecodeError> {
    match protocol {
        Protocol::Json => {
            let frame = frame.strip_suffix(b"\n").unwrap_or(frame);
            frame
                .split(|b| *b == b'\n')
                .map(|l| serde_json::from_slice::<Reply>(l).map_err(DecodeError::from))
                .collect()
        }
        Protocol::Protobuf => {
            let mut buf = frame;
            let mut out = Vec::new();
            while !buf.is_empty() {
                out.push(Reply::decode_length_delimited(&mut buf)?);
            }
            Ok(out)
        }
    }
}

/// The server ping: an empty reply (`{}` in JSON, a single `0x00` in Protobuf).
pub fn ping_message(protocol: Protocol) -> Bytes {
    match protocol {
        Protocol::Json => Bytes::from_static(b"{}"),
        Protocol::Protobuf => Bytes::from_static(&[0]),
    }
}

/// Packs encoded messages into one transport frame: `\n`-joined for JSON, concatenated for
/// Protobuf (each message already carries its length prefix).
pub fn join_frame(protocol: Protocol, messages: &[Bytes]) -> Bytes {
    if messages.len() == 1 {
        return messages[0].clone();
    }
    let sep = usize::from(protocol == Protocol::Json);
    let total: usize = messages.iter().map(|m| m.len() + sep).sum();
    let mut buf = BytesMut::with_capacity(total);
    for (i, m) in messages.iter().enumerate() {
        if sep == 1 && i > 0 {
            buf.put_u8(b'\n');
        }
        buf.put_slice(m);
    }
    buf.freeze()
}
