//! The command line: `presenced serve`'s settings, each declared once, and
//! their mapping onto the settings of the modules that use them.
//!
//! Every `serve` setting is one field of [`ServeArgs`], which derives both
//! clap's `Args` (its flag, its `PRESENCED_*` variable through clap's `env`,
//! its `--help` text) and serde's `Deserialize` (its key in the `--config`
//! TOML file, unknown keys refused). A flag beats its variable (clap), which
//! beats the file, which beats the default: [`ServeArgs::resolve`] lays the
//! settings the command line and environment gave over those of the file,
//! field by field through serde, and then maps the result onto each module's
//! own settings ([`ServeConfig`], [`AuthSettings`], [`NotifySettings`],
//! [`StoreSettings`], [`TlsFiles`]), whose `Default`s are the defaults.
//!
//! Why not figment, whose providers (defaults, TOML file, `PRESENCED_*`
//! environment, flags) are made for this: it fights clap on two of its four
//! layers. The environment has to stay clap's, because `--help` names each
//! variable, hides the secrets' values and splits `PRESENCED_REDIS_URL` on
//! commas as the flag does; figment's `Env` provider would read the same
//! variables a second time with its own parsing, and would take every other
//! `PRESENCED_*` name (`PRESENCED_CONFIG`, `PRESENCED_REDIS_PASSWORD`) for
//! an unknown setting. The defaults cannot be clap's, because a clap default
//! is indistinguishable from a flag and would beat the file. What is left
//! for figment is laying one serialized struct over another, which serde and
//! `serde_json` do here in [`ServeArgs::over`] without a second TOML parser
//! in the build.
//!
//! Nothing but `main.rs` uses this module: the modules own their settings
//! and never see the command line.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use presence_core::Duration;
use presence_store::Durability;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthMode, AuthSettings};
use crate::clock::ClockKind;
use crate::limits::Limits;
use crate::notify::NotifySettings;
use crate::server::{ServeConfig, StoreKind, StoreSettings};
use crate::throttle::{Rate, ThrottleSettings};
use crate::tls::TlsFiles;
use crate::token::{KeySource, MIN_SECRET_BYTES, Secret};
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
        survives the process (tests, demos); redis: any number of equal\n                           \
        nodes over one Redis or Redis Cluster (--redis-url)\n  \
        --data-dir DIR           the embedded store's directory [default: ./presenced-data];\n                           \
        one presenced at a time: a second one on it refuses to start\n  \
        --durability MODE        strict (the default): a write is answered only once it is synced\n                           \
        to disk, so nothing acknowledged is lost even on power loss;\n                           \
        relaxed: answered once written to the operating system, which\n                           \
        survives a crash or kill -9, but a power loss may lose the last\n                           \
        100 ms of writes (a sync runs at least every 100 ms)\n  \
        --redis-url URL          Redis seed nodes, repeatable (a password in PRESENCED_REDIS_PASSWORD)\n  \
        --redis-durability MODE  replicated (the default): a write is answered once every replica\n                           \
        connected to its shard has it, so a primary's death loses no\n                           \
        acknowledged write; async: once the primary has it\n  \
        --redis-lease DURATION   a node's lease on its share of fades and webhooks; a dead\n                           \
        node's share moves after about this long [default: PT6S]\n  \
        --redis-ca-file F, --redis-allow-volatile, --redis-partitions N  see serve --help\n  \
        --drain-timeout DURATION how long SIGTERM waits for requests in flight [default: PT30S]\n  \
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
        --webhook-ca-file F      extra CA certificates (PEM) trusted for webhook receivers\n  \
        --max-connections N, --max-streams N, --max-header-bytes BYTES, --max-body-bytes BYTES,\n  \
        --header-timeout DURATION, --body-timeout DURATION, --send-timeout DURATION,\n  \
        --max-users-per-tenant N|off\n                           \
        the bounds on what clients may hold, each with its default in serve --help\n  \
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
    Serve(Box<ServeArgs>),
    /// Print a signed HS256 token for a server run with `--auth hs256`.
    Token(TokenArgs),
    /// Verify an embedded store's data directory without serving it (exit 0
    /// and a summary when healthy, 1 and the problem otherwise); with
    /// `--store redis`, report a Redis keyspace's layout, users, partitions
    /// and their owners.
    Check(CheckArgs),
    /// Copy an embedded store (facts, subscriptions, acknowledged marks)
    /// into Redis, for a team that outgrows one machine. Stop the presenced
    /// using the data directory first.
    Migrate(MigrateArgs),
}

/// `presenced migrate --from-data-dir DIR --to-redis URL`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    presenced migrate --from-data-dir ./presenced-data --to-redis redis://127.0.0.1:7000\n\n\
Users already held in Redis are left as they are, so running it twice is safe. Then start the \
nodes with --store redis and the same --redis-partitions.")]
pub struct MigrateArgs {
    /// The embedded store's data directory to copy from.
    #[arg(long, value_name = "DIR")]
    pub from_data_dir: PathBuf,

    /// A Redis node to copy into; repeat for the seed nodes of a cluster.
    #[arg(long = "to-redis", value_name = "URL", required = true)]
    pub to_redis: Vec<String>,

    /// The partitions of a new keyspace (as `serve --redis-partitions`) [default: 64].
    #[arg(long, value_name = "N")]
    pub redis_partitions: Option<u32>,

    /// A PEM file of the private CA of `rediss://` servers.
    #[arg(long, value_name = "FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// The Redis password (overrides one in the URLs); never logged.
    #[arg(long, env = "PRESENCED_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<Secret>,
}

