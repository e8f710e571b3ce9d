//! What every handler shares: the store, the scheduler, the clock and the
//! settings. Built once by `server::run`; no globals.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use presence_core::{Command, CommandError, Timeouts, UserKey};
use presence_store::{Outcome, Store};

use crate::clock::Clock;
use crate::http::error::ApiError;
use crate::scheduler::Scheduler;

#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub scheduler: Arc<Scheduler>,
    pub clock: Arc<Clock>,
    pub timeouts: Timeouts,
    /// Serializes manual clock advances, so that each one fires everything
    /// due in its span in order before the next starts. A tokio `Mutex`
    /// because it is held across the store's awaits.
    pub advancing: tokio::sync::Mutex<()>,
    /// Renders `/metrics`; `None` when no recorder was installed.
    pub metrics: Option<PrometheusHandle>,
    /// The OpenAPI document, rendered once at start.
    pub openapi: bytes::Bytes,
    /// Turns each request's token into a principal.
    pub auth: Arc<crate::auth::Authenticator>,
    /// `http` or `https`, for the addresses presenced writes about itself.
    pub scheme: &'static str,
    /// Subscriptions, webhook delivery and the live stream.
    pub notifier: Arc<crate::notify::Notifier>,
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

    /// Applies a command to one user at the clock's now, and schedules the
    /// user's next transition.
    pub async fn apply(&self, key: &UserKey, command: Command) -> Result<Outcome, ApiError> {
        let now = self.clock.now();
        match self.store.apply(key, &command, now, self.timeouts).await? {
            Ok(outcome) => {
                self.scheduler.schedule(key, outcome.schedule_at);
                Ok(outcome)
            }
            Err(CommandError::SessionNotFound(id)) => Err(ApiError::NotFound(format!(
                "The user has no presence session '{id}'; it was never set, was cleared, or has expired."
            ))),
            Err(refused @ CommandError::TooManySessions) => {
                Err(ApiError::InvalidArgument(format!("{refused}.")))
            }
        }
    }
}
