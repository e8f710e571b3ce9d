//! Change notifications: Graph's subscriptions for presences, delivered to
//! webhooks at least once, and presenced's live stream.
//!
//! How a change becomes a notification:
//! 1. The store calls [`Notifier::changed`] (the `ChangeObserver`) inside
//!    the user's atomic section whenever the user's sequence number moves,
//!    which is every visible change: made by a request, or by time and
//!    folded in by the scheduler's tick at the instant it falls due. If a
//!    subscription or a stream watches the user, the presence is rendered
//!    there and sent down a channel; calls for one user arrive in order.
//! 2. The fan-out task ([`Notifier::run`]) turns each change into one
//!    notification per subscription naming the user, if the subscription
//!    has not already been sent that sequence number, and queues it for the
//!    subscription's URL (`delivery.rs`); and publishes it to the streams.
//! 3. When a receiver acknowledges a batch, the sequence number it has seen
//!    is recorded per (subscription, user) in the store (a *mark*).
//!
//! At least once, across restarts: pending notifications are not written
//! one by one. Instead, at start every subscribed user's current sequence
//! number is compared with the mark, and each user whose presence moved
//! since the receiver last acknowledged it is notified of its current
//! presence. A change acknowledged to its caller is durable in the user's
//! facts, so nothing is lost in any crash; a mark lost in a crash only means
//! one notification sent twice, which receivers drop by `sequenceNumber`.
//!
//! Subscriptions live in the store too (`subscription.rs`), and their two
//! timers (reauthorizationRequired before expiry, then removal) run on the
//! server's clock, so that the manual clock fires them as well.

pub mod address;
pub mod crypto;
pub mod delivery;
mod settings;
pub mod stream;
pub mod subscription;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use presence_core::{Duration, Instant, TenantId, Timeouts, UserFacts, UserId, UserKey};
use presence_store::{ChangeObserver, Store, StoreError};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::http::wire::{PresenceJson, Reader};
use crate::wire_time::format_instant;
use crypto::EncryptionCertificate;
use delivery::{Delivery, Item, Report};
pub use settings::NotifySettings;
use stream::StreamHub;
use subscription::{Owner, Subscription};

/// The most changes the fan-out takes from its channel at once.
const FAN_OUT_CHUNK: usize = 1_024;

/// reauthorizationRequired is sent this long before a subscription expires
/// (or halfway through a shorter life).
const REAUTHORIZE_BEFORE: Duration = Duration::from_mins(10);

/// One visible change of a watched user, from the observer to the fan-out.
#[derive(Debug)]
struct Change {
    key: UserKey,
    sequence: u64,
    presence: PresenceJson,
    streamed: bool,
}

impl Change {
    /// The presence `facts` show at `now`.
    fn new(
        key: &UserKey,
        facts: &UserFacts,
        now: Instant,
        timeouts: Timeouts,
        streamed: bool,
    ) -> Change {
        let presence = presence_core::presence_at(facts, now, timeouts);
        Change {
            key: key.clone(),
            sequence: presence.sequence,
            presence: PresenceJson::new(&key.user, &presence, Reader::Owner, None),
            streamed,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    /// The latest sequence number queued for the receiver.
    queued: u64,
    /// The latest it acknowledged (what the store holds).
    delivered: u64,
}

#[derive(Debug)]
struct Active {
    subscription: Arc<Subscription>,
    certificate: Option<Arc<EncryptionCertificate>>,
    marks: HashMap<UserId, Mark>,
    /// The instant of its pending timer.
    timer: Instant,
    reauthorization_sent: bool,
    /// When it was created or last renewed.
    since: Instant,
}

impl Active {
    fn reauthorize_at(&self) -> Instant {
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

    fn next_timer(&self) -> Instant {
        if self.reauthorization_sent {
            self.subscription.expiration
        } else {
            self.reauthorize_at()
        }
    }
}

/// How many streams watch a user (or a tenant), and since which stream
/// event without a break: a stream that resumes from an event at or after
/// it has missed nothing that the ring does not hold.
#[derive(Clone, Copy, Debug)]
struct Watched {
    count: usize,
    since: u64,
}

/// How long a closed stream's users stay watched, so that a client that
/// reconnects within it resumes from the ring instead of a fresh snapshot.
const STREAM_LINGER: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Default)]
struct Registry {
    subscriptions: HashMap<Arc<str>, Active>,
    by_user: HashMap<UserKey, Vec<Arc<str>>>,
    timers: BTreeSet<(Instant, Arc<str>)>,
    /// Open streams per user, and per tenant for whole-tenant streams.
    stream_users: HashMap<UserKey, Watched>,
    stream_tenants: HashMap<TenantId, Watched>,
}

impl Registry {
    fn insert(&mut self, active: Active) {
        let id: Arc<str> = Arc::from(active.subscription.id.as_str());
        for user in &active.subscription.users {
            let key = UserKey::new(active.subscription.tenant.clone(), user.clone());
            self.by_user.entry(key).or_default().push(id.clone());
        }
        self.timers.insert((active.timer, id.clone()));
        self.subscriptions.insert(id, active);
    }

