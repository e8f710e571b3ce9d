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
            let certificate = match (
                &subscription.encryption_certificate,
                &subscription.encryption_certificate_id,
            ) {
                (Some(certificate), Some(id)) => {
                    match EncryptionCertificate::parse(certificate, id) {
                        Ok(certificate) => Some(Arc::new(certificate)),
                        Err(problem) => {
                            tracing::error!(subscription = %subscription.id, %problem, "a stored encryption certificate cannot be read; the subscription is ignored");
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let stored = marks.remove(&subscription.id).unwrap_or_default();
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
        for (id, users) in marks {
            let users: Vec<UserId> = users.into_keys().collect();
            store.delete_marks(&id, &users).await?;
        }
        // Expired while presenced was down: removed now, with their
        // lifecycle notifications.
        self.process_due(now).await;
        self.catch_up().await?;
        tracing::info!(subscriptions = count, "subscriptions loaded");
        Ok(())
    }

    /// Notifies each subscribed user whose presence is numbered otherwise
    /// than what its subscriptions were last sent.
    pub(super) async fn catch_up(&self) -> Result<(), StoreError> {
        let store = self.store()?.clone();
        let keys: Vec<UserKey> = self.registry().by_user.keys().cloned().collect();
        let now = self.clock.now();
        for chunk in keys.chunks(1_024) {
            let mut changes = Vec::new();
            store
                .read(chunk, &mut |index, facts| {
                    changes.push(Visible {
                        key: chunk[index].clone(),
                        facts: Arc::new(facts.cloned().unwrap_or_else(UserFacts::default)),
                        at: now,
                        streamed_as: None,
                    });
                })
                .await?;
            self.fan_out(changes.into_iter());
        }
        Ok(())
    }
}
