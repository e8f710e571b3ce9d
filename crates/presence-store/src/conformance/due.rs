//! The due index seam: leases on partitions, and users taken when due.

use presence_core::{Command, Duration, Instant, Timeouts, UserKey};

use super::key;
use crate::Store;

pub async fn run(store: &dyn Store) {
    takes_what_is_due_under_the_lease(store).await;
}

async fn takes_what_is_due_under_the_lease(store: &dyn Store) {
    let now = Instant::from_unix_millis(70_000_000);
    let forever = Instant::from_unix_millis(i64::MAX);
    let timeouts = Timeouts::default();
    assert!(store.partitions() >= 1);
    let a = key("due-index", "a");
    let b = key("due-index", "b");
    let lease_of = |user: &UserKey| {
        let partition = store.partition_of(user);
        assert!(partition < store.partitions());
        async move {
            store
                .lease(partition, "node-a", now, forever)
                .await
                .expect("works")
                .expect("granted")
        }
    };
    let lease_a = lease_of(&a).await;
    let lease_b = lease_of(&b).await;
    assert_eq!(lease_a.partition, store.partition_of(&a));
    // What earlier suites left due is taken and ticked, as the scheduler
    // would: a taken user stays taken until its tick files what is next.
    for lease in [&lease_a, &lease_b] {
        let taken = store.take_due(lease, now, usize::MAX).await.expect("works");
        let ticked = store.tick_all(lease, &taken, now, timeouts).await;
        assert_eq!(ticked.len(), taken.len());
        assert!(ticked.iter().all(Result::is_ok), "{ticked:?}");
    }
    let soon = now.saturating_add(Duration::from_secs(30));
    let later = now.saturating_add(Duration::from_mins(10));
    store
        .schedule(std::slice::from_ref(&b), later)
        .await
        .expect("works");
    store
        .schedule(std::slice::from_ref(&a), soon)
        .await
        .expect("works");
    assert_eq!(
        store.next_due(lease_a.partition).await.expect("works"),
        Some(soon)
    );
    if lease_b.partition != lease_a.partition {
        assert_eq!(
            store.next_due(lease_b.partition).await.expect("works"),
            Some(later)
        );
    }
    assert!(
        store
            .take_due(&lease_a, now, usize::MAX)
            .await
            .expect("works")
            .is_empty(),
        "nothing is due yet"
    );
    assert_eq!(
        store
            .take_due(&lease_a, soon, usize::MAX)
            .await
            .expect("works"),
        vec![a.clone()]
    );
    assert!(
        store
            .take_due(&lease_a, soon, usize::MAX)
            .await
            .expect("works")
            .is_empty(),
        "a taken user is not offered twice"
    );
    // Its tick (nothing is held for it) leaves nothing due.
    store
        .apply_under(&lease_a, &a, &Command::Tick, soon, timeouts)
        .await
        .expect("works")
        .expect("applies");
    // A lease with a stale fencing token is refused.
    let mut stale = lease_b.clone();
    stale.fence = lease_b.fence.wrapping_sub(1);
    assert!(matches!(
        store.take_due(&stale, later, usize::MAX).await,
        Err(crate::StoreError::Fenced(_))
    ));
    assert_eq!(
        store
            .take_due(&lease_b, later, usize::MAX)
            .await
            .expect("works"),
        vec![b.clone()]
    );
    assert!(
        store
            .tick_all(&lease_b, std::slice::from_ref(&b), later, timeouts)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(
        store.next_due(lease_a.partition).await.expect("works"),
        None
    );
    assert_eq!(
        store.next_due(lease_b.partition).await.expect("works"),
        None
    );
}
