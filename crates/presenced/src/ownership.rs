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
//! was paused past its lease cannot act on a partition that moved on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence_store::{DueIndex, Lease, RedisStore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::system_now;

/// Partitions held by this node, and the rounds that keep them.
#[derive(Debug)]
pub struct Ownership {
    store: RedisStore,
    /// This process's name in the heartbeat set and in its leases.
    node: String,
    lease: Duration,
    /// A std `Mutex`: held only to read or change the map, never across an
    /// await.
    owned: Mutex<BTreeMap<u32, Lease>>,
    /// Told of the partitions each round gained, for the notifier's
    /// catch-up.
    gained: mpsc::UnboundedSender<Vec<u32>>,
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
    ) -> (Arc<Ownership>, mpsc::UnboundedReceiver<Vec<u32>>) {
        let (gained, receiver) = mpsc::unbounded_channel();
        (
            Arc::new(Ownership {
                store,
                node,
                lease,
                owned: Mutex::new(BTreeMap::new()),
                gained,
            }),
            receiver,
        )
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Lease>> {
        self.owned
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether this node holds `partition`'s lease (as far as it knows)
    /// and the lease has not lapsed: a node that was paused past its lease
    /// (SIGSTOP, a long GC-like stall) must not act on a partition that
    /// another node may have taken meanwhile, before its next round tells.
    pub fn owns(&self, partition: u32) -> bool {
        let now = system_now();
        self.owned()
            .get(&partition)
            .is_some_and(|lease| lease.until > now)
    }

    /// The leases held now.
    pub fn leases(&self) -> Vec<Lease> {
        self.owned().values().cloned().collect()
    }

    /// Drops a lease the store refused (another node took it over).
    pub fn lost(&self, lease: &Lease) {
        let mut owned = self.owned();
        if owned
            .get(&lease.partition)
            .is_some_and(|held| held.fence == lease.fence)
        {
            owned.remove(&lease.partition);
            metrics::counter!("presenced_lease_changes_total", "change" => "lost").increment(1);
            tracing::warn!(
                partition = lease.partition,
                "lost a partition to another node"
            );
        }
        metrics::gauge!("presenced_partitions_owned").set(owned.len() as f64);
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
            let held = self.owned().get(&partition).cloned();
            match (mine, held) {
                (true, _) => {
                    match self.store.lease(partition, &self.node, now, until).await? {
                        Some(lease) => {
                            let previous = self.owned().insert(partition, lease.clone());
                            // A lease renewed after it had lapsed here counts
                            // as gained: while lapsed, `owns` said no and the
                            // notifier skipped the partition's changes, which
                            // the catch-up of a gained partition sends. Lapsed
                            // as of now, when the renewal is recorded, not as
                            // of the round's start: on a starved machine a
                            // round's calls to Redis can outlast what was left
                            // of a lease, and a change skipped meanwhile would
                            // otherwise never be sent.
                            let recorded = system_now();
                            if previous.is_none_or(|previous| {
                                previous.fence != lease.fence || previous.until <= recorded
                            }) {
                                metrics::counter!("presenced_lease_changes_total", "change" => "gained").increment(1);
                                gained.push(partition);
                            }
                        }
                        None => {
                            // Still another's until it gives it up or it lapses.
                            if self.owned().remove(&partition).is_some() {
                                metrics::counter!("presenced_lease_changes_total", "change" => "lost").increment(1);
                            }
                        }
                    }
                }
                (false, Some(lease)) => {
                    self.store.release(&lease).await?;
                    self.owned().remove(&partition);
                    metrics::counter!("presenced_lease_changes_total", "change" => "released")
                        .increment(1);
                }
                _ => {}
            }
        }
        metrics::gauge!("presenced_partitions_owned").set(self.owned().len() as f64);
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
        let leases: Vec<Lease> = std::mem::take(&mut *self.owned()).into_values().collect();
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
