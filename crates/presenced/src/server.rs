//! The server as a function of its inputs: `run(listener, config, shutdown)`.
//! Tests and `main` call the same function; nothing here reads globals.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use presence_core::Timeouts;
use presence_store::{MemoryStore, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{ServeConfig, StoreKind};
use crate::clock::Clock;
use crate::http;
use crate::scheduler::Scheduler;
use crate::state::{AppState, Shared};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

fn open_store(config: &ServeConfig) -> Result<Arc<dyn Store>, ServeError> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreKind::Embedded => Err(ServeError::Config(
            "--store embedded is not available in this version yet; use --store memory".into(),
        )),
        StoreKind::Redis => Err(ServeError::Config(
            "--store redis is not available in this version yet; use --store memory".into(),
        )),
    }
}

/// Checks the settings that are dangerous together.
pub fn check_config(config: &ServeConfig) -> Result<(), ServeError> {
    if config.auth == crate::auth::AuthMode::None
        && !config.listen.ip().is_loopback()
        && !config.allow_insecure
    {
        return Err(ServeError::Config(format!(
            "--auth none on {} would let anyone on the network change presence; listen on a loopback address, or pass --allow-insecure",
            config.listen
        )));
    }
    Ok(())
}

/// Serves on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests and stops every task it started.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: CancellationToken,
    metrics: Option<PrometheusHandle>,
) -> Result<(), ServeError> {
    check_config(&config)?;
    if config.auth == crate::auth::AuthMode::None {
        tracing::warn!(
            "authentication is off (--auth none): every request is an application with every permission in tenant 'default'; use this for local development only"
        );
    }
    let store = open_store(&config)?;
    let clock = Arc::new(Clock::new(config.clock));
    let timeouts = Timeouts {
        idle: config.idle_timeout,
    };
    let scheduler = Arc::new(Scheduler::new());
    scheduler.load(store.as_ref(), clock.now()).await;
    let openapi = serde_json::to_vec(&http::openapi_document()).map_err(|error| {
        ServeError::Config(format!("cannot render the OpenAPI document: {error}"))
    })?;
    let state = AppState::new(Shared {
        store: store.clone(),
        scheduler: scheduler.clone(),
        clock: clock.clone(),
        timeouts,
        advancing: tokio::sync::Mutex::new(()),
        metrics,
        openapi: openapi.into(),
    });

    let tasks = TaskTracker::new();
    if !clock.is_manual() {
        tasks.spawn(scheduler.run(store, clock, timeouts, shutdown.clone()));
    }
    let address = listener.local_addr()?;
    tracing::info!(%address, store = ?config.store, clock = ?config.clock, "presenced started");
    let served = axum::serve(listener, http::app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    tracing::info!("presenced stopped");
    served.map_err(ServeError::Io)
}