    fn remove(&mut self, id: &str) -> Option<Active> {
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
        self.timers.remove(&(active.timer, id));
        Some(active)
    }

    fn reschedule(&mut self, id: &Arc<str>) {
        if let Some(active) = self.subscriptions.get_mut(id) {
            self.timers.remove(&(active.timer, id.clone()));
            active.timer = active.next_timer();
            self.timers.insert((active.timer, id.clone()));
        }
    }

    fn watching(&self) -> bool {
        !self.by_user.is_empty() || !self.stream_users.is_empty() || !self.stream_tenants.is_empty()
    }
}

/// A change notification as Graph sends it (one element of `value`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangeNotification<'a> {
    subscription_id: &'a str,
    subscription_expiration_date_time: String,
    change_type: &'static str,
    resource: String,
    resource_data: ResourceData<'a>,
    client_state: Option<&'a str>,
    tenant_id: &'a str,
    organization_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encrypted_content: Option<crypto::EncryptedContent>,
}

#[derive(Serialize)]
struct ResourceData<'a> {
    #[serde(rename = "@odata.type")]
    odata_type: &'static str,
    #[serde(rename = "@odata.id")]
    odata_id: String,
    id: &'a str,
    /// Beyond Graph: lets a receiver of basic notifications drop stale ones.
    #[serde(rename = "sequenceNumber")]
    sequence_number: &'a str,
}

/// The presence inside `encryptedContent`, as Graph's samples decrypt it.
#[derive(Serialize)]
struct ResourcePresence<'a> {
    #[serde(rename = "@odata.type")]
    odata_type: &'static str,
    #[serde(rename = "@odata.id")]
    odata_id: String,
    #[serde(flatten)]
    presence: &'a PresenceJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LifecycleNotification<'a> {
    subscription_id: &'a str,
    subscription_expiration_date_time: String,
    tenant_id: &'a str,
    organization_id: &'a str,
    client_state: Option<&'a str>,
    resource: &'a str,
    lifecycle_event: &'static str,
}

/// Why a subscription could not be changed.
#[derive(Debug)]
pub enum NotifyError {
    NotFound,
    Store(StoreError),
}

impl From<StoreError> for NotifyError {
    fn from(error: StoreError) -> NotifyError {
        NotifyError::Store(error)
    }
}

#[derive(Debug)]
pub struct Notifier {
    /// The loaded store, attached once it is open (see [`Notifier::attach`]).
    store: std::sync::OnceLock<Arc<dyn Store>>,
    clock: Arc<Clock>,
    timeouts: Timeouts,
    pub settings: NotifySettings,
    registry: Mutex<Registry>,
    /// Whether any subscription or stream watches anyone: the observer's
    /// fast path when nothing does.
    watching: AtomicBool,
    changes: mpsc::UnboundedSender<Change>,
    delivery: Arc<Delivery>,
    pub streams: StreamHub,
    timers_changed: Notify,
    /// Serializes subscription updates (a tokio mutex: held across the write).
    updating: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
}

