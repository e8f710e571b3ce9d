use std::sync::Arc;

use presence_core::{Command, Duration, Instant, Timeouts, UserFacts, UserKey};

use super::*;

use crate::conformance::{read_one, set_presence};

fn key(user: &str) -> UserKey {
    crate::conformance::key("default", user)
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens");
    crate::conformance::run_all(&store).await;
    assert!(crate::conformance::facts::hands_out_memos(&store).await);
}

#[tokio::test]
async fn passes_the_conformance_suite_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("opens");
    crate::conformance::run_all(&first).await;
    let mut before = Vec::new();
    first
        .scan(&mut |key, facts| before.push((key.clone(), facts.clone())))
        .await
        .expect("scans");
    let counts = first.counts();
    drop(first);

    let second = EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("reopens");
    let mut after = Vec::new();
    second
        .scan(&mut |key, facts| after.push((key.clone(), facts.clone())))
        .await
        .expect("scans");
    // Compared as readers see them: a tick that moved only the sequence base
    // in memory wrote nothing (the old base gives the same numbers).
    let later = Instant::from_unix_millis(50_000_000);
    let as_read = |mut users: Vec<(UserKey, UserFacts)>| {
        users.sort_by(|a, b| a.0.cmp(&b.0));
        users
            .into_iter()
            .map(|(key, mut facts)| {
                let sequence = presence_core::sequence_at(&facts, later, Timeouts::default());
                facts.sequence = Default::default();
                (key, facts, sequence)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        as_read(after),
        as_read(before),
        "every record, tombstones included, comes back"
    );
    assert_eq!(second.counts(), counts);
}

#[tokio::test]
async fn concurrent_writes_to_different_users_share_syncs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens"));
    let now = Instant::from_unix_millis(1_000_000);
    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..512 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .apply(
                    &key(&format!("user{user}")),
                    &set_presence("app", 60),
                    now,
                    Timeouts::default(),
                )
                .await
                .expect("store works")
                .expect("applies");
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("no panic");
    }
    let counts = store.commit_counts();
    assert_eq!(counts.writes, 512);
    assert!(
        counts.syncs < 512 / 4,
        "512 concurrent writes took {} syncs: they were not grouped",
        counts.syncs
    );
    assert_eq!(store.counts().sessions, 512);
}

#[tokio::test]
async fn strict_writes_are_synced_before_they_are_answered() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens");
    for user in 0..3 {
        store
            .apply(
                &key(&format!("user{user}")),
                &set_presence("app", 60),
                Instant::from_unix_millis(1_000_000),
                Timeouts::default(),
            )
            .await
            .expect("store works")
            .expect("applies");
        let counts = store.commit_counts();
        assert!(
            counts.syncs > user,
            "write {user} was answered before a sync: {counts:?}"
        );
    }
}

#[tokio::test]
async fn relaxed_writes_are_synced_together_within_the_interval() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("opens");
    let writes = 5;
    for user in 0..writes {
        store
            .apply(
                &key(&format!("user{user}")),
                &set_presence("app", 60),
                Instant::from_unix_millis(1_000_000),
                Timeouts::default(),
            )
            .await
            .expect("store works")
            .expect("applies");
    }
    let answered = std::time::Instant::now();
    // The periodic sync comes SYNC_INTERVAL after the first unsynced
    // commit, however busy the machine; the guard only stops a hang.
    while store.commit_counts().syncs == 0 {
        assert!(
            answered.elapsed() < std::time::Duration::from_secs(60),
            "no periodic sync at all after a relaxed write"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let counts = store.commit_counts();
    assert!(
        counts.syncs < writes,
        "relaxed writes were synced one by one: {counts:?}"
    );
}

#[tokio::test]
async fn writes_to_one_user_are_serialized() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens"));
    let now = Instant::from_unix_millis(1_000_000);
    let mut tasks = tokio::task::JoinSet::new();
    // 64 sessions of one user created at once: a lost update would drop one.
    for session in 0..64 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .apply(
                    &key("alice"),
                    &set_presence(&format!("app{session}"), 60),
                    now,
                    Timeouts::default(),
                )
                .await
                .expect("store works")
                .expect("applies");
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("no panic");
    }
    let facts = read_one(store.as_ref(), &key("alice")).await.expect("held");
    assert_eq!(facts.sessions.len(), 64);
    drop(store);
    let reopened = EmbeddedStore::open(dir.path(), Durability::Strict).expect("reopens");
    assert_eq!(read_one(&reopened, &key("alice")).await, Some(facts));
}

