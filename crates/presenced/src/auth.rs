//! Who is calling, and what Graph lets them do.
//!
//! Every request resolves to a [`Principal`]: a tenant, a caller (an
//! application acting as itself, or a user through an application) and the
//! permissions its token grants. Handlers ask the principal for an [`Access`]
//! to a target user; the answer follows Graph's permission table.
//!
//! With `--auth hs256` or `--auth jwks` every request but the operational
//! ones carries a bearer token, verified by [`crate::token`]; its claims
//! give the principal: `tid` the tenant, `scp` (delegated, with `oid` the
//! user) or `roles` (application) the permissions, `appid`/`azp` the app.
//!
//! With `--auth none` there is no token to verify: every request is an
//! application with every permission in tenant `default`. To let developers
//! exercise `/me` locally, a bearer token that is a JWT with an `oid` claim is
//! read without verification and makes the request delegated as that user,
//! still in tenant `default` and still with every permission.
//!
//! The principal is resolved once per request, by the authentication layer
//! (`http/authenticate.rs`), before anything else about the request is
//! looked at, and put in the request's extensions: layers inside it (a
//! throttle keyed on tenant and application) and the [`Principal`]
//! extractor read it there.

use axum::http::HeaderMap;
use base64::Engine;
use presence_core::{SessionId, TenantId, UserId};

use crate::token::{Claims, KeySource, TokenError, Verifier};

/// Why a request may not do what it asks: who it is could not be told
/// (`Unauthorized`, 401), what it is may not be done by it (`Forbidden`,
/// 403), or what it asks makes no sense for its kind of caller
/// (`BadRequest`, 400). `http/` renders them in Graph's envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
}

/// How callers are authenticated (`--auth`; the command line's own
/// spelling of it lives in `cli.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// No verification: local development only.
    #[default]
    None,
    /// HS256 tokens signed with `--jwt-secret`.
    Hs256,
    /// RS256 and ES256 tokens signed with a key of `--jwks-file` or `--jwks-url`.
    Jwks,
}

/// Authentication's settings: the mode and, for the verifying modes, where
/// the keys come from and which issuer and audience are accepted.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// Where tokens' keys come from; `None` exactly when `mode` is none.
    pub keys: Option<KeySource>,
    /// The `iss` accepted; required with jwks, checked with hs256 when given.
    pub issuer: Option<String>,
    /// The `aud` accepted; required with jwks, checked with hs256 when given.
    pub audience: Option<String>,
}

/// Graph's presence permissions, as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grants(u8);

impl Grants {
    pub const PRESENCE_READ: Grants = Grants(1);
    pub const PRESENCE_READ_ALL: Grants = Grants(2);
    pub const PRESENCE_READ_WRITE: Grants = Grants(4);
    pub const PRESENCE_READ_WRITE_ALL: Grants = Grants(8);
    /// `--auth none`: everything, including delegated-only actions.
    pub const EVERYTHING: Grants = Grants(u8::MAX);

