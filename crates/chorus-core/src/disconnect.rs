//! A disconnect decision: the WebSocket close code and plain-text reason sent to a client.

use chorus_protocol::codes::DisconnectCode;

/// Why a connection is being closed. Codes 3000–4999 come from the protocol's table (or the
/// application's range); transport-level codes (1002, 1007, 1009) are used by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    /// Plain text, never JSON (centrifuge-js tries to parse reasons as JSON first); at most
    /// 123 bytes so it fits a close frame.
    pub reason: String,
}

impl Disconnect {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason: String = reason.into();
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Disconnect { code, reason }
    }
}

impl From<DisconnectCode> for Disconnect {
    fn from(d: DisconnectCode) -> Self {
        Disconnect {
            code: d.code,
            reason: d.reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let d = Disconnect::new(4000, "é".repeat(100));
        assert!(d.reason.len() <= 123);
        assert_eq!(d.reason.chars().count(), 61);
    }
}