impl MigrateArgs {
    /// The store settings of the target.
    pub fn target(&self) -> StoreSettings {
        StoreSettings {
            kind: StoreKind::Redis,
            redis_urls: self.to_redis.clone(),
            redis_partitions: self
                .redis_partitions
                .unwrap_or(StoreSettings::default().redis_partitions),
            redis_ca_file: self.redis_ca_file.clone(),
            redis_password: self.redis_password.clone(),
            ..StoreSettings::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The data directory to verify [default: ./presenced-data].
    #[arg(long, env = "PRESENCED_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Which store to check [default: embedded].
    #[arg(long, env = "PRESENCED_STORE", value_enum)]
    pub store: Option<StoreFlag>,

    /// `--store redis`: a Redis node; repeat for a cluster's seed nodes.
    #[arg(
        long = "redis-url",
        env = "PRESENCED_REDIS_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub redis_urls: Vec<String>,

    /// `--store redis`: the password (overrides one in the URLs).
    #[arg(long, env = "PRESENCED_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<Secret>,

    /// `--store redis`: the private CA of `rediss://` servers.
    #[arg(long, env = "PRESENCED_REDIS_CA_FILE", value_name = "FILE")]
    pub redis_ca_file: Option<PathBuf>,
}

impl CheckArgs {
    /// The Redis to check, with `--store redis`.
    pub fn redis(&self) -> Option<StoreSettings> {
        (self.store == Some(StoreFlag::Redis)).then(|| StoreSettings {
            kind: StoreKind::Redis,
            redis_urls: self.redis_urls.clone(),
            redis_password: self.redis_password.clone(),
            redis_ca_file: self.redis_ca_file.clone(),
            ..StoreSettings::default()
        })
    }

    /// The directory to verify: `--data-dir`, or the store's default.
    pub fn data_dir(self) -> PathBuf {
        self.data_dir
            .unwrap_or_else(|| StoreSettings::default().data_dir)
    }
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
    pub secret: Secret,
}

impl TokenArgs {
    pub fn into_request(self) -> Result<crate::token::MintRequest, String> {
        if self.secret.0.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "--secret must be at least {MIN_SECRET_BYTES} bytes, as the server's --jwt-secret"
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

// The clap-facing spellings of the modules' enums: their doc comments are
// the "possible values" of `--help`, their serde names the file's values.

/// Where facts are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreFlag {
    /// In memory only: everything is lost when the process stops (tests, demos).
    Memory,
    /// Durable, in --data-dir: survives kill -9 and power loss with every
    /// acknowledged write (the default).
    Embedded,
    /// Redis or Redis Cluster at --redis-url: any number of equal nodes share it.
    Redis,
}

impl From<StoreFlag> for StoreKind {
    fn from(flag: StoreFlag) -> StoreKind {
        match flag {
            StoreFlag::Memory => StoreKind::Memory,
            StoreFlag::Embedded => StoreKind::Embedded,
            StoreFlag::Redis => StoreKind::Redis,
        }
    }
}

/// When the Redis store acknowledges a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisDurabilityFlag {
    /// Once the primary and every replica connected to its shard have it: a
    /// primary's death loses no acknowledged write (a shard with no replica
    /// connected is written without waiting, with a warning).
    Replicated,
    /// Once the primary has it: a primary that dies before replicating loses
    /// its last writes (Redis replicates asynchronously).
    Async,
}

impl From<RedisDurabilityFlag> for presence_store::RedisDurability {
    fn from(flag: RedisDurabilityFlag) -> presence_store::RedisDurability {
        match flag {
            RedisDurabilityFlag::Replicated => presence_store::RedisDurability::Replicated,
            RedisDurabilityFlag::Async => presence_store::RedisDurability::Async,
        }
    }
}

/// When the embedded store acknowledges a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityFlag {
    /// Once it is synced to disk: nothing acknowledged is lost, even on power loss.
    Strict,
    /// Once it is written to the operating system: survives a crash or kill -9;
    /// a power loss may lose the last 100 ms of writes.
    Relaxed,
}

impl From<DurabilityFlag> for Durability {
    fn from(flag: DurabilityFlag) -> Durability {
        match flag {
            DurabilityFlag::Strict => Durability::Strict,
            DurabilityFlag::Relaxed => Durability::Relaxed,
        }
    }
}

/// How callers are authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthFlag {
    /// No verification: local development only.
    None,
    /// HS256 tokens signed with `--jwt-secret`.
    Hs256,
    /// RS256 and ES256 tokens signed with a key of `--jwks-file` or `--jwks-url`.
    Jwks,
}

impl From<AuthFlag> for AuthMode {
    fn from(flag: AuthFlag) -> AuthMode {
        match flag {
            AuthFlag::None => AuthMode::None,
            AuthFlag::Hs256 => AuthMode::Hs256,
            AuthFlag::Jwks => AuthMode::Jwks,
        }
    }
}

/// Which clock the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockFlag {
    /// Wall-clock time.
    System,
    /// Starts at the wall-clock time and moves only through
    /// `POST /_presenced/clock/advance`.
    Manual,
}

impl From<ClockFlag> for ClockKind {
    fn from(flag: ClockFlag) -> ClockKind {
        match flag {
            ClockFlag::System => ClockKind::System,
            ClockFlag::Manual => ClockKind::Manual,
        }
    }
}

/// How logs are written; `main` installs the subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