    pub fn has_any(self, wanted: &[Grants]) -> bool {
        wanted.iter().any(|grant| self.0 & grant.0 == grant.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// An application acting as itself (`roles`, no `scp`).
    Application { app_id: Option<String> },
    /// A user signed in through an application (`scp`).
    Delegated {
        user: UserId,
        app_id: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Principal {
    pub tenant: TenantId,
    pub caller: Caller,
    pub grants: Grants,
}

/// What a handler wants to do to a user's presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read one user's presence.
    Read,
    /// Read many users at once (getPresencesByUserId).
    ReadMany,
    /// Change a user's sessions, preferred presence or status message.
    Write,
    /// Change a user's work location: delegated permission only in Graph.
    WriteLocation,
}

impl Principal {
    /// Whom presences are rendered for: the signed-in user of a delegated
    /// token, or the application.
    pub fn viewer(&self) -> crate::service::Viewer {
        match &self.caller {
            Caller::Delegated { user, .. } => crate::service::Viewer::user(user.clone()),
            Caller::Application { .. } => crate::service::Viewer::APPLICATION,
        }
    }

    pub fn app_id(&self) -> Option<&str> {
        match &self.caller {
            Caller::Application { app_id } | Caller::Delegated { app_id, .. } => app_id.as_deref(),
        }
    }

    /// setPresence and clearPresence act on the caller's own session: its
    /// `sessionId` must be the calling application's id.
    pub fn check_session_id(&self, session: &SessionId) -> Result<(), AuthError> {
        if self.grants == Grants::EVERYTHING {
            return Ok(());
        }
        match self.app_id() {
            Some(app_id) if app_id == &*session.as_str() => Ok(()),
            Some(app_id) => Err(AuthError::Forbidden(format!(
                "sessionId must be the calling application's id '{app_id}'; an application can set and clear only its own session."
            ))),
            None => Err(AuthError::Forbidden(
                "The token names no application (appid or azp claim), so it owns no presence session.".into(),
            )),
        }
    }

    /// The signed-in user of a delegated call; `/me` means this user.
    pub fn me(&self) -> Result<&UserId, AuthError> {
        match &self.caller {
            Caller::Delegated { user, .. } => Ok(user),
            Caller::Application { .. } => Err(AuthError::BadRequest(
                "/me request is only valid with delegated authentication flow; use /users/{id} with an application token".into(),
            )),
        }
    }

    /// Whether this principal may read every user of its tenant at once
    /// (the tenant's stream, its list of users).
    pub fn reads_tenant(&self) -> bool {
        self.grants
            .has_any(&[Grants::PRESENCE_READ_ALL, Grants::PRESENCE_READ_WRITE_ALL])
    }

    /// Whether this principal may do `access` to `target`; the error says
    /// which permission is missing.
    pub fn authorize(&self, access: Access, target: &UserId) -> Result<(), AuthError> {
        use Grants as G;
        if self.grants == G::EVERYTHING {
            return Ok(());
        }
        let (delegated_self, delegated_other, application): (&[G], &[G], &[G]) = match access {
            Access::Read => (
                &[
                    G::PRESENCE_READ,
                    G::PRESENCE_READ_ALL,
                    G::PRESENCE_READ_WRITE,
                    G::PRESENCE_READ_WRITE_ALL,
                ],
                &[G::PRESENCE_READ_ALL, G::PRESENCE_READ_WRITE_ALL],
                &[G::PRESENCE_READ_ALL, G::PRESENCE_READ_WRITE_ALL],
            ),
            // The same for every kind of caller and target, which
            // `authorize_many` relies on (a test checks it).
            Access::ReadMany => (
                &[G::PRESENCE_READ_ALL, G::PRESENCE_READ_WRITE_ALL],
                &[G::PRESENCE_READ_ALL, G::PRESENCE_READ_WRITE_ALL],
                &[G::PRESENCE_READ_ALL, G::PRESENCE_READ_WRITE_ALL],
            ),
            Access::Write => (
                &[G::PRESENCE_READ_WRITE, G::PRESENCE_READ_WRITE_ALL],
                &[],
                &[G::PRESENCE_READ_WRITE_ALL],
            ),
            Access::WriteLocation => (&[G::PRESENCE_READ_WRITE], &[], &[]),
        };
        let (wanted, who) = match &self.caller {
            Caller::Delegated { user, .. } if user == target => {
                (delegated_self, "a delegated token")
            }
            Caller::Delegated { .. } => {
                if matches!(access, Access::Write | Access::WriteLocation) {
                    return Err(AuthError::Forbidden(
                        "A delegated caller can set only its own presence; use an application token with Presence.ReadWrite.All to set another user's.".into(),
                    ));
                }
                (delegated_other, "a delegated token reading another user")
            }
            Caller::Application { .. } => (application, "an application token"),
        };
        if self.grants.has_any(wanted) {
            return Ok(());
        }
        if wanted.is_empty() {
            return Err(AuthError::Forbidden(format!(
                "This action is not supported with {who}; it needs a delegated token with Presence.ReadWrite."
            )));
        }
        let names: Vec<&str> = wanted.iter().map(|grant| permission_name(*grant)).collect();
        Err(AuthError::Forbidden(format!(
            "Missing permission: with {who} this action needs one of {}.",
            names.join(", ")
        )))
    }

    /// Whether this principal may read every one of `targets` at once
    /// (getPresencesByUserId), with the refusal the first target earns.
    /// Reading many needs the same permissions whoever the target is, so
    /// the first target's answer is every target's: one check where a
    /// batch made 650 (50 instructions an id, callgrind). A test compares
    /// it with checking each target.
    pub fn authorize_many(&self, targets: &[UserId]) -> Result<(), AuthError> {
        targets
            .first()
            .map_or(Ok(()), |first| self.authorize(Access::ReadMany, first))
    }
}

fn permission_name(grant: Grants) -> &'static str {
    match grant {
        Grants::PRESENCE_READ => "Presence.Read",
        Grants::PRESENCE_READ_ALL => "Presence.Read.All",
        Grants::PRESENCE_READ_WRITE => "Presence.ReadWrite",
        _ => "Presence.ReadWrite.All",
    }
}

/// The claims read from an unverified token under `--auth none`.
#[derive(Debug, serde::Deserialize)]
struct DevelopmentClaims {
    oid: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
}

/// Reads the payload of a bearer JWT without verifying it.
fn unverified_claims(authorization: &str) -> Option<DevelopmentClaims> {
    let token = authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The one tenant of `--auth none`, parsed once.
static DEFAULT_TENANT: std::sync::LazyLock<TenantId> = std::sync::LazyLock::new(|| {
    TenantId::parse("default").expect("'default' is a valid tenant id")
});

/// Turns a request's `Authorization` header into a [`Principal`].
#[derive(Debug)]
pub enum Authenticator {
    /// `--auth none`.
    Open,
    /// `--auth hs256` or `--auth jwks`.
    Tokens(Box<Verifier>, VerifiedTokens),
}

impl Authenticator {
    /// The authenticator `settings` describe; a JWKS URL is fetched here.
    pub async fn new(settings: &AuthSettings) -> Result<Authenticator, String> {
        match &settings.keys {
            None => Ok(Authenticator::Open),
            Some(keys) => Ok(Authenticator::tokens(
                Verifier::new(
                    keys,
                    settings.issuer.as_deref(),
                    settings.audience.as_deref(),
                )
                .await?,
            )),
        }
    }

    pub fn tokens(verifier: Verifier) -> Authenticator {
        Authenticator::Tokens(Box::new(verifier), VerifiedTokens::default())
    }

    pub fn requires_tokens(&self) -> bool {
        matches!(self, Authenticator::Tokens(..))
    }

    /// The principal of a request with these headers, or why there is none.
    pub async fn principal(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        match self.resolve(headers) {
            Resolution::Done(principal) => principal,
            Resolution::Verify(token) => self.verify(token).await,
        }
    }

    /// As far as [`Authenticator::principal`] gets without waiting: every
    /// case but a token seen for the first time (or since it left the
    /// cache), which needs [`Authenticator::verify`].
    pub fn resolve<'h>(&self, headers: &'h HeaderMap) -> Resolution<'h> {
        match self {
            Authenticator::Open => Resolution::Done(open_principal(headers)),
            Authenticator::Tokens(_, verified) => {
                let token = match bearer_token(headers) {
                    Ok(token) => token,
                    Err(error) => return Resolution::Done(Err(unauthorized(error))),
                };
                let now = jiff::Timestamp::now().as_second();
                match verified.get(token, now) {
                    Some(principal) => Resolution::Done(Ok(principal)),
                    None => Resolution::Verify(token),
                }
            }
        }
    }

    /// Verifies a bearer token (fetching a JWKS again for an unknown key id)
    /// and remembers its principal until the token expires.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let Authenticator::Tokens(verifier, verified) = self else {
            return Err(AuthError::Unauthorized(
                "This server does not verify tokens (--auth none).".into(),
            ));
        };
        let claims = verifier.verify(token).await.map_err(unauthorized)?;
        let expires = claims.exp.map_or(0, |exp| exp as i64);
        let principal = Principal::from_claims(claims)?;
        verified.insert(token, expires, &principal);
        Ok(principal)
    }
}

