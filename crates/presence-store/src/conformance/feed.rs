//! The change feed seam: every visible change once, in order per user,
//! readable after a cursor, with a gap where changes are no longer kept.

use presence_core::{Command, Duration, Instant, Timeouts};

use super::{key, set_presence};
use crate::{Cursor, Store};

pub async fn run(store: &dyn Store) {
    feeds_every_visible_change_once_in_order(store).await;
    a_foreign_cursor_reads_as_a_gap(store).await;
    text_cursors_round_trip(store).await;
}

async fn feeds_every_visible_change_once_in_order(store: &dyn Store) {
    let _following = store.follow();
    let timeouts = Timeouts::default();
    let start = Instant::from_unix_millis(40_000_000);
    let bob = key("feed", "bob");
    let carol = key("feed", "carol");
    let from = store.head().await.expect("works");
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
    store
        .apply(&carol, &set_presence("app", 60), later, timeouts)
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
    let changes = store
        .read_after(&from, 100)
        .await
        .expect("works")
        .expect("no gap");
    // Each user's changes come in order; across users (who may sit in
    // different partitions) only each partition's own order is kept.
    let seen = |user: &presence_core::UserKey| -> Vec<_> {
        changes
            .iter()
            .filter(|change| change.key == *user)
            .map(|change| (change.facts.sequence.value, change.at))
            .collect()
    };
    assert_eq!(changes.len(), 3);
    assert_eq!(seen(&bob), vec![(1, start), (2, fade)]);
    assert_eq!(seen(&carol), vec![(1, later)]);
    // Positions grow within a partition, and reading after the last one
    // finds nothing more.
    let mut cursor = from.clone();
    for change in &changes {
        assert!(!cursor.covers(change.position));
        cursor.advance(change.position);
        assert!(cursor.covers(change.position));
    }
    assert_eq!(cursor, store.head().await.expect("works"));
    assert_eq!(
        store
            .read_after(&cursor, 100)
            .await
            .expect("works")
            .map(|c| c.len()),
        Some(0)
    );
    // A limit takes the oldest first.
    let first = store
        .read_after(&from, 1)
        .await
        .expect("works")
        .expect("no gap");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].position, changes[0].position);
    // Waiting after an older cursor returns at once.
    tokio::time::timeout(std::time::Duration::from_secs(60), store.wait_after(&from))
        .await
        .expect("a change after the cursor is there");
}

async fn a_foreign_cursor_reads_as_a_gap(store: &dyn Store) {
    let head = store.head().await.expect("works");
    let foreign = Cursor {
        epoch: head.epoch ^ 1,
        offsets: head.offsets.clone(),
    };
    assert!(
        store
            .read_after(&foreign, 10)
            .await
            .expect("works")
            .is_none()
    );
    let mut future = head.clone();
    future.offsets[0] += 1_000;
    assert!(
        store
            .read_after(&future, 10)
            .await
            .expect("works")
            .is_none()
    );
}

async fn text_cursors_round_trip(store: &dyn Store) {
    let head = store.head().await.expect("works");
    assert_eq!(Cursor::parse(&head.to_text()), Some(head));
    for bad in [
        "",
        "x",
        "-1",
        "zz-1",
        "1-a",
        "1-1..2",
        "12345678901234567-1",
    ] {
        assert_eq!(Cursor::parse(bad), None, "{bad:?}");
    }
}
