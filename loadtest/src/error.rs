//! The error of a load-generator run, as a caller (the binary, a test) can act on it.

use std::path::PathBuf;

/// Why a run could not be carried out. Failures of single connections are not errors: they
/// are counted by reason in the report (`failures_by_reason`).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Flags that contradict each other or exceed what this machine can do (the message
    /// says which flag to change).
    #[error("{0}")]
    Args(String),
    /// A `--url` or `--api` that is not understood or does not resolve.
    #[error("target {url}: {reason}")]
    Target { url: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    /// A worker process died, spoke out of turn or did not answer in time.
    #[error("worker {index}: {reason}")]
    Worker { index: usize, reason: String },
    #[error("writing {path}: {reason}")]
    Output { path: PathBuf, reason: String },
}

impl LoadError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LoadError::Io {
            what: what.into(),
            source,
        }
    }
}
