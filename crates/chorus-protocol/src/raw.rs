//! Serde adapter for `bytes` fields in the JSON protocol: the bytes are embedded verbatim as a
//! JSON value (like Go's `json.RawMessage`), not base64.
//!
//! Encoding bytes that are not valid JSON fails; the caller turns that into disconnect 3506
//! (inappropriate protocol) for that one client. Raw newlines are stripped on the way in and out
//! because the JSON protocol separates messages with `\n` (a raw newline in valid JSON can only
//! be insignificant whitespace, so removing it keeps the value equal).

use bytes::Bytes;
use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};
use serde_json::value::RawValue;

/// Serializes raw JSON bytes verbatim. Empty bytes serialize as `null`.
pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    if bytes.is_empty() {
        return serializer.serialize_none();
    }
    let text = std::str::from_utf8(bytes).map_err(|_| S::Error::custom("payload is not UTF-8"))?;
    let raw: Box<RawValue> = if text.contains('\n') {
        RawValue::from_string(text.replace(['\n', '\r'], " "))
    } else {
        RawValue::from_string(text.to_owned())
    }
    .map_err(|_| S::Error::custom("payload is not valid JSON"))?;
    serde::Serialize::serialize(&raw, serializer)
}

/// Deserializes any JSON value into its raw text. `null` becomes empty bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
    let text = raw.get();
    if text == "null" {
        return Ok(Bytes::new());
    }
    if text.contains('\n') {
        return Ok(Bytes::from(text.replace(['\n', '\r'], " ")));
    }
    if text.is_empty() {
        return Err(D::Error::custom("empty raw value"));
    }
    Ok(Bytes::copy_from_slice(text.as_bytes()))
}
