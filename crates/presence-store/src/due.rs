//! The due index: when each user's facts next change by themselves (a
//! fade, an expiry), so that the scheduler can tick them then.
//!
//! The index is split into partitions, and time-driven work on a partition
//! is done under a [`Lease`]: the node holding it is the only one that takes
//! due users from it, and a networked backend refuses a lease's fencing
//! token once another node has taken the partition over, so that a paused
//! former owner cannot act on it. A single node's store has one partition
//! whose lease it always holds.
//!
//! [`LocalDueIndex`] is the in-process index the memory and embedded stores
//! keep: (instant, user) pairs in one-second buckets of a `BTreeMap`. At a
//! million users a node per entry would cost more memory than the users
//! themselves, so each bucket is a plain vector, sorted only when it is the
//! next one due. The stores ask it for a user's next transition only when
//! that is earlier than the tick already pending for the user (they keep
//! that instant beside the user's facts, which saves a map of every user
//! here); an entry that a later change made unnecessary costs one harmless
//! tick when it falls due.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use presence_core::{Instant, UserKey};
use tokio::sync::Notify;

use crate::StoreError;

/// The right to do a partition's time-driven work until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub partition: u32,
    /// Grows with every change of owner: a backend refuses work done under
    /// an older token than the partition's current one.
    pub fence: u64,
    /// When the lease lapses unless renewed (`Instant::MAX`-like for a
    /// single node's store).
    pub until: Instant,
}

/// Each user's next transition, claimable by partition.
#[async_trait]
pub trait DueIndex: Send + Sync + std::fmt::Debug + 'static {
    /// How many partitions the index is split into.
    fn partitions(&self) -> u32;

    /// The partition `key` belongs to.
    fn partition_of(&self, key: &UserKey) -> u32 {
        let _ = key;
        0
    }

    /// Gives a lease up at once (a draining node), so that another node
    /// can take the partition without waiting for it to lapse.
    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let _ = lease;
        Ok(())
    }

    /// Takes or renews `node`'s lease on `partition` until `until`. `None`
    /// when another node holds it.
    async fn lease(
        &self,
        partition: u32,
        node: &str,
        now: Instant,
        until: Instant,
    ) -> Result<Option<Lease>, StoreError>;

    /// Files a tick of each of `keys` at `at` (a retry after a failed tick,
    /// and the start-up tick of every user, in one call). Commands file
    /// their own through [`crate::Facts::apply`].
    async fn schedule(&self, keys: &[UserKey], at: Instant) -> Result<(), StoreError>;

    /// The earliest instant anything in `partition` is due.
    async fn next_due(&self, partition: u32) -> Result<Option<Instant>, StoreError>;

    /// Removes and returns the users due at or before `now` in the lease's
    /// partition, at most `limit` of them. Refused with
    /// [`StoreError::Fenced`] when the lease is no longer the partition's.
    async fn take_due(
        &self,
        lease: &Lease,
        now: Instant,
        limit: usize,
    ) -> Result<Vec<UserKey>, StoreError>;

    /// Woken when an entry earlier than every other arrives, so that a
    /// sleeping scheduler looks again. A networked backend may also wake it
    /// on a timer.
    fn earlier_entry(&self) -> &Notify;

    /// How many ticks are pending (for metrics; may lag).
    fn pending(&self) -> usize;
}

const BUCKET_MILLIS: i64 = 1_000;

#[derive(Debug, Default)]
struct Bucket {
    /// Sorted latest first when `sorted`, so that the earliest pops off the end.
    entries: Vec<(Instant, UserKey)>,
    sorted: bool,
}

impl Bucket {
    fn sort(&mut self) {
        if !self.sorted {
            self.entries
                .sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
            self.sorted = true;
        }
    }
}

#[derive(Debug, Default)]
struct Wheel {
    buckets: BTreeMap<i64, Bucket>,
    len: usize,
}

fn bucket_of(at: Instant) -> i64 {
    at.as_unix_millis().div_euclid(BUCKET_MILLIS)
}

/// The due index of a single process: one partition, always leased to it.
#[derive(Debug, Default)]
pub struct LocalDueIndex {
    /// A std `Mutex`: every critical section is a few vector and map
    /// operations and never awaits.
    wheel: Mutex<Wheel>,
    earlier_entry: Notify,
}

/// The lease a single process holds on its one partition, forever.
pub fn local_lease() -> Lease {
    Lease {
        partition: 0,
        fence: 1,
        until: Instant::from_unix_millis(i64::MAX),
    }
}

impl LocalDueIndex {
    pub fn new() -> LocalDueIndex {
        LocalDueIndex::default()
    }

    fn wheel(&self) -> std::sync::MutexGuard<'_, Wheel> {
        self.wheel
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Files a tick of `key` at `at`.
    pub fn insert(&self, key: &UserKey, at: Instant) {
        self.insert_all(std::slice::from_ref(key), at);
    }