// Every setting of `presenced serve`, declared once: the field's `arg`
// attribute is its flag and variable, its doc comment its `--help`, its name
// its TOML key. Every field is optional (or a flag that is off, or an empty
// list): absent means "not given here", so that a lower layer or the
// default applies. (A `///` comment here would become the subcommand's help.)
#[derive(Debug, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// The address to listen on. Port 0 picks a free port. Once requests are
    /// served (the store loaded, or Redis reached), the port opens and its
    /// address is printed on standard output as `presenced listening on http://ADDR`.
    #[arg(long, env = "PRESENCED_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// The directory of the embedded store [default: ./presenced-data].
    #[arg(long, env = "PRESENCED_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where facts are kept [default: embedded].
    #[arg(long, env = "PRESENCED_STORE", value_enum)]
    pub store: Option<StoreFlag>,

    /// When the embedded store answers a write [default: strict]. `strict`: once
    /// it is synced to disk (nothing acknowledged is ever lost). `relaxed`: once
    /// it is written to the operating system, which survives a crash or kill -9;
    /// a power loss may lose at most the last 100 ms (a sync runs every 100 ms).
    #[arg(long, env = "PRESENCED_DURABILITY", value_enum)]
    pub durability: Option<DurabilityFlag>,

    /// A Redis node to connect to; repeat for the seed nodes of a cluster.
    #[arg(
        long = "redis-url",
        env = "PRESENCED_REDIS_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(rename = "redis_url")]
    pub redis_urls: Vec<String>,

    /// When a write to Redis is answered [default: replicated].
    #[arg(long, env = "PRESENCED_REDIS_DURABILITY", value_enum)]
    pub redis_durability: Option<RedisDurabilityFlag>,

    /// How long a node's lease on its share of the time-driven work (fades,
    /// expiries, webhooks) lasts unless renewed: a dead node's share is taken
    /// over after about this long [default: PT6S].
    #[arg(long, env = "PRESENCED_REDIS_LEASE", value_name = "DURATION")]
    pub redis_lease: Option<String>,

    /// A PEM file of the private CA that signed the Redis servers'
    /// certificates (for `rediss://` URLs).
    #[arg(long, env = "PRESENCED_REDIS_CA_FILE", value_name = "FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Accept a standalone Redis that persists nothing (no AOF, no RDB): a
    /// restart of Redis then loses every presence.
    #[arg(long, env = "PRESENCED_REDIS_ALLOW_VOLATILE")]
    pub redis_allow_volatile: bool,

    /// How many partitions a new Redis keyspace is split into; fixed once the
    /// first node has created it [default: 64].
    #[arg(long, env = "PRESENCED_REDIS_PARTITIONS", value_name = "N")]
    pub redis_partitions: Option<u32>,

    /// The Redis password (overrides one in the URLs); never logged.
    #[arg(
        long,
        env = "PRESENCED_REDIS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    #[serde(serialize_with = "expose_secret")]
    pub redis_password: Option<Secret>,

    /// How long a stopping node (SIGTERM) waits for requests in flight
    /// before it closes them and exits [default: PT30S].
    #[arg(long, env = "PRESENCED_DRAIN_TIMEOUT", value_name = "DURATION")]
    pub drain_timeout: Option<String>,

    /// How callers are authenticated [default: none]. `none` makes every request an
    /// application with every permission in tenant `default`: local development only.
    #[arg(long, env = "PRESENCED_AUTH", value_enum)]
    pub auth: Option<AuthFlag>,

    /// The shared secret of `--auth hs256` (at least 32 bytes).
    #[arg(
        long,
        env = "PRESENCED_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[serde(serialize_with = "expose_secret")]
    pub jwt_secret: Option<Secret>,

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

    /// Requests each application may make in each tenant, as N/PERIOD (a rate
    /// with a burst of N), or `off`. Beyond it: 429 with Retry-After, nothing
    /// applied. Shared by the nodes over Redis [default: off, and 10000/PT30S
    /// (Graph's presence limit) with --auth hs256 or jwks].
    #[arg(long, env = "PRESENCED_THROTTLE_APP", value_name = "N/PERIOD")]
    pub throttle_app: Option<String>,

    /// Requests each tenant's applications may make together, as N/PERIOD, or
    /// `off` [default: off].
    #[arg(long, env = "PRESENCED_THROTTLE_TENANT", value_name = "N/PERIOD")]
    pub throttle_tenant: Option<String>,

    /// Requests without a valid token each client address may make, as
    /// N/PERIOD, or `off`; beyond it they are answered 429 instead of 401
    /// [default: 600/PT1M].
    #[arg(
        long,
        env = "PRESENCED_THROTTLE_UNAUTHENTICATED",
        value_name = "N/PERIOD"
    )]
    pub throttle_unauthenticated: Option<String>,

    /// An origin whose web pages may call presenced (CORS), such as
    /// https://app.example.com or http://localhost:3000; repeat the flag for
    /// more, or give `*` for any. Preflights are answered before the token is
    /// checked; no credentials (cookies) are allowed. Without it, no answer
    /// has CORS headers [default: none].
    #[arg(
        long = "cors-origin",
        env = "PRESENCED_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Allow `--auth none` on an address other than loopback.
    #[arg(long, env = "PRESENCED_ALLOW_INSECURE")]
    pub allow_insecure: bool,

    /// `system` (wall-clock time) or `manual` (moves only through
    /// POST /_presenced/clock/advance, for tests that fast-forward fades) [default: system].
    #[arg(long, env = "PRESENCED_CLOCK", value_enum)]
    pub clock: Option<ClockFlag>,

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

    /// A PEM file of one or more CA certificates trusted for webhook
    /// receivers and lifecycle notification URLs (the validation handshake
    /// and delivery), in addition to the public roots: for receivers whose
    /// certificates a private CA signed.
    #[arg(long, env = "PRESENCED_WEBHOOK_CA_FILE", value_name = "FILE")]
    pub webhook_ca_file: Option<PathBuf>,

    /// The most connections open at once. At the bound, the keep-alive
    /// connection idle the longest (answered, no request in flight) is
    /// closed for each new client, so that new clients are served; when none
    /// is idle, the new connection is closed at once [default: 10000].
    #[arg(long, env = "PRESENCED_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// The largest request head (request line and headers), in bytes; a
    /// larger one is answered 431 and its connection closed (on HTTP/2, the
    /// header list as HTTP/2 counts it: answered 431, the connection goes
    /// on) [default: 16384].
    #[arg(long, env = "PRESENCED_MAX_HEADER_BYTES", value_name = "BYTES")]
    pub max_header_bytes: Option<usize>,

    /// The largest request body, in bytes; a larger one is answered 413 and
    /// nothing is applied [default: 131072].
    #[arg(long, env = "PRESENCED_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// How long a client may take to send a request's headers, as an ISO 8601
    /// duration; a slower one has its connection closed. Also how long an
    /// idle keep-alive connection (on HTTP/2, one with no request open) is
    /// kept open [default: PT30S].
    #[arg(long, env = "PRESENCED_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,

    /// How long a request body may take to arrive once its headers have, as
    /// an ISO 8601 duration; a slower one is answered 408, nothing is
    /// applied, and its connection is closed [default: PT10S].
    #[arg(long, env = "PRESENCED_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,

    /// How long a response may wait for its client to read any of it, as an
    /// ISO 8601 duration; a client that reads nothing for this long (a
    /// stream or an answer it never takes) has its connection closed
    /// [default: PT30S].
    #[arg(long, env = "PRESENCED_SEND_TIMEOUT", value_name = "DURATION")]
    pub send_timeout: Option<String>,

    /// The most live streams (/_presenced/stream) open at once on this node;
    /// one more is answered 503 with Retry-After, and the open ones go on
    /// [default: 10000].
    #[arg(long, env = "PRESENCED_MAX_STREAMS", value_name = "N")]
    pub max_streams: Option<usize>,

    /// The most HTTP/2 streams (requests) open at once on one connection,
    /// advertised to the client, which waits for one to end before it opens
    /// another; a stream opened beyond it anyway is refused [default: 100].
    #[arg(long, env = "PRESENCED_MAX_H2_STREAMS", value_name = "N")]
    pub max_h2_streams: Option<u32>,

    /// The most HTTP/2 streams a client may open and reset before presenced
    /// has started on them, at once on one connection; beyond it the
    /// connection is closed with GOAWAY (the "rapid reset" flood,
    /// CVE-2023-44487) [default: 20].
    #[arg(long, env = "PRESENCED_MAX_H2_PENDING_RESETS", value_name = "N")]
    pub max_h2_pending_resets: Option<usize>,

    /// The most HTTP/2 streams presenced may reset because of a client's
    /// errors (a malformed or oversized head, a stream beyond
    /// --max-h2-streams) over one connection's life; beyond it the
    /// connection is closed with GOAWAY [default: 1024].
    #[arg(long, env = "PRESENCED_MAX_H2_ERROR_RESETS", value_name = "N")]
    pub max_h2_error_resets: Option<usize>,

    /// The most users one tenant may hold, or `off`. A write that would add
    /// another user to a tenant at the bound is answered 403
    /// (quotaLimitReached) and writes nothing; its users' own writes go on. A
    /// user stays counted once written, Offline included, because presenced
    /// keeps its sequence number [default: off].
    #[arg(long, env = "PRESENCED_MAX_USERS_PER_TENANT", value_name = "N|off")]
    pub max_users_per_tenant: Option<String>,

    /// The memory kept for rendered presences, in bytes: a presence read
    /// again before its user changes or fades is answered from the JSON
    /// rendered the first time. With the memory and embedded stores they are
    /// kept beside the facts up to this bound, and past it in a cache that
    /// evicts, bounded alike; over Redis in that cache only. 0 keeps none
    /// [default: 134217728].
    #[arg(long, env = "PRESENCED_RENDER_CACHE_BYTES", value_name = "BYTES")]
    pub render_cache_bytes: Option<usize>,

    /// A TOML file with any of these settings, by their long names with
    /// underscores (`listen = "0.0.0.0:8080"`, `idle_timeout = "PT1M"`).
    #[arg(long, env = "PRESENCED_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// How logs are written to standard error [default: text]. Filter them with RUST_LOG.
    #[arg(long, env = "PRESENCED_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The secret is written out only to be laid over the file's settings
