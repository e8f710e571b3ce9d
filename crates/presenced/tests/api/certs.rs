//! A certificate authority made for one test, and a server certificate it
//! signs for the loopback names, written as PEM files: presenced serves
//! HTTPS with them (`--tls-cert`, `--tls-key`), an https webhook receiver
//! too, and presenced (`--webhook-ca-file`), Node (`NODE_EXTRA_CA_CERTS`)
//! and Chromium trust the authority.

use std::path::{Path, PathBuf};

pub struct TestPki {
    /// Holds the files; removed when the value is dropped.
    directory: tempfile::TempDir,
}

impl TestPki {
    /// A new authority and a certificate for `localhost` and `127.0.0.1`
    /// signed by it, with its key.
    pub fn new() -> TestPki {
        let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        authority
            .distinguished_name
            .push(rcgen::DnType::CommonName, "presenced test authority");
        authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        authority.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let authority_key = rcgen::KeyPair::generate().expect("a key");
        let authority = rcgen::CertifiedIssuer::self_signed(authority, authority_key)
            .expect("the authority's certificate");
        let mut server =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        server
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = rcgen::KeyPair::generate().expect("a key");
        let server = server
            .signed_by(&server_key, &authority)
            .expect("the server's certificate");
        let directory = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(directory.path().join("ca.pem"), authority.pem()).expect("written");
        std::fs::write(directory.path().join("cert.pem"), server.pem()).expect("written");
        std::fs::write(directory.path().join("key.pem"), server_key.serialize_pem())
            .expect("written");
        TestPki { directory }
    }

    /// The authority's certificate.
    pub fn ca(&self) -> PathBuf {
        self.directory.path().join("ca.pem")
    }

    /// The server certificate, for `localhost` and `127.0.0.1`.
    pub fn cert(&self) -> PathBuf {
        self.directory.path().join("cert.pem")
    }

    /// The server certificate's private key.
    pub fn key(&self) -> PathBuf {
        self.directory.path().join("key.pem")
    }
}

/// A path as an argument.
pub fn text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}