#[tokio::test]
async fn a_pruned_user_keeps_a_tombstone_so_the_sequence_never_goes_back() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let timeouts = Timeouts::default();
    let start = Instant::from_unix_millis(1_000_000);
    let store = EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens");
    store
        .apply(&key("bob"), &set_presence("app", 5), start, timeouts)
        .await
        .expect("works")
        .expect("applies");
    let expired = start.saturating_add(Duration::from_mins(5));
    store
        .apply(&key("bob"), &Command::Tick, expired, timeouts)
        .await
        .expect("works")
        .expect("applies");
    let tombstone = read_one(&store, &key("bob")).await.expect("kept");
    assert!(tombstone.holds_nothing());
    assert_eq!(tombstone.sequence.value, 2, "set, then expired");
    drop(store);
    let reopened = EmbeddedStore::open(dir.path(), Durability::Strict).expect("reopens");
    assert_eq!(read_one(&reopened, &key("bob")).await, Some(tombstone));
    assert_eq!(reopened.counts(), StoreCounts::default());
}

#[tokio::test]
async fn a_tick_that_only_moves_the_sequence_base_writes_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let timeouts = Timeouts::default();
    let start = Instant::from_unix_millis(1_000_000);
    let store = EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens");
    store
        .apply(&key("carol"), &set_presence("app", 60), start, timeouts)
        .await
        .expect("works")
        .expect("applies");
    let writes = store.commit_counts().writes;
    let fade = start.saturating_add(Duration::from_mins(5));
    store
        .apply(&key("carol"), &Command::Tick, fade, timeouts)
        .await
        .expect("works")
        .expect("applies");
    assert_eq!(
        store.commit_counts().writes,
        writes,
        "a fade prunes nothing"
    );
}

