//! The bounds on what clients may hold, and the count of what was refused
//! because of them.
//!
//! Every bound has a flag (`cli.rs`), a default here, and an answer: the
//! connections (`--max-connections`, enforced by the accept loop in
//! `connections.rs`), the size of a request's head (431, hyper's) and body
//! (413), the time to send them (the connection closed; 408), the time a
//! response may wait for its client to read it (the connection closed), the live
//! streams of a node (`--max-streams`, 503 with `Retry-After`) and the users
//! of a tenant (`--max-users-per-tenant`, 403 `quotaLimitReached`, kept by
//! the store). A client past a bound is cut off; the others are served.
//!
//! HTTP/2 has bounds of its own beside these, each handed to hyper (and the
//! h2 library under it) by `protocol.rs`: the streams open at once on one
//! connection (`--max-h2-streams`), and the stream resets a client may cause
//! before its connection is closed with GOAWAY (`--max-h2-pending-resets`,
//! `--max-h2-error-resets`: the "rapid reset" flood of CVE-2023-44487 and
//! its variants). `--max-header-bytes` bounds an HTTP/2 header list too, and
//! `--header-timeout` an HTTP/2 connection with no stream open.

use std::num::NonZeroU64;

use presence_core::Duration;

/// The bounds, resolved (`cli.rs` maps the flags onto them; the `Default`
/// is the defaults `--help` states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (`--max-connections`).
    pub max_connections: usize,
    /// The largest request head: request line and headers, in bytes
    /// (`--max-header-bytes`).
    pub max_header_bytes: usize,
    /// The largest request body, in bytes (`--max-body-bytes`).
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's head; also how long
    /// an idle keep-alive connection is kept (`--header-timeout`).
    pub header_timeout: Duration,
    /// How long a request body may take to arrive once its head has
    /// (`--body-timeout`).
    pub body_timeout: Duration,
    /// How long a response may wait for its client to read any of it
    /// (`--send-timeout`).
    pub send_timeout: Duration,
    /// Live streams open at once on this node (`--max-streams`).
    pub max_streams: usize,
    /// HTTP/2 streams open at once on one connection (`--max-h2-streams`),
    /// advertised as `SETTINGS_MAX_CONCURRENT_STREAMS`: a client waits for
    /// one of its streams to end before it opens another, and a stream
    /// opened beyond it anyway is refused (`REFUSED_STREAM`).
    pub max_h2_streams: u32,
    /// HTTP/2 streams a client may open and reset before presenced has
    /// started on them, at once on one connection, before the connection is
    /// closed with GOAWAY `ENHANCE_YOUR_CALM` (`--max-h2-pending-resets`):
    /// the bound on the "rapid reset" flood.
    pub max_h2_pending_resets: usize,
    /// HTTP/2 streams presenced may reset because of the client's errors
    /// (a malformed or oversized head, a stream beyond
    /// `max_h2_streams`) over one connection's life, before it closes the
    /// connection with GOAWAY `ENHANCE_YOUR_CALM`
    /// (`--max-h2-error-resets`).
    pub max_h2_error_resets: usize,
    /// Users one tenant may hold (`--max-users-per-tenant`); `None`: no bound.
    pub max_users_per_tenant: Option<NonZeroU64>,
    /// The memory kept for rendered presences (`--render-cache-bytes`);
    /// 0: none.
    pub render_cache_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            // Four times what the largest tokens Entra issues need, and
            // what common proxies accept by default.
            max_header_bytes: 16 * 1024,
            // 650 ids of the longest accepted id fit with room to spare.
            max_body_bytes: 128 * 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            max_streams: 10_000,
            // What Graph and most HTTP/2 servers (nginx, Go's) advertise,
            // and what RFC 9113 recommends as the least: a browser or an
            // SDK never needs more on one connection.
            max_h2_streams: 100,
            // The h2 library's own default, chosen against CVE-2023-44487:
            // a client that cancels requests does so after presenced has
            // started on them, so even a busy one rarely has more than a
            // few reset before they were started, while a flood has
            // thousands.
            max_h2_pending_resets: 20,
            // hyper's default against RUSTSEC-2024-0003: a client that
            // makes presenced reset a thousand of its streams is broken or
            // hostile; a well-behaved one makes it reset none.
            max_h2_error_resets: 1_024,
            max_users_per_tenant: None,
            // About two hundred thousand presences.
            render_cache_bytes: 128 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// `--header-timeout` as the standard library's duration.
    pub fn header_timeout(&self) -> std::time::Duration {
        std_duration(self.header_timeout)
    }

    /// `--body-timeout` as the standard library's duration.
    pub fn body_timeout(&self) -> std::time::Duration {
        std_duration(self.body_timeout)
    }

    /// `--send-timeout` as the standard library's duration.
    pub fn send_timeout(&self) -> std::time::Duration {
        std_duration(self.send_timeout)
    }
}

