//! Change notifications: Graph's subscriptions for presences, delivered to
//! webhooks at least once, and presenced's live stream.
//!
//! How a change becomes a notification:
//! 1. The store appends every visible change (a user's sequence number
//!    moved, by a request, or by time and folded in by the scheduler's tick
//!    at the instant it falls due) to its change feed, in the same atomic
//!    step as the change. The feed keeps changes while the notifier follows
//!    it, which it does while any subscription or stream watches anyone.
//! 2. The notifier's run task reads the feed after its cursor
//!    (`fan_out.rs`): each change becomes one notification per subscription
//!    naming the user that has not been sent that sequence number, rendered
//!    for the subscription's creator and queued for its URL
//!    (`delivery.rs`); and one stream event, if a stream watches the user.
//!    A gap in the feed (the notifier fell further behind than it keeps) is
//!    closed by a catch-up from the facts (`catch_up.rs`).
//! 3. When a receiver acknowledges a batch, the sequence number it has seen
//!    is recorded per (subscription, user) in the store's subscription
//!    repository (a *mark*).
//!
//! At least once, across restarts: pending notifications are not written
//! one by one. Instead, at start every subscribed user's current sequence
//! number is compared with the mark, and each user whose presence moved
//! since the receiver last acknowledged it is notified of its current
//! presence (`catch_up.rs`). A change acknowledged to its caller is durable
//! in the user's facts, so nothing is lost in any crash; a mark lost in a
//! crash only means one notification sent twice, which receivers drop by
//! `sequenceNumber`.
//!
//! Subscriptions live in the store's subscription repository too, and their
//! timers (reauthorizationRequired before expiry, then removal) are a client
//! of the timeline (`lifecycle.rs`), so that the manual clock fires them as
//! well.
//!
//! Parts: `registry.rs` (who is subscribed and streamed, what was sent),
//! `fan_out.rs`, `lifecycle.rs`, `catch_up.rs`, `delivery.rs`, `stream.rs`,
//! `subscription.rs` (the subscription and its record), `address.rs` (the
//! SSRF guard), `crypto.rs` (encrypted resource data).

pub mod address;
mod catch_up;
pub mod crypto;
pub mod delivery;
mod fan_out;
mod lifecycle;
mod nodes;
mod registry;
mod settings;
pub mod stream;
pub mod subscription;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use presence_core::{TenantId, Timeouts, UserId, UserKey};
use presence_store::{Cursor, Following, Store, StoreError};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::ownership::Tenure;
use crate::tasks::Tasks;
use crypto::EncryptionCertificate;
use delivery::{Delivery, Report};
use fan_out::Visible;
pub use lifecycle::Lifecycle;
use nodes::Warrants;
use registry::{Active, Registry};
pub use settings::NotifySettings;
use stream::StreamHub;
use subscription::{Owner, Subscription};

/// The most changes the fan-out takes from the feed at once.
const FAN_OUT_CHUNK: usize = 1_024;

/// How long a closed stream's users stay watched, so that a client that
/// reconnects within it resumes from the feed instead of a fresh snapshot.
const STREAM_LINGER: std::time::Duration = std::time::Duration::from_secs(300);

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
    /// Whether any subscription or stream watches anyone.
    watching: AtomicBool,
    /// Held while watching: the store's feed keeps changes for the notifier.
    following: Mutex<Option<Following>>,
    /// Where the feed began keeping changes when following last started:
    /// the run task moves its cursor there, since nothing before it was
    /// watched.
    restart_from: Mutex<Option<Cursor>>,
    delivery: Arc<Delivery>,
    pub streams: StreamHub,
    /// Wakes the timeline when a subscription's timer moved.
    timers_changed: Notify,
    /// Serializes subscription updates (a tokio mutex: held across the write).
    updating: tokio::sync::Mutex<()>,
    /// Owns the mark writes and stream lingers this spawns (its run task
    /// is spawned by `server::run`), and holds the shutdown token.
    tasks: Tasks,
    /// With many nodes: the partitions whose webhooks this node sends now
    /// (`nodes.rs`); also checked by the delivery before each POST.
    warrants: Arc<Warrants>,
    /// The repository's subscriptions version the registry reflects.
    subscriptions_version: std::sync::atomic::AtomicU64,
}

/// The receiving end of delivery reports, which the run task takes.
#[derive(Debug)]
pub struct Inboxes {
    reports: mpsc::UnboundedReceiver<Report>,
    /// With many nodes: the partitions this node takes over.
    pub gained: Option<mpsc::UnboundedReceiver<Vec<Tenure>>>,
}

