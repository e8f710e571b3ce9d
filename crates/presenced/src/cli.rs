//! The command line, the `PRESENCED_*` environment variables and the TOML
//! config file, merged into one [`ServeConfig`]. A flag beats its variable,
//! which beats the file, which beats the default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use presence_core::Duration;
use serde::Deserialize;

use crate::auth::AuthMode;
use crate::clock::ClockKind;
pub use crate::notify::NotifySettings;
use crate::wire_time::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "presenced",
    version,
    about = "A presence server that speaks the Microsoft Graph presence API.",
    long_about = "A presence server that speaks the Microsoft Graph presence API: sessions that fade \
                  and expire, aggregated into one presence per user, served under /v1.0 and /beta \
                  as Graph serves it.",
    after_long_help = "`presenced serve` flags (each also a PRESENCED_* variable; `presenced serve --help` has more):\n  \
        --listen ADDR            where to listen [default: 127.0.0.1:8080]\n  \
        --store KIND             embedded (the default): durable, in --data-dir; memory: nothing\n                           \
        survives the process (tests, demos); redis (not in this version)\n  \
        --data-dir DIR           the embedded store's directory [default: ./presenced-data];\n                           \
        one presenced at a time: a second one on it refuses to start\n  \
        --durability MODE        strict (the default): a write is answered only once it is synced\n                           \
        to disk, so nothing acknowledged is lost even on power loss;\n                           \
        relaxed: answered once written to the operating system, which\n                           \
        survives a crash or kill -9, but a power loss may lose the last\n                           \
        100 ms of writes (a sync runs at least every 100 ms)\n  \
        --redis-url URL          Redis seed nodes, repeatable\n  \
        --auth MODE              none (development: every request an app with every permission),\n  \
                                 hs256 (with --jwt-secret), jwks (with --jwks-file or --jwks-url)\n  \
        --jwt-secret S           the HS256 secret (at least 32 bytes)\n  \
        --jwks-file F, --jwks-url U  the RS256/ES256 keys of --auth jwks\n  \
        --issuer I, --audience A the iss and aud accepted (required with jwks)\n  \
        --tls-cert F, --tls-key F  serve HTTPS\n  \
        --allow-insecure         allow --auth none on a non-loopback address\n  \
        --clock KIND             system, or manual (moved by POST /_presenced/clock/advance)\n  \
        --idle-timeout DURATION  the length of one fade stage [default: PT5M]\n  \
        --allow-private-webhooks deliver to notification URLs on private, loopback or link-local\n                           \
        addresses (always allowed with --auth none)\n  \
        --max-subscription-lifetime DURATION  the longest a subscription may live [default: PT1H]\n  \
        --webhook-retry-window DURATION  how long a notification is retried [default: PT4H]\n  \
        --config FILE            a TOML file with any of these settings\n  \
        --log-format FORMAT      text or json\n\n\
`presenced check --data-dir DIR` verifies a data directory without serving it: exit 0 and a\n\
summary when it is healthy, 1 and the problem otherwise. Run it on a stopped presenced's directory."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print a signed HS256 token for a server run with `--auth hs256`.
    Token(TokenArgs),
    /// Verify an embedded store's data directory without serving it (exit 0
    /// and a summary when healthy, 1 and the problem otherwise).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The data directory to verify [default: ./presenced-data].
    #[arg(long, env = "PRESENCED_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `presenced token`: a development token, signed with the shared secret.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    presenced token --tenant contoso --user alice --app my-app --secret \"$SECRET\"\n  \
    presenced token --tenant contoso --app my-app --roles Presence.ReadWrite.All --secret \"$SECRET\"")]
pub struct TokenArgs {
    /// The tenant (`tid`).
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// The signed-in user (`oid`): makes the token delegated, with `scp`.
    /// Without it the token is the application's own, with `roles`.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// The calling application's id (`appid` and `azp`); setPresence takes it as `sessionId`.
    #[arg(long, value_name = "APP")]
    pub app: String,

    /// Delegated scopes (with --user) [default: Presence.Read.All Presence.ReadWrite].
    #[arg(long, value_name = "SCOPE", num_args = 1.., value_delimiter = ',')]
    pub scopes: Vec<String>,

    /// Application roles (without --user) [default: Presence.ReadWrite.All].
    #[arg(long, value_name = "ROLE", num_args = 1.., value_delimiter = ',')]
    pub roles: Vec<String>,

    /// How long the token is valid, as an ISO 8601 duration.
    #[arg(long, value_name = "DURATION", default_value = "PT1H")]
    pub ttl: String,

    /// The `iss` claim, if the server checks one.
    #[arg(long, value_name = "ISSUER")]
    pub issuer: Option<String>,

