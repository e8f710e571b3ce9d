//! The Redis backend against real `redis-server` processes: the
//! conformance suites on a standalone server and on a 3-primary,
//! 3-replica cluster, and what only a shared backend must show (no lost
//! update between nodes, fencing, resuming a cursor on another node).
//! Each test function starts its own servers, so they run in parallel.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration as StdDuration;

use presence_core::{Command, Duration, Instant, SessionState, Timeouts};
use presenced_testkit::{RedisCluster, RedisServer};

use super::{RedisOptions, RedisStore};
use crate::conformance::{key, read_one, run_all, set_presence};
use crate::{ChangeFeed, DueIndex, Facts, StoreError, Subscriptions};

/// A keyspace of its own for each store a test opens.
fn options(urls: Vec<String>) -> RedisOptions {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut options = RedisOptions::new(urls);
    options.prefix = format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    options
}

async fn open(options: &RedisOptions) -> RedisStore {
    RedisStore::connect(options.clone())
        .await
        .expect("connects")
}

/// Everything a shared backend must show, on one Redis (standalone or
/// cluster).
async fn shows_everything(urls: Vec<String>) {
    let shared = options(urls.clone());
    let store = open(&shared).await;
    run_all(&store).await;
    // The same keyspace opened by another node (or after a restart) holds
    // the same, and its counts agree once refreshed.
    let scan = |store: RedisStore| async move {
        let mut all = Vec::new();
        store
            .scan(&mut |key, facts| all.push((key.clone(), facts.clone())))
            .await
            .expect("scans");
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let other = open(&shared).await;
    let held = scan(store.clone()).await;
    assert!(
        held.len() >= 8,
        "the suites' users are held: {}",
        held.len()
    );
    assert_eq!(scan(other.clone()).await, held);
    assert_eq!(other.counts(), store.counts());

    throttling_limits_are_shared(&store, &other).await;
    concurrent_writers_on_two_nodes_lose_nothing(&options(urls.clone())).await;
    the_bound_on_users_holds_across_nodes(&options(urls.clone())).await;
    a_stale_owner_is_fenced(&options(urls.clone())).await;
    a_taken_user_comes_back_if_never_ticked(&options(urls.clone())).await;
    a_cursor_resumes_on_another_node(&options(urls.clone())).await;
    settings_are_recorded_and_checked(&options(urls.clone())).await;
    a_different_partition_count_is_refused(&options(urls)).await;
}

async fn concurrent_writers_on_two_nodes_lose_nothing(options: &RedisOptions) {
    let nodes = [open(options).await, open(options).await];
    let now = Instant::from_unix_millis(90_000_000);
    let timeouts = Timeouts::default();
    let users: Vec<_> = (0..8).map(|n| key("race", &format!("u{n}"))).collect();
    // Sixteen sessions per user, set at once from two nodes.
    let writes = (0..16).flat_map(|session| {
        let node = &nodes[session % 2];
        users.iter().map(move |user| async move {
            node.apply(
                user,
                &set_presence(&format!("s{session}"), 60),
                now,
                timeouts,
            )
            .await
            .expect("store works")
            .expect("applies")
        })
    });
    futures_util::future::join_all(writes).await;
    for user in &users {
        let facts = read_one(&nodes[0], user).await.expect("held");
        assert_eq!(
            facts.sessions.len(),
            16,
            "every session of {user:?} is held"
        );
        assert_eq!(facts.sequence.value, 1, "one visible change: Available");
    }
}

/// Two nodes add new users to one tenant at once: exactly the bound is
/// admitted, whichever node each write goes through.
async fn the_bound_on_users_holds_across_nodes(options: &RedisOptions) {
    let nodes = [open(options).await, open(options).await];
    for node in &nodes {
        node.limit_users_per_tenant(std::num::NonZeroU64::new(5));
    }
    let now = Instant::from_unix_millis(95_000_000);
    let timeouts = Timeouts::default();
    let writes = (0..20).map(|n| {
        let node = &nodes[n % 2];
        async move {
            node.apply(
                &key("crowded", &format!("u{n}")),
                &set_presence("app", 60),
                now,
                timeouts,
            )
            .await
            .expect("store works")
        }
    });
    let answers = futures_util::future::join_all(writes).await;
    let admitted = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(admitted, 5, "{answers:?}");
    assert!(answers.iter().all(|answer| matches!(
        answer,
        Ok(_) | Err(presence_core::CommandError::TenantFull { limit: 5 })
    )));
    let mut held = 0;
    nodes[1]
        .scan_tenant(
            &presence_core::TenantId::parse("crowded").expect("valid"),
            &mut |_, _| held += 1,
        )
        .await
        .expect("scans");
    assert_eq!(held, 5, "only the admitted users are written");
}

async fn a_stale_owner_is_fenced(options: &RedisOptions) {
    let (old, new) = (open(options).await, open(options).await);
    let user = key("fence", "paused");
    let partition = old.partition_of(&user);
    let now = Instant::from_unix_millis(100_000_000);
    let timeouts = Timeouts::default();
    old.apply(&user, &set_presence("app", 5), now, timeouts)
        .await
        .expect("works")
        .expect("applies");
    // The old owner's lease lapses (100 ms) while it is paused...
    let short = now.saturating_add(Duration::from_millis(100));
    let stale = old
        .lease(partition, "old", now, short)
        .await
        .expect("works")
        .expect("granted");
    assert!(
        new.lease(partition, "new", now, short)
            .await
            .expect("works")
            .is_none(),
        "a held lease is not granted to another node"
    );
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let forever = Instant::from_unix_millis(i64::MAX);
    let current = new
        .lease(partition, "new", now, forever)
        .await
        .expect("works")
        .expect("granted once lapsed");
    assert!(current.fence > stale.fence);
    // ...and whatever it does when it wakes is refused.
    let fade = now.saturating_add(Duration::from_mins(10));
    assert!(matches!(
        old.take_due(&stale, fade, 10).await,
        Err(StoreError::Fenced(_))
    ));
    assert!(matches!(
        old.apply_under(&stale, &user, &Command::Tick, fade, timeouts)
            .await,
        Err(StoreError::Fenced(_))
    ));
    assert!(matches!(
        old.tick_all(&stale, std::slice::from_ref(&user), fade, timeouts)
            .await
            .as_slice(),
        [Err(StoreError::Fenced(_))]
    ));
    assert_eq!(
        new.take_due(&current, fade, 10).await.expect("works"),
        vec![user.clone()]
    );
    assert!(matches!(
        new.tick_all(&current, std::slice::from_ref(&user), fade, timeouts)
            .await
            .as_slice(),
        [Ok(())]
    ));
    let facts = read_one(&new, &user).await.expect("held");
    assert!(facts.sessions.is_empty(), "the new owner's tick expired it");
    // Releasing hands the partition over at once.
    new.release(&current).await.expect("works");
    assert!(
        old.lease(partition, "old", now, forever)
            .await
            .expect("works")
            .is_some()
    );
}

async fn a_taken_user_comes_back_if_never_ticked(options: &RedisOptions) {
    let store = open(options).await;
    let user = key("retry", "dropped");
    let partition = store.partition_of(&user);
    let now = Instant::from_unix_millis(110_000_000);
    let forever = Instant::from_unix_millis(i64::MAX);
    let lease = store
        .lease(partition, "node", now, forever)
        .await
        .expect("works")
        .expect("granted");
    store
        .schedule(std::slice::from_ref(&user), now)
        .await
        .expect("works");
    assert_eq!(
        store.take_due(&lease, now, 10).await.expect("works"),
        vec![user.clone()]
    );
    // The node dies before ticking it: it is offered again, later.
    assert!(
        store
            .take_due(&lease, now, 10)
            .await
            .expect("works")
            .is_empty()
    );
    let retry = now.saturating_add(Duration::from_secs(super::TAKE_RETRY_MILLIS / 1_000));
    assert_eq!(
        store.take_due(&lease, retry, 10).await.expect("works"),
        vec![user]
    );
}

async fn a_cursor_resumes_on_another_node(options: &RedisOptions) {
    let (one, two) = (open(options).await, open(options).await);
    let _following = two.follow();
    let now = Instant::from_unix_millis(120_000_000);
    let timeouts = Timeouts::default();
    let from = one.head().await.expect("works");
    let users: Vec<_> = (0..20).map(|n| key("resume", &format!("u{n}"))).collect();
    for user in &users {
        one.apply(user, &set_presence("app", 60), now, timeouts)
            .await
            .expect("works")
            .expect("applies");
    }
    // The other node sees them, woken by its own looks at the streams
    // (each read returns what it has learned of so far).
    let mut changes = Vec::new();
    let mut seen = from.clone();
    while changes.len() < users.len() {
        tokio::time::timeout(StdDuration::from_secs(60), two.wait_after(&seen))
            .await
            .expect("another node's changes wake a follower");
        let more = two
            .read_after(&seen, 1_000)
            .await
            .expect("works")
            .expect("no gap");
        for change in &more {
            seen.advance(change.position);
        }
        changes.extend(more);
    }
    assert_eq!(changes.len(), users.len());
    // Half read on one node, the rest resumed on the other from the text
    // of the cursor.
    let mut cursor = from.clone();
    for change in &changes[..10] {
        cursor.advance(change.position);
    }
    let text = cursor.to_text();
    let rest = one
        .read_after(&crate::Cursor::parse(&text).expect("parses"), 1_000)
        .await
        .expect("works")
        .expect("no gap");
    let mut rest_users: Vec<_> = rest.iter().map(|change| change.key.clone()).collect();
    let mut expected: Vec<_> = changes[10..]
        .iter()
        .map(|change| change.key.clone())
        .collect();
    rest_users.sort();
    expected.sort();
    assert_eq!(rest_users, expected);
    for change in &changes {
        assert_eq!(change.facts.sequence.value, 1);
        assert_eq!(
            change.facts.sessions.first().map(|session| session.state),
            Some(SessionState::Available)
        );
    }
}

async fn settings_are_recorded_and_checked(options: &RedisOptions) {
    let (first, second) = (open(options).await, open(options).await);
    first
        .agree(&[("idle", "PT5M".into()), ("clock", "system".into())])
        .await
        .expect("the first node records its settings");
    let differences = second
        .agree(&[("idle", "PT10M".into()), ("clock", "system".into())])
        .await
        .expect_err("a different idle timeout is refused");
    assert_eq!(differences.len(), 1);
    assert!(differences[0].contains("PT5M") && differences[0].contains("PT10M"));
    assert_eq!(
        second.recorded_settings().await.expect("works").get("idle"),
        Some(&"PT5M".to_string())
    );
}

/// A limit taken from two nodes is one limit: five per hour grants five in
/// all, then says how long until the next; another limit is untouched.
async fn throttling_limits_are_shared(one: &RedisStore, other: &RedisStore) {
    let hour = StdDuration::from_secs(3600);
    assert_eq!(
        one.throttle("app:t:a", 5, hour, 3).await.expect("works"),
        Ok(3)
    );
    assert_eq!(
        other.throttle("app:t:a", 5, hour, 3).await.expect("works"),
        Ok(2)
    );
    let refused = one.throttle("app:t:a", 5, hour, 1).await.expect("works");
    let retry = refused.expect_err("the limit is spent");
    // One request comes back every 12 minutes.
    assert!(
        retry > StdDuration::from_secs(600) && retry <= StdDuration::from_secs(720),
        "{retry:?}"
    );
    assert_eq!(
        other.throttle("app:t:b", 5, hour, 9).await.expect("works"),
        Ok(5)
    );
}

async fn a_different_partition_count_is_refused(options: &RedisOptions) {
    open(options).await;
    let mut other = options.clone();
    other.partitions = options.partitions * 2;
    let refused = RedisStore::connect(other).await.expect_err("refused");
    assert!(
        refused.to_string().contains("--redis-partitions"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_redis_passes_everything() {
    let server = RedisServer::start();
    shows_everything(vec![server.url()]).await;
    // Subscriptions' versions move with every change of them.
    let store = open(&options(vec![server.url()])).await;
    let before = store.subscriptions_version().await.expect("works");
    store
        .put_subscription("v", b"x".to_vec())
        .await
        .expect("works");
    assert!(store.subscriptions_version().await.expect("works") > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_by_one_cluster_passes_everything() {
    let cluster = RedisCluster::start(3, 1);
    shows_everything(cluster.urls()).await;
    // One evicting primary is enough to refuse the cluster.
    let primary = cluster.primary_ports()[1];
    cluster.cli(
        primary,
        &["config", "set", "maxmemory-policy", "allkeys-lru"],
    );
    let refused = RedisStore::connect(options(cluster.urls()))
        .await
        .expect_err("an evicting primary is refused");
    assert!(refused.to_string().contains("allkeys-lru"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_would_lose_data_is_refused() {
    let evicting = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let refused = RedisStore::connect(options(vec![evicting.url()]))
        .await
        .expect_err("an evicting Redis is refused");
    assert!(refused.to_string().contains("noeviction"), "{refused}");

    let volatile = RedisServer::start_with(&["--appendonly", "no", "--save", ""]);
    let refused = RedisStore::connect(options(vec![volatile.url()]))
        .await
        .expect_err("a Redis that persists nothing is refused");
    assert!(
        refused.to_string().contains("--redis-allow-volatile"),
        "{refused}"
    );
    let mut allowed = options(vec![volatile.url()]);
    allowed.allow_volatile = true;
    RedisStore::connect(allowed)
        .await
        .expect("allowed when asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_unavailable_not_a_hang() {
    let mut server = RedisServer::start();
    let mut options = options(vec![server.url()]);
    options.endpoint.timeout = StdDuration::from_millis(500);
    let store = open(&options).await;
    let user = key("down", "u");
    let now = Instant::from_unix_millis(130_000_000);
    store
        .apply(&user, &set_presence("app", 60), now, Timeouts::default())
        .await
        .expect("works")
        .expect("applies");
    server.kill();
    let refused = tokio::time::timeout(
        StdDuration::from_secs(30),
        store.apply(&user, &set_presence("app", 60), now, Timeouts::default()),
    )
    .await
    .expect("answers within its timeouts");
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    server.restart();
    // It recovers by itself: the first call may still see the old socket.
    let mut recovered = false;
    for _ in 0..100 {
        if read_one_checked(&store, &user).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert!(recovered, "the store recovers once Redis is back");
    assert_eq!(
        read_one_checked(&store, &user)
            .await
            .expect("works")
            .map(|facts| facts.sessions.len()),
        Some(1),
        "the write before the restart was kept (appendonly)"
    );
}

async fn read_one_checked(
    store: &RedisStore,
    user: &presence_core::UserKey,
) -> Result<Option<presence_core::UserFacts>, StoreError> {
    let mut found = None;
    store
        .read(std::slice::from_ref(user), &mut |_, facts| {
            found = facts.cloned()
        })
        .await?;
    Ok(found)
}
