//! Where presenced keeps each user's facts.
//!
//! Four seams, each a small trait with its own conformance suite
//! (`conformance/`) that every backend passes:
//! - [`Facts`]: atomic read-modify-write of one user's facts, reads of many;
//! - [`ChangeFeed`] (`feed.rs`): an ordered, resumable feed of visible
//!   changes, read by cursor;
//! - [`DueIndex`] (`due.rs`): each user's next transition, claimable by
//!   partition under a lease with a fencing token;
//! - [`Subscriptions`] (`subscriptions.rs`): subscriptions, acknowledgement
//!   marks and subscription timers, with no cross-key atomicity assumed.
//!
//! [`Store`] is all four together, which is what a backend implements. The
//! traits are shaped so that a networked backend can implement them too:
//! every change is one atomic read-modify-write of one user's facts,
//! expressed as a [`Command`] that the backend applies with
//! [`presence_core::apply`] (Redis does the same around one
//! compare-and-set script), reads hand the facts to a visitor instead of
//! returning references into the store, and nothing is called back inside a
//! backend's atomic section.
//!
//! Backends: [`memory`] (facts in sharded maps, nothing on disk) and
//! [`embedded`] (the default: the same maps as the read side, and an
//! embedded LSM engine on local disk as the log of record, written with
//! group commit). [`record`] holds the frozen, versioned formats of
//! everything written to disk.
//!
//! Architecture invariant: stores know nothing about HTTP or clocks; `now`
//! always comes from the caller. The only JSON here is the frozen format of
//! the notifier's subscription records ([`record::subscription`]).

use std::num::NonZeroU64;
use std::path::PathBuf;

use async_trait::async_trait;
use presence_core::{
    Applied, Command, CommandError, Instant, TenantId, Timeouts, UserFacts, UserId, UserKey,
};

pub mod due;
pub mod embedded;
pub mod feed;
pub mod memory;
pub mod record;
pub mod redis;
pub mod subscriptions;

#[cfg(test)]
mod conformance;

pub use due::{DueIndex, Lease, LocalDueIndex};
pub use embedded::{Durability, EmbeddedStore};
pub use feed::{Change, ChangeFeed, Cursor, Following, LocalFeed, Position};
pub use memory::MemoryStore;
pub use redis::{RedisDurability, RedisOptions, RedisStore};
pub use subscriptions::{Mark, RecordWrite, Subscriptions};

/// Runs `work`, at most `at_once` at a time, and answers each one's output
/// in the order given. (The futures are collected before they are run: a
/// stream mapping borrowed items inside an `async_trait` method trips the
/// compiler's higher-ranked lifetime check.)
pub(crate) async fn in_order<F: std::future::Future>(
    work: Vec<F>,
    at_once: usize,
) -> Vec<F::Output> {
    use futures_util::StreamExt;
    futures_util::stream::iter(work)
        .buffered(at_once)
        .collect()
        .await
}

/// How many ticks [`Facts::tick_all`] runs at once.
pub const TICKS_IN_FLIGHT: usize = 256;

/// A failure of the store itself, as opposed to a refused command. The
/// messages are for operators: each says what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes (or reads) right now; retrying later may work.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Another process has the data directory open.
    #[error(
        "another presenced is using the data directory {} (it holds the lock on {}); stop it first, or give this one another --data-dir",
        dir.display(),
        lock.display()
    )]
    Locked { dir: PathBuf, lock: PathBuf },
    /// The directory was written by a newer presenced; it is left untouched.
    #[error(
        "the data directory {} was written by a newer presenced (store format {found}; this presenced reads format {supported} and older). Run a presenced at least as new as the one that wrote it, or give this one another --data-dir; the directory was left as it is",
        dir.display()
    )]
    NewerFormat {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A data file cannot be read.
    #[error(
        "the data in {} is damaged: {problem}. Nothing was changed. Restore the data directory {} from a backup, or move it aside to start with an empty store; `presenced check --data-dir {}` verifies a directory without serving it",
        file.display(),
        dir.display(),
        dir.display()
    )]
    Damaged {
        dir: PathBuf,
        file: PathBuf,
        problem: String,
    },
    /// Time-driven work was attempted under a lease that another node has
    /// since taken over (its fencing token is older than the partition's).
    #[error("refused by fencing: {0}")]
    Fenced(String),
    /// The directory cannot be created, opened or read.
    #[error("cannot use the data directory {}: {problem}", dir.display())]
    Io { dir: PathBuf, problem: String },
}

/// What [`Facts::read_memos`] calls for each key: its index, its facts and
/// its memo.
pub type VisitMemo<'v> =
    dyn for<'f> FnMut(usize, Option<&'f UserFacts>, Option<&'f mut Memo>) + Send + 'v;

