//! The in-memory backend: facts in sharded hash maps, nothing on disk.
//!
//! It is also the read side of the durable backends, which keep the same
//! maps in memory and use their log only to survive restarts.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use presence_core::{
    Command, CommandError, Instant, Timeouts, UserFacts, UserKey, apply, next_transition,
};

use crate::{Outcome, Store, StoreCounts, StoreError};

/// How many independently locked shards the map is split into. A power of
/// two well above the core count keeps lock contention negligible.
const SHARDS: usize = 64;

/// A randomly seeded hasher: user ids come from callers, so a fixed hash
/// would let a caller pile every key into one bucket.
type Hasher64 = foldhash::fast::RandomState;

#[derive(Debug)]
pub struct MemoryStore {
    /// A std `Mutex`, not a tokio one: it is never held across an `.await`,
    /// and each critical section is a few hundred nanoseconds.
    shards: Box<[Mutex<HashMap<UserKey, UserFacts, Hasher64>>]>,
    hasher: Hasher64,
    /// Maintained on every apply so that metrics never walk the maps.
    users: AtomicU64,
    sessions: AtomicU64,
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
        }
    }

    fn shard(&self, key: &UserKey) -> &Mutex<HashMap<UserKey, UserFacts, Hasher64>> {
        // The high bits: the map itself uses the low ones for its buckets.
        let index = (self.hasher.hash_one(key) >> 58) as usize % SHARDS;
        &self.shards[index]
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
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let inserted = !shard.contains_key(key);
        if inserted && matches!(command, Command::Tick) {
            // Nothing is held: a tick has nothing to do.
            return Ok(Outcome {
                applied: presence_core::Applied {
                    visibly_changed: false,
                },
                next_transition: None,
            });
        }
        let facts = shard.entry(key.clone()).or_default();
        let held_before = !inserted && !facts.holds_nothing();
        let sessions_before = facts.sessions.len() as u64;
        let result = apply(facts, command, now, timeouts);
        let held_after = !facts.holds_nothing();
        let sessions_after = facts.sessions.len() as u64;
        let outcome = result.map(|applied| Outcome {
            applied,
            next_transition: next_transition(facts, now, timeouts),
        });
        if inserted && !held_after && facts.sequence.value == 0 {
            // A refused command on a user nothing was held for: keep nothing.
            shard.remove(key);
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
            let shard = self
                .shard(key)
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            visit(index, shard.get(key));
        }
        Ok(())
    }

    async fn scan(
        &self,
        visit: &mut (dyn for<'f> FnMut(&'f UserKey, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            for (key, facts) in shard.iter() {
                visit(key, facts);
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
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_conformance_suite() {
        crate::conformance::run_all(&super::MemoryStore::new()).await;
    }
}
