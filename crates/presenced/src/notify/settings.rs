//! The change notification settings, owned here; `cli.rs` maps the command
//! line onto them.

use std::path::PathBuf;

use presence_core::Duration;

/// The change notification settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySettings {
    /// Whether URLs on private, loopback and link-local addresses (and
    /// `http:`) are accepted: `--allow-private-webhooks`, or `--auth none`.
    pub allow_private: bool,
    /// The longest a subscription may live: `--max-subscription-lifetime`.
    pub max_lifetime: Duration,
    /// How long a notification is retried: `--webhook-retry-window`.
    pub retry_window: Duration,
    /// Extra CA certificates (PEM) trusted for receivers, beside the public
    /// roots: `--webhook-ca-file`.
    pub webhook_ca_file: Option<PathBuf>,
}

impl Default for NotifySettings {
    /// Graph's: an hour's lifetime, four hours of retries.
    fn default() -> NotifySettings {
        NotifySettings {
            allow_private: false,
            max_lifetime: Duration::from_hours(1),
            retry_window: Duration::from_hours(4),
            webhook_ca_file: None,
        }
    }
}
