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
use std::num::NonZeroU64;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use presence_core::{
    Applied, Command, CommandError, Instant, TenantId, Timeouts, UserFacts, UserId, UserKey, apply,
    next_transition,
};

use crate::due::LocalDueIndex;
use crate::feed::LocalFeed;
use crate::subscriptions::{self, LocalTimers, Mark, RecordWrite, Subscriptions};
use crate::{Facts, Memo, StoreCounts, StoreError, VisitMemo};

/// How many independently locked shards the map is split into. A power of
/// two well above the core count keeps lock contention negligible.
const SHARDS: usize = 64;
// A read of many keys numbers their shards in a byte (`read_memos`).
const _: () = assert!(SHARDS <= 256);

/// A randomly seeded hasher: user ids come from callers, so a fixed hash
/// would let a caller pile every key into one bucket.
type Hasher64 = foldhash::fast::RandomState;

/// One user's facts and the due index's bookkeeping for them.
#[derive(Debug, Default)]
struct Entry {
    facts: UserFacts,
    /// What a reader made of the facts ([`Memo`]): dropped by every apply
    /// and load, under the shard's lock.
    memo: Memo,
    /// The earliest tick already filed in the due index and not yet run;
    /// `None` if none is pending. Kept here rather than in the index, which
    /// saves a map of every user (a networked index keeps one entry per
    /// user in a sorted set instead).
    scheduled: Option<Instant>,
}

/// Entries are boxed: a hash table's slots are allocated in powers of two
/// and are between 44% and 87% full, so every empty slot costs what a full
/// one does. Boxed, a slot is 32 bytes instead of 120, and a million users
/// take about 150 bytes less each (measured with `presenced-bench`).
type Users = HashMap<UserId, Box<Entry>, Hasher64>;

