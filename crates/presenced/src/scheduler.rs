//! Acts on time: at each user's next transition (a fade, an expiry) it sends
//! the store a `Tick`, which prunes what has ended, so that memory stays flat
//! for users who stop calling. It is also where changes caused by time become
//! events, which is what change notifications hang off.
//!
//! The store decides when a user needs a tick (`Outcome::schedule_at`): it
//! remembers the earliest tick it has asked for, so a user refreshing a
//! session every minute is held here once, not once per refresh. An entry
//! that a later change made unnecessary stays until it falls due and costs
//! one harmless tick: ticks never change what is shown.
//!
//! Entries sit in one-second buckets, each a plain vector of (instant, user)
//! pairs: at a million users, a node per entry would cost more memory than
//! the users themselves. A bucket is sorted only when the exact order within
//! it matters, when it is the next one due.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use presence_core::{Command, Duration, Instant, Timeouts, UserKey};
use presence_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

const BUCKET_MILLIS: i64 = 1_000;

/// How many ticks [`Scheduler::process_due`] runs at once.
const TICKS_IN_FLIGHT: usize = 256;

#[derive(Debug, Default)]
struct Bucket {
    /// Sorted latest first when `sorted`, so that the earliest pops off the end.
    entries: Vec<(Instant, UserKey)>,
    sorted: bool,
}

impl Bucket {
    fn sort(&mut self) {
        if !self.sorted {
            self.entries
                .sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
            self.sorted = true;
        }
    }
}

#[derive(Debug, Default)]
struct Wheel {
    buckets: BTreeMap<i64, Bucket>,
    len: usize,
}

fn bucket_of(at: Instant) -> i64 {
    at.as_unix_millis().div_euclid(BUCKET_MILLIS)
}

#[derive(Debug, Default)]
pub struct Scheduler {
    /// A std `Mutex`: every critical section is a few vector and map
    /// operations and never awaits.
    wheel: Mutex<Wheel>,
    /// Wakes the run loop when an entry lands in the first bucket.
    earlier_entry: Notify,
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    fn wheel(&self) -> std::sync::MutexGuard<'_, Wheel> {
        self.wheel
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Asks for a tick of `key` at `at`.
    pub fn schedule(&self, key: &UserKey, at: Option<Instant>) {
        let Some(at) = at else { return };
        let bucket = bucket_of(at);
        let mut wheel = self.wheel();
        let first = wheel
            .buckets
            .first_key_value()
            .is_none_or(|(first, _)| bucket <= *first);
        let slot = wheel.buckets.entry(bucket).or_default();
        slot.entries.push((at, key.clone()));
        slot.sorted = false;
        wheel.len += 1;
        drop(wheel);
        if first {
            self.earlier_entry.notify_one();
        }
    }

    /// The earliest instant anything is due.
    pub fn next_due(&self) -> Option<Instant> {
        let mut wheel = self.wheel();
        let (_, bucket) = wheel.buckets.iter_mut().next()?;
        bucket.sort();
        bucket.entries.last().map(|(at, _)| *at)
    }

