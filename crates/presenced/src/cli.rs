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
        --auth MODE              none: every request an app with every permission (development)\n  \
        --allow-insecure         allow --auth none on a non-loopback address\n  \
        --clock KIND             system, or manual (moved by POST /_presenced/clock/advance)\n  \
        --idle-timeout DURATION  the length of one fade stage [default: PT5M]\n  \
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
    durability: Option<DurabilityMode>,
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
    pub durability: DurabilityMode,
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
            store: StoreKind::Embedded,
            durability: DurabilityMode::Strict,
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
            durability: self
                .durability
                .or(file.durability)
                .unwrap_or(defaults.durability),
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
            Command::Check(_) => Err("not serve".into()),
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
