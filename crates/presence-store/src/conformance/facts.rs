//! The facts seam: atomic read-modify-write of one user, reads of many.

use std::sync::atomic::{AtomicBool, Ordering};

use presence_core::{
    Command, CommandError, Duration, Instant, SessionId, TenantId, Timeouts, UserFacts, UserKey,
};

use super::{key, set_presence};

use crate::{Facts, Store};

pub(crate) async fn read_one(store: &dyn Facts, key: &UserKey) -> Option<UserFacts> {
    let mut found = None;
    store
        .read(std::slice::from_ref(key), &mut |_, facts| {
            found = facts.cloned()
        })
        .await
        .expect("read works");
    found
}

pub async fn run(store: &dyn Store) {
    applies_and_reads_back(store).await;
    reads_many_keys_each_once_with_its_index(store).await;
    refused_commands_change_nothing(store).await;
    tenants_are_separate(store).await;
    files_each_transition_in_the_due_index_once(store).await;
    ticks_prune_what_has_ended(store).await;
    scans_one_tenant_without_the_others(store).await;
    bounds_the_users_of_a_tenant(store).await;
    keeps_a_memo_until_the_user_is_written(store).await;
    if hands_out_memos(store).await {
        warms_the_memos_of_a_many_key_read(store).await;
    }
}

/// Whether `store` hands out a memo for a user it holds: the stores that
/// hold the facts in memory must, or nothing is kept beside them.
pub(crate) async fn hands_out_memos(store: &dyn Store) -> bool {
    let frank = key("memos", "frank");
    store
        .apply(
            &frank,
            &set_presence("app", 60),
            Instant::from_unix_millis(8_000_000),
            Timeouts::default(),
        )
        .await
        .expect("store works")
        .expect("applies");
    let mut handed = false;
    store
        .read_memos(std::slice::from_ref(&frank), &mut |_, _, memo| {
            handed = memo.is_some();
        })
        .await
        .expect("read works");
    handed
}

/// What the conformance tests keep in memos: a value, and whether a read
/// has warmed it.
struct Noted {
    value: u32,
    warmed: AtomicBool,
}

impl Noted {
    fn new(value: u32) -> Noted {
        Noted {
            value,
            warmed: AtomicBool::new(false),
        }
    }
}

/// Unlike a real memo's, its warm writes: only so that the test can see
/// that it ran.
impl crate::Memorable for Noted {
    fn warm(&self) {
        self.warmed.store(true, Ordering::Relaxed);
    }
}

/// What a read put in a user's memo, as the next read finds it.
async fn memo_of(store: &dyn Facts, key: &UserKey) -> Option<u32> {
    let mut found = None;
    store
        .read_memos(std::slice::from_ref(key), &mut |_, _, memo| {
            found = memo.and_then(|memo| memo.get_mut::<Noted>().map(|noted| noted.value));
        })
        .await
        .expect("read works");
    found
}

async fn put_memo(store: &dyn Facts, key: &UserKey, value: u32) {
    store
        .read_memos(std::slice::from_ref(key), &mut |_, _, memo| {
            if let Some(memo) = memo {
                memo.set(Noted::new(value));
            }
        })
        .await
        .expect("read works");
}

