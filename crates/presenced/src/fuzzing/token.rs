//! Bearer tokens (`--auth hs256` and `--auth jwks`) and JWK sets.
//!
//! The keys are the test fixtures in `tests/fixtures/`: the RSA key
//! `rsa-a` is the one key of the JWK set the targets verify against. The
//! HS256 secret below protects nothing either.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::Sha256;

use super::{block_on, check_refusal};
use crate::auth::{AuthError, Authenticator};
use crate::token::{Claims, KeySource, Secret, TokenError, Verifier};

const SECRET: &str = "presenced's fuzzing secret, which protects nothing";
const RSA_A_JWK: &str = include_str!("../../tests/fixtures/rsa-a.jwk.json");
const RSA_A_PEM: &[u8] = include_bytes!("../../tests/fixtures/rsa-a.pem");

/// The two ways tokens are checked, each as a bare verifier and behind an
/// authenticator (with its cache of verified tokens), as requests are.
struct Checkers {
    hs256: Verifier,
    hs256_requests: Authenticator,
    jwks: Verifier,
    jwks_requests: Authenticator,
    /// `rsa-a`'s public key, to check signatures with, and its private
    /// key, to sign with (parsed once: parsing checks the key, which is
    /// slow).
    rsa_a: DecodingKey,
    rsa_a_signing: EncodingKey,
}

static CHECKERS: LazyLock<Checkers> = LazyLock::new(|| {
    let shared = KeySource::SharedSecret(Secret(SECRET.into()));
    let hs256 = || block_on(Verifier::new(&shared, None, None)).expect("an HS256 verifier");
    let set = format!(r#"{{"keys":[{RSA_A_JWK}]}}"#);
    let jwks = || jwks_verifier(&set).expect("a verifier of the fixture's JWK set");
    let jwk: Jwk = serde_json::from_str(RSA_A_JWK).expect("the fixture is a JWK");
    Checkers {
        hs256: hs256(),
        hs256_requests: Authenticator::tokens(hs256()),
        jwks: jwks(),
        jwks_requests: Authenticator::tokens(jwks()),
        rsa_a: DecodingKey::from_jwk(&jwk).expect("the fixture's key decodes"),
        rsa_a_signing: EncodingKey::from_rsa_pem(RSA_A_PEM).expect("the fixture's key"),
    }
});

/// A verifier of the JWK set `json`, read from a file as `--jwks-file` is.
fn jwks_verifier(json: &str) -> Result<Verifier, String> {
    let path = std::env::temp_dir().join(format!(
        "presenced-fuzzing-{}-{:?}.jwks.json",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, json).expect("the temporary directory is writable");
    let verifier = block_on(Verifier::new(
        &KeySource::JwksFile(path.clone()),
        None,
        None,
    ));
    let _ = std::fs::remove_file(&path);
    verifier
}

/// What signed a token the target made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signer {
    /// HS256 with the verifiers' secret.
    Secret,
    /// RS256 with `rsa-a`, the key of the verifiers' JWK set.
    RsaA,
    /// Anything else: another secret, HS256 keyed with `rsa-a`'s public
    /// key (the algorithm confusion attack), or `rsa-a`'s signature
    /// changed.
    Forger,
}

/// The input as a bearer token, and as the header and claims (its first
/// line and the rest; without a line break, the claims under an HS256
/// header) of tokens that the target signs, validly and not:
/// - a token is accepted only if validly signed: with the secret (HS256)
///   by the HS256 verifier, with the JWK set's key (RS256) by the JWKS one;
/// - a validly signed token is never refused for its signature;
/// - a request with a token gets a principal exactly when the token
///   verifies, in the tenant of its `tid`, the same from the cache;
/// - a refusal is a 401 with a message.
pub fn token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_token(text.trim(), None);
    let (header, claims) = match data.iter().position(|byte| *byte == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], data),
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let named = serde_json::from_slice::<serde_json::Value>(header)
        .ok()
        .and_then(|header| header["alg"].as_str().map(str::to_owned));
    let secret = EncodingKey::from_secret(SECRET.as_bytes());
    let other_secret = EncodingKey::from_secret(b"another secret, which the verifiers do not know");
    let public_key = EncodingKey::from_secret(RSA_A_JWK.as_bytes());
    let mut signed = vec![
        (Signer::Secret, sign(&message, &secret, Algorithm::HS256)),
        (
            Signer::Forger,
            sign(&message, &other_secret, Algorithm::HS256),
        ),
        (
            Signer::Forger,
            sign(&message, &public_key, Algorithm::HS256),
        ),
    ];
    // RSA signing is slow: only for a header that asks for it.
    if named.as_deref() == Some("RS256") {
        let token = sign(&message, &CHECKERS.rsa_a_signing, Algorithm::RS256);
        let mut altered = token.clone().into_bytes();
        // The signature's first character: base64url letters and digits
        // swapped for others, so the signature still decodes.
        let first = message.len() + 1;
        altered[first] = if altered[first] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("base64url is ASCII");
        signed.push((Signer::RsaA, token));
        signed.push((Signer::Forger, altered));
    }
    for (signer, token) in signed {
        check_token(&token, Some(signer));
    }
}