/// What a reader made of one user's facts, kept beside them in the store's
/// memory: presenced keeps a user's rendered presence here, so that reading
/// it again is the one lookup that finds the facts, not a second table's.
///
/// The store drops a user's memo whenever it applies a command to the user
/// (a tick included) or loads their facts, under the lock that guards them,
/// so a memo is never older than the facts beside it. What else limits how
/// long a memo holds (a rendering stops at the user's next transition) is
/// the reader's to check. A store that keeps no facts in memory keeps no
/// memos ([`Facts::read_memos`] hands out none). What a memo holds is the
/// reader's type ([`Memorable`]), so that the store knows nothing of what
/// is made of its facts.
#[derive(Default)]
pub struct Memo(Option<Box<dyn Memorable>>);

/// What a [`Memo`] keeps: the reader's own type, which can say what of it
/// the reader will touch.
pub trait Memorable: std::any::Any + Send + Sync {
    /// Loads what a reader of this memo touches, so that it is in the cache
    /// when the reader comes: a read of many keys warms all their memos
    /// before it visits the first, and the loads of different keys wait
    /// for memory at the same time rather than one after the other. Loads
    /// only; nothing is changed. By default, nothing.
    fn warm(&self) {}
}

impl Memo {
    /// What is kept, if it is a `T`.
    pub fn get_mut<T: Memorable>(&mut self) -> Option<&mut T> {
        self.0
            .as_mut()
            .and_then(|kept| (&mut **kept as &mut dyn std::any::Any).downcast_mut())
    }

    /// Keeps `value`, dropping what was kept.
    pub fn set<T: Memorable>(&mut self, value: T) {
        self.0 = Some(Box::new(value));
    }

    /// Loads what is kept and what it says its reader will touch
    /// ([`Memorable::warm`]).
    pub fn warm(&self) {
        if let Some(kept) = &self.0 {
            kept.warm();
        }
    }

    /// Drops what is kept.
    pub fn clear(&mut self) {
        self.0 = None;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.is_some() {
            "Memo(kept)"
        } else {
            "Memo(empty)"
        })
    }
}

/// Counts for metrics. They may lag a little behind concurrent writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Users holding at least one fact.
    pub users: u64,
    /// Sessions held (including ones that have ended but are not pruned yet).
    pub sessions: u64,
}

