//! The Redis backend: facts, due index, change feed and subscription
//! repository in one standalone Redis or one Redis Cluster, shared by any
//! number of equal presenced nodes.
//!
//! Every user's change is one compare-and-set: the node reads the user's
//! facts (a version and the record), applies the command with
//! [`presence_core::apply`] in Rust, and runs one script (`scripts.rs`)
//! that writes the new value only if the version is still the one read,
//! and in the same atomic step files the user's next transition in its
//! partition's due index and appends a visible change to the partition's
//! change stream. On a conflict the script answers the current value and
//! the node applies again without another read, so concurrent writers on
//! several nodes never lose an update. `layout.rs` names every key.
//!
//! Time-driven work is split by partition under leases with fencing
//! tokens: a partition's due users are taken, and ticked, only under a
//! lease whose token is still the partition's, and the scripts check the
//! token in the same slot, so that a paused former owner's writes are
//! refused.
//!
//! Durability: with [`RedisDurability::Replicated`] a request's write is
//! answered only once every replica connected to its shard has it (`WAIT`
//! in the same pipeline, on one of a few connections kept for writes so
//! that reads never queue behind a `WAIT`).

mod conn;
pub mod layout;
mod scripts;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use presence_core::{
    Applied, Command, CommandError, Instant, TenantId, Timeouts, UserFacts, UserId, UserKey, apply,
    next_transition,
};
use redis::{AsyncCommands, Value};
use tokio::sync::Notify;

pub use conn::Endpoint;
use conn::{Conn, on_every_primary, unavailable};
use layout::{LAYOUT_VERSION, Layout};
use scripts::Scripts;

use crate::embedded::record::{decode_value, encode_value};
use crate::{
    Change, ChangeFeed, Cursor, DueIndex, Facts, Following, Lease, Mark, Position, StoreCounts,
    StoreError, Subscriptions,
};

/// When a request's write is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisDurability {
    /// Once the primary and every replica connected to its shard have it.
    #[default]
    Replicated,
    /// Once the primary has it.
    Async,
}

/// Everything the Redis backend is configured with.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub endpoint: Endpoint,
    /// Prefix of every key (its hash tags): several keyspaces can share one
    /// Redis.
    pub prefix: String,
    /// How many partitions a new keyspace is split into; an existing one
    /// keeps its own, and a different number here is refused.
    pub partitions: u32,
    pub durability: RedisDurability,
    /// Connections kept for request writes (each `WAIT` holds one).
    pub write_connections: usize,
    /// How long a write waits for its replicas before it is answered as
    /// unknown (a 503 the client retries).
    pub replication_timeout: StdDuration,
    /// How often the change feed looks for other nodes' changes while it
    /// is followed.
    pub feed_poll: StdDuration,
    /// How many changes each partition's stream keeps (approximately).
    pub feed_length: usize,
    /// Allow a standalone Redis that persists nothing.
    pub allow_volatile: bool,
}

impl RedisOptions {
    pub fn new(urls: Vec<String>) -> RedisOptions {
        RedisOptions {
            endpoint: Endpoint {
                urls,
                password: None,
                ca_file: None,
                timeout: StdDuration::from_secs(2),
            },
            prefix: "pd".into(),
            partitions: DEFAULT_PARTITIONS,
            durability: RedisDurability::Replicated,
            write_connections: 4,
            replication_timeout: StdDuration::from_secs(1),
            feed_poll: StdDuration::from_millis(100),
            feed_length: 10_000,
            allow_volatile: false,
        }
    }
}

/// The default number of partitions: far more than the primaries and
/// presenced nodes of any deployment we size for (see the README's capacity
/// table), few enough that a stream event id (one offset per partition)
/// stays a few hundred bytes.
pub const DEFAULT_PARTITIONS: u32 = 64;

/// How many times a write retries its compare-and-set against concurrent
/// writers of the same user before it gives up (a 503).
const CAS_ATTEMPTS: usize = 64;

/// How long a taken due user waits before it is offered again, if the node
/// that took it never ticked it.
const TAKE_RETRY_MILLIS: i64 = 10_000;

/// How many users one tick script handles.
const TICK_CHUNK: usize = 128;

/// How many tick scripts run at once.
const TICK_CHUNKS_IN_FLIGHT: usize = 4;

/// A replica count not known yet.
const UNKNOWN: u8 = u8::MAX;

#[derive(Debug)]
struct Inner {
    layout: Layout,
    scripts: Scripts,
    cluster: bool,
    reads: Conn,
    writes: Vec<Conn>,
    next_write: AtomicUsize,
    durability: RedisDurability,
    replication_timeout: StdDuration,
    feed_length: usize,
    epoch: u64,
    /// Replicas connected to each partition's shard, as last seen.
    replicas: Vec<AtomicU8>,
    /// Each partition's newest change offset seen by this node.
    heads: Vec<AtomicU64>,
    followers: Arc<AtomicUsize>,
    appended: Notify,
    earlier_entry: Notify,
    users: AtomicU64,
    sessions: AtomicU64,
    /// When the last "written without replicas" warning was logged (ms).
    warned: AtomicU64,
    /// The bound on users per tenant; 0: none.
    user_limit: AtomicU64,
}

/// The Redis backend. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// What `presenced check --store redis` reports of a keyspace.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub cluster: bool,
    /// The key layout version recorded (`None`: no keyspace here yet).
    pub layout: Option<u32>,
    pub partitions: u32,
    pub tenants: u64,
    /// Users held (facts with at least one session or setting).
    pub users: u64,
    /// Each partition's lease holder (`node/fence`), if any, and how many
    /// users are due in it.
    pub owners: Vec<(Option<String>, u64)>,
    /// The settings the first node recorded.
    pub settings: BTreeMap<String, String>,
    pub subscriptions: u64,
}

/// Reads a keyspace's layout, counts and owners without writing anything.
pub async fn inspect(options: RedisOptions) -> Result<Inspection, StoreError> {
    let endpoint = &options.endpoint;
    let cluster = conn::is_cluster(endpoint).await?;
    let mut conn = conn::connect(endpoint, cluster).await?;
    let probe = Layout::new(&options.prefix, 1);
    let meta: BTreeMap<String, String> = conn
        .hgetall(probe.global("meta"))
        .await
        .map_err(unavailable)?;
    let number = |name: &str| meta.get(name).and_then(|value| value.parse::<u32>().ok());
    let Some(partitions) = number("partitions") else {
        return Ok(Inspection {
            cluster,
            layout: None,
            partitions: 0,
            tenants: 0,
            users: 0,
            owners: Vec::new(),
            settings: BTreeMap::new(),
            subscriptions: 0,
        });
    };
    let layout = Layout::new(&options.prefix, partitions);
    let mut owners = Vec::new();
    for partition in 0..partitions {
        let owner: Option<String> = conn
            .get(layout.lease(partition))
            .await
            .map_err(unavailable)?;
        let due: u64 = conn
            .zcard(layout.due(partition))
            .await
            .map_err(unavailable)?;
        owners.push((owner, due));
    }
    let users: Option<u64> = conn
        .get(layout.global("users"))
        .await
        .map_err(unavailable)?;
    Ok(Inspection {
        cluster,
        layout: number("layout"),
        partitions,
        tenants: conn
            .scard(layout.global("tenants"))
            .await
            .map_err(unavailable)?,
        users: users.unwrap_or(0),
        owners,
        settings: conn
            .hgetall(layout.global("settings"))
            .await
            .map_err(unavailable)?,
        subscriptions: conn
            .hlen(layout.global("subs"))
            .await
            .map_err(unavailable)?,
    })
}