    /// The `aud` claim, if the server checks one.
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,

    /// The server's `--jwt-secret`.
    #[arg(
        long,
        env = "PRESENCED_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub secret: crate::token::Secret,
}

impl TokenArgs {
    pub fn into_request(self) -> Result<crate::token::MintRequest, String> {
        if self.secret.0.len() < crate::token::MIN_SECRET_BYTES {
            return Err(format!(
                "--secret must be at least {} bytes, as the server's --jwt-secret",
                crate::token::MIN_SECRET_BYTES
            ));
        }
        let ttl = parse_duration("--ttl", &self.ttl)?;
        if !ttl.is_positive() {
            return Err("--ttl must be positive, e.g. PT1H".into());
        }
        let scopes = if self.scopes.is_empty() {
            vec!["Presence.Read.All".into(), "Presence.ReadWrite".into()]
        } else {
            self.scopes
        };
        let roles = if self.roles.is_empty() {
            vec!["Presence.ReadWrite.All".into()]
        } else {
            self.roles
        };
        Ok(crate::token::MintRequest {
            tenant: self.tenant,
            user: self.user,
            app: self.app,
            scopes,
            roles,
            ttl_seconds: ttl.as_millis() / 1000,
            issuer: self.issuer,
            audience: self.audience,
            secret: self.secret,
        })
    }
}

/// Where facts are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In memory only: everything is lost when the process stops (tests, demos).
    Memory,
    /// Durable, in --data-dir: survives kill -9 and power loss with every
    /// acknowledged write (the default).
    Embedded,
    /// Redis or Redis Cluster at --redis-url (not available in this version yet).
    Redis,
}

/// When the embedded store acknowledges a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Once it is synced to disk: nothing acknowledged is lost, even on power loss.
    Strict,
    /// Once it is written to the operating system: survives a crash or kill -9;
    /// a power loss may lose the last 100 ms of writes.
    Relaxed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on. Port 0 picks a free port; the bound address is
    /// printed on standard output as `presenced listening on http://ADDR`.
    #[arg(long, env = "PRESENCED_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// The directory of the embedded store [default: ./presenced-data].
    #[arg(long, env = "PRESENCED_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where facts are kept [default: embedded].
    #[arg(long, env = "PRESENCED_STORE", value_enum)]
    pub store: Option<StoreKind>,

    /// When the embedded store answers a write [default: strict]. `strict`: once
    /// it is synced to disk (nothing acknowledged is ever lost). `relaxed`: once
    /// it is written to the operating system, which survives a crash or kill -9;
    /// a power loss may lose at most the last 100 ms (a sync runs every 100 ms).
    #[arg(long, env = "PRESENCED_DURABILITY", value_enum)]
    pub durability: Option<DurabilityMode>,

    /// A Redis node to connect to; repeat for the seed nodes of a cluster.
    #[arg(
        long = "redis-url",
        env = "PRESENCED_REDIS_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub redis_urls: Vec<String>,

    /// How callers are authenticated [default: none]. `none` makes every request an
    /// application with every permission in tenant `default`: local development only.
    #[arg(long, env = "PRESENCED_AUTH", value_enum)]
    pub auth: Option<AuthMode>,

    /// The shared secret of `--auth hs256` (at least 32 bytes).
    #[arg(
        long,
        env = "PRESENCED_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<crate::token::Secret>,

    /// `--auth jwks`: a file holding the JWK set whose keys sign tokens.
    #[arg(long, env = "PRESENCED_JWKS_FILE", value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,

    /// `--auth jwks`: where to fetch the JWK set; fetched at start, and again
    /// (at most once a minute) when a token names an unknown key id.
    #[arg(long, env = "PRESENCED_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// The token issuer (`iss`) accepted; required with jwks, checked with hs256 when given.
    #[arg(long, env = "PRESENCED_ISSUER", value_name = "ISSUER")]
    pub issuer: Option<String>,

    /// The token audience (`aud`) accepted; required with jwks, checked with hs256 when given.
    #[arg(long, env = "PRESENCED_AUDIENCE", value_name = "AUDIENCE")]
    pub audience: Option<String>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "PRESENCED_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "PRESENCED_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Allow `--auth none` on an address other than loopback.
    #[arg(long, env = "PRESENCED_ALLOW_INSECURE")]
    pub allow_insecure: bool,

    /// `system` (wall-clock time) or `manual` (moves only through
    /// POST /_presenced/clock/advance, for tests that fast-forward fades) [default: system].
    #[arg(long, env = "PRESENCED_CLOCK", value_enum)]
    pub clock: Option<ClockKind>,

    /// The length of one fade stage, as an ISO 8601 duration: an Available session
    /// shows AvailableInactive after one, Away after two; legacy sessions end after
    /// three. Does not change expiration defaults or bounds [default: PT5M].
    #[arg(long, env = "PRESENCED_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,

    /// Deliver change notifications (and validation requests) to URLs whose
    /// host resolves to a private, loopback or link-local address, and accept
    /// `http:` URLs. Refused by default, as an SSRF guard; always allowed with
    /// `--auth none`.
    #[arg(long, env = "PRESENCED_ALLOW_PRIVATE_WEBHOOKS")]
    pub allow_private_webhooks: bool,

    /// The longest a subscription may live (its `expirationDateTime` at most
    /// this far ahead), as an ISO 8601 duration [default: PT1H, as Graph].
    #[arg(
        long,
        env = "PRESENCED_MAX_SUBSCRIPTION_LIFETIME",
        value_name = "DURATION"
    )]
    pub max_subscription_lifetime: Option<String>,

    /// How long a change notification that a receiver does not accept is
    /// retried (with exponential backoff and jitter) before it is dropped and
    /// a `missed` lifecycle notification is sent [default: PT4H, as Graph].
    #[arg(long, env = "PRESENCED_WEBHOOK_RETRY_WINDOW", value_name = "DURATION")]
    pub webhook_retry_window: Option<String>,

    /// A TOML file with any of these settings, by their long names with
    /// underscores (`listen = "0.0.0.0:8080"`, `idle_timeout = "PT1M"`).
    #[arg(long, env = "PRESENCED_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How logs are written to standard error [default: text]. Filter them with RUST_LOG.
    #[arg(long, env = "PRESENCED_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The settings file: every field optional, names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<StoreKind>,
    durability: Option<DurabilityMode>,
    redis_url: Option<Vec<String>>,
    auth: Option<AuthMode>,
    jwt_secret: Option<crate::token::Secret>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    allow_insecure: Option<bool>,
    clock: Option<ClockKind>,
    idle_timeout: Option<String>,
    allow_private_webhooks: Option<bool>,
    max_subscription_lifetime: Option<String>,
    webhook_retry_window: Option<String>,
    log_format: Option<LogFormat>,
}

