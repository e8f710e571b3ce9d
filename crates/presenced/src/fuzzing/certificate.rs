//! The `encryptionCertificate` of a subscription with rich notifications.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use super::check_refusal;
use crate::notify::crypto::EncryptionCertificate;

const ID: &str = "fuzzing-certificate";

/// The input as the certificate's text (base64 or PEM, as a client sends
/// it), and as its DER, sent in base64:
/// - a refusal is a message that names `encryptionCertificate`;
/// - an accepted certificate has the upper-case hex SHA-1 of the DER sent
///   as its thumbprint, echoes its id, and encrypts: a certificate accepted
///   is one whose key Graph's encryption works with, so that
///   notifications for it never fail later.
pub fn certificate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_certificate(&text, None);
    check_certificate(&BASE64.encode(data), Some(data));
}

fn check_certificate(text: &str, der: Option<&[u8]>) {
    let certificate = match EncryptionCertificate::parse(text, ID) {
        Ok(certificate) => certificate,
        Err(message) => {
            check_refusal(text, &message);
            assert!(
                message.starts_with("encryptionCertificate"),
                "{text:?}: {message}"
            );
            return;
        }
    };
    assert_eq!(certificate.id(), ID);
    let thumbprint = certificate.thumbprint();
    assert!(
        thumbprint.len() == 40
            && thumbprint
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte)),
        "{thumbprint:?} is not upper-case hex SHA-1"
    );
    if let Some(der) = der {
        let expected: String = Sha1::digest(der)
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        assert_eq!(thumbprint, expected);
    }
    let content = certificate
        .encrypt(br#"{"availability":"Available"}"#)
        .unwrap_or_else(|error| panic!("an accepted certificate does not encrypt: {error}"));
    assert_eq!(content.encryption_certificate_id, ID);
    assert_eq!(content.encryption_certificate_thumbprint, thumbprint);
    let wrapped_key = BASE64.decode(&content.data_key).expect("dataKey is base64");
    assert!(
        (256..=512).contains(&wrapped_key.len()),
        "a key wrapped by RSA of 2048 to 4096 bits is {} bytes",
        wrapped_key.len()
    );
}
