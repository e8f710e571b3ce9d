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
use presence_core::{Duration, Instant, Timeouts};
use presence_store::{DueIndex, Lease, RedisStore, Store, StoreError};

use crate::clock::system_now;
use crate::ownership::Ownership;

use crate::timeline::DueWork;

/// How many partitions [`Scheduler::process_due`] works at once.
const PARTITIONS_IN_FLIGHT: usize = 8;

/// How many due users are taken from the index at once.
const TAKE: usize = 4_096;

#[derive(Debug)]
pub struct Scheduler {
    store: Arc<dyn Store>,
    timeouts: Timeouts,
    leases: Leases,
}

/// The leases a scheduler works under.
#[derive(Debug)]
enum Leases {
    /// A single node's store: its one partition, granted forever.
    Forever(Lease),
    /// Many nodes (`--store redis`): the partitions this node owns now.
    Shared(Arc<Ownership>),
    /// Many nodes on the manual clock: the advance that runs the scheduler
    /// (serialized across nodes, and the only thing that ticks on the
    /// manual clock) works every partition under its current fencing
    /// token, whichever node holds its lease for the webhooks.
    OnDemand(RedisStore),
}

/// How often a scheduler of many nodes looks at its partitions' due
/// indexes, which other nodes fill too.
const SHARED_POLL: std::time::Duration = std::time::Duration::from_millis(250);

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
            leases: Leases::Forever(lease),
        })
    }

    /// A scheduler of one of many nodes, working the partitions `ownership`
    /// holds.
    pub fn shared(
        store: Arc<dyn Store>,
        timeouts: Timeouts,
        ownership: Arc<Ownership>,
    ) -> Scheduler {
        Scheduler {
            store,
            timeouts,
            leases: Leases::Shared(ownership),
        }
    }

    /// A scheduler of one of many nodes on the manual clock: it works every
    /// partition when an advance runs it.
    pub fn on_demand(store: Arc<dyn Store>, timeouts: Timeouts, redis: RedisStore) -> Scheduler {
        Scheduler {
            store,
            timeouts,
            leases: Leases::OnDemand(redis),
        }
    }

    /// The leases to work under now.
    async fn leases(&self) -> Vec<Lease> {
        match &self.leases {
            Leases::Forever(lease) => vec![lease.clone()],
            Leases::Shared(ownership) => ownership.leases(),
            Leases::OnDemand(redis) => {
                let mut leases = Vec::new();
                for partition in 0..redis.partitions() {
                    match redis.current_lease(partition).await {
                        Ok(lease) => leases.push(lease),
                        Err(error) => tracing::warn!(%error, "could not read a partition's lease"),
                    }
                }
                leases
            }
        }
    }

    fn lost(&self, lease: &Lease) {
        if let Leases::Shared(ownership) = &self.leases {
            ownership.lost(lease);
        }
    }

    /// Ticks every user due at or before `now`. Returns how many were ticked.
    ///
    /// The store ticks many at once (`Facts::tick_all`): a durable store commits
    /// the ticks that reach it together in one batch, so many users falling
    /// due at the same instant cost a few commits, not one each in turn.
    pub async fn process_due(&self, now: Instant) -> usize {
        use futures_util::StreamExt;
        let leases = self.leases().await;
        // Partitions are independent: a few are worked at once, so that
        // many users falling due together on many partitions (a networked
        // store's) overlap their round trips.
        let partitions: Vec<_> = leases
            .iter()
            .map(|lease| self.process_partition(lease, now))
            .collect();
        futures_util::stream::iter(partitions)
            .buffer_unordered(PARTITIONS_IN_FLIGHT)
            .fold(0, |ticked, more| async move { ticked + more })
            .await
    }

    async fn process_partition(&self, lease: &Lease, now: Instant) -> usize {
        let mut ticked = 0;
        loop {
            let due = match self.store.take_due(lease, now, TAKE).await {
                Ok(due) => due,
                Err(StoreError::Fenced(_)) => {
                    self.lost(lease);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not take the due users");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            let outcomes = self.store.tick_all(lease, &due, now, self.timeouts).await;
            let mut fenced = false;
            let mut retry = Vec::new();
            for (key, outcome) in due.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {}
                    Err(StoreError::Fenced(_)) => fenced = true,
                    Err(error) => {
                        tracing::warn!(%error, "a scheduled tick failed; retrying in a second");
                        retry.push(key.clone());
                    }
                }
            }
            if !retry.is_empty() {
                // What has ended is still hidden by the model, so a late
                // prune is only late reclaim.
                let at = now.saturating_add(Duration::from_secs(1));
                if let Err(error) = self.store.schedule(&retry, at).await {
                    tracing::warn!(%error, "could not file the retry of the ticks");
                }
            }
            metrics::counter!("presenced_scheduler_ticks_total").increment(due.len() as u64);
            ticked += due.len();
            if fenced {
                // A paused former owner: the new one does this work.
                self.lost(lease);
                break;
            }
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
        let partitions: Vec<u32> = match &self.leases {
            Leases::Forever(lease) => vec![lease.partition],
            Leases::Shared(ownership) => ownership
                .leases()
                .iter()
                .map(|lease| lease.partition)
                .collect(),
            Leases::OnDemand(_) => (0..self.store.partitions()).collect(),
        };
        let firsts = futures_util::future::join_all(
            partitions
                .iter()
                .map(|partition| self.store.next_due(*partition)),
        )
        .await;
        let mut earliest: Option<Instant> = None;
        for first in firsts {
            match first {
                Ok(Some(at)) => earliest = Some(earliest.map_or(at, |earliest| earliest.min(at))),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "could not read the due index"),
            }
        }
        if let (Leases::Shared(_), Some(at)) = (&self.leases, earliest) {
            // The scheduler lag: how far behind its instants this node's
            // partitions are ticked.
            let lag = system_now()
                .as_unix_millis()
                .saturating_sub(at.as_unix_millis());
            metrics::gauge!("presenced_scheduler_lag_seconds").set(lag.max(0) as f64 / 1_000.0);
        }
        earliest
    }

    async fn run_due(&self, now: Instant) {
        self.process_due(now).await;
    }

    async fn changed(&self) {
        match &self.leases {
            Leases::Forever(_) => self.store.earlier_entry().notified().await,
            // Other nodes file users in these partitions too, and the
            // partitions owned change: look again shortly.
            Leases::Shared(_) | Leases::OnDemand(_) => tokio::time::sleep(SHARED_POLL).await,
        }
    }
}
