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
        --data-dir DIR           the embedded store's directory [default: ./presenced-data]\n  \
        --store KIND             memory (the default in this version), embedded, redis\n  \
        --redis-url URL          Redis seed nodes, repeatable\n  \
        --auth MODE              none: every request an app with every permission (development)\n  \
        --allow-insecure         allow --auth none on a non-loopback address\n  \
        --clock KIND             system, or manual (moved by POST /_presenced/clock/advance)\n  \
        --idle-timeout DURATION  the length of one fade stage [default: PT5M]\n  \
        --config FILE            a TOML file with any of these settings\n  \
        --log-format FORMAT      text or json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
}

/// Where facts are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In memory only: everything is lost when the process stops (tests, demos).
    Memory,
    /// A durable store in --data-dir (not available in this version yet).
    Embedded,
    /// Redis or Redis Cluster at --redis-url (not available in this version yet).
    Redis,
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

    /// Where facts are kept [default: memory].
    #[arg(long, env = "PRESENCED_STORE", value_enum)]
    pub store: Option<StoreKind>,

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
    redis_url: Option<Vec<String>>,
    auth: Option<AuthMode>,
    allow_insecure: Option<bool>,
    clock: Option<ClockKind>,
    idle_timeout: Option<String>,
    log_format: Option<LogFormat>,
}

/// Everything `serve` needs, resolved.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreKind,
    pub redis_urls: Vec<String>,
    pub auth: AuthMode,
    pub allow_insecure: bool,
    pub clock: ClockKind,
    pub idle_timeout: Duration,
    pub log_format: LogFormat,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./presenced-data"),
            store: StoreKind::Memory,
            redis_urls: Vec::new(),
            auth: AuthMode::None,
            allow_insecure: false,
            clock: ClockKind::System,
            idle_timeout: Duration::from_mins(5),
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
        Ok(ServeConfig {
            listen: self.listen.or(file.listen).unwrap_or(defaults.listen),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            store: self.store.or(file.store).unwrap_or(defaults.store),
            redis_urls,
            auth: self.auth.or(file.auth).unwrap_or(defaults.auth),
            allow_insecure: self.allow_insecure || file.allow_insecure.unwrap_or(false),
            clock: self.clock.or(file.clock).unwrap_or(defaults.clock),
            idle_timeout,
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(defaults.log_format),
        })
    }
}
