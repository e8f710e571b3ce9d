//! Which node does which partition's time-driven work, with many nodes over
//! one Redis (`--store redis`).
//!
//! Every node announces itself in a heartbeat set (alive until now plus
//! one lease), and every node computes the same assignment from the live
//! nodes by rendezvous hashing: partition `p` goes to the live node with the
//! highest hash of (node, p). A node takes the leases of the partitions it
//! wins (once they are free), renews them every third of a lease, and
//! gives up at once those it no longer wins, so a node that joins gets its
//! share within a round, and a dead node's share is taken over once its
//! heartbeat and leases lapse: about one lease. There is no coordinator.
//!
//! The lease is what counts, not the hash: the store refuses work under a
//! lease whose fencing token is no longer the partition's, so a node that
//! was paused past its lease cannot act on a partition that moved on. What
//! the store cannot fence (a webhook POST) is done only while the lease is
//! safely held here ([`Holdings::tenure`]): while more than a sixth of it is
//! left on a clock that a pause does not stop, counted from when the
//! renewal was sent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence_store::{DueIndex, Lease, RedisStore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::system_now;

/// What of a lease is kept back: work that cannot be fenced starts only
/// while more than `lease / SAFETY_DIVISOR` of the lease is left. Renewals
/// come every third of a lease, so a round may take half a lease before
/// that work holds off.
const SAFETY_DIVISOR: u32 = 6;

/// Partitions held by this node, and the rounds that keep them.
#[derive(Debug)]
pub struct Ownership {
    store: RedisStore,
    /// This process's name in the heartbeat set and in its leases.
    node: String,
    lease: Duration,
    holdings: Arc<Holdings>,
    /// Told of the tenures each round began, for the notifier's catch-up.
    gained: mpsc::UnboundedSender<Vec<Tenure>>,
}

/// The clock a lease's local deadline is kept on.
#[derive(Debug)]
pub enum LeaseClock {
    /// The time since boot on Linux (`CLOCK_BOOTTIME`): never stepped like
    /// the wall clock, and, unlike `std::time::Instant`
    /// (`CLOCK_MONOTONIC`), going on while the host is suspended, so that a
    /// node whose machine slept past its leases knows they are gone.
    /// Elsewhere, `std::time::Instant`.
    System,
    /// Moved by hand (unit tests).
    #[cfg(test)]
    Manual(Mutex<Duration>),
}

impl LeaseClock {
    /// The time since an origin fixed for the process's life.
    pub fn now(&self) -> Duration {
        match self {
            LeaseClock::System => since_boot(),
            #[cfg(test)]
            LeaseClock::Manual(now) => *now.lock().unwrap_or_else(|poison| poison.into_inner()),
        }
    }

