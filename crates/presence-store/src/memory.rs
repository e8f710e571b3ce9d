//! The in-memory backend: facts in sharded hash maps, nothing on disk.
//!
//! It is also the read side of the durable backends, which keep the same
//! maps in memory and use their log only to survive restarts.
//!
//! Memory per user is what this backend is measured on (a million users must
//! fit in a few hundred megabytes), so each entry is kept small: maps are
//! nested by tenant so the tenant id is not repeated per user, ids are
//! compact (`presence_core::id`), rare facts sit behind one pointer, and
//! entries are boxed so that empty hash slots stay small.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use presence_core::{
    Applied, Command, CommandError, Instant, TenantId, Timeouts, UserFacts, UserId, UserKey, apply,
    next_transition,
};

use crate::{ChangeObserver, Outcome, RecordWrite, Store, StoreCounts, StoreError};

/// How many independently locked shards the map is split into. A power of
/// two well above the core count keeps lock contention negligible.
const SHARDS: usize = 64;

/// A randomly seeded hasher: user ids come from callers, so a fixed hash
/// would let a caller pile every key into one bucket.
type Hasher64 = foldhash::fast::RandomState;

/// One user's facts and the store's scheduling bookkeeping for them.
#[derive(Debug, Default)]
struct Entry {
    facts: UserFacts,
    /// The earliest tick already asked of the scheduler and not yet run;
    /// `None` if none is pending.
    scheduled: Option<Instant>,
}

/// Entries are boxed: a hash table's slots are allocated in powers of two
/// and are between 44% and 87% full, so every empty slot costs what a full
/// one does. Boxed, a slot is 32 bytes instead of 120, and a million users
/// take about 150 bytes less each (measured with `presenced-bench`).
type Users = HashMap<UserId, Box<Entry>, Hasher64>;
type Shard = HashMap<TenantId, Users, Hasher64>;

