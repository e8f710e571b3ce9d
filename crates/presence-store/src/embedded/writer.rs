//! The one writer: a thread that owns the engine's write side and turns
//! whatever writes are waiting into one batch, one commit and one sync
//! (group commit).
//!
//! A durable commit costs one `fsync` whether it carries one write or a
//! thousand, so under load the writes that arrive while one sync is running
//! all go into the next: the cost per write falls as the load rises. Each
//! caller waits on its own oneshot channel and is answered when its batch is
//! as durable as it asked for:
//! - [`Wait::Durable`]: after the batch is synced (strict durability);
//! - [`Wait::Committed`]: after the batch is in the journal and handed to
//!   the operating system, which survives the process being killed but not
//!   the machine losing power; a periodic sync, at most [`SYNC_INTERVAL`]
//!   later, bounds that window (relaxed durability, and scheduler ticks,
//!   which change nothing a reader can tell apart).
//!
//! A thread rather than a task: commits and syncs block, and a dedicated
//! thread keeps them off the async workers that serve requests.
//!
//! fjall frees a flushed memtable while it holds the lock every insert
//! needs (see [`MemtableReaper`]), so the writer keeps its own reference to
//! each memtable and lets a thread of its own free it instead.
//!
//! After any engine error (a full disk, an IO error) the engine is closed
//! and reopened before the next batch: fjall refuses further writes once a
//! journal write has failed, and reopening recovers its journal exactly as a
//! restart would, truncating whatever half-written batch the failure left.
//! Until the reopen succeeds every write is answered with the error; once
//! the disk works again, writes work again, with no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::config::{CompressionPolicy, FilterPolicy};
use fjall::{
    AbstractTree, CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode,
};

/// How long a committed write may wait for its sync in relaxed mode.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// A batch of durable writes smaller than this waits [`GATHER_FOR`] for
/// more before it is committed and synced (as PostgreSQL's `commit_delay`).
const GATHER_BELOW: usize = 64;
const GATHER_FOR: Duration = Duration::from_micros(200);

/// The most writes put in one batch: enough to amortize a sync over any
/// realistic burst, small enough that one batch never holds much memory.
const MAX_BATCH: usize = 8_192;

/// The engine's memtable size: half of fjall's 64 MiB default, to bound the
/// engine's memory beside the memory store's. It does not bound the disk:
/// fjall starts a new journal (which holds every superseded version of a
/// record until its memtable is flushed) once the current one passes 64 MB,
/// whatever this is, and deletes old ones once flushed.
pub const MEMTABLE_BYTES: u64 = 32 * 1024 * 1024;

const USERS_KEYSPACE: &str = "users";
/// The records beside the facts (`Store::put_records`).
const RECORDS_KEYSPACE: &str = "records";

/// How long a write waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Durable,
    Committed,
}