/// ([`ServeArgs::over`]); `Secret` itself has no `Serialize`, so that
/// nothing else can write it anywhere.
fn expose_secret<S: serde::Serializer>(
    secret: &Option<Secret>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    secret
        .as_ref()
        .map(|secret| secret.0.as_str())
        .serialize(serializer)
}

/// What `presenced serve` runs with.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub server: ServeConfig,
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// Lays flags and environment over the config file, and the file over the
    /// defaults; the error says which setting is wrong.
    pub fn resolve(self) -> Result<Resolved, String> {
        let settings = match self.config.clone() {
            None => self,
            Some(path) => self.over(read_config_file(&path)?)?,
        };
        settings.into_resolved()
    }

    /// These settings (the command line's and the environment's) over
    /// `file`'s: each one given here wins, each one absent here (`None`, a
    /// flag that is off, an empty list) leaves the file's.
    fn over(self, file: ServeArgs) -> Result<ServeArgs, String> {
        use serde_json::Value;
        let internal = |error: serde_json::Error| format!("cannot merge the settings: {error}");
        let (Value::Object(given), Value::Object(mut merged)) = (
            serde_json::to_value(&self).map_err(internal)?,
            serde_json::to_value(&file).map_err(internal)?,
        ) else {
            return Err("cannot merge the settings: they are not a table".into());
        };
        for (key, value) in given {
            let absent = match &value {
                Value::Null | Value::Bool(false) => true,
                Value::Array(items) => items.is_empty(),
                _ => false,
            };
            if !absent {
                merged.insert(key, value);
            }
        }
        serde_json::from_value(Value::Object(merged)).map_err(internal)
    }

    /// Maps the settings onto each module's, their defaults where absent.
    fn into_resolved(self) -> Result<Resolved, String> {
        let defaults = ServeConfig::default();
        let limits = limits(&self, defaults.limits)?;
        let idle_timeout = positive_duration(
            "--idle-timeout",
            self.idle_timeout,
            defaults.idle_timeout,
            "PT5M or PT10S",
        )?;
        let mode = self.auth.map_or(defaults.auth.mode, AuthMode::from);
        let keys = token_keys(
            mode,
            self.jwt_secret,
            self.jwks_file,
            self.jwks_url,
            self.issuer.is_some() && self.audience.is_some(),
        )?;
        let notify = NotifySettings {
            allow_private: mode == AuthMode::None || self.allow_private_webhooks,
            max_lifetime: positive_duration(
                "--max-subscription-lifetime",
                self.max_subscription_lifetime,
                defaults.notify.max_lifetime,
                "PT1H",
            )?,
            retry_window: positive_duration(
                "--webhook-retry-window",
                self.webhook_retry_window,
                defaults.notify.retry_window,
                "PT1H",
            )?,
            webhook_ca_file: self.webhook_ca_file,
        };
        let rate = |flag: &str, given: Option<String>, default: Option<Rate>| match given {
            None => Ok(default),
            Some(text) => Rate::parse(flag, &text),
        };
        let throttle = ThrottleSettings {
            app: rate(
                "--throttle-app",
                self.throttle_app,
                (mode != AuthMode::None).then_some(Rate::GRAPH),
            )?,
            tenant: rate("--throttle-tenant", self.throttle_tenant, None)?,
            unauthenticated: rate(
                "--throttle-unauthenticated",
                self.throttle_unauthenticated,
                Rate::parse(
                    "--throttle-unauthenticated",
                    DEFAULT_THROTTLE_UNAUTHENTICATED,
                )?,
            )?,
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together; give both or neither".into()),
        };
        let server = ServeConfig {
            listen: self.listen.unwrap_or(defaults.listen),
            store: StoreSettings {
                kind: self.store.map_or(defaults.store.kind, StoreKind::from),
                data_dir: self.data_dir.unwrap_or(defaults.store.data_dir),
                durability: self
                    .durability
                    .map_or(defaults.store.durability, Durability::from),
                redis_urls: self.redis_urls,
                redis_durability: self
                    .redis_durability
                    .map_or(defaults.store.redis_durability, Into::into),
                redis_lease: positive_duration(
                    "--redis-lease",
                    self.redis_lease,
                    defaults.store.redis_lease,
                    "PT6S",
                )?,
                redis_ca_file: self.redis_ca_file,
                redis_allow_volatile: self.redis_allow_volatile,
                redis_partitions: match self.redis_partitions {
                    None => defaults.store.redis_partitions,
                    Some(n) if (1..=16_384).contains(&n) => n,
                    Some(n) => {
                        return Err(format!(
                            "--redis-partitions is {n}; give a number from 1 to 16384 (Redis Cluster's slots)"
                        ));
                    }
                },
                redis_password: self.redis_password,
            },
            drain_timeout: positive_duration(
                "--drain-timeout",
                self.drain_timeout,
                defaults.drain_timeout,
                "PT30S",
            )?,
            auth: AuthSettings {
                mode,
                keys,
                issuer: self.issuer,
                audience: self.audience,
            },
            tls,
            allow_insecure: self.allow_insecure,
            clock: self.clock.map_or(defaults.clock, ClockKind::from),
            idle_timeout,
            notify,
            throttle,
            limits,
            cors: crate::cors::CorsOrigins::parse(&self.cors_origins)?,
        };
        Ok(Resolved {
            server,
            log_format: self.log_format.unwrap_or_default(),
        })
    }
}

