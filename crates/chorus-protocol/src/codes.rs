//! The wire contract's code tables: command error codes, WebSocket close (disconnect) codes and
//! server unsubscribe codes. Each code is documented once, here. Changing one is a protocol
//! change: the official SDKs decide whether to retry, reconnect or give up from these numbers.

use crate::messages::Error;

/// A command error code with its canonical message and whether SDKs retry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    pub code: u32,
    pub message: &'static str,
    /// Temporary errors make SDKs retry with backoff.
    pub temporary: bool,
}

impl ErrorCode {
    /// The protocol `Error` message for this code.
    pub fn to_error(self) -> Error {
        Error {
            code: self.code,
            message: self.message.to_string(),
            temporary: self.temporary,
        }
    }
}

const fn err(code: u32, message: &'static str, temporary: bool) -> ErrorCode {
    ErrorCode {
        code,
        message,
        temporary,
    }
}

/// Server failure; SDKs retry.
pub const ERROR_INTERNAL: ErrorCode = err(100, "internal server error", true);
pub const ERROR_UNAUTHORIZED: ErrorCode = err(101, "unauthorized", false);
/// The channel's namespace is not configured.
pub const ERROR_UNKNOWN_CHANNEL: ErrorCode = err(102, "unknown channel", false);
pub const ERROR_PERMISSION_DENIED: ErrorCode = err(103, "permission denied", false);
/// RPC method of an unknown rpc namespace (no handler at all answers 108).
pub const ERROR_METHOD_NOT_FOUND: ErrorCode = err(104, "method not found", false);
pub const ERROR_ALREADY_SUBSCRIBED: ErrorCode = err(105, "already subscribed", false);
/// A per-connection limit (e.g. `client.channel_limit`) is reached.
pub const ERROR_LIMIT_EXCEEDED: ErrorCode = err(106, "limit exceeded", false);
pub const ERROR_BAD_REQUEST: ErrorCode = err(107, "bad request", false);
/// Feature switched off for this channel (history, presence) or not implemented.
pub const ERROR_NOT_AVAILABLE: ErrorCode = err(108, "not available", false);
/// SDKs fetch a fresh token and retry.
pub const ERROR_TOKEN_EXPIRED: ErrorCode = err(109, "token expired", false);
pub const ERROR_EXPIRED: ErrorCode = err(110, "expired", false);
pub const ERROR_TOO_MANY_REQUESTS: ErrorCode = err(111, "too many requests", true);
/// History epoch mismatch, or failed recovery when the client set subscribe `flag & 2`.
pub const ERROR_UNRECOVERABLE_POSITION: ErrorCode = err(112, "unrecoverable position", false);
/// Concurrent map pagination (newer protocol extension); SDKs retry.
pub const ERROR_CONCURRENT_PAGINATION: ErrorCode = err(113, "concurrent pagination", true);

/// A disconnect: WebSocket close code and plain-text reason (never JSON: centrifuge-js tries
/// to parse the reason as JSON first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisconnectCode {
    pub code: u16,
    pub reason: &'static str,
}

impl DisconnectCode {
    /// 3000–3499 and 4000–4499 (and ≥ 5000) make clients reconnect; 3500–3999 and 4500–4999 are
    /// terminal.
    pub fn reconnect(self) -> bool {
        !matches!(self.code, 3500..=3999 | 4500..=4999)
    }
}

const fn dis(code: u16, reason: &'static str) -> DisconnectCode {
    DisconnectCode { code, reason }
}

