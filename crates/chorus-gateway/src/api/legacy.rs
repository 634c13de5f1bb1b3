//! The legacy single endpoint `POST <prefix>` (Centrifugo still serves it; removal planned for
//! its v7). The body is one or more JSON commands `{"id"?, "method", "params"}` one after the
//! other (whitespace/newline separated); the answer is one reply `{"id"?, "error"?, "result"?}`
//! per command, joined with `\n`, in order.
//!
//! `method` is a name (case-insensitive: `"publish"`, `"PRESENCE_STATS"`) or the number of
//! Centrifugo's `MethodType` enum (`0` publish … `12` refresh); a missing method is `0`
//! (publish), as in Centrifugo. `batch` is not a legacy method. Undecodable `params` answer
//! error 107 in the reply (not HTTP 400); an undecodable envelope is HTTP 400.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use chorus_core::api::{Method, UNKNOWN_METHOD_LABEL};
use chorus_core::{ApiError, Node};
use chorus_protocol::codes::{ERROR_BAD_REQUEST, ERROR_METHOD_NOT_FOUND};

use super::{describe_json_error, json, plain, record_error, requests, results, ErrorBody};

#[derive(Debug, Deserialize)]
struct LegacyCommand {
    #[serde(default)]
    id: Option<u32>,
    /// A string name or a `MethodType` number.
    #[serde(default)]
    method: Option<serde_json::Value>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct LegacyReply<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Centrifugo's `MethodType` numbering (13 is unused there; 14+ are PRO methods).
const NUMBERED: [Method; 13] = [
    Method::Publish,
    Method::Broadcast,
    Method::Unsubscribe,
    Method::Disconnect,
    Method::Presence,
    Method::PresenceStats,
    Method::History,
    Method::HistoryRemove,
    Method::Channels,
    Method::Info,
    Method::Rpc,
    Method::Subscribe,
    Method::Refresh,
];

/// The method a legacy command names; `None` when unknown (reply error 104).
fn legacy_method(method: Option<&serde_json::Value>) -> Option<Method> {
    match method {
        None | Some(serde_json::Value::Null) => Some(Method::Publish),
        Some(serde_json::Value::String(name)) => {
            Method::from_name(&name.to_ascii_lowercase()).filter(|m| *m != Method::Batch)
        }
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| NUMBERED.get(n).copied()),
        Some(_) => None,
    }
}

async fn run_legacy(node: &Node, command: &LegacyCommand) -> Result<Box<RawValue>, ApiError> {
    let Some(method) = legacy_method(command.method.as_ref()) else {
        record_error(
            UNKNOWN_METHOD_LABEL,
            ERROR_METHOD_NOT_FOUND.code.to_string(),
        );
        return Err(ApiError::from(ERROR_METHOD_NOT_FOUND));
    };
    let params = command.params.as_deref().map_or("{}", RawValue::get);
    let parsed = if params == "null" {
        requests::parse_command(method, b"{}")
    } else {
        requests::parse_command(method, params.as_bytes())
    };
    match parsed {
        Ok(request) => {
            let response = node.api().call(request).await?;
            results::render(&response)
                .inspect_err(|e| record_error(method.name(), e.code.to_string()))
        }
        Err(_) => {
            record_error(method.name(), ERROR_BAD_REQUEST.code.to_string());
            Err(ApiError::from(ERROR_BAD_REQUEST))
        }
    }
}

/// Handles `POST <prefix>` (authorization already checked).
pub async fn handle(node: &Node, body: &[u8]) -> Response<Full<Bytes>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        record_error(UNKNOWN_METHOD_LABEL, "http_400".to_owned());
        return plain(StatusCode::BAD_REQUEST, "empty request body\n".to_owned());
    }
    // Decode every command first: a broken envelope anywhere refuses the whole request
    // before anything ran.
    let mut commands = Vec::new();
    for command in serde_json::Deserializer::from_slice(body).into_iter::<LegacyCommand>() {
        match command {
            Ok(command) => commands.push(command),
            Err(e) => {
                record_error(UNKNOWN_METHOD_LABEL, "http_400".to_owned());
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("{}\n", describe_json_error(&e)),
                );
            }
        }
    }
    let mut out = String::new();
    for (i, command) in commands.iter().enumerate() {
        let outcome = run_legacy(node, command).await;
        let reply = LegacyReply {
            id: command.id.unwrap_or(0),
            error: outcome.as_ref().err().map(ErrorBody::from),
            result: outcome.as_ref().ok().map(|r| &**r),
        };
        let text = serde_json::to_string(&reply).unwrap_or_else(|_| {
            r#"{"error":{"code":100,"message":"internal server error"}}"#.to_owned()
        });
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&text);
    }
    json(out)
}
