//! HTTPS: `--tls-cert` and `--tls-key` (PEM files) made into a rustls
//! acceptor. The JavaScript Graph client sends its token only over https,
//! so a presenced that checks tokens is usually served this way. Also the
//! reading of a file of extra CA certificates that presenced trusts as a
//! client (`--webhook-ca-file`).

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
    config.alpn_protocols = crate::protocol::ALPN
        .iter()
        .map(|protocol| protocol.to_vec())
        .collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The CA certificates of the PEM file `path`, given by `flag`, each checked
/// to be one a TLS client can trust. Every error names the flag, the file
/// and what is wrong with it.
pub fn trusted_certificates(
    flag: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let bytes =
        std::fs::read(path).map_err(|error| format!("cannot read {flag} {shown}: {error}"))?;
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{flag} {shown} is not valid PEM: {error}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "{flag} {shown} holds no CERTIFICATE block; give a PEM file of one or more CA certificates"
        ));
    }
    for (index, certificate) in certificates.iter().enumerate() {
        // rustls parses a trust anchor the way it will use it: what it
        // refuses here could never verify a receiver.
        rustls::RootCertStore::empty()
            .add(certificate.clone())
            .map_err(|error| {
                format!(
                    "certificate {} of {} in {flag} {shown} is not a usable X.509 certificate: {error}",
                    index + 1,
                    certificates.len()
                )
            })?;
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::io::Write::write_all(&mut file, contents).expect("written");
        file
    }

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("a key");
        params.self_signed(&key).expect("a certificate").pem()
    }

    #[test]
    fn a_bundle_of_ca_certificates_is_read_whole() {
        let bundle = file(format!("{}{}", ca_pem(), ca_pem()).as_bytes());
        let certificates =
            trusted_certificates("--webhook-ca-file", bundle.path()).expect("two certificates");
        assert_eq!(certificates.len(), 2);
    }

    #[test]
    fn each_unusable_file_is_refused_naming_the_flag_the_file_and_the_fault() {
        let key = rcgen::KeyPair::generate().expect("a key").serialize_pem();
        let garbage_certificate =
            "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        let cases: [(&[u8], &str); 4] = [
            (b"", "holds no CERTIFICATE block"),
            (key.as_bytes(), "holds no CERTIFICATE block"),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "is not valid PEM",
            ),
            (
                garbage_certificate.as_bytes(),
                "certificate 1 of 1 in --webhook-ca-file",
            ),
        ];
        for (contents, fault) in cases {
            let given = file(contents);
            let error =
                trusted_certificates("--webhook-ca-file", given.path()).expect_err("refused");
            assert!(error.contains(fault), "{error}");
            assert!(
                error.contains(&given.path().display().to_string()),
                "{error}"
            );
        }
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        let error = trusted_certificates("--webhook-ca-file", missing).expect_err("refused");
        assert!(
            error.starts_with("cannot read --webhook-ca-file /nonexistent/ca.pem"),
            "{error}"
        );
    }
}