/// Label for a connection closed without advice (no close code is written).
pub const DISCONNECT_CONNECTION_CLOSED: DisconnectCode = dis(3000, "connection closed");
/// Node shutdown: clients reconnect elsewhere and recover.
pub const DISCONNECT_SHUTDOWN: DisconnectCode = dis(3001, "shutdown");
pub const DISCONNECT_SERVER_ERROR: DisconnectCode = dis(3004, "internal server error");
pub const DISCONNECT_EXPIRED: DisconnectCode = dis(3005, "connection expired");
pub const DISCONNECT_SUB_EXPIRED: DisconnectCode = dis(3006, "subscription expired");
/// Outbound queue over `client.queue_max_size`; queued messages are dropped, not flushed.
pub const DISCONNECT_SLOW: DisconnectCode = dis(3008, "slow");
pub const DISCONNECT_WRITE_ERROR: DisconnectCode = dis(3009, "write error");
/// Position of a server-side subscription lost.
pub const DISCONNECT_INSUFFICIENT_STATE: DisconnectCode = dis(3010, "insufficient state");
pub const DISCONNECT_FORCE_RECONNECT: DisconnectCode = dis(3011, "force reconnect");
pub const DISCONNECT_NO_PONG: DisconnectCode = dis(3012, "no pong");
pub const DISCONNECT_TOO_MANY_REQUESTS: DisconnectCode = dis(3013, "too many requests");
/// Clients reconnect after dropping their tokens and subscription state.
pub const DISCONNECT_STATE_INVALIDATED: DisconnectCode = dis(3014, "state invalidated");
pub const DISCONNECT_INVALID_TOKEN: DisconnectCode = dis(3500, "invalid token");
pub const DISCONNECT_BAD_REQUEST: DisconnectCode = dis(3501, "bad request");
/// No valid `connect` within `client.stale_close_delay`.
pub const DISCONNECT_STALE: DisconnectCode = dis(3502, "stale");
/// Default of the server API `disconnect` method.
pub const DISCONNECT_FORCE_NO_RECONNECT: DisconnectCode = dis(3503, "force disconnect");
pub const DISCONNECT_CONNECTION_LIMIT: DisconnectCode = dis(3504, "connection limit");
pub const DISCONNECT_CHANNEL_LIMIT: DisconnectCode = dis(3505, "channel limit");
/// A payload that the connection's encoding cannot carry (non-JSON data to a JSON client).
pub const DISCONNECT_INAPPROPRIATE_PROTOCOL: DisconnectCode = dis(3506, "inappropriate protocol");
pub const DISCONNECT_PERMISSION_DENIED: DisconnectCode = dis(3507, "permission denied");
/// E.g. `send` with no handler configured.
pub const DISCONNECT_NOT_AVAILABLE: DisconnectCode = dis(3508, "not available");
pub const DISCONNECT_TOO_MANY_ERRORS: DisconnectCode = dis(3509, "too many errors");

/// A server unsubscribe push code: ≥ 2500 makes the SDK resubscribe, < 2500 is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnsubscribeCode {
    pub code: u32,
    pub reason: &'static str,
}

/// Server API `unsubscribe`: the subscription ends.
pub const UNSUBSCRIBE_SERVER: UnsubscribeCode = UnsubscribeCode {
    code: 2000,
    reason: "server unsubscribe",
};
/// Position lost (gap or epoch change): the SDK resubscribes and recovers.
pub const UNSUBSCRIBE_INSUFFICIENT_STATE: UnsubscribeCode = UnsubscribeCode {
    code: 2500,
    reason: "insufficient state",
};
/// Subscription token expired: the SDK resubscribes with a fresh token.
pub const UNSUBSCRIBE_EXPIRED: UnsubscribeCode = UnsubscribeCode {
    code: 2501,
    reason: "subscription expired",
};
/// The SDK drops token and position, then resubscribes.
pub const UNSUBSCRIBE_STATE_INVALIDATED: UnsubscribeCode = UnsubscribeCode {
    code: 2502,
    reason: "state invalidated",
};

impl UnsubscribeCode {
    /// Codes ≥ 2500 make the SDK resubscribe; lower ones end the subscription.
    pub fn resubscribe(self) -> bool {
        self.code >= 2500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_ranges() {
        assert!(DISCONNECT_SHUTDOWN.reconnect());
        assert!(DISCONNECT_SLOW.reconnect());
        assert!(!DISCONNECT_INVALID_TOKEN.reconnect());
        assert!(!DISCONNECT_BAD_REQUEST.reconnect());
        assert!(dis(4000, "app").reconnect());
        assert!(!dis(4500, "app").reconnect());
        assert!(DISCONNECT_STATE_INVALIDATED.reconnect());
        assert!(!UNSUBSCRIBE_SERVER.resubscribe());
        assert!(UNSUBSCRIBE_INSUFFICIENT_STATE.resubscribe());
        assert!(UNSUBSCRIBE_STATE_INVALIDATED.resubscribe());
    }

    #[test]
    fn only_internal_and_rate_limit_are_temporary() {
        let temporary: Vec<u32> = [
            ERROR_INTERNAL,
            ERROR_UNAUTHORIZED,
            ERROR_UNKNOWN_CHANNEL,
            ERROR_PERMISSION_DENIED,
            ERROR_METHOD_NOT_FOUND,
            ERROR_ALREADY_SUBSCRIBED,
            ERROR_LIMIT_EXCEEDED,
            ERROR_BAD_REQUEST,
            ERROR_NOT_AVAILABLE,
            ERROR_TOKEN_EXPIRED,
            ERROR_EXPIRED,
            ERROR_TOO_MANY_REQUESTS,
            ERROR_UNRECOVERABLE_POSITION,
        ]
        .iter()
        .filter(|e| e.temporary)
        .map(|e| e.code)
        .collect();
        assert_eq!(temporary, vec![100, 111]);
    }
}
