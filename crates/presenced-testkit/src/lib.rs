//! Test-only helpers of presenced: real `redis-server` processes that tests
//! start, kill and restart, and the version of the machine's Node.js.
//!
//! - [`RedisServer`]: one standalone server on a loopback port, in its own
//!   temporary directory, with the append-only file on so that a restart
//!   keeps its data.
//! - [`RedisCluster`]: a Redis Cluster of primaries and replicas, each node
//!   in its own temporary directory, created with `redis-cli --cluster
//!   create` and waited for until every node agrees it is healthy.
//!
//! Everything is synchronous and uses only the standard library (and
//! `tempfile`): async tests call it with plain calls. Nothing here skips a
//! test: a missing `redis-server` is installed when it can be (root with
//! `apt-get`) and is otherwise a panic that says how to install it. Every
//! wait has a deadline, and every panic says what failed and, where a
//! server is involved, shows the tail of its log.

mod cluster;
mod node;
mod nodejs;
mod server;

pub use cluster::RedisCluster;
pub use nodejs::node_major_version;
pub use server::RedisServer;

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Where the Redis binaries are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBinaries {
    /// `redis-server`.
    pub server: PathBuf,
    /// `redis-cli`.
    pub cli: PathBuf,
}

const NOT_INSTALLED: &str =
    "redis-server is not installed; install it with: sudo apt-get install redis-server redis-tools";

/// The paths of `redis-server` and `redis-cli`, looked up on `PATH` (and in
/// `/usr/bin`, `/usr/local/bin`) once per process.
///
/// If either is missing and the process runs as root with `apt-get`
/// available, runs `apt-get update -qq && apt-get install -y -qq
/// redis-server redis-tools` (at most once per process). Otherwise panics
/// with "redis-server is not installed; install it with: sudo apt-get
/// install redis-server redis-tools". Never skips.
pub fn redis_binaries() -> &'static RedisBinaries {
    static BINARIES: OnceLock<RedisBinaries> = OnceLock::new();
    static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();
    BINARIES.get_or_init(|| {
        if let Some(found) = find_binaries() {
            return found;
        }
        if !(running_as_root() && find_program("apt-get").is_some()) {
            panic!("{NOT_INSTALLED}");
        }
        if let Err(why) = INSTALL.get_or_init(install_with_apt) {
            panic!("{NOT_INSTALLED} (installing it with apt-get failed: {why})");
        }
        find_binaries().unwrap_or_else(|| {
            panic!("{NOT_INSTALLED} (apt-get install succeeded but redis-server or redis-cli is still not on PATH)")
        })
    })
}

fn find_binaries() -> Option<RedisBinaries> {
    Some(RedisBinaries {
        server: find_program("redis-server")?,
        cli: find_program("redis-cli")?,
    })
}

/// The first executable file called `name` on `PATH`, then in the usual
/// system directories (a test runner may have a narrow `PATH`).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

fn install_with_apt() -> Result<(), String> {
    eprintln!("presenced-testkit: redis-server is missing; installing it with apt-get");
    let status = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && apt-get install -y -qq redis-server redis-tools",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("could not run sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("apt-get exited with {status}"))
    }
}

/// Ports this process has already handed out, so that two servers started
/// by tests running in parallel never get the same one.
fn claim(ports: &[u16]) -> bool {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    // A poisoned lock only means another test panicked while holding it;
    // the set itself is still valid.
    let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if ports.iter().any(|p| taken.contains(p)) {
        return false;
    }
    taken.extend(ports);
    true
}

/// A loopback port that is free now (the kernel picks it: bind to
/// `127.0.0.1:0`) and that this process has not handed out before.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| {
            panic!(
                "free_port: cannot bind a socket on 127.0.0.1:0: {e}; is the loopback interface up?"
            )
        });
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("free_port: cannot read the bound socket's address: {e}"))
            .port();
        if claim(&[port]) {
            return port;
        }
    }
    panic!(
        "free_port: the kernel kept handing out ports this process already uses; too many servers in one test process?"
    )
}

/// A loopback port `p <= 55000` such that both `p` and `p + 10000` (a
/// cluster node's bus port) are free now and were not handed out before.
///
/// Candidates are taken at random below the kernel's ephemeral range (read
/// from `/proc/sys/net/ipv4/ip_local_port_range`), so that neither port can
/// be taken by an outgoing connection between this check and the node's
/// bind; if that range leaves no room, from 10000..=55000.
pub fn free_cluster_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low: u32 = 10000;
    let high = match ephemeral_low.saturating_sub(10001).min(55000) {
        high if high >= low + 1000 => high,
        _ => 55000,
    };
    let random = RandomState::new();
    for attempt in 0u32..5000 {
        let offset = random.hash_one(attempt) % u64::from(high - low + 1);
        let port = u16::try_from(u64::from(low) + offset).expect("port range is below 55001");
        let bus = port + 10000;
        let both_free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", bus)).is_ok();
        if both_free && claim(&[port, bus]) {
            return port;
        }
    }
    panic!(
        "free_cluster_port: found no port p in {low}..={high} with p and p+10000 both free on 127.0.0.1 after 5000 tries; are many servers listening there?"
    )
}
