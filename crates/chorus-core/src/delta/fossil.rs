//! Fossil delta: the format centrifuge SDKs decode (`fossil` delta type), written from the
//! format's description (fossil-scm.org `delta_format.wiki`, `delta_encoder_algorithm.wiki`).
//!
//! A delta is ASCII framing around literal bytes:
//! * a header `<target length>\n`;
//! * segments: copy `<count>@<source offset>,` or insert `<count>:<count literal bytes>`;
//! * a trailer `<checksum of the target>;`.
//!
//! Integers are written in fossil's base-64 digits (`0-9 A-Z _ a-z ~`, most significant first).
//! The checksum is the wrapping sum of the target read as big-endian 32-bit words, the last
//! partial word padded with zeros.
//!
//! The encoder indexes the source in non-overlapping [`BLOCK`]-byte blocks by a rolling hash and
//! walks the target: at each position it tries the source blocks whose hash matches, extends a
//! candidate forward and backward, and takes the longest one that is cheaper to copy than to
//! insert. Cost: O(source + target) for hashing, plus the match comparisons, which are capped
//! at [`WORK_FACTOR`] × (source + target) + [`WORK_FLOOR`] byte comparisons; past the cap the
//! rest of the target is inserted as is (the delta stays correct, only larger). Memory: one
//! `u32` pair per source block and the output (at most the target plus ~20 bytes).
//! Measured (release, a loaded 2-core VM, JSON documents of item objects): one changed byte
//! — 1 µs at 1 KiB, 13 µs at 16 KiB, 60 µs at 64 KiB, 1.1 ms at 1 MiB (deltas of 24–58
//! bytes); every ~40th byte changed (worst realistic case) — 5 µs, 90 µs, 0.46 ms, 27 ms; 1 MiB
//! of zeros with one byte changed (the longest chains) 34 ms. Paid once per publication of a
//! channel with delta subscribers, never per subscriber.
//!
//! With `utf8` set (a UTF-8 target), every copy starts and ends on a character boundary of the
//! target, so the literal bytes of inserts are whole characters and the delta itself is valid
//! UTF-8 — needed over the JSON protocol, where a delta travels as a JSON string and the SDK
//! turns it back into bytes with `TextEncoder`.

/// Block size of the source index (fossil's NHASH).
const BLOCK: usize = 16;
/// Candidate blocks tried per target position (fossil's limit).
const MAX_CHAIN: usize = 250;
/// Byte comparisons allowed per input byte before the encoder gives up matching.
const WORK_FACTOR: usize = 64;
/// Byte comparisons always allowed (small inputs).
const WORK_FLOOR: usize = 1 << 20;

const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/// Why a delta could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("delta header is not terminated by a newline")]
    Header,
    #[error("copy segment is not terminated by ','")]
    CopyTerminator,
    #[error("segment exceeds the announced target size")]
    TooLong,
    #[error("copy reaches past the end of the source")]
    CopyOutOfRange,
    #[error("insert reaches past the end of the delta")]
    InsertOutOfRange,
    #[error("checksum mismatch")]
    Checksum,
    #[error("target size differs from the announced one")]
    SizeMismatch,
    #[error("unknown segment operator")]
    Operator,
    #[error("delta ends without a checksum")]
    Unterminated,
}

/// The fossil checksum of `data`.
pub fn checksum(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(4);
    let mut sum = 0u32;
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 4];
        word[..rest.len()].copy_from_slice(rest);
        sum = sum.wrapping_add(u32::from_be_bytes(word));
    }
    sum
}

fn put_int(out: &mut Vec<u8>, mut v: u64) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    while v > 0 {
        i -= 1;
        buf[i] = DIGITS[(v & 63) as usize];
        v >>= 6;
    }
    out.extend_from_slice(&buf[i..]);
}

fn digits_of(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 64 {
        v >>= 6;
        n += 1;
    }
    n
}

/// A rolling polynomial hash of a [`BLOCK`]-byte window (Rabin-Karp, wrapping `u64`). An
/// Adler-style sum was tried first: on low-entropy text (a 4-letter alphabet) its few distinct
/// values made chains longer than [`MAX_CHAIN`] and a 1 MiB one-byte change took a 3 KiB delta.
#[derive(Clone, Copy)]
struct Rolling(u64);