/// Everything `serve` needs, resolved.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreKind,
    pub durability: DurabilityMode,
    pub redis_urls: Vec<String>,
    pub auth: AuthMode,
    /// Where tokens' keys come from; `None` exactly when `auth` is none.
    pub token_keys: Option<crate::token::KeySource>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The certificate chain and key files, to serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub allow_insecure: bool,
    pub clock: ClockKind,
    pub idle_timeout: Duration,
    pub notify: NotifySettings,
    pub log_format: LogFormat,
}

/// A positive duration setting, or its default.
fn positive_duration(
    flag: &str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => {
            let duration = parse_duration(flag, &text)?;
            if !duration.is_positive() {
                return Err(format!("{flag} must be positive, e.g. PT1H"));
            }
            Ok(duration)
        }
    }
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./presenced-data"),
            store: StoreKind::Embedded,
            durability: DurabilityMode::Strict,
            redis_urls: Vec::new(),
            auth: AuthMode::None,
            token_keys: None,
            issuer: None,
            audience: None,
            tls: None,
            allow_insecure: false,
            clock: ClockKind::System,
            idle_timeout: Duration::from_mins(5),
            notify: NotifySettings::default(),
            log_format: LogFormat::Text,
        }
    }
}

impl ServeArgs {
    /// Merges flags, environment, config file and defaults; the error says
    /// which setting is wrong.
    pub fn resolve(self) -> Result<ServeConfig, String> {
        let file = match &self.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    format!("cannot read the config file {}: {error}", path.display())
                })?;
                toml::from_str(&text).map_err(|error| {
                    format!("the config file {} is not valid: {error}", path.display())
                })?
            }
        };
        let defaults = ServeConfig::default();
        let idle_text = self.idle_timeout.or(file.idle_timeout);
        let idle_timeout = match idle_text {
            None => defaults.idle_timeout,
            Some(text) => {
                let duration = parse_duration("--idle-timeout", &text)?;
                if !duration.is_positive() {
                    return Err("--idle-timeout must be positive, e.g. PT5M or PT10S".into());
                }
                duration
            }
        };
        let redis_urls = if self.redis_urls.is_empty() {
            file.redis_url.unwrap_or_default()
        } else {
            self.redis_urls
        };
        let auth = self.auth.or(file.auth).unwrap_or(defaults.auth);
        let issuer = self.issuer.or(file.issuer);
        let audience = self.audience.or(file.audience);
        let token_keys = token_keys(
            auth,
            self.jwt_secret.or(file.jwt_secret),
            self.jwks_file.or(file.jwks_file),
            self.jwks_url.or(file.jwks_url),
            issuer.is_some() && audience.is_some(),
        )?;
        let notify = NotifySettings {
            allow_private: auth == AuthMode::None
                || self.allow_private_webhooks
                || file.allow_private_webhooks.unwrap_or(false),
            max_lifetime: positive_duration(
                "--max-subscription-lifetime",
                self.max_subscription_lifetime
                    .or(file.max_subscription_lifetime),
                defaults.notify.max_lifetime,
            )?,
            retry_window: positive_duration(
                "--webhook-retry-window",
                self.webhook_retry_window.or(file.webhook_retry_window),
                defaults.notify.retry_window,
            )?,
        };
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together; give both or neither".into()),
        };
        Ok(ServeConfig {
            listen: self.listen.or(file.listen).unwrap_or(defaults.listen),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            store: self.store.or(file.store).unwrap_or(defaults.store),
            durability: self
                .durability
                .or(file.durability)
                .unwrap_or(defaults.durability),
            redis_urls,
            auth,
            token_keys,
            issuer,
            audience,
            tls,
            allow_insecure: self.allow_insecure || file.allow_insecure.unwrap_or(false),
            clock: self.clock.or(file.clock).unwrap_or(defaults.clock),
            idle_timeout,
            notify,
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(defaults.log_format),
        })
    }
}

