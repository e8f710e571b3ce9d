//! What every handler shares: the presence service, the timeline, the
//! notifier and the settings. Built once by `server::run`; no globals.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;
use presence_core::Timeouts;

use crate::clock::Clock;
use crate::service::PresenceService;
use crate::timeline::Timeline;

#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    /// Reads and commands: what every edge calls.
    pub service: Arc<PresenceService>,
    pub clock: Arc<Clock>,
    pub timeouts: Timeouts,
    /// The one due-time engine, once the store is loaded (the manual
    /// clock's advance walks it).
    pub timeline: OnceLock<Arc<Timeline>>,
    /// Renders `/metrics`; `None` when no recorder was installed.
    pub metrics: Option<PrometheusHandle>,
    /// The OpenAPI document, rendered once at start.
    pub openapi: bytes::Bytes,
    /// Turns each request's token into a principal.
    pub auth: Arc<crate::auth::Authenticator>,
    /// The throttling limits, checked where the caller is known.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// `http` or `https`, for the addresses presenced writes about itself.
    pub scheme: &'static str,
    /// Subscriptions, webhook delivery and the live stream.
    pub notifier: Arc<crate::notify::Notifier>,
    /// With `--store redis`, once connected: readiness, the shared manual
    /// clock.
    pub redis: OnceLock<presence_store::RedisStore>,
    /// Set at once when the server is asked to stop: `/readyz` answers 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// The bounds on what clients may hold.
    pub limits: crate::limits::Limits,
    /// One permit per live stream that may open (`--max-streams`).
    pub streams: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

/// What the JSON body extractor needs of the state: the body's bounds.
impl axum::extract::FromRef<AppState> for crate::limits::Limits {
    fn from_ref(state: &AppState) -> crate::limits::Limits {
        state.limits
    }
}
