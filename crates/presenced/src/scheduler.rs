//! Acts on time: at each user's next transition (a fade, an expiry) it sends
//! the store a `Tick`, which prunes what has ended, so that memory stays flat
//! for users who stop calling. It is also where changes caused by time become
//! events, which is what change notifications hang off.
//!
//! Entries only ever move earlier: `schedule` keeps the earliest instant it
//! has been given for a key, and a tick reschedules from what the store holds
//! after it. A request and a tick racing can therefore cause one spurious
//! tick, never a missed one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use presence_core::{Command, Instant, Timeouts, UserKey};
use presence_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

#[derive(Debug, Default)]
struct Queue {
    by_instant: BTreeSet<(Instant, UserKey)>,
    by_key: HashMap<UserKey, Instant>,
}

#[derive(Debug, Default)]
pub struct Scheduler {
    /// A std `Mutex`: every critical section is a few map operations and
    /// never awaits.
    queue: Mutex<Queue>,
    /// Wakes the run loop when an entry earlier than all others arrives.
    earlier_entry: Notify,
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Asks for a tick of `key` at `at`, unless one is due no later already.
    pub fn schedule(&self, key: &UserKey, at: Option<Instant>) {
        let Some(at) = at else { return };
        let mut queue = self.queue();
        match queue.by_key.get(key) {
            Some(&existing) if existing <= at => return,
            Some(&existing) => {
                queue.by_instant.remove(&(existing, key.clone()));
            }
            None => {}
        }
        let earliest = queue
            .by_instant
            .first()
            .is_none_or(|(first, _)| at < *first);
        queue.by_key.insert(key.clone(), at);
        queue.by_instant.insert((at, key.clone()));
        drop(queue);
        if earliest {
            self.earlier_entry.notify_one();
        }
    }

    /// The earliest instant anything is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue().by_instant.first().map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.queue().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_due(&self, now: Instant) -> Vec<UserKey> {
        let mut queue = self.queue();
        let mut due = Vec::new();
        while let Some((at, _)) = queue.by_instant.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = queue.by_instant.pop_first() {
                queue.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// Ticks every user due at or before `now`. Returns how many were ticked.
    pub async fn process_due(&self, store: &dyn Store, now: Instant, timeouts: Timeouts) -> usize {
        let due = self.take_due(now);
        for key in &due {
            match store.apply(key, &Command::Tick, now, timeouts).await {
                Ok(Ok(outcome)) => self.schedule(key, outcome.next_transition),
                Ok(Err(refused)) => {
                    tracing::error!(error = %refused, "the store refused a tick");
                }
                Err(error) => {
                    // Try again shortly: what has ended is still hidden by the
                    // model, so a late prune is only late memory reclaim.
                    tracing::warn!(%error, "a scheduled tick failed; retrying in a second");
                    self.schedule(
                        key,
                        Some(now.saturating_add(presence_core::Duration::from_secs(1))),
                    );
                }
            }
        }
        metrics::counter!("presenced_scheduler_ticks_total").increment(due.len() as u64);
        due.len()
    }

    /// Schedules every user the store holds (start-up).
    pub async fn load(&self, store: &dyn Store, timeouts: Timeouts) {
        let mut entries = Vec::new();
        let scanned = store
            .scan(&mut |key, facts| {
                // The first transition since the last write: if it is already
                // past, the run loop ticks the user at once.
                let next = presence_core::next_transition(facts, facts.sequence.as_of, timeouts);
                entries.push((key.clone(), next));
            })
            .await;
        if let Err(error) = scanned {
            tracing::error!(%error, "could not scan the store to schedule its users");
        }
        for (key, at) in entries {
            self.schedule(&key, at);
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