/// The receiving ends the run task takes.
#[derive(Debug)]
pub struct Inboxes {
    changes: mpsc::UnboundedReceiver<Change>,
    reports: mpsc::UnboundedReceiver<Report>,
}

fn render<T: Serialize>(value: &T) -> String {
    // presenced's own shapes of strings and numbers always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

impl Notifier {
    pub fn new(
        clock: Arc<Clock>,
        timeouts: Timeouts,
        settings: NotifySettings,
        shutdown: CancellationToken,
    ) -> Result<(Notifier, Inboxes), String> {
        let (changes, changes_inbox) = mpsc::unbounded_channel();
        let (reports, reports_inbox) = mpsc::unbounded_channel();
        let retry_window =
            std::time::Duration::from_millis(settings.retry_window.as_millis().max(0) as u64);
        let delivery = Delivery::new(
            settings.allow_private,
            retry_window,
            reports,
            shutdown.clone(),
        )?;
        Ok((
            Notifier {
                store: std::sync::OnceLock::new(),
                clock,
                timeouts,
                settings,
                registry: Mutex::new(Registry::default()),
                watching: AtomicBool::new(false),
                changes,
                delivery: Arc::new(delivery),
                streams: StreamHub::new(),
                timers_changed: Notify::new(),
                updating: tokio::sync::Mutex::new(()),
                shutdown,
            },
            Inboxes {
                changes: changes_inbox,
                reports: reports_inbox,
            },
        ))
    }

    /// Gives the notifier the store once it is open, and makes it the
    /// store's change observer. Before this, subscription calls answer
    /// that the store is unavailable (as every request does then).
    pub fn attach(self: &Arc<Self>, store: Arc<dyn Store>) {
        store.observe(self.clone());
        let _ = self.store.set(store);
    }

    fn store(&self) -> Result<&Arc<dyn Store>, StoreError> {
        self.store
            .get()
            .ok_or_else(|| StoreError::Unavailable("presenced is still loading its store".into()))
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn update_watching(&self, registry: &Registry) {
        self.watching.store(registry.watching(), Ordering::Release);
        metrics::gauge!("presenced_subscriptions").set(registry.subscriptions.len() as f64);
    }

    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    // -----------------------------------------------------------------------
    // Subscriptions.

    /// Registers a validated subscription and makes it durable. Its marks
    /// start at each user's sequence number now; a change racing the
    /// creation is notified rather than lost.
    pub async fn create(
        &self,
        subscription: Subscription,
        certificate: Option<EncryptionCertificate>,
    ) -> Result<Arc<Subscription>, StoreError> {
        let now = self.clock.now();
        let subscription = Arc::new(subscription);
        let id = subscription.id.clone();
        let mut active = Active {
            subscription: subscription.clone(),
            certificate: certificate.map(Arc::new),
            marks: HashMap::new(),
            timer: now,
            reauthorization_sent: false,
            since: now,
        };
        active.timer = active.next_timer();
        {
            let mut registry = self.registry();
            registry.insert(active);
            self.update_watching(&registry);
        }
        self.timers_changed.notify_one();
        let sequences = match self
            .sequences(&subscription.tenant, &subscription.users)
            .await
        {
            Ok(sequences) => sequences,
            Err(error) => {
                self.unregister(&id);
                return Err(error);
            }
        };
        let mut writes = vec![(
            subscription::subscription_key(&id),
            Some(subscription::encode(&subscription)),
        )];
        {
            let mut registry = self.registry();
            if let Some(active) = registry.subscriptions.get_mut(id.as_str()) {
                for (user, sequence) in subscription.users.iter().zip(sequences) {
                    let mark = active.marks.entry(user.clone()).or_default();
                    mark.queued = mark.queued.max(sequence);
                    mark.delivered = mark.delivered.max(sequence);
                    writes.push((
                        subscription::mark_key(&id, user),
                        Some(mark.delivered.to_le_bytes().to_vec()),
                    ));
                }
            }
        }
        if let Err(error) = self.store()?.put_records(writes, true).await {
            self.unregister(&id);
            self.delivery.take(&subscription.notification_url, &id);
            return Err(error);
        }
        metrics::counter!("presenced_subscriptions_created_total").increment(1);
        Ok(subscription)
    }

    fn unregister(&self, id: &str) -> Option<Active> {
        let mut registry = self.registry();
        let removed = registry.remove(id);
        self.update_watching(&registry);
        removed
    }

    /// Each user's sequence number now.
    async fn sequences(&self, tenant: &TenantId, users: &[UserId]) -> Result<Vec<u64>, StoreError> {
        let keys: Vec<UserKey> = users
            .iter()
            .map(|user| UserKey::new(tenant.clone(), user.clone()))
            .collect();
        let now = self.clock.now();
        let mut sequences = vec![0; keys.len()];
        self.store()?
            .read(&keys, &mut |index, facts| {
                sequences[index] = facts.map_or(0, |facts| {
                    presence_core::sequence_at(facts, now, self.timeouts)
                });
            })
            .await?;
        Ok(sequences)
    }

    /// How many subscriptions an application holds in a tenant.
    pub fn count(&self, tenant: &TenantId, application: Option<&str>) -> usize {
        self.registry()
            .subscriptions
            .values()
            .filter(|active| {
                active.subscription.tenant == *tenant
                    && active.subscription.application_id.as_deref() == application
            })
            .count()
    }

    /// The caller's own subscriptions, oldest expiry first.
    pub fn list(&self, owner: &Owner) -> Vec<Arc<Subscription>> {
        let mut found: Vec<Arc<Subscription>> = self
            .registry()
            .subscriptions
            .values()
            .filter(|active| active.subscription.owned_by(owner))
            .map(|active| active.subscription.clone())
            .collect();
        found.sort_by(|a, b| a.expiration.cmp(&b.expiration).then(a.id.cmp(&b.id)));
        found
    }

    pub fn get(&self, id: &str, owner: &Owner) -> Option<Arc<Subscription>> {
        self.registry()
            .subscriptions
            .get(id)
            .filter(|active| active.subscription.owned_by(owner))
            .map(|active| active.subscription.clone())
    }

    /// Replaces a subscription's expiration and notification URL (PATCH):
    /// written first, installed once durable, so that a failed write
    /// changes nothing; a renewal owes a new reauthorizationRequired.
    pub async fn update(
        &self,
        id: &str,
        owner: &Owner,
        change: impl FnOnce(&mut Subscription),
    ) -> Result<Arc<Subscription>, NotifyError> {
        // One update at a time, so that memory and the store agree on the last.
        let _serialized = self.updating.lock().await;
        let existing = self.get(id, owner).ok_or(NotifyError::NotFound)?;
        let mut updated = (*existing).clone();
        change(&mut updated);
        let updated = Arc::new(updated);
        self.store()?
            .put_records(
                vec![(
                    subscription::subscription_key(id),
                    Some(subscription::encode(&updated)),
                )],
                true,
            )
            .await?;
        let now = self.clock.now();
        {
            let mut registry = self.registry();
            // Deleted or expired meanwhile: its record is gone with it.
            let Some(active) = registry.subscriptions.get_mut(id) else {
                return Err(NotifyError::NotFound);
            };
            active.subscription = updated.clone();
            active.reauthorization_sent = false;
            active.since = now;
            let key: Arc<str> = Arc::from(id);
            registry.reschedule(&key);
        }
        self.timers_changed.notify_one();
        if existing.notification_url != updated.notification_url {
            // What was waiting for the old URL goes to the new one.
            let moved = self.delivery.take(&existing.notification_url, id);
            self.delivery.send(&updated.notification_url, moved);
        }
        Ok(updated)
    }

    /// Deletes a subscription and its records.
    pub async fn delete(&self, id: &str, owner: &Owner) -> Result<(), NotifyError> {
        let owned = self
            .registry()
            .subscriptions
            .get(id)
            .is_some_and(|active| active.subscription.owned_by(owner));
        if !owned {
            return Err(NotifyError::NotFound);
        }
        let active = self.unregister(id).ok_or(NotifyError::NotFound)?;
        self.forget(&active).await?;
        metrics::counter!("presenced_subscriptions_deleted_total").increment(1);
        Ok(())
    }

    /// Drops a removed subscription's queued notifications and records.
    async fn forget(&self, active: &Active) -> Result<(), StoreError> {
        let subscription = &active.subscription;
        self.delivery
            .take(&subscription.notification_url, &subscription.id);
        let mut writes = vec![(subscription::subscription_key(&subscription.id), None)];
        writes.extend(
            subscription
                .users
                .iter()
                .map(|user| (subscription::mark_key(&subscription.id, user), None)),
        );
        self.store()?.put_records(writes, true).await
    }

    // -----------------------------------------------------------------------
    // Streams.

    /// Counts an open stream of `users` (all of the tenant's with `None`)
    /// until the guard is dropped, and [`STREAM_LINGER`] after. Also
    /// returns since which stream event all of them have been watched
    /// without a break (`None` if any was not watched until now).
    pub fn watch(
        self: &Arc<Self>,
        tenant: TenantId,
        users: Option<Vec<UserId>>,
    ) -> (StreamWatch, Option<u64>) {
        let mut registry = self.registry();
        let latest = self.streams.latest();
        fn hold<K: std::hash::Hash + Eq>(
            map: &mut HashMap<K, Watched>,
            key: K,
            latest: u64,
        ) -> Option<u64> {
            let watched = map.entry(key).or_insert(Watched {
                count: 0,
                since: latest,
            });
            let before = (watched.count > 0).then_some(watched.since);
            watched.count += 1;
            before
        }
        let since = match &users {
            None => hold(&mut registry.stream_tenants, tenant.clone(), latest),
            Some(users) => {
                // Every user is held, whatever the others answer.
                let held: Vec<Option<u64>> = users
                    .iter()
                    .map(|user| {
                        hold(
                            &mut registry.stream_users,
                            UserKey::new(tenant.clone(), user.clone()),
                            latest,
                        )
                    })
                    .collect();
                held.into_iter()
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|since| since.into_iter().max())
            }
        };
        self.update_watching(&registry);
        let watch = StreamWatch {
            notifier: self.clone(),
            tenant,
            users,
        };
        (watch, since)
    }

    fn release(&self, tenant: &TenantId, users: Option<&[UserId]>) {
        let mut registry = self.registry();
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Watched>, key: K) {
            if let Some(watched) = map.get_mut(&key) {
                watched.count -= 1;
                if watched.count == 0 {
                    map.remove(&key);
                }
            }
        }
        match users {
            None => release(&mut registry.stream_tenants, tenant.clone()),
            Some(users) => {
                for user in users {
                    release(
                        &mut registry.stream_users,
                        UserKey::new(tenant.clone(), user.clone()),
                    );
                }
            }
        }
        self.update_watching(&registry);
    }

    // -----------------------------------------------------------------------
    // The fan-out.

    /// Runs until shutdown: turns changes into notifications and records
    /// what receivers acknowledged.
    pub async fn run(self: Arc<Self>, mut inboxes: Inboxes) {
        let mut changes = Vec::with_capacity(FAN_OUT_CHUNK);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                received = inboxes.changes.recv_many(&mut changes, FAN_OUT_CHUNK) => {
                    if received == 0 {
                        break;
                    }
                    self.fan_out(changes.drain(..));
                }
                Some(report) = inboxes.reports.recv() => self.settle(report),
            }
        }
        self.delivery.stopped().await;
        tracing::info!("notifier stopped");
    }

    /// Turns changes into notifications, queued with one call per URL.
    fn fan_out(&self, changes: impl Iterator<Item = Change>) {
        let mut by_url: HashMap<String, Vec<Item>> = HashMap::new();
        for change in changes {
            self.fan_out_one(change, &mut by_url);
        }
        for (url, items) in by_url {
            self.delivery.send(&url, items);
        }
    }

    fn fan_out_one(&self, change: Change, by_url: &mut HashMap<String, Vec<Item>>) {
        let user_text = change.key.user.as_str().to_string();
        let sequence_text = change.presence.sequence_number.clone();
        let mut targets: Vec<(Arc<Subscription>, Option<Arc<EncryptionCertificate>>)> = Vec::new();
        {
            let mut registry = self.registry();
            let ids = registry
                .by_user
                .get(&change.key)
                .cloned()
                .unwrap_or_default();
            for id in ids {
                let Some(active) = registry.subscriptions.get_mut(&id) else {
                    continue;
                };
                let mark = active.marks.entry(change.key.user.clone()).or_default();
                if change.sequence <= mark.queued {
                    continue;
                }
                mark.queued = change.sequence;
                targets.push((active.subscription.clone(), active.certificate.clone()));
            }
        }
        for (subscription, certificate) in targets {
            let json = change_json(
                &subscription,
                certificate.as_deref(),
                &user_text,
                &sequence_text,
                &change.presence,
            );
            let item = Item {
                subscription: Arc::from(subscription.id.as_str()),
                mark: Some((change.key.user.clone(), change.sequence)),
                json,
                queued: std::time::Instant::now(),
            };
            match by_url.get_mut(&subscription.notification_url) {
                Some(items) => items.push(item),
                None => {
                    by_url.insert(subscription.notification_url.clone(), vec![item]);
                }
            }
        }
        if change.streamed {
            self.streams.publish(change.key, render(&change.presence));
        }
    }

    /// Records what receivers acknowledged, and gives up what they never
    /// did. The marks are written by a task of their own, so that the
    /// store's writes never hold up the fan-out; two of them landing out of
    /// order can only make a restart send one notification again.
    fn settle(&self, report: Report) {
        let (items, gave_up) = match report {
            Report::Delivered(items) => (items, false),
            Report::GaveUp(items) => (items, true),
        };
        let mut writes = Vec::new();
        let mut missed: Vec<Arc<Subscription>> = Vec::new();
        {
            let mut registry = self.registry();
            for item in &items {
                let Some((user, sequence)) = &item.mark else {
                    continue;
                };
                let Some(active) = registry.subscriptions.get_mut(&*item.subscription) else {
                    continue;
                };
                let mark = active.marks.entry(user.clone()).or_default();
                // A notification given up was never received: its mark stays,
                // so that a restart sends the user's presence again.
                if !gave_up && *sequence > mark.delivered {
                    mark.delivered = *sequence;
                    writes.push((
                        subscription::mark_key(&item.subscription, user),
                        Some(sequence.to_le_bytes().to_vec()),
                    ));
                }
                if gave_up
                    && !missed
                        .iter()
                        .any(|subscription| *subscription.id == *item.subscription)
                {
                    missed.push(active.subscription.clone());
                }
            }
        }
        if gave_up {
            metrics::counter!("presenced_notifications_missed_total").increment(items.len() as u64);
        }
        for subscription in missed {
            self.lifecycle(&subscription, "missed");
        }
        if writes.is_empty() {
            return;
        }
        let Ok(store) = self.store().cloned() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(error) = store.put_records(writes, false).await {
                // The receiver may be sent these again after a restart.
                tracing::warn!(%error, "could not record acknowledged notifications");
            }
        });
    }

    /// Queues a lifecycle notification, if the subscription has a lifecycle URL.
    fn lifecycle(&self, subscription: &Subscription, event: &'static str) {
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
                json,
                queued: std::time::Instant::now(),
            }],
        );
    }

    // -----------------------------------------------------------------------
    // Time.

    /// The earliest instant a subscription timer is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.registry().timers.first().map(|(at, _)| *at)
    }

    /// Sends every reauthorizationRequired and removes every subscription
    /// that is due at or before `now`.
    pub async fn process_due(&self, now: Instant) {
        loop {
            let (event, active) = {
                let mut registry = self.registry();
                let Some((at, id)) = registry.timers.first().cloned() else {
                    return;
                };
                if at > now {
                    return;
                }
                let expired = registry
                    .subscriptions
                    .get(&id)
                    .is_none_or(|active| active.subscription.expiration <= now);
                if expired {
                    let removed = registry.remove(&id);
                    registry.timers.remove(&(at, id));
                    self.update_watching(&registry);
                    ("subscriptionRemoved", removed)
                } else {
                    if let Some(active) = registry.subscriptions.get_mut(&id) {
                        active.reauthorization_sent = true;
                    }
                    registry.reschedule(&id);
                    let subscription = registry
                        .subscriptions
                        .get(&id)
                        .map(|active| active.subscription.clone());
                    if let Some(subscription) = subscription {
                        self.lifecycle(&subscription, "reauthorizationRequired");
                    }
                    continue;
                }
            };
            if let Some(active) = active {
                tracing::info!(subscription = %active.subscription.id, "a subscription expired and was removed");
                self.lifecycle(&active.subscription, event);
                if let Err(error) = self.forget(&active).await {
                    tracing::warn!(%error, "could not delete an expired subscription's records; it is removed again at the next start");
                }
            }
        }
    }

    /// Runs the timers on the system clock until shutdown.
    pub async fn run_timers(self: Arc<Self>) {
        loop {
            let changed = self.timers_changed.notified();
            let sleep = match self.next_due() {
                Some(at) => self.clock.until(at),
                None => std::time::Duration::from_secs(3600),
            };
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = changed => continue,
                () = tokio::time::sleep(sleep) => {}
            }
            self.process_due(self.clock.now()).await;
        }
    }

    // -----------------------------------------------------------------------
    // Start-up.

    /// Reads the subscriptions and marks back (start-up, before the
    /// scheduler's first ticks), removes the expired ones, and notifies
    /// every subscribed user whose presence moved since its receiver last
    /// acknowledged it.
    pub async fn load(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut loaded = Vec::new();
        self.store()?
            .scan_records(b"s/", &mut |key, value| match subscription::decode(value) {
                Ok(subscription) => loaded.push(subscription),
                Err(problem) => tracing::error!(
                    key = %String::from_utf8_lossy(key),
                    %problem,
                    "a subscription record cannot be read; it is ignored"
                ),
            })
            .await?;
        let mut marks: HashMap<String, HashMap<UserId, u64>> = HashMap::new();
        self.store()?
            .scan_records(b"m/", &mut |key, value| {
                if let Some((id, user, sequence)) = subscription::decode_mark(key, value) {
                    marks.entry(id).or_default().insert(user, sequence);
                }
            })
            .await?;
        let count = loaded.len();
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
            let mut active = Active {
                marks: subscription
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
                    .collect(),
                subscription: Arc::new(subscription),
                certificate,
                timer: now,
                reauthorization_sent: false,
                since: now,
            };
            if active.subscription.expiration <= now {
                active.timer = now;
            } else {
                active.reauthorization_sent = active.reauthorize_at() <= now;
                active.timer = active.next_timer();
            }
            let mut registry = self.registry();
            registry.insert(active);
            self.update_watching(&registry);
        }
        // Marks of subscriptions that are gone (an acknowledgement recorded
        // just after a deletion) are deleted.
        let orphans: Vec<presence_store::RecordWrite> = marks
            .iter()
            .flat_map(|(id, users)| {
                users
                    .keys()
                    .map(move |user| (subscription::mark_key(id, user), None))
            })
            .collect();
        if !orphans.is_empty() {
            self.store()?.put_records(orphans, false).await?;
        }
        // Expired while presenced was down: removed now, with their
        // lifecycle notifications.
        self.process_due(now).await;
        self.catch_up().await?;
        self.timers_changed.notify_one();
        tracing::info!(subscriptions = count, "subscriptions loaded");
        Ok(())
    }

    /// Notifies each subscribed user whose presence is numbered otherwise
    /// than its subscription's mark.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let keys: Vec<UserKey> = self.registry().by_user.keys().cloned().collect();
        let now = self.clock.now();
        for chunk in keys.chunks(1_024) {
            let mut changes = Vec::new();
            self.store()?
                .read(chunk, &mut |index, facts| {
                    let key = &chunk[index];
                    let empty = UserFacts::default();
                    let facts = facts.unwrap_or(&empty);
                    changes.push(Change::new(key, facts, now, self.timeouts, false));
                })
                .await?;
            self.fan_out(changes.into_iter());
        }
        Ok(())
    }
}

