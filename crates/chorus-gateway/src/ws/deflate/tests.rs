#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::HeaderValue;

fn offers(values: &[&str]) -> Option<Agreed> {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(v).unwrap());
    }
    negotiate(&h)
}

const PLAIN: Agreed = Agreed {
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    server_max_window_bits: None,
};

#[test]
fn negotiation_takes_the_first_acceptable_offer() {
    assert_eq!(offers(&[]), None);
    assert_eq!(offers(&["x-webkit-deflate-frame"]), None);
    assert_eq!(offers(&["permessage-deflate"]), Some(PLAIN));
    assert_eq!(
        offers(&["permessage-deflate; client_max_window_bits"]),
        Some(PLAIN)
    );
    assert_eq!(
        offers(&["permessage-deflate; client_max_window_bits=10"]),
        Some(PLAIN)
    );
    let a = offers(&[
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
    ])
    .unwrap();
    assert_eq!(
        a,
        Agreed {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(10),
        }
    );
    assert_eq!(
        a.response(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
    );
    assert_eq!(PLAIN.response(), "permessage-deflate");
    // Quoted values are allowed (RFC 7692 §7.1).
    assert_eq!(
        offers(&["permessage-deflate; server_max_window_bits=\"12\""])
            .unwrap()
            .server_max_window_bits,
        Some(12)
    );
    // Several offers in one header and over several headers: the first acceptable wins.
    let a = offers(&[
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover",
        "permessage-deflate",
    ])
    .unwrap();
    assert!(a.server_no_context_takeover);
    let a = offers(&[
        "foo, permessage-deflate; bogus",
        "permessage-deflate; client_no_context_takeover",
    ])
    .unwrap();
    assert!(a.client_no_context_takeover);
}

#[test]
fn invalid_offers_are_declined() {
    for bad in [
        "permessage-deflate; bogus",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1x",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        // zlib's raw deflate has no 256-byte window.
        "permessage-deflate; server_max_window_bits=8",
    ] {
        assert_eq!(offers(&[bad]), None, "{bad}");
    }
}

fn pair(agreed: Agreed) -> (Deflate, Deflate) {
    let settings = DeflateSettings {
        level: 6,
        min_size: 0,
    };
    // The "client" inflates what the server deflates: the same type, roles mirrored.
    let server = Deflate::new(agreed, settings);
    let mirrored = Agreed {
        server_no_context_takeover: agreed.client_no_context_takeover,
        client_no_context_takeover: agreed.server_no_context_takeover,
        server_max_window_bits: None,
    };
    (server, Deflate::new(mirrored, settings))
}

#[test]
fn round_trips_with_context_takeover_get_smaller() {
    let (mut server, mut client) = pair(PLAIN);
    let msg = b"{\"push\":{\"channel\":\"news\",\"pub\":{\"data\":{\"text\":\"hello hello\"}}}}";
    let first = server.compress(msg);
    let second = server.compress(msg);
    // The second copy refers back into the shared window.
    assert!(
        second.len() < first.len(),
        "{} {}",
        second.len(),
        first.len()
    );
    assert!(!first.ends_with(&TAIL));
    assert_eq!(&client.decompress(&first, 1 << 20).unwrap()[..], msg);
    assert_eq!(&client.decompress(&second, 1 << 20).unwrap()[..], msg);
    // Empty and large messages.
    let empty = server.compress(b"");
    assert_eq!(&client.decompress(&empty, 10).unwrap()[..], b"");
    assert_eq!(&client.decompress(&[], 10).unwrap()[..], b"");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let c = server.compress(&big);
    let d = client.decompress(&c, 1 << 20);
    assert!(d.is_ok(), "{:?} {}", d.as_ref().err(), c.len());
    assert_eq!(&d.unwrap()[..], &big[..]);
}

#[test]
fn round_trips_without_context_takeover_are_independent() {
    let agreed = Agreed {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(9),
    };
    let (mut server, _) = pair(agreed);
    let msg = b"the same message twice, the same message twice";
    let first = server.compress(msg);
    let second = server.compress(msg);
    assert_eq!(first, second);
    // A fresh inflater reads each one on its own.
    for c in [&first, &second] {
        let mut fresh = Deflate::new(
            PLAIN,
            DeflateSettings {
                level: 1,
                min_size: 0,
            },
        );
        assert_eq!(&fresh.decompress(c, 1024).unwrap()[..], msg);
    }
}

#[test]
fn a_deflate_bomb_is_refused_at_the_limit() {
    let (mut server, mut client) = pair(PLAIN);
    let zeros = vec![0u8; 10 << 20];
    let bomb = server.compress(&zeros);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    assert_eq!(client.decompress(&bomb, 65536), Err(Violation::TOO_BIG));
    let mut fresh = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 1,
            min_size: 0,
        },
    );
    assert_eq!(fresh.decompress(&bomb, 10 << 20).unwrap().len(), 10 << 20);
}

