//! RFC 6455 framing for the lean connection driver ([`super::lean`]) and for the generic
//! driver's connections that negotiated permessage-deflate ([`super::conn`]): server frame
//! headers, and an incremental parser of client frames that holds no buffer while a connection
//! is idle.
//!
//! fastwebsockets' reader keeps an 8 KiB buffer per connection for the connection's lifetime
//! (measured with heaptrack: 8.2 KiB of the 24 KiB an idle subscribed connection cost). Here
//! bytes are read into a per-thread scratch buffer and parsed in place; only a frame split
//! across reads is copied into the connection's own `partial` buffer, which is released as soon
//! as the frame completes. The parser enforces what fastwebsockets and [`Assembler`] did
//! together: masking, reserved bits and opcodes, control-frame rules, the message size cap
//! before a payload is buffered, UTF-8 of text (fail fast, also across fragments), and close
//! payloads. With permessage-deflate negotiated ([`Parser::feed_with`]), RSV1 on a message's
//! first frame marks it compressed: it is inflated once complete, capped at the same limit.

use bytes::{Buf, Bytes, BytesMut};
use fastwebsockets::OpCode;

use super::deflate::Deflate;
use super::message::{check_close_payload, Assembler, Violation, MAX_CONTROL_PAYLOAD};

/// Longest server frame header: 2 bytes + a 64-bit length (server frames are unmasked).
pub const MAX_HEAD: usize = 10;

/// Writes the header of an unmasked, final server frame into `out`; returns its length.
pub fn server_head(out: &mut [u8; MAX_HEAD], opcode: OpCode, len: usize) -> usize {
    out[0] = 0x80 | opcode as u8;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// One whole server frame (header + payload) in one buffer.
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut head = [0u8; MAX_HEAD];
    let n = server_head(&mut head, opcode, payload.len());
    frame_of(&head[..n], payload)
}

/// A server data frame whose payload is permessage-deflate compressed (RSV1 set).
pub fn compressed_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut head = [0u8; MAX_HEAD];
    let n = server_head(&mut head, opcode, payload.len());
    head[0] |= 0x40;
    frame_of(&head[..n], payload)
}

fn frame_of(head: &[u8], payload: &[u8]) -> Bytes {
    let n = head.len();
    let mut buf = BytesMut::with_capacity(n + payload.len());
    buf.extend_from_slice(head);
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// What the parser found in the bytes fed to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete data message (reassembled from its fragments).
    Message(OpCode, Bytes),
    Ping(Bytes),
    Pong,
    /// A valid close frame from the peer; its payload (code + reason, or empty).
    Close(Bytes),
    /// The peer broke the protocol: close with this and stop parsing.
    Violation(Violation),
}

/// Incremental parser of one connection's client frames.
#[derive(Debug)]
pub struct Parser {
    /// A frame split across reads, or a fragmented message being assembled: boxed, and only
    /// while one exists (an idle connection's parser is 24 B, not 104).
    spill: Option<Box<Spill>>,
    limit: usize,
    failed: bool,
}

/// What the parser holds between reads.
#[derive(Debug)]
struct Spill {
    /// An incomplete frame carried over from an earlier read.
    partial: BytesMut,
    assembler: Assembler,
}

/// A parsed frame header.
struct Head {
    fin: bool,
    /// RSV1: a compressed message starts (only when permessage-deflate was negotiated).
    rsv1: bool,
    opcode: OpCode,
    mask: [u8; 4],
    head_len: usize,
    payload_len: usize,
}

enum Parsed {
    /// Not enough bytes yet.
    More,
    Frame(Head),
    Bad(Violation),
}

impl Parser {
    /// A parser capping each message at `limit` payload bytes (`websocket.message_size_limit`).
    pub fn new(limit: usize) -> Self {
        Parser {
            spill: None,
            limit,
            failed: false,
        }
    }

