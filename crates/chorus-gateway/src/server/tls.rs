//! Server TLS (`http_server.tls.*`): rustls with ring, one certificate for the external and
//! internal HTTP listeners and the gRPC server API, reloaded without a restart.
//!
//! The certificate chain and key are read from PEM files. [`Tls::reload`] reads them again
//! and swaps them in for new handshakes (connections already open keep theirs); it runs on
//! SIGHUP and whenever a file's modification time changes (checked every
//! `http_server.tls.reload_interval`). A reload that fails — a missing file, a key that does
//! not match — keeps the certificate in use and is logged at ERROR and counted in
//! `chorus_tls_reloads_total{result="error"}`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use metrics::counter;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;
use crate::metrics::{TLS_HANDSHAKE_ERRORS, TLS_RELOADS};

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in it ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("the key in {key} does not fit the certificate or is not supported: {reason}")]
    Key { key: PathBuf, reason: String },
}

/// Reads and checks a certificate chain and its key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified =
        CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| TlsError::Key {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(certified)
}

/// The certificate in use, swapped by reloads.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .map_or_else(|p| p.into_inner().clone(), |g| g.clone()),
        )
    }
}

/// TLS of a server: acceptors for HTTP/1.1 and for gRPC (HTTP/2), one reloadable certificate.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    /// Modification times of the files at the last load.
    loaded: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
    http: TlsAcceptor,
    grpc: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tls {
    /// TLS from `http_server.tls`; `None` when no certificate is configured.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Arc<Tls>>, TlsError> {
        if config.cert_pem_file.is_empty() && config.key_pem_file.is_empty() {
            return Ok(None);
        }
        let (cert, key) = (
            PathBuf::from(&config.cert_pem_file),
            PathBuf::from(&config.key_pem_file),
        );
        let stamps = (modified(&cert), modified(&key));
        let certified = load_certified_key(&cert, &key)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        // ring as the process's provider (a no-op when one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let acceptor = |alpn: &[&[u8]]| {
            // TLS 1.2 and 1.3 with the provider's safe defaults.
            let mut sc = ServerConfig::builder()
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
            sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            TlsAcceptor::from(Arc::new(sc))
        };
        Ok(Some(Arc::new(Tls {
            http: acceptor(&[b"http/1.1"]),
            grpc: acceptor(&[b"h2"]),
            cert,
            key,
            current,
            loaded: RwLock::new(stamps),
        })))
    }

    /// The acceptor of the HTTP listeners (ALPN `http/1.1`: WebSocket upgrades need it).
    pub fn http(&self) -> &TlsAcceptor {
        &self.http
    }

    /// The acceptor of the gRPC server API (ALPN `h2`).
    pub fn grpc(&self) -> &TlsAcceptor {
        &self.grpc
    }

    /// Reads the files again and uses them for new handshakes; on error keeps the current
    /// certificate. Returns whether the new one is in use.
    pub fn reload(&self, why: &str) -> bool {
        let stamps = (modified(&self.cert), modified(&self.key));
        match load_certified_key(&self.cert, &self.key) {
            Ok(certified) => {
                match self.current.0.write() {
                    Ok(mut g) => *g = Arc::new(certified),
                    Err(p) => *p.into_inner() = Arc::new(certified),
                }
                if let Ok(mut g) = self.loaded.write() {
                    *g = stamps;
                }
                counter!(TLS_RELOADS, "result" => "ok").increment(1);
                tracing::info!(cert = %self.cert.display(), reason = why, "TLS certificate reloaded");
                true
            }
            Err(error) => {
                // Retry at the next tick only once the files change again.
                if let Ok(mut g) = self.loaded.write() {
                    *g = stamps;
                }
                counter!(TLS_RELOADS, "result" => "error").increment(1);
                tracing::error!(%error, reason = why, "TLS certificate reload failed; the previous certificate stays in use");
                false
            }
        }
    }

    /// Whether a file changed since the last load.
    fn changed(&self) -> bool {
        let now = (modified(&self.cert), modified(&self.key));
        self.loaded.read().map(|g| *g != now).unwrap_or(true)
    }

    /// Reloads on SIGHUP and, with a non-zero `interval`, when a file's modification time
    /// changes; ends with `stop`.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration, stop: CancellationToken) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hup = hangup();
            let mut tick = (!interval.is_zero()).then(|| tokio::time::interval(interval));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = next_hangup(&mut hup) => { tls.reload("SIGHUP"); }
                    () = next_tick(&mut tick) => {
                        if tls.changed() {
                            tls.reload("file changed");
                        }
                    }
                }
            }
        });
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup() -> Hangup {
    None
}

async fn next_hangup(hup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(s) = hup.as_mut() {
        if s.recv().await.is_some() {
            return;
        }
    }
    let _ = hup;
    std::future::pending().await
}

async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick.as_mut() {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Counts a failed handshake (a plain-HTTP client on a TLS port, a client that does not
/// trust the certificate, a timeout).
pub fn handshake_failed(error: &std::io::Error) {
    counter!(TLS_HANDSHAKE_ERRORS).increment(1);
    tracing::debug!(%error, "TLS handshake failed");
}