    #[cfg(test)]
    pub fn advance(&self, by: Duration) {
        if let LeaseClock::Manual(now) = self {
            *now.lock().unwrap_or_else(|poison| poison.into_inner()) += by;
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn since_boot() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::try_from(now).unwrap_or_default()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn since_boot() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

/// One unbroken holding of a partition by this node: from taking its lease
/// (a new fencing token, or a renewal of a lease that had stopped being
/// safe here) until the lease is lost or given up, or stops being safe.
/// What was done for a partition under one tenure (the notifications the
/// notifier queued) is void under any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenure {
    pub partition: u32,
    /// Grows with every tenure this process begins.
    pub number: u64,
}

/// A lease as this node holds it.
#[derive(Clone, Debug)]
struct Held {
    lease: Lease,
    /// On the lease clock, when the renewal that granted the lease was
    /// sent, plus the lease's length. Redis started the lease's time once
    /// the renewal reached it, later, so its copy lapses no sooner; a
    /// renewal sent before a pause and answered after it is already past
    /// its deadline when it is recorded.
    deadline: Duration,
    tenure: Tenure,
}

/// The leases this node holds, and whether each is still safe to act on.
#[derive(Debug)]
pub struct Holdings {
    /// The leases' length (`--redis-lease`).
    lease: Duration,
    clock: LeaseClock,
    /// A std `Mutex`: held only to read or change the map, never across an
    /// await.
    held: Mutex<BTreeMap<u32, Held>>,
    /// The last tenure's number.
    tenures: AtomicU64,
}

impl Holdings {
    pub fn new(lease: Duration, clock: LeaseClock) -> Holdings {
        Holdings {
            lease,
            clock,
            held: Mutex::new(BTreeMap::new()),
            tenures: AtomicU64::new(0),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Held>> {
        self.held
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The lease clock's reading now.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Moves a manual lease clock on (unit tests).
    #[cfg(test)]
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Whether `held` may still be acted on at `now` (on the lease clock):
    /// only while more than the safety margin is left before its deadline,
    /// whatever a task that was frozen since it last looked believes.
    fn safe(&self, held: &Held, now: Duration) -> bool {
        now.saturating_add(self.lease / SAFETY_DIVISOR) < held.deadline
    }

    /// The tenure under which this node holds `partition` now, if it holds
    /// the lease and the lease is safe to act on. Asked again right before
    /// anything that the store cannot fence (a webhook POST): a node that
    /// was paused (SIGSTOP, a stalled VM) must not act on a partition that
    /// another node may have taken meanwhile, before its next round tells.
    pub fn tenure(&self, partition: u32) -> Option<Tenure> {
        let now = self.now();
        self.held()
            .get(&partition)
            .filter(|held| self.safe(held, now))
            .map(|held| held.tenure)
    }

    /// Records `lease`, granted by a renewal sent at `sent` (on the lease
    /// clock). Answers the tenure it begins, if it begins one: a new
    /// fencing token, or a renewal of a lease that had stopped being safe
    /// here (meanwhile the notifier skipped the partition's changes, which
    /// the catch-up of a new tenure sends). Unsafe as of now, when the
    /// renewal is recorded, not as of the round's start: on a starved
    /// machine a round's calls to Redis can outlast what was left of a
    /// lease.
    pub fn record(&self, lease: Lease, sent: Duration) -> Option<Tenure> {
        let mut held = self.held();
        let now = self.now();
        let continued = held
            .get(&lease.partition)
            .filter(|previous| previous.lease.fence == lease.fence && self.safe(previous, now))
            .map(|previous| previous.tenure);
        let tenure = continued.unwrap_or_else(|| Tenure {
            partition: lease.partition,
            number: self.tenures.fetch_add(1, Ordering::Relaxed) + 1,
        });
        held.insert(
            lease.partition,
            Held {
                deadline: sent.saturating_add(self.lease),
                lease,
                tenure,
            },
        );
        continued.is_none().then_some(tenure)
    }

    /// Forgets `partition`'s lease (refused, or to be given up); answers
    /// it, if it was held.
    pub fn forget(&self, partition: u32) -> Option<Lease> {
        self.held().remove(&partition).map(|held| held.lease)
    }

    /// The leases held now, safe or not (the store fences what is done
    /// under them).
    pub fn leases(&self) -> Vec<Lease> {
        self.held()
            .values()
            .map(|held| held.lease.clone())
            .collect()
    }

    /// Drops a lease the store refused (another node took it over).
    pub fn lost(&self, lease: &Lease) {
        let mut held = self.held();
        if held
            .get(&lease.partition)
            .is_some_and(|held| held.lease.fence == lease.fence)
        {
            held.remove(&lease.partition);
            metrics::counter!("presenced_lease_changes_total", "change" => "lost").increment(1);
            tracing::warn!(
                partition = lease.partition,
                "lost a partition to another node"
            );
        }
        metrics::gauge!("presenced_partitions_owned").set(held.len() as f64);
    }

    /// `partition`'s lease, if held, safe or not.
    fn lease_of(&self, partition: u32) -> Option<Lease> {
        self.held().get(&partition).map(|held| held.lease.clone())
    }

    fn count(&self) -> usize {
        self.held().len()
    }

    fn take_all(&self) -> Vec<Lease> {
        std::mem::take(&mut *self.held())
            .into_values()
            .map(|held| held.lease)
            .collect()
    }
}

/// A node's name: host, process and a random part, so that a restarted
/// process is a new node.
pub fn node_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        uuid::Uuid::new_v4().as_u128() as u16
    )
}

fn rendezvous(node: &str, partition: u32) -> u64 {
    // Every node must compute the same winner, so the hash is written out
    // (FNV-1a of the name) rather than taken from a crate whose output may
    // change; the finalizer (MurmurHash3's fmix64) spreads names that differ
    // in a few characters, which FNV alone leaves clustered.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= u64::from(partition).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The live node that should own `partition`.
pub fn winner(live: &[String], partition: u32) -> Option<&str> {
    live.iter()
        .max_by_key(|node| (rendezvous(node, partition), node.as_str()))
        .map(String::as_str)
}

impl Ownership {
    pub fn new(
        store: RedisStore,
        node: String,
        lease: Duration,
    ) -> (Arc<Ownership>, mpsc::UnboundedReceiver<Vec<Tenure>>) {
        let (gained, receiver) = mpsc::unbounded_channel();
        (
            Arc::new(Ownership {
                store,
                node,
                lease,
                holdings: Arc::new(Holdings::new(lease, LeaseClock::System)),
                gained,
            }),
            receiver,
        )
    }

    /// The leases held, for the notifier to ask before it sends.
    pub fn holdings(&self) -> &Arc<Holdings> {
        &self.holdings
    }

    /// The leases held now.
    pub fn leases(&self) -> Vec<Lease> {
        self.holdings.leases()
    }

    /// Drops a lease the store refused (another node took it over).
    pub fn lost(&self, lease: &Lease) {
        self.holdings.lost(lease);
    }

    /// One round: heartbeat, then take, renew or give up each partition.
    pub async fn round(&self) -> Result<(), presence_store::StoreError> {
        let now = system_now();
        let until = now.saturating_add(presence_core::Duration::from_millis(
            self.lease.as_millis() as i64,
        ));
        let live = self
            .store
            .heartbeat(&self.node, now.as_unix_millis(), until.as_unix_millis())
            .await?;
        metrics::gauge!("presenced_nodes_live").set(live.len() as f64);
        let mut gained = Vec::new();
        for partition in 0..self.store.partitions() {
            let mine = winner(&live, partition) == Some(self.node.as_str());
            match (mine, self.holdings.lease_of(partition)) {
                (true, _) => {
                    let sent = self.holdings.now();
                    match self.store.lease(partition, &self.node, now, until).await? {
                        Some(lease) => {
                            if let Some(tenure) = self.holdings.record(lease, sent) {
                                metrics::counter!("presenced_lease_changes_total", "change" => "gained").increment(1);
                                gained.push(tenure);
                            }
                        }
                        None => {
                            // Still another's until it gives it up or it lapses.
                            if self.holdings.forget(partition).is_some() {
                                metrics::counter!("presenced_lease_changes_total", "change" => "lost").increment(1);
                            }
                        }
                    }
                }
                (false, Some(lease)) => {
                    // Forgotten before it is given up: once another node
                    // can take it, this one sends nothing more for it.
                    self.holdings.forget(partition);
                    self.store.release(&lease).await?;
                    metrics::counter!("presenced_lease_changes_total", "change" => "released")
                        .increment(1);
                }
                _ => {}
            }
        }
        metrics::gauge!("presenced_partitions_owned").set(self.holdings.count() as f64);
        if !gained.is_empty() {
            tracing::info!(partitions = gained.len(), "took partitions over");
            let _ = self.gained.send(gained);
        }
        Ok(())
    }

    /// Runs rounds every third of a lease until `shutdown`, then gives
    /// every lease up and leaves the heartbeat set, so that the other nodes
    /// take this node's share at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), String> {
        let every = (self.lease / 3).max(Duration::from_millis(50));
        loop {
            if let Err(error) = self.round().await {
                tracing::warn!(%error, "could not renew the partitions' leases");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        self.release_all().await;
        Ok(())
    }

    /// Gives every lease up (a draining node).
    pub async fn release_all(&self) {
        let leases = self.holdings.take_all();
        for lease in &leases {
            if let Err(error) = self.store.release(lease).await {
                tracing::warn!(%error, "could not give a lease up; it lapses by itself");
            }
        }
        if let Err(error) = self.store.leave(&self.node).await {
            tracing::warn!(%error, "could not leave the heartbeat set; this node is forgotten once its heartbeat lapses");
        }
        metrics::gauge!("presenced_partitions_owned").set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(6_000);

    fn lease(partition: u32, fence: u64) -> Lease {
        Lease {
            partition,
            fence,
            until: presence_core::Instant::from_unix_millis(0),
        }
    }

    fn holdings() -> Holdings {
        Holdings::new(
            LEASE,
            LeaseClock::Manual(Mutex::new(Duration::from_secs(100))),
        )
    }

    /// A lease is safe to act on while more than a sixth of it is left,
    /// counted from when its renewal was sent (here 6 s, 1 s kept back);
    /// whoever asks, however long it was frozen.
    #[test]
    fn a_lease_is_safe_until_its_margin_counted_from_the_renewals_sending() {
        let step = Duration::from_millis(1);
        for (renewal_took, after_renewal, safe) in [
            (Duration::ZERO, Duration::ZERO, true),
            (Duration::ZERO, LEASE * 5 / 6 - step, true),
            (Duration::ZERO, LEASE * 5 / 6, false),
            (Duration::ZERO, LEASE, false),
            (
                Duration::from_millis(900),
                LEASE * 5 / 6 - Duration::from_millis(900) - step,
                true,
            ),
            (
                Duration::from_millis(900),
                LEASE * 5 / 6 - Duration::from_millis(900),
                false,
            ),
            // Sent before a pause, answered after it: never safe.
            (LEASE * 5 / 6, Duration::ZERO, false),
            (Duration::from_secs(10), Duration::ZERO, false),
        ] {
            let holdings = holdings();
            let sent = holdings.now();
            holdings.advance(renewal_took);
            let tenure = holdings.record(lease(7, 1), sent);
            assert!(tenure.is_some(), "a first lease begins a tenure");
            holdings.advance(after_renewal);
            assert_eq!(
                holdings.tenure(7).is_some(),
                safe,
                "renewal took {renewal_took:?}, asked {after_renewal:?} after"
            );
            assert_eq!(holdings.tenure(8), None, "never held");
            assert_eq!(holdings.leases().len(), 1, "held, safe or not, for fencing");
        }
    }

    /// A renewal of a lease still safe goes on with its tenure; a new
    /// fencing token, or a renewal of a lease that stopped being safe (the
    /// process was paused, or a round was too slow), begins a new one, which
    /// the notifier must take over before it sends anything of the
    /// partition.
    #[test]
    fn a_renewal_after_a_pause_begins_a_new_tenure() {
        let holdings = holdings();
        let first = holdings
            .record(lease(3, 1), holdings.now())
            .expect("a tenure");
        holdings.advance(LEASE / 3);
        assert_eq!(
            holdings.record(lease(3, 1), holdings.now()),
            None,
            "renewed in time"
        );
        assert_eq!(holdings.tenure(3), Some(first));

        // Paused past the lease: another node took the partition (fence 2)
        // and gave it back (fence 3).
        holdings.advance(LEASE * 2);
        assert_eq!(holdings.tenure(3), None);
        let second = holdings
            .record(lease(3, 3), holdings.now())
            .expect("a new tenure");
        assert_ne!(second, first);
        assert_eq!(holdings.tenure(3), Some(second));

        // The same token, renewed only once the lease had stopped being safe
        // here: what was skipped meanwhile needs the catch-up of a new tenure.
        holdings.advance(LEASE * 5 / 6);
        assert_eq!(holdings.tenure(3), None);
        let third = holdings
            .record(lease(3, 3), holdings.now())
            .expect("a new tenure");
        assert!(third.number > second.number);

        // A renewal sent before a pause and answered after it is recorded,
        // but is not safe: nothing is done under it, and the next renewal
        // begins another tenure.
        let sent = holdings.now();
        holdings.advance(LEASE);
        let late = holdings.record(lease(3, 3), sent).expect("a new tenure");
        assert_eq!(holdings.tenure(3), None);
        let fourth = holdings
            .record(lease(3, 3), holdings.now())
            .expect("a new tenure");
        assert_ne!(fourth, late);
        assert_eq!(holdings.tenure(3), Some(fourth));

        assert_eq!(holdings.forget(3).map(|lease| lease.fence), Some(3));
        assert_eq!(holdings.tenure(3), None);
    }

    #[test]
    fn every_node_computes_the_same_spread_winners() {
        let live: Vec<String> = ["a", "b", "c"].iter().map(|n| n.to_string()).collect();
        let mut counts = BTreeMap::new();
        for partition in 0..64 {
            let winner = winner(&live, partition).expect("some node");
            *counts.entry(winner.to_string()).or_insert(0) += 1;
            let mut reversed = live.clone();
            reversed.reverse();
            assert_eq!(super::winner(&reversed, partition), Some(winner));
        }
        assert_eq!(counts.len(), 3, "every node wins some: {counts:?}");
        assert!(counts.values().all(|count| *count >= 10), "{counts:?}");
        // A node leaving moves only its own partitions.
        let two: Vec<String> = vec!["a".into(), "b".into()];
        for partition in 0..64 {
            let before = winner(&live, partition).expect("some");
            if before != "c" {
                assert_eq!(winner(&two, partition), Some(before));
            }
        }
        assert_eq!(winner(&[], 0), None);
    }

    #[test]
    fn names_that_differ_in_a_few_characters_share_evenly() {
        // Real node names: host, process id, a random part.
        for pids in [[3400, 3402, 3404], [17, 18, 19], [99_001, 99_101, 99_201]] {
            let live: Vec<String> = pids
                .iter()
                .zip(["f078", "6502", "d3bf"])
                .map(|(pid, random)| format!("node-{pid}-{random}"))
                .collect();
            let mut counts = BTreeMap::new();
            for partition in 0..64 {
                *counts
                    .entry(winner(&live, partition).expect("some node").to_string())
                    .or_insert(0) += 1;
            }
            assert_eq!(counts.len(), 3, "{counts:?}");
            assert!(counts.values().all(|count| *count >= 12), "{counts:?}");
        }
    }
}