/// What [`Authenticator::resolve`] found.
#[derive(Debug)]
pub enum Resolution<'h> {
    /// The principal, or the refusal (a 401; a 400 for a malformed
    /// development token under `--auth none`).
    Done(Result<Principal, AuthError>),
    /// A bearer token that must be verified first.
    Verify(&'h str),
}

/// Tokens already verified, by their full text, with their principal and
/// expiry: a client sends the same token for an hour, and checking its
/// signature and parsing its claims again on every request cost more than
/// the rest of a GET presence (measured with presenced-bench).
///
/// Only tokens that passed every check are kept, and each is used only
/// until its `exp` (plus the leeway verification allows). The cache is
/// bounded: a full shard is emptied, which costs one verification per
/// token it held. A key withdrawn from a JWKS stops new tokens at once but
/// not tokens verified before, until they expire (as with any cache of
/// verified tokens).
pub struct VerifiedTokens {
    shards: Box<[std::sync::Mutex<VerifiedShard>]>,
    hasher: TokenTails,
}

impl std::fmt::Debug for VerifiedTokens {
    // The tokens themselves are bearer secrets: never printed.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held: usize = self
            .shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |shard| shard.len()))
            .sum();
        formatter
            .debug_struct("VerifiedTokens")
            .field("held", &held)
            .finish()
    }
}

