//! The subscription repository: change-notification subscriptions, what
//! each receiver has acknowledged (marks), and the subscriptions' timers.
//!
//! Nothing here is atomic across keys: a subscription, its marks and its
//! timer are written separately, as a networked backend spread over many
//! slots would write them, and the notifier is written to be right in any
//! order of their landing (a mark without its subscription is an orphan,
//! deleted at the next start; a subscription without marks notifies each
//! user once more).
//!
//! A subscription is stored as opaque bytes (its record format is the
//! notifier's); a mark is the sequence number of the last presence of one
//! user that the receiver acknowledged.
//!
//! The memory and embedded stores keep subscriptions and marks as records
//! beside the facts (`s/{id}` and `m/{id}/{user}`), and their timers in
//! memory only: a timer is derived from its subscription, and the notifier
//! sets them again when it reads the subscriptions back at start.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use presence_core::{Instant, UserId};

use crate::StoreError;

/// What a receiver acknowledged for one user of one subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub subscription: String,
    pub user: UserId,
    pub sequence: u64,
}

#[async_trait]
pub trait Subscriptions: Send + Sync + std::fmt::Debug + 'static {
    /// Puts a subscription's record, durably (synced where the backend syncs).
    async fn put_subscription(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError>;

    /// Deletes a subscription, its marks and its timer.
    async fn delete_subscription(&self, id: &str) -> Result<(), StoreError>;

    /// Every subscription's id and record, in id order.
    async fn subscriptions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// A number that changes whenever a subscription is put or deleted, so
    /// that a node caching them knows when another node changed them. A
    /// single node's store is only changed by its own node: always 0.
    async fn subscriptions_version(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Records marks. Not synced: a lost mark only makes a restart notify
    /// its user once more.
    async fn put_marks(&self, marks: &[Mark]) -> Result<(), StoreError>;

    /// Deletes the marks of `subscription` for `users` (orphans).
    async fn delete_marks(&self, subscription: &str, users: &[UserId]) -> Result<(), StoreError>;

    /// Every mark, in (subscription, user) order.
    async fn marks(&self) -> Result<Vec<Mark>, StoreError>;

    /// Sets (or moves) the subscription's one timer to `at`.
    async fn set_timer(&self, id: &str, at: Instant) -> Result<(), StoreError>;

    /// The earliest timer.
    async fn next_timer(&self) -> Result<Option<Instant>, StoreError>;

    /// Removes and returns the timers due at or before `now`, earliest first.
    async fn take_due_timers(&self, now: Instant) -> Result<Vec<(Instant, String)>, StoreError>;
}

/// A record put (`Some`) or deleted (`None`) in a store's records keyspace.
pub type RecordWrite = (Vec<u8>, Option<Vec<u8>>);

pub fn subscription_key(id: &str) -> Vec<u8> {
    format!("s/{id}").into_bytes()
}

pub fn mark_prefix(id: &str) -> Vec<u8> {
    format!("m/{id}/").into_bytes()
}

pub fn mark_key(id: &str, user: &UserId) -> Vec<u8> {
    format!("m/{id}/{}", user.as_str()).into_bytes()
}

pub use crate::record::subscription::encode_mark;

/// A mark record back into its mark; `None` for one that is not.
pub fn decode_mark(key: &[u8], value: &[u8]) -> Option<Mark> {
    let text = std::str::from_utf8(key).ok()?.strip_prefix("m/")?;
    let (id, user) = text.split_once('/')?;
    let sequence = crate::record::subscription::decode_mark(value).ok()?;
    Some(Mark {
        subscription: id.to_string(),
        user: UserId::parse(user).ok()?,
        sequence,
    })
}

/// The subscriptions' timers of a single process.
#[derive(Debug, Default)]
pub struct LocalTimers(Mutex<Timers>);

#[derive(Debug, Default)]
struct Timers {
    by_instant: BTreeSet<(Instant, String)>,
    by_id: HashMap<String, Instant>,
}

impl LocalTimers {
    fn timers(&self) -> std::sync::MutexGuard<'_, Timers> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn set(&self, id: &str, at: Instant) {
        let mut timers = self.timers();
        if let Some(old) = timers.by_id.insert(id.to_string(), at) {
            timers.by_instant.remove(&(old, id.to_string()));
        }
        timers.by_instant.insert((at, id.to_string()));
    }

    pub fn clear(&self, id: &str) {
        let mut timers = self.timers();
        if let Some(old) = timers.by_id.remove(id) {
            timers.by_instant.remove(&(old, id.to_string()));
        }
    }

    pub fn first(&self) -> Option<Instant> {
        self.timers().by_instant.first().map(|(at, _)| *at)
    }

    pub fn take_due(&self, now: Instant) -> Vec<(Instant, String)> {
        let mut timers = self.timers();
        let mut due = Vec::new();
        while timers.by_instant.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((at, id)) = timers.by_instant.pop_first() {
                timers.by_id.remove(&id);
                due.push((at, id));
            }
        }
        due
    }
}