/// What one job writes: one user's record to put (`Some`) or delete
/// (`None`), or any number of records beside the facts, all in the same
/// batch.
#[derive(Debug)]
pub enum Writes {
    User {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    Records(Vec<crate::RecordWrite>),
}

/// One write, and where its answer goes.
#[derive(Debug)]
pub struct Job {
    pub writes: Writes,
    pub wait: Wait,
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The engine, open.
#[derive(Clone)]
pub struct Opened {
    pub database: Database,
    pub users: Keyspace,
    pub records: Keyspace,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Opened").finish_non_exhaustive()
    }
}

/// How much nicer than the thread that opens the engine fjall's worker
/// threads are: they flush memtables and compact tables in the background,
/// each job tens to hundreds of milliseconds of CPU. At the same priority
/// such a job takes a core from the threads answering requests for that
/// long, and every request waiting on them is late by as much. Ten steps
/// nicer, the scheduler gives them about a tenth of a contended core and
/// the whole of an idle one.
#[cfg(target_os = "linux")]
const ENGINE_WORKERS_NICER_BY: i32 = 10;

/// The highest niceness Linux has.
#[cfg(target_os = "linux")]
const NICEST: i32 = 19;

/// Opens the engine. fjall starts its worker threads in `open`, and a new
/// thread takes the niceness of the thread that starts it (on Linux
/// niceness is per thread), so the engine is opened from a thread of its
/// own made [`ENGINE_WORKERS_NICER_BY`] nicer; the writer and the request
/// workers keep theirs. Where the niceness cannot be changed (or off
/// Linux), the workers run at the opener's. The journal's recovery in
/// `open` runs on that nicer thread too: on a busy host, a start-up
/// recovers more slowly.
pub fn open_engine(path: &Path) -> fjall::Result<Opened> {
    std::thread::scope(|scope| {
        let opener = std::thread::Builder::new()
            .name("fjall:open".to_string())
            .spawn_scoped(scope, || {
                make_this_thread_nicer();
                open_engine_here(path)
            })
            .map_err(fjall::Error::Io)?;
        opener
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Makes the calling thread [`ENGINE_WORKERS_NICER_BY`] nicer. Only on
/// Linux, where niceness is per thread: elsewhere `setpriority` would make
/// the whole process nicer, the request path included.
fn make_this_thread_nicer() {
    #[cfg(target_os = "linux")]
    {
        let nicer = rustix::process::getpriority_process(None).and_then(|niceness| {
            let nicer = (niceness + ENGINE_WORKERS_NICER_BY).min(NICEST);
            rustix::process::setpriority_process(None, nicer)
        });
        if let Err(error) = nicer {
            tracing::warn!(%error, "the engine's workers run at the writer's niceness");
        }
    }
}

fn open_engine_here(path: &Path) -> fjall::Result<Opened> {
    let database = Database::builder(path).open()?;
    let users = database.keyspace(USERS_KEYSPACE, || {
        KeyspaceCreateOptions::default()
            .max_memtable_size(MEMTABLE_BYTES)
            // fjall compresses only from the third level down by default;
            // a million users with one session each sit in the first two,
            // where LZ4 halves them (the repeated tenant, application ids
            // and instant prefixes).
            .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
            // Filters speed up point reads, and this store makes none: every
            // read is served from memory, and the engine is only scanned at
            // start-up.
            .filter_policy(FilterPolicy::disabled())
    })?;
    let records = database.keyspace(RECORDS_KEYSPACE, || {
        KeyspaceCreateOptions::default().filter_policy(FilterPolicy::disabled())
    })?;
    Ok(Opened {
        database,
        users,
        records,
    })
}

/// Counts for tests and metrics.
#[derive(Debug, Default)]
pub struct WriterCounters {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Writes committed.
    pub writes: AtomicU64,
    /// Syncs done (each makes every write committed before it durable).
    pub syncs: AtomicU64,
    /// Batches or syncs that failed.
    pub failures: AtomicU64,
    /// Sealed memtables freed by the writer's own thread rather than by
    /// fjall (see [`MemtableReaper`]).
    pub memtables_freed: AtomicU64,
}

/// The writer's metrics, each resolved once from the recorder installed
/// when the store opens. A `metrics::histogram!` at every use looks its
/// name up in the recorder's registry each time: with one connection
/// (a batch per write) the four of them were about 2,900 of a durable
/// write's 62,000 instructions (callgrind). Resolved here, a use is a
/// record into the histogram, as the HTTP layer's handles are.
#[derive(Clone, Debug)]
struct WriterMetrics {
    /// From the queue to the answer back on the runtime, per write.
    write_seconds: metrics::Histogram,
    batch_writes: metrics::Histogram,
    commit_seconds: metrics::Histogram,
    sync_seconds: metrics::Histogram,
    write_failures: metrics::Counter,
}

impl WriterMetrics {
    fn resolve() -> WriterMetrics {
        WriterMetrics {
            write_seconds: metrics::histogram!("presenced_store_write_seconds"),
            batch_writes: metrics::histogram!("presenced_store_batch_writes"),
            commit_seconds: metrics::histogram!("presenced_store_commit_seconds"),
            sync_seconds: metrics::histogram!("presenced_store_sync_seconds"),
            write_failures: metrics::counter!("presenced_store_write_failures_total"),
        }
    }
}

/// A memtable, without naming lsm-tree's type (fjall does not re-export
/// it): only its reference count matters here.
type HeldMemtable = Arc<dyn std::any::Any + Send + Sync>;

/// Keeps a reference to each keyspace's memtable, so that the last
/// reference to a flushed one is the writer's and not fjall's, and frees it
/// on a thread of its own.
///
/// Why: fjall (lsm-tree 3.1) drops a flushed memtable when it garbage
/// collects old versions of a tree (`SuperVersions::maintenance`, called
/// from `Keyspace::inner_rotate_memtable` and after flushes and
/// compactions), and it does so while holding the tree's version-history
/// write lock, which every insert into a memtable takes to read. Freeing a
/// full 32 MiB memtable is some 200,000 skiplist nodes with their keys and
/// values. On the two-core bench machine, a stress of this writer's batches
/// (18,000 durable writes a second for 40 s, system allocator) had the lock
/// held 110 to 210 ms once per memtable, and a commit waiting for it each
/// time: 4 commits over 50 ms, the longest 131 to 202 ms. With the free done
/// here the same drops took 180 to 370 ms on the freeing thread, and no
/// commit took over 50 ms (the longest 26 ms, a flush's or compaction's
/// version change, which fjall also makes under that lock but which costs
/// only a few fsyncs of small files).
///
/// It relies on fjall's `Keyspace::tree`, public but hidden from its docs;
/// a fjall that drops it fails to build here rather than misbehaving.
struct MemtableReaper {
    /// Per keyspace (users, records): the id of the active memtable last
    /// seen and a reference to it.
    active: [Option<(u64, HeldMemtable)>; 2],
    /// Memtables sealed since, held until fjall lets go of them.
    sealed: Vec<HeldMemtable>,
    /// To the thread that frees them; `None` if it could not be started,
    /// and then fjall frees them as before.
    freeing: Option<mpsc::Sender<HeldMemtable>>,
}

impl MemtableReaper {
    fn start(counters: Arc<WriterCounters>) -> MemtableReaper {
        let (sender, receiver) = mpsc::channel::<HeldMemtable>();
        let spawned = std::thread::Builder::new()
            .name("presenced-store-memtable-free".into())
            .spawn(move || {
                for memtable in receiver {
                    drop(memtable);
                    counters.memtables_freed.fetch_add(1, Ordering::Relaxed);
                }
            });
        let freeing = match spawned {
            Ok(_) => Some(sender),
            Err(error) => {
                tracing::warn!(%error, "no thread to free memtables: fjall frees them itself");
                None
            }
        };
        MemtableReaper {
            active: [None, None],
            sealed: Vec::new(),
            freeing,
        }
    }

    /// After a commit: takes a reference to any new active memtable, and
    /// hands to the freeing thread every sealed one that only the writer
    /// still holds. Cheap: a read lock and a reference count per keyspace.
    fn observe(&mut self, opened: &Opened) {
        let Some(freeing) = &self.freeing else { return };
        for (keyspace, seen) in [&opened.users, &opened.records]
            .into_iter()
            .zip(self.active.iter_mut())
        {
            let memtable = keyspace.tree.active_memtable();
            let id = memtable.id();
            if seen.as_ref().is_some_and(|(seen_id, _)| *seen_id == id) {
                continue;
            }
            if let Some((_, previous)) = seen.replace((id, memtable)) {
                self.sealed.push(previous);
            }
        }
        let (released, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sealed)
            .into_iter()
            .partition(|memtable| Arc::strong_count(memtable) == 1);
        self.sealed = held;
        for memtable in released {
            // Only this reference is left, so fjall cannot take another:
            // moved (not cloned) to the freeing thread, it is freed there.
            let _ = freeing.send(memtable);
        }
    }
}

#[derive(Debug)]
struct Engine {
    path: PathBuf,
    /// `None` after an error, until reopened.
    open: Option<Opened>,
}

impl Engine {
    fn opened(&mut self) -> Result<&Opened, String> {
        if self.open.is_none() {
            let opened = open_engine(&self.path)
                .map_err(|error| format!("reopening the engine failed: {error}"))?;
            tracing::info!(path = %self.path.display(), "the embedded store's engine is open again");
            self.open = Some(opened);
        }
        self.open
            .as_ref()
            .ok_or_else(|| "the engine is closed".to_string())
    }

    fn commit(&mut self, jobs: &mut [Job]) -> Result<(), String> {
        let opened = self.opened()?;
        let mut batch = opened.database.batch();
        for job in jobs.iter_mut() {
            match &mut job.writes {
                Writes::User { key, value } => {
                    let key = std::mem::take(key);
                    match value.take() {
                        Some(value) => batch.insert(&opened.users, key, value),
                        None => batch.remove(&opened.users, key),
                    }
                }
                Writes::Records(writes) => {
                    for (key, value) in std::mem::take(writes) {
                        match value {
                            Some(value) => batch.insert(&opened.records, key, value),
                            None => batch.remove(&opened.records, key),
                        }
                    }
                }
            }
        }
        let result = batch.commit();
        self.fail_on_error(result)
    }

    fn sync(&mut self) -> Result<(), String> {
        let opened = self.opened()?;
        let result = opened.database.persist(PersistMode::SyncAll);
        self.fail_on_error(result)
    }

    fn fail_on_error(&mut self, result: fjall::Result<()>) -> Result<(), String> {
        result.map_err(|error| {
            // Closed now, reopened before the next batch.
            self.open = None;
            format!("writing to the engine failed: {error}")
        })
    }
}

/// The handle the store writes through; dropping it stops the thread after
/// a last sync.
#[derive(Debug)]
pub struct Writer {
    sender: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<WriterCounters>,
    metrics: WriterMetrics,
}

impl Writer {
    pub fn start(path: PathBuf, opened: Opened) -> std::io::Result<Writer> {
        let (sender, receiver) = mpsc::channel();
        let counters = Arc::new(WriterCounters::default());
        let engine = Engine {
            path,
            open: Some(opened),
        };
        let thread_counters = counters.clone();
        let metrics = WriterMetrics::resolve();
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("presenced-store-writer".into())
            .spawn(move || run(engine, receiver, &thread_counters, &thread_metrics))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            counters,
            metrics,
        })
    }

    /// Queues one write and waits for its answer.
    pub async fn write(&self, writes: Writes, wait: Wait) -> Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            writes,
            wait,
            reply,
        };
        let queued = Instant::now();
        self.sender
            .as_ref()
            .ok_or_else(|| "the store is closed".to_string())?
            .send(job)
            .map_err(|_| "the store's writer has stopped".to_string())?;
        let answered = answer
            .await
            .map_err(|_| "the store's writer stopped before answering".to_string())?;
        // From the queue to the answer back on the runtime: with the
        // commit's and the sync's own histograms, where a slow write waited.
        self.metrics
            .write_seconds
            .record(queued.elapsed().as_secs_f64());
        answered
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; it syncs on the way out.
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(jobs: Vec<Job>, result: &Result<(), String>) {
    for job in jobs {
        // A caller that stopped waiting (its request was cancelled) no longer
        // cares; its write is done all the same.
        let _ = job.reply.send(result.clone());
    }
}

/// Takes whatever is waiting, up to [`MAX_BATCH`].
fn drain(receiver: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

fn run(
    mut engine: Engine,
    receiver: mpsc::Receiver<Job>,
    counters: &Arc<WriterCounters>,
    metrics: &WriterMetrics,
) {
    // When the oldest committed-but-unsynced write was committed.
    let mut unsynced_since: Option<Instant> = None;
    let mut reaper = MemtableReaper::start(counters.clone());
    loop {
        let first = match unsynced_since {
            None => receiver
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(since) => receiver.recv_timeout(SYNC_INTERVAL.saturating_sub(since.elapsed())),
        };
        let first = match first {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                match engine.sync() {
                    Ok(()) => {
                        counters.syncs.fetch_add(1, Ordering::Relaxed);
                        unsynced_since = None;
                    }
                    Err(error) => {
                        counters.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, "the periodic sync failed; retrying");
                        // Try again after another interval, not in a tight loop.
                        unsynced_since = Some(Instant::now());
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        drain(&receiver, &mut jobs);
        if jobs.len() < GATHER_BELOW && jobs.iter().any(|job| job.wait == Wait::Durable) {
            // A sync is coming anyway: let more writes join it. Sleeping
            // rather than waiting on the channel means the writes that arrive
            // meanwhile wake nobody, which is most of what a write costs.
            std::thread::sleep(GATHER_FOR);
            drain(&receiver, &mut jobs);
        }
        metrics.batch_writes.record(jobs.len() as f64);
        let commit_started = Instant::now();
        let committed = engine.commit(&mut jobs);
        metrics
            .commit_seconds
            .record(commit_started.elapsed().as_secs_f64());
        if let Err(error) = &committed {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            metrics.write_failures.increment(1);
            tracing::error!(%error, writes = jobs.len(), "a batch of writes failed");
            answer(jobs, &committed);
            continue;
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .writes
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        if let Some(opened) = &engine.open {
            reaper.observe(opened);
        }
        let (durable, committed_only): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|job| job.wait == Wait::Durable);
        answer(committed_only, &Ok(()));
        if durable.is_empty() {
            unsynced_since.get_or_insert_with(Instant::now);
            continue;
        }
        let sync_started = Instant::now();
        let synced = engine.sync();
        metrics
            .sync_seconds
            .record(sync_started.elapsed().as_secs_f64());
        match &synced {
            Ok(()) => {
                counters.syncs.fetch_add(1, Ordering::Relaxed);
                unsynced_since = None;
            }
            Err(error) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                metrics.write_failures.increment(1);
                tracing::error!(%error, writes = durable.len(), "syncing a batch failed");
            }
        }
        answer(durable, &synced);
    }
    if unsynced_since.is_some()
        && let Err(error) = engine.sync()
    {
        tracing::error!(%error, "the last sync before closing failed");
    }
    // Flush the memtable into a table on a clean stop, so that the next
    // start reads tables instead of replaying the journal.
    if let Some(opened) = &engine.open
        && let Err(error) = opened.users.rotate_memtable_and_wait()
    {
        tracing::warn!(%error, "flushing the memtable before closing failed");
    }
}
