//! The change feed: an ordered, resumable record of every visible change,
//! read by cursor.
//!
//! A store appends one [`Change`] whenever a user's sequence number moves,
//! in the same atomic step as the change itself, so that readers see each
//! user's changes in order and once. Readers (the notifier, and through it
//! the live stream) keep a [`Cursor`] and ask for what came after it. A
//! feed keeps only so much: a cursor older than what is kept reads as a
//! *gap*, and its reader resynchronizes from the facts themselves (every
//! subscribed user whose sequence number differs from what its receiver
//! has seen; a stream's snapshot).
//!
//! The feed is split into partitions, as a networked backend's per-partition
//! streams are; a cursor holds one position per partition, and changes of
//! one user always go to one partition. A cursor also names the feed's
//! *epoch*: an in-process feed starts a new one at every start, so that a
//! cursor from before a restart reads as a gap rather than as a position in
//! another history.
//!
//! [`LocalFeed`] is the in-process feed of the memory and embedded stores:
//! a ring of recent changes, kept only while someone follows it (with
//! nothing subscribed or streamed, appending costs one atomic load).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use presence_core::{Instant, UserFacts, UserKey};
use tokio::sync::Notify;

use crate::StoreError;

/// Where one change sits in its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub partition: u32,
    /// Grows by one for each change of the partition, from 1.
    pub offset: u64,
}

/// One visible change: the user's facts as the change left them, and the
/// instant it was made at, from which any viewer's rendering follows.
#[derive(Clone, Debug)]
pub struct Change {
    pub position: Position,
    pub key: UserKey,
    pub facts: Arc<UserFacts>,
    pub at: Instant,
}

/// How far a reader has read: the epoch of the feed and, per partition, the
/// offset of the last change read (0 before the first).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub epoch: u64,
    pub offsets: Vec<u64>,
}

impl Cursor {
    /// Moves the cursor past `position`.
    pub fn advance(&mut self, position: Position) {
        let index = position.partition as usize;
        if self.offsets.len() <= index {
            self.offsets.resize(index + 1, 0);
        }
        self.offsets[index] = self.offsets[index].max(position.offset);
    }

    /// Whether the change at `position` was already read.
    pub fn covers(&self, position: Position) -> bool {
        self.offsets
            .get(position.partition as usize)
            .is_some_and(|offset| *offset >= position.offset)
    }

    /// The cursor as text: `{epoch in hex}-{offset}.{offset}...`, the form
    /// the live stream uses as an event id.
    pub fn to_text(&self) -> String {
        let offsets: Vec<String> = self.offsets.iter().map(u64::to_string).collect();
        format!("{:x}-{}", self.epoch, offsets.join("."))
    }

    /// The cursor [`Cursor::to_text`] wrote; `None` for anything else.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (epoch, offsets) = text.trim().split_once('-')?;
        if epoch.is_empty() || epoch.len() > 16 {
            return None;
        }
        let epoch = u64::from_str_radix(epoch, 16).ok()?;
        let offsets = offsets
            .split('.')
            .map(|offset| offset.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        // A feed has a few partitions at most; refuse what no feed wrote.
        (offsets.len() <= 65_536).then_some(Cursor { epoch, offsets })
    }
}

/// An ordered, resumable feed of visible changes.
#[async_trait]
pub trait ChangeFeed: Send + Sync + std::fmt::Debug + 'static {
    /// Asks the feed to keep changes for a reader until the returned guard
    /// is dropped. A feed that always keeps them may ignore it.
    fn follow(&self) -> Following;

    /// The cursor after the latest change: where a reader that wants only
    /// what comes next starts.
    async fn head(&self) -> Result<Cursor, StoreError>;

    /// Up to `limit` changes after `cursor`, in order within each
    /// partition. `Ok(None)` is a gap: changes after `cursor` are no longer
    /// kept (or the cursor is another epoch's), and the reader must
    /// resynchronize from the facts and go on from [`ChangeFeed::head`].
    async fn read_after(
        &self,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Option<Vec<Change>>, StoreError>;

    /// Resolves when a change after `cursor` may be there; it may resolve
    /// early (a reader reads, finds nothing, and waits again).
    async fn wait_after(&self, cursor: &Cursor);
}

/// Keeps a feed's changes while held.
#[derive(Debug)]
pub struct Following {
    count: Option<Arc<AtomicUsize>>,
    /// Where this follower can start reading without a gap: the head when
    /// keeping began (`None`: from wherever it likes, the feed keeps all).
    pub since: Option<Cursor>,
}

impl Following {
    /// Following counted in `count` (already incremented), from `since`.
    pub fn counted(count: Arc<AtomicUsize>, since: Option<Cursor>) -> Following {
        Following {
            count: Some(count),
            since,
        }
    }