/// Verified tokens by their text, with their expiry and principal, hashed
/// by [`TokenTails`].
type VerifiedShard = std::collections::HashMap<Box<str>, (i64, Principal), TokenTails>;

/// How much of a token's end is hashed.
const HASHED_TAIL: usize = 32;

/// Hashes a token by its last [`HASHED_TAIL`] bytes only, with foldhash
/// seeded per process. A JWT ends with its signature, which differs between
/// any two tokens that differ, so its end tells them apart as well as the
/// whole would; and a token is hashed on every request, twice (its shard,
/// then its slot), where the whole of a JWT's few hundred bytes took 660
/// instructions. Only tokens that passed verification are ever inserted,
/// so no caller can choose keys that collide; equality still compares the
/// whole token.
#[derive(Clone, Debug, Default)]
struct TokenTails(foldhash::fast::RandomState);

impl std::hash::BuildHasher for TokenTails {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

/// `str`'s `Hash` writes its bytes once, then a terminator.
struct TailHasher(foldhash::fast::FoldHasher<'static>);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }

    fn write_u8(&mut self, byte: u8) {
        self.0.write_u8(byte);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

const VERIFIED_SHARDS: usize = 16;
const VERIFIED_PER_SHARD: usize = 4096;

impl Default for VerifiedTokens {
    fn default() -> VerifiedTokens {
        VerifiedTokens {
            shards: (0..VERIFIED_SHARDS).map(|_| Default::default()).collect(),
            hasher: Default::default(),
        }
    }
}

impl VerifiedTokens {
    fn shard(&self, token: &str) -> std::sync::MutexGuard<'_, VerifiedShard> {
        use std::hash::BuildHasher;
        let index = self.hasher.hash_one(token) as usize % VERIFIED_SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn get(&self, token: &str, now_seconds: i64) -> Option<Principal> {
        let mut shard = self.shard(token);
        let (expires, principal) = shard.get(token)?;
        if now_seconds <= expires.saturating_add(crate::token::LEEWAY_SECONDS as i64) {
            return Some(principal.clone());
        }
        shard.remove(token);
        None
    }

    fn insert(&self, token: &str, expires: i64, principal: &Principal) {
        let mut shard = self.shard(token);
        if shard.len() >= VERIFIED_PER_SHARD {
            shard.clear();
        }
        shard.insert(token.into(), (expires, principal.clone()));
    }
}

fn unauthorized(error: TokenError) -> AuthError {
    AuthError::Unauthorized(error.to_string())
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, TokenError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(TokenError::Missing);
    };
    let value = value.to_str().map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token)
}

/// The permissions named in a space-separated `scp` or a `roles` list.
/// Names are matched case-insensitively; other permissions are ignored.
fn grants_named<'a>(names: impl Iterator<Item = &'a str>) -> Grants {
    let mut bits = 0;
    for name in names {
        for grant in [
            Grants::PRESENCE_READ,
            Grants::PRESENCE_READ_ALL,
            Grants::PRESENCE_READ_WRITE,
            Grants::PRESENCE_READ_WRITE_ALL,
        ] {
            if name.eq_ignore_ascii_case(permission_name(grant)) {
                bits |= grant.0;
            }
        }
    }
    Grants(bits)
}

