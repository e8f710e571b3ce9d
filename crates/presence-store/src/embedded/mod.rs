//! The durable embedded backend: every user's facts in an LSM tree on local
//! disk (fjall), served from a [`MemoryStore`] that holds the same facts.
//!
//! The engine is the log of record and the memory store is the read side.
//! A write goes:
//! 1. lock the user's stripe (one of [`STRIPES`] async mutexes, chosen by a
//!    hash of the key), so that writes to one user run one at a time while
//!    writes to different users proceed together;
//! 2. copy the user's committed facts out of memory and apply the command to
//!    the copy with [`presence_core::apply`]; a refused command stops here,
//!    having changed nothing;
//! 3. hand the new record to the writer (`writer.rs`), which puts it in the
//!    next batch with every other waiting write, commits the batch and syncs
//!    it once (group commit), then answers;
//! 4. only then apply the same command to the memory store, which being a
//!    pure function of the same facts and the same instant arrives at exactly
//!    the record on disk, and does the scheduling bookkeeping;
//! 5. unlock the stripe.
//!
//! Architecture invariant: memory never runs ahead of disk. A reader can
//! only see a change once the engine holds it (durably, in strict mode), and
//! a write that failed is not in memory at all.
//!
//! Start-up reads every record back into memory before the store is used.
//! Users that hold nothing but a sequence number keep that small record (a
//! tombstone of about ten bytes) rather than being deleted, so that the
//! number never goes backwards for a reader, even across a restart.

mod layout;
pub(crate) mod record;
mod writer;

use std::fs::File;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use presence_core::{
    Applied, Command, CommandError, Instant, TenantId, Timeouts, UserFacts, UserId, UserKey, apply,
};

pub use layout::FORMAT_VERSION;
pub use record::RECORD_VERSION;
pub use writer::SYNC_INTERVAL;

use crate::memory::{mark_deletes, mark_writes};
use crate::subscriptions::{self, Mark, RecordWrite, Subscriptions};
use crate::{Facts, MemoryStore, StoreCounts, StoreError, VisitMemo};
use writer::{Opened, Wait, Writer, Writes};

/// How many stripes serialize writes to one user. Far more than the writes
/// in flight at once, so two users rarely share one; each is a few bytes.
pub const STRIPES: usize = 4_096;

/// When a write is acknowledged (`--durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After it is synced to disk: nothing acknowledged is ever lost.
    Strict,
    /// After it is written to the operating system: it survives the process
    /// being killed; a power loss may lose the last [`SYNC_INTERVAL`].
    Relaxed,
}

/// What `presenced check` reports about a healthy directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub format: u32,
    /// Records read back (users, including those holding only a sequence number).
    pub records: u64,
    /// Users holding at least one fact.
    pub users: u64,
    pub sessions: u64,
    /// Bytes the whole directory takes on disk.
    pub bytes_on_disk: u64,
}

/// Group commit counts, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitCounts {
    pub batches: u64,
    pub writes: u64,
    pub syncs: u64,
    pub failures: u64,
}

#[derive(Debug)]
pub struct EmbeddedStore {
    dir: PathBuf,
    memory: MemoryStore,
    /// Tokio mutexes: they are held across the wait for the writer.
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: foldhash::fast::RandomState,
    durability: Durability,
    writer: Writer,
    /// Held (locked) for as long as the store is open.
    _lock: File,
}

fn engine_damaged(dir: &Path, problem: String) -> StoreError {
    StoreError::Damaged {
        dir: dir.to_path_buf(),
        file: layout::engine_path(dir),
        problem,
    }
}

/// Opens the engine and reads every record, calling `visit` with each.
fn read_all(dir: &Path, mut visit: impl FnMut(UserKey, UserFacts)) -> Result<Opened, StoreError> {
    let engine = layout::engine_path(dir);
    let opened = writer::open_engine(&engine)
        .map_err(|error| engine_damaged(dir, format!("the engine cannot open it ({error})")))?;
    for item in opened.users.iter() {
        let (key, value) = item
            .into_inner()
            .map_err(|error| engine_damaged(dir, format!("a record cannot be read ({error})")))?;
        let user = record::decode_key(&key)
            .map_err(|problem| engine_damaged(dir, format!("it holds {problem}")))?;
        let facts = record::decode_value(&value).map_err(|problem| {
            engine_damaged(
                dir,
                format!(
                    "the record of user '{}' (tenant '{}') is {problem}",
                    user.user, user.tenant
                ),
            )
        })?;
        visit(user, facts);
    }
    Ok(opened)
}

