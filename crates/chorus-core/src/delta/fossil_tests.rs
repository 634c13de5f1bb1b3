use super::*;
use rand::{Rng, SeedableRng};

fn roundtrip(source: &[u8], target: &[u8], utf8: bool) -> Vec<u8> {
    let delta = encode(source, target, utf8);
    assert_eq!(apply(source, &delta).as_deref(), Ok(target));
    delta
}

#[test]
fn integers_use_fossils_base64_digits() {
    let mut out = Vec::new();
    for v in [0u64, 9, 10, 35, 36, 63, 64, 4095, 4096] {
        put_int(&mut out, v);
        out.push(b' ');
    }
    assert_eq!(out, b"0 9 A Z _ ~ 10 ~~ 100 ");
    assert_eq!(digits_of(0), 1);
    assert_eq!(digits_of(63), 1);
    assert_eq!(digits_of(64), 2);
}

#[test]
fn checksum_sums_big_endian_words_padding_the_tail() {
    assert_eq!(checksum(b""), 0);
    assert_eq!(checksum(b"\x00\x00\x00\x01"), 1);
    assert_eq!(checksum(b"\x01"), 0x0100_0000);
    assert_eq!(checksum(b"\x00\x00\x00\x01\x00\x00\x02"), 1 + 0x200);
    assert_eq!(checksum(&[0xff; 8]), 0xffff_fffe);
}

#[test]
fn exact_bytes_of_small_deltas() {
    // Small inputs are one insert: header, insert, checksum.
    assert_eq!(encode(b"", b"", false), b"0\n0;");
    assert_eq!(encode(b"abc", b"xy", false), b"2\n2:xy1tUG00;".to_vec());
    // A 40-byte source and a target that only changes its end: one copy and one insert.
    let src = b"{\"price\":100,\"symbol\":\"ABCDEF\",\"v\":1234}";
    let dst = b"{\"price\":100,\"symbol\":\"ABCDEF\",\"v\":1235}";
    let delta = roundtrip(src, dst, true);
    // 40 = "d"; copy 38 ("b") bytes from 0; insert "5}"; checksum.
    assert_eq!(delta, b"d\nb@0,2:5}BCEg~;".to_vec());
    assert!(delta.len() < dst.len());
}

#[test]
fn identical_payloads_give_a_tiny_delta() {
    let data: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
    let delta = roundtrip(&data, &data, false);
    assert!(delta.len() < 20, "{} bytes", delta.len());
}

#[test]
fn empty_and_totally_different_inputs() {
    roundtrip(b"", b"", false);
    roundtrip(
        b"",
        b"hello world, a target without any source at all",
        true,
    );
    roundtrip(b"a source that is about to disappear entirely", b"", true);
    let a = vec![b'a'; 1000];
    let b = vec![b'b'; 1000];
    let delta = roundtrip(&a, &b, true);
    assert!(delta.len() <= b.len() + 16);
}

#[test]
fn random_pairs_roundtrip() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let n = rng.random_range(0..3000);
        let source: Vec<u8> = (0..n).map(|_| rng.random_range(0..4u8)).collect();
        let mut target = source.clone();
        for _ in 0..rng.random_range(0..20) {
            let at = rng.random_range(0..=target.len());
            match rng.random_range(0..3) {
                0 => target.insert(at, rng.random()),
                1 if at < target.len() => {
                    target.remove(at);
                }
                _ => target
                    .splice(at..at, (0..rng.random_range(0..50)).map(|_| rng.random()))
                    .for_each(drop),
            }
        }
        roundtrip(&source, &target, false);
        let other: Vec<u8> = (0..rng.random_range(0..2000))
            .map(|_| rng.random())
            .collect();
        roundtrip(&source, &other, false);
    }
}

#[test]
fn utf8_targets_give_utf8_deltas() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let words = ["é", "日本", "🎉", "abc", "ü", "—", "x", "{\"k\":", "}"];
    for _ in 0..300 {
        let text = |rng: &mut rand::rngs::StdRng, n: usize| -> String {
            (0..n)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect()
        };
        let source = text(&mut rng, 400);
        let mut target = source.clone();
        let cut = target
            .char_indices()
            .map(|(i, _)| i)
            .nth(rng.random_range(0..300))
            .unwrap_or(0);
        target.insert_str(cut, &text(&mut rng, 5));
        let delta = roundtrip(source.as_bytes(), target.as_bytes(), true);
        assert!(std::str::from_utf8(&delta).is_ok());
        assert!(delta.len() < target.len());
    }
}

#[test]
fn large_payloads_stay_bounded_and_correct() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let source: Vec<u8> = (0..1 << 20)
        .map(|_| rng.random_range(b'a'..=b'd'))
        .collect();
    let mut target = source.clone();
    target[500_000] ^= 1;
    let delta = roundtrip(&source, &target, false);
    assert!(delta.len() < 64, "{} bytes", delta.len());
    // Highly repetitive input: long hash chains, the work cap keeps it fast.
    let zeros = vec![0u8; 1 << 20];
    let mut ones = zeros.clone();
    ones[1 << 19] = 1;
    roundtrip(&zeros, &ones, false);
}

#[test]
fn apply_rejects_broken_deltas_without_panicking() {
    let source = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let good = encode(source, b"0123456789abcdefghijklmnopqrstuvwxyZ!", false);
    assert!(apply(source, &good).is_ok());
    for cut in 0..good.len() {
        assert!(apply(source, &good[..cut]).is_err());
    }
    assert_eq!(
        apply(source, b"3\n3@99,0;"),
        Err(ApplyError::CopyOutOfRange)
    );
    assert_eq!(apply(source, b"3 "), Err(ApplyError::Header));
    assert_eq!(apply(source, b"3\n3:abcX;"), Err(ApplyError::Checksum));
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..2000 {
        let junk: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
        let _ = apply(source, &junk);
    }
}
