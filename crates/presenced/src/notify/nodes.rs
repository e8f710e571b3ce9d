//! The notifier as one of many nodes (`--store redis`): webhooks for a
//! partition's users are sent by the partition's owner only, each node's
//! registry follows subscriptions that other nodes create, change and
//! delete, and a node that takes a partition over notifies what the
//! previous owner had not had acknowledged. Streams are not partitioned:
//! every node reads every partition's changes for its own streams.
//!
//! A partition's webhooks are sent under a [`Warrant`]: the node's tenure
//! of the partition's lease and the take-over that caught the partition up
//! under that tenure. Until that take-over has read back what the previous
//! owner had acknowledged, the partition's changes are skipped (the
//! take-over's catch-up sends them); and a notification is sent only while
//! its warrant still holds, checked again right before its POST.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use presence_core::{UserId, UserKey};
use presence_store::{Position, StoreError};

use super::Notifier;
use super::catch_up::activate;
use super::registry::{Mark, Registry};
use super::subscription;
use crate::ownership::{Holdings, Tenure};

/// What entitles this node to send a partition's webhooks: its tenure of
/// the partition's lease, and the take-over that caught the partition up
/// under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warrant {
    tenure: Tenure,
    /// Grows with every take-over, so that a take-over tried again (after
    /// a failure of the store) voids what the failed one queued.
    take_over: u64,
}

/// The warrants in force, shared by the notifier (which issues them and
/// claims changes under them) and the delivery (which checks them before
/// each POST).
#[derive(Debug, Default)]
pub struct Warrants {
    /// With many nodes: the leases this node holds. Unset on a single node,
    /// which sends every webhook without a warrant.
    holdings: OnceLock<Arc<Holdings>>,
    /// Per partition, the warrant of its latest take-over. A std `Mutex`:
    /// held only to read or change the map.
    current: Mutex<HashMap<u32, Warrant>>,
    /// The last take-over's number.
    take_overs: AtomicU64,
}

/// Who sends the webhooks of a user's changes, as this node sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sender {
    /// This node: alone (no warrant needed), or under its warrant for the
    /// user's partition.
    ThisNode(Option<Warrant>),
    /// Another node; or nobody yet, while this node's take-over of the
    /// partition has not caught it up.
    Elsewhere,
}