#[test]
fn garbage_is_refused_with_1007() {
    let mut d = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 1,
            min_size: 0,
        },
    );
    assert_eq!(
        d.decompress(&[0xff, 0xff, 0xff, 0xff], 1024),
        Err(BAD_DEFLATE)
    );
}

/// A masked client frame; `b0` carries FIN, RSV1 and the opcode.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    crate::ws::frame::test_client_frame(b0, payload)
}

fn parse(bytes: &[u8], limit: usize, deflate: Option<&mut Deflate>) -> Vec<Event> {
    let mut parser = Parser::new(limit);
    let mut events = Vec::new();
    parser.feed_with(bytes, &mut events, deflate);
    events
}

use crate::ws::frame::{Event, Parser};
use fastwebsockets::OpCode;

#[test]
fn the_parser_inflates_whole_and_fragmented_compressed_messages() {
    let (mut client, mut server) = pair(PLAIN);
    let text = "héllo ".repeat(100);
    let packed = client.compress(text.as_bytes());
    // One frame, RSV1 + FIN + text.
    let events = parse(&client_frame(0xc1, &packed), 65536, Some(&mut server));
    assert_eq!(
        events,
        vec![Event::Message(OpCode::Text, Bytes::from(text.clone()))]
    );
    // The same message in three fragments (RSV1 on the first only), after context takeover.
    let packed = client.compress(text.as_bytes());
    let (a, rest) = packed.split_at(packed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut wire = client_frame(0x41, a);
    wire.extend(client_frame(0x00, b));
    wire.extend(client_frame(0x80, c));
    let events = parse(&wire, 65536, Some(&mut server));
    assert_eq!(
        events,
        vec![Event::Message(OpCode::Text, Bytes::from(text))]
    );
    // An uncompressed message in between is fine.
    let events = parse(&client_frame(0x82, b"raw"), 65536, Some(&mut server));
    assert_eq!(
        events,
        vec![Event::Message(OpCode::Binary, Bytes::from_static(b"raw"))]
    );
}

#[test]
fn rsv1_is_refused_where_deflate_does_not_allow_it() {
    let mut d = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 1,
            min_size: 0,
        },
    );
    let packed = d.compress(b"hi");
    let reserved = || Event::Violation(Violation::protocol("reserved bits set"));
    // Not negotiated: 1002.
    assert_eq!(
        parse(&client_frame(0xc1, &packed), 1024, None),
        vec![reserved()]
    );
    // Negotiated, but on a continuation or a control frame: 1002.
    let mut server = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 1,
            min_size: 0,
        },
    );
    let mut wire = client_frame(0x01, b"a");
    wire.extend(client_frame(0xc0, b"b"));
    assert_eq!(parse(&wire, 1024, Some(&mut server)), vec![reserved()]);
    assert_eq!(
        parse(&client_frame(0xc9, b""), 1024, Some(&mut server)),
        vec![reserved()]
    );
}

#[test]
fn a_deflate_bomb_frame_closes_with_1009() {
    let mut client = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 9,
            min_size: 0,
        },
    );
    let bomb = client.compress(&vec![b'a'; 4 << 20]);
    assert!(bomb.len() < 10_000);
    let mut server = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 1,
            min_size: 0,
        },
    );
    let events = parse(&client_frame(0xc2, &bomb), 65536, Some(&mut server));
    assert_eq!(events, vec![Event::Violation(Violation::TOO_BIG)]);
    assert_eq!(Violation::TOO_BIG.code, 1009);
    // Compressed text that inflates to invalid UTF-8: 1007.
    let mut client = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 1,
            min_size: 0,
        },
    );
    let mut server = Deflate::new(
        PLAIN,
        DeflateSettings {
            level: 1,
            min_size: 0,
        },
    );
    let bad = client.compress(&[0xff, 0xfe]);
    let events = parse(&client_frame(0xc1, &bad), 1024, Some(&mut server));
    assert_eq!(events, vec![Event::Violation(Violation::UTF8)]);
}
