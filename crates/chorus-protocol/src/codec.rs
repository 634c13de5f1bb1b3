//! Frame codecs: decoding the commands of one WebSocket message and encoding replies and pushes.
//!
//! * JSON: one object per command, several objects joined by a single `\n` in one text message
//!   (at most one trailing `\n` tolerated).
//! * Protobuf: each message prefixed by its length as a varint, messages concatenated.
//!
//! Encoded messages carry no separator; [`join_frame`] packs several of them into one frame the
//! way the protocol allows, so the writer can send a batch with one write.

use crate::messages::{Command, Reply};
use bytes::{BufMut, Bytes, BytesMut};

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
    #[error("json command is not an object")]
    NotAnObject,
}

/// Why a message could not be encoded for a connection.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A payload that is not valid JSON cannot be sent to a JSON client (disconnect 3506).
    #[error("payload cannot be carried by the json protocol: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// Decodes all commands of one transport message, in order.
///
/// JSON: objects separated by single `\n`, at most one trailing `\n`; an empty frame or an
/// empty line is an error; unknown fields are ignored, wrong field types are errors.
/// Protobuf: varint-length-delimited messages; a zero length (`0x00`) is an empty command (a
/// pong); a truncated length or body is an error. Never panics, whatever the input.
pub fn decode_commands(protocol: Protocol, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    match protocol {
        Protocol::Json => decode_json_lines(frame),
        Protocol::Protobuf => decode_delimited(frame),
    }
}

/// Decodes the replies of one frame (used by tests and the load generator).
pub fn decode_replies(protocol: Protocol, frame: &[u8]) -> Result<Vec<Reply>, DecodeError> {
    match protocol {
        Protocol::Json => decode_json_lines(frame),
        Protocol::Protobuf => decode_delimited(frame),
    }
}

fn decode_json_lines<T: serde::de::DeserializeOwned>(frame: &[u8]) -> Result<Vec<T>, DecodeError> {
    let frame = frame.strip_suffix(b"\n").unwrap_or(frame);
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    frame
        .split(|b| *b == b'\n')
        .map(|line| {
            // serde's derived structs also accept a JSON array (fields by position); the
            // protocol only has objects.
            if line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                return Err(DecodeError::NotAnObject);
            }
            serde_json::from_slice::<T>(line).map_err(DecodeError::from)
        })
        .collect()
}

fn decode_delimited<T: prost::Message + Default>(frame: &[u8]) -> Result<Vec<T>, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut buf = frame;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = prost::encoding::decode_varint(&mut buf)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
        let (msg, rest) = buf.split_at_checked(len).ok_or(DecodeError::Truncated)?;
        out.push(T::decode(msg)?);
        buf = rest;
    }
    Ok(out)
}

/// Encodes one reply or push for a connection of `protocol`, without separator.
///
/// Fails only for JSON, when a `bytes` field is not valid JSON ([`EncodeError::NotJson`]:
/// the caller disconnects that client with 3506). Protobuf encoding cannot fail.
pub fn encode_reply(protocol: Protocol, reply: &Reply) -> Result<Bytes, EncodeError> {
    encode(protocol, reply)
}

/// Encodes a command (used by tests and the load generator).
pub fn encode_command(protocol: Protocol, command: &Command) -> Result<Bytes, EncodeError> {
    encode(protocol, command)
}

fn encode<T: prost::Message + serde::Serialize>(
    protocol: Protocol,
    message: &T,
) -> Result<Bytes, EncodeError> {
    match protocol {
        Protocol::Json => {
            let mut out = Vec::with_capacity(128);
            serde_json::to_writer(&mut out, message)?;
            Ok(Bytes::from(out))
        }
        // Length prefix and body into one exactly sized Vec; infallible.
        Protocol::Protobuf => Ok(Bytes::from(message.encode_length_delimited_to_vec())),
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
/// Protobuf (each message already carries its length prefix). A single message is returned
/// as is, without copying.
pub fn join_frame(protocol: Protocol, messages: &[Bytes]) -> Bytes {
    if let [one] = messages {
        return one.clone();
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