impl Warrants {
    fn current(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Warrant>> {
        self.current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether this node is one of many.
    pub fn shared(&self) -> bool {
        self.holdings.get().is_some()
    }

    /// Who sends the webhooks of `partition`'s changes now.
    pub(super) fn sender(&self, partition: u32) -> Sender {
        let Some(holdings) = self.holdings.get() else {
            return Sender::ThisNode(None);
        };
        let Some(warrant) = self.current().get(&partition).copied() else {
            return Sender::Elsewhere;
        };
        if holdings.tenure(partition) == Some(warrant.tenure) {
            Sender::ThisNode(Some(warrant))
        } else {
            Sender::Elsewhere
        }
    }

    /// Whether a notification claimed under `warrant` may be sent now: the
    /// lease is still held under the same tenure, safely, and no take-over
    /// has caught the partition up since.
    pub fn honours(&self, warrant: &Warrant) -> bool {
        self.sender(warrant.tenure.partition) == Sender::ThisNode(Some(*warrant))
    }

    /// Begins a take-over of `tenure`: from now on the partition's changes
    /// are claimed under a new warrant, and what was claimed under
    /// an earlier one is not sent. A take-over of an older tenure of the
    /// partition (tried again late) changes nothing.
    fn issue(&self, tenure: Tenure) {
        let warrant = Warrant {
            tenure,
            take_over: self.take_overs.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let mut current = self.current();
        if current
            .get(&tenure.partition)
            .is_none_or(|held| held.tenure.number <= tenure.number)
        {
            current.insert(tenure.partition, warrant);
        }
    }
}

impl Notifier {
    /// Makes this notifier one of many nodes: webhooks only for the
    /// partitions whose leases `holdings` holds. Called once, before
    /// [`Notifier::load`].
    pub fn share(&self, holdings: Arc<Holdings>) {
        let _ = self.warrants.holdings.set(holdings);
    }

    pub(super) fn shares_partitions(&self) -> bool {
        self.warrants.shared()
    }

    /// Who sends the webhooks of `key`'s changes.
    pub(super) fn sender(&self, key: &UserKey, position: Option<Position>) -> Sender {
        if !self.shares_partitions() {
            return Sender::ThisNode(None);
        }
        let partition = match (position, self.store.get()) {
            (Some(position), _) => position.partition,
            (None, Some(store)) => store.partition_of(key),
            (None, None) => return Sender::Elsewhere,
        };
        self.warrants.sender(partition)
    }

    pub(super) fn subscriptions_seen(&self, version: u64) {
        self.subscriptions_version.store(version, Ordering::Release);
    }

    /// Follows what other nodes did to subscriptions, when the repository
    /// says anything changed: new ones are registered with their stored
    /// marks, deleted ones dropped, changed ones (a renewal, a new URL)
    /// replaced, keeping what was sent.
    pub(super) async fn refresh(&self) -> Result<(), StoreError> {
        if !self.shares_partitions() {
            return Ok(());
        }
        let store = self.store()?.clone();
        let version = store.subscriptions_version().await?;
        if version == self.subscriptions_version.load(Ordering::Acquire) {
            return Ok(());
        }
        let records = store.subscriptions().await?;
        let mut stored = HashMap::new();
        for (id, record) in &records {
            match subscription::decode(record) {
                Ok(subscription) => {
                    stored.insert(id.clone(), subscription);
                }
                Err(problem) => {
                    tracing::error!(subscription = %id, %problem, "a subscription record cannot be read; it is ignored");
                }
            }
        }
        let (known, changed): (HashSet<String>, Vec<String>) = {
            let registry = self.registry();
            let known = registry
                .subscriptions
                .keys()
                .map(|id| id.to_string())
                .collect();
            let changed = registry
                .subscriptions
                .iter()
                .filter(|(id, active)| {
                    stored
                        .get(&***id)
                        .is_some_and(|subscription| *subscription != *active.subscription)
                })
                .map(|(id, _)| id.to_string())
                .collect();
            (known, changed)
        };
        let fresh: Vec<&String> = stored.keys().filter(|id| !known.contains(*id)).collect();
        let mut marks: HashMap<String, HashMap<UserId, u64>> = HashMap::new();
        if !fresh.is_empty() {
            for mark in store.marks().await? {
                if fresh.contains(&&mark.subscription) {
                    marks
                        .entry(mark.subscription)
                        .or_default()
                        .insert(mark.user, mark.sequence);
                }
            }
        }
        let now = self.clock.now();
        let mut registry = self.registry();
        for id in &known {
            if !stored.contains_key(id)
                && let Some(active) = registry.remove(id)
            {
                self.delivery
                    .take(&active.subscription.notification_url, id);
            }
        }
        for id in changed {
            let Some(subscription) = stored.get(&id) else {
                continue;
            };
            if let Some(mut active) = registry.remove(&id) {
                if active.subscription.notification_url != subscription.notification_url {
                    self.delivery
                        .take(&active.subscription.notification_url, &id);
                }
                if active.subscription.expiration != subscription.expiration {
                    active.since = now;
                    active.reauthorization_sent = false;
                }
                active.subscription = Arc::new(subscription.clone());
                registry.insert(active);
            }
        }
        for id in fresh {
            let empty = HashMap::new();
            let stored_marks = marks.get(id).unwrap_or(&empty);
            if let Some(active) = activate(stored[id].clone(), stored_marks, now) {
                registry.insert(active);
            }
        }
        self.update_watching(&registry);
        drop(registry);
        self.subscriptions_seen(version);
        Ok(())
    }

    /// A node took partitions over (began `tenures`): what their users'
    /// receivers have acknowledged is read back (the previous owner
    /// recorded it), what this node had queued for them but not had
    /// acknowledged is forgotten (it is not sent: it may be what the
    /// previous owner sent meanwhile), and each user whose presence moved
    /// past what was acknowledged is notified.
    pub(super) async fn take_over(&self, tenures: &[Tenure]) -> Result<(), StoreError> {
        let store = self.store()?.clone();
        self.refresh().await?;
        let partitions: HashSet<u32> = tenures.iter().map(|tenure| tenure.partition).collect();
        let marks = store.marks().await?;
        let keys: Vec<UserKey> = {
            let mut registry = self.registry();
            let Registry {
                subscriptions,
                by_user,
                ..
            } = &mut *registry;
            let keys: Vec<UserKey> = by_user
                .keys()
                .filter(|key| partitions.contains(&store.partition_of(key)))
                .cloned()
                .collect();
            for key in &keys {
                for id in &by_user[key] {
                    if let Some(mark) = subscriptions
                        .get_mut(id)
                        .and_then(|active| active.marks.get_mut(&key.user))
                    {
                        mark.queued = mark.delivered;
                    }
                }
            }
            for mark in marks {
                let Some(active) = subscriptions.get_mut(mark.subscription.as_str()) else {
                    continue;
                };
                let key = UserKey::new(active.subscription.tenant.clone(), mark.user.clone());
                if !partitions.contains(&store.partition_of(&key)) {
                    continue;
                }
                let held = active.marks.entry(mark.user).or_insert(Mark::default());
                held.delivered = held.delivered.max(mark.sequence);
                held.queued = held.queued.max(mark.sequence);
            }
            // The catch-up below claims under the new warrants.
            for tenure in tenures {
                self.warrants.issue(*tenure);
            }
            keys
        };
        self.catch_up_users(&keys).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use presence_core::{
        Command, SessionExpiration, SessionId, SessionState, TenantId, Timeouts, UserFacts,
    };
    use presence_store::{DueIndex, Facts, Lease, MemoryStore, Subscriptions};

    use super::*;
    use crate::clock::{Clock, ClockKind};
    use crate::notify::fan_out::Visible;
    use crate::notify::subscription::Subscription;
    use crate::ownership::LeaseClock;

    /// alice's change once `state` is set in `store` at `now`.
    async fn set(
        store: &MemoryStore,
        alice: &UserKey,
        state: SessionState,
        now: presence_core::Instant,
    ) -> Visible {
        let command = Command::SetPresence {
            session_id: SessionId::parse("app").expect("valid"),
            state,
            expiration: SessionExpiration::new(presence_core::Duration::from_hours(1))
                .expect("in range"),
        };
        store
            .apply(alice, &command, now, Timeouts::default())
            .await
            .expect("works")
            .expect("applies");
        let mut facts = UserFacts::default();
        store
            .read(std::slice::from_ref(alice), &mut |_, read| {
                facts = read.cloned().unwrap_or_default();
            })
            .await
            .expect("works");
        Visible {
            key: alice.clone(),
            facts: Arc::new(facts),
            at: now,
            position: None,
        }
    }

    /// A node paused past its lease, whose first round after the pause
    /// takes the partition back at once (the node that held it meanwhile
    /// gave it up as soon as it saw this one alive again): the changes of
    /// the pause that it reads from the feed before its take-over has read
    /// back what the other node's receivers acknowledged are not claimed,
    /// the take-over sends nothing already acknowledged, and what it queued
    /// before the pause is withheld.
    #[tokio::test]
    async fn a_partition_taken_back_after_a_pause_sends_nothing_its_other_owner_sent() {
        let clock = Arc::new(Clock::new(ClockKind::Manual));
        let tenant = TenantId::parse("t").expect("valid");
        let alice = UserKey::new(tenant.clone(), UserId::parse("alice").expect("valid"));
        let store = Arc::new(MemoryStore::new());
        let subscription = Subscription::new(
            tenant,
            Some("app".into()),
            Some("app".into()),
            "communications/presences/alice".into(),
            vec![alice.user.clone()],
            "https://example.invalid/hook".into(),
            None,
            clock
                .now()
                .saturating_add(presence_core::Duration::from_mins(30)),
        );
        store
            .put_subscription(&subscription.id, subscription::encode(&subscription))
            .await
            .expect("works");
        let now = clock.now();
        let (notifier, _inboxes) = Notifier::for_tests(clock, store.clone());
        let lease = Duration::from_secs(1);
        let holdings = Arc::new(Holdings::new(
            lease,
            LeaseClock::Manual(Mutex::new(Duration::from_secs(100))),
        ));
        notifier.share(holdings.clone());
        notifier.load().await.expect("loads");
        let partition = store.partition_of(&alice);
        let fenced = |fence| Lease {
            partition,
            fence,
            until: presence_core::Instant::from_unix_millis(0),
        };
        let mark = || {
            notifier.registry().subscriptions[subscription.id.as_str()]
                .marks
                .get(&alice.user)
                .copied()
                .unwrap_or_default()
        };

        let first = holdings
            .record(fenced(1), holdings.now())
            .expect("a tenure");
        assert_eq!(
            notifier.sender(&alice, None),
            Sender::Elsewhere,
            "not taken over yet"
        );
        notifier.take_over(&[first]).await.expect("takes over");
        let Sender::ThisNode(Some(before_the_pause)) = notifier.sender(&alice, None) else {
            panic!("taken over, the partition's webhooks are this node's");
        };
        notifier.fan_out(
            std::iter::once(set(&store, &alice, SessionState::Available, now).await),
            None,
        );
        assert_eq!(mark().queued, 1);

        // Paused past the lease. Meanwhile another node holds the partition:
        // alice changes twice and its receiver acknowledges both.
        holdings.advance(lease * 2);
        assert_eq!(notifier.sender(&alice, None), Sender::Elsewhere);
        assert!(
            !notifier.warrants.honours(&before_the_pause),
            "what was queued before the pause is not sent after it"
        );
        let during = vec![
            set(&store, &alice, SessionState::BusyInACall, now).await,
            set(&store, &alice, SessionState::Away, now).await,
        ];
        store
            .put_marks(&[presence_store::Mark {
                subscription: subscription.id.clone(),
                user: alice.user.clone(),
                sequence: 3,
            }])
            .await
            .expect("works");

        // Resumed: the partition is this node's again (a new fencing token),
        // and the feed's changes of the pause are read before the take-over.
        let second = holdings
            .record(fenced(3), holdings.now())
            .expect("a new tenure");
        notifier.fan_out(during.into_iter(), None);
        assert_eq!(mark().queued, 1, "the pause's changes are not claimed here");
        notifier.take_over(&[second]).await.expect("takes over");
        assert_eq!(
            mark(),
            Mark {
                queued: 3,
                delivered: 3
            },
            "what the other node had acknowledged is not sent again"
        );
        assert!(!notifier.warrants.honours(&before_the_pause));

        // What changes next is sent from here.
        notifier.fan_out(
            std::iter::once(set(&store, &alice, SessionState::Available, now).await),
            None,
        );
        assert_eq!(mark().queued, 4);
    }
}
