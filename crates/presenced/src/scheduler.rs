//! Acts on time: at each user's next transition (a fade, an expiry) it sends
//! the store a `Tick`, which prunes what has ended, so that memory stays flat
//! for users who stop calling. It is also where changes caused by time become
//! visible changes (in the change feed), which is what change notifications
//! hang off.
//!
//! The store keeps the due index (`presence_store::DueIndex`) and files each
//! user's next transition as part of every command; the scheduler is the
//! [`DueWork`] client of the timeline that takes due users from it under
//! the partition's lease and ticks them.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use presence_core::{Command, Duration, Instant, Timeouts};
use presence_store::{Lease, Store};

use crate::timeline::DueWork;

/// How many ticks [`Scheduler::run_due`] runs at once.
const TICKS_IN_FLIGHT: usize = 256;

/// How many due users are taken from the index at once.
const TAKE: usize = 4_096;

#[derive(Debug)]
pub struct Scheduler {
    store: Arc<dyn Store>,
    timeouts: Timeouts,
    /// The lease on the store's partition. A single node's store has one
    /// partition and grants it forever.
    lease: Lease,
}

impl Scheduler {
    /// A scheduler for a loaded store; `None` if the store would not lease
    /// its partition to this process.
    pub async fn new(store: Arc<dyn Store>, timeouts: Timeouts, now: Instant) -> Option<Scheduler> {
        let forever = Instant::from_unix_millis(i64::MAX);
        let lease = match store.lease(0, "local", now, forever).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(%error, "could not lease the due index");
                return None;
            }
        };
        Some(Scheduler {
            store,
            timeouts,
            lease,
        })
    }

    /// Ticks every user due at or before `now`. Returns how many were ticked.
    ///
    /// Up to [`TICKS_IN_FLIGHT`] ticks run at once: a durable store commits
    /// the ticks that reach it together in one batch, so many users falling
    /// due at the same instant cost a few commits, not one each in turn.
    pub async fn process_due(&self, now: Instant) -> usize {
        let mut ticked = 0;
        loop {
            let due = match self.store.take_due(&self.lease, now, TAKE).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "could not take the due users");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            let store = self.store.as_ref();
            futures_util::stream::iter(&due)
                .for_each_concurrent(TICKS_IN_FLIGHT, |key| async move {
                    // A memory store's tick never waits, so without this a
                    // hundred thousand ticks would hold the worker, and the
                    // notifier they wake, until the last one.
                    tokio::task::consume_budget().await;
                    match store.apply(key, &Command::Tick, now, self.timeouts).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(refused)) => {
                            tracing::error!(error = %refused, "the store refused a tick");
                        }
                        Err(error) => {
                            // Try again shortly: what has ended is still hidden
                            // by the model, so a late prune is only late reclaim.
                            tracing::warn!(%error, "a scheduled tick failed; retrying in a second");
                            let retry = now.saturating_add(Duration::from_secs(1));
                            if let Err(error) =
                                store.schedule(std::slice::from_ref(key), retry).await
                            {
                                tracing::warn!(%error, "could not file the retry of a tick");
                            }
                        }
                    }
                })
                .await;
            metrics::counter!("presenced_scheduler_ticks_total").increment(due.len() as u64);
            ticked += due.len();
        }
        ticked
    }

    /// Files every user the store holds (start-up) for a tick at `now`,
    /// which prunes what ended while presenced was down and files the
    /// user's next transition.
    pub async fn load(&self, now: Instant) {
        let mut keys = Vec::new();
        if let Err(error) = self.store.scan(&mut |key, _| keys.push(key.clone())).await {
            tracing::error!(%error, "could not scan the store to schedule its users");
        }
        if let Err(error) = self.store.schedule(&keys, now).await {
            tracing::error!(%error, "could not schedule the stored users");
        }
    }
}

#[async_trait]
impl DueWork for Scheduler {
    async fn next_due(&self) -> Option<Instant> {
        self.store
            .next_due(self.lease.partition)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "could not read the due index");
                None
            })
    }

    async fn run_due(&self, now: Instant) {
        self.process_due(now).await;
    }

    async fn changed(&self) {
        self.store.earlier_entry().notified().await;
    }
}
