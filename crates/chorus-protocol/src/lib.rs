//! chorus-protocol: the client wire protocol (Centrifugo bidirectional protocol v2).
//!
//! Pure, no I/O. Parts:
//! * [`messages`] — one type per protocol message, Protobuf and JSON at once (split into
//!   `command`, `method`, `reply` and `push`; [`Method`] with `Command::method`, `Command::is_pong`,
//!   `Reply::is_ping`, `Reply::from_push`, `Reply::from_error`);
//! * [`codec`] — decoding commands of a frame, encoding replies/pushes, packing frames;
//! * [`codes`] — error, disconnect and unsubscribe code tables;
//! * [`raw`] — raw-JSON embedding of `bytes` fields (`raw::is_valid_json` checks a payload).
//!
//! Tests: `tests/` asserts exact JSON and Protobuf bytes, framing rules and no-panic decoding
//! of pseudo-random input; `fuzz/` holds the cargo-fuzz targets.

pub mod codec;
pub mod codes;
pub mod messages;
pub mod raw;

/// Re-exported so users of the message types can encode and decode them.
pub use prost;

pub use codec::{
    decode_commands, decode_replies, encode_command, encode_reply, join_frame, ping_message,
    DecodeError, EncodeError, Protocol,
};
pub use messages::*;