    /// Files a tick of each of `keys` at `at`, under one lock.
    pub fn insert_all(&self, keys: &[UserKey], at: Instant) {
        if keys.is_empty() {
            return;
        }
        let bucket = bucket_of(at);
        let mut wheel = self.wheel();
        let first = wheel
            .buckets
            .first_key_value()
            .is_none_or(|(first, _)| bucket <= *first);
        let slot = wheel.buckets.entry(bucket).or_default();
        slot.entries
            .extend(keys.iter().map(|key| (at, key.clone())));
        slot.sorted = false;
        wheel.len += keys.len();
        drop(wheel);
        if first {
            self.earlier_entry.notify_one();
        }
    }

    /// The earliest instant anything is due.
    pub fn first(&self) -> Option<Instant> {
        let mut wheel = self.wheel();
        let (_, bucket) = wheel.buckets.iter_mut().next()?;
        bucket.sort();
        bucket.entries.last().map(|(at, _)| *at)
    }

    /// Removes and returns what is due at or before `now`, at most `limit`.
    pub fn take(&self, now: Instant, limit: usize) -> Vec<UserKey> {
        let mut wheel = self.wheel();
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(mut entry) = wheel.buckets.first_entry() else {
                break;
            };
            let whole = (*entry.key() + 1) * BUCKET_MILLIS <= now.as_unix_millis() + 1;
            if whole && entry.get().entries.len() <= limit - due.len() {
                // The whole bucket is due and fits.
                due.extend(entry.remove().entries.into_iter().map(|(_, key)| key));
                continue;
            }
            let bucket = entry.get_mut();
            bucket.sort();
            while due.len() < limit && bucket.entries.last().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, key)) = bucket.entries.pop() {
                    due.push(key);
                }
            }
            if bucket.entries.is_empty() {
                entry.remove();
                continue;
            }
            break;
        }
        wheel.len -= due.len();
        due
    }

    pub fn len(&self) -> usize {
        self.wheel().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl DueIndex for LocalDueIndex {
    fn partitions(&self) -> u32 {
        1
    }

    async fn lease(
        &self,
        partition: u32,
        _node: &str,
        _now: Instant,
        _until: Instant,
    ) -> Result<Option<Lease>, StoreError> {
        Ok((partition == 0).then(local_lease))
    }

    async fn schedule(&self, keys: &[UserKey], at: Instant) -> Result<(), StoreError> {
        self.insert_all(keys, at);
        Ok(())
    }

    async fn next_due(&self, partition: u32) -> Result<Option<Instant>, StoreError> {
        Ok(if partition == 0 { self.first() } else { None })
    }

    async fn take_due(
        &self,
        lease: &Lease,
        now: Instant,
        limit: usize,
    ) -> Result<Vec<UserKey>, StoreError> {
        if *lease != local_lease() {
            return Err(StoreError::Fenced(format!(
                "partition {} is held under fence {}, not {}",
                lease.partition,
                local_lease().fence,
                lease.fence
            )));
        }
        Ok(self.take(now, limit))
    }

    fn earlier_entry(&self) -> &Notify {
        &self.earlier_entry
    }

    fn pending(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> UserKey {
        crate::conformance::key("t", user)
    }

    fn at(millis: i64) -> Instant {
        Instant::from_unix_millis(millis)
    }

    #[test]
    fn entries_come_due_in_instant_order_across_and_within_buckets() {
        let index = LocalDueIndex::new();
        for (user, millis) in [
            ("c", 2_500),
            ("a", 1_200),
            ("b", 1_700),
            ("d", 2_400),
            ("e", 9_000),
        ] {
            index.insert(&key(user), at(millis));
        }
        assert_eq!(index.len(), 5);
        assert_eq!(index.first(), Some(at(1_200)));
        assert_eq!(index.take(at(1_199), usize::MAX), Vec::<UserKey>::new());
        assert_eq!(index.take(at(1_200), usize::MAX), vec![key("a")]);
        assert_eq!(index.first(), Some(at(1_700)));
        let mut due = index.take(at(2_450), usize::MAX);
        due.sort();
        assert_eq!(due, vec![key("b"), key("d")]);
        assert_eq!(index.first(), Some(at(2_500)));
        assert_eq!(index.take(at(8_999), usize::MAX), vec![key("c")]);
        assert_eq!(index.len(), 1);
        assert_eq!(index.take(at(9_000), usize::MAX), vec![key("e")]);
        assert!(index.is_empty());
        assert_eq!(index.first(), None);
    }

    #[test]
    fn a_late_entry_in_an_early_bucket_is_found() {
        let index = LocalDueIndex::new();
        index.insert(&key("late"), at(5_000));
        assert_eq!(index.first(), Some(at(5_000)));
        index.insert(&key("early"), at(5_001 - 2_000));
        assert_eq!(index.first(), Some(at(3_001)));
        index.insert(&key("same-bucket-earlier"), at(3_000));
        assert_eq!(index.first(), Some(at(3_000)));
    }

    #[test]
    fn take_stops_at_its_limit_and_leaves_the_rest_in_order() {
        let index = LocalDueIndex::new();
        for (user, millis) in [("a", 1_100), ("b", 1_200), ("c", 1_300), ("d", 2_100)] {
            index.insert(&key(user), at(millis));
        }
        assert_eq!(index.take(at(5_000), 2), vec![key("a"), key("b")]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.first(), Some(at(1_300)));
        assert_eq!(index.take(at(5_000), 10), vec![key("c"), key("d")]);
        assert!(index.is_empty());
    }
}
