//! Where presenced keeps each user's facts.
//!
//! One [`Store`] trait, implemented once per backend (one module each), and
//! one conformance suite (`conformance`) that every backend must pass. The
//! trait is shaped so that a networked backend can implement it too: every
//! change is one atomic read-modify-write of one user's facts, expressed as a
//! [`Command`] that the backend applies with [`presence_core::apply`] (Redis
//! will do the same inside one script), and reads hand the facts to a visitor
//! instead of returning references into the store.
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

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use presence_core::{Applied, Command, CommandError, Instant, Timeouts, UserFacts, UserKey};

pub mod embedded;
pub mod memory;
pub mod record;

#[cfg(test)]
mod conformance;

pub use embedded::{Durability, EmbeddedStore};
pub use memory::MemoryStore;

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
    /// The directory cannot be created, opened or read.
    #[error("cannot use the data directory {}: {problem}", dir.display())]
    Io { dir: PathBuf, problem: String },
}

/// What one applied command did, as seen from inside the atomic update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Applied,
    /// When the scheduler must tick this user, if it is not already due to:
    /// the user's next transition (a fade, an expiry), unless a tick at or
    /// before it is already scheduled. The store keeps that bookkeeping so
    /// that the scheduler holds each user about once.
    pub schedule_at: Option<Instant>,
}

/// Counts for metrics. They may lag a little behind concurrent writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Users holding at least one fact.
    pub users: u64,
    /// Sessions held (including ones that have ended but are not pruned yet).
    pub sessions: u64,
}

/// A place to keep users' facts.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `command` to the facts of `key` at `now`, atomically: either the
    /// whole change is made and durable, or nothing is. A refused command
    /// (`Ok(Err(_))`) changes nothing.
    async fn apply(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Outcome, CommandError>, StoreError>;

    /// Calls `visit` with the facts of each key, in order (`None` for a user
    /// nothing is held for).
    async fn read(
        &self,
        keys: &[UserKey],
        visit: &mut (dyn for<'f> FnMut(usize, Option<&'f UserFacts>) + Send),
    ) -> Result<(), StoreError>;

    /// Calls `visit` with every user's facts (start-up and recovery).
    async fn scan(
        &self,
        visit: &mut (dyn for<'f> FnMut(&'f UserKey, &'f UserFacts) + Send),
    ) -> Result<(), StoreError>;

    fn counts(&self) -> StoreCounts;

    /// Writes records beside the users' facts (the notifier's subscriptions
    /// and delivery marks): opaque bytes by key, `None` deleting. All of
    /// `writes` land together or not at all. `durable` waits for a sync (in
    /// a backend that has one) before answering.
    async fn put_records(&self, writes: Vec<RecordWrite>, durable: bool) -> Result<(), StoreError>;

    /// Calls `visit` with every record whose key starts with `prefix`, in
    /// key order.
    async fn scan_records(
        &self,
        prefix: &[u8],
        visit: &mut (dyn for<'r> FnMut(&'r [u8], &'r [u8]) + Send),
    ) -> Result<(), StoreError>;

    /// Installs the one observer told of every visible change (see
    /// [`ChangeObserver`]). A second call is ignored.
    fn observe(&self, observer: Arc<dyn ChangeObserver>);
}

/// One record to put (`Some`) or delete (`None`) with [`Store::put_records`].
pub type RecordWrite = (Vec<u8>, Option<Vec<u8>>);

/// Told of every change to a user's sequence number, which is every change
/// of what is shown: caused by a command, or by time and folded in by a
/// tick. It is called inside the user's atomic section, after the change is
/// durable, with the facts as they now are; so calls for one user come in
/// the order of the changes, never two at once. It must be quick and must
/// not call back into the store.
pub trait ChangeObserver: Send + Sync + std::fmt::Debug {
    fn changed(&self, key: &UserKey, facts: &UserFacts, now: Instant);
}