fn version_of(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn offset_of(id: &str) -> Option<u64> {
    id.strip_prefix("0-")?.parse().ok()
}

fn strings(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => into.push(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => into.push(text.clone()),
        Value::Array(values) | Value::Set(values) => {
            values.iter().for_each(|value| strings(value, into))
        }
        Value::Map(pairs) => pairs.iter().for_each(|(key, value)| {
            strings(key, into);
            strings(value, into);
        }),
        _ => {}
    }
}

/// The value each primary gives for a `CONFIG GET` parameter.
async fn config_values(conn: &Conn, parameter: &str) -> Result<Vec<String>, StoreError> {
    let answers = on_every_primary(conn, redis::cmd("CONFIG").arg("GET").arg(parameter).clone())
        .await
        .map_err(unavailable)?;
    let mut values = Vec::new();
    for answer in &answers {
        let mut texts = Vec::new();
        strings(answer, &mut texts);
        values.extend(
            texts
                .chunks(2)
                .filter(|pair| pair.len() == 2 && pair[0] == parameter)
                .map(|pair| pair[1].clone()),
        );
    }
    Ok(values)
}

impl RedisStore {
    /// Connects, checks that Redis keeps what it is given, and creates the
    /// keyspace's meta record or checks the one found.
    pub async fn connect(options: RedisOptions) -> Result<RedisStore, StoreError> {
        let endpoint = &options.endpoint;
        let cluster = conn::is_cluster(endpoint).await?;
        let reads = conn::connect(endpoint, cluster).await?;
        let mut writes = Vec::new();
        for _ in 0..options.write_connections.max(1) {
            writes.push(conn::connect(endpoint, cluster).await?);
        }
        check_keeps_data(&reads, cluster, options.allow_volatile).await?;
        let layout = Layout::new(&options.prefix, options.partitions);
        let epoch = meta(&reads, &layout).await?;
        let partitions = layout.partitions() as usize;
        let inner = Arc::new(Inner {
            scripts: Scripts::new(),
            cluster,
            reads,
            writes,
            next_write: AtomicUsize::new(0),
            durability: options.durability,
            replication_timeout: options.replication_timeout,
            feed_length: options.feed_length,
            epoch,
            replicas: (0..partitions).map(|_| AtomicU8::new(UNKNOWN)).collect(),
            heads: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            followers: Arc::new(AtomicUsize::new(0)),
            appended: Notify::new(),
            earlier_entry: Notify::new(),
            users: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            user_limit: AtomicU64::new(0),
            layout,
        });
        let store = RedisStore { inner };
        store.refresh_heads().await?;
        store.refresh_counts().await;
        tokio::spawn(watch(Arc::downgrade(&store.inner), options.feed_poll));
        Ok(store)
    }

    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    fn reads(&self) -> Conn {
        self.inner.reads.clone()
    }

    fn writes(&self) -> Conn {
        let inner = &self.inner;
        let index = inner.next_write.fetch_add(1, Ordering::Relaxed) % inner.writes.len();
        inner.writes[index].clone()
    }

    /// The earliest instant in a sorted set of instants.
    async fn earliest(&self, key: Vec<u8>) -> Result<Option<Instant>, StoreError> {
        let mut conn = self.reads();
        let first: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(first
            .first()
            .map(|(_, at)| Instant::from_unix_millis(*at as i64)))
    }

    /// Answers PING (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.reads();
        let meta = self.inner.layout.global("meta");
        let _: bool = conn.exists(meta).await.map_err(unavailable)?;
        Ok(())
    }

    /// Records `settings` if this keyspace has none yet, or checks them
    /// against the ones recorded: every difference is named.
    pub async fn agree(&self, settings: &[(&str, String)]) -> Result<(), Vec<String>> {
        let mut conn = self.reads();
        let key = self.inner.layout.global("settings");
        let mut differences = Vec::new();
        for (name, value) in settings {
            let _: bool = conn
                .hset_nx(&key, *name, value)
                .await
                .map_err(|error| vec![unavailable(error).to_string()])?;
            let recorded: Option<String> = conn
                .hget(&key, *name)
                .await
                .map_err(|error| vec![unavailable(error).to_string()])?;
            if let Some(recorded) = recorded
                && recorded != *value
            {
                differences.push(format!(
                    "{name} is {recorded} on the other nodes and {value} here"
                ));
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(differences)
        }
    }

    /// The settings recorded by the first node.
    pub async fn recorded_settings(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut conn = self.reads();
        conn.hgetall(self.inner.layout.global("settings"))
            .await
            .map_err(unavailable)
    }

    /// A partition's lease as it stands, for work serialized otherwise (the
    /// shared manual clock's advance): its current fencing token, created
    /// if the partition was never leased.
    pub async fn current_lease(&self, partition: u32) -> Result<Lease, StoreError> {
        let layout = &self.inner.layout;
        let mut conn = self.reads();
        let fence: Option<u64> = conn
            .get(layout.fence(partition))
            .await
            .map_err(unavailable)?;
        let fence = match fence {
            Some(fence) => fence,
            None => conn
                .incr(layout.fence(partition), 1)
                .await
                .map_err(unavailable)?,
        };
        Ok(Lease {
            partition,
            fence,
            until: Instant::from_unix_millis(i64::MAX),
        })
    }

    /// Gives a lease up at once (a draining node), for another node to take.
    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let layout = &self.inner.layout;
        let mut conn = self.reads();
        let _: i64 = self
            .inner
            .scripts
            .release
            .key(layout.lease(lease.partition))
            .key(layout.fence(lease.partition))
            .arg(lease.fence)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Records that `node` is alive until `until` (wall-clock ms), forgets
    /// nodes whose time is up, and answers the live ones, sorted.
    pub async fn heartbeat(
        &self,
        node: &str,
        now: i64,
        until: i64,
    ) -> Result<Vec<String>, StoreError> {
        let key = self.inner.layout.global("nodes");
        let mut pipe = redis::pipe();
        pipe.zadd(&key, node, until)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore()
            .zrange(&key, 0, -1);
        let mut conn = self.reads();
        let (mut live,): (Vec<String>,) = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        live.sort();
        Ok(live)
    }

    /// Forgets `node` at once (a draining node).
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let mut conn = self.reads();
        let _: i64 = conn
            .zrem(self.inner.layout.global("nodes"), node)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The shared manual clock, if one was ever set.
    pub async fn clock(&self) -> Result<Option<Instant>, StoreError> {
        let mut conn = self.reads();
        let millis: Option<i64> = conn
            .get(self.inner.layout.global("clock"))
            .await
            .map_err(unavailable)?;
        Ok(millis.map(Instant::from_unix_millis))
    }

    /// Moves the shared manual clock to `at`, never back; answers where it is.
    pub async fn set_clock(&self, at: Instant) -> Result<Instant, StoreError> {
        let mut conn = self.reads();
        let millis: i64 = self
            .inner
            .scripts
            .clock
            .key(self.inner.layout.global("clock"))
            .arg(at.as_unix_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Instant::from_unix_millis(millis))
    }

    /// Takes up to `want` requests from the throttling limit `identity`
    /// (`limit` requests per `period`, GCRA on Redis's clock). Answers how
    /// many were granted, or, with none, how long until one would be.
    pub async fn throttle(
        &self,
        identity: &str,
        limit: u32,
        period: StdDuration,
        want: u32,
    ) -> Result<Result<u32, StdDuration>, StoreError> {
        let emission = (period.as_micros() / u128::from(limit.max(1))).max(1) as u64;
        let mut conn = self.reads();
        let (taken, retry): (u32, u64) = self
            .inner
            .scripts
            .throttle
            .key(self.inner.layout.throttle(identity))
            .arg(emission)
            .arg(limit)
            .arg(want.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(if taken > 0 {
            Ok(taken)
        } else {
            Err(StdDuration::from_micros(retry))
        })
    }

    /// Takes a short cluster-wide lock (`SET NX PX`), for work that must be
    /// serialized across nodes (advancing the shared manual clock). Answers
    /// the token to release it with, or `None` when another holds it.
    pub async fn lock(&self, name: &str, ttl: StdDuration) -> Result<Option<String>, StoreError> {
        let token = format!("{:x}", rand_u64());
        let mut conn = self.reads();
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.inner.layout.global(name))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(taken.map(|_| token))
    }

    /// Releases a lock taken with [`RedisStore::lock`], if still held.
    pub async fn unlock(&self, name: &str, token: &str) -> Result<(), StoreError> {
        let mut conn = self.reads();
        let key = self.inner.layout.global(name);
        let held: Option<String> = conn.get(&key).await.map_err(unavailable)?;
        if held.as_deref() == Some(token) {
            let _: i64 = conn.del(&key).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Writes one user's facts as they are (migration from another store),
    /// unless the user already has facts here, and files a tick of it at
    /// `now` (which files its next transition). Answers whether it wrote.
    pub async fn put_facts(
        &self,
        key: &UserKey,
        facts: &UserFacts,
        now: Instant,
    ) -> Result<bool, StoreError> {
        let layout = &self.inner.layout;
        self.index_user(key).await?;
        let mut value = 1u64.to_be_bytes().to_vec();
        value.extend_from_slice(&encode_value(facts));
        let mut conn = self.writes();
        let written: bool = redis::cmd("SET")
            .arg(layout.facts(key))
            .arg(value)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(unavailable)?
            .is_some();
        if written {
            self.count(
                i64::from(!facts.holds_nothing()),
                facts.sessions.len() as i64,
            )
            .await?;
            self.schedule(std::slice::from_ref(key), now).await?;
        }
        Ok(written)
    }

    async fn index_user(&self, key: &UserKey) -> Result<(), StoreError> {
        self.admit_user(key, 0).await.map(|_| ())
    }

    /// Adds a user to its tenant's index unless the tenant's index holds
    /// `limit` users already (0: no bound); answers whether the user is in
    /// the index now. The check and the add are one script on the one key
    /// of the tenant's index, so the bound is exact across every node. An
    /// entry is made before the user's facts are written, so a write that
    /// then fails leaves a user counted that holds nothing: the bound errs
    /// on the side of refusing, never of overshooting.
    async fn admit_user(&self, key: &UserKey, limit: u64) -> Result<bool, StoreError> {
        let layout = &self.inner.layout;
        let mut conn = self.writes();
        let added: i64 = if limit == 0 {
            conn.sadd(layout.tenant(&key.tenant), key.user.to_bytes())
                .await
                .map_err(unavailable)?
        } else {
            let answer: i64 = self
                .inner
                .scripts
                .admit_user
                .key(layout.tenant(&key.tenant))
                .arg(key.user.to_bytes())
                .arg(limit)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            match answer {
                0 => return Ok(false),
                2 => 1,
                _ => 0,
            }
        };
        if added > 0 {
            let _: i64 = conn
                .sadd(layout.global("tenants"), key.tenant.as_str().as_bytes())
                .await
                .map_err(unavailable)?;
        }
        Ok(true)
    }

    async fn refresh_counts(&self) {
        let layout = &self.inner.layout;
        let mut conn = self.reads();
        let counts: Result<(Option<i64>, Option<i64>), _> = redis::pipe()
            .get(layout.global("users"))
            .get(layout.global("sessions"))
            .query_async(&mut conn)
            .await;
        if let Ok((users, sessions)) = counts {
            self.inner
                .users
                .store(users.unwrap_or(0).max(0) as u64, Ordering::Relaxed);
            self.inner
                .sessions
                .store(sessions.unwrap_or(0).max(0) as u64, Ordering::Relaxed);
        }
    }

    /// Moves the counts of users and sessions held, here at once and in
    /// Redis for every node (for metrics: a crash between the write and
    /// this may leave them off by one).
    async fn count(&self, users: i64, sessions: i64) -> Result<(), StoreError> {
        if users == 0 && sessions == 0 {
            return Ok(());
        }
        let add = |counter: &AtomicU64, delta: i64| {
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_add_signed(delta))
            });
        };
        add(&self.inner.users, users);
        add(&self.inner.sessions, sessions);
        let layout = &self.inner.layout;
        let mut conn = self.writes();
        let () = redis::pipe()
            .incr(layout.global("users"), users)
            .ignore()
            .incr(layout.global("sessions"), sessions)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Reads each partition's newest change offset, and wakes followers if
    /// any moved.
    async fn refresh_heads(&self) -> Result<(), StoreError> {
        let layout = &self.inner.layout;
        let reads = futures_util::future::join_all((0..layout.partitions()).map(|partition| {
            let mut conn = self.reads();
            let key = layout.changes(partition);
            async move {
                let last: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                Ok::<u64, StoreError>(last.first().and_then(|(id, _)| offset_of(id)).unwrap_or(0))
            }
        }))
        .await;
        let mut moved = false;
        for (partition, read) in reads.into_iter().enumerate() {
            let offset = read?;
            let previous = self.inner.heads[partition].fetch_max(offset, Ordering::AcqRel);
            moved |= offset > previous;
        }
        if moved {
            self.inner.appended.notify_waiters();
        }
        Ok(())
    }

    /// The replicas last seen connected to `partition`'s shard ([`UNKNOWN`]
    /// before its first replicated write).
    fn partition_replicas(&self, partition: u32) -> u8 {
        self.inner.replicas[partition as usize].load(Ordering::Relaxed)
    }

    fn note_unreplicated(&self) {
        metrics::counter!("presenced_redis_unreplicated_writes_total").increment(1);
        let now = conn::wall_millis();
        let last = self.inner.warned.load(Ordering::Relaxed);
        if now.saturating_sub(last) > 10_000
            && self
                .inner
                .warned
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "a write was answered with no replica connected to its Redis shard: it is on the primary only until a replica joins"
            );
        }
    }

    /// Runs one compare-and-set. With replicated durability the script is
    /// pipelined with `WAIT` for the shard's replicas and `ROLE`, which
    /// tells how many replicas the shard has for the next write.
    async fn run_apply(
        &self,
        partition: u32,
        invocation: redis::Cmd,
        wait: bool,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut conn = self.writes();
        let known = self.partition_replicas(partition);
        let replicated = wait && self.inner.durability == RedisDurability::Replicated;
        let mut pipe = redis::pipe();
        pipe.add_command(invocation);
        if replicated {
            if known != UNKNOWN && known > 0 {
                pipe.cmd("WAIT")
                    .arg(known)
                    .arg(self.inner.replication_timeout.as_millis() as u64);
            }
            pipe.cmd("ROLE");
        }
        let answers: Vec<Value> = match pipe.query_async(&mut conn).await {
            Ok(answers) => answers,
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.inner
                    .scripts
                    .apply
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                pipe.query_async(&mut conn).await.map_err(unavailable)?
            }
            Err(error) => return Err(unavailable(error)),
        };
        let mut answers = answers.into_iter();
        let reply: Vec<Vec<u8>> = redis::from_redis_value(
            answers
                .next()
                .ok_or_else(|| StoreError::Unavailable("Redis gave no answer".into()))?,
        )
        .map_err(|error| StoreError::Unavailable(format!("Redis: {error}")))?;
        if !replicated || reply.first().map(Vec::as_slice) != Some(b"ok") {
            return Ok(reply);
        }
        let acknowledged = if known != UNKNOWN && known > 0 {
            answers
                .next()
                .and_then(|value| redis::from_redis_value::<i64>(value).ok())
        } else {
            None
        };
        let connected = answers.next().map(|role| {
            let mut texts = Vec::new();
            strings(&role, &mut texts);
            match &role {
                Value::Array(parts) if texts.first().map(String::as_str) == Some("master") => {
                    match parts.get(2) {
                        Some(Value::Array(replicas)) => replicas.len().min(200) as u8,
                        _ => 0,
                    }
                }
                _ => 0,
            }
        });
        if let Some(connected) = connected {
            self.inner.replicas[partition as usize].store(connected, Ordering::Relaxed);
        }
        let wanted = connected.unwrap_or(0);
        match acknowledged {
            // (Some only when `known` replicas were waited for.)
            Some(acknowledged) if acknowledged >= i64::from(known.min(wanted)) => Ok(reply),
            Some(acknowledged) => Err(StoreError::Unavailable(format!(
                "the write reached the Redis primary but only {acknowledged} of its {known} replicas confirmed it in time; its outcome is unknown, and retrying it is safe"
            ))),
            None if wanted == 0 => {
                self.note_unreplicated();
                Ok(reply)
            }
            None => {
                // The first write to this shard: its replica count was not
                // known, so wait now, on the same slot's connection.
                let mut pipe = redis::pipe();
                pipe.cmd("EXISTS").arg(self.inner.layout.due(partition));
                pipe.cmd("WAIT")
                    .arg(wanted)
                    .arg(self.inner.replication_timeout.as_millis() as u64);
                let (_, acknowledged): (i64, i64) =
                    pipe.query_async(&mut conn).await.map_err(unavailable)?;
                if acknowledged >= i64::from(wanted) {
                    Ok(reply)
                } else {
                    Err(StoreError::Unavailable(format!(
                        "the write reached the Redis primary but only {acknowledged} of its {wanted} replicas confirmed it in time; its outcome is unknown, and retrying it is safe"
                    )))
                }
            }
        }
    }

    /// One user's read-modify-write, fenced when `fence` is given.
    async fn change(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
        fence: Option<&Lease>,
    ) -> Result<Result<Applied, CommandError>, StoreError> {
        let layout = &self.inner.layout;
        let partition = layout.partition_of(key);
        let facts_key = layout.facts(key);
        let member = key.to_bytes();
        let mut conn = self.reads();
        let mut current: Option<Vec<u8>> = conn.get(&facts_key).await.map_err(unavailable)?;
        let mut indexed = false;
        for attempt in 0..CAS_ATTEMPTS {
            if attempt > 0 {
                metrics::counter!("presenced_redis_cas_conflicts_total").increment(1);
            }
            let plan = match Plan::new(current.as_deref(), command, now, timeouts)? {
                Ok(plan) => plan,
                Err(refused) => return Ok(Err(refused)),
            };
            if plan.nothing_to_write {
                return Ok(Ok(plan.applied));
            }
            if plan.creates && !indexed {
                // Indexed before the write: a crash between leaves an index
                // entry without facts, which readers skip. The index is
                // also what the bound on users per tenant counts.
                let limit = self.inner.user_limit.load(Ordering::Relaxed);
                if !self.admit_user(key, limit).await? {
                    return Ok(Err(CommandError::TenantFull { limit }));
                }
                indexed = true;
            }
            let mut invocation = redis::cmd("EVALSHA");
            invocation
                .arg(self.inner.scripts.apply.get_hash())
                .arg(4)
                .arg(&facts_key)
                .arg(layout.due(partition))
                .arg(layout.changes(partition))
                .arg(layout.fence(partition))
                .arg(&plan.version)
                .arg(&plan.value)
                .arg(&plan.due_at)
                .arg(plan.due_mode)
                .arg(&member)
                .arg(if plan.visible { "1" } else { "0" })
                .arg(self.inner.feed_length)
                .arg(now.as_unix_millis())
                .arg(
                    fence
                        .map(|lease| lease.fence.to_string())
                        .unwrap_or_default(),
                );
            let reply = self
                .run_apply(
                    partition,
                    invocation,
                    !plan.value.is_empty() && fence.is_none(),
                )
                .await?;
            match reply.first().map(Vec::as_slice) {
                Some(b"ok") => {
                    self.appended(partition, reply.get(1).map(Vec::as_slice));
                    self.count_or_log(plan.users, plan.sessions).await;
                    return Ok(Ok(plan.applied));
                }
                Some(b"conflict") => {
                    current = reply.into_iter().nth(1).filter(|value| !value.is_empty());
                }
                Some(b"fenced") => return Err(self.fenced(partition)),
                _ => {
                    return Err(StoreError::Unavailable(
                        "Redis answered the write script with something unexpected".into(),
                    ));
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "{CAS_ATTEMPTS} concurrent writes to one user kept conflicting; retry"
        )))
    }

    fn fenced(&self, partition: u32) -> StoreError {
        metrics::counter!("presenced_redis_fenced_total").increment(1);
        StoreError::Fenced(format!(
            "partition {partition} was taken over by another node"
        ))
    }

    /// Notes a change appended to `partition`'s stream (its id, if any).
    fn appended(&self, partition: u32, id: Option<&[u8]>) {
        if let Some(offset) = id
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(offset_of)
        {
            self.inner.heads[partition as usize].fetch_max(offset, Ordering::AcqRel);
            self.inner.appended.notify_waiters();
        }
    }

    /// The write is made: a count that cannot be moved now only makes a
    /// metric lag until the next refresh.
    async fn count_or_log(&self, users: i64, sessions: i64) {
        if let Err(error) = self.count(users, sessions).await {
            tracing::debug!(%error, "could not move the counts of users and sessions");
        }
    }

    /// Ticks users of one partition in one script per chunk: one read of
    /// their facts (one slot, one MGET), the model in Rust, one script that
    /// checks the fence and each version and writes. A user that changed
    /// between (a conflict) is ticked again alone.
    async fn tick_chunk(
        &self,
        lease: &Lease,
        keys: &[UserKey],
        now: Instant,
        timeouts: Timeouts,
    ) -> Vec<Result<(), StoreError>> {
        let layout = &self.inner.layout;
        let partition = lease.partition;
        let names: Vec<Vec<u8>> = keys.iter().map(|key| layout.facts(key)).collect();
        let all = |error: StoreError| keys.iter().map(|_| Err(error.clone())).collect();
        let mut conn = self.reads();
        let values: Vec<Option<Vec<u8>>> =
            match redis::cmd("MGET").arg(&names).query_async(&mut conn).await {
                Ok(values) => values,
                Err(error) => return all(unavailable(error)),
            };
        let mut invocation = redis::cmd("EVALSHA");
        invocation
            .arg(self.inner.scripts.tick_all.get_hash())
            .arg(3 + keys.len())
            .arg(layout.due(partition))
            .arg(layout.changes(partition))
            .arg(layout.fence(partition))
            .arg(&names)
            .arg(lease.fence)
            .arg(self.inner.feed_length)
            .arg(now.as_unix_millis());
        let mut plans = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(&values) {
            let plan = match Plan::new(value.as_deref(), &Command::Tick, now, timeouts) {
                Ok(Ok(plan)) => plan,
                Ok(Err(refused)) => {
                    tracing::error!(error = %refused, "the model refused a tick");
                    return all(StoreError::Unavailable(refused.to_string()));
                }
                Err(error) => return all(error),
            };
            invocation
                .arg(&plan.version)
                .arg(&plan.value)
                .arg(&plan.due_at)
                .arg(plan.due_mode)
                .arg(key.to_bytes())
                .arg(if plan.visible { "1" } else { "0" });
            plans.push(plan);
        }
        let reply: Vec<Vec<u8>> = match invocation.query_async(&mut conn).await {
            Ok(reply) => reply,
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                if let Err(error) = self.inner.scripts.tick_all.load_async(&mut conn).await {
                    return all(unavailable(error));
                }
                match invocation.query_async(&mut conn).await {
                    Ok(reply) => reply,
                    Err(error) => return all(unavailable(error)),
                }
            }
            Err(error) => return all(unavailable(error)),
        };
        match reply.first().map(Vec::as_slice) {
            Some(b"ok") if reply.len() == keys.len() + 1 => {}
            Some(b"fenced") => return all(self.fenced(partition)),
            _ => {
                return all(StoreError::Unavailable(
                    "Redis answered the tick script with something unexpected".into(),
                ));
            }
        }
        let (mut users, mut sessions) = (0, 0);
        let mut outcomes = Vec::with_capacity(keys.len());
        for ((key, plan), answer) in keys.iter().zip(&plans).zip(&reply[1..]) {
            if answer.as_slice() == b"c" {
                metrics::counter!("presenced_redis_cas_conflicts_total").increment(1);
                let again = self
                    .change(key, &Command::Tick, now, timeouts, Some(lease))
                    .await;
                outcomes.push(again.map(|_| ()));
                continue;
            }
            self.appended(partition, Some(answer));
            users += plan.users;
            sessions += plan.sessions;
            outcomes.push(Ok(()));
        }
        self.count_or_log(users, sessions).await;
        outcomes
    }

    async fn read_partition(
        &self,
        partition: u32,
        after: u64,
        limit: usize,
    ) -> Result<Option<(u64, Vec<Change>)>, StoreError> {
        let layout = &self.inner.layout;
        let key = layout.changes(partition);
        let mut conn = self.reads();
        let mut pipe = redis::pipe();
        pipe.cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        pipe.cmd("XRANGE")
            .arg(&key)
            .arg(format!("(0-{after}"))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1));
        type Entries = Vec<(String, Vec<Vec<u8>>)>;
        let (last, entries): (Entries, Entries) =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let last = last.first().and_then(|(id, _)| offset_of(id)).unwrap_or(0);
        self.inner.heads[partition as usize].fetch_max(last, Ordering::AcqRel);
        if after > last {
            return Ok(None);
        }
        let mut changes = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let offset = offset_of(&id).ok_or_else(|| {
                StoreError::Unavailable(format!("a change stream holds the foreign id {id}"))
            })?;
            if changes.is_empty() && offset != after + 1 {
                // Trimmed past the cursor.
                return Ok(None);
            }
            let mut key = None;
            let mut at = None;
            let mut facts = None;
            for pair in fields.chunks(2) {
                match (pair[0].as_slice(), pair.get(1)) {
                    (b"k", Some(value)) => key = UserKey::from_bytes(value),
                    (b"t", Some(value)) => {
                        at = std::str::from_utf8(value)
                            .ok()
                            .and_then(|text| text.parse::<i64>().ok())
                    }
                    (b"f", Some(value)) => facts = decode_value(value).ok(),
                    _ => {}
                }
            }
            let (Some(key), Some(at), Some(facts)) = (key, at, facts) else {
                return Err(StoreError::Unavailable(format!(
                    "the change {id} of partition {partition} cannot be read"
                )));
            };
            changes.push(Change {
                position: Position { partition, offset },
                key,
                facts: Arc::new(facts),
                at: Instant::from_unix_millis(at),
            });
        }
        Ok(Some((last, changes)))
    }
}

