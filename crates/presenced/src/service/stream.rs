//! The live stream as the service gives it to an edge: the presences a new
//! or resumed stream starts with, then every change of its users, each
//! rendered for the stream's viewer and numbered with the change feed's
//! cursor, so that a `Last-Event-ID` resumes exactly where it stopped.
//!
//! Resumption: a stream that names a cursor the feed still holds replays
//! what came after it; one that cannot be resumed exactly (a cursor from
//! before a restart, older than the feed keeps, or from a time nobody
//! followed the feed) starts again with the current presence of every
//! user it covers, as a fresh stream of named users does.

use std::sync::Arc;

use presence_core::{TenantId, Timeouts, UserId, UserKey};
use presence_store::Cursor;
use tokio::sync::broadcast;

use super::{PresenceService, ServiceError};
use crate::notify::StreamWatch;
use crate::notify::stream::StreamEvent;
use crate::wire::presence::{PresenceJson, Viewer, render};

/// The most events a resumed stream replays; one further behind starts
/// again from the current presence.
const REPLAY_LIMIT: usize = 65_536;

/// One open stream: what it sends first, then the live changes it wants.
pub struct PresenceStream {
    first: std::vec::IntoIter<(String, PresenceJson)>,
    live: broadcast::Receiver<Arc<StreamEvent>>,
    /// Keeps the stream's users watched while it is open.
    _watch: StreamWatch,
    /// What the stream has covered: live events at or before it are not sent.
    seen: Cursor,
    /// Where a client that has received none of this stream's events
    /// resumes: the cursor it resumed from, or the feed's head when it
    /// started afresh.
    start: String,
    tenant: TenantId,
    users: Option<Vec<UserId>>,
    /// The same users as a set: every open stream hears every streamed
    /// change and tests it here, so with a thousand streams of a hundred
    /// users a scan of the list cost more than the write itself.
    watched: Option<foldhash::HashSet<UserId>>,
    viewer: Viewer,
    timeouts: Timeouts,
    shutdown: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for PresenceStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PresenceStream")
            .field("tenant", &self.tenant)
            .field("users", &self.users)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl PresenceStream {
    /// The event id that resumes this stream before anything it sends, for
    /// its opening event: a client dropped before any presence event comes
    /// back with it and misses nothing made meanwhile.
    pub fn start_id(&self) -> &str {
        &self.start
    }

    /// The event id that resumes after everything this stream has sent,
    /// once [`PresenceStream::next`] has ended it: for its closing event.
    pub fn resume_id(&self) -> String {
        self.seen.to_text()
    }

    fn wants(&self, key: &UserKey) -> bool {
        key.tenant == self.tenant
            && self
                .watched
                .as_ref()
                .is_none_or(|watched| watched.contains(&key.user))
    }

    fn rendered(&self, event: &StreamEvent) -> (String, PresenceJson) {
        let json = render(
            &event.key.user,
            Some(&event.facts),
            event.at,
            self.timeouts,
            &self.viewer,
            None,
        );
        (event.id.clone(), json)
    }

    /// The next event id and presence to send; `None` ends the stream
    /// (presenced is stopping, or the stream fell too far behind the live
    /// changes, and its client resumes with `Last-Event-ID`).
    pub async fn next(&mut self) -> Option<(String, PresenceJson)> {
        if let Some(first) = self.first.next() {
            return Some(first);
        }
        loop {
            let received = tokio::select! {
                () = self.shutdown.cancelled() => return None,
                received = self.live.recv() => received,
            };
            match received {
                Ok(event) if self.seen.covers(event.position) => {}
                Ok(event) => {
                    self.seen.advance(event.position);
                    if self.wants(&event.key) {
                        return Some(self.rendered(&event));
                    }
                }
                Err(
                    broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed,
                ) => {
                    return None;
                }
            }
        }
    }
}

impl PresenceService {
    /// Opens a stream of `users` of `tenant` (every user of it with `None`)
    /// for `viewer`, resuming after `resume` (a `Last-Event-ID`) when given.
    /// The caller has authorized the viewer for these users.
    pub async fn stream(
        &self,
        tenant: TenantId,
        users: Option<Vec<UserId>>,
        viewer: Viewer,
        resume: Option<&str>,
    ) -> Result<PresenceStream, ServiceError> {
        self.store()?;
        // Watch and listen before reading anything, so that no change falls
        // between what is read now and what is streamed next.
        let watch = self.notifier.watch(tenant.clone(), users.clone());
        let live = self.notifier.streams.subscribe();
        let resume = resume.and_then(Cursor::parse);
        let mut stream = PresenceStream {
            first: Vec::new().into_iter(),
            live,
            _watch: watch,
            seen: Cursor {
                epoch: 0,
                offsets: Vec::new(),
            },
            start: String::new(),
            tenant,
            watched: users.as_ref().map(|users| users.iter().cloned().collect()),
            users,
            viewer,
            timeouts: self.timeouts,
            shutdown: self.notifier.shutdown().clone(),
        };
        let replay = match &resume {
            Some(cursor) => {
                self.notifier
                    .replay_after(cursor, REPLAY_LIMIT, |key| stream.wants(key))
                    .await?
            }
            None => None,
        };
        let mut first = Vec::new();
        match (replay, resume) {
            (Some((events, seen)), Some(resume)) => {
                first.extend(events.iter().map(|event| stream.rendered(event)));
                stream.seen = seen;
                stream.start = resume.to_text();
            }
            // A fresh stream of named users, or one that cannot be resumed:
            // the current presence of every user it covers.
            (_, resume) => {
                let head = self.notifier.head().await?;
                if stream.users.is_some() || resume.is_some() {
                    let id = head.to_text();
                    let presences = match &stream.users {
                        Some(users) => {
                            self.read(&stream.tenant, users, &stream.viewer, |_| None)
                                .await?
                        }
                        None => self.read_tenant(&stream.tenant, &stream.viewer).await?,
                    };
                    first.extend(presences.into_iter().map(|presence| (id.clone(), presence)));
                }
                stream.start = head.to_text();
                stream.seen = head;
            }
        }
        stream.first = first.into_iter();
        Ok(stream)
    }
}