impl Principal {
    /// The principal of a verified token.
    pub fn from_claims(claims: Claims) -> Result<Principal, AuthError> {
        let tid = claims
            .tid
            .ok_or_else(|| unauthorized(TokenError::MissingClaim("tid")))?;
        let tenant = TenantId::parse(&tid).map_err(|_| {
            AuthError::Unauthorized("The access token's tid claim is not a valid tenant id.".into())
        })?;
        let app_id = claims.appid.or(claims.azp);
        // Any `scp`, even an empty one, makes the token a user's: it never
        // falls back to the application's `roles`.
        match claims.scp {
            Some(scopes) => {
                let oid = claims
                    .oid
                    .ok_or_else(|| unauthorized(TokenError::MissingClaim("oid")))?;
                let user = UserId::parse(&oid).map_err(|_| {
                    AuthError::Unauthorized(
                        "The access token's oid claim is not a valid user id.".into(),
                    )
                })?;
                Ok(Principal {
                    tenant,
                    caller: Caller::Delegated { user, app_id },
                    grants: grants_named(scopes.split_whitespace()),
                })
            }
            None => Ok(Principal {
                tenant,
                caller: Caller::Application { app_id },
                grants: grants_named(claims.roles.iter().map(String::as_str)),
            }),
        }
    }
}

