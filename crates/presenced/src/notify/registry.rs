//! The notifier's registry: the subscriptions in force, who each one names,
//! what each receiver has been sent and has acknowledged, and which users
//! (or whole tenants) open streams watch.

use std::collections::HashMap;
use std::sync::Arc;

use presence_core::{Duration, Instant, TenantId, UserId, UserKey};

use super::crypto::EncryptionCertificate;
use super::subscription::Subscription;

/// reauthorizationRequired is sent this long before a subscription expires
/// (or halfway through a shorter life).
pub const REAUTHORIZE_BEFORE: Duration = Duration::from_mins(10);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// The latest sequence number queued for the receiver.
    pub queued: u64,
    /// The latest it acknowledged (what the store holds).
    pub delivered: u64,
}

#[derive(Debug)]
pub struct Active {
    pub subscription: Arc<Subscription>,
    pub certificate: Option<Arc<EncryptionCertificate>>,
    pub marks: HashMap<UserId, Mark>,
    pub reauthorization_sent: bool,
    /// When it was created or last renewed.
    pub since: Instant,
}

impl Active {
    pub fn new(
        subscription: Arc<Subscription>,
        certificate: Option<Arc<EncryptionCertificate>>,
        since: Instant,
    ) -> Active {
        Active {
            subscription,
            certificate,
            marks: HashMap::new(),
            reauthorization_sent: false,
            since,
        }
    }

    pub fn reauthorize_at(&self) -> Instant {
        let life = self.subscription.expiration.duration_since(self.since);
        let before = if life.as_millis() / 2 < REAUTHORIZE_BEFORE.as_millis() {
            Duration::from_millis(life.as_millis() / 2)
        } else {
            REAUTHORIZE_BEFORE
        };
        Instant::from_unix_millis(
            self.subscription.expiration.as_unix_millis() - before.as_millis(),
        )
    }

    /// When its timer is due: the reauthorization, then the expiry.
    pub fn next_timer(&self) -> Instant {
        if self.reauthorization_sent {
            self.subscription.expiration
        } else {
            self.reauthorize_at()
        }
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    pub subscriptions: HashMap<Arc<str>, Active>,
    pub by_user: HashMap<UserKey, Vec<Arc<str>>>,
    /// How many open streams watch a user, and whole tenants.
    pub stream_users: HashMap<UserKey, usize>,
    pub stream_tenants: HashMap<TenantId, usize>,
}

impl Registry {
    pub fn insert(&mut self, active: Active) {
        let id: Arc<str> = Arc::from(active.subscription.id.as_str());
        for user in &active.subscription.users {
            let key = UserKey::new(active.subscription.tenant.clone(), user.clone());
            self.by_user.entry(key).or_default().push(id.clone());
        }
        self.subscriptions.insert(id, active);
    }

    pub fn remove(&mut self, id: &str) -> Option<Active> {
        let (id, active) = self.subscriptions.remove_entry(id)?;
        for user in &active.subscription.users {
            let key = UserKey::new(active.subscription.tenant.clone(), user.clone());
            if let Some(ids) = self.by_user.get_mut(&key) {
                ids.retain(|other| other != &id);
                if ids.is_empty() {
                    self.by_user.remove(&key);
                }
            }
        }
        Some(active)
    }

    /// Whether any subscription or stream watches anyone.
    pub fn watching(&self) -> bool {
        !self.by_user.is_empty() || !self.stream_users.is_empty() || !self.stream_tenants.is_empty()
    }

    /// Whether an open stream watches `key`.
    pub fn streamed(&self, key: &UserKey) -> bool {
        self.stream_users.contains_key(key) || self.stream_tenants.contains_key(&key.tenant)
    }

    /// Counts an open stream of `users` (all of the tenant's with `None`).
    pub fn hold_stream(&mut self, tenant: &TenantId, users: Option<&[UserId]>) {
        match users {
            None => *self.stream_tenants.entry(tenant.clone()).or_default() += 1,
            Some(users) => {
                for user in users {
                    let key = UserKey::new(tenant.clone(), user.clone());
                    *self.stream_users.entry(key).or_default() += 1;
                }
            }
        }
    }

