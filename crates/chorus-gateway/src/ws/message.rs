//! Reassembly of fragmented WebSocket messages and validation of what fastwebsockets lets through.
//!
//! fastwebsockets 0.10 caps each *frame* (not a message), accepts unmasked client frames, and
//! checks UTF-8 only for unfragmented text frames. [`Assembler`] enforces the rest: the
//! cumulative size cap across fragments, fragment sequencing, and UTF-8 of fragmented text —
//! validated incrementally, so an invalid sequence fails the connection as soon as the fragment
//! carrying it arrives (Autobahn 6.4.x "fail fast") instead of at the end of the message.

use bytes::{Bytes, BytesMut};
use fastwebsockets::OpCode;

use crate::metrics::ProtocolErrorKind;

/// A violation that fails the connection with a close code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// WebSocket close code sent to the peer (1002, 1007 or 1009).
    pub code: u16,
    /// Close reason (short, plain text).
    pub reason: &'static str,
    /// Metrics label.
    pub kind: ProtocolErrorKind,
}

impl Violation {
    /// Close 1009: the message exceeds `websocket.message_size_limit`.
    pub const TOO_BIG: Violation = Violation {
        code: 1009,
        reason: "message too big",
        kind: ProtocolErrorKind::TooBig,
    };
    /// Close 1007: a text message (or a close reason) is not UTF-8.
    pub const UTF8: Violation = Violation {
        code: 1007,
        reason: "invalid utf-8",
        kind: ProtocolErrorKind::Utf8,
    };
    /// Close 1002: a client frame without a mask.
    pub const UNMASKED: Violation = Violation {
        code: 1002,
        reason: "unmasked frame",
        kind: ProtocolErrorKind::Unmasked,
    };

    /// Close 1002 for any other framing violation.
    pub const fn protocol(reason: &'static str) -> Violation {
        Violation {
            code: 1002,
            reason,
            kind: ProtocolErrorKind::Protocol,
        }
    }
}

/// Longest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Collects the fragments of one data message at a time.
#[derive(Debug)]
pub struct Assembler {
    limit: usize,
    /// Opcode of the message being assembled (`None` between messages).
    opcode: Option<OpCode>,
    buf: BytesMut,
    /// For text: `buf[..utf8_checked]` is known valid UTF-8; what follows may be an incomplete
    /// code point split across fragments.
    utf8_checked: usize,
    /// The message is permessage-deflate compressed: its UTF-8 is checked after inflation.
    pub compressed: bool,
}

impl Assembler {
    /// An assembler capping each message at `limit` payload bytes in total.
    pub fn new(limit: usize) -> Self {
        Assembler {
            limit,
            opcode: None,
            buf: BytesMut::new(),
            utf8_checked: 0,
            compressed: false,
        }
    }

    /// No fragmented message is being assembled.
    pub fn is_idle(&self) -> bool {
        self.opcode.is_none()
    }

    /// Feeds one data frame (Text, Binary or Continuation). Returns the complete message with
    /// its opcode when `fin` ends it.
    ///
    /// Unfragmented text frames must already be UTF-8-checked (fastwebsockets does it for every
    /// final text frame before handing it out).
    pub fn push(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: BytesMut,
    ) -> Result<Option<(OpCode, Bytes)>, Violation> {
        match (opcode, self.opcode) {
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(Violation::protocol(
                "data frame inside a fragmented message",
            )),
            (OpCode::Continuation, None) => {
                Err(Violation::protocol("continuation without a start"))
            }
            (OpCode::Text | OpCode::Binary, None) => {
                if payload.len() > self.limit {
                    return Err(Violation::TOO_BIG);
                }
                if fin {
                    return Ok(Some((opcode, payload.freeze())));
                }
                self.opcode = Some(opcode);
                self.buf = payload;
                self.utf8_checked = 0;
                self.check_utf8(false)?;
                Ok(None)
            }
            (OpCode::Continuation, Some(started)) => {
                if self.buf.len().saturating_add(payload.len()) > self.limit {
                    return Err(Violation::TOO_BIG);
                }
                self.buf.extend_from_slice(&payload);
                self.check_utf8(fin)?;
                if !fin {
                    return Ok(None);
                }
                self.opcode = None;
                self.utf8_checked = 0;
                Ok(Some((started, std::mem::take(&mut self.buf).freeze())))
            }
            _ => Err(Violation::protocol("not a data frame")),
        }
    }

