//! The TLS object of a proxy (`http.tls`, `grpc.tls`), in Centrifugo's shape: each PEM given
//! inline (`server_ca_pem`, `cert_pem`, `key_pem` — Centrifugo's names) or as a file
//! (`*_pem_file`, as chorus names files elsewhere). Files are read when the config is checked
//! and when the proxies are built, so `checkconfig` refuses what `serve` would.

use serde::{Deserialize, Serialize};

use crate::client_tls::ClientTls;

/// `http.tls` / `grpc.tls` of a proxy object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProxyTlsConfig {
    /// Use this object. gRPC: TLS to the backend (else plaintext h2c). HTTP: an `https://`
    /// endpoint is always TLS (verified with the system's roots); `enabled` applies the
    /// settings below to it. Default false.
    pub enabled: bool,
    /// PEM CA certificate(s) that verify the backend's certificate, inline. Default empty:
    /// the system's roots.
    pub server_ca_pem: String,
    /// The same, from a file. Default empty.
    pub server_ca_pem_file: String,
    /// PEM client certificate chain for mutual TLS, inline (with `key_pem`). Default empty.
    pub cert_pem: String,
    /// The same, from a file (with `key_pem_file`). Default empty.
    pub cert_pem_file: String,
    /// PEM private key of the client certificate, inline. Default empty.
    pub key_pem: String,
    /// The same, from a file. Default empty.
    pub key_pem_file: String,
    /// Server side of mutual TLS in Centrifugo's TLS object: no effect on a proxy (a
    /// client); accepted so Centrifugo configs load, with a warning. Default empty.
    pub client_ca_pem: String,
    /// The same, from a file: no effect on a proxy. Default empty.
    pub client_ca_pem_file: String,
    /// Accept any backend certificate. For tests only: it allows a man in the middle;
    /// `checkconfig` warns (an error with `--strict`). Default false.
    pub insecure_skip_verify: bool,
    /// The name the backend's certificate must carry (and the SNI sent), instead of the
    /// endpoint's host. Default empty.
    pub server_name: String,
}

/// A loaded TLS object: what the connectors need.
#[derive(Debug, Clone)]
pub struct LoadedTls {
    pub(crate) client: rustls::ClientConfig,
    /// `server_name`, when set.
    pub(crate) server_name: Option<String>,
}

impl ProxyTlsConfig {
    /// Whether any setting besides `enabled` is given.
    pub(crate) fn has_settings(&self) -> bool {
        *self
            != ProxyTlsConfig {
                enabled: self.enabled,
                ..Default::default()
            }
    }

    /// Reads the PEMs and builds the client configuration; errors are prefixed with `key`
    /// (e.g. `client.proxy.connect.http.tls`).
    pub fn load(&self, key: &str) -> Result<LoadedTls, String> {
        let pem = |field: &str, inline: &str, file: &str| -> Result<Option<Vec<u8>>, String> {
            match (inline.trim().is_empty(), file.trim().is_empty()) {
                (true, true) => Ok(None),
                (false, false) => Err(format!(
                    "{key}: {field} and {field}_file are both set; use one"
                )),
                (false, true) => Ok(Some(inline.as_bytes().to_vec())),
                (true, false) => {
                    let bytes = std::fs::read(file)
                        .map_err(|e| format!("{key}.{field}_file {file:?}: {e}"))?;
                    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
                        return Err(format!("{key}.{field}_file {file:?} holds no PEM block"));
                    }
                    Ok(Some(bytes))
                }
            }
        };
        let server_ca_pem = pem(
            "server_ca_pem",
            &self.server_ca_pem,
            &self.server_ca_pem_file,
        )?;
        let cert = pem("cert_pem", &self.cert_pem, &self.cert_pem_file)?;
        let key_pem = pem("key_pem", &self.key_pem, &self.key_pem_file)?;
        let client_cert = match (cert, key_pem) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "{key}: the client certificate (cert_pem) and its key (key_pem) must be set \
                     together"
                ))
            }
        };
        let server_name = match self.server_name.trim() {
            "" => None,
            name => {
                rustls_pki_types::ServerName::try_from(name.to_string())
                    .map_err(|e| format!("{key}.server_name {name:?}: {e}"))?;
                Some(name.to_string())
            }
        };
        let client = ClientTls {
            server_ca_pem,
            client_cert,
            insecure_skip_verify: self.insecure_skip_verify,
        }
        .config()
        .map_err(|e| format!("{key}: {e}"))?;
        Ok(LoadedTls {
            client,
            server_name,
        })
    }

    /// Warnings of the safer-config check for this object at `key`; `unused`: why the
    /// endpoint does not use it, if it does not.
    pub(crate) fn warnings(&self, key: &str, unused: Option<&str>, w: &mut Vec<String>) {
        if !self.enabled && !self.has_settings() {
            return;
        }
        if let Some(why) = unused {
            w.push(format!("{key} has no effect: {why}"));
            return;
        }
        if !self.enabled {
            w.push(format!(
                "{key} has settings but {key}.enabled is false: they are not used"
            ));
            return;
        }
        if self.insecure_skip_verify {
            w.push(format!(
                "{key}.insecure_skip_verify is true: the backend's certificate is not verified, \
                 so anyone on the path can read and change hook calls and their answers"
            ));
        }
        if !self.client_ca_pem.is_empty() || !self.client_ca_pem_file.is_empty() {
            w.push(format!(
                "{key}.client_ca_pem has no effect: chorus is the client of a backend hook"
            ));
        }
    }
}
