//! The presence service: what every edge (HTTP handlers, the live stream,
//! webhooks, and the board to come) calls to read presence for a viewer and
//! to apply commands. It answers in domain terms ([`ServiceError`]); only
//! `http/` maps those to Graph's error envelope.
//!
//! Architecture invariant: there is one render path and one visibility
//! rule. Every presence leaves presenced through [`render`] with the
//! [`Viewer`] it is for, so what a caller sees through GET is exactly what
//! it sees through the stream and through a rich notification of a
//! subscription it created.

use std::sync::{Arc, OnceLock};

use presence_core::{
    Applied, Command, CommandError, Instant, Timeouts, UserFacts, UserId, UserKey,
};
use presence_store::{Memo, Store, StoreError};

use bytes::Bytes;

use crate::clock::Clock;
use crate::notify::Notifier;
use crate::wire::presence::PresenceJson;
pub use crate::wire::presence::{Viewer, render};
use crate::wire::rendered::{RenderedPresences, Renderings, with_context};

mod stream;

pub use stream::PresenceStream;

/// Why the service could not do what it was asked, in domain terms.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// What was named does not exist (for this caller).
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but cannot be applied.
    #[error("{0}")]
    Refused(String),
    /// The store cannot answer now; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A bound of the server's forbids it (the users a tenant may hold).
    #[error("{0}")]
    Quota(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        match error {
            // Said once: the HTTP layer says "the store is unavailable".
            StoreError::Unavailable(message) => ServiceError::Unavailable(message),
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

#[derive(Debug)]
pub struct PresenceService {
    /// The store, once it is loaded; until then every call is
    /// [`ServiceError::Unavailable`] (HTTP answers 503, `/readyz` too).
    store: OnceLock<Arc<dyn Store>>,
    pub clock: Arc<Clock>,
    pub timeouts: Timeouts,
    /// Subscriptions, webhooks and the live stream's hub.
    notifier: Arc<Notifier>,
    /// Presences rendered once and answered again while they hold.
    rendered: RenderedPresences,
}

impl PresenceService {
    /// A service whose rendered presences take up to `render_cache_bytes`.
    pub fn new(
        clock: Arc<Clock>,
        timeouts: Timeouts,
        notifier: Arc<Notifier>,
        render_cache_bytes: usize,
    ) -> PresenceService {
        PresenceService {
            store: OnceLock::new(),
            clock,
            timeouts,
            notifier,
            rendered: RenderedPresences::new(render_cache_bytes as u64),
        }
    }

    /// The bytes the rendered presences take now.
    pub fn rendered_bytes(&self) -> u64 {
        self.rendered.weight()
    }

    /// Lets calls through to the loaded store.
    pub fn attach(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }

    pub fn store(&self) -> Result<&Arc<dyn Store>, ServiceError> {
        self.store
            .get()
            .ok_or_else(|| ServiceError::Unavailable("presenced is still loading its store".into()))
    }

    /// Applies a command to one user at the clock's now.
    pub async fn apply(&self, key: &UserKey, command: &Command) -> Result<Applied, ServiceError> {
        let now = self.clock.now();
        match self
            .store()?
            .apply(key, command, now, self.timeouts)
            .await?
        {
            Ok(applied) => Ok(applied),
            Err(CommandError::SessionNotFound(id)) => Err(ServiceError::NotFound(format!(
                "The user has no presence session '{id}'; it was never set, was cleared, or has expired."
            ))),
            Err(refused @ CommandError::TooManySessions) => {
                Err(ServiceError::Refused(format!("{refused}.")))
            }
            Err(CommandError::TenantFull { limit }) => Err(ServiceError::Quota(format!(
                "The tenant already holds {limit} users, the most this presenced allows (--max-users-per-tenant), and this write would add another, so nothing was written. Writes to the tenant's existing users go on; to add users, ask the operator to raise --max-users-per-tenant."
            ))),
        }
    }

    /// The JSON of `key`'s presence now for `viewer`, with `context` as its
    /// `@odata.context` when given (rendered presences are kept: see
    /// `wire/rendered.rs`).
    pub async fn read_one_json(
        &self,
        key: &UserKey,
        viewer: &Viewer,
        context: Option<&str>,
    ) -> Result<Bytes, ServiceError> {
        let now = self.clock.now();
        let reader = viewer.reader(&key.user);
        let mut found = None;
        self.store()?
            .read_memos(std::slice::from_ref(key), &mut |_, facts, memo| {
                found = Some(
                    self.rendered
                        .json(key, facts, memo, now, self.timeouts, reader),
                );
            })
            .await?;
        let json = found.unwrap_or_else(|| {
            self.rendered
                .json(key, None, None, now, self.timeouts, reader)
        });
        Ok(match context {
            Some(context) => Bytes::from(with_context(&json, context)),
            None => json,
        })
    }

    /// The JSON of the presence of each of `users` of `tenant` now, for
    /// `viewer`, in order, without `@odata.context`, in one buffer.
    pub async fn read_json(
        &self,
        tenant: &presence_core::TenantId,
        users: &[UserId],
        viewer: &Viewer,
    ) -> Result<Renderings, ServiceError> {
        let keys: Vec<UserKey> = users
            .iter()
            .map(|user| UserKey::new(tenant.clone(), user.clone()))
            .collect();
        let now = self.clock.now();
        let mut renderings = Renderings::new(keys.len());
        let append = |renderings: &mut Renderings,
                      index: usize,
                      facts: Option<&UserFacts>,
                      memo: Option<&mut Memo>| {
            let key = &keys[index];
            let reader = viewer.reader(&key.user);
            renderings.append(index, |out| {
                self.rendered
                    .append_json(out, key, facts, memo, now, self.timeouts, reader)
            });
        };
        self.store()?
            .read_memos(&keys, &mut |index, facts, memo| {
                append(&mut renderings, index, facts, memo)
            })
            .await?;
        // Every store visits every key; should one not, its users read as
        // holding nothing rather than missing from the answer.
        for index in renderings.missing() {
            append(&mut renderings, index, None, None);
        }
        Ok(renderings)
    }

    /// The presence of each of `users` of `tenant` now, for `viewer`, in
    /// order; `context` gives each its `@odata.context`.
    pub async fn read(
        &self,
        tenant: &presence_core::TenantId,
        users: &[UserId],
        viewer: &Viewer,
        context: impl Fn(&UserId) -> Option<String> + Send + Sync,
    ) -> Result<Vec<PresenceJson>, ServiceError> {
        let keys: Vec<UserKey> = users
            .iter()
            .map(|user| UserKey::new(tenant.clone(), user.clone()))
            .collect();
        let now = self.clock.now();
        let mut value: Vec<Option<PresenceJson>> = Vec::with_capacity(users.len());
        value.resize_with(users.len(), || None);
        self.store()?
            .read(&keys, &mut |index, facts| {
                let user = &users[index];
                value[index] = Some(render(
                    user,
                    facts,
                    now,
                    self.timeouts,
                    viewer,
                    context(user),
                ));
            })
            .await?;
        Ok(value
            .into_iter()
            .zip(users)
            .map(|(presence, user)| {
                presence.unwrap_or_else(|| {
                    render(user, None, now, self.timeouts, viewer, context(user))
                })
            })
            .collect())
    }

    /// The presence of every user of `tenant` now, for `viewer`, through the
    /// store's per-tenant index.
    pub async fn read_tenant(
        &self,
        tenant: &presence_core::TenantId,
        viewer: &Viewer,
    ) -> Result<Vec<PresenceJson>, ServiceError> {
        let now = self.clock.now();
        let mut found = Vec::new();
        self.store()?
            .scan_tenant(tenant, &mut |user, facts| {
                found.push(render(user, Some(facts), now, self.timeouts, viewer, None));
            })
            .await?;
        Ok(found)
    }

    /// Every user `tenant` holds facts for (Offline ones included), in the
    /// order of their ids, each with its id's text.
    pub async fn users_of(
        &self,
        tenant: &presence_core::TenantId,
    ) -> Result<Vec<(String, UserId)>, ServiceError> {
        let mut found = Vec::new();
        self.store()?
            .scan_tenant(tenant, &mut |user, _| {
                found.push((user.as_str().to_string(), user.clone()));
            })
            .await?;
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// A copy of one user's facts and the instant they were read at (for the
    /// sessions view, which shows what GET hides).
    pub async fn facts(&self, key: &UserKey) -> Result<(UserFacts, Instant), ServiceError> {
        let now = self.clock.now();
        let mut facts = UserFacts::default();
        self.store()?
            .read(std::slice::from_ref(key), &mut |_, found| {
                if let Some(found) = found {
                    facts = found.clone();
                }
            })
            .await?;
        Ok((facts, now))
    }
}
