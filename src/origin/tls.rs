//! The TLS configuration (HTTPS with HTTP/2: ALPN `h2`, `http/1.1`) via rustls, for
//! `server.tls_cert` / `server.tls_key`; `origin::serve` accepts the connections. Browsers speak HTTP/2 only over TLS, and LL-HLS needs HTTP/2
//! (HLS2 App. B.1; OME and MediaMTX serve LL-HLS on their TLS port for the same reason).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS set-up failures (at start, naming the file).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain could not be read.
    #[error("server.tls_cert {path}: {message}")]
    Cert {
        /// File.
        path: String,
        /// Why.
        message: String,
    },
    /// The private key could not be read.
    #[error("server.tls_key {path}: {message}")]
    Key {
        /// File.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the pair.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Loads a PEM certificate chain and key into a server configuration offering h2 first.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            message: "no certificate in file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
