//! Bearer tokens: verifying them into [`Claims`] (`--auth hs256`,
//! `--auth jwks`) and minting development tokens (`presenced token`).
//!
//! The cryptography and the standard claims (`exp`, `nbf`, `iss`, `aud`)
//! are jsonwebtoken's; this module chooses the key (the shared secret, or a
//! JWKS key by `kid`), keeps a JWKS URL's keys fresh, and turns every
//! failure into a [`TokenError`] whose message says what is wrong without
//! repeating anything the token contains.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Instant as MonotonicInstant;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;

/// A JWKS URL is fetched again for an unknown `kid` at most this often, so
/// that tokens with made-up key ids cannot make presenced hammer the issuer.
const JWKS_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How long fetching a JWKS URL may take.
const JWKS_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The claims presenced reads; the standard ones are checked by jsonwebtoken.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// The application, in v1 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// The application, in v2 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// Delegated scopes, space-separated: the token is a user's, through an app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// Application permissions: with no `scp`, the token is the app's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Expiry, in seconds since the epoch (a number, as RFC 7519 allows
    /// fractions); required and checked by jsonwebtoken, kept here so that
    /// a verified token can be remembered until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<f64>,
}

/// Why a token was refused; each is a 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "Access token is empty: send an 'Authorization: Bearer <token>' header with a JWT issued for presenced."
    )]
    Missing,
    #[error("The Authorization header must be 'Bearer <token>'.")]
    NotBearer,
    #[error(
        "The access token is not a well-formed JWT (a JSON header, payload and signature, each base64url)."
    )]
    Malformed,
    #[error(
        "The access token is signed with an algorithm this server does not accept; it accepts {0}."
    )]
    WrongAlgorithm(&'static str),
    #[error(
        "The access token names a signing key (kid) that the configured key set does not have."
    )]
    UnknownKey,
    #[error("The access token's signature is invalid.")]
    BadSignature,
    #[error("The access token has expired; get a new one.")]
    Expired,
    #[error("The access token is not valid yet (nbf is in the future).")]
    NotYetValid,
    #[error("The access token was issued by an issuer (iss) this server does not accept.")]
    WrongIssuer,
    #[error("The access token is for another audience (aud); request one for this server.")]
    WrongAudience,
    #[error("The access token lacks the {0} claim.")]
    MissingClaim(&'static str),
    #[error("The access token's claims are not of the expected types.")]
    BadClaims,
}

/// Where the verifying keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `--auth hs256 --jwt-secret S`.
    SharedSecret(Secret),
    /// `--auth jwks --jwks-file F`.
    JwksFile(PathBuf),
    /// `--auth jwks --jwks-url U`.
    JwksUrl(String),
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(text.to_owned()))
    }
}

/// The shortest HS256 secret accepted: a shorter one can be brute-forced
/// from one captured token.
pub const MIN_SECRET_BYTES: usize = 32;

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