    /// Validates the new bytes of a fragmented text message. An incomplete trailing code point
    /// is fine until the final fragment.
    fn check_utf8(&mut self, fin: bool) -> Result<(), Violation> {
        if self.opcode != Some(OpCode::Text) || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.buf[self.utf8_checked..]) {
            Ok(_) => {
                self.utf8_checked = self.buf.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !fin => {
                self.utf8_checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(Violation::UTF8),
        }
    }
}

/// Validates a close frame payload from the peer: empty, or a valid code plus a UTF-8 reason.
pub fn check_close_payload(payload: &[u8]) -> Result<(), Violation> {
    match payload.len() {
        0 => Ok(()),
        1 => Err(Violation::protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code_allowed(code) {
                return Err(Violation::protocol("invalid close code"));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(Violation::UTF8);
            }
            Ok(())
        }
    }
}

/// Close codes a peer may send (RFC 6455 §7.4 and the IANA registry): 1004–1006 and 1015 are
/// reserved for reporting, never sent; 0–999, 1016–2999 and ≥ 5000 are not assigned.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The payload of our answer to the peer's close: its status code only, not the reason
/// (RFC 6455 §5.5.1). Counted as a close sent with that code.
pub fn close_echo(payload: &[u8]) -> Bytes {
    let echo = Bytes::copy_from_slice(&payload[..payload.len().min(2)]);
    if let [a, b] = echo[..] {
        crate::metrics::close_sent(u16::from_be_bytes([a, b]));
    }
    echo
}

/// Logs and counts a protocol violation; the payload of the close frame that answers it.
pub fn violation_close(v: &Violation) -> Bytes {
    tracing::debug!(
        code = v.code,
        reason = v.reason,
        "websocket protocol violation"
    );
    crate::metrics::protocol_error(v.kind);
    crate::metrics::close_sent(v.code);
    Bytes::from(close_payload(v.code, v.reason))
}

/// Builds a close frame payload: the code and the reason cut to fit 125 bytes on a char boundary.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> BytesMut {
        BytesMut::from(s)
    }

    #[test]
    fn single_frame_passes_through() {
        let mut a = Assembler::new(10);
        let got = a.push(true, OpCode::Binary, b(b"abc")).ok().flatten();
        assert_eq!(got, Some((OpCode::Binary, Bytes::from_static(b"abc"))));
    }

    #[test]
    fn fragments_are_joined_and_capped_cumulatively() {
        let mut a = Assembler::new(5);
        assert_eq!(a.push(false, OpCode::Text, b(b"ab")), Ok(None));
        assert_eq!(a.push(false, OpCode::Continuation, b(b"cd")), Ok(None));
        assert_eq!(
            a.push(true, OpCode::Continuation, b(b"ef")),
            Err(Violation::TOO_BIG)
        );

        let mut a = Assembler::new(5);
        assert_eq!(a.push(false, OpCode::Text, b(b"ab")), Ok(None));
        assert_eq!(
            a.push(true, OpCode::Continuation, b(b"cde")),
            Ok(Some((OpCode::Text, Bytes::from_static(b"abcde"))))
        );
        // Ready for the next message.
        assert_eq!(
            a.push(true, OpCode::Binary, b(b"x")),
            Ok(Some((OpCode::Binary, Bytes::from_static(b"x"))))
        );
    }

    #[test]
    fn sequencing_violations() {
        let mut a = Assembler::new(100);
        assert_eq!(
            a.push(true, OpCode::Continuation, b(b"x"))
                .map_err(|v| v.code),
            Err(1002)
        );
        let mut a = Assembler::new(100);
        assert_eq!(a.push(false, OpCode::Binary, b(b"x")), Ok(None));
        assert_eq!(
            a.push(true, OpCode::Text, b(b"y")).map_err(|v| v.code),
            Err(1002)
        );
    }

    #[test]
    fn utf8_split_across_fragments_and_fail_fast() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut a = Assembler::new(100);
        assert_eq!(a.push(false, OpCode::Text, b(&euro[..1])), Ok(None));
        assert_eq!(
            a.push(false, OpCode::Continuation, b(&euro[1..2])),
            Ok(None)
        );
        assert_eq!(
            a.push(true, OpCode::Continuation, b(&euro[2..])),
            Ok(Some((OpCode::Text, Bytes::copy_from_slice(euro))))
        );

        let mut a = Assembler::new(100);
        assert_eq!(
            a.push(false, OpCode::Text, b(b"ok\xff")),
            Err(Violation::UTF8)
        );

        let mut a = Assembler::new(100);
        assert_eq!(a.push(false, OpCode::Text, b(&euro[..2])), Ok(None));
        assert_eq!(
            a.push(true, OpCode::Continuation, b(b"")),
            Err(Violation::UTF8)
        );
    }

    #[test]
    fn close_payloads() {
        assert!(check_close_payload(b"").is_ok());
        assert_eq!(check_close_payload(b"\x03").map_err(|v| v.code), Err(1002));
        assert!(check_close_payload(&close_payload(1000, "bye")).is_ok());
        assert_eq!(
            check_close_payload(&close_payload(1005, "")).map_err(|v| v.code),
            Err(1002)
        );
        assert_eq!(
            check_close_payload(b"\x03\xe8\xff").map_err(|v| v.code),
            Err(1007)
        );
        let long = close_payload(3001, &"é".repeat(100));
        assert!(long.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&long[2..]).is_ok());
    }
}
