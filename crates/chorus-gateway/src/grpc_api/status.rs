//! How an API error leaves the gRPC API: inside the response (`error` field, status OK) or as
//! a gRPC status (transport mode), and the map from API error codes to gRPC status codes.

use chorus_core::ApiError;
use chorus_proto::api;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::config::GrpcErrorMode;

/// Metadata key by which one call asks for transport mode (value `transport`), as in
/// Centrifugo.
pub const ERROR_MODE_METADATA: &str = "x-centrifugo-error-mode";

/// The error mode of one call: `grpc_api.error_mode`, or transport when the call carries
/// `x-centrifugo-error-mode: transport` (the metadata can only switch transport mode on).
pub fn mode_of(configured: GrpcErrorMode, metadata: &MetadataMap) -> GrpcErrorMode {
    let asked = metadata
        .get(ERROR_MODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("transport"));
    if asked {
        GrpcErrorMode::Transport
    } else {
        configured
    }
}

/// The gRPC status code of an API error code in transport mode.
///
/// Centrifugo's map: 100 → INTERNAL, 102 and 104 → NOT_FOUND, 107 and 108 → INVALID_ARGUMENT,
/// 112 → OUT_OF_RANGE, 113 → ALREADY_EXISTS. The other codes of the protocol's table, which the
/// server API does not produce today, get the status of the same meaning: 101 / 109 / 110
/// (unauthorized, token expired, expired) → UNAUTHENTICATED, 103 → PERMISSION_DENIED,
/// 105 (already subscribed) → ALREADY_EXISTS, 106 / 111 (limit exceeded, too many requests)
/// → RESOURCE_EXHAUSTED. Any other code → UNKNOWN: a code this table does not know is by
/// definition an error of unknown kind, and INTERNAL stays reserved for 100 (a server fault)
/// so a client can tell the two apart.
pub fn grpc_code(api_code: u32) -> Code {
    match api_code {
        100 => Code::Internal,
        101 | 109 | 110 => Code::Unauthenticated,
        102 | 104 => Code::NotFound,
        103 => Code::PermissionDenied,
        105 | 113 => Code::AlreadyExists,
        106 | 111 => Code::ResourceExhausted,
        107 | 108 => Code::InvalidArgument,
        112 => Code::OutOfRange,
        _ => Code::Unknown,
    }
}

/// The status of an API error in transport mode. Its message is `"<code>: <message>"`
/// (`"102: unknown channel"`), so a client still reads the numeric API code.
pub fn to_status(e: &ApiError) -> Status {
    Status::new(grpc_code(e.code), format!("{}: {}", e.code, e.message))
}

/// The `Error` message of an API error (body mode and per-item errors).
pub fn to_proto(e: &ApiError) -> api::Error {
    api::Error {
        code: e.code,
        message: e.message.clone(),
    }
}

/// The lowercase name of a status code: the `code` label of the gRPC metrics.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