/// Checks bearer tokens against one key source.
pub struct Verifier {
    keys: Keys,
    /// One validation per accepted algorithm.
    validations: Vec<(Algorithm, Validation)>,
    accepted: &'static str,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Verifier")
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

enum Keys {
    Shared(DecodingKey),
    Set(KeySet),
}

/// A JWKS's keys by `kid`, and where to fetch them again.
struct KeySet {
    by_kid: RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    url: Option<String>,
    client: reqwest::Client,
    /// When an unknown `kid` last made us fetch the URL. A tokio mutex: it
    /// is held across the fetch, so that concurrent requests with the same
    /// new `kid` wait for one fetch instead of starting their own.
    last_refresh: tokio::sync::Mutex<Option<MonotonicInstant>>,
}

impl Verifier {
    /// Builds a verifier; a JWKS URL is fetched now, so that a wrong URL
    /// stops the server at start rather than failing every request.
    pub async fn new(
        source: &KeySource,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Verifier, String> {
        let (keys, algorithms, accepted): (Keys, &[Algorithm], &'static str) = match source {
            KeySource::SharedSecret(secret) => (
                Keys::Shared(DecodingKey::from_secret(secret.0.as_bytes())),
                &[Algorithm::HS256],
                "HS256",
            ),
            KeySource::JwksFile(path) => {
                let set = read_jwks_file(path)?;
                (
                    Keys::Set(KeySet::new(set, None, http_client()?)?),
                    &[Algorithm::RS256, Algorithm::ES256],
                    "RS256 and ES256",
                )
            }
            KeySource::JwksUrl(url) => {
                let client = http_client()?;
                let set = fetch_jwks(&client, url).await?;
                (
                    Keys::Set(KeySet::new(set, Some(url.clone()), client)?),
                    &[Algorithm::RS256, Algorithm::ES256],
                    "RS256 and ES256",
                )
            }
        };
        let validations = algorithms
            .iter()
            .map(|algorithm| (*algorithm, validation(*algorithm, issuer, audience)))
            .collect();
        Ok(Verifier {
            keys,
            validations,
            accepted,
        })
    }

    /// Verifies a token's signature and standard claims and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| match error.kind() {
            ErrorKind::Json(_) if names_an_algorithm(token) => {
                // An algorithm jsonwebtoken does not know at all, `none` included.
                TokenError::WrongAlgorithm(self.accepted)
            }
            _ => TokenError::Malformed,
        })?;
        let Some((_, validation)) = self
            .validations
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
        else {
            return Err(TokenError::WrongAlgorithm(self.accepted));
        };
        let decoded = match &self.keys {
            Keys::Shared(key) => jsonwebtoken::decode::<Claims>(token, key, validation),
            Keys::Set(set) => {
                let key = set.key(header.kid.as_deref(), header.alg).await?;
                jsonwebtoken::decode::<Claims>(token, &key, validation)
            }
        };
        decoded
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::MissingClaim(match claim.as_str() {
                        "exp" => "exp",
                        "iss" => "iss",
                        "aud" => "aud",
                        _ => "a required",
                    })
                }
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm(self.accepted),
                ErrorKind::Json(_) => TokenError::BadClaims,
                _ => TokenError::Malformed,
            })
    }
}

/// Whether a token's header is a JSON object with a string `alg`: told
/// apart from a header that is not JSON at all, for the 401's message.
fn names_an_algorithm(token: &str) -> bool {
    use base64::Engine;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|header| header["alg"].is_string())
}

fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    match issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

impl KeySet {
    fn new(set: JwkSet, url: Option<String>, client: reqwest::Client) -> Result<KeySet, String> {
        Ok(KeySet {
            by_kid: RwLock::new(keys_by_kid(&set)?),
            url,
            client,
            last_refresh: tokio::sync::Mutex::new(None),
        })
    }

