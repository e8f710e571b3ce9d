//! HTTPS: `--tls-cert` and `--tls-key` (PEM files) made into a rustls
//! acceptor. The JavaScript Graph client sends its token only over https,
//! so a presenced that checks tokens is usually served this way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The PEM files HTTPS is served with: `--tls-cert` and `--tls-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

/// Reads the certificate chain and its private key and builds the acceptor.
/// Every error names the file and what is wrong with it.
pub fn acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|error| {
            format!(
                "cannot read the TLS certificate {}: {error}",
                cert_path.display()
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|error| {
            format!(
                "the TLS certificate {} is not valid PEM: {error}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate file {} holds no CERTIFICATE block",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| {
        format!(
            "the TLS key {} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {error}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot configure TLS: {error}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            format!(
                "the TLS key {} does not fit the certificate {}: {error}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    // presenced speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
