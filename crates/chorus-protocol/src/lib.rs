//! chorus-protocol: the client wire protocol (Centrifugo bidirectional protocol v2).
//!
//! Pure, no I/O. Parts:
//! * [`messages`] — one type per protocol message, Protobuf and JSON at once;
//! * [`codec`] — decoding commands of a frame, encoding replies/pushes, packing frames;
//! * [`codes`] — error, disconnect and unsubscribe code tables;
//! * [`raw`] — raw-JSON embedding of `bytes` fields.

pub mod codec;
pub mod codes;
pub mod messages;
pub mod raw;

pub use codec::{
    decode_commands, decode_replies, encode_command, encode_reply, join_frame, ping_message,
    DecodeError, EncodeError, Protocol,
};
pub use messages::*;