    /// The key for `kid` (or the only key, for a token without one), fetching
    /// the URL again at most once a minute when the `kid` is unknown.
    async fn key(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<DecodingKey, TokenError> {
        if let Some(key) = self.lookup(kid, algorithm)? {
            return Ok(key);
        }
        let (Some(url), Some(_)) = (&self.url, kid) else {
            return Err(TokenError::UnknownKey);
        };
        let mut last_refresh = self.last_refresh.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.lookup(kid, algorithm)? {
            return Ok(key);
        }
        if last_refresh.is_some_and(|at| at.elapsed() < JWKS_REFRESH_INTERVAL) {
            return Err(TokenError::UnknownKey);
        }
        *last_refresh = Some(MonotonicInstant::now());
        match fetch_jwks(&self.client, url)
            .await
            .and_then(|set| keys_by_kid(&set))
        {
            Ok(keys) => {
                *self
                    .by_kid
                    .write()
                    .unwrap_or_else(|poison| poison.into_inner()) = keys;
                tracing::info!("fetched the JWKS again for an unknown kid");
            }
            Err(error) => {
                tracing::warn!(%error, "fetching the JWKS again failed; keeping the keys we have")
            }
        }
        self.lookup(kid, algorithm)?.ok_or(TokenError::UnknownKey)
    }

    fn lookup(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Option<DecodingKey>, TokenError> {
        let keys = self
            .by_kid
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        let found = match kid {
            Some(kid) => keys.get(kid),
            None if keys.len() == 1 => keys.values().next(),
            None => return Err(TokenError::UnknownKey),
        };
        match found {
            Some((key_algorithm, key)) if *key_algorithm == algorithm => Ok(Some(key.clone())),
            // A key of one kind used with another algorithm's header is the
            // classic confusion attack: refuse it outright.
            Some(_) => Err(TokenError::WrongAlgorithm(
                "the algorithm of the key named by kid",
            )),
            None => Ok(None),
        }
    }
}

/// The usable signing keys of a JWKS: RSA keys for RS256 and P-256 EC keys
/// for ES256, each with a `kid`. Keys of other kinds, keys for encryption
/// (`use: enc`), keys marked for another algorithm, and keys that do not
/// parse are skipped (with a warning for the last), so that one odd key in
/// an issuer's set does not stop the others from working.
fn keys_by_kid(set: &JwkSet) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm, PublicKeyUse};
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let (algorithm, marked) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            _ => continue,
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
            || jwk
                .common
                .key_algorithm
                .is_some_and(|declared| declared != marked)
        {
            continue;
        }
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), (algorithm, key));
            }
            Err(error) => tracing::warn!(kid, %error, "skipping a JWKS key that cannot be used"),
        }
    }
    if keys.is_empty() {
        return Err("the JWKS has no RSA or P-256 key with a kid".into());
    }
    Ok(keys)
}

fn read_jwks_file(path: &Path) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the JWKS file {}: {error}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|error| format!("the JWKS file {} is not a JWK set: {error}", path.display()))
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(JWKS_FETCH_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot build the HTTP client for the JWKS URL: {error}"))
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| format!("cannot fetch the JWKS from {url}: {error}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "fetching the JWKS from {url} answered {}",
            response.status()
        ));
    }
    response
        .json()
        .await
        .map_err(|error| format!("the JWKS at {url} is not a JWK set: {error}"))
}

