//! Checks of payloads that other clients will receive: publication data (client and server
//! API), client info (`conn_info` from the connection token, `chan_info` from subscription
//! tokens or the server API) and the `data` of connect/subscribe commands.
//!
//! The rule: in a namespace without `allow_binary_data`, every payload that reaches
//! subscribers must be JSON — a JSON connection embeds it raw, so one non-JSON publication
//! would otherwise close every JSON subscriber of the channel (3506) and every later JSON
//! history reader, for the whole history TTL. JSON is also bounded in nesting depth
//! (`client.json_max_depth`), because recursive parsers in the SDKs (centrifuge-python's
//! `json.loads`) break on deep input. Refusals answer 107 and are counted by reason and source.

use chorus_protocol::raw;

use crate::metrics;

/// Why a payload was refused (the client sees error 107 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not valid JSON")]
    NotJson,
    #[error("JSON payload nested deeper than the allowed depth")]
    TooDeep,
}

impl PayloadError {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            PayloadError::NotJson => "not_json",
            PayloadError::TooDeep => "too_deep",
        }
    }
}

/// Where a refused payload came from (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A client `publish` command.
    ClientPublish,
    /// Server API `publish` / `broadcast`.
    ApiPublish,
    /// Client info (connection/subscription token or server API `info`) on subscribe.
    Info,
    /// Connect or subscribe command `data`.
    CommandData,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::ClientPublish => "client_publish",
            Source::ApiPublish => "api_publish",
            Source::Info => "info",
            Source::CommandData => "command_data",
        }
    }
}

/// Checks that `bytes` is JSON nested at most `max_depth` deep. Empty bytes (no payload) pass.
/// The depth is checked first: one cheap pass that also rejects input no parser should see.
pub fn check_json(bytes: &[u8], max_depth: usize) -> Result<(), PayloadError> {
    if bytes.is_empty() {
        return Ok(());
    }
    if raw::json_deeper_than(bytes, max_depth) {
        return Err(PayloadError::TooDeep);
    }
    if !raw::is_valid_json(bytes) {
        return Err(PayloadError::NotJson);
    }
    Ok(())
}

/// [`check_json`], counting a refusal in `chorus_payload_refused_total{reason,source}`.
pub fn check_counted(bytes: &[u8], max_depth: usize, source: Source) -> Result<(), PayloadError> {
    check_json(bytes, max_depth)
        .inspect_err(|e| metrics::payload_refused(e.label(), source.label()))
}

/// Checks publication data for a namespace: anything goes with `allow_binary_data`, JSON of
/// bounded depth otherwise.
pub fn check_publication(
    data: &[u8],
    allow_binary_data: bool,
    max_depth: usize,
    source: Source,
) -> Result<(), PayloadError> {
    if allow_binary_data {
        return Ok(());
    }
    check_counted(data, max_depth, source)
}

/// Checks the `data` of a connect or subscribe command: JSON is bounded in depth; bytes that
/// are not JSON (only a Protobuf connection can send them) are opaque and pass — they are never
/// delivered to other clients.
pub fn check_command_data(data: &[u8], max_depth: usize) -> Result<(), PayloadError> {
    if raw::json_deeper_than(data, max_depth) && raw::is_valid_json(data) {
        metrics::payload_refused(PayloadError::TooDeep.label(), Source::CommandData.label());
        return Err(PayloadError::TooDeep);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_of_bounded_depth_passes() {
        assert_eq!(check_json(b"", 1), Ok(()));
        assert_eq!(check_json(br#"{"text":"hi"}"#, 1), Ok(()));
        assert_eq!(
            check_json(br#"{"a":{"b":1}}"#, 1),
            Err(PayloadError::TooDeep)
        );
        assert_eq!(check_json(b"hello", 64), Err(PayloadError::NotJson));
        assert_eq!(
            check_json(&[0xff, 0x00, 0x01], 64),
            Err(PayloadError::NotJson)
        );
        let deep = "[".repeat(1 << 20) + &"]".repeat(1 << 20);
        assert_eq!(check_json(deep.as_bytes(), 64), Err(PayloadError::TooDeep));
    }

    #[test]
    fn command_data_depth() {
        assert_eq!(check_command_data(br#"{"a":[1]}"#, 2), Ok(()));
        assert_eq!(
            check_command_data(br#"{"a":[1]}"#, 1),
            Err(PayloadError::TooDeep)
        );
        // Binary (Protobuf) data that merely contains bracket bytes is opaque.
        assert_eq!(check_command_data(b"[[[[\xff", 1), Ok(()));
    }

    #[test]
    fn binary_namespaces_take_anything() {
        let s = Source::ApiPublish;
        assert_eq!(check_publication(&[0xff, 0x00], true, 64, s), Ok(()));
        assert_eq!(
            check_publication(&[0xff, 0x00], false, 64, s),
            Err(PayloadError::NotJson)
        );
    }
}
