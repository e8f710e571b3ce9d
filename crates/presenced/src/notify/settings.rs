//! The notifier's settings, which the command line maps onto.

use presence_core::Duration;

/// The change notification settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifySettings {
    /// Whether URLs on private, loopback and link-local addresses (and
    /// `http:`) are accepted: `--allow-private-webhooks`, or `--auth none`.
    pub allow_private: bool,
    pub max_lifetime: Duration,
    pub retry_window: Duration,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            allow_private: false,
            max_lifetime: Duration::from_hours(1),
            retry_window: Duration::from_hours(4),
        }
    }
}