fn sign(message: &str, key: &EncodingKey, algorithm: Algorithm) -> String {
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, algorithm)
        .expect("the fixtures' keys sign");
    format!("{message}.{signature}")
}

/// Checks one token against both verifiers; `signer` is who signed it, if
/// the target did.
fn check_token(token: &str, signer: Option<Signer>) {
    let checkers = &*CHECKERS;
    let kinds = [
        (&checkers.hs256, &checkers.hs256_requests, Signer::Secret),
        (&checkers.jwks, &checkers.jwks_requests, Signer::RsaA),
    ];
    for (verifier, requests, valid_signer) in kinds {
        let verified = block_on(verifier.verify(token));
        match &verified {
            Ok(_) => {
                assert!(
                    signer.is_none_or(|signer| signer == valid_signer),
                    "{token:?}, signed by {signer:?}, was accepted where only {valid_signer:?} signs"
                );
                assert!(
                    validly_signed(token, valid_signer, &checkers.rsa_a),
                    "{token:?} was accepted without a valid {valid_signer:?} signature"
                );
            }
            Err(error) => {
                if signer == Some(valid_signer) {
                    assert_ne!(
                        error,
                        &TokenError::BadSignature,
                        "{token:?} is validly signed by {valid_signer:?}"
                    );
                }
                check_refusal(token, &error.to_string());
            }
        }
        check_request(token, requests, &verified);
    }
}

/// A request bearing `token` gets a principal exactly when the token
/// verified, twice (the second time from the cache of verified tokens).
fn check_request(token: &str, requests: &Authenticator, verified: &Result<Claims, TokenError>) {
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    for _ in 0..2 {
        match (block_on(requests.principal(&headers)), verified) {
            (Ok(principal), Ok(claims)) => {
                assert_eq!(
                    Some(&*principal.tenant.as_str()),
                    claims.tid.as_deref(),
                    "{token:?}"
                );
            }
            (Ok(principal), Err(error)) => {
                panic!("{token:?} was refused ({error}), but a request with it is {principal:?}")
            }
            (Err(AuthError::Unauthorized(message)), _) => check_refusal(token, &message),
            (Err(other), _) => panic!("{token:?}: a request with it is refused with {other:?}"),
        }
    }
}

/// Whether `token` carries a valid signature of `signer` over its first
/// two parts, checked here rather than by the verifier under test: HMAC
/// with the `hmac` crate, RSA with `rsa-a`'s public key.
fn validly_signed(token: &str, signer: Signer, rsa_a: &DecodingKey) -> bool {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return false;
    };
    match signer {
        Signer::Secret => {
            let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
                return false;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
            mac.update(message.as_bytes());
            header.alg == Algorithm::HS256 && mac.verify_slice(&signature).is_ok()
        }
        Signer::RsaA => {
            header.alg == Algorithm::RS256
                && jsonwebtoken::crypto::verify(
                    signature,
                    message.as_bytes(),
                    rsa_a,
                    Algorithm::RS256,
                )
                .unwrap_or(false)
        }
        Signer::Forger => false,
    }
}

/// A token signed once with `rsa-a` under its `kid`, which only a JWK set
/// holding `rsa-a`'s public key under that `kid` may accept.
static RSA_A_TOKEN: LazyLock<String> = LazyLock::new(|| {
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-a".into());
    let claims = serde_json::json!({"tid": "contoso", "exp": 4_102_444_800_u64});
    let key = EncodingKey::from_rsa_pem(RSA_A_PEM).expect("the fixture's key");
    jsonwebtoken::encode(&header, &claims, &key).expect("the fixture's key signs")
});

/// The input as a `--jwks-file`: either a verifier with at least one key
/// or a refusal with a message; and a verifier accepts the token `rsa-a`
/// signed only if the set holds `rsa-a`'s public key under the name
/// `rsa-a`.
pub fn jwk_set(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let verifier = match jwks_verifier(&text) {
        Ok(verifier) => verifier,
        Err(message) => {
            assert!(!message.is_empty(), "{text:?} was refused with no message");
            return;
        }
    };
    let set: JwkSet = serde_json::from_str(&text).expect("a set the verifier read parses");
    if block_on(verifier.verify(&RSA_A_TOKEN)).is_ok() {
        let expected: Jwk = serde_json::from_str(RSA_A_JWK).expect("the fixture is a JWK");
        let holds_rsa_a = set.keys.iter().any(|key| {
            key.common.key_id.as_deref() == Some("rsa-a")
                && rsa_numbers(key).is_some_and(|numbers| Some(numbers) == rsa_numbers(&expected))
        });
        assert!(
            holds_rsa_a,
            "{text:?} accepts a token of a key it does not hold"
        );
    }
}

/// An RSA key's modulus and exponent as big-endian bytes without leading
/// zeros, which spell the same number.
fn rsa_numbers(key: &Jwk) -> Option<(Vec<u8>, Vec<u8>)> {
    let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &key.algorithm else {
        return None;
    };
    let number = |text: &str| {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let first = bytes
            .iter()
            .position(|byte| *byte != 0)
            .unwrap_or(bytes.len());
        Some(bytes[first..].to_vec())
    };
    Some((number(&rsa.n)?, number(&rsa.e)?))
}
