//! JSON command frames: decoding never panics; whatever decodes re-encodes without panicking
//! and, when it re-encodes, decodes again to the same commands.
#![no_main]

use chorus_protocol::{decode_commands, encode_command, join_frame, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let Ok(commands) = decode_commands(Protocol::Json, frame) else {
        return;
    };
    let mut encoded = Vec::with_capacity(commands.len());
    for command in &commands {
        // Raw payloads were valid JSON on the way in, so they are on the way out.
        let Ok(bytes) = encode_command(Protocol::Json, command) else {
            panic!("decoded command does not re-encode: {command:?}");
        };
        encoded.push(bytes);
    }
    let again = decode_commands(Protocol::Json, &join_frame(Protocol::Json, &encoded));
    assert_eq!(again.ok().as_ref(), Some(&commands));
});