#[tokio::test]
async fn rewriting_the_same_users_keeps_the_directory_bounded() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("opens"));
    let timeouts = Timeouts::default();
    let users = 1_000;
    // A long status message makes each record about a kilobyte, so that the
    // test writes several times what the engine keeps in its journals (it
    // starts a new journal at 64 MB and deletes the old one once flushed)
    // in a few seconds.
    let message = Command::SetStatusMessage(Some(presence_core::StatusMessageInput {
        content: "x".repeat(950),
        expiry: None,
    }));
    for user in 0..users {
        store
            .apply(
                &key(&format!("user{user}")),
                &message,
                Instant::from_unix_millis(1_000_000),
                timeouts,
            )
            .await
            .expect("store works")
            .expect("applies");
    }
    let rounds = 600;
    let mut sizes = Vec::new();
    for round in 0..rounds {
        let now = Instant::from_unix_millis(2_000_000 + round * 1_000);
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in 0..8 {
            let store = store.clone();
            tasks.spawn(async move {
                for user in (chunk..users).step_by(8) {
                    store
                        .apply(
                            &key(&format!("user{user}")),
                            &set_presence("app", 60),
                            now,
                            timeouts,
                        )
                        .await
                        .expect("store works")
                        .expect("applies");
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.expect("no panic");
        }
        if round % 10 == 9 {
            sizes.push(bytes_on_disk(dir.path()));
        }
    }
    let written_records = store.commit_counts().writes;
    assert_eq!(written_records, (users * (rounds as usize + 1)) as u64);
    let written_bytes = written_records * 1_000;
    let mebibytes: Vec<u64> = sizes.iter().map(|size| size >> 20).collect();
    // Bounded: a journal is closed at 64 MB and deleted once every
    // memtable holding its writes is flushed. Flushes run on fjall's
    // nicer workers, which a writer that keeps both cores busy (as this
    // test and the tests beside it do) can hold back; fjall then halts
    // writes while four sealed memtables wait. So at most 64 MB plus five
    // memtables' worth of journal (four sealed and the active one), and
    // the tables (a few MiB here).
    let bound = (64 << 20) + 5 * writer::MEMTABLE_BYTES + (16 << 20);
    let largest = sizes.iter().copied().max().unwrap_or_default();
    assert!(
        written_bytes > 2 * bound,
        "the test must write more than twice the bound; it wrote {} MiB (MiB on disk every 10 rounds: {mebibytes:?})",
        written_bytes >> 20
    );
    assert!(
        largest < bound,
        "the directory grew to {} MiB after about {} MiB written (MiB every 10 rounds: {mebibytes:?})",
        largest >> 20,
        written_bytes >> 20
    );
    // And reclaimed over and over, not only once: the size falls back
    // (an old journal deleted) at least every 64 MB or so of writes.
    let reclaims = sizes.windows(2).filter(|pair| pair[1] < pair[0]).count();
    assert!(
        reclaims >= 3,
        "space was reclaimed only {reclaims} times (MiB every 10 rounds: {mebibytes:?})"
    );
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let _first = EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens");
    let second = EmbeddedStore::open(dir.path(), Durability::Strict);
    let error = second.expect_err("refused");
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("another presenced"), "{error}");
}

#[tokio::test]
async fn a_damaged_record_refuses_the_start_and_fails_the_check() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let store = EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens");
        store
            .apply(
                &key("dave"),
                &set_presence("app", 60),
                Instant::from_unix_millis(1_000_000),
                Timeouts::default(),
            )
            .await
            .expect("works")
            .expect("applies");
    }
    let summary = check(dir.path()).expect("healthy");
    assert_eq!(
        (summary.records, summary.users, summary.sessions),
        (1, 1, 1)
    );
    {
        // A record of a format this presenced does not know, as a newer
        // presenced or a damaged block would leave.
        let opened = writer::open_engine(&layout::engine_path(dir.path())).expect("opens");
        opened
            .users
            .insert(
                record::encode_key(&key("dave")),
                vec![RECORD_VERSION + 7, 1, 2],
            )
            .expect("writes");
        opened
            .database
            .persist(fjall::PersistMode::SyncAll)
            .expect("syncs");
    }
    let error = EmbeddedStore::open(dir.path(), Durability::Strict).expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("dave") && message.contains("engine"),
        "{message}"
    );
    assert!(message.contains("backup"), "says what to do: {message}");
    assert!(check(dir.path()).is_err());
}

#[tokio::test]
async fn subscriptions_and_marks_survive_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = EmbeddedStore::open(dir.path(), Durability::Strict).expect("opens");
    first
        .put_subscription("a", b"kept".to_vec())
        .await
        .expect("writes");
    first
        .put_subscription("b", b"deleted".to_vec())
        .await
        .expect("writes");
    let mark = crate::Mark {
        subscription: "a".into(),
        user: presence_core::UserId::parse("alice").expect("valid"),
        sequence: 9,
    };
    first
        .put_marks(std::slice::from_ref(&mark))
        .await
        .expect("writes");
    first.delete_subscription("b").await.expect("writes");
    drop(first);
    let second = EmbeddedStore::open(dir.path(), Durability::Strict).expect("reopens");
    assert_eq!(
        second.subscriptions().await.expect("reads"),
        vec![("a".to_string(), b"kept".to_vec())]
    );
    assert_eq!(second.marks().await.expect("reads"), vec![mark]);
}