const PRIME: u64 = 0x0100_0000_01b3;

/// `PRIME^(BLOCK-1)`, the weight of the byte leaving the window.
const OUT_WEIGHT: u64 = {
    let mut w = 1u64;
    let mut i = 1;
    while i < BLOCK {
        w = w.wrapping_mul(PRIME);
        i += 1;
    }
    w
};

impl Rolling {
    fn new(window: &[u8]) -> Self {
        Rolling(window.iter().fold(0u64, |h, &x| {
            h.wrapping_mul(PRIME).wrapping_add(u64::from(x) + 1)
        }))
    }

    fn roll(&mut self, out: u8, inp: u8) {
        let h = self
            .0
            .wrapping_sub((u64::from(out) + 1).wrapping_mul(OUT_WEIGHT));
        self.0 = h.wrapping_mul(PRIME).wrapping_add(u64::from(inp) + 1);
    }

    fn value(self) -> u32 {
        // The high bits of a multiplicative mix spread nearby values over the buckets.
        (self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// A copy found in the source: `len` bytes at `src` give the target at `dst`.
#[derive(Clone, Copy)]
struct Match {
    src: usize,
    dst: usize,
    len: usize,
}

/// Encodes the delta that turns `source` into `target`. See the module doc for the cost and
/// the `utf8` rule.
pub fn encode(source: &[u8], target: &[u8], utf8: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() / 4 + 32);
    put_int(&mut out, target.len() as u64);
    out.push(b'\n');
    let insert = |out: &mut Vec<u8>, bytes: &[u8]| {
        if !bytes.is_empty() {
            put_int(out, bytes.len() as u64);
            out.push(b':');
            out.extend_from_slice(bytes);
        }
    };
    if source.len() <= BLOCK || target.len() <= BLOCK {
        insert(&mut out, target);
        put_int(&mut out, u64::from(checksum(target)));
        out.push(b';');
        return out;
    }
    let index = Index::new(source);
    let mut budget = WORK_FACTOR
        .saturating_mul(source.len() + target.len())
        .saturating_add(WORK_FLOOR);
    let mut base = 0;
    'scan: while base + BLOCK < target.len() && budget > 0 {
        let mut hash = Rolling::new(&target[base..base + BLOCK]);
        let mut i = 0;
        loop {
            let at = base + i;
            if let Some(m) = index.best(source, target, base, at, hash.value(), utf8, &mut budget) {
                insert(&mut out, &target[base..m.dst]);
                put_int(&mut out, m.len as u64);
                out.push(b'@');
                put_int(&mut out, m.src as u64);
                out.push(b',');
                base = m.dst + m.len;
                continue 'scan;
            }
            if at + BLOCK >= target.len() || budget == 0 {
                break 'scan;
            }
            hash.roll(target[at], target[at + BLOCK]);
            i += 1;
        }
    }
    insert(&mut out, &target[base..]);
    put_int(&mut out, u64::from(checksum(target)));
    out.push(b';');
    out
}

/// The source's blocks by hash: `heads[h % n]` is the last block with that bucket, `chain[b]`
/// the previous block of the same bucket (`u32::MAX` ends a chain).
struct Index {
    heads: Vec<u32>,
    chain: Vec<u32>,
}

impl Index {
    fn new(source: &[u8]) -> Self {
        let n = source.len() / BLOCK;
        let mut heads = vec![u32::MAX; n];
        let mut chain = vec![u32::MAX; n];
        for (block, link) in chain.iter_mut().enumerate() {
            let start = block * BLOCK;
            let h = Rolling::new(&source[start..start + BLOCK]).value() as usize % n;
            *link = heads[h];
            // Source sizes are bounded by the message size limit (far below 2^32 blocks).
            heads[h] = block as u32;
        }
        Index { heads, chain }
    }

