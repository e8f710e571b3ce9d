//! The notifier as one of many nodes (`--store redis`): webhooks for a
//! partition's users are sent by the partition's owner only, each node's
//! registry follows subscriptions that other nodes create, change and
//! delete, and a node that takes a partition over notifies what the
//! previous owner had not had acknowledged. Streams are not partitioned:
//! every node reads every partition's changes for its own streams.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use presence_core::{UserId, UserKey};
use presence_store::{Position, StoreError};

use super::Notifier;
use super::catch_up::activate;
use super::registry::Mark;
use super::subscription;
use crate::ownership::{Holdings, Tenure};

impl Notifier {
    /// Makes this notifier one of many nodes: webhooks only for the
    /// partitions whose leases `holdings` holds. Called once, before
    /// [`Notifier::load`].
    pub fn share(&self, holdings: Arc<Holdings>) {
        let _ = self.holdings.set(holdings);
    }

    pub(super) fn shares_partitions(&self) -> bool {
        self.holdings.get().is_some()
    }

    /// Whether this node sends the webhooks of `key`'s changes.
    pub(super) fn owns(&self, key: &UserKey, position: Option<Position>) -> bool {
        let Some(holdings) = self.holdings.get() else {
            return true;
        };
        let partition = match (position, self.store.get()) {
            (Some(position), _) => position.partition,
            (None, Some(store)) => store.partition_of(key),
            (None, None) => return false,
        };
        holdings.tenure(partition).is_some()
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
    /// recorded it), and each user whose presence moved since is notified.
    pub(super) async fn take_over(&self, tenures: &[Tenure]) -> Result<(), StoreError> {
        let store = self.store()?.clone();
        self.refresh().await?;
        let partitions: HashSet<u32> = tenures.iter().map(|tenure| tenure.partition).collect();
        let keys: Vec<UserKey> = self
            .registry()
            .by_user
            .keys()
            .filter(|key| partitions.contains(&store.partition_of(key)))
            .cloned()
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let marks = store.marks().await?;
        {
            let mut registry = self.registry();
            for mark in marks {
                let Some(active) = registry.subscriptions.get_mut(mark.subscription.as_str())
                else {
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
        }
        self.catch_up_users(&keys).await
    }
}
