//! Rich-notification encryption: the `encryptedContent` of a change notification,
//! produced exactly as Microsoft Graph produces it, so that receivers written
//! against Graph's documented decryption steps work unchanged.
//!
//! Per notification item, reversing the receiver steps in Graph's docs on
//! change notifications that include resource data:
//!
//! 1. a fresh random 32-byte key;
//! 2. `data` = base64(AES-256-CBC, PKCS#7 padding, IV = the key's first 16 bytes);
//! 3. `dataSignature` = base64(HMAC-SHA256(key, raw ciphertext));
//! 4. `dataKey` = base64(RSA-OAEP(key)) with SHA-1 and MGF1-SHA-1, under the
//!    subscriber's certificate;
//! 5. `encryptionCertificateThumbprint` = upper-case hex SHA-1 of the certificate's DER.
//!
//! The fixed IV, SHA-1 OAEP and encrypt-then-MAC with one shared key are Graph's
//! choices, not ours: receivers hard-code them, so any "improvement" breaks them.

pub use crate::wire::notification::EncryptedContent;
use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use rsa::rand_core::{OsRng, RngCore};
use rsa::{Oaep, RsaPublicKey};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::asn1::ObjectIdentifier;

/// Graph's key-size bounds for the subscriber's RSA key, in bits.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 4096;
/// Graph's bound on `encryptionCertificateId`, in characters.
const MAX_ID_CHARS: usize = 128;
/// AES-256 key length; the IV is the key's first `IV_LEN` bytes.
const KEY_LEN: usize = 32;
const IV_LEN: usize = 16;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// A subscriber's certificate, parsed once when the subscription is created (and
/// again when loaded from the store).
///
/// Holding one proves the certificate is X.509 with an RSA key Graph accepts, so
/// [`EncryptionCertificate::encrypt`] has nothing left to refuse.
#[derive(Clone)]
pub struct EncryptionCertificate {
    public_key: RsaPublicKey,
    /// Upper-case hex SHA-1 of the certificate's DER, as Graph reports it.
    thumbprint: String,
    /// The subscriber's `encryptionCertificateId`, echoed in every notification so
    /// it can pick the matching private key.
    id: String,
}

impl std::fmt::Debug for EncryptionCertificate {
    // The key itself is public, but hundreds of hex digits help nobody reading a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionCertificate")
            .field("id", &self.id)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl EncryptionCertificate {
    /// Parses a subscription's `encryptionCertificate` and `encryptionCertificateId`.
    ///
    /// `certificate` is base64 of an X.509 certificate's DER, as Graph documents;
    /// PEM text (`-----BEGIN CERTIFICATE-----`) is accepted as a convenience.
    /// Whitespace inside the base64 is ignored, so line-wrapped output of
    /// `openssl base64` works too. The key must be RSA of 2048 to 4096 bits; the
    /// certificate's signature, issuer and validity are not checked (Graph accepts
    /// self-signed certificates, and only the key matters for encryption).
    ///
    /// The error is a sentence fit for the 400 response: it names the field and
    /// says what to send instead.
    pub fn parse(certificate: &str, id: &str) -> Result<EncryptionCertificate, String> {
        let id_chars = id.chars().count();
        if !(1..=MAX_ID_CHARS).contains(&id_chars) {
            return Err(format!(
                "encryptionCertificateId must be 1 to {MAX_ID_CHARS} characters long, but it has {id_chars}"
            ));
        }

        let der = certificate_der(certificate)?;
        let parsed = Certificate::from_der(&der).map_err(|e| {
            format!("encryptionCertificate is not base64 of an X.509 certificate in DER form: {e}")
        })?;
        let public_key = rsa_public_key(&parsed)?;

        // Graph's thumbprint is over the bytes the subscriber sent, so hash those,
        // not a re-encoding of the parsed certificate.
        let thumbprint = upper_hex(&Sha1::digest(&der));
        Ok(EncryptionCertificate {
            public_key,
            thumbprint,
            id: id.to_owned(),
        })
    }

    /// The subscriber's `encryptionCertificateId`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The certificate's SHA-1 thumbprint in upper-case hex, as Graph sends it in
    /// `encryptionCertificateThumbprint`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Encrypts one notification item's resource JSON as Graph does.
    ///
    /// Every call draws a fresh key, so two encryptions of the same plaintext
    /// share nothing. The error case is practically unreachable: it means the
    /// operating system's random source failed (a 32-byte key always fits OAEP
    /// under a 2048-bit or larger key, which `parse` guarantees).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptedContent, String> {
        let mut key = [0u8; KEY_LEN];
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| format!("cannot draw a notification key from the OS: {e}"))?;

