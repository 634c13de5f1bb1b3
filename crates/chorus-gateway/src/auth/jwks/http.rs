//! One HTTP/1.1 `GET` of a JWKS document, over TCP or TLS (rustls with ring, the system's
//! trust store loaded once on the first `https://` fetch: [`crate::client_tls`]).
//!
//! A fresh connection per fetch: fetches are rare (a cache miss, at most one per
//! `jwks_refetch_interval`), so a pool would only keep idle sockets open. The connection is
//! driven inside the caller's future (no spawned task), so dropping the future — the
//! caller's timeout — closes it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{ACCEPT, HOST, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Why a fetch failed; [`FetchError::label`] is the metric's `result`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("http: {0}")]
    Http(String),
    #[error("status {0}")]
    Status(StatusCode),
    #[error("body over {0} bytes")]
    TooLarge(usize),
    #[error("timed out")]
    Timeout,
    #[error("not a usable JWKS document: {0}")]
    Invalid(String),
}

impl FetchError {
    /// Whether another attempt may help (not for a document that arrived and is unusable).
    pub(crate) fn retryable(&self) -> bool {
        !matches!(self, FetchError::TooLarge(_) | FetchError::Invalid(_))
    }

    /// The `result` label of `chorus_jwks_fetches_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            FetchError::Connect(_) | FetchError::Tls(_) | FetchError::Http(_) => "error",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) | FetchError::Invalid(_) => "invalid",
            FetchError::Timeout => "timeout",
        }
    }
}

/// The TLS client configuration: the system's roots, or (tests) given ones.
#[derive(Default)]
pub(crate) struct TlsClient {
    config: OnceLock<Arc<rustls::ClientConfig>>,
}

impl TlsClient {
    /// A client trusting exactly `roots` (tests with a private CA).
    #[cfg(test)]
    pub(crate) fn with_roots(roots: rustls::RootCertStore) -> TlsClient {
        let tls = TlsClient::default();
        let _ = tls.config.set(client_config(roots));
        tls
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config
            .get_or_init(|| client_config(crate::client_tls::system_roots()))
            .clone()
    }
}

fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let mut config = crate::client_tls::with_roots(roots);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `GET url`; the body if the status is 200 and it is at most `max_body` bytes.
pub(crate) async fn get(url: &Uri, max_body: usize, tls: &TlsClient) -> Result<Bytes, FetchError> {
    let https = url.scheme_str() == Some("https");
    // `Uri::host` keeps the brackets of an IPv6 literal.
    let host = url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(FetchError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if https {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| FetchError::Tls(std::io::Error::other(e)))?;
        let stream = tokio_rustls::TlsConnector::from(tls.config())
            .connect(name, tcp)
            .await
            .map_err(FetchError::Tls)?;
        request(stream, url, max_body).await
    } else {
        request(tcp, url, max_body).await
    }
}

async fn request<S>(stream: S, url: &Uri, max_body: usize) -> Result<Bytes, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: &dyn std::fmt::Display| FetchError::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::get(path)
        .header(HOST, authority)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("chorus/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(&e))?;
    let exchange = async move {
        let response = sender.send_request(req).await.map_err(|e| http(&e))?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(max_body)
                } else {
                    FetchError::Http(e.to_string())
                }
            })?;
        // `sender` drops here, which lets `conn` finish.
        Ok(body.to_bytes())
    };
    let (result, _) = tokio::join!(exchange, conn);
    result
}
