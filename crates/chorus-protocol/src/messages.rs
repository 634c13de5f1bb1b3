//! The messages of the client protocol v2, one Rust type per protobuf message.
//!
//! Each type derives `prost::Message` (the Protobuf wire format, field numbers as in
//! `proto/client.proto`) and serde (the JSON wire format). The JSON rules of the protocol:
//! snake_case names, zero values omitted except a few always-emitted fields (`ClientInfo.user`
//! and `client`, `PresenceResult.presence`, `PresenceStatsResult` counters, `HistoryResult`
//! fields, `Error.code` and `message`, `Publication.data`), 64-bit integers as JSON numbers, and
//! every `bytes` field embedded as raw JSON (see [`crate::raw`]).
//!
//! Parts: [`command`] (client → server), [`method`] (the kind of a command), [`reply`] (server → client results), [`push`]
//! (asynchronous events and shared messages); everything is re-exported here.
//!
//! Field numbers marked reserved in the protocol are simply absent here. Newer extensions that
//! a v2 server may ignore (map subscriptions, dictionary compression, tag filters, channel
//! compaction ids) are decoded where a decision depends on them (`flag`, `type`) and otherwise
//! skipped as unknown fields on input and never produced on output. `chorus-proto` tests check
//! these types against the full schema in `proto/client.proto`.

pub mod command;
pub mod method;
pub mod push;
pub mod reply;

pub use command::*;
pub use method::*;
pub use push::*;
pub use reply::*;

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}
