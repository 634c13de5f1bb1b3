//! Validation of a WebSocket opening handshake (RFC 6455 §4.2.1) and the choice of encoding.
//!
//! A request is refused, before anything is registered, with a plain-text reason:
//!
//! | problem | status | reason label |
//! |---|---|---|
//! | HTTP/1.0 or older (hyper cannot hand such a connection over anyway) | 400 `HTTP/1.1 required` | `http_version` |
//! | not `GET` with `Upgrade: websocket` and `Connection: upgrade` | 400 `websocket upgrade expected` | `bad_request` |
//! | `Sec-WebSocket-Version` missing or not `13` | 426 `Sec-WebSocket-Version 13 required`, header `Sec-WebSocket-Version: 13` (§4.4) | `ws_version` |
//! | `Sec-WebSocket-Key` missing, repeated, or not base64 of exactly 16 bytes | 400 `invalid Sec-WebSocket-Key` | `bad_key` |
//! | a request body (`Content-Length` > 0 or `Transfer-Encoding`) | 400 `websocket upgrade must not have a body` | `bad_request` |
//! | `cf_protocol=` / `format=` not `json` or `protobuf` | 400 `unknown protocol in query (json or protobuf)` | `protocol` |
//! | the query and the offered `centrifuge-*` subprotocols name different encodings | 400 `conflicting protocol selection` | `protocol` |
//!
//! HTTP/1.0 gets 400 rather than 426: 426 asks the client to switch protocols with an
//! `Upgrade` header, while what is missing here is the HTTP version itself, which no
//! WebSocket client lacks — only a hand-made or hostile request does.

use base64::Engine as _;
use chorus_protocol::Protocol;
use http::header::{CONTENT_LENGTH, SEC_WEBSOCKET_PROTOCOL, TRANSFER_ENCODING};
use http::{Request, StatusCode, Version};

use super::{SUBPROTOCOL_JSON, SUBPROTOCOL_PROTOBUF};
use crate::metrics::RejectReason;

/// Why an upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    /// Plain-text body (ends with a newline).
    pub reason: &'static str,
    pub metric: RejectReason,
}

impl Rejection {
    const HTTP_VERSION: Rejection = Rejection {
        status: StatusCode::BAD_REQUEST,
        reason: "HTTP/1.1 required\n",
        metric: RejectReason::HttpVersion,
    };
    /// Not an upgrade request at all.
    pub const NOT_UPGRADE: Rejection = Rejection {
        status: StatusCode::BAD_REQUEST,
        reason: "websocket upgrade expected\n",
        metric: RejectReason::BadRequest,
    };
    const WS_VERSION: Rejection = Rejection {
        status: StatusCode::UPGRADE_REQUIRED,
        reason: "Sec-WebSocket-Version 13 required\n",
        metric: RejectReason::WsVersion,
    };
    const KEY: Rejection = Rejection {
        status: StatusCode::BAD_REQUEST,
        reason: "invalid Sec-WebSocket-Key\n",
        metric: RejectReason::BadKey,
    };
    const BODY: Rejection = Rejection {
        status: StatusCode::BAD_REQUEST,
        reason: "websocket upgrade must not have a body\n",
        metric: RejectReason::BadRequest,
    };
    const UNKNOWN_PROTOCOL: Rejection = Rejection {
        status: StatusCode::BAD_REQUEST,
        reason: "unknown protocol in query (json or protobuf)\n",
        metric: RejectReason::Protocol,
    };
    const CONFLICT: Rejection = Rejection {
        status: StatusCode::BAD_REQUEST,
        reason: "conflicting protocol selection\n",
        metric: RejectReason::Protocol,
    };
}

/// Checks the opening handshake (everything but the encoding choice, see [`negotiate`]).
pub fn check<B>(req: &Request<B>) -> Result<(), Rejection> {
    if matches!(req.version(), Version::HTTP_09 | Version::HTTP_10) {
        return Err(Rejection::HTTP_VERSION);
    }
    if req.method() != http::Method::GET || !fastwebsockets::upgrade::is_upgrade_request(req) {
        return Err(Rejection::NOT_UPGRADE);
    }
    let headers = req.headers();
    let mut versions = headers.get_all("sec-websocket-version").iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => {}
        _ => return Err(Rejection::WS_VERSION),
    }
    let mut keys = headers.get_all("sec-websocket-key").iter();
    match (keys.next(), keys.next()) {
        (Some(key), None) if valid_key(key.as_bytes()) => {}
        _ => return Err(Rejection::KEY),
    }
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    if has_body {
        return Err(Rejection::BODY);
    }
    Ok(())
}