    /// A guard for a feed that keeps changes whether followed or not.
    pub fn always() -> Following {
        Following {
            count: None,
            since: None,
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        if let Some(count) = &self.count {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How many changes an in-process feed keeps (about 10 MB of small
/// changes); a reader further behind resynchronizes from the facts.
pub const LOCAL_FEED_CAPACITY: usize = 131_072;

#[derive(Debug)]
struct Ring {
    changes: VecDeque<Change>,
    /// The offset of the last change kept, or the head when keeping began.
    last: u64,
}

/// The feed of one process: one partition, a ring of recent changes.
///
/// Every change takes an offset, kept or not, so that a cursor from before
/// a time nobody followed reads as a gap; changes are kept only while
/// someone follows, and the ring starts empty each time following starts
/// from nobody.
#[derive(Debug)]
pub struct LocalFeed {
    /// Drawn at start: a cursor from another process reads as a gap.
    epoch: u64,
    capacity: usize,
    followers: Arc<AtomicUsize>,
    /// The offset the next change takes.
    next: AtomicU64,
    ring: Mutex<Ring>,
    appended: Notify,
}

impl Default for LocalFeed {
    fn default() -> LocalFeed {
        LocalFeed::new(LOCAL_FEED_CAPACITY)
    }
}

impl LocalFeed {
    pub fn new(capacity: usize) -> LocalFeed {
        // An epoch per process start, from the randomly seeded hasher that
        // std already has (no extra crate for one random number).
        let epoch = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::time::SystemTime::now(),
        ) & 0xffff_ffff_ffff;
        LocalFeed {
            epoch,
            capacity: capacity.max(1),
            followers: Arc::new(AtomicUsize::new(0)),
            next: AtomicU64::new(1),
            ring: Mutex::new(Ring {
                changes: VecDeque::new(),
                last: 0,
            }),
            appended: Notify::new(),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether anyone follows: the stores' fast path when nobody does.
    pub fn followed(&self) -> bool {
        self.followers.load(Ordering::Acquire) > 0
    }

    /// Appends a change of `key`, whose facts are now `facts`, made at
    /// `at`. Called by the stores inside the user's atomic section, so that
    /// one user's changes are appended in order. While nobody follows, it
    /// only counts the change (one atomic add).
    pub fn append(&self, key: &UserKey, facts: &UserFacts, at: Instant) {
        if !self.followed() {
            self.next.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let facts = Arc::new(facts.clone());
        let mut ring = self.ring();
        let offset = self.next.fetch_add(1, Ordering::AcqRel);
        if ring.changes.len() == self.capacity {
            ring.changes.pop_front();
        }
        ring.changes.push_back(Change {
            position: Position {
                partition: 0,
                offset,
            },
            key: key.clone(),
            facts,
            at,
        });
        ring.last = offset;
        drop(ring);
        self.appended.notify_waiters();
    }
}

#[async_trait]
impl ChangeFeed for LocalFeed {
    fn follow(&self) -> Following {
        let mut ring = self.ring();
        if self.followers.fetch_add(1, Ordering::AcqRel) == 0 {
            // Nothing was kept while nobody followed: keeping starts anew
            // from the head.
            ring.changes.clear();
            ring.last = self.next.load(Ordering::Acquire) - 1;
        }
        let since = Cursor {
            epoch: self.epoch,
            offsets: vec![ring.last],
        };
        Following {
            count: Some(self.followers.clone()),
            since: Some(since),
        }
    }

    async fn head(&self) -> Result<Cursor, StoreError> {
        Ok(Cursor {
            epoch: self.epoch,
            offsets: vec![self.next.load(Ordering::Acquire) - 1],
        })
    }

    async fn read_after(
        &self,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Option<Vec<Change>>, StoreError> {
        if cursor.epoch != self.epoch || cursor.offsets.len() != 1 {
            return Ok(None);
        }
        let after = cursor.offsets[0];
        let ring = self.ring();
        if after >= self.next.load(Ordering::Acquire) {
            // From the future: not this feed's history.
            return Ok(None);
        }
        let oldest = ring
            .changes
            .front()
            .map_or(ring.last + 1, |change| change.position.offset);
        if after + 1 < oldest {
            return Ok(None);
        }
        // Offsets grow along the ring; a change may have taken an offset
        // without being kept only as following started, before the ring's
        // first change, which the check above reads as a gap.
        let start = ring
            .changes
            .partition_point(|change| change.position.offset <= after);
        Ok(Some(
            ring.changes.range(start..).take(limit).cloned().collect(),
        ))
    }

    async fn wait_after(&self, cursor: &Cursor) {
        let appended = self.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        // Only kept changes wake a reader: one that were only counted
        // would find nothing to read.
        let behind = cursor.epoch != self.epoch
            || cursor
                .offsets
                .first()
                .is_none_or(|offset| *offset < self.ring().last);
        if !behind {
            appended.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> UserKey {
        crate::conformance::key("t", user)
    }

    #[tokio::test]
    async fn a_cursor_from_before_a_time_nobody_followed_reads_as_a_gap() {
        let feed = LocalFeed::new(16);
        let at = Instant::from_unix_millis(0);
        let facts = UserFacts::default();
        let first = feed.follow();
        let from = first.since.clone().expect("a local feed says where");
        feed.append(&key("a"), &facts, at);
        let read = feed
            .read_after(&from, 10)
            .await
            .expect("works")
            .expect("kept");
        assert_eq!(read.len(), 1);
        let mut stale = from.clone();
        stale.advance(read[0].position);
        drop(first);
        // Nobody follows: counted, not kept.
        feed.append(&key("b"), &facts, at);
        let second = feed.follow();
        let since = second.since.clone().expect("a local feed says where");
        assert!(
            feed.read_after(&stale, 10).await.expect("works").is_none(),
            "b's change was not kept"
        );
        feed.append(&key("c"), &facts, at);
        let read = feed
            .read_after(&since, 10)
            .await
            .expect("works")
            .expect("kept");
        assert_eq!(
            read.iter().map(|c| c.key.clone()).collect::<Vec<_>>(),
            [key("c")]
        );
    }

    #[tokio::test]
    async fn a_reader_further_behind_than_the_ring_reads_a_gap() {
        let feed = LocalFeed::new(2);
        let following = feed.follow();
        let from = following.since.clone().expect("a local feed says where");
        for user in ["a", "b", "c"] {
            feed.append(
                &key(user),
                &UserFacts::default(),
                Instant::from_unix_millis(0),
            );
        }
        assert!(feed.read_after(&from, 10).await.expect("works").is_none());
        let head = feed.head().await.expect("works");
        assert_eq!(
            feed.read_after(&head, 10)
                .await
                .expect("works")
                .map(|c| c.len()),
            Some(0)
        );
    }
}