#[derive(Debug)]
pub struct MemoryStore {
    /// A std `Mutex`, not a tokio one: it is never held across an `.await`,
    /// and each critical section is a few hundred nanoseconds.
    shards: Box<[Mutex<Shard>]>,
    hasher: Hasher64,
    /// Maintained on every apply so that metrics never walk the maps.
    users: AtomicU64,
    sessions: AtomicU64,
    /// The records beside the facts ([`Store::put_records`]); few, and
    /// written rarely next to the facts, so one lock is enough.
    records: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    observer: OnceLock<Arc<dyn ChangeObserver>>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        let hasher = Hasher64::default();
        MemoryStore {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            hasher,
            users: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            records: Mutex::new(BTreeMap::new()),
            observer: OnceLock::new(),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.records
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Installs records that are already durable elsewhere (the embedded
    /// store's, after its commit, and at start-up).
    pub fn install_records(&self, writes: Vec<RecordWrite>) {
        let mut records = self.records();
        for (key, value) in writes {
            match value {
                Some(value) => records.insert(key, value),
                None => records.remove(&key),
            };
        }
    }

    /// The records whose key starts with `prefix`, in key order.
    pub fn records_with_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.records()
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    pub fn set_observer(&self, observer: Arc<dyn ChangeObserver>) {
        let _ = self.observer.set(observer);
    }

    fn shard(&self, key: &UserKey) -> std::sync::MutexGuard<'_, Shard> {
        // The high bits: the maps themselves use the low ones for buckets.
        let index = (self.hasher.hash_one(key) >> 58) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A copy of the facts held for `key`, if any: the durable backends
    /// compute a change on this copy and install it only once it is on disk.
    pub fn facts_of(&self, key: &UserKey) -> Option<UserFacts> {
        let shard = self.shard(key);
        shard
            .get(&key.tenant)
            .and_then(|users| users.get(&key.user))
            .map(|entry| entry.facts.clone())
    }

    /// Puts facts read back from a durable log (start-up), replacing any
    /// held for `key`. No tick is pending for them yet: the scheduler ticks
    /// every loaded user once.
    pub fn load(&self, key: UserKey, facts: UserFacts) {
        let held = !facts.holds_nothing();
        let sessions = facts.sessions.len() as u64;
        let mut shard = self.shard(&key);
        let users = shard
            .entry(key.tenant)
            .or_insert_with(|| HashMap::with_hasher(self.hasher.clone()));
        let previous = users.insert(
            key.user,
            Box::new(Entry {
                facts,
                scheduled: None,
            }),
        );
        drop(shard);
        if let Some(previous) = previous {
            if !previous.facts.holds_nothing() {
                self.users.fetch_sub(1, Ordering::Relaxed);
            }
            self.sessions
                .fetch_sub(previous.facts.sessions.len() as u64, Ordering::Relaxed);
        }
        if held {
            self.users.fetch_add(1, Ordering::Relaxed);
        }
        self.sessions.fetch_add(sessions, Ordering::Relaxed);
    }

    /// Applies a command synchronously; the durable backends call this after
    /// their log write succeeds.
    pub fn apply_now(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Outcome, CommandError> {
        let mut shard = self.shard(key);
        let exists = shard
            .get(&key.tenant)
            .is_some_and(|users| users.contains_key(&key.user));
        if !exists && matches!(command, Command::Tick) {
            // Nothing is held: a tick has nothing to do.
            return Ok(Outcome {
                applied: Applied {
                    visibly_changed: false,
                },
                schedule_at: None,
            });
        }
        let users = shard
            .entry(key.tenant.clone())
            .or_insert_with(|| HashMap::with_hasher(self.hasher.clone()));
        let entry = users.entry(key.user.clone()).or_default();
        let held_before = exists && !entry.facts.holds_nothing();
        let sessions_before = entry.facts.sessions.len() as u64;
        if matches!(command, Command::Tick) && entry.scheduled.is_some_and(|at| at <= now) {
            // This is the tick that was asked for (or a later one).
            entry.scheduled = None;
        }
        let sequence_before = entry.facts.sequence.value;
        let result = apply(&mut entry.facts, command, now, timeouts);
        if result.is_ok()
            && entry.facts.sequence.value != sequence_before
            && let Some(observer) = self.observer.get()
        {
            observer.changed(key, &entry.facts, now);
        }
        let held_after = !entry.facts.holds_nothing();
        let sessions_after = entry.facts.sessions.len() as u64;
        let outcome = result.map(|applied| {
            let next = next_transition(&entry.facts, now, timeouts);
            let schedule_at = match (next, entry.scheduled) {
                (Some(next), Some(pending)) if pending <= next => None,
                (Some(next), _) => {
                    entry.scheduled = Some(next);
                    Some(next)
                }
                (None, _) => None,
            };
            Outcome {
                applied,
                schedule_at,
            }
        });
        if !exists && !held_after && entry.facts.sequence.value == 0 {
            // A command that left nothing on a user nothing was held for
            // (refused, or a no-op clear): keep nothing.
            users.remove(&key.user);
            if users.is_empty() {
                shard.remove(&key.tenant);
            }
        }
        drop(shard);
        match (held_before, held_after) {
            (false, true) => {
                self.users.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.users.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if sessions_after >= sessions_before {
            self.sessions
                .fetch_add(sessions_after - sessions_before, Ordering::Relaxed);
        } else {
            self.sessions
                .fetch_sub(sessions_before - sessions_after, Ordering::Relaxed);
        }
        outcome
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn apply(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Outcome, CommandError>, StoreError> {
        Ok(self.apply_now(key, command, now, timeouts))
    }

    async fn read(
        &self,
        keys: &[UserKey],
        visit: &mut (dyn for<'f> FnMut(usize, Option<&'f UserFacts>) + Send),
    ) -> Result<(), StoreError> {
        for (index, key) in keys.iter().enumerate() {
            let shard = self.shard(key);
            let entry = shard
                .get(&key.tenant)
                .and_then(|users| users.get(&key.user));
            visit(index, entry.map(|entry| &entry.facts));
        }
        Ok(())
    }

    async fn scan(
        &self,
        visit: &mut (dyn for<'f> FnMut(&'f UserKey, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            for (tenant, users) in shard.iter() {
                for (user, entry) in users.iter() {
                    visit(&UserKey::new(tenant.clone(), user.clone()), &entry.facts);
                }
            }
        }
        Ok(())
    }

    fn counts(&self) -> StoreCounts {
        StoreCounts {
            users: self.users.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }

    async fn put_records(
        &self,
        writes: Vec<RecordWrite>,
        _durable: bool,
    ) -> Result<(), StoreError> {
        self.install_records(writes);
        Ok(())
    }

    async fn scan_records(
        &self,
        prefix: &[u8],
        visit: &mut (dyn for<'r> FnMut(&'r [u8], &'r [u8]) + Send),
    ) -> Result<(), StoreError> {
        for (key, value) in self.records_with_prefix(prefix) {
            visit(&key, &value);
        }
        Ok(())
    }

    fn observe(&self, observer: Arc<dyn ChangeObserver>) {
        self.set_observer(observer);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_conformance_suite() {
        crate::conformance::run_all(&super::MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn tells_the_observer_of_every_visible_change() {
        crate::conformance::tells_the_observer_of_every_visible_change(&super::MemoryStore::new())
            .await;
    }
}