/// RFC 6455 §4.1: "a randomly selected 16-byte value that has been base64-encoded" — 24
/// characters of standard base64 with `==` padding.
pub fn valid_key(key: &[u8]) -> bool {
    let key = key.trim_ascii();
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|raw| raw.len() == 16)
}

/// Picks the encoding and the subprotocol to answer with.
///
/// The legacy query (`cf_protocol=` or `format=`, `json` or `protobuf`) and the offered
/// subprotocols (`centrifuge-protobuf`, `centrifuge-json`) must agree: when the query names an
/// encoding, its subprotocol is answered if offered, and offering only the other one is a
/// conflict (a browser aborts when the 101 lacks the subprotocol it asked for, so answering it
/// with another encoding cannot work). Without a query, an offered `centrifuge-protobuf` wins,
/// then `centrifuge-json`; with neither, JSON without a subprotocol.
pub fn negotiate<B>(req: &Request<B>) -> Result<(Protocol, Option<&'static str>), Rejection> {
    let offered: Vec<&str> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let offers = |name: &str| offered.iter().any(|p| p.eq_ignore_ascii_case(name));
    let protobuf_offered = offers(SUBPROTOCOL_PROTOBUF);
    let json_offered = offers(SUBPROTOCOL_JSON);
    match query_protocol(req.uri().query().unwrap_or(""))? {
        Some(Protocol::Protobuf) if protobuf_offered => {
            Ok((Protocol::Protobuf, Some(SUBPROTOCOL_PROTOBUF)))
        }
        Some(Protocol::Json) if json_offered => Ok((Protocol::Json, Some(SUBPROTOCOL_JSON))),
        Some(_) if protobuf_offered || json_offered => Err(Rejection::CONFLICT),
        Some(protocol) => Ok((protocol, None)),
        None if protobuf_offered => Ok((Protocol::Protobuf, Some(SUBPROTOCOL_PROTOBUF))),
        None if json_offered => Ok((Protocol::Json, Some(SUBPROTOCOL_JSON))),
        None => Ok((Protocol::Json, None)),
    }
}