fn std_duration(duration: Duration) -> std::time::Duration {
    std::time::Duration::from_millis(duration.as_millis().max(1) as u64)
}

/// Why a client was refused, as the `kind` label of
/// `presenced_refusals_total`: a small fixed set, never a tenant, a user or
/// a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no valid token.
    Unauthorized,
    /// 403: the token does not allow it.
    Forbidden,
    /// 403 `quotaLimitReached`: the tenant holds `--max-users-per-tenant`.
    Quota,
    /// 408, or a connection closed because its head did not arrive in time
    /// or its client read nothing of a response in time.
    Timeout,
    /// 413: the body is larger than `--max-body-bytes`.
    TooLarge,
    /// 415: the body is not sent as JSON.
    UnsupportedMediaType,
    /// 429: throttled.
    Throttled,
    /// 431: the head is larger than `--max-header-bytes`.
    HeaderTooLarge,
    /// 503: the node holds `--max-streams` streams.
    StreamsFull,
    /// An HTTP/2 connection closed with GOAWAY `ENHANCE_YOUR_CALM`: its
    /// client reset more streams than `--max-h2-pending-resets` allows, or
    /// made presenced reset more than `--max-h2-error-resets`.
    TooManyResets,
    /// A new connection closed at once: `--max-connections` are open and
    /// none is idle.
    ConnectionRefused,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::Unauthorized,
        Refusal::Forbidden,
        Refusal::Quota,
        Refusal::Timeout,
        Refusal::TooLarge,
        Refusal::UnsupportedMediaType,
        Refusal::Throttled,
        Refusal::HeaderTooLarge,
        Refusal::StreamsFull,
        Refusal::TooManyResets,
        Refusal::ConnectionRefused,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::Quota => "quota",
            Refusal::Timeout => "timeout",
            Refusal::TooLarge => "too_large",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::Throttled => "throttled",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::StreamsFull => "streams_full",
            Refusal::TooManyResets => "too_many_resets",
            Refusal::ConnectionRefused => "connection_refused",
        }
    }

    /// The refusal an HTTP status stands for, when the status says it all.
    /// (A 403 for a quota and a 503 for full streams say it through the
    /// response's [`Refusal`] extension instead.)
    pub fn of_status(status: u16) -> Option<Refusal> {
        match status {
            401 => Some(Refusal::Unauthorized),
            403 => Some(Refusal::Forbidden),
            408 => Some(Refusal::Timeout),
            413 => Some(Refusal::TooLarge),
            415 => Some(Refusal::UnsupportedMediaType),
            429 => Some(Refusal::Throttled),
            431 => Some(Refusal::HeaderTooLarge),
            _ => None,
        }
    }
}

/// `presenced_refusals_total{kind}`, one handle per kind resolved once (a
/// refusal is cheap to count even when a client sends thousands).
#[derive(Clone, Debug)]
pub struct Refusals {
    counters: [metrics::Counter; Refusal::ALL.len()],
}

impl Refusals {
    /// Registers every kind, so that each series is there (at 0) from the
    /// start.
    pub fn register() -> Refusals {
        Refusals {
            counters: Refusal::ALL.map(
                |refusal| metrics::counter!("presenced_refusals_total", "kind" => refusal.label()),
            ),
        }
    }

    pub fn count(&self, refusal: Refusal) {
        let index = Refusal::ALL
            .iter()
            .position(|kind| *kind == refusal)
            .unwrap_or_default();
        self.counters[index].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_label() {
        let mut labels: Vec<&str> = Refusal::ALL.iter().map(|kind| kind.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }

    #[test]
    fn statuses_that_are_refusals_map_to_their_kind() {
        let table = [
            (401, Some(Refusal::Unauthorized)),
            (403, Some(Refusal::Forbidden)),
            (408, Some(Refusal::Timeout)),
            (413, Some(Refusal::TooLarge)),
            (415, Some(Refusal::UnsupportedMediaType)),
            (429, Some(Refusal::Throttled)),
            (431, Some(Refusal::HeaderTooLarge)),
            (200, None),
            (400, None),
            (404, None),
            (503, None),
        ];
        for (status, kind) in table {
            assert_eq!(Refusal::of_status(status), kind, "{status}");
        }
    }
}
