//! Start-up and resynchronization: the subscriptions and marks read back
//! from the repository, and every subscribed user whose presence moved
//! since its receiver last acknowledged it notified of its current presence.

use std::collections::HashMap;
use std::sync::Arc;

use presence_core::{UserFacts, UserId, UserKey};
use presence_store::StoreError;

use super::Notifier;
use super::crypto::EncryptionCertificate;
use super::fan_out::Visible;
use super::registry::{Active, Mark};
use super::subscription;

/// A subscription read back from the repository, with the marks stored
/// for it; `None` (and logged) when its encryption certificate cannot be
/// read.
pub(super) fn activate(
    subscription: subscription::Subscription,
    stored: &HashMap<UserId, u64>,
    now: presence_core::Instant,
) -> Option<Active> {
    let certificate = match (
        &subscription.encryption_certificate,
        &subscription.encryption_certificate_id,
    ) {
        (Some(certificate), Some(id)) => match EncryptionCertificate::parse(certificate, id) {
            Ok(certificate) => Some(Arc::new(certificate)),
            Err(problem) => {
                tracing::error!(subscription = %subscription.id, %problem, "a stored encryption certificate cannot be read; the subscription is ignored");
                return None;
            }
        },
        _ => None,
    };
    let mut active = Active::new(Arc::new(subscription), certificate, now);
    active.marks = active
        .subscription
        .users
        .iter()
        .map(|user| {
            let delivered = stored.get(user).copied().unwrap_or(0);
            (
                user.clone(),
                Mark {
                    queued: delivered,
                    delivered,
                },
            )
        })
        .collect();
    Some(active)
}

impl Notifier {
    /// Reads the subscriptions and marks back (start-up, before the
    /// scheduler's first ticks), removes the expired ones, and notifies
    /// every subscribed user whose presence moved since its receiver last
    /// acknowledged it.
    pub async fn load(&self) -> Result<(), StoreError> {
        let store = self.store()?.clone();
        let now = self.clock.now();
        let mut loaded = Vec::new();
        for (id, record) in store.subscriptions().await? {
            match subscription::decode(&record) {
                Ok(subscription) => loaded.push(subscription),
                Err(problem) => tracing::error!(
                    subscription = %id,
                    %problem,
                    "a subscription record cannot be read; it is ignored"
                ),
            }
        }
        let mut marks: HashMap<String, HashMap<UserId, u64>> = HashMap::new();
        for mark in store.marks().await? {
            marks
                .entry(mark.subscription)
                .or_default()
                .insert(mark.user, mark.sequence);
        }
        let count = loaded.len();
        let mut ids = Vec::with_capacity(count);
        for subscription in loaded {
            let stored = marks.remove(&subscription.id).unwrap_or_default();
            let Some(mut active) = activate(subscription, &stored, now) else {
                continue;
            };
            active.reauthorization_sent = active.reauthorize_at() <= now;
            ids.push(active.subscription.id.clone());
            let mut registry = self.registry();
            registry.insert(active);
            self.update_watching(&registry);
        }
        for id in &ids {
            self.set_timer(id).await;
        }

        // Marks of subscriptions that are gone (an acknowledgement recorded
        // just after a deletion) are deleted.
        // (With many nodes, a subscription being created on another node
        // may have its marks before this read saw its record: they stay.)
        if !self.shares_partitions() {
            for (id, users) in marks {
                let users: Vec<UserId> = users.into_keys().collect();
                store.delete_marks(&id, &users).await?;
            }
        }
        // Expired while presenced was down: removed now, with their
        // lifecycle notifications.
        self.process_due(now).await;
        if self.shares_partitions() {
            // Each partition's owner catches its users up when it takes
            // the partition (`take_over`), so that they are not notified
            // by every node that starts.
            self.subscriptions_seen(store.subscriptions_version().await?);
        } else {
            self.catch_up().await?;
        }
        tracing::info!(subscriptions = count, "subscriptions loaded");
        Ok(())
    }

    /// Notifies each subscribed user whose presence is numbered otherwise
    /// than what its subscriptions were last sent.
    pub(super) async fn catch_up(&self) -> Result<(), StoreError> {
        let keys: Vec<UserKey> = self.registry().by_user.keys().cloned().collect();
        self.catch_up_users(&keys).await
    }