    /// Bytes held for a frame split across reads (0 when idle).
    pub fn buffered(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.partial.len())
    }

    fn spill(&mut self) -> &mut Spill {
        let limit = self.limit;
        self.spill.get_or_insert_with(|| {
            Box::new(Spill {
                partial: BytesMut::new(),
                assembler: Assembler::new(limit),
            })
        })
    }

    /// Feeds newly read bytes; appends what they complete to `events`. After a
    /// [`Event::Violation`] or [`Event::Close`] nothing more is parsed.
    pub fn feed(&mut self, input: &[u8], events: &mut Vec<Event>) {
        self.feed_with(input, events, None);
    }

    /// [`Parser::feed`] on a connection that negotiated permessage-deflate: RSV1 marks a
    /// compressed message, inflated with `deflate` and capped at the limit after inflation.
    pub fn feed_with(
        &mut self,
        input: &[u8],
        events: &mut Vec<Event>,
        mut deflate: Option<&mut Deflate>,
    ) {
        if self.failed {
            return;
        }
        let partial = match self.spill.as_mut() {
            Some(spill) => std::mem::take(&mut spill.partial),
            None => BytesMut::new(),
        };
        if partial.is_empty() {
            let used = self.parse(input, events, deflate.as_deref_mut());
            if !self.failed && used < input.len() {
                self.spill().partial.extend_from_slice(&input[used..]);
            }
        } else {
            let mut partial = partial;
            partial.extend_from_slice(input);
            let used = self.parse(&partial, events, deflate);
            if !self.failed && used < partial.len() {
                partial.advance(used);
                self.spill().partial = partial;
            }
        }
        // Give the memory back between frames and messages: idle connections hold nothing.
        if self
            .spill
            .as_ref()
            .is_some_and(|s| s.partial.is_empty() && s.assembler.is_idle())
        {
            self.spill = None;
        }
    }

    /// Parses whole frames from `buf`; returns how many bytes were consumed.
    fn parse(
        &mut self,
        buf: &[u8],
        events: &mut Vec<Event>,
        mut deflate: Option<&mut Deflate>,
    ) -> usize {
        let mut at = 0;
        while !self.failed {
            let head = match parse_head(&buf[at..], self.limit, deflate.is_some()) {
                Parsed::More => break,
                Parsed::Bad(v) => {
                    self.fail(v, events);
                    break;
                }
                Parsed::Frame(head) => head,
            };
            let total = head.head_len + head.payload_len;
            if buf.len() - at < total {
                break;
            }
            let mut payload = BytesMut::from(&buf[at + head.head_len..at + total]);
            unmask(&mut payload, head.mask);
            at += total;
            self.frame(&head, payload, events, deflate.as_deref_mut());
        }
        at
    }

    /// A complete data message: inflated first when compressed (capped at the limit, text
    /// checked for UTF-8 after inflation).
    fn message(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        compressed: bool,
        events: &mut Vec<Event>,
        deflate: Option<&mut Deflate>,
    ) {
        let payload = match (compressed, deflate) {
            (false, _) => payload,
            (true, Some(d)) => match d.decompress(&payload, self.limit) {
                Ok(p) => p,
                Err(v) => return self.fail(v, events),
            },
            (true, None) => return self.fail(Violation::protocol("reserved bits set"), events),
        };
        if compressed && opcode == OpCode::Text && std::str::from_utf8(&payload).is_err() {
            return self.fail(Violation::UTF8, events);
        }
        events.push(Event::Message(opcode, payload));
    }

    fn fail(&mut self, v: Violation, events: &mut Vec<Event>) {
        self.failed = true;
        self.spill = None;
        events.push(Event::Violation(v));
    }

    fn frame(
        &mut self,
        head: &Head,
        payload: BytesMut,
        events: &mut Vec<Event>,
        deflate: Option<&mut Deflate>,
    ) {
        let (fin, opcode) = (head.fin, head.opcode);
        match opcode {
            OpCode::Close => {
                if let Err(v) = check_close_payload(&payload) {
                    return self.fail(v, events);
                }
                self.failed = true;
                self.spill = None;
                events.push(Event::Close(payload.freeze()));
            }
            OpCode::Ping => events.push(Event::Ping(payload.freeze())),
            OpCode::Pong => events.push(Event::Pong),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let assembling = self.spill.as_ref().is_some_and(|s| !s.assembler.is_idle());
                let compressed = if assembling {
                    self.spill.as_ref().is_some_and(|s| s.assembler.compressed)
                } else {
                    head.rsv1
                };
                if fin
                    && !compressed
                    && opcode == OpCode::Text
                    && std::str::from_utf8(&payload).is_err()
                {
                    return self.fail(Violation::UTF8, events);
                }
                if fin && !assembling && opcode != OpCode::Continuation {
                    // A whole message in one frame (its size was checked with the header).
                    self.message(opcode, payload.freeze(), compressed, events, deflate);
                    return;
                }
                let spill = self.spill();
                if !assembling {
                    spill.assembler.compressed = compressed;
                }
                match spill.assembler.push(fin, opcode, payload) {
                    Ok(Some((op, message))) => {
                        self.message(op, message, compressed, events, deflate)
                    }
                    Ok(None) => {}
                    Err(v) => self.fail(v, events),
                }
            }
        }
    }
}

