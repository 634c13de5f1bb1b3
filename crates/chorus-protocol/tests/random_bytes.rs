//! Both decoders over thousands of pseudo-random byte strings: they must return, never panic,
//! and whatever decodes must re-encode (a poor man's fuzzer next to the cargo-fuzz targets in
//! `fuzz/`, deterministic so it runs in every `cargo test`).

use chorus_protocol::*;

/// xorshift64*: tiny, deterministic, good enough to spread bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fragments that make random JSON reach deeper than the first byte.
const JSON_PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\n",
    " ",
    "\"",
    "\"id\"",
    "\"connect\"",
    "\"subscribe\"",
    "\"channel\"",
    "\"data\"",
    "\"subs\"",
    "\"history\"",
    "\"since\"",
    "\"offset\"",
    "1",
    "-1",
    "1e400",
    "18446744073709551616",
    "null",
    "true",
    "\"x\"",
    "\\u0000",
    "\\ud800",
    "{}",
];

fn check(protocol: Protocol, frame: &[u8]) -> bool {
    match decode_commands(protocol, frame) {
        Ok(cmds) => {
            for cmd in &cmds {
                // Protobuf can always re-encode; JSON may refuse odd raw payloads, but must not
                // panic.
                let _ = encode_command(protocol, cmd);
                if protocol == Protocol::Protobuf {
                    let bytes = encode_command(protocol, cmd).unwrap_or_default();
                    let again = decode_commands(protocol, &bytes).unwrap_or_default();
                    assert_eq!(again.as_slice(), std::slice::from_ref(cmd));
                }
            }
            true
        }
        Err(_) => false,
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoded = [0usize; 2];
    for _ in 0..4000 {
        let len = rng.below(64) as usize;
        let frame: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        decoded[0] += usize::from(check(Protocol::Json, &frame));
        decoded[1] += usize::from(check(Protocol::Protobuf, &frame));
    }
    // Random bytes sometimes form valid protobuf (e.g. a lone 0x00 is a pong).
    assert!(decoded[1] > 0);
}

#[test]
fn random_json_fragments_never_panic() {
    let mut rng = Rng(42);
    let mut decoded = 0;
    for _ in 0..4000 {
        let n = rng.below(24) as usize;
        let mut frame = String::from("{");
        for _ in 0..n {
            frame.push_str(JSON_PIECES[rng.below(JSON_PIECES.len() as u64) as usize]);
        }
        decoded += usize::from(check(Protocol::Json, frame.as_bytes()));
        check(Protocol::Protobuf, frame.as_bytes());
    }
    assert!(decoded > 0);
}

#[test]
fn mutated_valid_protobuf_never_panics() {
    let seed = Command {
        id: 9,
        connect: Some(ConnectRequest {
            token: "t".into(),
            subs: [("s".to_string(), SubscribeRequest::default())].into(),
            ..Default::default()
        }),
        subscribe: Some(SubscribeRequest {
            channel: "c".into(),
            offset: 300,
            ..Default::default()
        }),
        ..Default::default()
    };
    let base = encode_command(Protocol::Protobuf, &seed)
        .unwrap_or_default()
        .to_vec();
    let mut rng = Rng(7);
    let mut decoded = 0;
    for _ in 0..4000 {
        let mut frame = base.clone();
        for _ in 0..=rng.below(3) {
            let i = rng.below(frame.len() as u64) as usize;
            frame[i] = rng.next() as u8;
        }
        decoded += usize::from(check(Protocol::Protobuf, &frame));
    }
    assert!(decoded > 0);
}
