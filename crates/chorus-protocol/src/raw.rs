//! Serde adapter for `bytes` fields in the JSON protocol: the bytes are embedded verbatim as a
//! JSON value (like Go's `json.RawMessage`), not base64.
//!
//! Encoding bytes that are not valid JSON (or not UTF-8) fails; the JSON encoder turns that
//! into [`crate::EncodeError::NotJson`] and the caller into disconnect 3506 (inappropriate
//! protocol) for that one client. Raw `\n` and `\r` are stripped on the way in and out because
//! the JSON protocol separates messages with `\n`: in valid JSON a raw line break can only be
//! insignificant whitespace (inside strings it must be escaped), so removing it keeps the value
//! equal. Empty bytes encode as `null`, and `null` decodes as empty bytes.

use bytes::Bytes;
use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

fn has_line_break(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| matches!(b, b'\n' | b'\r'))
}

fn strip_line_breaks(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '\n' | '\r')).collect()
}

/// Serializes raw JSON bytes verbatim. Empty bytes serialize as `null`.
pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    if bytes.is_empty() {
        return serializer.serialize_none();
    }
    let text = std::str::from_utf8(bytes).map_err(|_| S::Error::custom("payload is not UTF-8"))?;
    let invalid = |_| S::Error::custom("payload is not valid JSON");
    if has_line_break(bytes) {
        let raw = RawValue::from_string(strip_line_breaks(text)).map_err(invalid)?;
        raw.serialize(serializer)
    } else {
        // Borrowed: validation without a copy on the hot path (encode once per publication).
        let raw: &RawValue = serde_json::from_str(text).map_err(invalid)?;
        raw.serialize(serializer)
    }
}

/// Deserializes any JSON value into its raw text. `null` becomes empty bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
    let text = raw.get();
    if text == "null" {
        return Ok(Bytes::new());
    }
    if has_line_break(text.as_bytes()) {
        return Ok(Bytes::from(strip_line_breaks(text)));
    }
    if text.is_empty() {
        return Err(D::Error::custom("empty raw value"));
    }
    Ok(Bytes::copy_from_slice(text.as_bytes()))
}

/// Whether `bytes` can be carried by a JSON connection as a raw field (valid UTF-8 JSON, or
/// empty). Lets a caller decide on 3506 before encoding.
pub fn is_valid_json(bytes: &[u8]) -> bool {
    bytes.is_empty() || serde_json::from_slice::<&RawValue>(bytes).is_ok()
}

/// Whether JSON text nests arrays and objects deeper than `max` (`1` has depth 0, `[]` depth 1,
/// `{"a":[1]}` depth 2). One pass, no recursion and no allocation, stopping as soon as the
/// bound is crossed — so it is safe on hostile input of any size, unlike a recursive parser
/// (serde_json's raw-value capture, used for `data` fields, does not bound depth; a payload
/// nested a million deep passes it and then breaks recursive parsers in the SDKs). Brackets
/// inside strings do not count; the text is not otherwise validated.
pub fn json_deeper_than(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_json_check() {
        assert!(is_valid_json(b""));
        assert!(is_valid_json(br#"{"a":1}"#));
        assert!(is_valid_json(b" 42 "));
        assert!(is_valid_json(b"\"s\""));
        assert!(!is_valid_json(b"hello"));
        assert!(!is_valid_json(b"{\"a\":"));
        assert!(!is_valid_json(&[0xff, 0xfe]));
        assert!(!is_valid_json(b"1 2"));
    }

    #[test]
    fn depth_scan() {
        assert!(!json_deeper_than(b"1", 0));
        assert!(json_deeper_than(b"[]", 0));
        assert!(!json_deeper_than(b"[]", 1));
        assert!(!json_deeper_than(br#"{"a":[1]}"#, 2));
        assert!(json_deeper_than(br#"{"a":[1]}"#, 1));
        // Brackets in strings, escaped quotes and backslashes do not count.
        assert!(!json_deeper_than(br#"{"a":"[[[\"{{{\\"}"#, 1));
        assert!(json_deeper_than(br#"{"a":"\\",  "b":[[1]]}"#, 2));
        // Siblings do not add up.
        assert!(!json_deeper_than(b"[[1],[2],[3],{}]", 2));
        let deep = "[".repeat(1_000_000) + &"]".repeat(1_000_000);
        assert!(json_deeper_than(deep.as_bytes(), 64));
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert!(!json_deeper_than(ok.as_bytes(), 64));
        assert!(json_deeper_than(ok.as_bytes(), 63));
    }

    #[test]
    fn strips_crlf() {
        assert_eq!(strip_line_breaks("{\r\n\"a\":\n1}"), "{\"a\":1}");
    }
}
