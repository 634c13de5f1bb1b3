//! The client side of permessage-deflate for tests: what a client sends, and how it reads
//! what the server sent (RFC 7692 §7.2.1, §7.2.2).

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};

/// The sync-flush tail: stripped from each compressed message, appended before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a client sends: deflated with a sync flush, the tail stripped.
pub fn deflate(c: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 1024);
    c.compress_vec(input, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one compressed server message.
pub fn inflate(d: &mut Decompress, input: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    data.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(1 << 16);
    d.decompress_vec(&data, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}
