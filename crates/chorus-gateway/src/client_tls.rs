//! rustls client configurations (ring as the provider), shared by the JWKS fetcher and the
//! backend hooks: the system's trust store (loaded once per process), a private CA, a client
//! certificate for mutual TLS, and — tests only — a verifier that accepts any certificate.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's root certificates, loaded on first use and kept for the process.
pub(crate) fn system_roots() -> RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "cannot load a system root certificate");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
            roots
        })
        .clone()
}

/// A client configuration trusting `roots`, without a client certificate and without ALPN.
pub(crate) fn with_roots(roots: RootCertStore) -> ClientConfig {
    builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // ring supports every safe default version; the fallback only keeps this infallible.
        .unwrap_or_else(|_| ClientConfig::builder())
}

/// What a TLS client is told to trust and present, with the PEM texts already read.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientTls {
    /// PEM CA certificate(s) that verify the server; `None`: the system's roots.
    pub server_ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain and key presented to the server (mutual TLS).
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any server certificate (the handshake signature is still checked).
    pub insecure_skip_verify: bool,
}

impl ClientTls {
    /// The rustls configuration (no ALPN: the HTTP connector sets it). Errors name the
    /// problem in words; the caller prefixes the key.
    pub(crate) fn config(&self) -> Result<ClientConfig, String> {
        let b = builder();
        let b: ConfigBuilder<ClientConfig, WantsClientCert> = if self.insecure_skip_verify {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        } else {
            let roots = match &self.server_ca_pem {
                None => system_roots(),
                Some(pem) => {
                    let mut roots = RootCertStore::empty();
                    for cert in CertificateDer::pem_slice_iter(pem) {
                        let cert = cert.map_err(|e| format!("server CA: {e}"))?;
                        roots.add(cert).map_err(|e| format!("server CA: {e}"))?;
                    }
                    if roots.is_empty() {
                        return Err("server CA: no certificate in the PEM".into());
                    }
                    roots
                }
            };
            b.with_root_certificates(roots)
        };
        match &self.client_cert {
            None => Ok(b.with_no_client_auth()),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
                if chain.is_empty() {
                    return Err("client certificate: no certificate in the PEM".into());
                }
                let key = PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|e| format!("client key: {e}"))?;
                b.with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate and key: {e}"))
            }
        }
    }
}

/// `insecure_skip_verify`: any certificate chain is accepted; the handshake signatures are
/// still verified, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
