//! [`RedisCluster`]: a Redis Cluster of real `redis-server` processes.

use std::fmt::Write as _;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::free_cluster_port;
use crate::node::{Node, run_cli};

/// The arguments of every cluster node. The node timeout is short so that
/// a killed primary is failed over within a few seconds, and a primary
/// starts a replica's full sync at once instead of after the default 5 s
/// `repl-diskless-sync-delay` (which would add 5 s to every start).
const NODE_ARGS: [&str; 12] = [
    "--cluster-enabled",
    "yes",
    "--cluster-node-timeout",
    "2000",
    "--cluster-config-file",
    "nodes.conf",
    "--appendonly",
    "yes",
    "--save",
    "",
    "--repl-diskless-sync-delay",
    "0",
];

/// The hash slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// How long creating the cluster, and each wait for it to be healthy, may
/// take.
const DEADLINE: Duration = Duration::from_secs(60);

/// A Redis Cluster on `127.0.0.1`: `primaries` primaries with `replicas`
/// replicas each, every node a `redis-server` in its own temporary
/// directory with `--cluster-enabled yes --cluster-node-timeout 2000
/// --cluster-config-file nodes.conf --appendonly yes --save ""
/// --repl-diskless-sync-delay 0`. Each node's port `p` has `p + 10000` (its
/// cluster bus port) free as well. Dropping it kills every process.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts `primaries * (1 + replicas)` nodes, creates the cluster with
    /// `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`
    /// (retried until it succeeds, deadline 60 s), then waits until every
    /// node reports `cluster_state:ok`, all agree on who serves every slot,
    /// and every primary has `replicas` replicas online (deadline 60 s).
    ///
    /// `redis-cli` needs at least 3 primaries. Tests use 3 and 1: six
    /// processes.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        assert!(
            primaries >= 3,
            "RedisCluster::start({primaries}, {replicas}): a Redis Cluster needs at least 3 primaries (redis-cli --cluster create refuses fewer)"
        );
        let count = primaries * (1 + replicas);
        let mut cluster = RedisCluster {
            nodes: (0..count)
                .map(|_| Node::new(free_cluster_port(), &NODE_ARGS))
                .collect(),
        };
        // Spawn all, then wait for each: the nodes start in parallel.
        cluster.nodes.iter_mut().for_each(Node::spawn);
        cluster.nodes.iter_mut().for_each(Node::wait_ready);
        cluster.create(replicas);
        cluster.wait_for("every primary to have its replicas online", |c| {
            c.check_ok()?;
            c.check_replicas(replicas)
        });
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node, primaries and replicas, in
    /// the order of [`ports`](RedisCluster::ports).
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Every node's port, whether it is running or not, in a fixed order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(Node::port).collect()
    }

    /// The ports of the current primaries, sorted, from `CLUSTER NODES` as
    /// the first running node that answers sees it: nodes flagged `master`
    /// that serve at least one slot and are not flagged failed (`fail`,
    /// `fail?`), `noaddr` or `handshake`.
    pub fn primary_ports(&self) -> Vec<u16> {
        let (_, entries) = self.cluster_nodes();
        let mut ports: Vec<u16> = entries
            .iter()
            .filter(|e| e.is_primary() && !e.slots.is_empty() && !e.is_failed())
            .map(|e| e.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The port of the primary that serves `slot` now, from `CLUSTER
    /// NODES` as the first running node that answers sees it. Panics if
    /// `slot` is not below 16384 or no primary serves it.
    pub fn primary_for_slot(&self, slot: u16) -> u16 {
        assert!(
            usize::from(slot) < SLOTS,
            "primary_for_slot({slot}): hash slots are 0..{SLOTS}"
        );
        let (text, entries) = self.cluster_nodes();
        entries
            .iter()
            .find(|e| e.is_primary() && e.serves(slot))
            .map(|e| e.port)
            .unwrap_or_else(|| {
                panic!("primary_for_slot({slot}): no primary serves slot {slot}; call wait_until_ok first?\nCLUSTER NODES:\n{text}")
            })
    }

    /// `SIGKILL`s the node on `port` and waits for it to exit. Panics if
    /// `port` is not a node of this cluster.
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Starts the node on `port` again, in its directory with its
    /// `nodes.conf` and append-only file, and waits until it answers `PING`
    /// (not until the cluster is healthy again: call
    /// [`wait_until_ok`](RedisCluster::wait_until_ok) for that). A node that
    /// is still running is stopped gracefully first.
    pub fn restart(&mut self, port: u16) {
        let node = self.node_mut(port);
        node.stop();
        node.spawn();
        node.wait_ready();
    }

    /// Waits until every running node reports `cluster_state:ok` and every
    /// slot is served by a running primary that is not flagged failed, with
    /// all running nodes agreeing on which primary serves each slot.
    /// Deadline 60 s; then panics with the reason, each running node's
    /// `CLUSTER NODES` and each node's log tail.
    pub fn wait_until_ok(&self) {
        self.wait_for("the cluster to be ok", RedisCluster::check_ok);
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT args...` and returns its stdout,
    /// trimmed; pass `-c` first to follow `MOVED` and `ASK` redirections.
    /// Panics if `redis-cli` exits with a non-zero status (e.g. it cannot
    /// connect) or takes more than 60 s. An error reply is not a failure
    /// for `redis-cli`: it comes back as text, e.g. `CLUSTERDOWN ...`.
    ///
    /// Each call is a new connection, so per-connection state does not carry
    /// over: in particular `WAIT` here answers at once with every connected
    /// replica, because this connection wrote nothing; send the write and
    /// its `WAIT` on one connection instead.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let node = self.node(port);
        try_cli(port, args).unwrap_or_else(|why| {
            panic!(
                "redis-cli against cluster node {port} failed: {why}\n{}",
                node.log_tail()
            )
        })
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| {
                panic!(
                    "port {port} is not a node of this cluster; its nodes are {:?}",
                    self.ports()
                )
            })
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        let ports = self.ports();
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| {
                panic!("port {port} is not a node of this cluster; its nodes are {ports:?}")
            })
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_started())
            .map(Node::port)
            .collect()
    }

    /// `redis-cli --cluster create`, retried until it succeeds. Between
    /// tries every node is emptied and reset, so that a try that failed
    /// half way does not make the next one fail with "node is not empty".
    fn create(&self, replicas: usize) {
        let addresses: Vec<String> = self
            .ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let replicas = replicas.to_string();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let why = match run_cli(&args) {
                Ok(_) => return,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                panic!(
                    "redis-cli --cluster create did not succeed within {DEADLINE:?}; last failure: {why}\n{}",
                    self.log_tails()
                );
            }
            sleep(Duration::from_secs(1));
            for port in self.ports() {
                // Best effort: a node that refuses is reported by the next
                // try.
                let _ = try_cli(port, &["flushall"]);
                let _ = try_cli(port, &["cluster", "reset", "hard"]);
            }
        }
    }

    /// Retries `check` until it passes; at the deadline panics with its
    /// last reason, every running node's `CLUSTER NODES` and every node's
    /// log tail.
    fn wait_for(&self, what: &str, check: impl Fn(&Self) -> Result<(), String>) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let why = match check(self) {
                Ok(()) => return,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                let mut views = String::new();
                for port in self.live_ports() {
                    let view = try_cli(port, &["cluster", "nodes"]).unwrap_or_else(|e| e);
                    let _ = writeln!(views, "--- CLUSTER NODES of {port} ---\n{view}");
                }
                panic!(
                    "waited {DEADLINE:?} for {what}; last reason: {why}; the machine may be overloaded, or a node may have crashed (see the logs below)\n{views}{}",
                    self.log_tails()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// `Ok` if every running node says `cluster_state:ok`, and sees every
    /// slot served by a running primary that it does not flag failed, and
    /// all of them agree on which primary serves each slot.
    fn check_ok(&self) -> Result<(), String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, Vec<u16>)> = None;
        for &port in &live {
            let info = try_cli(port, &["cluster", "info"])?;
            if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                let state = info
                    .lines()
                    .find(|line| line.starts_with("cluster_state:"))
                    .unwrap_or("no cluster_state line");
                return Err(format!("node {port} reports {state}"));
            }
            let entries = parse_cluster_nodes(&try_cli(port, &["cluster", "nodes"])?)?;
            let mut owners = vec![0u16; SLOTS];
            for entry in entries.iter().filter(|e| !e.slots.is_empty()) {
                if !live.contains(&entry.port) || entry.is_failed() {
                    return Err(format!(
                        "node {port} sees slots served by {} (flags {}), which is not running or is failed",
                        entry.port,
                        entry.flags.join(",")
                    ));
                }
                for &(first, last) in &entry.slots {
                    owners[usize::from(first)..=usize::from(last)].fill(entry.port);
                }
            }
            if let Some(slot) = owners.iter().position(|&owner| owner == 0) {
                return Err(format!("node {port} sees slot {slot} served by no one"));
            }
            match &agreed {
                None => agreed = Some((port, owners)),
                Some((first, theirs)) if *theirs != owners => {
                    let slot = (0..SLOTS).find(|&s| theirs[s] != owners[s]).unwrap_or(0);
                    return Err(format!(
                        "nodes {first} and {port} disagree: slot {slot} is served by {} according to {first} and by {} according to {port}",
                        theirs[slot], owners[slot]
                    ));
                }
                Some(_) => {}
            }
        }
        match agreed {
            Some(_) => Ok(()),
            None => Err("no node of the cluster is running".to_owned()),
        }
    }

    /// `Ok` if every current primary reports at least `replicas` replicas
    /// in state `online` in `INFO replication`.
    fn check_replicas(&self, replicas: usize) -> Result<(), String> {
        let (_, entries) = self.try_cluster_nodes()?;
        let primaries = entries
            .iter()
            .filter(|e| e.is_primary() && !e.slots.is_empty() && !e.is_failed());
        for primary in primaries {
            let info = try_cli(primary.port, &["info", "replication"])?;
            let online = info
                .lines()
                .filter(|line| line.starts_with("slave") && line.contains("state=online"))
                .count();
            if online < replicas {
                return Err(format!(
                    "primary {} has {online} replicas online, not {replicas}",
                    primary.port
                ));
            }
        }
        Ok(())
    }

    /// `CLUSTER NODES` (raw and parsed) from the first running node that
    /// answers.
    fn try_cluster_nodes(&self) -> Result<(String, Vec<Entry>), String> {
        let mut failures = Vec::new();
        for port in self.live_ports() {
            match try_cli(port, &["cluster", "nodes"]) {
                Ok(text) => {
                    let entries = parse_cluster_nodes(&text)?;
                    return Ok((text, entries));
                }
                Err(why) => failures.push(why),
            }
        }
        Err(format!(
            "no running node answered CLUSTER NODES (nodes: {:?}); failures: {failures:?}",
            self.ports()
        ))
    }

    fn cluster_nodes(&self) -> (String, Vec<Entry>) {
        self.try_cluster_nodes()
            .unwrap_or_else(|why| panic!("cannot read the cluster's layout: {why}"))
    }

    fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(Node::log_tail)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for RedisCluster {
    /// Kills every process (their temporary directories are removed after
    /// them).
    fn drop(&mut self) {
        self.nodes.iter_mut().for_each(Node::kill_quietly);
    }
}

fn try_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let port = port.to_string();
    let all: Vec<&str> = ["-h", "127.0.0.1", "-p", &port]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    run_cli(&all)
}

/// One line of `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags>
/// <primary> <ping-sent> <pong-recv> <epoch> <link-state> <slot>...`.
#[derive(Debug)]
struct Entry {
    port: u16,
    flags: Vec<String>,
    /// Inclusive ranges; migrating and importing markers (`[...]`) are left
    /// out.
    slots: Vec<(u16, u16)>,
}

impl Entry {
    fn is_primary(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    fn is_failed(&self) -> bool {
        self.flags
            .iter()
            .any(|f| matches!(f.as_str(), "fail" | "fail?" | "noaddr" | "handshake"))
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }
}

fn parse_cluster_nodes(text: &str) -> Result<Vec<Entry>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            parse_entry(line).ok_or_else(|| format!("cannot parse the CLUSTER NODES line {line:?}"))
        })
        .collect()
}

fn parse_entry(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let address = fields.get(1)?.split('@').next()?;
    let port = address.rsplit(':').next()?.parse().ok()?;
    let flags = fields.get(2)?.split(',').map(str::to_owned).collect();
    let mut slots = Vec::new();
    for token in fields.iter().skip(8).filter(|t| !t.starts_with('[')) {
        let (first, last) = token.split_once('-').unwrap_or((token, token));
        let (first, last): (u16, u16) = (first.parse().ok()?, last.parse().ok()?);
        if first > last || usize::from(last) >= SLOTS {
            return None;
        }
        slots.push((first, last));
    }
    Some(Entry { port, flags, slots })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes_lines() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master,fail? - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 10923 [10924->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";
        let entries = parse_cluster_nodes(text).expect("the sample parses");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].port, 30004);
        assert!(!entries[0].is_primary());
        assert!(entries[1].is_primary() && entries[1].is_failed());
        assert_eq!(entries[1].slots, vec![(5461, 10922)]);
        assert_eq!(entries[2].slots, vec![(0, 5460), (10923, 10923)]);
        assert!(entries[2].serves(10923) && !entries[2].serves(10924));
        assert!(parse_cluster_nodes("garbage").is_err());
    }
}