/// Reads every record beside the facts.
fn read_records(dir: &Path, opened: &Opened) -> Result<Vec<RecordWrite>, StoreError> {
    opened
        .records
        .iter()
        .map(|item| {
            item.into_inner()
                .map(|(key, value)| (key.to_vec(), Some(value.to_vec())))
                .map_err(|error| engine_damaged(dir, format!("a record cannot be read ({error})")))
        })
        .collect()
}

fn directory_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => directory_size(&entry.path()),
            // Allocated blocks, not the length: the engine sizes a new
            // journal at 64 MiB up front with a sparse `set_len`.
            Ok(metadata) => std::os::unix::fs::MetadataExt::blocks(&metadata) * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The bytes `dir` takes on disk (the blocks allocated to its files).
pub fn bytes_on_disk(dir: &Path) -> u64 {
    directory_size(dir)
}

/// Verifies a data directory without serving it: the lock is free, the
/// format is known, and every record reads back and decodes.
pub fn check(dir: &Path) -> Result<CheckSummary, StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::Io {
            dir: dir.to_path_buf(),
            problem: "it does not exist or is not a directory".into(),
        });
    }
    let _lock = layout::lock(dir)?;
    let format = match layout::read_format(dir)? {
        Some(found) if found > FORMAT_VERSION => {
            return Err(StoreError::NewerFormat {
                dir: dir.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        Some(format) => format,
        None => {
            return Err(StoreError::Io {
                dir: dir.to_path_buf(),
                problem: "it is not a presenced data directory (it has no FORMAT file)".into(),
            });
        }
    };
    let mut summary = CheckSummary {
        format,
        ..CheckSummary::default()
    };
    let opened = read_all(dir, |_, facts| {
        summary.records += 1;
        summary.users += u64::from(!facts.holds_nothing());
        summary.sessions += facts.sessions.len() as u64;
    })?;
    drop(opened);
    summary.bytes_on_disk = bytes_on_disk(dir);
    Ok(summary)
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` and reads it into memory. Blocks
    /// for as long as that takes; call it from a blocking context.
    pub fn open(dir: &Path, durability: Durability) -> Result<EmbeddedStore, StoreError> {
        let lock = layout::lock(dir)?;
        layout::check_or_mark_format(dir)?;
        let memory = MemoryStore::new();
        let opened = read_all(dir, |key, facts| memory.load(key, facts))?;
        memory.install_records(read_records(dir, &opened)?);
        let writer =
            Writer::start(layout::engine_path(dir), opened).map_err(|error| StoreError::Io {
                dir: dir.to_path_buf(),
                problem: format!("cannot start the writer thread: {error}"),
            })?;
        Ok(EmbeddedStore {
            dir: dir.to_path_buf(),
            memory,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            durability,
            writer,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn commit_counts(&self) -> CommitCounts {
        let counters = &self.writer.counters;
        CommitCounts {
            batches: counters.batches.load(Ordering::Relaxed),
            writes: counters.writes.load(Ordering::Relaxed),
            syncs: counters.syncs.load(Ordering::Relaxed),
            failures: counters.failures.load(Ordering::Relaxed),
        }
    }

    fn stripe(&self, key: &UserKey) -> &tokio::sync::Mutex<()> {
        &self.stripes[(self.hasher.hash_one(key) as usize) % STRIPES]
    }
}

/// What has to reach disk for `before` to become `after`.
enum Write {
    Put(Vec<u8>),
    Delete,
    Nothing,
}

fn write_for(before: Option<&UserFacts>, after: &UserFacts) -> Write {
    if after.holds_nothing() && after.sequence.value == 0 {
        // Nothing was ever shown: the memory store keeps no entry either.
        return if before.is_some() {
            Write::Delete
        } else {
            Write::Nothing
        };
    }
    if let Some(before) = before {
        // The same facts with an older sequence base give the same sequence
        // number at every later instant (the base only folds in changes time
        // made), so a change that moved nothing but the base, such as a tick
        // at a fade, need not be written.
        if before.same_facts(after) {
            return Write::Nothing;
        }
    }
    Write::Put(record::encode_value(after))
}

#[async_trait]
impl Facts for EmbeddedStore {
    async fn apply(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Applied, CommandError>, StoreError> {
        let _serialized = self.stripe(key).lock().await;
        let before = self.memory.facts_of(key);
        if before.is_some() || !matches!(command, Command::Tick) {
            let mut after = before.clone().unwrap_or_default();
            if let Err(refused) = apply(&mut after, command, now, timeouts) {
                return Ok(Err(refused));
            }
            // Ticks only reclaim: what they change is invisible to readers
            // (ended facts are hidden already, and the sequence number is
            // derived the same way from either record), and a restart ticks
            // every user again. So they need not wait for a sync.
            let wait = match (command, self.durability) {
                (Command::Tick, _) | (_, Durability::Relaxed) => Wait::Committed,
                (_, Durability::Strict) => Wait::Durable,
            };
            let value = match write_for(before.as_ref(), &after) {
                Write::Put(value) => Some(value),
                Write::Delete => None,
                Write::Nothing => return Ok(self.memory.apply_now(key, command, now, timeouts)),
            };
            // A new user is counted against the bound on users per tenant
            // before it is written (memory never runs ahead of disk, so the
            // memory store cannot refuse it after the commit), and the count
            // is taken back if the write fails.
            let creates = before.is_none() && value.is_some();
            if creates && !self.memory.admit_user(&key.tenant) {
                let limit = self.memory.user_limit();
                return Ok(Err(CommandError::TenantFull { limit }));
            }
            let writes = Writes::User {
                key: record::encode_key(key),
                value,
            };
            if let Err(error) = self.writer.write(writes, wait).await {
                if creates {
                    self.memory.release_user(&key.tenant);
                }
                return Err(StoreError::Unavailable(error));
            }
            if creates {
                return Ok(self.memory.apply_admitted(key, command, now, timeouts));
            }
        }
        // On disk now; the memory store applies the same pure command to the
        // same facts at the same instant and so arrives at the same record.
        Ok(self.memory.apply_now(key, command, now, timeouts))
    }

    async fn read(
        &self,
        keys: &[UserKey],
        visit: &mut (dyn for<'f> FnMut(usize, Option<&'f UserFacts>) + Send),
    ) -> Result<(), StoreError> {
        self.memory.read(keys, visit).await
    }

    async fn read_memos(
        &self,
        keys: &[UserKey],
        visit: &mut VisitMemo<'_>,
    ) -> Result<(), StoreError> {
        self.memory.read_memos(keys, visit).await
    }

    async fn scan(
        &self,
        visit: &mut (dyn for<'f> FnMut(&'f UserKey, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        self.memory.scan(visit).await
    }

    fn counts(&self) -> StoreCounts {
        self.memory.counts()
    }

    /// Exact, as the memory store's: new users of one tenant are counted
    /// one at a time, before their write.
    fn limit_users_per_tenant(&self, limit: Option<std::num::NonZeroU64>) {
        self.memory.limit_users_per_tenant(limit);
    }

    async fn scan_tenant(
        &self,
        tenant: &TenantId,
        visit: &mut (dyn for<'f> FnMut(&'f UserId, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        self.memory.scan_tenant(tenant, visit).await
    }
}

impl EmbeddedStore {
    /// Writes records beside the facts, then installs them in memory.
    /// `durable` waits for a sync under `--durability strict`.
    async fn put_records(&self, writes: Vec<RecordWrite>, durable: bool) -> Result<(), StoreError> {
        let wait = match (durable, self.durability) {
            (true, Durability::Strict) => Wait::Durable,
            _ => Wait::Committed,
        };
        self.writer
            .write(Writes::Records(writes.clone()), wait)
            .await
            .map_err(StoreError::Unavailable)?;
        self.memory.install_records(writes);
        Ok(())
    }
}

crate::forward_feed_and_due!(EmbeddedStore, |store| store.memory.feed(), |store| store
    .memory
    .due());

#[async_trait]
impl Subscriptions for EmbeddedStore {
    async fn put_subscription(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        self.put_records(
            vec![(subscriptions::subscription_key(id), Some(record))],
            true,
        )
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.put_records(self.memory.subscription_deletes(id), true)
            .await?;
        self.memory.timers().clear(id);
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.memory.subscription_records())
    }

    async fn put_marks(&self, marks: &[Mark]) -> Result<(), StoreError> {
        self.put_records(mark_writes(marks), false).await
    }

    async fn delete_marks(&self, subscription: &str, users: &[UserId]) -> Result<(), StoreError> {
        self.put_records(mark_deletes(subscription, users), false)
            .await
    }

    async fn marks(&self) -> Result<Vec<Mark>, StoreError> {
        Ok(self.memory.mark_records())
    }

    async fn set_timer(&self, id: &str, at: Instant) -> Result<(), StoreError> {
        self.memory.set_timer(id, at).await
    }

    async fn next_timer(&self) -> Result<Option<Instant>, StoreError> {
        self.memory.next_timer().await
    }

    async fn take_due_timers(&self, now: Instant) -> Result<Vec<(Instant, String)>, StoreError> {
        self.memory.take_due_timers(now).await
    }
}

#[cfg(test)]
mod tests;