/// What `presenced token` puts in a token.
#[derive(Clone, Debug)]
pub struct MintRequest {
    pub tenant: String,
    /// A user makes the token delegated (`oid` and `scp`); without one it is
    /// the application's own (`roles`).
    pub user: Option<String>,
    pub app: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub ttl_seconds: i64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub secret: Secret,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    #[serde(flatten)]
    claims: &'a Claims,
    iat: i64,
    nbf: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs an HS256 token as `--auth hs256 --jwt-secret` accepts it.
pub fn mint(request: &MintRequest, now_seconds: i64) -> Result<String, String> {
    let claims = Claims {
        tid: Some(request.tenant.clone()),
        oid: request.user.clone(),
        appid: Some(request.app.clone()),
        azp: Some(request.app.clone()),
        // A user's token carries `scp` even when it grants nothing: `scp`
        // is what makes a token delegated.
        scp: request.user.as_ref().map(|_| request.scopes.join(" ")),
        roles: if request.user.is_some() {
            Vec::new()
        } else {
            request.roles.clone()
        },
        exp: Some(now_seconds.saturating_add(request.ttl_seconds) as f64),
    };
    let minted = MintedClaims {
        claims: &claims,
        iat: now_seconds,
        nbf: now_seconds,
        iss: request.issuer.as_deref(),
        aud: request.audience.as_deref(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &minted,
        &EncodingKey::from_secret(request.secret.0.as_bytes()),
    )
    .map_err(|error| format!("cannot sign the token: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: Option<&str>) -> MintRequest {
        MintRequest {
            tenant: "contoso".into(),
            user: user.map(str::to_owned),
            app: "app-1".into(),
            scopes: vec!["Presence.Read".into(), "Presence.ReadWrite".into()],
            roles: vec!["Presence.ReadWrite.All".into()],
            ttl_seconds: 3600,
            issuer: Some("https://issuer.example".into()),
            audience: Some("presenced".into()),
            secret: Secret("a shared secret of some length".into()),
        }
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    async fn verifier(secret: &str, issuer: Option<&str>, audience: Option<&str>) -> Verifier {
        Verifier::new(
            &KeySource::SharedSecret(Secret(secret.into())),
            issuer,
            audience,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_minted_delegated_token_verifies_with_its_claims() {
        let token = mint(&request(Some("alice")), now()).unwrap();
        let verifier = verifier(
            "a shared secret of some length",
            Some("https://issuer.example"),
            Some("presenced"),
        )
        .await;
        let claims = verifier.verify(&token).await.unwrap();
        assert_eq!(claims.tid.as_deref(), Some("contoso"));
        assert_eq!(claims.oid.as_deref(), Some("alice"));
        assert_eq!(claims.appid.as_deref(), Some("app-1"));
        assert_eq!(
            claims.scp.as_deref(),
            Some("Presence.Read Presence.ReadWrite")
        );
        assert!(claims.roles.is_empty());
    }

    #[tokio::test]
    async fn an_application_token_carries_roles_and_no_scopes() {
        let token = mint(&request(None), now()).unwrap();
        let claims = verifier("a shared secret of some length", None, None)
            .await
            .verify(&token)
            .await
            .unwrap();
        assert_eq!(claims.scp, None);
        assert_eq!(claims.roles, vec!["Presence.ReadWrite.All".to_string()]);
    }

    #[tokio::test]
    async fn each_cause_of_refusal_is_told_apart() {
        let good = request(Some("alice"));
        let secret = "a shared secret of some length";
        let checked = verifier(secret, Some("https://issuer.example"), Some("presenced")).await;
        let other_secret = mint(
            &MintRequest {
                secret: Secret("another secret entirely".into()),
                ..good.clone()
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            checked.verify(&other_secret).await.unwrap_err(),
            TokenError::BadSignature
        );
        let expired = mint(
            &MintRequest {
                ttl_seconds: 10,
                ..good.clone()
            },
            now() - 3600,
        )
        .unwrap();
        assert_eq!(
            checked.verify(&expired).await.unwrap_err(),
            TokenError::Expired
        );
        let future = mint(&good, now() + 3600).unwrap();
        assert_eq!(
            checked.verify(&future).await.unwrap_err(),
            TokenError::NotYetValid
        );
        let wrong_issuer = mint(
            &MintRequest {
                issuer: Some("https://elsewhere.example".into()),
                ..good.clone()
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            checked.verify(&wrong_issuer).await.unwrap_err(),
            TokenError::WrongIssuer
        );
        let wrong_audience = mint(
            &MintRequest {
                audience: Some("someone-else".into()),
                ..good.clone()
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            checked.verify(&wrong_audience).await.unwrap_err(),
            TokenError::WrongAudience
        );
        let no_audience = mint(
            &MintRequest {
                audience: None,
                ..good.clone()
            },
            now(),
        )
        .unwrap();
        assert_eq!(
            checked.verify(&no_audience).await.unwrap_err(),
            TokenError::MissingClaim("aud")
        );
        assert_eq!(
            checked.verify("not a token").await.unwrap_err(),
            TokenError::Malformed
        );
    }

    #[tokio::test]
    async fn a_token_that_claims_no_algorithm_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"tid":"t","exp":<far future>} . (no signature)
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let token = format!(
            "{}.{}.",
            encode(r#"{"alg":"none","typ":"JWT"}"#),
            encode(r#"{"tid":"t","exp":99999999999}"#)
        );
        let refused = verifier("a shared secret of some length", None, None)
            .await
            .verify(&token)
            .await
            .unwrap_err();
        assert_eq!(refused, TokenError::WrongAlgorithm("HS256"));
    }
}