/// Checks that `--auth` has the key settings it needs, and no others.
fn token_keys(
    auth: AuthMode,
    secret: Option<crate::token::Secret>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    issuer_and_audience: bool,
) -> Result<Option<crate::token::KeySource>, String> {
    use crate::token::{KeySource, MIN_SECRET_BYTES};
    match auth {
        AuthMode::None => {
            if secret.is_some() || jwks_file.is_some() || jwks_url.is_some() {
                return Err(
                    "--jwt-secret, --jwks-file and --jwks-url need --auth hs256 or --auth jwks"
                        .into(),
                );
            }
            Ok(None)
        }
        AuthMode::Hs256 => {
            if jwks_file.is_some() || jwks_url.is_some() {
                return Err("--jwks-file and --jwks-url go with --auth jwks, not hs256".into());
            }
            let secret =
                secret.ok_or("--auth hs256 needs --jwt-secret (or PRESENCED_JWT_SECRET)")?;
            if secret.0.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "--jwt-secret must be at least {MIN_SECRET_BYTES} bytes; a shorter HS256 secret can be guessed from one token"
                ));
            }
            Ok(Some(KeySource::SharedSecret(secret)))
        }
        AuthMode::Jwks => {
            if secret.is_some() {
                return Err("--jwt-secret goes with --auth hs256, not jwks".into());
            }
            if !issuer_and_audience {
                return Err("--auth jwks needs --issuer and --audience, so that tokens minted for other services are refused".into());
            }
            match (jwks_file, jwks_url) {
                (Some(file), None) => Ok(Some(KeySource::JwksFile(file))),
                (None, Some(url)) => Ok(Some(KeySource::JwksUrl(url))),
                _ => Err("--auth jwks needs exactly one of --jwks-file and --jwks-url".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(arguments: &[&str]) -> Result<ServeConfig, String> {
        let mut all = vec!["presenced", "serve"];
        all.extend_from_slice(arguments);
        match Cli::try_parse_from(all)
            .map_err(|error| error.to_string())?
            .command
        {
            Command::Serve(args) => args.resolve(),
            Command::Check(_) | Command::Token(_) => Err("not serve".into()),
        }
    }

    #[test]
    fn the_embedded_store_with_strict_durability_is_the_default() {
        let config = resolve(&[]).expect("resolves");
        assert_eq!(config.store, StoreKind::Embedded);
        assert_eq!(config.durability, DurabilityMode::Strict);
        assert_eq!(config.data_dir, PathBuf::from("./presenced-data"));
    }

    #[test]
    fn durability_comes_from_the_flag_or_the_config_file() {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::io::Write::write_all(&mut file, b"durability = \"relaxed\"\nstore = \"memory\"\n")
            .expect("writable");
        let path = file.path().to_str().expect("UTF-8");
        let config = resolve(&["--config", path]).expect("resolves");
        assert_eq!(config.durability, DurabilityMode::Relaxed);
        assert_eq!(config.store, StoreKind::Memory);
        let config = resolve(&["--config", path, "--durability", "strict"]).expect("resolves");
        assert_eq!(config.durability, DurabilityMode::Strict);
        assert!(resolve(&["--durability", "sometimes"]).is_err());
    }
}