/// Requests without a valid token one address may make.
const DEFAULT_THROTTLE_UNAUTHENTICATED: &str = "600/PT1M";

/// The settings of a `--config` file; unknown keys are refused, naming them.
fn read_config_file(path: &Path) -> Result<ServeArgs, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the config file {}: {error}", path.display()))?;
    toml::from_str(&text)
        .map_err(|error| format!("the config file {} is not valid: {error}", path.display()))
}

/// A positive duration setting, or its default.
fn positive_duration(
    flag: &str,
    text: Option<String>,
    default: Duration,
    example: &str,
) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => {
            let duration = parse_duration(flag, &text)?;
            if !duration.is_positive() {
                return Err(format!("{flag} must be positive, e.g. {example}"));
            }
            Ok(duration)
        }
    }
}

/// The bounds of `--max-*` and the timeouts, each checked against what
/// serves requests at all.
fn limits(args: &ServeArgs, defaults: Limits) -> Result<Limits, String> {
    let within = |flag: &str,
                  value: Option<usize>,
                  default: usize,
                  range: RangeInclusive<usize>| {
        match value {
            None => Ok(default),
            Some(value) if range.contains(&value) => Ok(value),
            Some(value) => Err(format!(
                "{flag} is {value}; give a number from {} to {}",
                range.start(),
                range.end()
            )),
        }
    };
    let max_users_per_tenant = match args.max_users_per_tenant.as_deref().map(str::trim) {
        None => defaults.max_users_per_tenant,
        Some(text) if text.eq_ignore_ascii_case("off") => None,
        Some(text) => Some(text.parse::<NonZeroU64>().map_err(|_| {
            format!("--max-users-per-tenant is {text:?}; give a number of users from 1 up, or off")
        })?),
    };
    Ok(Limits {
        max_connections: within(
            "--max-connections",
            args.max_connections,
            defaults.max_connections,
            1..=10_000_000,
        )?,
        // Below 4 KiB an ordinary token would not fit; above 256 KiB a
        // head is no longer headers.
        max_header_bytes: within(
            "--max-header-bytes",
            args.max_header_bytes,
            defaults.max_header_bytes,
            4_096..=262_144,
        )?,
        max_body_bytes: within(
            "--max-body-bytes",
            args.max_body_bytes,
            defaults.max_body_bytes,
            1_024..=64 * 1024 * 1024,
        )?,
        header_timeout: positive_duration(
            "--header-timeout",
            args.header_timeout.clone(),
            defaults.header_timeout,
            "PT30S",
        )?,
        body_timeout: positive_duration(
            "--body-timeout",
            args.body_timeout.clone(),
            defaults.body_timeout,
            "PT10S",
        )?,
        send_timeout: positive_duration(
            "--send-timeout",
            args.send_timeout.clone(),
            defaults.send_timeout,
            "PT30S",
        )?,
        max_streams: within(
            "--max-streams",
            args.max_streams,
            defaults.max_streams,
            1..=10_000_000,
        )?,
        // One stream at a time would make HTTP/2 a slower HTTP/1.1; more
        // than ten thousand on one connection is no longer a client.
        max_h2_streams: within(
            "--max-h2-streams",
            args.max_h2_streams.map(|streams| streams as usize),
            defaults.max_h2_streams as usize,
            1..=10_000,
        )? as u32,
        max_h2_pending_resets: within(
            "--max-h2-pending-resets",
            args.max_h2_pending_resets,
            defaults.max_h2_pending_resets,
            1..=10_000,
        )?,
        max_h2_error_resets: within(
            "--max-h2-error-resets",
            args.max_h2_error_resets,
            defaults.max_h2_error_resets,
            1..=1_000_000,
        )?,
        max_users_per_tenant,
        render_cache_bytes: within(
            "--render-cache-bytes",
            args.render_cache_bytes,
            defaults.render_cache_bytes,
            0..=64 * 1024 * 1024 * 1024,
        )?,
    })
}