/// A store that keeps memos keeps what a read puts in one until the user
/// is written: a command and a tick each drop it (a refused command, which
/// changes nothing, may leave it). A store that keeps none hands out none,
/// and no store hands one out for a user nothing is held for.
async fn keeps_a_memo_until_the_user_is_written(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(8_000_000);
    let erin = key("memos", "erin");
    put_memo(store, &erin, 1).await;
    assert_eq!(memo_of(store, &erin).await, None, "erin is not held yet");
    store
        .apply(&erin, &set_presence("app", 60), now, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    let mut seen = Vec::new();
    store
        .read_memos(
            &[key("memos", "nobody"), erin.clone()],
            &mut |index, facts, memo| {
                seen.push((
                    index,
                    facts.map(|facts| facts.sessions.len()),
                    memo.map(|memo| memo.is_empty()),
                ));
            },
        )
        .await
        .expect("read works");
    // Each key once, in an order of the store's choosing.
    seen.sort_by_key(|(index, _, _)| *index);
    // A store that keeps memos hands erin an empty one.
    let keeps = seen[1].2.is_some();
    let kept = |value: u32| keeps.then_some(value);
    assert_eq!(
        seen,
        vec![(0, None, None), (1, Some(1), keeps.then_some(true))]
    );
    put_memo(store, &erin, 2).await;
    assert_eq!(memo_of(store, &erin).await, kept(2));
    assert_eq!(memo_of(store, &erin).await, kept(2), "a read keeps it");
    store
        .apply(&erin, &set_presence("app", 30), now, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    assert_eq!(memo_of(store, &erin).await, None, "a command drops it");
    put_memo(store, &erin, 4).await;
    store
        .apply(&erin, &Command::Tick, now, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    assert_eq!(memo_of(store, &erin).await, None, "a tick drops it");
}

async fn bounds_the_users_of_a_tenant(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(9_000_000);
    store.limit_users_per_tenant(std::num::NonZeroU64::new(2));
    let apply = |user: &'static str, tenant: &'static str, command: Command| async move {
        store
            .apply(&key(tenant, user), &command, now, timeouts)
            .await
            .expect("store works")
    };
    let clear = || Command::ClearPresence {
        session_id: SessionId::parse("app").expect("valid"),
    };
    // The model's own refusal comes first, and counts nobody.
    assert!(matches!(
        apply("ghost", "bounded", clear()).await,
        Err(CommandError::SessionNotFound(_))
    ));
    apply("u1", "bounded", set_presence("app", 60))
        .await
        .expect("the first user is under the bound");
    apply("u2", "bounded", set_presence("app", 60))
        .await
        .expect("the second user reaches the bound");
    assert_eq!(
        apply("u3", "bounded", set_presence("app", 60)).await,
        Err(CommandError::TenantFull { limit: 2 })
    );
    assert_eq!(
        read_one(store, &key("bounded", "u3")).await,
        None,
        "a refused user is not written"
    );
    assert!(matches!(
        apply("u4", "bounded", clear()).await,
        Err(CommandError::SessionNotFound(_))
    ));
    apply("u1", "bounded", set_presence("other", 60))
        .await
        .expect("a user held is still written");
    apply("u1", "bounded", clear())
        .await
        .expect("a user held is still cleared");
    apply("u1", "elsewhere", set_presence("app", 60))
        .await
        .expect("another tenant has its own count");
    store.limit_users_per_tenant(None);
    apply("u3", "bounded", set_presence("app", 60))
        .await
        .expect("without the bound, the user is written");
}

async fn applies_and_reads_back(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(1_000_000);
    let alice = key("t1", "alice");
    let applied = store
        .apply(&alice, &set_presence("app", 60), now, timeouts)
        .await
        .expect("store works")
        .expect("command applies");
    assert!(applied.visibly_changed);
    let facts = read_one(store, &alice).await.expect("alice is held");
    assert_eq!(facts.sessions.len(), 1);
    assert_eq!(facts.sequence.value, 1);
    let mut seen = Vec::new();
    store
        .read(
            &[key("t1", "nobody"), alice.clone()],
            &mut |index, facts| seen.push((index, facts.is_some())),
        )
        .await
        .expect("read works");
    // Each key once, in an order of the store's choosing.
    seen.sort();
    assert_eq!(seen, vec![(0, false), (1, true)]);
}

/// A read of many keys hands each key's own facts once, with its index,
/// whatever order the store visits them in (the memory store goes a shard
/// at a time, some keys at a time): user i of "many" holds i % 3 sessions,
/// and user i of "other" two if i % 5 is 1; the keys of the two tenants
/// alternate, some keys come twice, and there are enough for most of the
/// memory store's shards to hold more than one group of keys.
async fn reads_many_keys_each_once_with_its_index(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(1_500_000);
    let users = 1_200;
    let held = |tenant: &str, user: usize| match tenant {
        "many" => Some(user % 3).filter(|&sessions| sessions > 0),
        _ => (user % 5 == 1).then_some(2),
    };
    for user in 0..users {
        for tenant in ["many", "other"] {
            for session in ["a", "b"].iter().take(held(tenant, user).unwrap_or(0)) {
                store
                    .apply(
                        &key(tenant, &format!("u{user}")),
                        &set_presence(session, 60),
                        now,
                        timeouts,
                    )
                    .await
                    .expect("store works")
                    .expect("applies");
            }
        }
    }
    let mut keys: Vec<(UserKey, Option<usize>)> = Vec::new();
    for user in (0..users).rev() {
        let tenants: &[&str] = if user % 4 < 2 {
            &["many", "other"]
        } else {
            &["many"]
        };
        for tenant in tenants {
            keys.push((key(tenant, &format!("u{user}")), held(tenant, user)));
        }
    }
    keys.push((key("many", "u4"), Some(1)));
    keys.push((key("many", "u3"), None));
    keys.push((key("many", "u4"), Some(1)));
    keys.push((key("other", "u6"), Some(2)));
    keys.push((key("nobody", "u4"), None));
    let mut seen = vec![Vec::new(); keys.len()];
    let read: Vec<UserKey> = keys.iter().map(|(key, _)| key.clone()).collect();
    store
        .read(&read, &mut |index, facts| {
            seen[index].push(facts.map(|facts| facts.sessions.len()));
        })
        .await
        .expect("read works");
    for (index, (key, sessions)) in keys.iter().enumerate() {
        assert_eq!(seen[index], vec![*sessions], "{key:?} at {index}");
    }
}

/// A store that keeps memos warms each memo of a read of many keys before
/// it visits the memo's key ([`crate::Memorable::warm`]), and hands each key
/// its own memo; the keys of two tenants alternate, and there are enough
/// for most of the memory store's shards to hold more than one group of
/// keys.
async fn warms_the_memos_of_a_many_key_read(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(8_500_000);
    let users: Vec<UserKey> = (0..1_200)
        .map(|user| {
            let tenant = if user % 3 == 0 { "heat" } else { "warmth" };
            key(tenant, &format!("u{user}"))
        })
        .collect();
    for (value, user) in users.iter().enumerate() {
        store
            .apply(user, &set_presence("app", 60), now, timeouts)
            .await
            .expect("store works")
            .expect("applies");
        put_memo(store, user, value as u32).await;
    }
    let mut read = users.clone();
    read.push(users[7].clone());
    read.push(key("warmth", "nobody"));
    let mut seen = vec![Vec::new(); read.len()];
    store
        .read_memos(&read, &mut |index, _, memo| {
            seen[index].push(memo.and_then(|memo| {
                memo.get_mut::<Noted>()
                    .map(|noted| (noted.value, noted.warmed.load(Ordering::Relaxed)))
            }));
        })
        .await
        .expect("read works");
    for (index, user) in read.iter().enumerate() {
        let value = users.iter().position(|held| held == user);
        assert_eq!(
            seen[index],
            vec![value.map(|value| (value as u32, true))],
            "{user:?} at {index}"
        );
    }
}

async fn refused_commands_change_nothing(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(2_000_000);
    let bob = key("t1", "bob");
    let clear = Command::ClearPresence {
        session_id: SessionId::parse("none").expect("valid"),
    };
    let refused = store
        .apply(&bob, &clear, now, timeouts)
        .await
        .expect("store works");
    assert!(matches!(refused, Err(CommandError::SessionNotFound(_))));
    assert_eq!(
        read_one(store, &bob).await,
        None,
        "a refused command keeps nothing"
    );
}

async fn tenants_are_separate(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(3_000_000);
    store
        .apply(&key("t2", "carol"), &set_presence("app", 60), now, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    assert!(read_one(store, &key("t3", "carol")).await.is_none());
    assert!(read_one(store, &key("t2", "carol")).await.is_some());
}

async fn ticks_prune_what_has_ended(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let start = Instant::from_unix_millis(4_000_000);
    let dave = key("t9", "dave");
    let before = store.counts();
    store
        .apply(&dave, &set_presence("app", 5), start, timeouts)
        .await
        .expect("works")
        .expect("ok");
    assert_eq!(store.counts().sessions, before.sessions + 1);
    assert_eq!(store.counts().users, before.users + 1);
    let later = start.saturating_add(Duration::from_mins(5));
    store
        .apply(&dave, &Command::Tick, later, timeouts)
        .await
        .expect("works")
        .expect("ok");
    let facts = read_one(store, &dave)
        .await
        .expect("the sequence number is kept");
    assert!(facts.holds_nothing());
    assert_eq!(store.counts(), before);
    let mut scanned = 0;
    store
        .scan(&mut |_, _| scanned += 1)
        .await
        .expect("scan works");
    assert!(scanned >= 3);
}

/// A command files the user's next transition when no tick at or before
/// it is pending; a refresh that moves it later files nothing more, and the
/// early tick then files the later one. (Other users of the partition may
/// be due too: only erin's entries are looked at.)
async fn files_each_transition_in_the_due_index_once(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let start = Instant::from_unix_millis(5_000_000);
    let erin = key("due", "erin");
    let lease = store
        .lease(
            store.partition_of(&erin),
            "node",
            start,
            Instant::from_unix_millis(i64::MAX),
        )
        .await
        .expect("works")
        .expect("a single node holds its partition");
    let taken = |at: Instant| {
        let lease = lease.clone();
        let erin = erin.clone();
        async move {
            store
                .take_due(&lease, at, usize::MAX)
                .await
                .expect("works")
                .into_iter()
                .filter(|user| *user == erin)
                .count()
        }
    };
    let first_fade = start.saturating_add(Duration::from_mins(5));
    let command = set_presence("app", 60);
    let set = |at| store.apply(&erin, &command, at, timeouts);
    set(start).await.expect("works").expect("ok");
    // A refresh moves the fade later; the pending tick at first_fade covers it.
    let refreshed = start.saturating_add(Duration::from_mins(1));
    set(refreshed).await.expect("works").expect("ok");
    let just_before = |at: Instant| Instant::from_unix_millis(at.as_unix_millis() - 1);
    assert_eq!(taken(just_before(first_fade)).await, 0, "not due yet");
    assert_eq!(taken(first_fade).await, 1, "filed once");
    assert_eq!(taken(first_fade).await, 0, "taken once");
    // The pending tick runs early for the refreshed session and files again.
    store
        .apply_under(&lease, &erin, &Command::Tick, first_fade, timeouts)
        .await
        .expect("works")
        .expect("ok");
    let second_fade = refreshed.saturating_add(Duration::from_mins(5));
    assert_eq!(taken(just_before(second_fade)).await, 0);
    assert_eq!(taken(second_fade).await, 1);
}

async fn scans_one_tenant_without_the_others(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(6_000_000);
    for (tenant, user) in [("scan-a", "u1"), ("scan-a", "u2"), ("scan-b", "u3")] {
        store
            .apply(&key(tenant, user), &set_presence("app", 60), now, timeouts)
            .await
            .expect("works")
            .expect("ok");
    }
    let mut seen = Vec::new();
    store
        .scan_tenant(
            &TenantId::parse("scan-a").expect("valid"),
            &mut |user, _| seen.push(user.as_str().to_string()),
        )
        .await
        .expect("works");
    seen.sort();
    assert_eq!(seen, ["u1", "u2"]);
}
