//! The behaviour every backend must show, run against each one.

use presence_core::{
    Command, CommandError, Duration, Instant, SessionExpiration, SessionId, SessionState, TenantId,
    Timeouts, UserFacts, UserId, UserKey,
};

use crate::Store;

pub(crate) fn key(tenant: &str, user: &str) -> UserKey {
    UserKey::new(
        TenantId::parse(tenant).expect("valid tenant"),
        UserId::parse(user).expect("valid user"),
    )
}

pub(crate) fn set_presence(session: &str, minutes: i64) -> Command {
    Command::SetPresence {
        session_id: SessionId::parse(session).expect("valid session"),
        state: SessionState::Available,
        expiration: SessionExpiration::new(Duration::from_mins(minutes)).expect("in range"),
    }
}

pub(crate) async fn read_one(store: &dyn Store, key: &UserKey) -> Option<UserFacts> {
    let mut found = None;
    store
        .read(std::slice::from_ref(key), &mut |_, facts| {
            found = facts.cloned()
        })
        .await
        .expect("read works");
    found
}

pub async fn run_all(store: &dyn Store) {
    applies_and_reads_back(store).await;
    refused_commands_change_nothing(store).await;
    tenants_are_separate(store).await;
    asks_for_each_tick_once(store).await;
    ticks_prune_what_has_ended(store).await;
    records_are_kept_by_prefix(store).await;
}

/// Run on a fresh store: the observer can be installed only once.
pub async fn tells_the_observer_of_every_visible_change(store: &dyn Store) {
    #[derive(Debug, Default)]
    struct Seen(std::sync::Mutex<Vec<(UserKey, u64)>>);
    impl crate::ChangeObserver for Seen {
        fn changed(&self, key: &UserKey, facts: &UserFacts, _now: Instant) {
            self.0
                .lock()
                .expect("not poisoned")
                .push((key.clone(), facts.sequence.value));
        }
    }
    let seen = std::sync::Arc::new(Seen::default());
    store.observe(seen.clone());
    let timeouts = Timeouts::default();
    let start = Instant::from_unix_millis(50_000_000);
    let bob = key("observed", "bob");
    store
        .apply(&bob, &set_presence("app", 60), start, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    // A refresh a minute later shows the same: no change.
    let later = start.saturating_add(Duration::from_mins(1));
    store
        .apply(&bob, &set_presence("app", 60), later, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    // A tick at the fade (5 minutes after the refresh) folds in a change
    // that time made.
    let fade = later.saturating_add(Duration::from_mins(5));
    store
        .apply(&bob, &Command::Tick, fade, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    // A tick with nothing new changes nothing.
    store
        .apply(&bob, &Command::Tick, fade, timeouts)
        .await
        .expect("store works")
        .expect("applies");
    let seen = seen.0.lock().expect("not poisoned").clone();
    assert_eq!(seen, vec![(bob.clone(), 1), (bob, 2)]);
}

async fn records_are_kept_by_prefix(store: &dyn Store) {
    let writes = vec![
        (b"s/1".to_vec(), Some(b"one".to_vec())),
        (b"s/2".to_vec(), Some(b"two".to_vec())),
        (b"t/1".to_vec(), Some(b"other".to_vec())),
    ];
    store.put_records(writes, true).await.expect("store works");
    store
        .put_records(vec![(b"s/1".to_vec(), None)], false)
        .await
        .expect("store works");
    let mut seen = Vec::new();
    store
        .scan_records(b"s/", &mut |key, value| {
            seen.push((key.to_vec(), value.to_vec()))
        })
        .await
        .expect("store works");
    assert_eq!(seen, vec![(b"s/2".to_vec(), b"two".to_vec())]);
}

async fn applies_and_reads_back(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let now = Instant::from_unix_millis(1_000_000);
    let alice = key("t1", "alice");
    let outcome = store
        .apply(&alice, &set_presence("app", 60), now, timeouts)
        .await
        .expect("store works")
        .expect("command applies");
    assert!(outcome.applied.visibly_changed);
    assert_eq!(
        outcome.schedule_at,
        Some(now.saturating_add(Duration::from_mins(5)))
    );
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
    assert_eq!(seen, vec![(0, false), (1, true)]);
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
    let dave = key("t1", "dave");
    let before = store.counts();
    store
        .apply(&dave, &set_presence("app", 5), start, timeouts)
        .await
        .expect("works")
        .expect("ok");
    assert_eq!(store.counts().sessions, before.sessions + 1);
    assert_eq!(store.counts().users, before.users + 1);
    let later = start.saturating_add(Duration::from_mins(5));
    let outcome = store
        .apply(&dave, &Command::Tick, later, timeouts)
        .await
        .expect("works")
        .expect("ok");
    assert_eq!(outcome.schedule_at, None);
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

async fn asks_for_each_tick_once(store: &dyn Store) {
    let timeouts = Timeouts::default();
    let start = Instant::from_unix_millis(5_000_000);
    let erin = key("t1", "erin");
    let first_fade = start.saturating_add(Duration::from_mins(5));
    let command = set_presence("app", 60);
    let set = |at| store.apply(&erin, &command, at, timeouts);
    let outcome = set(start).await.expect("works").expect("ok");
    assert_eq!(outcome.schedule_at, Some(first_fade));
    // A refresh moves the fade later; the pending tick at first_fade covers it.
    let refreshed = start.saturating_add(Duration::from_mins(1));
    let outcome = set(refreshed).await.expect("works").expect("ok");
    assert_eq!(outcome.schedule_at, None);
    // The pending tick runs early for the refreshed session and asks again.
    let outcome = store
        .apply(&erin, &Command::Tick, first_fade, timeouts)
        .await
        .expect("works")
        .expect("ok");
    assert_eq!(
        outcome.schedule_at,
        Some(refreshed.saturating_add(Duration::from_mins(5)))
    );
}
