//! The service key: `authorization: apikey <key>` metadata on every call.
//!
//! [`ApiKeyCheck`] is the server-side interceptor (constant-time comparison, UNAUTHENTICATED
//! otherwise); [`ApiKeyHeader`] is the client-side one that adds the metadata.

use std::sync::Arc;

use subtle::ConstantTimeEq as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata key carrying the service key.
pub const AUTHORIZATION: &str = "authorization";
const SCHEME: &str = "apikey ";

/// Refuses calls without the right key.
#[derive(Clone)]
pub struct ApiKeyCheck {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for ApiKeyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCheck").finish_non_exhaustive()
    }
}

impl ApiKeyCheck {
    pub fn new(key: &str) -> ApiKeyCheck {
        ApiKeyCheck {
            key: key.as_bytes().into(),
        }
    }

    /// Whether `value` (an `authorization` metadata value) carries the key.
    pub fn accepts(&self, value: &[u8]) -> bool {
        let Some((scheme, key)) = value.split_at_checked(SCHEME.len()) else {
            return false;
        };
        !self.key.is_empty()
            && scheme.eq_ignore_ascii_case(SCHEME.as_bytes())
            && bool::from(key.ct_eq(&self.key))
    }
}

impl Interceptor for ApiKeyCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match request.metadata().get(AUTHORIZATION) {
            Some(value) if self.accepts(value.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong presence service key")),
            None => Err(Status::unauthenticated(
                "missing metadata \"authorization: apikey <key>\"",
            )),
        }
    }
}

/// Adds the key to every outgoing call.
#[derive(Clone)]
pub struct ApiKeyHeader {
    value: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for ApiKeyHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyHeader").finish_non_exhaustive()
    }
}

impl ApiKeyHeader {
    /// `None` when the key cannot be sent as ASCII metadata (the service then answers
    /// UNAUTHENTICATED, which is reported).
    pub fn new(key: &str) -> ApiKeyHeader {
        ApiKeyHeader {
            value: format!("{SCHEME}{key}").parse().ok(),
        }
    }
}

impl Interceptor for ApiKeyHeader {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_passes() {
        let check = ApiKeyCheck::new("s3cret");
        assert!(check.accepts(b"apikey s3cret"));
        assert!(check.accepts(b"ApiKey s3cret"));
        assert!(!check.accepts(b"apikey s3cre"));
        assert!(!check.accepts(b"apikey s3cret "));
        assert!(!check.accepts(b"bearer s3cret"));
        assert!(!check.accepts(b"s3cret"));
        assert!(!check.accepts(b""));
        assert!(!ApiKeyCheck::new("").accepts(b"apikey "));
    }
}
