//! The due index seam: leases on partitions, and users taken when due.

use presence_core::{Duration, Instant};

use super::key;
use crate::Store;

pub async fn run(store: &dyn Store) {
    takes_what_is_due_under_the_lease(store).await;
}

async fn takes_what_is_due_under_the_lease(store: &dyn Store) {
    let now = Instant::from_unix_millis(70_000_000);
    let forever = Instant::from_unix_millis(i64::MAX);
    assert!(store.partitions() >= 1);
    let lease = store
        .lease(0, "node-a", now, forever)
        .await
        .expect("works")
        .expect("granted");
    assert_eq!(lease.partition, 0);
    store
        .take_due(&lease, now, usize::MAX)
        .await
        .expect("works");
    let soon = now.saturating_add(Duration::from_secs(30));
    let later = now.saturating_add(Duration::from_mins(10));
    store
        .schedule(&[key("due-index", "b")], later)
        .await
        .expect("works");
    store
        .schedule(&[key("due-index", "a")], soon)
        .await
        .expect("works");
    assert_eq!(store.next_due(0).await.expect("works"), Some(soon));
    assert!(store.pending() >= 2);
    assert!(
        store
            .take_due(&lease, now, usize::MAX)
            .await
            .expect("works")
            .is_empty(),
        "nothing is due yet"
    );
    assert_eq!(
        store
            .take_due(&lease, soon, usize::MAX)
            .await
            .expect("works"),
        vec![key("due-index", "a")]
    );
    // A lease with a stale fencing token is refused.
    let mut stale = lease.clone();
    stale.fence = lease.fence.wrapping_sub(1);
    assert!(matches!(
        store.take_due(&stale, later, usize::MAX).await,
        Err(crate::StoreError::Fenced(_))
    ));
    assert_eq!(
        store
            .take_due(&lease, later, usize::MAX)
            .await
            .expect("works"),
        vec![key("due-index", "b")]
    );
    assert_eq!(store.next_due(0).await.expect("works"), None);
}