        let ciphertext = Aes256CbcEnc::new_from_slices(&key, &key[..IV_LEN])
            .map_err(|e| format!("cannot set up AES-256-CBC: {e}"))?
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext);

        let mut mac = <HmacSha256 as Mac>::new_from_slice(&key)
            .map_err(|e| format!("cannot set up HMAC-SHA256: {e}"))?;
        mac.update(&ciphertext);
        let signature = mac.finalize().into_bytes();

        let wrapped_key = self
            .public_key
            .encrypt(&mut OsRng, Oaep::new::<Sha1>(), &key)
            .map_err(|e| format!("cannot encrypt the notification key with RSA-OAEP: {e}"))?;

        Ok(EncryptedContent {
            data: BASE64.encode(&ciphertext),
            data_signature: BASE64.encode(signature),
            data_key: BASE64.encode(wrapped_key),
            encryption_certificate_id: self.id.clone(),
            encryption_certificate_thumbprint: self.thumbprint.clone(),
        })
    }
}

/// Returns the certificate's DER from either accepted text form.
fn certificate_der(certificate: &str) -> Result<Vec<u8>, String> {
    if let Some(begin) = certificate.find("-----BEGIN") {
        // Start at the boundary: tools often print explanatory text before it,
        // which the PEM decoder refuses.
        let (label, der) = x509_cert::der::pem::decode_vec(&certificate.as_bytes()[begin..])
            .map_err(|e| {
                format!(
                    "encryptionCertificate looks like PEM but cannot be decoded ({e}); \
                     send base64 of an X.509 certificate in DER form"
                )
            })?;
        if label != "CERTIFICATE" {
            return Err(format!(
                "encryptionCertificate is PEM of a \"{label}\", not of a \"CERTIFICATE\"; \
                 send only the certificate, as base64 of an X.509 certificate in DER form"
            ));
        }
        return Ok(der);
    }

    let compact: String = certificate
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(
            "encryptionCertificate is empty; send base64 of an X.509 certificate in DER form"
                .to_owned(),
        );
    }
    BASE64.decode(compact).map_err(|e| {
        format!("encryptionCertificate is not base64 of an X.509 certificate in DER form: {e}")
    })
}