    /// Uncounts what [`Registry::hold_stream`] counted.
    pub fn release_stream(&mut self, tenant: &TenantId, users: Option<&[UserId]>) {
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
            if let Some(count) = map.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
        match users {
            None => release(&mut self.stream_tenants, tenant.clone()),
            Some(users) => {
                for user in users {
                    release(
                        &mut self.stream_users,
                        UserKey::new(tenant.clone(), user.clone()),
                    );
                }
            }
        }
    }

    /// The subscriptions naming `key` that have not been sent `sequence`
    /// yet; each is marked as sent it.
    pub fn claim(
        &mut self,
        key: &UserKey,
        sequence: u64,
    ) -> Vec<(Arc<Subscription>, Option<Arc<EncryptionCertificate>>)> {
        let Some(ids) = self.by_user.get(key) else {
            return Vec::new();
        };
        let mut targets = Vec::new();
        for id in ids {
            let Some(active) = self.subscriptions.get_mut(id) else {
                continue;
            };
            let mark = active.marks.entry(key.user.clone()).or_default();
            if sequence <= mark.queued {
                continue;
            }
            mark.queued = sequence;
            targets.push((active.subscription.clone(), active.certificate.clone()));
        }
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).expect("valid")
    }

    fn tenant() -> TenantId {
        TenantId::parse("t").expect("valid")
    }

    fn subscription(users: &[&str], since: Instant, minutes: i64) -> Arc<Subscription> {
        Arc::new(Subscription::new(
            tenant(),
            Some("app".into()),
            Some("app".into()),
            "communications/presences".into(),
            users.iter().map(|id| user(id)).collect(),
            "https://example.com/hook".into(),
            None,
            since.saturating_add(Duration::from_mins(minutes)),
        ))
    }

    #[test]
    fn a_change_is_claimed_once_per_subscription_and_sequence() {
        let now = Instant::from_unix_millis(1_000_000);
        let mut registry = Registry::default();
        let first = subscription(&["a", "b"], now, 60);
        let second = subscription(&["a"], now, 60);
        registry.insert(Active::new(first.clone(), None, now));
        registry.insert(Active::new(second.clone(), None, now));
        let a = UserKey::new(tenant(), user("a"));
        let b = UserKey::new(tenant(), user("b"));
        assert_eq!(registry.claim(&a, 1).len(), 2);
        assert_eq!(registry.claim(&a, 1).len(), 0, "already sent");
        assert_eq!(registry.claim(&a, 0).len(), 0, "older than what was sent");
        assert_eq!(registry.claim(&b, 1).len(), 1);
        registry.remove(&second.id);
        assert_eq!(registry.claim(&a, 2).len(), 1);
        registry.remove(&first.id);
        assert!(registry.claim(&a, 3).is_empty());
        assert!(!registry.watching());
    }

    #[test]
    fn streams_are_counted_per_user_and_per_tenant() {
        let mut registry = Registry::default();
        let a = UserKey::new(tenant(), user("a"));
        registry.hold_stream(&tenant(), Some(&[user("a")]));
        registry.hold_stream(&tenant(), Some(&[user("a")]));
        assert!(registry.streamed(&a));
        registry.release_stream(&tenant(), Some(&[user("a")]));
        assert!(registry.streamed(&a), "one stream still holds it");
        registry.release_stream(&tenant(), Some(&[user("a")]));
        assert!(!registry.streamed(&a));
        registry.hold_stream(&tenant(), None);
        assert!(registry.streamed(&UserKey::new(tenant(), user("anyone"))));
        registry.release_stream(&tenant(), None);
        assert!(!registry.watching());
    }

    #[test]
    fn reauthorization_comes_ten_minutes_before_expiry_or_halfway() {
        let now = Instant::from_unix_millis(1_000_000);
        let long = Active::new(subscription(&["a"], now, 60), None, now);
        assert_eq!(
            long.reauthorize_at(),
            now.saturating_add(Duration::from_mins(50))
        );
        let short = Active::new(subscription(&["a"], now, 8), None, now);
        assert_eq!(
            short.reauthorize_at(),
            now.saturating_add(Duration::from_mins(4))
        );
        let mut sent = short;
        sent.reauthorization_sent = true;
        assert_eq!(sent.next_timer(), sent.subscription.expiration);
    }
}