/// What one command does to one user's stored value, computed in Rust
/// before the script that writes it.
#[derive(Debug)]
struct Plan {
    applied: Applied,
    /// The version the value was read at (empty: nothing stored).
    version: Vec<u8>,
    /// The new value (empty: leave it).
    value: Vec<u8>,
    due_at: String,
    /// `lt`, `set`, `rem`, or empty.
    due_mode: &'static str,
    /// Whether the change is visible (a change entry is appended).
    visible: bool,
    /// A user nothing was stored for gets facts.
    creates: bool,
    /// A command that leaves nothing on a user nothing is stored for (a
    /// tick still removes the user's due entry).
    nothing_to_write: bool,
    /// How the counts of users and sessions held move.
    users: i64,
    sessions: i64,
}

impl Plan {
    fn new(
        current: Option<&[u8]>,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Plan, CommandError>, StoreError> {
        let tick = matches!(command, Command::Tick);
        let (version, mut facts) = match current {
            Some(value) => (
                value.get(..8).map(<[u8]>::to_vec).unwrap_or_default(),
                decode_value(value.get(8..).unwrap_or_default()).map_err(|problem| {
                    StoreError::Unavailable(format!(
                        "the facts of a user in Redis cannot be read ({problem}); this presenced may be older than the one that wrote them"
                    ))
                })?,
            ),
            None => (Vec::new(), UserFacts::default()),
        };
        let sequence_before = facts.sequence.value;
        let held_before = current.is_some() && !facts.holds_nothing();
        let sessions_before = facts.sessions.len() as i64;
        let applied = match apply(&mut facts, command, now, timeouts) {
            Ok(applied) => applied,
            Err(refused) => return Ok(Err(refused)),
        };
        let exists = current.is_some();
        let keeps_nothing = !exists && facts.holds_nothing() && facts.sequence.value == 0;
        let record = encode_value(&facts);
        let unchanged = current.is_some_and(|value| value.get(8..) == Some(record.as_slice()));
        let value = if unchanged || keeps_nothing {
            Vec::new()
        } else {
            let mut value = (version_of(&version) + 1).to_be_bytes().to_vec();
            value.extend_from_slice(&record);
            value
        };
        let next = next_transition(&facts, now, timeouts);
        let (due_at, due_mode) = match (tick, next) {
            (true, Some(at)) => (at.as_unix_millis().to_string(), "set"),
            (true, None) => (String::new(), "rem"),
            (false, Some(at)) => (at.as_unix_millis().to_string(), "lt"),
            (false, None) => (String::new(), ""),
        };
        Ok(Ok(Plan {
            applied,
            visible: facts.sequence.value != sequence_before && !value.is_empty(),
            creates: !exists && !keeps_nothing,
            nothing_to_write: keeps_nothing && !tick,
            users: i64::from(!facts.holds_nothing()) - i64::from(held_before),
            sessions: facts.sessions.len() as i64 - sessions_before,
            version,
            value,
            due_at,
            due_mode,
        }))
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    hasher.finish()
}

/// Refuses a Redis that would drop what it is given: one that evicts keys,
/// or a standalone one that persists nothing (unless allowed).
async fn check_keeps_data(
    conn: &Conn,
    cluster: bool,
    allow_volatile: bool,
) -> Result<(), StoreError> {
    for policy in config_values(conn, "maxmemory-policy").await? {
        if policy != "noeviction" {
            return Err(StoreError::Unavailable(format!(
                "Redis is configured with maxmemory-policy {policy}, which deletes keys when memory runs short and would lose presences; set `maxmemory-policy noeviction` (CONFIG SET maxmemory-policy noeviction, and in redis.conf)"
            )));
        }
    }
    if !cluster && !allow_volatile {
        let aof = config_values(conn, "appendonly").await?;
        let rdb = config_values(conn, "save").await?;
        let persists = aof.iter().any(|value| value == "yes")
            || rdb.iter().any(|value| !value.trim().is_empty());
        if !persists {
            return Err(StoreError::Unavailable(
                "this standalone Redis persists nothing (appendonly no, and no save points), so a restart of it would lose every presence; turn on AOF (`appendonly yes`) or RDB snapshots, or accept that with --redis-allow-volatile".into(),
            ));
        }
    }
    Ok(())
}

/// Creates the keyspace's meta record, or checks the one found. Answers the
/// keyspace's epoch (cursors from another keyspace read as gaps).
async fn meta(conn: &Conn, layout: &Layout) -> Result<u64, StoreError> {
    let mut conn = conn.clone();
    let key = layout.global("meta");
    let fresh_epoch = rand_u64() & 0xffff_ffff_ffff;
    let mut pipe = redis::pipe();
    pipe.hset_nx(&key, "layout", LAYOUT_VERSION)
        .ignore()
        .hset_nx(&key, "partitions", layout.partitions())
        .ignore()
        .hset_nx(&key, "epoch", fresh_epoch)
        .ignore()
        .hgetall(&key);
    let (found,): (BTreeMap<String, String>,) =
        pipe.query_async(&mut conn).await.map_err(unavailable)?;
    let number = |name: &str| found.get(name).and_then(|value| value.parse::<u64>().ok());
    let layout_found = number("layout").unwrap_or(0);
    if layout_found > u64::from(LAYOUT_VERSION) {
        return Err(StoreError::Unavailable(format!(
            "the Redis keyspace was written by a newer presenced (key layout {layout_found}; this one reads layout {LAYOUT_VERSION}); run a presenced at least as new"
        )));
    }
    let partitions = number("partitions").unwrap_or(0);
    if partitions != u64::from(layout.partitions()) {
        return Err(StoreError::Unavailable(format!(
            "the Redis keyspace is split into {partitions} partitions and this node was started with --redis-partitions {}; start it with --redis-partitions {partitions}",
            layout.partitions()
        )));
    }
    number("epoch").ok_or_else(|| StoreError::Unavailable("the Redis keyspace has no epoch".into()))
}

/// While the store lives: looks for other nodes' changes while the feed is
/// followed, and refreshes the counts for metrics now and then.
async fn watch(store: Weak<Inner>, poll: StdDuration) {
    let mut rounds: u64 = 0;
    loop {
        tokio::time::sleep(poll).await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = RedisStore { inner };
        if store.inner.followers.load(Ordering::Acquire) > 0 {
            let _ = store.refresh_heads().await;
        }
        rounds += 1;
        if rounds.is_multiple_of(50) {
            store.refresh_counts().await;
        }
    }
}

#[async_trait]
impl Facts for RedisStore {
    /// Exact across nodes (see `admit_user`); each node enforces the bound
    /// it was started with.
    fn limit_users_per_tenant(&self, limit: Option<std::num::NonZeroU64>) {
        self.inner.user_limit.store(
            limit.map_or(0, std::num::NonZeroU64::get),
            Ordering::Relaxed,
        );
    }

    async fn apply(
        &self,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Applied, CommandError>, StoreError> {
        self.change(key, command, now, timeouts, None).await
    }

    async fn apply_under(
        &self,
        lease: &Lease,
        key: &UserKey,
        command: &Command,
        now: Instant,
        timeouts: Timeouts,
    ) -> Result<Result<Applied, CommandError>, StoreError> {
        self.change(key, command, now, timeouts, Some(lease)).await
    }

    async fn tick_all(
        &self,
        lease: &Lease,
        keys: &[UserKey],
        now: Instant,
        timeouts: Timeouts,
    ) -> Vec<Result<(), StoreError>> {
        // Chunks of one partition's users, a few at once.
        let ticks: Vec<_> = keys
            .chunks(TICK_CHUNK)
            .map(|chunk| self.tick_chunk(lease, chunk, now, timeouts))
            .collect();
        crate::in_order(ticks, TICK_CHUNKS_IN_FLIGHT)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn read(
        &self,
        keys: &[UserKey],
        visit: &mut (dyn for<'f> FnMut(usize, Option<&'f UserFacts>) + Send),
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let layout = &self.inner.layout;
        let names: Vec<Vec<u8>> = keys.iter().map(|key| layout.facts(key)).collect();
        let mut conn = self.reads();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for (index, value) in values.iter().enumerate() {
            let facts = value
                .as_deref()
                .and_then(|value| decode_value(value.get(8..).unwrap_or_default()).ok());
            visit(index, facts.as_ref());
        }
        Ok(())
    }

    async fn scan(
        &self,
        visit: &mut (dyn for<'f> FnMut(&'f UserKey, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        let mut conn = self.reads();
        let tenants: Vec<String> = conn
            .smembers(self.inner.layout.global("tenants"))
            .await
            .map_err(unavailable)?;
        for tenant in tenants {
            let Ok(tenant) = TenantId::parse(&tenant) else {
                continue;
            };
            let key_tenant = tenant.clone();
            self.scan_tenant(&tenant, &mut |user, facts| {
                visit(&UserKey::new(key_tenant.clone(), user.clone()), facts)
            })
            .await?;
        }
        Ok(())
    }

    async fn scan_tenant(
        &self,
        tenant: &TenantId,
        visit: &mut (dyn for<'f> FnMut(&'f UserId, &'f UserFacts) + Send),
    ) -> Result<(), StoreError> {
        let mut conn = self.reads();
        let index = self.inner.layout.tenant(tenant);
        let mut cursor: u64 = 0;
        loop {
            let (next, users): (u64, Vec<Vec<u8>>) = redis::cmd("SSCAN")
                .arg(&index)
                .arg(cursor)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let users: Vec<UserId> = users
                .iter()
                .filter_map(|user| UserId::from_bytes(user))
                .collect();
            let keys: Vec<UserKey> = users
                .iter()
                .map(|user| UserKey::new(tenant.clone(), user.clone()))
                .collect();
            self.read(&keys, &mut |index, facts| {
                if let Some(facts) = facts {
                    visit(&users[index], facts);
                }
            })
            .await?;
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn counts(&self) -> StoreCounts {
        StoreCounts {
            users: self.inner.users.load(Ordering::Relaxed),
            sessions: self.inner.sessions.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl ChangeFeed for RedisStore {
    fn follow(&self) -> Following {
        self.inner.followers.fetch_add(1, Ordering::AcqRel);
        Following::counted(self.inner.followers.clone(), None)
    }

    async fn head(&self) -> Result<Cursor, StoreError> {
        self.refresh_heads().await?;
        Ok(Cursor {
            epoch: self.inner.epoch,
            offsets: self
                .inner
                .heads
                .iter()
                .map(|head| head.load(Ordering::Acquire))
                .collect(),
        })
    }

    async fn read_after(
        &self,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Option<Vec<Change>>, StoreError> {
        let partitions = self.inner.layout.partitions() as usize;
        if cursor.epoch != self.inner.epoch || cursor.offsets.len() != partitions {
            return Ok(None);
        }
        // Only the partitions known to have moved past the cursor are read
        // (the watcher and this node's own writes move the known heads);
        // a cursor ahead of a known head is checked against Redis, where it
        // reads as a gap if the stream never got that far.
        let moved: Vec<(usize, u64)> = cursor
            .offsets
            .iter()
            .enumerate()
            .filter(|(partition, after)| {
                self.inner.heads[*partition].load(Ordering::Acquire) != **after
            })
            .map(|(partition, after)| (partition, *after))
            .collect();
        // The limit is shared among the partitions read, so that a burst
        // spread over many of them is not read many times over.
        let share = limit.div_ceil(moved.len().max(1)).max(1);
        let reads = futures_util::future::join_all(
            moved
                .iter()
                .map(|(partition, after)| self.read_partition(*partition as u32, *after, share)),
        )
        .await;
        let mut lists = Vec::with_capacity(reads.len());
        for read in reads {
            match read? {
                Some((_, changes)) => lists.push(std::collections::VecDeque::from(changes)),
                None => return Ok(None),
            }
        }
        // Merged by instant, each partition's in its own order, so that a
        // limit keeps a prefix of every partition.
        let mut merged = Vec::new();
        while merged.len() < limit {
            let Some(next) = lists
                .iter()
                .enumerate()
                .filter_map(|(index, list)| list.front().map(|change| (change.at, index)))
                .min()
            else {
                break;
            };
            if let Some(change) = lists[next.1].pop_front() {
                merged.push(change);
            }
        }
        Ok(Some(merged))
    }

    async fn wait_after(&self, cursor: &Cursor) {
        loop {
            let appended = self.inner.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let behind = cursor.epoch != self.inner.epoch
                || cursor.offsets.len() != self.inner.heads.len()
                || self
                    .inner
                    .heads
                    .iter()
                    .zip(&cursor.offsets)
                    .any(|(head, offset)| head.load(Ordering::Acquire) > *offset);
            if behind {
                return;
            }
            appended.await;
        }
    }
}

#[async_trait]
impl DueIndex for RedisStore {
    fn partitions(&self) -> u32 {
        self.inner.layout.partitions()
    }

    fn partition_of(&self, key: &UserKey) -> u32 {
        self.inner.layout.partition_of(key)
    }

    async fn lease(
        &self,
        partition: u32,
        node: &str,
        now: Instant,
        until: Instant,
    ) -> Result<Option<Lease>, StoreError> {
        let layout = &self.inner.layout;
        // A lease of a year or more never lapses (a single holder's).
        let length = until
            .as_unix_millis()
            .saturating_sub(now.as_unix_millis())
            .max(1);
        let length = if length >= 365 * 24 * 3_600_000 {
            0
        } else {
            length
        };
        let mut conn = self.reads();
        let fence: Option<u64> = self
            .inner
            .scripts
            .lease
            .key(layout.lease(partition))
            .key(layout.fence(partition))
            .arg(node)
            .arg(length)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(fence.map(|fence| Lease {
            partition,
            fence,
            until,
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        RedisStore::release(self, lease).await
    }

    async fn schedule(&self, keys: &[UserKey], at: Instant) -> Result<(), StoreError> {
        let layout = &self.inner.layout;
        let mut by_partition: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        for key in keys {
            by_partition
                .entry(layout.partition_of(key))
                .or_default()
                .push(key.to_bytes());
        }
        let writes = by_partition.into_iter().map(|(partition, members)| {
            let mut conn = self.writes();
            let due = layout.due(partition);
            async move {
                for chunk in members.chunks(1_000) {
                    let mut cmd = redis::cmd("ZADD");
                    cmd.arg(&due).arg("LT");
                    for member in chunk {
                        cmd.arg(at.as_unix_millis()).arg(member);
                    }
                    let _: i64 = cmd.query_async(&mut conn).await.map_err(unavailable)?;
                }
                Ok::<(), StoreError>(())
            }
        });
        for result in futures_util::future::join_all(writes).await {
            result?;
        }
        self.inner.earlier_entry.notify_one();
        Ok(())
    }

    async fn next_due(&self, partition: u32) -> Result<Option<Instant>, StoreError> {
        self.earliest(self.inner.layout.due(partition)).await
    }

    async fn take_due(
        &self,
        lease: &Lease,
        now: Instant,
        limit: usize,
    ) -> Result<Vec<UserKey>, StoreError> {
        let layout = &self.inner.layout;
        let mut conn = self.reads();
        let taken: Option<Vec<Vec<u8>>> = self
            .inner
            .scripts
            .take_due
            .key(layout.due(lease.partition))
            .key(layout.fence(lease.partition))
            .arg(lease.fence)
            .arg(now.as_unix_millis())
            .arg(limit.min(100_000))
            .arg(now.as_unix_millis().saturating_add(TAKE_RETRY_MILLIS))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match taken {
            Some(members) => Ok(members
                .iter()
                .filter_map(|member| UserKey::from_bytes(member))
                .collect()),
            None => {
                metrics::counter!("presenced_redis_fenced_total").increment(1);
                Err(StoreError::Fenced(format!(
                    "partition {} was taken over by another node",
                    lease.partition
                )))
            }
        }
    }

    fn earlier_entry(&self) -> &Notify {
        &self.inner.earlier_entry
    }

    /// Not counted over Redis (it would take a ZCARD of every partition):
    /// the scheduler lag gauge tells how far behind the ticks are.
    fn pending(&self) -> usize {
        0
    }
}

#[async_trait]
impl Subscriptions for RedisStore {
    async fn put_subscription(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let layout = &self.inner.layout;
        let mut pipe = redis::pipe();
        pipe.hset(layout.global("subs"), id, record)
            .ignore()
            .incr(layout.global("subs:v"), 1)
            .ignore();
        let mut conn = self.writes();
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        let layout = &self.inner.layout;
        let mut conn = self.writes();
        let _: i64 = conn.del(layout.marks(id)).await.map_err(unavailable)?;
        let mut pipe = redis::pipe();
        pipe.hdel(layout.global("subs"), id)
            .ignore()
            .srem(layout.global("marked"), id)
            .ignore()
            .zrem(layout.global("timers"), id)
            .ignore()
            .incr(layout.global("subs:v"), 1)
            .ignore();
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn subscriptions(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut conn = self.reads();
        let all: BTreeMap<String, Vec<u8>> = conn
            .hgetall(self.inner.layout.global("subs"))
            .await
            .map_err(unavailable)?;
        Ok(all.into_iter().collect())
    }

    async fn subscriptions_version(&self) -> Result<u64, StoreError> {
        let mut conn = self.reads();
        let version: Option<u64> = conn
            .get(self.inner.layout.global("subs:v"))
            .await
            .map_err(unavailable)?;
        Ok(version.unwrap_or(0))
    }

    async fn put_marks(&self, marks: &[Mark]) -> Result<(), StoreError> {
        let layout = &self.inner.layout;
        let mut by_subscription: BTreeMap<&str, Vec<&Mark>> = BTreeMap::new();
        for mark in marks {
            by_subscription
                .entry(mark.subscription.as_str())
                .or_default()
                .push(mark);
        }
        let mut conn = self.writes();
        let ids: Vec<&str> = by_subscription.keys().copied().collect();
        if !ids.is_empty() {
            let _: i64 = conn
                .sadd(layout.global("marked"), &ids)
                .await
                .map_err(unavailable)?;
        }
        for (subscription, marks) in by_subscription {
            let mut invocation = self
                .inner
                .scripts
                .raise_marks
                .key(layout.marks(subscription));
            for mark in marks {
                invocation
                    .arg(mark.user.as_str().as_bytes())
                    .arg(mark.sequence);
            }
            let _: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn delete_marks(&self, subscription: &str, users: &[UserId]) -> Result<(), StoreError> {
        if users.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = users.iter().map(|user| user.as_str().to_string()).collect();
        let mut conn = self.writes();
        let _: i64 = conn
            .hdel(self.inner.layout.marks(subscription), names)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn marks(&self) -> Result<Vec<Mark>, StoreError> {
        let layout = &self.inner.layout;
        let mut conn = self.reads();
        let mut ids: Vec<String> = conn
            .smembers(layout.global("marked"))
            .await
            .map_err(unavailable)?;
        ids.sort();
        let mut marks = Vec::new();
        for id in ids {
            let held: BTreeMap<String, u64> =
                conn.hgetall(layout.marks(&id)).await.map_err(unavailable)?;
            for (user, sequence) in held {
                if let Ok(user) = UserId::parse(&user) {
                    marks.push(Mark {
                        subscription: id.clone(),
                        user,
                        sequence,
                    });
                }
            }
        }
        marks.sort_by(|a, b| (&a.subscription, &a.user).cmp(&(&b.subscription, &b.user)));
        Ok(marks)
    }

    async fn set_timer(&self, id: &str, at: Instant) -> Result<(), StoreError> {
        let mut conn = self.writes();
        let _: i64 = conn
            .zadd(self.inner.layout.global("timers"), id, at.as_unix_millis())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn next_timer(&self) -> Result<Option<Instant>, StoreError> {
        self.earliest(self.inner.layout.global("timers").into_bytes())
            .await
    }

    async fn take_due_timers(&self, now: Instant) -> Result<Vec<(Instant, String)>, StoreError> {
        let mut conn = self.writes();
        let due: Vec<(String, f64)> = self
            .inner
            .scripts
            .take_timers
            .key(self.inner.layout.global("timers"))
            .arg(now.as_unix_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(due
            .into_iter()
            .map(|(id, at)| (Instant::from_unix_millis(at as i64), id))
            .collect())
    }
}