/// What woke the run task.
enum Wake {
    Stop,
    Feed,
    Report(Report),
    /// With many nodes: partitions taken over.
    Gained(Vec<Tenure>),
    /// With many nodes: time to look for other nodes' subscription changes.
    Refresh,
}

/// How often a node of many looks for subscriptions that other nodes
/// created, changed or deleted (it also looks before every fan-out).
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Notifier {
    pub fn new(
        clock: Arc<Clock>,
        timeouts: Timeouts,
        settings: NotifySettings,
        tasks: Tasks,
    ) -> Result<(Notifier, Inboxes), String> {
        let (reports, reports_inbox) = mpsc::unbounded_channel();
        let retry_window =
            std::time::Duration::from_millis(settings.retry_window.as_millis().max(0) as u64);
        let extra_roots = match &settings.webhook_ca_file {
            None => Vec::new(),
            Some(path) => crate::tls::trusted_certificates("--webhook-ca-file", path)?,
        };
        let warrants = Arc::new(Warrants::default());
        let delivery = Delivery::new(
            settings.allow_private,
            &extra_roots,
            retry_window,
            reports,
            tasks.clone(),
        )?
        .checking(warrants.clone());
        Ok((
            Notifier {
                store: std::sync::OnceLock::new(),
                clock,
                timeouts,
                settings,
                registry: Mutex::new(Registry::default()),
                watching: AtomicBool::new(false),
                following: Mutex::new(None),
                restart_from: Mutex::new(None),
                delivery: Arc::new(delivery),
                streams: StreamHub::new(),
                timers_changed: Notify::new(),
                updating: tokio::sync::Mutex::new(()),
                tasks,
                warrants,
                subscriptions_version: std::sync::atomic::AtomicU64::new(0),
            },
            Inboxes {
                reports: reports_inbox,
                gained: None,
            },
        ))
    }

    /// Gives the notifier the store once it is open. Before this,
    /// subscription calls answer that the store is unavailable (as every
    /// request does then).
    pub fn attach(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
        let registry = self.registry();
        self.update_watching(&registry);
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

    /// Follows the store's feed exactly while anything is watched. Called
    /// with the registry's lock held, so that a subscription or stream is
    /// followed before it reads the sequence numbers it starts from.
    fn update_watching(&self, registry: &Registry) {
        let watching = registry.watching();
        self.watching.store(watching, Ordering::Release);
        metrics::gauge!("presenced_subscriptions").set(registry.subscriptions.len() as f64);
        let mut following = self
            .following
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match (watching, following.is_some(), self.store.get()) {
            (true, false, Some(store)) => {
                let started = store.follow();
                *self
                    .restart_from
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner()) = started.since.clone();
                *following = Some(started);
            }
            (false, true, _) => *following = None,
            _ => {}
        }
    }

    /// Moves `cursor` to where following last started, if that is ahead of
    /// it: what lies between was not watched. Returns whether it moved.
    fn restart(&self, cursor: &mut Cursor) -> bool {
        let from = self
            .restart_from
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        match from {
            Some(from) if from.epoch != cursor.epoch || from.offsets > cursor.offsets => {
                *cursor = from;
                true
            }
            _ => false,
        }
    }

    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    pub fn shutdown(&self) -> &CancellationToken {
        self.tasks.shutdown()
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
        let active = Active::new(subscription.clone(), certificate.map(Arc::new), now);
        {
            let mut registry = self.registry();
            registry.insert(active);
            self.update_watching(&registry);
        }
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
        let mut marks = Vec::with_capacity(subscription.users.len());
        {
            let mut registry = self.registry();
            if let Some(active) = registry.subscriptions.get_mut(id.as_str()) {
                for (user, sequence) in subscription.users.iter().zip(sequences) {
                    let mark = active.marks.entry(user.clone()).or_default();
                    mark.queued = mark.queued.max(sequence);
                    mark.delivered = mark.delivered.max(sequence);
                    marks.push(presence_store::Mark {
                        subscription: id.clone(),
                        user: user.clone(),
                        sequence: mark.delivered,
                    });
                }
            }
        }
        // The record first, durably: marks without it are orphans that the
        // next start deletes; it without its marks notifies each user once.
        let store = self.store()?.clone();
        let written = match store
            .put_subscription(&id, subscription::encode(&subscription))
            .await
        {
            Ok(()) => store.put_marks(&marks).await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            self.unregister(&id);
            self.delivery.take(&subscription.notification_url, &id);
            if let Err(error) = store.delete_subscription(&id).await {
                tracing::warn!(%error, "could not delete a subscription whose creation failed; it is loaded again at the next start");
            }
            return Err(error);
        }
        self.set_timer(&id).await;
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

    /// The caller's own subscriptions, in the order of their ids (the
    /// order `GET /subscriptions` pages them in).
    pub fn list(&self, owner: &Owner) -> Vec<Arc<Subscription>> {
        let mut found: Vec<Arc<Subscription>> = self
            .registry()
            .subscriptions
            .values()
            .filter(|active| active.subscription.owned_by(owner))
            .map(|active| active.subscription.clone())
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
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
            .put_subscription(id, subscription::encode(&updated))
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
        }
        self.set_timer(id).await;
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

    /// Drops a removed subscription's queued notifications, records and timer.
    async fn forget(&self, active: &Active) -> Result<(), StoreError> {
        let subscription = &active.subscription;
        self.delivery
            .take(&subscription.notification_url, &subscription.id);
        self.store()?.delete_subscription(&subscription.id).await
    }

    // -----------------------------------------------------------------------
    // Streams.

    /// Counts an open stream of `users` (all of the tenant's with `None`)
    /// until the guard is dropped, and [`STREAM_LINGER`] after, so that the
    /// store's feed keeps their changes for a resumption.
    pub fn watch(self: &Arc<Self>, tenant: TenantId, users: Option<Vec<UserId>>) -> StreamWatch {
        let mut registry = self.registry();
        registry.hold_stream(&tenant, users.as_deref());
        self.update_watching(&registry);
        StreamWatch {
            notifier: self.clone(),
            tenant,
            users,
        }
    }

    fn release(&self, tenant: &TenantId, users: Option<&[UserId]>) {
        let mut registry = self.registry();
        registry.release_stream(tenant, users);
        self.update_watching(&registry);
    }

    /// The feed's changes after `cursor` (a resumed stream's replay), up to
    /// `limit`: those of users `wanted` picks, and the cursor after all of
    /// them; `None` if they cannot all be had. Only a picked change's event
    /// id is written out, since a stream of a few users skips most of the
    /// feed.
    pub async fn replay_after(
        &self,
        cursor: &Cursor,
        limit: usize,
        wanted: impl Fn(&UserKey) -> bool,
    ) -> Result<Option<(Vec<stream::StreamEvent>, Cursor)>, StoreError> {
        let store = self.store()?;
        let Some(changes) = store.read_after(cursor, limit).await? else {
            return Ok(None);
        };
        if changes.len() == limit {
            return Ok(None);
        }
        let mut at = cursor.clone();
        let mut events = Vec::new();
        for change in changes {
            at.advance(change.position);
            if wanted(&change.key) {
                events.push(stream::StreamEvent {
                    id: at.to_text(),
                    position: change.position,
                    key: change.key,
                    facts: change.facts,
                    at: change.at,
                });
            }
        }
        Ok(Some((events, at)))
    }

    /// The feed's cursor now, as a stream event id.
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        self.store()?.head().await
    }

    // -----------------------------------------------------------------------
    // The run task.

    /// Runs until shutdown: reads the store's change feed and turns changes
    /// into notifications and stream events, and records what receivers
    /// acknowledged. A long-lived task of `server::run`'s [`Tasks`]: it
    /// returns `Ok` once shutdown is requested, and an error only if it
    /// cannot start (then presenced stops, since nothing would be notified).
    pub async fn run(self: Arc<Self>, mut inboxes: Inboxes) -> Result<(), String> {
        let store = self
            .store()
            .map_err(|error| format!("the notifier has no store: {error}"))?
            .clone();
        // Where following began, if it did (the start-up load followed the
        // feed before its catch-up): changes made since, by the first ticks
        // racing this task's start, are read from there rather than skipped.
        let following_since = self
            .restart_from
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        let mut cursor = match following_since {
            Some(since) => since,
            None => loop {
                match store.head().await {
                    Ok(cursor) => break cursor,
                    Err(error) => {
                        tracing::warn!(%error, "could not read the change feed's head; retrying");
                        tokio::select! {
                            () = self.shutdown().cancelled() => return Ok(()),
                            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        }
                    }
                }
            },
        };
        let shared = self.shares_partitions();
        let mut gained = inboxes.gained.take();
        // Take-overs that failed (the store was unavailable), tried again
        // at most every REFRESH_EVERY: until one succeeds, their
        // partitions' webhooks wait.
        let mut taking_over: Vec<Tenure> = Vec::new();
        let mut next_try = tokio::time::Instant::now();
        loop {
            if !taking_over.is_empty() && tokio::time::Instant::now() >= next_try {
                next_try = tokio::time::Instant::now() + REFRESH_EVERY;
                self.take_over_or_keep(&mut taking_over).await;
            }
            self.restart(&mut cursor);
            let wake = {
                let feed = store.wait_after(&cursor);
                let gained = async {
                    match gained.as_mut() {
                        Some(gained) => gained.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let refresh = async {
                    if shared {
                        tokio::time::sleep(REFRESH_EVERY).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = self.shutdown().cancelled() => Wake::Stop,
                    () = feed => Wake::Feed,
                    Some(report) = inboxes.reports.recv() => Wake::Report(report),
                    Some(partitions) = gained => Wake::Gained(partitions),
                    () = refresh => Wake::Refresh,
                }
            };
            match wake {
                Wake::Stop => break,
                Wake::Report(report) => self.settle(report),
                Wake::Refresh => {
                    if let Err(error) = self.refresh().await {
                        tracing::warn!(%error, "could not read the subscriptions other nodes changed");
                    }
                }
                Wake::Gained(tenures) => {
                    taking_over.extend(tenures);
                    next_try = tokio::time::Instant::now() + REFRESH_EVERY;
                    self.take_over_or_keep(&mut taking_over).await;
                }
                Wake::Feed => match store.read_after(&cursor, FAN_OUT_CHUNK).await {
                    Ok(Some(changes)) => {
                        // Read after the changes: a subscription created
                        // (on any node) before a change was made is known
                        // before the change is fanned out.
                        if let Err(error) = self.refresh().await {
                            tracing::warn!(%error, "could not read the subscriptions other nodes changed");
                        }
                        self.fan_out(changes.into_iter().map(Visible::from), Some(&mut cursor));
                    }
                    Ok(None) => {
                        if self.restart(&mut cursor) {
                            continue;
                        }
                        // Fell behind what the feed keeps: resynchronize
                        // from the facts.
                        match store.head().await {
                            Ok(head) => cursor = head,
                            Err(error) => {
                                tracing::warn!(%error, "could not read the change feed's head");
                                continue;
                            }
                        }
                        if let Err(error) = self.catch_up().await {
                            tracing::warn!(%error, "could not catch up after a gap in the change feed");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read the change feed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
            }
        }
        // The queues' drain tasks stop on the same token; `run`'s tracker
        // waits for them.
        Ok(())
    }

    /// Takes `tenures` over, or keeps them to try again.
    async fn take_over_or_keep(&self, tenures: &mut Vec<Tenure>) {
        match self.take_over(tenures).await {
            Ok(()) => tenures.clear(),
            Err(error) => {
                tracing::warn!(%error, "could not catch up the partitions taken over; trying again in a second");
            }
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
        let mut marks = Vec::new();
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
                    // Queued before a take-over forgot it, and acknowledged after.
                    mark.queued = mark.queued.max(*sequence);
                    marks.push(presence_store::Mark {
                        subscription: item.subscription.to_string(),
                        user: user.clone(),
                        sequence: *sequence,
                    });
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
        if marks.is_empty() {
            return;
        }
        let Ok(store) = self.store().cloned() else {
            return;
        };
        self.tasks.spawn_short("mark write", async move {
            if let Err(error) = store.put_marks(&marks).await {
                // The receiver may be sent these again after a restart.
                tracing::warn!(%error, "could not record acknowledged notifications");
            }
        });
    }
}

#[cfg(test)]
impl Notifier {
    /// A notifier over `store` on `clock`, with the default settings and a
    /// tracker of its own (unit tests).
    pub(crate) fn for_tests(clock: Arc<Clock>, store: Arc<dyn Store>) -> (Arc<Notifier>, Inboxes) {
        let (notifier, inboxes) = Notifier::new(
            clock,
            Timeouts::default(),
            NotifySettings::default(),
            Tasks::new(CancellationToken::new()),
        )
        .expect("a notifier");
        let notifier = Arc::new(notifier);
        notifier.attach(store);
        (notifier, inboxes)
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
        let shutdown = self.notifier.shutdown().clone();
        // With no runtime to linger on, or once stopping (nobody will
        // resume), the users are released at once.
        if shutdown.is_cancelled() || tokio::runtime::Handle::try_current().is_err() {
            release();
            return;
        }
        self.notifier
            .tasks
            .spawn_short("stream linger", async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(STREAM_LINGER) => {}
                }
                release();
            });
    }
}