/// The encoding named by every `cf_protocol=` / `format=` parameter of the query
/// (form-urlencoded: a value with a malformed escape or invalid UTF-8 names no known encoding);
/// they must all be known and agree. Other parameters are not looked at.
fn query_protocol(query: &str) -> Result<Option<Protocol>, Rejection> {
    let mut chosen = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "cf_protocol" && key != "format" {
            continue;
        }
        let protocol = if value.eq_ignore_ascii_case("protobuf") {
            Protocol::Protobuf
        } else if value.eq_ignore_ascii_case("json") {
            Protocol::Json
        } else {
            return Err(Rejection::UNKNOWN_PROTOCOL);
        };
        if chosen.is_some_and(|c| c != protocol) {
            return Err(Rejection::CONFLICT);
        }
        chosen = Some(protocol);
    }
    Ok(chosen)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, extra: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method("GET")
            .uri(uri)
            .version(version)
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_default()
    }

    fn ok(uri: &str, extra: &[(&str, &str)]) -> Request<()> {
        request(Version::HTTP_11, uri, extra)
    }

    #[test]
    fn a_valid_handshake_passes() {
        assert_eq!(check(&ok("/c", &[])), Ok(()));
        assert_eq!(check(&ok("/c", &[("content-length", "0")])), Ok(()));
    }

    #[test]
    fn old_http_versions_are_refused() {
        let r = check(&request(Version::HTTP_10, "/c", &[])).unwrap_err();
        assert_eq!(
            (r.status, r.reason),
            (StatusCode::BAD_REQUEST, "HTTP/1.1 required\n")
        );
        assert_eq!(r.metric, RejectReason::HttpVersion);
    }

    #[test]
    fn websocket_version_must_be_13() {
        let mut req = ok("/c", &[]);
        req.headers_mut()
            .insert("sec-websocket-version", http::HeaderValue::from_static("8"));
        let r = check(&req).unwrap_err();
        assert_eq!(r.status, StatusCode::UPGRADE_REQUIRED);
        req.headers_mut().remove("sec-websocket-version");
        assert_eq!(check(&req).unwrap_err().metric, RejectReason::WsVersion);
        let twice = ok("/c", &[("sec-websocket-version", "13")]);
        assert_eq!(check(&twice).unwrap_err().metric, RejectReason::WsVersion);
    }

    #[test]
    fn keys_must_be_base64_of_16_bytes() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(!valid_key(b""));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ==dGhl")); // 19 bytes
        assert!(!valid_key(b"AAAAAAAAAAAAAAAAAAAAAAAA")); // 18 bytes
        assert!(!valid_key(b"not base64 at all!!!!!=="));
        let mut req = ok("/c", &[]);
        req.headers_mut()
            .insert("sec-websocket-key", http::HeaderValue::from_static("abc"));
        let r = check(&req).unwrap_err();
        assert_eq!(
            (r.status, r.reason),
            (StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key\n")
        );
        let twice = ok("/c", &[("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==")]);
        assert_eq!(check(&twice).unwrap_err().metric, RejectReason::BadKey);
    }

    #[test]
    fn bodies_are_refused() {
        let r = check(&ok("/c", &[("content-length", "10")])).unwrap_err();
        assert_eq!(r.reason, "websocket upgrade must not have a body\n");
        assert!(check(&ok("/c", &[("transfer-encoding", "chunked")])).is_err());
    }

    #[test]
    fn negotiation() {
        let sp = "sec-websocket-protocol";
        let pick = |uri: &str, offered: Option<&str>| {
            let extra: Vec<(&str, &str)> = offered.map(|o| (sp, o)).into_iter().collect();
            negotiate(&ok(uri, &extra))
        };
        let pb = Ok((Protocol::Protobuf, Some(SUBPROTOCOL_PROTOBUF)));
        let js = Ok((Protocol::Json, Some(SUBPROTOCOL_JSON)));
        assert_eq!(pick("/c", None), Ok((Protocol::Json, None)));
        assert_eq!(pick("/c", Some("centrifuge-json, centrifuge-protobuf")), pb);
        assert_eq!(pick("/c", Some("centrifuge-json")), js);
        assert_eq!(
            pick("/c?cf_protocol=protobuf", None),
            Ok((Protocol::Protobuf, None))
        );
        assert_eq!(
            pick("/c?format=protobuf", None),
            Ok((Protocol::Protobuf, None))
        );
        assert_eq!(
            pick("/c?cf_protocol=json", None),
            Ok((Protocol::Json, None))
        );
        assert_eq!(
            pick("/c?cf_protocol=protobuf", Some("centrifuge-protobuf")),
            pb
        );
        // The query picks among several offers.
        assert_eq!(
            pick(
                "/c?cf_protocol=json",
                Some("centrifuge-protobuf, centrifuge-json")
            ),
            js
        );
        assert_eq!(
            pick("/c?x=1&format=json&y", None),
            Ok((Protocol::Json, None))
        );
        // Non-centrifuge subprotocols are ignored, as before.
        assert_eq!(
            pick("/c?cf_protocol=protobuf", Some("chat")),
            Ok((Protocol::Protobuf, None))
        );

        let conflict = Err(Rejection::CONFLICT);
        assert_eq!(
            pick("/c?cf_protocol=protobuf", Some("centrifuge-json")),
            conflict
        );
        assert_eq!(
            pick("/c?format=json", Some("centrifuge-protobuf")),
            conflict
        );
        assert_eq!(pick("/c?cf_protocol=json&format=protobuf", None), conflict);
        let unknown = Err(Rejection::UNKNOWN_PROTOCOL);
        assert_eq!(pick("/c?cf_protocol=xml", None), unknown);
        assert_eq!(pick("/c?format=", None), unknown);
        assert_eq!(pick("/c?cf_protocol=%zz", None), unknown);
        assert_eq!(pick("/c?cf_protocol=%ff", None), unknown);
        assert_eq!(
            pick("/c?cf%5Fprotocol=proto%62uf", None),
            Ok((Protocol::Protobuf, None)),
            "escapes in names and values are decoded"
        );
        assert_eq!(
            pick("/c?x=%zz&format=json", None),
            Ok((Protocol::Json, None)),
            "other parameters are not looked at"
        );
    }
}
