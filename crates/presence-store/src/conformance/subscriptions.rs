//! The subscription repository seam: records, marks and timers.

use presence_core::{Duration, Instant, UserId};

use crate::{Mark, Store};

pub async fn run(store: &dyn Store) {
    keeps_subscriptions_and_their_marks(store).await;
    timers_come_due_in_order_and_move(store).await;
}

fn user(id: &str) -> UserId {
    UserId::parse(id).expect("valid")
}

async fn keeps_subscriptions_and_their_marks(store: &dyn Store) {
    store
        .put_subscription("sub-1", b"one".to_vec())
        .await
        .expect("works");
    store
        .put_subscription("sub-2", b"two".to_vec())
        .await
        .expect("works");
    store
        .put_subscription("sub-1", b"one, renewed".to_vec())
        .await
        .expect("works");
    let mark = |subscription: &str, id: &str, sequence| Mark {
        subscription: subscription.into(),
        user: user(id),
        sequence,
    };
    store
        .put_marks(&[
            mark("sub-1", "a", 3),
            mark("sub-1", "b", 4),
            mark("sub-2", "a", 5),
        ])
        .await
        .expect("works");
    store
        .put_marks(&[mark("sub-1", "a", 7)])
        .await
        .expect("works");
    assert_eq!(
        store.subscriptions().await.expect("works"),
        vec![
            ("sub-1".to_string(), b"one, renewed".to_vec()),
            ("sub-2".to_string(), b"two".to_vec())
        ]
    );
    assert_eq!(
        store.marks().await.expect("works"),
        vec![
            mark("sub-1", "a", 7),
            mark("sub-1", "b", 4),
            mark("sub-2", "a", 5)
        ]
    );
    store
        .delete_marks("sub-1", &[user("b")])
        .await
        .expect("works");
    store.delete_subscription("sub-2").await.expect("works");
    assert_eq!(
        store.subscriptions().await.expect("works"),
        vec![("sub-1".to_string(), b"one, renewed".to_vec())]
    );
    assert_eq!(
        store.marks().await.expect("works"),
        vec![mark("sub-1", "a", 7)],
        "a deleted subscription's marks go with it"
    );
    store.delete_subscription("sub-1").await.expect("works");
    assert!(store.marks().await.expect("works").is_empty());
}

async fn timers_come_due_in_order_and_move(store: &dyn Store) {
    let now = Instant::from_unix_millis(80_000_000);
    let at = |minutes| now.saturating_add(Duration::from_mins(minutes));
    store.set_timer("t-late", at(30)).await.expect("works");
    store.set_timer("t-early", at(10)).await.expect("works");
    store.set_timer("t-moved", at(5)).await.expect("works");
    store.set_timer("t-moved", at(20)).await.expect("works");
    store
        .put_subscription("t-deleted", b"x".to_vec())
        .await
        .expect("works");
    store.set_timer("t-deleted", at(1)).await.expect("works");
    store.delete_subscription("t-deleted").await.expect("works");
    assert_eq!(store.next_timer().await.expect("works"), Some(at(10)));
    assert_eq!(
        store.take_due_timers(at(20)).await.expect("works"),
        vec![
            (at(10), "t-early".to_string()),
            (at(20), "t-moved".to_string())
        ]
    );
    assert_eq!(store.next_timer().await.expect("works"), Some(at(30)));
    assert_eq!(
        store.take_due_timers(at(60)).await.expect("works"),
        vec![(at(30), "t-late".to_string())]
    );
    assert_eq!(store.next_timer().await.expect("works"), None);
}
