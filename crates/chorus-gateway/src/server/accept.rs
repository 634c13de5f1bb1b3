//! The accept loop: admission of each new connection at the connection budget (see
//! [`super::conns`]), the `503` written to a connection that cannot be admitted, and back-off
//! when `accept` itself fails.
//!
//! `accept` failing with EMFILE/ENFILE/ENOBUFS/ENOMEM means descriptors or kernel memory ran
//! out: the oldest sheddable connection is closed to free one, and the loop sleeps 10 ms,
//! doubling up to 1 s, reset by the next successful accept — never a busy loop (the pending
//! connection stays in the kernel's backlog meanwhile, so retrying at once would fail again).
//! Other errors (a peer that reset before being accepted) back off the same way but shed
//! nothing. Sheds, refusals and accept errors are logged at debug one by one, and summed up in
//! a warning at most once per second.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::conns::{Admission, Conn, Registry, State};
use crate::metrics::HTTP_ACCEPT_ERRORS;

/// First pause after a failed accept.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after repeated failed accepts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest wait for shed connections to close before accepting anyway.
const ROOM_WAIT: Duration = Duration::from_millis(100);
/// At most one summary warning per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// Body of the answer to a connection refused at the budget.
pub const REFUSAL_BODY: &str = "server at connection limit\n";
/// The whole answer, written without reading the request (it may not have arrived).
pub const REFUSAL: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: text/plain; charset=utf-8\r\n",
    "content-length: 27\r\n",
    "retry-after: 1\r\n",
    "connection: close\r\n",
    "\r\n",
    "server at connection limit\n"
);

/// Accepts until `shutdown` resolves, handing every admitted connection to `serve`.
pub async fn run<F, S>(
    listener: &TcpListener,
    registry: &Arc<Registry>,
    mut shutdown: Pin<&mut F>,
    mut serve: S,
) where
    F: Future<Output = ()>,
    S: FnMut(TcpStream, SocketAddr, Conn),
{
    let mut backoff = Backoff::default();
    let mut report = Report::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.as_mut() => return,
            accepted = async {
                // Past the budget, let shed connections close before taking another descriptor.
                registry.room(ROOM_WAIT).await;
                listener.accept().await
            } => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                match registry.admit() {
                    Admission::Admitted { conn, shed } => {
                        if let Some(state) = shed {
                            tracing::debug!(
                                state = state.as_str(),
                                "connection shed at the budget"
                            );
                            report.shed(state);
                        }
                        serve(stream, peer, conn);
                    }
                    Admission::Refused => {
                        tracing::debug!(%peer, "connection refused at the budget (503)");
                        report.refused += 1;
                        refuse(&stream);
                    }
                }
                report.maybe_warn(registry);
            }
            Err(error) => {
                let kind = AcceptErrorKind::of(&error);
                counter!(HTTP_ACCEPT_ERRORS, "kind" => kind.as_str()).increment(1);
                let shed = if kind.out_of_resources() {
                    registry.shed_one()
                } else {
                    None
                };
                let pause = backoff.next_pause();
                tracing::debug!(%error, shed = shed.map(State::as_str), pause_ms = pause.as_millis() as u64, "accept failed");
                if let Some(state) = shed {
                    report.shed(state);
                }
                report.accept_errors += 1;
                report.last_error = Some(error.to_string());
                report.maybe_warn(registry);
                tokio::select! {
                    _ = shutdown.as_mut() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Writes the 503 if the socket takes it at once, then drops (closes) the connection.
fn refuse(stream: &TcpStream) {
    if let Err(error) = stream.try_write(REFUSAL.as_bytes()) {
        tracing::debug!(%error, "writing the 503 to a refused connection failed");
    }
}

/// Exponential back-off between failed accepts.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The pause to take now; doubles the next one up to [`BACKOFF_MAX`].
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        pause
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Classes of accept errors (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptErrorKind {
    /// The process is out of descriptors.
    Emfile,
    /// The system is out of descriptors.
    Enfile,
    /// Out of socket buffer space.
    Enobufs,
    /// Out of kernel memory.
    Enomem,
    /// Anything else (e.g. a connection aborted before it was accepted).
    Other,
}

impl AcceptErrorKind {
    pub fn of(error: &std::io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::EMFILE) => AcceptErrorKind::Emfile,
            Some(libc::ENFILE) => AcceptErrorKind::Enfile,
            Some(libc::ENOBUFS) => AcceptErrorKind::Enobufs,
            Some(libc::ENOMEM) => AcceptErrorKind::Enomem,
            _ => AcceptErrorKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcceptErrorKind::Emfile => "emfile",
            AcceptErrorKind::Enfile => "enfile",
            AcceptErrorKind::Enobufs => "enobufs",
            AcceptErrorKind::Enomem => "enomem",
            AcceptErrorKind::Other => "other",
        }
    }

    /// Whether closing a connection can help.
    pub fn out_of_resources(self) -> bool {
        self != AcceptErrorKind::Other
    }
}

/// What happened since the last summary warning.
#[derive(Debug, Default)]
struct Report {
    last_warn: Option<Instant>,
    shed_pending: u64,
    shed_idle: u64,
    refused: u64,
    accept_errors: u64,
    last_error: Option<String>,
}

impl Report {
    fn shed(&mut self, state: State) {
        match state {
            State::Pending => self.shed_pending += 1,
            _ => self.shed_idle += 1,
        }
    }

    fn maybe_warn(&mut self, registry: &Registry) {
        if self.shed_pending + self.shed_idle + self.refused + self.accept_errors == 0 {
            return;
        }
        let now = Instant::now();
        if self
            .last_warn
            .is_some_and(|last| now.duration_since(last) < WARN_INTERVAL)
        {
            return;
        }
        self.last_warn = Some(now);
        let (pending, idle, busy, upgraded) = registry.counts();
        if self.shed_pending + self.shed_idle + self.refused > 0 {
            tracing::warn!(
                budget = registry.budget(),
                shed_pending = self.shed_pending,
                shed_idle = self.shed_idle,
                refused = self.refused,
                pending,
                idle,
                busy,
                upgraded,
                "connection budget reached: shedding connections that completed no request, or refusing new ones"
            );
        }
        if self.accept_errors > 0 {
            tracing::warn!(
                errors = self.accept_errors,
                last_error = self.last_error.as_deref().unwrap_or(""),
                pending,
                idle,
                busy,
                upgraded,
                "accept failing; backing off"
            );
        }
        *self = Report {
            last_warn: self.last_warn,
            ..Report::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..10).map(|_| b.next_pause().as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_millis(10));
    }

    #[test]
    fn refusal_is_a_complete_503() {
        let (head, body) = REFUSAL.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert_eq!(body, REFUSAL_BODY);
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(head.ends_with("connection: close"));
    }

    #[test]
    fn accept_error_kinds() {
        let of = |code| AcceptErrorKind::of(&std::io::Error::from_raw_os_error(code));
        assert_eq!(of(libc::EMFILE), AcceptErrorKind::Emfile);
        assert_eq!(of(libc::ENFILE), AcceptErrorKind::Enfile);
        assert_eq!(of(libc::ENOBUFS), AcceptErrorKind::Enobufs);
        assert_eq!(of(libc::ENOMEM), AcceptErrorKind::Enomem);
        assert_eq!(of(libc::ECONNABORTED), AcceptErrorKind::Other);
        assert!(of(libc::EMFILE).out_of_resources());
        assert!(!of(libc::ECONNABORTED).out_of_resources());
    }
}
