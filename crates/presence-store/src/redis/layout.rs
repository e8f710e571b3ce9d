//! Where everything lives in Redis: the partitions, their hash tags, and
//! the name of every key.
//!
//! Every user belongs to one of `P` partitions (fixed when the keyspace is
//! created, recorded in its meta key). Every key of a partition carries the
//! partition's hash tag, so that one script can change a user's facts, its
//! due entry and its partition's change stream atomically in one slot. The
//! tags are chosen so that partition `p` hashes into the `p`-th of `P` equal
//! slot ranges: a cluster whose primaries own contiguous slot ranges (what
//! `redis-cli --cluster create` makes) gets an even share of partitions.
//!
//! Keys (`{T}` is a partition's tag, `X` the keyspace prefix, `pd` by default):
//! - `{T}f` + user key bytes: a STRING, 8-byte version + facts record;
//! - `{T}due`: a ZSET, user key bytes scored by their next transition (ms);
//! - `{T}chg`: a STREAM of visible changes, ids `0-N`, trimmed to a length;
//! - `{T}lease`, `{T}fence`: the partition's lease and its fencing counter;
//! - `{X:t:TENANT}`: a SET of the tenant's user ids, packed as
//!   `UserId::to_bytes` (the per-tenant index);
//! - `{X}meta`, `{X}tenants`, `{X}subs`, `{X}subs:v`, `{X}timers`,
//!   `{X}clock`, `{X}nodes`: small global keys, in one slot;
//! - `{X:m:SUBSCRIPTION}`: a HASH of a subscription's marks, user → sequence;
//! - `{X:thr:LIMIT}`: a STRING, a throttling limit's theoretical arrival
//!   time (µs), expiring once the limit is back to full.

use presence_core::{TenantId, UserKey};

/// The version of this key layout, recorded in the meta key. A node finding
/// a newer one refuses to start; an older one would be migrated.
pub const LAYOUT_VERSION: u32 = 1;

/// Redis Cluster's slot count.
const SLOTS: u32 = 16_384;

/// The slot a key hashes to, as Redis Cluster computes it (CRC16 of the
/// hash tag, or of the whole key without one).
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&byte| byte == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&byte| byte == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS as u16
}

/// The names of every key of one keyspace.
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: String,
    /// Each partition's hash tag, braces included.
    tags: Vec<String>,
}

impl Layout {
    pub fn new(prefix: &str, partitions: u32) -> Layout {
        let partitions = partitions.clamp(1, SLOTS);
        let tags = (0..partitions)
            .map(|partition| {
                let low = partition * SLOTS / partitions;
                let high = (partition + 1) * SLOTS / partitions;
                // A few hundred tries at most: each candidate lands in the
                // range with probability 1/P.
                (0u64..)
                    .map(|n| format!("{{{prefix}{n:x}}}"))
                    .find(|tag| (low..high).contains(&u32::from(slot(tag.as_bytes()))))
                    .unwrap_or_default()
            })
            .collect();
        Layout {
            prefix: prefix.to_string(),
            tags,
        }
    }

    pub fn partitions(&self) -> u32 {
        self.tags.len() as u32
    }

    /// The partition a user belongs to: a stable hash of the key's bytes
    /// (FNV-1a, written out here because it must never change with a crate
    /// version: every key's place depends on it).
    pub fn partition_of(&self, key: &UserKey) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.to_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % u64::from(self.partitions())) as u32
    }

    fn tag(&self, partition: u32) -> &str {
        &self.tags[partition as usize]
    }

    fn keyed(&self, partition: u32, name: &[u8]) -> Vec<u8> {
        let mut key = self.tag(partition).as_bytes().to_vec();
        key.extend_from_slice(name);
        key
    }

    pub fn facts(&self, key: &UserKey) -> Vec<u8> {
        let mut name = b"f".to_vec();
        name.extend_from_slice(&key.to_bytes());
        self.keyed(self.partition_of(key), &name)
    }

    pub fn due(&self, partition: u32) -> Vec<u8> {
        self.keyed(partition, b"due")
    }

    pub fn changes(&self, partition: u32) -> Vec<u8> {
        self.keyed(partition, b"chg")
    }

    pub fn lease(&self, partition: u32) -> Vec<u8> {
        self.keyed(partition, b"lease")
    }

    pub fn fence(&self, partition: u32) -> Vec<u8> {
        self.keyed(partition, b"fence")
    }

    pub fn tenant(&self, tenant: &TenantId) -> String {
        format!("{{{}:t:{}}}", self.prefix, tenant.as_str())
    }

    pub fn marks(&self, subscription: &str) -> String {
        format!("{{{}:m:{subscription}}}", self.prefix)
    }

    /// A throttling limit's key; `identity` names the limit and what it
    /// counts (`app`, a tenant and an application), and is its own hash tag,
    /// so that the limits spread over the cluster's slots.
    pub fn throttle(&self, identity: &str) -> String {
        format!("{{{}:thr:{identity}}}", self.prefix)
    }

    /// A global key: all of them share one slot.
    pub fn global(&self, name: &str) -> String {
        format!("{{{}}}{name}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification's examples and
        // `CLUSTER KEYSLOT` on a real server.
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"123456789"), 0x31c3);
    }

    #[test]
    fn partitions_sit_in_even_slot_ranges() {
        let layout = Layout::new("pd", 64);
        for partition in 0..64 {
            let slot = u32::from(slot(layout.due(partition).as_slice()));
            assert_eq!(slot / 256, partition, "partition {partition}");
            assert_eq!(
                super::slot(&layout.changes(partition)),
                super::slot(&layout.lease(partition))
            );
        }
    }

    #[test]
    fn a_user_keeps_its_partition() {
        let layout = Layout::new("pd", 64);
        let key = UserKey::new(
            TenantId::parse("contoso").expect("valid"),
            presence_core::UserId::parse("alice").expect("valid"),
        );
        let partition = layout.partition_of(&key);
        assert_eq!(slot(&layout.facts(&key)), slot(&layout.due(partition)));
        assert_eq!(partition, Layout::new("pd", 64).partition_of(&key));
    }
}