    /// The best copy for the target window at `at` (literal bytes from `base`), if one is
    /// cheaper than inserting its bytes.
    #[allow(clippy::too_many_arguments)]
    fn best(
        &self,
        source: &[u8],
        target: &[u8],
        base: usize,
        at: usize,
        hash: u32,
        utf8: bool,
        budget: &mut usize,
    ) -> Option<Match> {
        let mut best: Option<Match> = None;
        let mut block = self.heads[hash as usize % self.heads.len()];
        let mut tries = 0;
        while block != u32::MAX && tries < MAX_CHAIN && *budget > 0 {
            tries += 1;
            let src = block as usize * BLOCK;
            block = self.chain[block as usize];
            let fwd = source[src..]
                .iter()
                .zip(&target[at..])
                .take_while(|(a, b)| a == b)
                .count();
            let back = source[..src]
                .iter()
                .rev()
                .zip(target[base..at].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            *budget = budget.saturating_sub(fwd + back + 1);
            let mut m = Match {
                src: src - back,
                dst: at - back,
                len: fwd + back,
            };
            if utf8 {
                let Some(aligned) = align(m, target) else {
                    continue;
                };
                m = aligned;
            }
            let literal = m.dst - base;
            let cost =
                digits_of(literal as u64) + digits_of(m.len as u64) + digits_of(m.src as u64) + 3;
            if m.len >= cost && best.is_none_or(|b| m.len > b.len) {
                best = Some(m);
            }
        }
        best
    }
}

/// Shrinks a match so it starts and ends on character boundaries of the (UTF-8) target.
fn align(mut m: Match, target: &[u8]) -> Option<Match> {
    while m.len > 0 && is_continuation(target[m.dst]) {
        m.dst += 1;
        m.src += 1;
        m.len -= 1;
    }
    while m.len > 0 && m.dst + m.len < target.len() && is_continuation(target[m.dst + m.len]) {
        m.len -= 1;
    }
    (m.len > 0).then_some(m)
}

/// A reader of delta integers and operators.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn int(&mut self) -> u64 {
        let mut v: u64 = 0;
        while let Some(&c) = self.data.get(self.pos) {
            let Some(d) = DIGITS.iter().position(|&x| x == c) else {
                break;
            };
            v = v.wrapping_shl(6) | d as u64;
            self.pos += 1;
        }
        v
    }

    fn byte(&mut self) -> Option<u8> {
        let c = self.data.get(self.pos).copied();
        self.pos += 1;
        c
    }
}

/// Applies a delta to `source` (tests, and a check of the encoder). Never panics.
pub fn apply(source: &[u8], delta: &[u8]) -> Result<Vec<u8>, ApplyError> {
    let mut r = Reader {
        data: delta,
        pos: 0,
    };
    let limit = usize::try_from(r.int()).map_err(|_| ApplyError::TooLong)?;
    if r.byte() != Some(b'\n') {
        return Err(ApplyError::Header);
    }
    let mut out = Vec::with_capacity(limit.min(delta.len().saturating_mul(64)));
    while r.pos < delta.len() {
        let cnt = usize::try_from(r.int()).map_err(|_| ApplyError::TooLong)?;
        match r.byte() {
            Some(b'@') => {
                let ofs = usize::try_from(r.int()).map_err(|_| ApplyError::CopyOutOfRange)?;
                if r.pos < delta.len() && r.byte() != Some(b',') {
                    return Err(ApplyError::CopyTerminator);
                }
                if out.len().saturating_add(cnt) > limit {
                    return Err(ApplyError::TooLong);
                }
                let end = ofs.checked_add(cnt).ok_or(ApplyError::CopyOutOfRange)?;
                out.extend_from_slice(source.get(ofs..end).ok_or(ApplyError::CopyOutOfRange)?);
            }
            Some(b':') => {
                if out.len().saturating_add(cnt) > limit {
                    return Err(ApplyError::TooLong);
                }
                let end = r.pos.checked_add(cnt).ok_or(ApplyError::InsertOutOfRange)?;
                out.extend_from_slice(delta.get(r.pos..end).ok_or(ApplyError::InsertOutOfRange)?);
                r.pos = end;
            }
            Some(b';') => {
                if u64::from(checksum(&out)) != cnt as u64 {
                    return Err(ApplyError::Checksum);
                }
                if out.len() != limit {
                    return Err(ApplyError::SizeMismatch);
                }
                return Ok(out);
            }
            _ => return Err(ApplyError::Operator),
        }
    }
    Err(ApplyError::Unterminated)
}

#[cfg(test)]
#[path = "fossil_tests.rs"]
mod tests;