/// Takes the certificate's RSA public key, refusing the kinds and sizes Graph refuses.
fn rsa_public_key(certificate: &Certificate) -> Result<RsaPublicKey, String> {
    let spki = &certificate.tbs_certificate.subject_public_key_info;
    let algorithm = spki.algorithm.oid;
    if algorithm != RSA_ENCRYPTION {
        let kind = match algorithm {
            EC_PUBLIC_KEY => "an EC key".to_owned(),
            ED25519 => "an Ed25519 key".to_owned(),
            ED448 => "an Ed448 key".to_owned(),
            RSASSA_PSS => "an RSA-PSS (signing only) key".to_owned(),
            other => format!("a key of algorithm {other}"),
        };
        return Err(format!(
            "encryptionCertificate holds {kind}; Graph requires an RSA key \
             (rsaEncryption) of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
        ));
    }

    // The rsa crate caps keys at 4096 bits with a terse error, so read the
    // modulus ourselves and explain Graph's bounds in the refusal.
    let components = rsa::pkcs1::RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
        .map_err(|e| format!("encryptionCertificate holds a malformed RSA public key: {e}"))?;
    let modulus = rsa::BigUint::from_bytes_be(components.modulus.as_bytes());
    let bits = modulus.bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "encryptionCertificate holds a {bits}-bit RSA key; Graph requires \
             {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
        ));
    }
    let exponent = rsa::BigUint::from_bytes_be(components.public_exponent.as_bytes());
    RsaPublicKey::new(modulus, exponent)
        .map_err(|e| format!("encryptionCertificate holds an unusable RSA public key: {e}"))
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbc::cipher::BlockDecryptMut;
    use rsa::RsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    use x509_cert::der::Encode;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;

    const CERT_B64: &str = include_str!("../../tests/fixtures/notify-cert.b64");
    const CERT_PEM: &str = include_str!("../../tests/fixtures/notify-cert.pem");
    const KEY_PEM: &str = include_str!("../../tests/fixtures/notify-key.pem");
    /// `openssl x509 -in notify-cert.pem -noout -fingerprint -sha1`, colons removed:
    /// an independent tool's answer for the fixture's thumbprint.
    const OPENSSL_SHA1_FINGERPRINT: &str = "C3A076691A4486E20148BFE04269BDC09F10B200";
    const PRESENCE: &str = r##"{"@odata.id":"users/66825e03-7ef5-42da-9069-724602c31f6b/presence","@odata.type":"#microsoft.graph.presence","id":"66825e03-7ef5-42da-9069-724602c31f6b","availability":"Busy","activity":"InAMeeting"}"##;

    /// Graph's documented receiver steps, written from the docs rather than from
    /// `encrypt`: unwrap the key, verify the signature first, then decrypt.
    fn receive(content: &EncryptedContent) -> Result<Vec<u8>, String> {
        let private_key = RsaPrivateKey::from_pkcs8_pem(KEY_PEM).map_err(|e| e.to_string())?;
        let wrapped = BASE64
            .decode(&content.data_key)
            .map_err(|e| e.to_string())?;
        let key = private_key
            .decrypt(Oaep::new::<Sha1>(), &wrapped)
            .map_err(|e| e.to_string())?;
        let ciphertext = BASE64.decode(&content.data).map_err(|e| e.to_string())?;
        let signature = BASE64
            .decode(&content.data_signature)
            .map_err(|e| e.to_string())?;

        let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(&ciphertext);
        mac.verify_slice(&signature)
            .map_err(|_| "dataSignature does not match data".to_owned())?;

        cbc::Decryptor::<Aes256>::new_from_slices(&key, &key[..16])
            .map_err(|e| e.to_string())?
            .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
            .map_err(|e| e.to_string())
    }

    fn fixture() -> EncryptionCertificate {
        EncryptionCertificate::parse(CERT_B64, "presenced-test-cert").expect("fixture parses")
    }

    #[test]
    fn round_trip_follows_graphs_receiver_steps() {
        let certificate = fixture();
        let content = certificate.encrypt(PRESENCE.as_bytes()).expect("encrypts");

        assert_eq!(receive(&content).expect("decrypts"), PRESENCE.as_bytes());
        assert_eq!(content.encryption_certificate_id, "presenced-test-cert");
        assert_eq!(
            content.encryption_certificate_thumbprint,
            certificate.thumbprint()
        );
        assert_eq!(BASE64.decode(&content.data_key).expect("base64").len(), 256);
    }

    #[test]
    fn thumbprint_is_upper_hex_sha1_of_the_der() {
        let der = BASE64.decode(CERT_B64.trim()).expect("fixture is base64");
        let independent: String = Sha1::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .to_uppercase();

        assert_eq!(fixture().thumbprint(), independent);
        assert_eq!(fixture().thumbprint(), OPENSSL_SHA1_FINGERPRINT);
    }

    #[test]
    fn pem_and_base64_der_are_the_same_certificate() {
        let from_pem = EncryptionCertificate::parse(CERT_PEM, "pem").expect("PEM parses");
        assert_eq!(from_pem.thumbprint(), OPENSSL_SHA1_FINGERPRINT);
        let content = from_pem.encrypt(PRESENCE.as_bytes()).expect("encrypts");
        assert_eq!(receive(&content).expect("decrypts"), PRESENCE.as_bytes());

        // Explanatory text before the boundary, as `openssl x509 -text` prints it.
        let annotated = format!("subject=CN = presenced notify test\n{CERT_PEM}");
        let annotated = EncryptionCertificate::parse(&annotated, "pem").expect("parses");
        assert_eq!(annotated.thumbprint(), OPENSSL_SHA1_FINGERPRINT);

        // Line-wrapped base64, as `openssl base64` prints it.
        let wrapped: String = CERT_B64
            .trim()
            .as_bytes()
            .chunks(64)
            .map(|line| format!("{}\n", String::from_utf8_lossy(line)))
            .collect();
        let wrapped = EncryptionCertificate::parse(&wrapped, "wrapped").expect("parses");
        assert_eq!(wrapped.thumbprint(), OPENSSL_SHA1_FINGERPRINT);
    }

    #[test]
    fn every_encryption_draws_a_fresh_key() {
        let certificate = fixture();
        let first = certificate.encrypt(PRESENCE.as_bytes()).expect("encrypts");
        let second = certificate.encrypt(PRESENCE.as_bytes()).expect("encrypts");

        assert_ne!(first.data, second.data);
        assert_ne!(first.data_signature, second.data_signature);
        assert_ne!(first.data_key, second.data_key);
        assert_eq!(receive(&second).expect("decrypts"), PRESENCE.as_bytes());
    }

    #[test]
    fn tampered_data_fails_the_signature_check() {
        let mut content = fixture().encrypt(PRESENCE.as_bytes()).expect("encrypts");
        let mut ciphertext = BASE64.decode(&content.data).expect("base64");
        ciphertext[0] ^= 1;
        content.data = BASE64.encode(&ciphertext);

        assert_eq!(
            receive(&content),
            Err("dataSignature does not match data".to_owned())
        );
    }

    #[test]
    fn serializes_with_graphs_field_names() {
        let content = fixture().encrypt(b"{}").expect("encrypts");
        let json = serde_json::to_value(&content).expect("serializes");
        let mut keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();

        assert_eq!(
            keys,
            [
                "data",
                "dataKey",
                "dataSignature",
                "encryptionCertificateId",
                "encryptionCertificateThumbprint"
            ]
        );
        assert_eq!(
            serde_json::from_value::<EncryptedContent>(json).ok(),
            Some(content)
        );
    }

    #[test]
    fn debug_shows_only_id_and_thumbprint() {
        assert_eq!(
            format!("{:?}", fixture()),
            format!(
                "EncryptionCertificate {{ id: \"presenced-test-cert\", thumbprint: \"{OPENSSL_SHA1_FINGERPRINT}\", .. }}"
            )
        );
    }

    /// The fixture certificate with its key replaced by an RSA key whose modulus
    /// has `bits` bits. The signature no longer verifies, which `parse` does not
    /// check; the modulus is not a product of primes, which only sizing needs.
    fn certificate_with_rsa_bits(bits: usize) -> String {
        let key = RsaPublicKey::new_unchecked(
            rsa::BigUint::from_bytes_be(&vec![0xFF; bits / 8]),
            rsa::BigUint::from(65_537_u32),
        );
        let spki_der = key.to_public_key_der().expect("encodes");
        let mut certificate =
            Certificate::from_der(&BASE64.decode(CERT_B64.trim()).expect("base64")).expect("DER");
        certificate.tbs_certificate.subject_public_key_info =
            SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).expect("SPKI");
        BASE64.encode(certificate.to_der().expect("encodes"))
    }

    fn ec_certificate_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("rcgen makes an EC certificate")
            .cert
            .pem()
    }

    /// Parses `(certificate, id)` and checks that it fails with a message
    /// containing every one of `expected`.
    fn check_refused(certificate: &str, id: &str, expected: &[&str]) {
        let error = EncryptionCertificate::parse(certificate, id)
            .expect_err("parse should refuse this input");
        for fragment in expected {
            assert!(
                error.contains(fragment),
                "error {error:?} should contain {fragment:?}"
            );
        }
    }

    #[test]
    fn parse_refuses_with_a_message_saying_what_to_send() {
        let der_hint = "base64 of an X.509 certificate in DER form";
        check_refused("not base64!", "id", &["encryptionCertificate", der_hint]);
        check_refused("", "id", &["encryptionCertificate is empty", der_hint]);
        check_refused(&BASE64.encode("garbage"), "id", &[der_hint]);
        check_refused(
            &ec_certificate_pem(),
            "id",
            &[
                "holds an EC key",
                "requires an RSA key",
                "2048 to 4096 bits",
            ],
        );
        check_refused(
            &certificate_with_rsa_bits(1024),
            "id",
            &["holds a 1024-bit RSA key; Graph requires 2048 to 4096 bits"],
        );
        check_refused(
            &certificate_with_rsa_bits(8192),
            "id",
            &["holds a 8192-bit RSA key; Graph requires 2048 to 4096 bits"],
        );
        // A subscriber sending its private key instead of the certificate.
        check_refused(KEY_PEM, "id", &["\"PRIVATE KEY\"", der_hint]);
        check_refused(
            "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
            "id",
            &["looks like PEM", der_hint],
        );
        check_refused(
            CERT_B64,
            "",
            &["encryptionCertificateId must be 1 to 128 characters long, but it has 0"],
        );
        check_refused(
            CERT_B64,
            &"x".repeat(129),
            &["encryptionCertificateId must be 1 to 128 characters long, but it has 129"],
        );
    }

    #[test]
    fn parse_accepts_the_bounds() {
        assert!(EncryptionCertificate::parse(&certificate_with_rsa_bits(2048), "id").is_ok());
        assert!(EncryptionCertificate::parse(&certificate_with_rsa_bits(4096), "id").is_ok());
        assert!(EncryptionCertificate::parse(CERT_B64, &"é".repeat(128)).is_ok());
    }
}
