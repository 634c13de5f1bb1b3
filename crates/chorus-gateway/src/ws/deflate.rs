//! permessage-deflate (RFC 7692): the negotiation of `Sec-WebSocket-Extensions` and the
//! per-connection compressor and decompressor.
//!
//! Negotiation ([`negotiate`]) takes the first acceptable offer (several may come, in one
//! header or several); an invalid offer (unknown or repeated parameter, a value where none is
//! allowed, window bits outside 8..=15) is skipped, and with none acceptable the connection
//! runs without compression. The answer carries `server_no_context_takeover` and
//! `client_no_context_takeover` when the client asked for them, and `server_max_window_bits`
//! when the client limited the server's window (we compress with that window; 8 is declined:
//! zlib's raw deflate has no 256-byte window). `client_max_window_bits` is never answered:
//! we inflate with a 32 KiB window, which accepts whatever the client uses.
//!
//! State is per connection and exists only when negotiated ([`Deflate`], boxed by its owner).
//! With context takeover each connection deflates its own stream, so a publication fanned out
//! to N compressed subscribers is compressed N times: CPU for bandwidth. A shared compressed
//! frame would be possible for connections that negotiated `server_no_context_takeover` (the
//! same input gives the same output); not done yet.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderMap;

use super::message::Violation;
use crate::metrics::ProtocolErrorKind;

/// The extension token.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The tail a sync flush ends with: stripped from every compressed message, appended before
/// inflating one (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Close 1007: the compressed payload does not inflate.
pub const BAD_DEFLATE: Violation = Violation {
    code: 1007,
    reason: "invalid compressed data",
    kind: ProtocolErrorKind::Protocol,
};

/// Server settings (`websocket.compression_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateSettings {
    /// zlib level 0–9 (`websocket.compression_level`).
    pub level: u32,
    /// Messages shorter than this go out uncompressed (`websocket.compression_min_size`).
    pub min_size: usize,
}

/// The parameters agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// The window the server compresses with (9..=15); `Some` when the client limited it.
    pub server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub fn response(&self) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={bits}"));
        }
        s
    }
}

/// The first acceptable permessage-deflate offer of the request, if any.
pub fn negotiate(headers: &HeaderMap) -> Option<Agreed> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(parse_offer)
}

/// One offer (`name; param; param=value`): `Some` when it is permessage-deflate and we can
/// accept it.
pub fn parse_offer(offer: &str) -> Option<Agreed> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
        return None;
    }
    let mut agreed = Agreed {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: None,
    };
    let (mut snct, mut cnct, mut smwb, mut cmwb) = (false, false, false, false);
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if !snct && value.is_none() => {
                snct = true;
                agreed.server_no_context_takeover = true;
            }
            "client_no_context_takeover" if !cnct && value.is_none() => {
                cnct = true;
                agreed.client_no_context_takeover = true;
            }
            "server_max_window_bits" if !smwb => {
                smwb = true;
                let bits = window_bits(value?)?;
                if bits < 9 {
                    return None;
                }
                agreed.server_max_window_bits = Some(bits);
            }
            "client_max_window_bits" if !cmwb => {
                cmwb = true;
                if let Some(v) = value {
                    window_bits(v)?;
                }
            }
            _ => return None,
        }
    }
    Some(agreed)
}

fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

/// A window-bits value: 8..=15, digits only, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// One connection's compression state (boxed by its owner; only when negotiated).
pub struct Deflate {
    compress: Compress,
    decompress: Decompress,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    min_size: usize,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate").finish_non_exhaustive()
    }
}

impl Deflate {
    pub fn new(agreed: Agreed, settings: DeflateSettings) -> Self {
        let bits = agreed.server_max_window_bits.unwrap_or(15);
        Deflate {
            compress: Compress::new_with_window_bits(
                Compression::new(settings.level.min(9)),
                false,
                bits,
            ),
            decompress: Decompress::new_with_window_bits(false, 15),
            server_no_context_takeover: agreed.server_no_context_takeover,
            client_no_context_takeover: agreed.client_no_context_takeover,
            min_size: settings.min_size,
        }
    }

    /// Whether a message of this size is sent compressed.
    pub fn wants(&self, len: usize) -> bool {
        len >= self.min_size
    }

    /// The compressed payload of one message (without the sync-flush tail).
    pub fn compress(&mut self, input: &[u8]) -> Bytes {
        let mut out: Vec<u8> = Vec::with_capacity(input.len() / 2 + 64);
        let start_in = self.compress.total_in();
        loop {
            let consumed = (self.compress.total_in() - start_in) as usize;
            // Compressing in-memory bytes has no failure mode; end the message as it is.
            if self
                .compress
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            let consumed = (self.compress.total_in() - start_in) as usize;
            // A sync flush that leaves room in the output is complete.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(1024));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // zlib writes nothing for an empty message right after a flush; the peer appends
            // the tail, so send the empty stored block's first byte (RFC 7692 §7.2.3.6).
            out.push(0x00);
        }
        if self.server_no_context_takeover {
            self.compress.reset();
        }
        Bytes::from(out)
    }

    /// Inflates one compressed message (all its frames' payloads, concatenated), refusing
    /// output past `limit` bytes (1009) and bad data (1007).
    pub fn decompress(&mut self, input: &[u8], limit: usize) -> Result<Bytes, Violation> {
        let mut out = BytesMut::new();
        if input.is_empty() {
            // Nothing was deflated (a repeated sync flush writes nothing); the tail alone
            // would start a stored block.
            return Ok(out.freeze());
        }
        let r = self
            .inflate(input, &mut out, limit)
            .and_then(|()| self.inflate(&TAIL, &mut out, limit));
        if self.client_no_context_takeover || r.is_err() {
            self.decompress.reset(false);
        }
        r.map(|()| out.freeze())
    }

    fn inflate(&mut self, input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), Violation> {
        let start_in = self.decompress.total_in();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let consumed_before = (self.decompress.total_in() - start_in) as usize;
            let before_out = self.decompress.total_out();
            let status = self
                .decompress
                .decompress(&input[consumed_before..], &mut buf, FlushDecompress::Sync)
                .map_err(|_| BAD_DEFLATE)?;
            let produced = (self.decompress.total_out() - before_out) as usize;
            if out.len() + produced > limit {
                return Err(Violation::TOO_BIG);
            }
            out.extend_from_slice(&buf[..produced]);
            let consumed = (self.decompress.total_in() - start_in) as usize;
            if status == Status::StreamEnd {
                // A final block: anything after it is not deflate data.
                return if consumed == input.len() {
                    Ok(())
                } else {
                    Err(BAD_DEFLATE)
                };
            }
            if consumed == input.len() && produced < buf.len() {
                return Ok(());
            }
            if produced == 0 && consumed == consumed_before {
                // No progress with room to write: done when all input is in, else broken.
                return if consumed == input.len() {
                    Ok(())
                } else {
                    Err(BAD_DEFLATE)
                };
            }
        }
    }
}

#[cfg(test)]
#[path = "deflate/tests.rs"]
mod tests;