/// One change notification's JSON, encrypted for rich subscriptions.
fn change_json(
    subscription: &Subscription,
    certificate: Option<&EncryptionCertificate>,
    user: &str,
    sequence: &str,
    presence: &PresenceJson,
) -> String {
    let tenant = subscription.tenant.as_str();
    let encrypted_content = match certificate {
        Some(certificate) if subscription.include_resource_data => {
            let plain = render(&ResourcePresence {
                odata_type: "#microsoft.graph.presence",
                odata_id: format!("users/{user}/presence"),
                presence,
            });
            match certificate.encrypt(plain.as_bytes()) {
                Ok(content) => Some(content),
                Err(problem) => {
                    tracing::error!(subscription = %subscription.id, %problem, "could not encrypt a notification; it is sent without resource data");
                    None
                }
            }
        }
        _ => None,
    };
    render(&ChangeNotification {
        subscription_id: &subscription.id,
        subscription_expiration_date_time: format_instant(subscription.expiration),
        change_type: "updated",
        resource: format!("communications/presences/{user}"),
        resource_data: ResourceData {
            odata_type: "#microsoft.graph.presence",
            odata_id: format!("users/{user}/presence"),
            id: user,
            sequence_number: sequence,
        },
        client_state: subscription.client_state.as_deref(),
        tenant_id: &tenant,
        organization_id: &tenant,
        encrypted_content,
    })
}

impl ChangeObserver for Notifier {
    fn changed(&self, key: &UserKey, facts: &UserFacts, now: Instant) {
        if !self.watching.load(Ordering::Acquire) {
            return;
        }
        let (subscribed, streamed) = {
            let registry = self.registry();
            (
                registry.by_user.contains_key(key),
                registry.stream_users.contains_key(key)
                    || registry.stream_tenants.contains_key(&key.tenant),
            )
        };
        if !subscribed && !streamed {
            return;
        }
        let change = Change::new(key, facts, now, self.timeouts, streamed);
        // The receiver is gone only when presenced is stopping.
        let _ = self.changes.send(change);
    }
}

/// An open stream, counted while it lives.
#[derive(Debug)]
pub struct StreamWatch {
    notifier: Arc<Notifier>,
    tenant: TenantId,
    users: Option<Vec<UserId>>,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        let notifier = self.notifier.clone();
        let tenant = self.tenant.clone();
        let users = self.users.take();
        let release = move || notifier.release(&tenant, users.as_deref());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let shutdown = self.notifier.shutdown.clone();
                runtime.spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(STREAM_LINGER) => {}
                    }
                    release();
                });
            }
            Err(_) => release(),
        }
    }
}