/// Checks that `--auth` has the key settings it needs, and no others.
fn token_keys(
    auth: AuthMode,
    secret: Option<Secret>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    issuer_and_audience: bool,
) -> Result<Option<KeySource>, String> {
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

    fn resolve_all(arguments: &[&str]) -> Result<Resolved, String> {
        let mut all = vec!["presenced", "serve"];
        all.extend_from_slice(arguments);
        match Cli::try_parse_from(all)
            .map_err(|error| error.to_string())?
            .command
        {
            Command::Serve(args) => (*args).resolve(),
            Command::Check(_) | Command::Token(_) | Command::Migrate(_) => Err("not serve".into()),
        }
    }

    fn resolve(arguments: &[&str]) -> Result<ServeConfig, String> {
        resolve_all(arguments).map(|resolved| resolved.server)
    }

    #[test]
    fn throttling_is_graphs_limit_with_tokens_and_off_without() {
        let secret = "a shared secret of at least 32 bytes, for tests";
        let tokens = resolve(&["--auth", "hs256", "--jwt-secret", secret]).expect("resolves");
        assert_eq!(tokens.throttle.app, Some(Rate::GRAPH));
        assert_eq!(tokens.throttle.tenant, None);
        let open = resolve(&[]).expect("resolves");
        assert_eq!(open.throttle.app, None);
        assert!(open.throttle.unauthenticated.is_some());
        let given = resolve(&[
            "--auth",
            "hs256",
            "--jwt-secret",
            secret,
            "--throttle-app",
            "off",
            "--throttle-tenant",
            "50/PT1M",
            "--throttle-unauthenticated",
            "off",
        ])
        .expect("resolves");
        assert_eq!(given.throttle.app, None);
        assert_eq!(
            given.throttle.tenant.map(|rate| rate.to_string()),
            Some("50/PT1M".into())
        );
        assert_eq!(given.throttle.unauthenticated, None);
        let error = resolve(&["--throttle-tenant", "lots"]).expect_err("refused");
        assert!(error.contains("N/PERIOD"), "{error}");
    }

    #[test]
    fn the_redis_settings_resolve_and_bad_ones_say_what_to_give() {
        let config = resolve(&[
            "--store",
            "redis",
            "--redis-url",
            "redis://a:1",
            "--redis-url",
            "redis://b:2",
            "--redis-lease",
            "PT2S",
            "--redis-partitions",
            "128",
            "--redis-durability",
            "async",
            "--redis-allow-volatile",
        ])
        .expect("resolves");
        assert_eq!(config.store.kind, StoreKind::Redis);
        assert_eq!(config.store.redis_urls, ["redis://a:1", "redis://b:2"]);
        assert_eq!(config.store.redis_lease, Duration::from_secs(2));
        assert_eq!(config.store.redis_partitions, 128);
        assert_eq!(
            config.store.redis_durability,
            presence_store::RedisDurability::Async
        );
        assert!(config.store.redis_allow_volatile);
        let defaults = resolve(&[]).expect("resolves");
        assert_eq!(
            defaults.store.redis_durability,
            presence_store::RedisDurability::Replicated
        );
        assert_eq!(defaults.store.redis_lease, Duration::from_secs(6));
        assert_eq!(defaults.drain_timeout, Duration::from_secs(30));
        let refused = resolve(&["--redis-partitions", "0"]).expect_err("refused");
        assert!(refused.contains("from 1 to 16384"), "{refused}");
        let refused = resolve(&["--redis-lease", "PT0S"]).expect_err("refused");
        assert!(
            refused.contains("--redis-lease must be positive"),
            "{refused}"
        );
    }

    #[test]
    fn the_bounds_resolve_and_bad_ones_say_what_to_give() {
        let config = resolve(&[
            "--max-connections",
            "3",
            "--max-header-bytes",
            "8192",
            "--max-body-bytes",
            "2048",
            "--header-timeout",
            "PT1S",
            "--body-timeout",
            "PT2S",
            "--send-timeout",
            "PT3S",
            "--max-streams",
            "7",
            "--max-h2-streams",
            "8",
            "--max-h2-pending-resets",
            "9",
            "--max-h2-error-resets",
            "10",
            "--max-users-per-tenant",
            "100",
            "--render-cache-bytes",
            "11",
        ])
        .expect("resolves");
        assert_eq!(
            config.limits,
            Limits {
                max_connections: 3,
                max_header_bytes: 8192,
                max_body_bytes: 2048,
                header_timeout: Duration::from_secs(1),
                body_timeout: Duration::from_secs(2),
                send_timeout: Duration::from_secs(3),
                max_streams: 7,
                max_h2_streams: 8,
                max_h2_pending_resets: 9,
                max_h2_error_resets: 10,
                max_users_per_tenant: NonZeroU64::new(100),
                render_cache_bytes: 11,
            }
        );
        assert_eq!(resolve(&[]).expect("resolves").limits, Limits::default());
        let refusals = [
            (
                &["--max-connections", "0"][..],
                "--max-connections is 0; give a number from 1",
            ),
            (
                &["--max-header-bytes", "100"],
                "--max-header-bytes is 100; give a number from 4096 to 262144",
            ),
            (
                &["--max-body-bytes", "10"],
                "--max-body-bytes is 10; give a number from 1024",
            ),
            (
                &["--header-timeout", "PT0S"],
                "--header-timeout must be positive",
            ),
            (&["--body-timeout", "soon"], "--body-timeout"),
            (
                &["--send-timeout", "PT0S"],
                "--send-timeout must be positive",
            ),
            (&["--max-streams", "0"], "--max-streams is 0"),
            (
                &["--max-h2-streams", "0"],
                "--max-h2-streams is 0; give a number from 1 to 10000",
            ),
            (
                &["--max-h2-pending-resets", "0"],
                "--max-h2-pending-resets is 0",
            ),
            (
                &["--max-h2-error-resets", "0"],
                "--max-h2-error-resets is 0",
            ),
            (
                &["--max-users-per-tenant", "0"],
                "give a number of users from 1 up, or off",
            ),
            (
                &["--max-users-per-tenant", "many"],
                "give a number of users from 1 up, or off",
            ),
        ];
        for (arguments, expected) in refusals {
            let refused = resolve(arguments).expect_err(expected);
            assert!(refused.contains(expected), "{arguments:?}: {refused}");
        }
    }

    #[test]
    fn the_redis_password_never_shows() {
        let config =
            resolve(&["--store", "redis", "--redis-password", "hunter2"]).expect("resolves");
        assert!(config.store.redis_password.is_some());
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn the_embedded_store_with_strict_durability_is_the_default() {
        let config = resolve(&[]).expect("resolves");
        assert_eq!(config.store.kind, StoreKind::Embedded);
        assert_eq!(config.store.durability, Durability::Strict);
        assert_eq!(config.store.data_dir, PathBuf::from("./presenced-data"));
    }

    #[test]
    fn durability_comes_from_the_flag_or_the_config_file() {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::io::Write::write_all(&mut file, b"durability = \"relaxed\"\nstore = \"memory\"\n")
            .expect("writable");
        let path = file.path().to_str().expect("UTF-8");
        let config = resolve(&["--config", path]).expect("resolves");
        assert_eq!(config.store.durability, Durability::Relaxed);
        assert_eq!(config.store.kind, StoreKind::Memory);
        let config = resolve(&["--config", path, "--durability", "strict"]).expect("resolves");
        assert_eq!(config.store.durability, Durability::Strict);
        assert!(resolve(&["--durability", "sometimes"]).is_err());
    }

    // Precedence, flag > environment > file > default. The environment is
    // clap's, read from the process, and a test cannot set variables (that
    // is `unsafe`, and this crate forbids it), so each resolution runs in a
    // child process of this test binary with the variables it needs.

    /// The arguments for the child, separated by U+001F.
    const CHILD_ARGUMENTS: &str = "PRESENCED_TEST_CHILD_ARGUMENTS";
    /// Marks the child's answer, which follows libtest's `test ... ` on its line.
    const CHILD_ANSWER: &str = "presenced resolved: ";

    #[test]
    #[ignore = "run by the precedence tests in a child process, with the environment they set"]
    fn resolve_in_a_child_process() {
        let Ok(arguments) = std::env::var(CHILD_ARGUMENTS) else {
            return;
        };
        let arguments: Vec<&str> = arguments
            .split('\u{1f}')
            .filter(|argument| !argument.is_empty())
            .collect();
        println!("{CHILD_ANSWER}{:?}", resolve_all(&arguments));
    }

    /// What `serve` resolves `arguments` to with exactly the `PRESENCED_*`
    /// variables `env`, as its `Debug` text.
    fn resolve_with_environment(arguments: &[&str], env: &[(&str, &str)]) -> String {
        let test = concat!(module_path!(), "::resolve_in_a_child_process");
        let test = test.split_once("::").map_or(test, |(_crate, path)| path);
        let mut command =
            std::process::Command::new(std::env::current_exe().expect("this test binary"));
        command.args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PRESENCED_") {
                command.env_remove(name);
            }
        }
        command.env(CHILD_ARGUMENTS, arguments.join("\u{1f}"));
        command.envs(env.iter().copied());
        let output = command.output().expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        stdout
            .lines()
            .find_map(|line| Some(line.split_once(CHILD_ANSWER)?.1))
            .unwrap_or_else(|| panic!("the child answered: {stdout}"))
            .to_owned()
    }

    /// One setting given by every layer, and what each layer's value looks
    /// like as flags alone.
    struct Layers {
        /// The setting's line in a config file.
        file: &'static str,
        /// Its variable and value.
        env: (&'static str, &'static str),
        /// Its flag and value.
        flag: &'static [&'static str],
        /// Flags that give the file's value, the variable's, and the default.
        file_as_flags: &'static [&'static str],
        env_as_flags: &'static [&'static str],
        default_as_flags: &'static [&'static str],
    }

    /// Arguments and variables, the flags alone that must resolve the same,
    /// and the rule that says so.
    type Case<'a> = (
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
        &'a str,
    );

    /// Each setting resolves, with only a file, to the file's value; with the
    /// variable too, to the variable's; with the flag too, to the flag's; and
    /// with none of them, to the default: each compared with what the
    /// equivalent flags alone resolve to.
    fn check_precedence(layers: &Layers) {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::io::Write::write_all(&mut file, format!("{}\n", layers.file).as_bytes())
            .expect("writable");
        let config = ["--config", file.path().to_str().expect("UTF-8")];
        let env = [layers.env];
        let with_flag: Vec<&str> = config.iter().chain(layers.flag).copied().collect();
        let cases: [Case; 4] = [
            (&[], &[], layers.default_as_flags, "the default"),
            (
                &config,
                &[],
                layers.file_as_flags,
                "the file over the default",
            ),
            (
                &config,
                &env,
                layers.env_as_flags,
                "the variable over the file",
            ),
            (&with_flag, &env, layers.flag, "the flag over the variable"),
        ];
        for (arguments, env, same_as, rule) in cases {
            let layered = resolve_with_environment(arguments, env);
            assert!(layered.starts_with("Ok("), "{}: {layered}", layers.file);
            assert_eq!(
                layered,
                resolve_with_environment(same_as, &[]),
                "{}: {rule}",
                layers.file
            );
        }
    }

    #[test]
    fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
        let table = [
            // A duration.
            Layers {
                file: "idle_timeout = \"PT10S\"",
                env: ("PRESENCED_IDLE_TIMEOUT", "PT20S"),
                flag: &["--idle-timeout", "PT30S"],
                file_as_flags: &["--idle-timeout", "PT10S"],
                env_as_flags: &["--idle-timeout", "PT20S"],
                default_as_flags: &["--idle-timeout", "PT5M"],
            },
            // An enum, with a value for each layer.
            Layers {
                file: "store = \"memory\"",
                env: ("PRESENCED_STORE", "redis"),
                flag: &["--store", "embedded"],
                file_as_flags: &["--store", "memory"],
                env_as_flags: &["--store", "redis"],
                default_as_flags: &["--store", "embedded"],
            },
            // The Redis store's own.
            Layers {
                file: "redis_lease = \"PT2S\"",
                env: ("PRESENCED_REDIS_LEASE", "PT3S"),
                flag: &["--redis-lease", "PT4S"],
                file_as_flags: &["--redis-lease", "PT2S"],
                env_as_flags: &["--redis-lease", "PT3S"],
                default_as_flags: &["--redis-lease", "PT6S"],
            },
            Layers {
                file: "redis_durability = \"async\"",
                env: ("PRESENCED_REDIS_DURABILITY", "replicated"),
                flag: &["--redis-durability", "async"],
                file_as_flags: &["--redis-durability", "async"],
                env_as_flags: &["--redis-durability", "replicated"],
                default_as_flags: &["--redis-durability", "replicated"],
            },
            Layers {
                file: "drain_timeout = \"PT5S\"",
                env: ("PRESENCED_DRAIN_TIMEOUT", "PT6S"),
                flag: &["--drain-timeout", "PT7S"],
                file_as_flags: &["--drain-timeout", "PT5S"],
                env_as_flags: &["--drain-timeout", "PT6S"],
                default_as_flags: &["--drain-timeout", "PT30S"],
            },
            // A bound: a number.
            Layers {
                file: "max_connections = 100",
                env: ("PRESENCED_MAX_CONNECTIONS", "200"),
                flag: &["--max-connections", "300"],
                file_as_flags: &["--max-connections", "100"],
                env_as_flags: &["--max-connections", "200"],
                default_as_flags: &["--max-connections", "10000"],
            },
            // A bound that may be off.
            Layers {
                file: "max_users_per_tenant = \"50\"",
                env: ("PRESENCED_MAX_USERS_PER_TENANT", "off"),
                flag: &["--max-users-per-tenant", "70"],
                file_as_flags: &["--max-users-per-tenant", "50"],
                env_as_flags: &["--max-users-per-tenant", "off"],
                default_as_flags: &["--max-users-per-tenant", "off"],
            },
            Layers {
                file: "body_timeout = \"PT2S\"",
                env: ("PRESENCED_BODY_TIMEOUT", "PT3S"),
                flag: &["--body-timeout", "PT4S"],
                file_as_flags: &["--body-timeout", "PT2S"],
                env_as_flags: &["--body-timeout", "PT3S"],
                default_as_flags: &["--body-timeout", "PT10S"],
            },
            // A path.
            Layers {
                file: "data_dir = \"/from/file\"",
                env: ("PRESENCED_DATA_DIR", "/from/variable"),
                flag: &["--data-dir", "/from/flag"],
                file_as_flags: &["--data-dir", "/from/file"],
                env_as_flags: &["--data-dir", "/from/variable"],
                default_as_flags: &["--data-dir", "./presenced-data"],
            },
            // A repeatable one: a list replaces a list, never appends.
            Layers {
                file: "redis_url = [\"redis://file-a\", \"redis://file-b\"]",
                env: (
                    "PRESENCED_REDIS_URL",
                    "redis://variable-a,redis://variable-b",
                ),
                flag: &[
                    "--redis-url",
                    "redis://flag-a",
                    "--redis-url",
                    "redis://flag-b",
                ],
                file_as_flags: &["--redis-url", "redis://file-a,redis://file-b"],
                env_as_flags: &[
                    "--redis-url",
                    "redis://variable-a",
                    "--redis-url",
                    "redis://variable-b",
                ],
                default_as_flags: &[],
            },
            // An optional one, without a default.
            Layers {
                file: "issuer = \"file-issuer\"",
                env: ("PRESENCED_ISSUER", "variable-issuer"),
                flag: &["--issuer", "flag-issuer"],
                file_as_flags: &["--issuer", "file-issuer"],
                env_as_flags: &["--issuer", "variable-issuer"],
                default_as_flags: &[],
            },
            // Another enum, whose default is not the serve config's.
            Layers {
                file: "log_format = \"json\"",
                env: ("PRESENCED_LOG_FORMAT", "text"),
                flag: &["--log-format", "json"],
                file_as_flags: &["--log-format", "json"],
                env_as_flags: &["--log-format", "text"],
                default_as_flags: &["--log-format", "text"],
            },
        ];
        for layers in &table {
            check_precedence(layers);
        }
    }

    #[test]
    fn a_switch_in_the_file_stays_on_unless_given_elsewhere() {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::io::Write::write_all(&mut file, b"allow_insecure = true\n").expect("writable");
        let path = file.path().to_str().expect("UTF-8");
        let config = resolve(&["--config", path]).expect("resolves");
        assert!(config.allow_insecure);
        assert!(!resolve(&[]).expect("resolves").allow_insecure);
    }

    #[test]
    fn the_file_refuses_unknown_keys_and_the_config_key_itself() {
        for text in ["idle_timout = \"PT10S\"", "config = \"other.toml\""] {
            let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
            std::io::Write::write_all(&mut file, text.as_bytes()).expect("writable");
            let path = file.path().to_str().expect("UTF-8");
            let error = resolve(&["--config", path]).expect_err(text);
            let key = text.split(' ').next().expect("a key");
            assert!(
                error.contains("is not valid") && error.contains(&format!("unknown field `{key}`")),
                "{error}"
            );
        }
    }

    /// Every `[default: X]` that `--help` states (each flag's own help, and
    /// the summary of `presenced --help`) is what resolving without the
    /// setting gives: the defaults are written once, in the modules'
    /// `Default`s, and the help that repeats them cannot drift.
    #[test]
    fn the_defaults_that_help_states_are_the_defaults() {
        use clap::CommandFactory;
        let command = Cli::command();
        let serve = command.find_subcommand("serve").expect("serve");
        let mut stated: Vec<(String, String)> = Vec::new();
        for argument in serve.get_arguments() {
            let help = argument
                .get_long_help()
                .or(argument.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            if let (Some(long), Some(value)) = (argument.get_long(), stated_default(&help)) {
                stated.push((format!("--{long}"), value));
            }
        }
        let summary = command
            .get_after_long_help()
            .expect("the summary")
            .to_string();
        for line in summary.lines() {
            let line = line.trim_start();
            if let (Some(flag), Some(value)) = (
                line.strip_prefix("--")
                    .and_then(|rest| rest.split_whitespace().next()),
                stated_default(line),
            ) {
                stated.push((format!("--{flag}"), value));
            }
        }
        assert!(stated.len() >= 10, "{stated:?}");
        let defaults = format!("{:?}", resolve_all(&[]));
        for (flag, value) in &stated {
            assert_eq!(
                format!("{:?}", resolve_all(&[flag, value])),
                defaults,
                "--help says {flag} defaults to {value}"
            );
        }
    }

    /// The `X` of a `[default: X]` or `[default: X, as Graph]`.
    fn stated_default(help: &str) -> Option<String> {
        let (_, rest) = help.split_once("[default: ")?;
        let end = rest.find([']', ','])?;
        Some(rest[..end].to_owned())
    }
}