#[tokio::test]
async fn the_users_of_a_tenant_are_counted_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(1_000_000);
    let first = EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("opens");
    for user in ["a", "b"] {
        first
            .apply(&key(user), &set_presence("app", 60), now, timeouts)
            .await
            .expect("store works")
            .expect("applies");
    }
    drop(first);
    let second = EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("reopens");
    second.limit_users_per_tenant(std::num::NonZeroU64::new(2));
    assert_eq!(
        second
            .apply(&key("c"), &set_presence("app", 60), now, timeouts)
            .await
            .expect("store works"),
        Err(CommandError::TenantFull { limit: 2 }),
        "the two users written before the restart count"
    );
    second
        .apply(&key("a"), &set_presence("other", 60), now, timeouts)
        .await
        .expect("store works")
        .expect("a user held is still written");
    drop(second);
    let third = EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("reopens");
    assert_eq!(
        read_one(&third, &key("c")).await,
        None,
        "nothing was written"
    );
}

/// fjall frees a flushed memtable under the lock every insert takes, which
/// stalled commits for as long as the free took (70 to 210 ms for a full
/// one); the writer holds its own reference to each memtable so that the
/// last one is its own, and frees it on another thread. Rotations are
/// forced here rather than waited for, so the test writes little.
#[tokio::test]
async fn the_writer_frees_sealed_memtables_itself() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("engine");
    let opened = writer::open_engine(&path).expect("opens");
    let writer = writer::Writer::start(path, opened.clone()).expect("starts");
    let write = |user: u32| writer::Writes::User {
        key: format!("user{user}").into_bytes(),
        value: Some(vec![7; 100]),
    };
    writer
        .write(write(0), writer::Wait::Durable)
        .await
        .expect("writes");
    let mut rotations = 0;
    // fjall lets go of a flushed memtable once it collects the versions of
    // the tree that still list it, at a later rotation or flush.
    while writer.counters.memtables_freed.load(Ordering::Relaxed) == 0 && rotations < 20 {
        opened.users.rotate_memtable_and_wait().expect("flushes");
        rotations += 1;
        writer
            .write(write(rotations), writer::Wait::Durable)
            .await
            .expect("writes");
        // The freeing thread counts after the drop; give it its turn.
        for _ in 0..100 {
            if writer.counters.memtables_freed.load(Ordering::Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let freed = writer.counters.memtables_freed.load(Ordering::Relaxed);
    assert!(
        freed >= 1 && freed <= rotations as u64,
        "{freed} memtables freed by the writer after {rotations} rotations"
    );
    // Every write is still there.
    drop(writer);
    for user in 0..=rotations {
        assert!(
            opened
                .users
                .get(format!("user{user}"))
                .expect("reads")
                .is_some(),
            "user{user} was written"
        );
    }
}

#[cfg(target_os = "linux")]
/// The niceness of each of this process's threads named `name`, read from
/// `/proc/self/task/*/stat` (the 19th field; the name, the 2nd, may hold
/// spaces, so fields are counted from the closing parenthesis after it).
fn niceness_of_threads(name: &str) -> Vec<i32> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task lists threads");
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            // A thread may end between the listing and the reads.
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            (comm.trim_end() == name).then_some(stat)
        })
        .map(|stat| {
            let after_name = &stat[stat.rfind(')').expect("a stat line names its thread") + 1..];
            let nice = after_name
                .split_whitespace()
                .nth(16)
                .expect("a stat line has its niceness");
            nice.parse().expect("niceness is a number")
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn the_engines_workers_run_nicer_than_the_thread_that_opens_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let before = rustix::process::getpriority_process(None).expect("reads this thread's niceness");
    let opened = writer::open_engine(&layout::engine_path(dir.path())).expect("opens");
    assert_eq!(
        rustix::process::getpriority_process(None).expect("reads this thread's niceness"),
        before,
        "the opening thread keeps its niceness"
    );
    let workers = niceness_of_threads("fjall:worker");
    assert!(!workers.is_empty(), "fjall started its workers");
    // Every engine of this process is opened the same way, so every worker
    // is nicer, whichever test's engine it belongs to.
    assert!(
        workers.iter().all(|&nice| nice == (before + 10).min(19)),
        "workers' niceness {workers:?}, the opener's {before}"
    );
    drop(opened);
}