/// Whether a command that creates a user counts it against the bound on
/// users per tenant itself, or finds it counted by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    Check,
    Counted,
}
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
    /// Users held per tenant (entries, Offline ones included), for the
    /// bound on users per tenant. A user's entry is created under its
    /// shard's lock, and this one is taken inside it (never the other way
    /// round), so that counting a new user against the bound and creating
    /// it are one step. Taken only when a user is created or loaded.
    tenant_users: Mutex<HashMap<TenantId, u64, Hasher64>>,
    /// The bound on users per tenant; 0: none.
    user_limit: AtomicU64,
    /// The records beside the facts (subscriptions and marks); few, and
    /// written rarely next to the facts, so one lock is enough.
    records: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    feed: LocalFeed,
    due: LocalDueIndex,
    timers: LocalTimers,
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
            tenant_users: Mutex::new(HashMap::with_hasher(Hasher64::default())),
            user_limit: AtomicU64::new(0),
            records: Mutex::new(BTreeMap::new()),
            feed: LocalFeed::default(),
            due: LocalDueIndex::new(),
            timers: LocalTimers::default(),
        }
    }

    /// The change feed the durable backends share with their read side.
    pub fn feed(&self) -> &LocalFeed {
        &self.feed
    }

    pub fn due(&self) -> &LocalDueIndex {
        &self.due
    }

    pub fn timers(&self) -> &LocalTimers {
        &self.timers
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

    fn shard(&self, key: &UserKey) -> std::sync::MutexGuard<'_, Shard> {
        self.lock_shard(self.shard_index(key))
    }

    fn shard_index(&self, key: &UserKey) -> usize {
        // The high bits: the maps themselves use the low ones for buckets.
        (self.hasher.hash_one(key) >> 58) as usize % SHARDS
    }

    fn lock_shard(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
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

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, u64, Hasher64>> {
        self.tenant_users
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Bounds the users each tenant may hold from now on (`None`: no
    /// bound). Users already held stay, and their writes go on.
    pub fn limit_users_per_tenant(&self, limit: Option<NonZeroU64>) {
        self.user_limit
            .store(limit.map_or(0, NonZeroU64::get), Ordering::Relaxed);
    }

    /// The bound on users per tenant; 0: none.
    pub fn user_limit(&self) -> u64 {
        self.user_limit.load(Ordering::Relaxed)
    }

    /// Counts a new user of `tenant`, if the tenant is under the bound;
    /// answers whether it was. A durable backend counts the user before
    /// writing it, and [`MemoryStore::release_user`]s it if the write fails.
    pub fn admit_user(&self, tenant: &TenantId) -> bool {
        let limit = self.user_limit.load(Ordering::Relaxed);
        let mut tenants = self.tenants();
        let held = tenants.entry(tenant.clone()).or_default();
        if limit > 0 && *held >= limit {
            return false;
        }
        *held += 1;
        true
    }

    /// Takes back a count made by [`MemoryStore::admit_user`] for a user
    /// that was not created after all.
    pub fn release_user(&self, tenant: &TenantId) {
        let mut tenants = self.tenants();
        if let Some(held) = tenants.get_mut(tenant) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                tenants.remove(tenant);
            }
        }
    }

    /// How many users `tenant` holds (Offline ones included).
    pub fn tenant_users(&self, tenant: &TenantId) -> u64 {
        self.tenants().get(tenant).copied().unwrap_or(0)
    }

    /// Puts facts read back from a durable log (start-up), replacing any
    /// held for `key`. No tick is pending for them yet: the scheduler ticks
    /// every loaded user once.
    pub fn load(&self, key: UserKey, facts: UserFacts) {
        let held = !facts.holds_nothing();
        let sessions = facts.sessions.len() as u64;
        let mut shard = self.shard(&key);
        let key_tenant = key.tenant.clone();
        let users = shard
            .entry(key.tenant)
            .or_insert_with(|| HashMap::with_hasher(self.hasher.clone()));
        let previous = users.insert(
            key.user,
            Box::new(Entry {
                facts,
                memo: Memo::default(),
                scheduled: None,
            }),
        );
        drop(shard);
        if previous.is_none() {
            *self.tenants().entry(key_tenant).or_default() += 1;
        }
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
    /// their log write succeeds. Inside the shard's lock it also appends to
    /// the change feed when the sequence number moves, and files the user's
    /// next transition in the due index when no tick at or before it is
    /// pending.
    pub fn apply_now(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Applied, CommandError> {
        self.apply_counted(key, command, now, timeouts, Admission::Check)
    }

    /// [`MemoryStore::apply_now`] for a user the caller has already counted
    /// against the bound ([`MemoryStore::admit_user`]), if the command
    /// creates it.
    pub fn apply_admitted(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Applied, CommandError> {
        self.apply_counted(key, command, now, timeouts, Admission::Counted)
    }

    fn apply_counted(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
        admission: Admission,
    ) -> Result<Applied, CommandError> {
        let mut shard = self.shard(key);
        let exists = shard
            .get(&key.tenant)
            .is_some_and(|users| users.contains_key(&key.user));
        if !exists && matches!(command, Command::Tick) {
            // Nothing is held: a tick has nothing to do.
            return Ok(Applied {
                visibly_changed: false,
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
        entry.memo.clear();
        let result = apply(&mut entry.facts, command, now, timeouts);
        let created = !exists && (!entry.facts.holds_nothing() || entry.facts.sequence.value != 0);
        match admission {
            Admission::Check if created && !self.admit_user(&key.tenant) => {
                // The new user is not kept: nothing was held, nothing is.
                let limit = self.user_limit.load(Ordering::Relaxed);
                users.remove(&key.user);
                if users.is_empty() {
                    shard.remove(&key.tenant);
                }
                return Err(CommandError::TenantFull { limit });
            }
            Admission::Counted if !created => self.release_user(&key.tenant),
            Admission::Check | Admission::Counted => {}
        }
        if result.is_ok() && entry.facts.sequence.value != sequence_before {
            self.feed.append(key, &entry.facts, now);
        }
        let held_after = !entry.facts.holds_nothing();
        let sessions_after = entry.facts.sessions.len() as u64;
        if result.is_ok()
            && let Some(next) = next_transition(&entry.facts, now, timeouts)
            && entry.scheduled.is_none_or(|pending| next < pending)
        {
            entry.scheduled = Some(next);
            self.due.insert(key, next);
        }
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
        result
    }
}

/// How many keys of a many-key read are warmed together ([`warm`]): about
/// as many cache misses as a core has in flight at once.
const WARMED: usize = 16;

/// Loads what visiting the keys at `indices` (at most [`WARMED`]) will
/// touch: their entries, their memos and what the memos say their readers
/// read ([`crate::Memorable::warm`]).
///
/// A read of many users waits on memory, not on instructions: each key's
/// entry, memo and rendering are found through a pointer in the one before,
/// and with a hundred thousand users they are rarely in the cache, so
/// visiting the keys one after the other waits for each miss in turn. Here
/// every key's entry is found first, then every memo warmed: within each
/// pass the loads of different keys do not depend on each other, and the
/// processor waits for them at the same time. Visiting them afterwards
/// finds them in the cache. (Measured with `presenced-bench --only batch`;
/// see the README.) A read of facts alone (`Facts::read`) warms the memos
/// too: warming only its entries, through a second kind of warming, cost
/// the batch 5% more instructions, the compiler no longer inlining the
/// table's lookup.
fn warm(shard: &Shard, keys: &[UserKey], indices: &[u32]) {
    debug_assert!(indices.len() <= WARMED);
    let mut entries: [Option<&Entry>; WARMED] = [None; WARMED];
    let mut users: Option<(&TenantId, Option<&Users>)> = None;
    for (entry, &index) in entries.iter_mut().zip(indices) {
        let key = &keys[index as usize];
        let held = match users {
            Some((tenant, held)) if *tenant == key.tenant => held,
            _ => {
                let held = shard.get(&key.tenant);
                users = Some((&key.tenant, held));
                held
            }
        };
        *entry = held
            .and_then(|users| users.get(&key.user))
            .map(|entry| &**entry);
    }
    for entry in entries.iter().flatten() {
        entry.memo.warm();
    }
}

/// Hands `visit` the entry in `shard` (locked) of each key at `indices`, if
/// one is held. The keys of a read are mostly of one tenant: its users are
/// looked up again only when the tenant changes from one key to the next.
fn visit_entries(shard: &mut Shard, keys: &[UserKey], indices: &[u32], visit: &mut VisitMemo<'_>) {
    let mut users: Option<(&TenantId, Option<&mut Users>)> = None;
    for &index in indices {
        let index = index as usize;
        let key = &keys[index];
        if !matches!(&users, Some((tenant, _)) if **tenant == key.tenant) {
            users = Some((&key.tenant, shard.get_mut(&key.tenant)));
        }
        let entry = users
            .as_mut()
            .and_then(|(_, held)| held.as_mut())
            .and_then(|users| users.get_mut(&key.user));
        match entry {
            Some(entry) => visit(index, Some(&entry.facts), Some(&mut entry.memo)),
            None => visit(index, None, None),
        }
    }
}

/// Hands `visit` the entry of `key` in `shard` (locked), if one is held, as
/// the key of index 0. (The single key of a GET: `visit_entries` called
/// from here as well was no longer inlined in the batch's loop, which
/// cost the batch 10% more instructions.)
fn visit_entry(shard: &mut Shard, key: &UserKey, visit: &mut VisitMemo<'_>) {
    match shard
        .get_mut(&key.tenant)
        .and_then(|users| users.get_mut(&key.user))
    {
        Some(entry) => visit(0, Some(&entry.facts), Some(&mut entry.memo)),
        None => visit(0, None, None),
    }
}

#[async_trait]
impl Facts for MemoryStore {
    async fn apply(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Applied, CommandError>, StoreError> {
        Ok(self.apply_now(key, command, now, timeouts))
    }

    async fn read(
        &self,
        keys: &[UserKey],
        visit: &mut (dyn for<'f> FnMut(usize, Option<&'f UserFacts>) + Send),
    ) -> Result<(), StoreError> {
        self.read_memos(keys, &mut |index, facts, _| visit(index, facts))
            .await
    }

    async fn read_memos(
        &self,
        keys: &[UserKey],
        visit: &mut VisitMemo<'_>,
    ) -> Result<(), StoreError> {
        if let [key] = keys {
            let mut shard = self.shard(key);
            visit_entry(&mut shard, key, visit);
            return Ok(());
        }
        // Many keys are read a shard at a time, each shard locked once:
        // taking and releasing a lock are atomic instructions, which wait
        // for every load before them, so locking per key let no two keys'
        // cache misses overlap. The keys are ordered by shard with a
        // counting sort (two passes over them), their indices held in 32
        // bits: no read names four billion keys.
        let shards: Vec<u8> = keys.iter().map(|key| self.shard_index(key) as u8).collect();
        let mut starts = [0u32; SHARDS + 1];
        for &shard in &shards {
            starts[usize::from(shard) + 1] += 1;
        }
        for shard in 0..SHARDS {
            starts[shard + 1] += starts[shard];
        }
        let mut next = starts;
        let mut ordered = vec![0u32; keys.len()];
        for (index, &shard) in shards.iter().enumerate() {
            let place = &mut next[usize::from(shard)];
            ordered[*place as usize] = index as u32;
            *place += 1;
        }
        for shard in 0..SHARDS {
            let indices = &ordered[starts[shard] as usize..starts[shard + 1] as usize];
            if indices.is_empty() {
                continue;
            }
            let mut locked = self.lock_shard(shard);
            for indices in indices.chunks(WARMED) {
                warm(&locked, keys, indices);
                visit_entries(&mut locked, keys, indices, visit);
            }
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

    /// The maps are nested by tenant in each shard: a tenant's users are
    /// found through one lookup per shard.
    async fn scan_tenant(
        &self,
        tenant: &TenantId,
        visit: &mut (dyn for<'f> FnMut(&'f UserId, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|poison| poison.into_inner());
            if let Some(users) = shard.get(tenant) {
                for (user, entry) in users.iter() {
                    visit(user, &entry.facts);
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

    /// Exact: a new user is counted against the bound in the same step,
    /// under its shard's lock, that creates it.
    fn limit_users_per_tenant(&self, limit: Option<NonZeroU64>) {
        MemoryStore::limit_users_per_tenant(self, limit);
    }
}

crate::forward_feed_and_due!(MemoryStore, |store| &store.feed, |store| &store.due);

impl MemoryStore {
    /// Every subscription record, in id order.
    pub fn subscription_records(&self) -> Vec<(String, Vec<u8>)> {
        self.records_with_prefix(b"s/")
            .into_iter()
            .filter_map(|(key, value)| {
                let id = std::str::from_utf8(key.strip_prefix(b"s/")?).ok()?;
                Some((id.to_string(), value))
            })
            .collect()
    }

    /// Every mark record, in key order.
    pub fn mark_records(&self) -> Vec<Mark> {
        self.records_with_prefix(b"m/")
            .iter()
            .filter_map(|(key, value)| subscriptions::decode_mark(key, value))
            .collect()
    }

    /// What deleting a subscription writes: its record and its marks.
    pub fn subscription_deletes(&self, id: &str) -> Vec<RecordWrite> {
        let mut writes = vec![(subscriptions::subscription_key(id), None)];
        writes.extend(
            self.records_with_prefix(&subscriptions::mark_prefix(id))
                .into_iter()
                .map(|(key, _)| (key, None)),
        );
        writes
    }
}

/// What putting marks writes.
pub fn mark_writes(marks: &[Mark]) -> Vec<RecordWrite> {
    marks
        .iter()
        .map(|mark| {
            (
                subscriptions::mark_key(&mark.subscription, &mark.user),
                Some(subscriptions::encode_mark(mark.sequence)),
            )
        })
        .collect()
}

/// What deleting marks writes.
pub fn mark_deletes(subscription: &str, users: &[UserId]) -> Vec<RecordWrite> {
    users
        .iter()
        .map(|user| (subscriptions::mark_key(subscription, user), None))
        .collect()
}

#[async_trait]
impl Subscriptions for MemoryStore {
    async fn put_subscription(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        self.install_records(vec![(subscriptions::subscription_key(id), Some(record))]);
        Ok(())
    }

    async fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.install_records(self.subscription_deletes(id));
        self.timers.clear(id);
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.subscription_records())
    }

    async fn put_marks(&self, marks: &[Mark]) -> Result<(), StoreError> {
        self.install_records(mark_writes(marks));
        Ok(())
    }

    async fn delete_marks(&self, subscription: &str, users: &[UserId]) -> Result<(), StoreError> {
        self.install_records(mark_deletes(subscription, users));
        Ok(())
    }

    async fn marks(&self) -> Result<Vec<Mark>, StoreError> {
        Ok(self.mark_records())
    }

    async fn set_timer(&self, id: &str, at: Instant) -> Result<(), StoreError> {
        self.timers.set(id, at);
        Ok(())
    }

    async fn next_timer(&self) -> Result<Option<Instant>, StoreError> {
        Ok(self.timers.first())
    }

    async fn take_due_timers(&self, now: Instant) -> Result<Vec<(Instant, String)>, StoreError> {
        Ok(self.timers.take_due(now))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let store = super::MemoryStore::new();
        crate::conformance::run_all(&store).await;
        assert!(crate::conformance::facts::hands_out_memos(&store).await);
    }
}
