//! Protobuf command frames: decoding never panics; decoded commands re-encode and decode to
//! the same values.
#![no_main]

use chorus_protocol::{decode_commands, encode_command, join_frame, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let Ok(commands) = decode_commands(Protocol::Protobuf, frame) else {
        return;
    };
    let encoded: Vec<_> = commands
        .iter()
        .filter_map(|c| encode_command(Protocol::Protobuf, c).ok())
        .collect();
    assert_eq!(encoded.len(), commands.len());
    let again = decode_commands(Protocol::Protobuf, &join_frame(Protocol::Protobuf, &encoded));
    assert_eq!(again.ok().as_ref(), Some(&commands));
    // The JSON encoder must not panic on any decoded value either (it may refuse non-JSON
    // payloads).
    for c in &commands {
        let _ = encode_command(Protocol::Json, c);
    }
});