fn parse_head(buf: &[u8], limit: usize, deflate: bool) -> Parsed {
    let [b0, b1, ..] = *buf else {
        return Parsed::More;
    };
    // RSV1 is permessage-deflate's, on the first frame of a data message only.
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (rsv1 && !(deflate && matches!(b0 & 0x0f, 0x1 | 0x2))) {
        return Parsed::Bad(Violation::protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = match b0 & 0x0f {
        0x0 => OpCode::Continuation,
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xa => OpCode::Pong,
        _ => return Parsed::Bad(Violation::protocol("reserved opcode")),
    };
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && !fin {
        return Parsed::Bad(Violation::protocol("fragmented control frame"));
    }
    if b1 & 0x80 == 0 {
        return Parsed::Bad(Violation::UNMASKED);
    }
    let (len, len_bytes) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Parsed::More,
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 8)
            }
            None => return Parsed::More,
        },
        n => (u64::from(n), 0),
    };
    if control && len > MAX_CONTROL_PAYLOAD as u64 {
        return Parsed::Bad(Violation::protocol("control frame too long"));
    }
    if len > limit as u64 {
        // Refused before its payload is read or buffered.
        return Parsed::Bad(Violation::TOO_BIG);
    }
    let mask_at = 2 + len_bytes;
    let Some(m) = buf.get(mask_at..mask_at + 4) else {
        return Parsed::More;
    };
    Parsed::Frame(Head {
        fin,
        rsv1,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        head_len: mask_at + 4,
        payload_len: len as usize,
    })
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// A masked client frame for unit tests (here and in `ws::deflate`); `b0` carries FIN, RSV1
/// and the opcode.
#[cfg(test)]
pub(crate) fn test_client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![b0];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(b0: u8, payload: &[u8]) -> Vec<u8> {
        test_client_frame(b0, payload)
    }

    fn parse_all(p: &mut Parser, bytes: &[u8]) -> Vec<Event> {
        let mut ev = Vec::new();
        p.feed(bytes, &mut ev);
        ev
    }

    fn msg(op: OpCode, b: &[u8]) -> Event {
        Event::Message(op, Bytes::copy_from_slice(b))
    }

    #[test]
    fn server_heads_use_the_shortest_length() {
        let mut h = [0u8; MAX_HEAD];
        assert_eq!(server_head(&mut h, OpCode::Text, 125), 2);
        assert_eq!(&h[..2], &[0x81, 125]);
        assert_eq!(server_head(&mut h, OpCode::Binary, 126), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(server_head(&mut h, OpCode::Text, 65_536), 10);
        assert_eq!(&h[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            &server_frame(OpCode::Pong, b"hi")[..],
            &[0x8a, 2, b'h', b'i']
        );
    }

    #[test]
    fn frames_in_one_read_and_split_byte_by_byte_give_the_same_events() {
        let mut wire = client(0x81, b"hello");
        wire.extend(client(0x89, b"p"));
        wire.extend(client(0x02, &[1, 2, 3]));
        wire.extend(client(0x80, &[4; 300]));
        wire.extend(client(0x8a, b""));
        let mut big = vec![7u8; 70_000];
        big[0] = 1;
        wire.extend(client(0x82, &big));
        let expect = vec![
            msg(OpCode::Text, b"hello"),
            Event::Ping(Bytes::from_static(b"p")),
            Event::Message(OpCode::Binary, {
                let mut v = vec![1, 2, 3];
                v.extend([4u8; 300]);
                Bytes::from(v)
            }),
            Event::Pong,
            Event::Message(OpCode::Binary, Bytes::from(big)),
        ];
        let mut p = Parser::new(1 << 20);
        assert_eq!(parse_all(&mut p, &wire), expect);
        assert_eq!(p.buffered(), 0);
        let mut p = Parser::new(1 << 20);
        let mut got = Vec::new();
        for b in &wire {
            p.feed(std::slice::from_ref(b), &mut got);
        }
        assert_eq!(got, expect);
        assert_eq!((p.buffered(), p.spill.is_none()), (0, true));
    }

    #[test]
    fn violations() {
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (
                vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
                1002,
                "unmasked frame",
            ),
            (client(0xc1, b"x"), 1002, "reserved bits set"),
            (client(0x83, b"x"), 1002, "reserved opcode"),
            (client(0x09, b"x"), 1002, "fragmented control frame"),
            (client(0x89, &[0; 126]), 1002, "control frame too long"),
            (client(0x80, b"x"), 1002, "continuation without a start"),
            (client(0x81, &[0xff, 0xfe]), 1007, "invalid utf-8"),
            (client(0x82, &[0; 11]), 1009, "message too big"),
            (client(0x88, &[0x03]), 1002, "close payload of one byte"),
            (client(0x88, &[0x03, 0xed]), 1002, "invalid close code"),
        ];
        for (wire, code, reason) in cases {
            let mut p = Parser::new(10);
            let ev = parse_all(&mut p, &wire);
            match ev.as_slice() {
                [Event::Violation(v)] => assert_eq!((v.code, v.reason), (code, reason)),
                other => panic!("{reason}: {other:?}"),
            }
            // Nothing is parsed after a violation.
            assert!(parse_all(&mut p, &client(0x81, b"ok")).is_empty());
        }
    }

    #[test]
    fn too_big_is_refused_from_the_header_alone() {
        let mut p = Parser::new(1000);
        // Only the header of a 1 GiB frame: refused without waiting for the payload.
        let ev = parse_all(&mut p, &[0x82, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0]);
        assert!(matches!(ev.as_slice(), [Event::Violation(v)] if v.code == 1009));
    }

    #[test]
    fn fragmented_text_fails_fast_on_bad_utf8_and_cumulative_size_is_capped() {
        let mut p = Parser::new(1 << 20);
        let mut ev = parse_all(&mut p, &client(0x01, "aé".as_bytes()));
        assert!(ev.is_empty());
        ev = parse_all(&mut p, &client(0x00, &[0xc0, 0x80]));
        assert!(matches!(ev.as_slice(), [Event::Violation(v)] if v.code == 1007));

        let mut p = Parser::new(10);
        assert!(parse_all(&mut p, &client(0x02, &[0; 6])).is_empty());
        let ev = parse_all(&mut p, &client(0x80, &[0; 6]));
        assert!(matches!(ev.as_slice(), [Event::Violation(v)] if v.code == 1009));
    }

    #[test]
    fn control_frames_between_fragments_and_close_ends_parsing() {
        let mut p = Parser::new(100);
        let mut wire = client(0x01, b"ab");
        wire.extend(client(0x89, b""));
        wire.extend(client(0x80, b"c"));
        wire.extend(client(0x88, &[0x03, 0xe8, b'o', b'k']));
        wire.extend(client(0x81, b"after close"));
        assert_eq!(
            parse_all(&mut p, &wire),
            vec![
                Event::Ping(Bytes::new()),
                msg(OpCode::Text, b"abc"),
                Event::Close(Bytes::from_static(&[0x03, 0xe8, b'o', b'k'])),
            ]
        );
    }
}