    /// [`Notifier::catch_up`] for some users.
    pub(super) async fn catch_up_users(&self, keys: &[UserKey]) -> Result<(), StoreError> {
        let store = self.store()?.clone();
        let now = self.clock.now();
        for chunk in keys.chunks(1_024) {
            let mut changes = Vec::new();
            store
                .read(chunk, &mut |index, facts| {
                    changes.push(Visible {
                        key: chunk[index].clone(),
                        facts: Arc::new(facts.cloned().unwrap_or_else(UserFacts::default)),
                        at: now,
                        position: None,
                    });
                })
                .await?;
            self.fan_out(changes.into_iter(), None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use presence_core::{
        Command, Duration, SessionExpiration, SessionId, SessionState, TenantId, Timeouts,
    };
    use presence_store::{Facts, MemoryStore, Subscriptions};

    use super::*;
    use crate::clock::{Clock, ClockKind};
    use crate::notify::subscription::Subscription;

    fn user(id: &str) -> UserId {
        UserId::parse(id).expect("valid")
    }

    /// At start, a subscription is read back with its marks; users whose
    /// presence moved past their mark are sent it (their queued mark moves
    /// to the current number), the others are not; an expired subscription
    /// is removed, and orphan marks are deleted.
    #[tokio::test]
    async fn load_reads_back_catches_up_and_removes_what_expired() {
        let clock = Arc::new(Clock::new(ClockKind::Manual));
        let now = clock.now();
        let tenant = TenantId::parse("t").expect("valid");
        let store = Arc::new(MemoryStore::new());
        let set = Command::SetPresence {
            session_id: SessionId::parse("app").expect("valid"),
            state: SessionState::Available,
            expiration: SessionExpiration::new(Duration::from_hours(1)).expect("in range"),
        };
        for (name, times) in [("moved", 2), ("still", 1)] {
            for minute in 0..times {
                let mut command = set.clone();
                if minute == 1 {
                    command = Command::SetPresence {
                        session_id: SessionId::parse("app").expect("valid"),
                        state: SessionState::BusyInACall,
                        expiration: SessionExpiration::new(Duration::from_hours(1))
                            .expect("in range"),
                    };
                }
                store
                    .apply(
                        &UserKey::new(tenant.clone(), user(name)),
                        &command,
                        now,
                        Timeouts::default(),
                    )
                    .await
                    .expect("works")
                    .expect("applies");
            }
        }
        let live = Subscription::new(
            tenant.clone(),
            Some("app".into()),
            Some("app".into()),
            "communications/presences".into(),
            vec![user("moved"), user("still")],
            "https://example.invalid/hook".into(),
            None,
            now.saturating_add(Duration::from_mins(30)),
        );
        let expired = Subscription::new(
            tenant.clone(),
            Some("app".into()),
            Some("app".into()),
            "communications/presences/still".into(),
            vec![user("still")],
            "https://example.invalid/hook".into(),
            None,
            now.saturating_add(Duration::from_mins(-1)),
        );
        for subscription in [&live, &expired] {
            store
                .put_subscription(&subscription.id, subscription::encode(subscription))
                .await
                .expect("works");
        }
        let mark = |subscription: &str, name: &str, sequence| presence_store::Mark {
            subscription: subscription.into(),
            user: user(name),
            sequence,
        };
        store
            .put_marks(&[
                mark(&live.id, "moved", 1),
                mark(&live.id, "still", 1),
                mark("gone", "still", 1),
            ])
            .await
            .expect("works");

        let (notifier, _inboxes) = Notifier::for_tests(clock, store.clone());
        notifier.load().await.expect("loads");

        let (ids, moved, still) = {
            let registry = notifier.registry();
            let ids: Vec<String> = registry
                .subscriptions
                .keys()
                .map(|id| id.to_string())
                .collect();
            let marks = registry
                .subscriptions
                .get(live.id.as_str())
                .map(|active| active.marks.clone())
                .unwrap_or_default();
            (
                ids,
                marks.get(&user("moved")).copied(),
                marks.get(&user("still")).copied(),
            )
        };
        assert_eq!(ids, [live.id.as_str()], "the expired one is removed");
        let moved = moved.expect("a mark");
        assert_eq!(moved.delivered, 1);
        assert_eq!(moved.queued, 2, "moved past its mark: sent");
        assert_eq!(still.expect("a mark").queued, 1, "at its mark: not sent");
        let stored = store.subscriptions().await.expect("works");
        assert_eq!(stored.len(), 1);
        assert!(
            store
                .marks()
                .await
                .expect("works")
                .iter()
                .all(|mark| mark.subscription == live.id),
            "orphan and expired marks are deleted"
        );
    }

    /// A change made after the start-up load but before the run task reads
    /// the feed (the scheduler's first ticks race it) is notified, not
    /// skipped: the run task starts where following began.
    #[tokio::test]
    async fn a_change_racing_the_run_tasks_start_is_notified() {
        let clock = Arc::new(Clock::new(ClockKind::Manual));
        let now = clock.now();
        let tenant = TenantId::parse("t").expect("valid");
        let alice = UserKey::new(tenant.clone(), user("alice"));
        let store = Arc::new(MemoryStore::new());
        let subscription = Subscription::new(
            tenant,
            Some("app".into()),
            Some("app".into()),
            "communications/presences/alice".into(),
            vec![user("alice")],
            "https://example.invalid/hook".into(),
            None,
            now.saturating_add(Duration::from_mins(30)),
        );
        store
            .put_subscription(&subscription.id, subscription::encode(&subscription))
            .await
            .expect("works");
        let (notifier, inboxes) = Notifier::for_tests(clock, store.clone());
        notifier.load().await.expect("loads");
        let set = Command::SetPresence {
            session_id: SessionId::parse("app").expect("valid"),
            state: SessionState::Available,
            expiration: SessionExpiration::new(Duration::from_hours(1)).expect("in range"),
        };
        store
            .apply(&alice, &set, now, Timeouts::default())
            .await
            .expect("works")
            .expect("applies");
        let running = tokio::spawn(notifier.clone().run(inboxes));
        let queued = || {
            notifier.registry().subscriptions[subscription.id.as_str()].marks[&user("alice")].queued
        };
        // A generous guard against a hang; the assertion is on the mark.
        for _ in 0..600 {
            if queued() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(queued(), 1, "alice's change was sent");
        running.abort();
    }
}
