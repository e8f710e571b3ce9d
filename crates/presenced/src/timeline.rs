//! The one due-time engine. Everything presenced does at an instant (ticks
//! of users whose facts change by themselves, subscriptions' lifecycle
//! timers) is a [`DueWork`] client of one [`Timeline`], which runs them on
//! the system clock, or, under `--clock manual`, walks their due instants
//! in order when the clock is advanced.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::select_all;
use presence_core::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// Work that falls due at instants.
#[async_trait]
pub trait DueWork: Send + Sync + std::fmt::Debug {
    /// The earliest instant something is due.
    async fn next_due(&self) -> Option<Instant>;

    /// Does everything due at or before `now`.
    async fn run_due(&self, now: Instant);

    /// Resolves when something earlier than [`DueWork::next_due`] answered
    /// may have arrived.
    async fn changed(&self);
}

/// How long the system-clock loop sleeps with nothing due, before looking
/// again (a networked backend's due index may be filled by other nodes).
const IDLE_LOOK: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug)]
pub struct Timeline {
    clients: Vec<Arc<dyn DueWork>>,
    /// Serializes manual advances, so that each one fires everything due in
    /// its span in order before the next starts. A tokio `Mutex` because it
    /// is held across the clients' awaits.
    advancing: tokio::sync::Mutex<()>,
}

impl Timeline {
    pub fn new(clients: Vec<Arc<dyn DueWork>>) -> Timeline {
        Timeline {
            clients,
            advancing: tokio::sync::Mutex::new(()),
        }
    }

    /// The earliest instant any client has something due.
    pub async fn next_due(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        for client in &self.clients {
            if let Some(at) = client.next_due().await {
                earliest = Some(earliest.map_or(at, |earliest| earliest.min(at)));
            }
        }
        earliest
    }

    /// Runs every client's work due at or before `now`, in client order.
    pub async fn run_due(&self, now: Instant) {
        for client in &self.clients {
            client.run_due(now).await;
        }
    }

    /// Moves the manual clock to `target` through every due instant in
    /// order: at each, the clock reads that instant while what is due then
    /// runs, users' transitions and subscription timers merged.
    pub async fn advance(&self, clock: &Clock, target: Instant) {
        let _advancing = self.advancing.lock().await;
        while let Some(due) = self.next_due().await.filter(|due| *due <= target) {
            let at = due.max(clock.now());
            clock.set_manual(at);
            self.run_due(at).await;
        }
        clock.set_manual(target);
    }

    /// Runs on the system clock until `shutdown`: sleeps until the next due
    /// instant (or until a client says something earlier arrived), then
    /// runs what is due. `server::run` spawns it as the long-lived task
    /// "timeline", which reports how it ended.
    pub async fn run(self: Arc<Timeline>, clock: Arc<Clock>, shutdown: CancellationToken) {
        loop {
            let changed = select_all(self.clients.iter().map(|client| client.changed()));
            let sleep = match self.next_due().await {
                Some(at) => clock.until(at),
                None => IDLE_LOOK,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = changed => continue,
                () = tokio::time::sleep(sleep) => {}
            }
            self.run_due(clock.now()).await;
        }
    }
}