    /// How many ticks are pending.
    pub fn len(&self) -> usize {
        self.wheel().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_due(&self, now: Instant) -> Vec<UserKey> {
        let mut wheel = self.wheel();
        let mut due = Vec::new();
        while let Some(mut entry) = wheel.buckets.first_entry() {
            if (*entry.key() + 1) * BUCKET_MILLIS <= now.as_unix_millis() + 1 {
                // The whole bucket is due.
                due.extend(entry.remove().entries.into_iter().map(|(_, key)| key));
                continue;
            }
            let bucket = entry.get_mut();
            bucket.sort();
            while bucket.entries.last().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, key)) = bucket.entries.pop() {
                    due.push(key);
                }
            }
            if bucket.entries.is_empty() {
                entry.remove();
            }
            break;
        }
        wheel.len -= due.len();
        due
    }

    /// Ticks every user due at or before `now`. Returns how many were ticked.
    ///
    /// Up to [`TICKS_IN_FLIGHT`] ticks run at once: a durable store commits
    /// the ticks that reach it together in one batch, so many users falling
    /// due at the same instant cost a few commits, not one each in turn.
    pub async fn process_due(&self, store: &dyn Store, now: Instant, timeouts: Timeouts) -> usize {
        let due = self.take_due(now);
        futures_util::stream::iter(&due)
            .for_each_concurrent(TICKS_IN_FLIGHT, |key| async move {
                // A memory store's tick never waits, so without this a
                // hundred thousand ticks would hold the worker, and the
                // notifier they wake, until the last one.
                tokio::task::consume_budget().await;
                match store.apply(key, &Command::Tick, now, timeouts).await {
                    Ok(Ok(outcome)) => self.schedule(key, outcome.schedule_at),
                    Ok(Err(refused)) => {
                        tracing::error!(error = %refused, "the store refused a tick");
                    }
                    Err(error) => {
                        // Try again shortly: what has ended is still hidden by
                        // the model, so a late prune is only late reclaim.
                        tracing::warn!(%error, "a scheduled tick failed; retrying in a second");
                        self.schedule(key, Some(now.saturating_add(Duration::from_secs(1))));
                    }
                }
            })
            .await;
        metrics::counter!("presenced_scheduler_ticks_total").increment(due.len() as u64);
        due.len()
    }

    /// Schedules every user the store holds (start-up): each one is ticked
    /// at once, which prunes what ended while presenced was down and asks
    /// for the user's next tick.
    pub async fn load(&self, store: &dyn Store, now: Instant) {
        let mut keys = Vec::new();
        if let Err(error) = store.scan(&mut |key, _| keys.push(key.clone())).await {
            tracing::error!(%error, "could not scan the store to schedule its users");
        }
        for key in keys {
            self.schedule(&key, Some(now));
        }
    }

    /// Runs on the system clock until `shutdown`: sleeps until the next due
    /// instant (or an earlier entry arrives), then ticks what is due.
    pub async fn run(
        self: Arc<Scheduler>,
        store: Arc<dyn Store>,
        clock: Arc<Clock>,
        timeouts: Timeouts,
        shutdown: CancellationToken,
    ) {
        loop {
            let earlier_entry = self.earlier_entry.notified();
            let sleep = match self.next_due() {
                Some(at) => clock.until(at),
                None => std::time::Duration::from_secs(3600),
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = earlier_entry => continue,
                () = tokio::time::sleep(sleep) => {}
            }
            self.process_due(store.as_ref(), clock.now(), timeouts)
                .await;
        }
        tracing::info!("scheduler stopped");
    }
}

#[cfg(test)]
mod tests {
    use presence_core::{TenantId, UserId};

    use super::*;

    fn key(user: &str) -> UserKey {
        UserKey::new(
            TenantId::parse("t").expect("valid"),
            UserId::parse(user).expect("valid"),
        )
    }

    fn at(millis: i64) -> Instant {
        Instant::from_unix_millis(millis)
    }

    #[test]
    fn entries_come_due_in_instant_order_across_and_within_buckets() {
        let scheduler = Scheduler::new();
        for (user, millis) in [
            ("c", 2_500),
            ("a", 1_200),
            ("b", 1_700),
            ("d", 2_400),
            ("e", 9_000),
        ] {
            scheduler.schedule(&key(user), Some(at(millis)));
        }
        assert_eq!(scheduler.len(), 5);
        assert_eq!(scheduler.next_due(), Some(at(1_200)));
        assert_eq!(scheduler.take_due(at(1_199)), Vec::<UserKey>::new());
        assert_eq!(scheduler.take_due(at(1_200)), vec![key("a")]);
        assert_eq!(scheduler.next_due(), Some(at(1_700)));
        let mut due = scheduler.take_due(at(2_450));
        due.sort();
        assert_eq!(due, vec![key("b"), key("d")]);
        assert_eq!(scheduler.next_due(), Some(at(2_500)));
        assert_eq!(scheduler.take_due(at(8_999)), vec![key("c")]);
        assert_eq!(scheduler.len(), 1);
        assert_eq!(scheduler.take_due(at(9_000)), vec![key("e")]);
        assert!(scheduler.is_empty());
        assert_eq!(scheduler.next_due(), None);
    }

    #[test]
    fn a_late_entry_in_an_early_bucket_is_found() {
        let scheduler = Scheduler::new();
        scheduler.schedule(&key("late"), Some(at(5_000)));
        assert_eq!(scheduler.next_due(), Some(at(5_000)));
        scheduler.schedule(&key("early"), Some(at(5_001 - 2_000)));
        assert_eq!(scheduler.next_due(), Some(at(3_001)));
        scheduler.schedule(&key("same-bucket-earlier"), Some(at(3_000)));
        assert_eq!(scheduler.next_due(), Some(at(3_000)));
    }
}
