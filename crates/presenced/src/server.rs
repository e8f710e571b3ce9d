//! The server as a function of its inputs: `run(listener, config, shutdown)`.
//! Tests and `main` call the same function; nothing here reads globals.
//!
//! HTTP is served from the first moment, while the store is still being
//! read back from disk: until it is, `/healthz` answers, and `/readyz` and
//! every other request answer 503 (the [`StartingStore`] stands in for the
//! store), so that a load balancer or a test can tell starting from stuck.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use metrics_exporter_prometheus::PrometheusHandle;
use presence_core::{Command, CommandError, Instant, Timeouts, UserFacts, UserKey};
use presence_store::{
    Durability, EmbeddedStore, MemoryStore, Outcome, Store, StoreCounts, StoreError,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{DurabilityMode, ServeConfig, StoreKind};
use crate::clock::Clock;
use crate::http;
use crate::scheduler::Scheduler;
use crate::state::{AppState, Shared};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the configured store; reading an embedded store back from disk
/// blocks, so it runs on a blocking thread.
async fn open_store(config: &ServeConfig) -> Result<Arc<dyn Store>, ServeError> {
    match config.store {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreKind::Embedded => {
            let dir = config.data_dir.clone();
            let durability = match config.durability {
                DurabilityMode::Strict => Durability::Strict,
                DurabilityMode::Relaxed => Durability::Relaxed,
            };
            let started = std::time::Instant::now();
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, durability))
                .await
                .map_err(|error| {
                    ServeError::Config(format!("opening the embedded store stopped: {error}"))
                })??;
            tracing::info!(
                dir = %config.data_dir.display(),
                ?durability,
                users = store.counts().users,
                seconds = started.elapsed().as_secs_f64(),
                "the embedded store is loaded"
            );
            Ok(Arc::new(store))
        }
        StoreKind::Redis => Err(ServeError::Config(
            "--store redis is not available in this version yet; use --store embedded or --store memory".into(),
        )),
    }
}

/// The store as handlers see it: unavailable (503) until the real one is
/// loaded, then a plain pass-through to it.
#[derive(Debug, Default)]
pub struct StartingStore {
    loaded: OnceLock<Arc<dyn Store>>,
}

impl StartingStore {
    fn loaded(&self) -> Result<&Arc<dyn Store>, StoreError> {
        self.loaded
            .get()
            .ok_or_else(|| StoreError::Unavailable("presenced is still loading its store".into()))
    }
}

#[async_trait]
impl Store for StartingStore {
    async fn apply(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Outcome, CommandError>, StoreError> {
        self.loaded()?.apply(key, command, now, timeouts).await
    }

    async fn read(
        &self,
        keys: &[UserKey],
        visit: &mut (dyn for<'f> FnMut(usize, Option<&'f UserFacts>) + Send),
    ) -> Result<(), StoreError> {
        self.loaded()?.read(keys, visit).await
    }

    async fn scan(
        &self,
        visit: &mut (dyn for<'f> FnMut(&'f UserKey, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        self.loaded()?.scan(visit).await
    }

    fn counts(&self) -> StoreCounts {
        self.loaded
            .get()
            .map_or_else(StoreCounts::default, |store| store.counts())
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
    let starting = Arc::new(StartingStore::default());
    let clock = Arc::new(Clock::new(config.clock));
    let timeouts = Timeouts {
        idle: config.idle_timeout,
    };
    let scheduler = Arc::new(Scheduler::new());
    let openapi = serde_json::to_vec(&http::openapi_document()).map_err(|error| {
        ServeError::Config(format!("cannot render the OpenAPI document: {error}"))
    })?;
    let state = AppState::new(Shared {
        store: starting.clone(),
        scheduler: scheduler.clone(),
        clock: clock.clone(),
        timeouts,
        advancing: tokio::sync::Mutex::new(()),
        metrics,
        openapi: openapi.into(),
    });

    let tasks = TaskTracker::new();
    let address = listener.local_addr()?;
    let serving = tokio::spawn(
        axum::serve(listener, http::app(state))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let loaded = match open_store(&config).await {
        Ok(store) => store,
        Err(error) => {
            shutdown.cancel();
            let _ = serving.await;
            return Err(error);
        }
    };
    // Every stored user is ticked once, at once: what fell due while
    // presenced was down is applied as if it had been running.
    scheduler.load(loaded.as_ref(), clock.now()).await;
    if !clock.is_manual() {
        tasks.spawn(scheduler.clone().run(
            loaded.clone(),
            clock.clone(),
            timeouts,
            shutdown.clone(),
        ));
    }
    if starting.loaded.set(loaded).is_err() {
        return Err(ServeError::Config("the store was loaded twice".into()));
    }
    tracing::info!(%address, store = ?config.store, clock = ?config.clock, "presenced started");
    let served = serving.await.map_err(|error| {
        ServeError::Config(format!("the HTTP server stopped abnormally: {error}"))
    })?;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    // Dropping the last handle on the store stops its writer after a final
    // sync (what --durability relaxed may still hold).
    drop(starting);
    tracing::info!("presenced stopped");
    served.map_err(ServeError::Io)
}
