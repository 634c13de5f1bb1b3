//! Delta compression of publications (Centrifugo's "delta compression in channels").
//!
//! * [`DeltaType`] — the formats a subscribe may ask for (`delta` field) and a namespace may
//!   allow (`allowed_delta_types`); only `fossil` exists.
//! * [`fossil`] — the fossil delta encoder (and a decoder for tests).
//! * [`json_string`] — how a delta-mode publication's data travels over the JSON protocol.
//!
//! The fan-out side (which subscriber gets a delta, which the full payload) lives in
//! `hub::delta`; negotiation in `client::subscribe`.

pub mod fossil;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A delta format. Config values and subscribe requests use the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeltaType {
    /// Fossil's delta format (fossil-scm.org), what centrifuge SDKs decode.
    Fossil,
}

impl DeltaType {
    /// The type a subscribe request names, `None` for an unknown name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "fossil" => Some(DeltaType::Fossil),
            _ => None,
        }
    }

    /// The type a subscribe's `delta` field asks for: `None` for "" (no delta mode).
    pub fn requested(name: &str) -> Result<Option<Self>, UnknownDeltaType> {
        match name {
            "" => Ok(None),
            name => Self::parse(name)
                .map(Some)
                .ok_or_else(|| UnknownDeltaType(name.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeltaType::Fossil => "fossil",
        }
    }
}

/// A subscribe asked for a delta type that does not exist (a client subscribe is then
/// disconnected with 3501, as in Centrifugo).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delta type {0:?}")]
pub struct UnknownDeltaType(pub String);

/// The JSON string literal whose text is `payload` (quotes and escapes included), or `None`
/// when `payload` is not UTF-8. In delta mode over JSON, a publication's data is such a string
/// — the full payload text or the delta — and centrifuge-js `JSON.parse`s / `TextEncoder`s it.
pub fn json_string(payload: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(payload).ok()?;
    serde_json::to_vec(text).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_types_parse_and_print() {
        assert_eq!(DeltaType::parse("fossil"), Some(DeltaType::Fossil));
        assert_eq!(DeltaType::parse("Fossil"), None);
        assert_eq!(DeltaType::parse("vcdiff"), None);
        assert_eq!(DeltaType::Fossil.as_str(), "fossil");
        assert_eq!(DeltaType::requested(""), Ok(None));
        assert_eq!(DeltaType::requested("fossil"), Ok(Some(DeltaType::Fossil)));
        assert_eq!(
            DeltaType::requested("vcdiff"),
            Err(UnknownDeltaType("vcdiff".into()))
        );
        let parsed: Vec<DeltaType> = serde_json::from_str(r#"["fossil"]"#).unwrap_or_default();
        assert_eq!(parsed, vec![DeltaType::Fossil]);
        assert!(serde_json::from_str::<Vec<DeltaType>>(r#"["xdelta"]"#).is_err());
    }

    #[test]
    fn json_string_escapes_payload_text() {
        assert_eq!(
            json_string(br#"{"a":"b\n"}"#).as_deref(),
            Some(&br#""{\"a\":\"b\\n\"}""#[..])
        );
        assert_eq!(
            json_string("é\n".as_bytes()).as_deref(),
            Some(&b"\"\xc3\xa9\\n\""[..])
        );
        assert_eq!(json_string(b"\xff"), None);
    }
}
