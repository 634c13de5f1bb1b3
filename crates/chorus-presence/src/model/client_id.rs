//! Client ids, stored compactly: a canonical UUID string (36 bytes, lowercase, hyphenated —
//! what chorus gateways generate) as its 16 bytes, anything else as a boxed string. The
//! conversion round-trips exactly: a string is only stored as a UUID when formatting the UUID
//! back gives the same string.

use std::fmt;

use uuid::Uuid;

/// A stored client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientId {
    Uuid([u8; 16]),
    Other(Box<str>),
}

/// A client id to look up, borrowed; hashes like the [`ClientId`] it equals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey<'a> {
    Uuid([u8; 16]),
    Other(&'a str),
}

impl<'a> ClientKey<'a> {
    pub(crate) fn parse(s: &'a str) -> ClientKey<'a> {
        if s.len() == 36 {
            if let Ok(uuid) = Uuid::try_parse(s) {
                let mut buf = [0u8; 36];
                if uuid.hyphenated().encode_lower(&mut buf) == s {
                    return ClientKey::Uuid(*uuid.as_bytes());
                }
            }
        }
        ClientKey::Other(s)
    }

    pub(crate) fn to_owned(self) -> ClientId {
        match self {
            ClientKey::Uuid(b) => ClientId::Uuid(b),
            ClientKey::Other(s) => ClientId::Other(s.into()),
        }
    }
}

impl ClientId {
    pub(crate) fn as_key(&self) -> ClientKey<'_> {
        match self {
            ClientId::Uuid(b) => ClientKey::Uuid(*b),
            ClientId::Other(s) => ClientKey::Other(s),
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientId::Uuid(b) => fmt::Display::fmt(&Uuid::from_bytes(*b).hyphenated(), f),
            ClientId::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uuids_are_compact_and_round_trip() {
        let s = "0b6f3c1e-8a3d-4c7e-9f10-2b3c4d5e6f70";
        let key = ClientKey::parse(s);
        assert!(matches!(key, ClientKey::Uuid(_)));
        assert_eq!(key.to_owned().to_string(), s);
        for other in [
            "0B6F3C1E-8A3D-4C7E-9F10-2B3C4D5E6F70", // upper case: kept verbatim
            "0b6f3c1e8a3d4c7e9f102b3c4d5e6f70",     // simple form
            "client-1",
            "",
        ] {
            let key = ClientKey::parse(other);
            assert_eq!(key, ClientKey::Other(other));
            assert_eq!(key.to_owned().to_string(), other);
        }
        assert_eq!(std::mem::size_of::<ClientId>(), 24);
    }
}
