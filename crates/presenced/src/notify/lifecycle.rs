//! Subscriptions' timers and lifecycle notifications: reauthorizationRequired
//! before a subscription expires, subscriptionRemoved when it does, and
//! missed when notifications were given up. The timers live in the store's
//! subscription repository; [`Lifecycle`] is their client of the timeline.

use std::sync::Arc;

use async_trait::async_trait;
use presence_core::Instant;

use super::Notifier;
use super::delivery::Item;
use super::subscription::Subscription;
use crate::timeline::DueWork;
use crate::wire::notification::{LifecycleNotification, render};
use crate::wire_time::format_instant;

impl Notifier {
    /// Queues a lifecycle notification, if the subscription has a lifecycle URL.
    pub(super) fn lifecycle(&self, subscription: &Subscription, event: &'static str) {
        let Some(url) = &subscription.lifecycle_notification_url else {
            return;
        };
        let tenant = subscription.tenant.as_str();
        let json = render(&LifecycleNotification {
            subscription_id: &subscription.id,
            subscription_expiration_date_time: format_instant(subscription.expiration),
            tenant_id: &tenant,
            organization_id: &tenant,
            client_state: subscription.client_state.as_deref(),
            resource: &subscription.resource,
            lifecycle_event: event,
        });
        metrics::counter!("presenced_lifecycle_notifications_total", "event" => event).increment(1);
        self.delivery.send(
            url,
            vec![Item {
                subscription: Arc::from(subscription.id.as_str()),
                mark: None,
                warrant: None,
                json,
                queued: std::time::Instant::now(),
            }],
        );
    }

    /// Sets a subscription's timer in the repository to its next instant.
    pub(super) async fn set_timer(&self, id: &str) {
        let at = self
            .registry()
            .subscriptions
            .get(id)
            .map(|active| active.next_timer());
        let (Some(at), Ok(store)) = (at, self.store()) else {
            return;
        };
        if let Err(error) = store.set_timer(id, at).await {
            tracing::warn!(%error, subscription = id, "could not set a subscription's timer");
        }
        self.timers_changed.notify_one();
    }

    /// Sends every reauthorizationRequired and removes every subscription
    /// that is due at or before `now`.
    pub async fn process_due(&self, now: Instant) {
        let Ok(store) = self.store().cloned() else {
            return;
        };
        let due = match store.take_due_timers(now).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not read the subscriptions' timers");
                return;
            }
        };
        for (_, id) in due {
            let expired = self
                .registry()
                .subscriptions
                .get(id.as_str())
                .is_none_or(|active| active.subscription.expiration <= now);
            if expired {
                let removed = self.unregister(&id);
                if let Some(active) = removed {
                    tracing::info!(subscription = %active.subscription.id, "a subscription expired and was removed");
                    self.lifecycle(&active.subscription, "subscriptionRemoved");
                    if let Err(error) = self.forget(&active).await {
                        tracing::warn!(%error, "could not delete an expired subscription's records; it is removed again at the next start");
                    }
                }
                continue;
            }
            let subscription = {
                let mut registry = self.registry();
                registry.subscriptions.get_mut(id.as_str()).map(|active| {
                    active.reauthorization_sent = true;
                    active.subscription.clone()
                })
            };
            if let Some(subscription) = subscription {
                self.lifecycle(&subscription, "reauthorizationRequired");
                self.set_timer(&id).await;
            }
        }
    }
}

/// The subscriptions' timers as a client of the timeline.
#[derive(Debug)]
pub struct Lifecycle(pub Arc<Notifier>);

#[async_trait]
impl DueWork for Lifecycle {
    async fn next_due(&self) -> Option<Instant> {
        let store = self.0.store().ok()?;
        store.next_timer().await.unwrap_or_else(|error| {
            tracing::warn!(%error, "could not read the subscriptions' timers");
            None
        })
    }

    async fn run_due(&self, now: Instant) {
        self.0.process_due(now).await;
    }

    async fn changed(&self) {
        self.0.timers_changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use presence_core::{Duration, TenantId, UserId};
    use presence_store::{MemoryStore, Subscriptions};

    use super::*;
    use crate::clock::{Clock, ClockKind};
    use crate::notify::registry::Active;

    /// A notifier over a memory store, on a manual clock, holding one
    /// subscription created now that lives `minutes`; and now.
    async fn notifier_with_subscription(
        minutes: i64,
    ) -> (Arc<Notifier>, Arc<MemoryStore>, String, Instant) {
        let clock = Arc::new(Clock::new(ClockKind::Manual));
        let now = clock.now();
        let store = Arc::new(MemoryStore::new());
        let (notifier, _inboxes) = Notifier::for_tests(clock, store.clone());
        let subscription = Subscription::new(
            TenantId::parse("t").expect("valid"),
            Some("app".into()),
            Some("app".into()),
            "communications/presences/alice".into(),
            vec![UserId::parse("alice").expect("valid")],
            "https://example.com/hook".into(),
            None,
            now.saturating_add(Duration::from_mins(minutes)),
        );
        let id = subscription.id.clone();
        store
            .put_subscription(&id, crate::notify::subscription::encode(&subscription))
            .await
            .expect("works");
        {
            let mut registry = notifier.registry();
            registry.insert(Active::new(Arc::new(subscription), None, now));
        }
        notifier.set_timer(&id).await;
        (notifier, store, id, now)
    }

    #[tokio::test]
    async fn reauthorization_comes_before_expiry_then_removal_at_it() {
        let (notifier, store, id, now) = notifier_with_subscription(60).await;
        let lifecycle = Lifecycle(notifier.clone());
        let reauthorize = now.saturating_add(Duration::from_mins(50));
        let expiry = now.saturating_add(Duration::from_mins(60));
        assert_eq!(lifecycle.next_due().await, Some(reauthorize));
        lifecycle.run_due(reauthorize).await;
        assert!(
            notifier.registry().subscriptions[id.as_str()].reauthorization_sent,
            "reauthorizationRequired was sent"
        );
        assert_eq!(lifecycle.next_due().await, Some(expiry), "then the expiry");
        lifecycle.run_due(expiry).await;
        assert!(notifier.registry().subscriptions.is_empty(), "removed");
        assert!(
            store.subscriptions().await.expect("works").is_empty(),
            "and its record with it"
        );
        assert_eq!(lifecycle.next_due().await, None);
    }

    #[tokio::test]
    async fn a_short_life_is_warned_halfway() {
        let (notifier, _store, _id, now) = notifier_with_subscription(8).await;
        let lifecycle = Lifecycle(notifier);
        assert_eq!(
            lifecycle.next_due().await,
            Some(now.saturating_add(Duration::from_mins(4)))
        );
    }
}