/// Users' facts: atomic read-modify-write of one user, reads of many.
///
/// A backend's `apply` also does, in the same atomic step, what the other
/// parts need to know of the change: it appends to the [`ChangeFeed`] when
/// the user's sequence number moves, and files the user's next transition
/// in the [`DueIndex`] when it is earlier than the one already filed.
#[async_trait]
pub trait Facts: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `command` to the facts of `key` at `now`, atomically: either the
    /// whole change is made and durable, or nothing is. A refused command
    /// (`Ok(Err(_))`) changes nothing.
    async fn apply(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Applied, CommandError>, StoreError>;

    /// [`Facts::apply`] as time-driven work under a partition's lease: a
    /// networked backend refuses it ([`StoreError::Fenced`]) once another
    /// node has taken the partition over. A single node's store holds its
    /// one lease forever and applies it as any command.
    async fn apply_under(
        &self,
        lease: &Lease,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Applied, CommandError>, StoreError> {
        let _ = lease;
        self.apply(key, command, now, timeouts).await
    }

    /// Ticks every user of `keys` (all of the lease's partition, as
    /// [`DueIndex::take_due`] hands them out) at `now` under `lease`, and
    /// answers each tick's outcome in order. Up to [`TICKS_IN_FLIGHT`] run at
    /// once, so that a durable store commits the ticks that reach it
    /// together; a networked backend may batch them into fewer round trips.
    async fn tick_all(
        &self,
        lease: &Lease,
        keys: &[UserKey],
        now: Instant,
        timeouts: Timeouts,
    ) -> Vec<Result<(), StoreError>> {
        let ticks: Vec<_> = keys
            .iter()
            .map(|key| async move {
                // A memory store's tick never waits, so without this a
                // hundred thousand ticks would hold the worker, and the
                // notifier they wake, until the last one.
                tokio::task::consume_budget().await;
                match self
                    .apply_under(lease, key, &Command::Tick, now, timeouts)
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(refused)) => {
                        // The model never refuses a tick; if it ever did,
                        // nothing was changed and nothing is to retry.
                        tracing::error!(error = %refused, "the store refused a tick");
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            })
            .collect();
        in_order(ticks, TICKS_IN_FLIGHT).await
    }

    /// Calls `visit` once for each key, with the key's index in `keys` and
    /// its facts (`None` for a user nothing is held for), in an order of
    /// the store's choosing: the memory store reads a shard at a time.
    async fn read(
        &self,
        keys: &[UserKey],
        visit: &mut (dyn for<'f> FnMut(usize, Option<&'f UserFacts>) + Send),
    ) -> Result<(), StoreError>;

    /// [`Facts::read`], with each user's [`Memo`], which `visit` may fill.
    /// The memo is `None` where none is kept: for a user nothing is held
    /// for, and in a store that keeps no facts in memory (as here), so
    /// that a reader makes one only where it will be kept.
    async fn read_memos(
        &self,
        keys: &[UserKey],
        visit: &mut VisitMemo<'_>,
    ) -> Result<(), StoreError> {
        self.read(keys, &mut |index, facts| visit(index, facts, None))
            .await
    }

    /// Calls `visit` with every user's facts (start-up and recovery).
    async fn scan(
        &self,
        visit: &mut (dyn for<'f> FnMut(&'f UserKey, &'f UserFacts) + Send),
    ) -> Result<(), StoreError>;

    /// Calls `visit` with the facts of every user of one tenant, through a
    /// per-tenant index (never a scan of every user).
    async fn scan_tenant(
        &self,
        tenant: &TenantId,
        visit: &mut (dyn for<'f> FnMut(&'f UserId, &'f UserFacts) + Send),
    ) -> Result<(), StoreError>;

    fn counts(&self) -> StoreCounts;

    /// Bounds, from now on, the users each tenant may hold (`None`: no
    /// bound): [`Facts::apply`] refuses a command that would add a user to
    /// a tenant at the bound ([`CommandError::TenantFull`]) and writes
    /// nothing; the users held go on being written. A user counts once it
    /// is written, Offline included (its record keeps its sequence number),
    /// so that the bound holds what the store keeps. A command the model
    /// refuses is refused as such first, and counts nobody.
    fn limit_users_per_tenant(&self, limit: Option<NonZeroU64>);
}

/// Implements [`ChangeFeed`] and [`DueIndex`] for a backend by handing every
/// call to the in-process feed and due index it holds (`feed` and `due` pick
/// them out of the backend): the memory and embedded stores share
/// [`LocalFeed`] and [`LocalDueIndex`], and only their other seams differ.
macro_rules! forward_feed_and_due {
    ($backend:ty, |$store:ident| $feed:expr, |$store2:ident| $due:expr) => {
        #[async_trait::async_trait]
        impl $crate::ChangeFeed for $backend {
            fn follow(&self) -> $crate::Following {
                let $store = self;
                $crate::ChangeFeed::follow($feed)
            }

            async fn head(&self) -> Result<$crate::Cursor, $crate::StoreError> {
                let $store = self;
                $crate::ChangeFeed::head($feed).await
            }

            async fn read_after(
                &self,
                cursor: &$crate::Cursor,
                limit: usize,
            ) -> Result<Option<Vec<$crate::Change>>, $crate::StoreError> {
                let $store = self;
                $crate::ChangeFeed::read_after($feed, cursor, limit).await
            }

            async fn wait_after(&self, cursor: &$crate::Cursor) {
                let $store = self;
                $crate::ChangeFeed::wait_after($feed, cursor).await;
            }
        }

        #[async_trait::async_trait]
        impl $crate::DueIndex for $backend {
            fn partitions(&self) -> u32 {
                let $store2 = self;
                $crate::DueIndex::partitions($due)
            }

            async fn lease(
                &self,
                partition: u32,
                node: &str,
                now: presence_core::Instant,
                until: presence_core::Instant,
            ) -> Result<Option<$crate::Lease>, $crate::StoreError> {
                let $store2 = self;
                $crate::DueIndex::lease($due, partition, node, now, until).await
            }

            async fn schedule(
                &self,
                keys: &[presence_core::UserKey],
                at: presence_core::Instant,
            ) -> Result<(), $crate::StoreError> {
                let $store2 = self;
                $crate::DueIndex::schedule($due, keys, at).await
            }

            async fn next_due(
                &self,
                partition: u32,
            ) -> Result<Option<presence_core::Instant>, $crate::StoreError> {
                let $store2 = self;
                $crate::DueIndex::next_due($due, partition).await
            }

            async fn take_due(
                &self,
                lease: &$crate::Lease,
                now: presence_core::Instant,
                limit: usize,
            ) -> Result<Vec<presence_core::UserKey>, $crate::StoreError> {
                let $store2 = self;
                $crate::DueIndex::take_due($due, lease, now, limit).await
            }

            fn earlier_entry(&self) -> &tokio::sync::Notify {
                let $store2 = self;
                $crate::DueIndex::earlier_entry($due)
            }

            fn pending(&self) -> usize {
                let $store2 = self;
                $crate::DueIndex::pending($due)
            }
        }
    };
}
pub(crate) use forward_feed_and_due;

/// Everything a backend provides: the four seams, implemented together
/// because `apply` feeds the change feed and the due index atomically.
pub trait Store: Facts + ChangeFeed + DueIndex + Subscriptions {}

impl<T: Facts + ChangeFeed + DueIndex + Subscriptions> Store for T {}