fn open_principal(headers: &HeaderMap) -> Result<Principal, AuthError> {
    let tenant = DEFAULT_TENANT.clone();
    let claims = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(unverified_claims);
    let caller = match claims {
        Some(DevelopmentClaims {
            oid: Some(oid),
            appid,
            azp,
        }) => {
            let user = UserId::parse(&oid).map_err(|error| {
                AuthError::BadRequest(format!("The token's oid claim {error}."))
            })?;
            Caller::Delegated {
                user,
                app_id: appid.or(azp),
            }
        }
        _ => Caller::Application { app_id: None },
    };
    Ok(Principal {
        tenant,
        caller,
        grants: Grants::EVERYTHING,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: &str) -> Principal {
        Principal {
            tenant: TenantId::parse(tenant).unwrap(),
            caller: Caller::Application {
                app_id: Some("app".into()),
            },
            grants: Grants::PRESENCE_READ_ALL,
        }
    }

    /// For every set of grants and every kind of caller, checking the
    /// first of many targets answers as checking each in turn does.
    #[test]
    fn reading_many_is_authorized_as_each_target_would_be() {
        let user = |name: &str| UserId::parse(name).unwrap();
        let (me, other) = (user("me"), user("other"));
        let callers = [
            Caller::Application { app_id: None },
            Caller::Delegated {
                user: me.clone(),
                app_id: None,
            },
        ];
        let batches = [
            vec![],
            vec![me.clone()],
            vec![other.clone()],
            vec![me.clone(), other.clone()],
            vec![other.clone(), me.clone(), other.clone()],
        ];
        let mut refused = 0;
        for bits in (0..16).chain([u8::MAX]) {
            for caller in &callers {
                let principal = Principal {
                    tenant: TenantId::parse("contoso").unwrap(),
                    caller: caller.clone(),
                    grants: Grants(bits),
                };
                for batch in &batches {
                    let each = batch
                        .iter()
                        .try_for_each(|target| principal.authorize(Access::ReadMany, target))
                        .map_err(|error| error.to_string());
                    let many = principal
                        .authorize_many(batch)
                        .map_err(|error| error.to_string());
                    assert_eq!(many, each, "{caller:?} with grants {bits:04b}, {batch:?}");
                    refused += usize::from(each.is_err());
                }
            }
        }
        assert!(refused > 0, "some grants are refused");
    }

    #[test]
    fn tokens_that_end_alike_are_told_apart_by_the_whole_token() {
        let verified = VerifiedTokens::default();
        let tail = "the same signature at the end of both tokens, 32+";
        let (a, b) = (format!("header-a.{tail}"), format!("header-b.{tail}"));
        verified.insert(&a, i64::MAX / 2, &principal("tenant-a"));
        verified.insert(&b, i64::MAX / 2, &principal("tenant-b"));
        let tenant = |token: &str| verified.get(token, 0).map(|found| found.tenant);
        assert_eq!(tenant(&a), Some(TenantId::parse("tenant-a").unwrap()));
        assert_eq!(tenant(&b), Some(TenantId::parse("tenant-b").unwrap()));
        assert_eq!(tenant(&format!("header-c.{tail}")), None);
        assert_eq!(tenant(tail), None);
    }

    #[test]
    fn a_verified_token_is_remembered_only_until_it_expires() {
        let verified = VerifiedTokens::default();
        verified.insert("token-a", 1_000, &principal("tenant-a"));
        let leeway = crate::token::LEEWAY_SECONDS as i64;
        let found = verified
            .get("token-a", 1_000 + leeway)
            .expect("still valid");
        assert_eq!(&*found.tenant.as_str(), "tenant-a");
        assert!(verified.get("token-b", 0).is_none(), "only the exact token");
        assert!(verified.get("token-", 0).is_none(), "not a prefix of it");
        assert!(verified.get("token-a", 1_001 + leeway).is_none(), "expired");
        assert!(
            verified.get("token-a", 0).is_none(),
            "an expired entry is dropped, not kept for a clock that goes back"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let verified = VerifiedTokens::default();
        for index in 0..(VERIFIED_SHARDS * VERIFIED_PER_SHARD * 3) {
            verified.insert(&format!("token-{index}"), i64::MAX / 2, &principal("t"));
        }
        let held: usize = verified
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap().len())
            .sum();
        assert!(held <= VERIFIED_SHARDS * VERIFIED_PER_SHARD, "{held}");
    }

    #[test]
    fn scopes_and_roles_are_matched_case_insensitively_and_others_ignored() {
        let grants =
            grants_named(["presence.read", "User.Read", "Presence.ReadWrite.All"].into_iter());
        assert!(grants.has_any(&[Grants::PRESENCE_READ]));
        assert!(grants.has_any(&[Grants::PRESENCE_READ_WRITE_ALL]));
        assert!(!grants.has_any(&[Grants::PRESENCE_READ_ALL]));
        assert!(!grants.has_any(&[Grants::PRESENCE_READ_WRITE]));
        assert_eq!(grants_named(std::iter::empty()), Grants(0));
    }
}
