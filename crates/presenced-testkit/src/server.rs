//! [`RedisServer`]: one standalone `redis-server`.

use crate::free_port;
use crate::node::{Node, run_cli};

/// The arguments every standalone server gets before the test's own: no RDB
/// snapshots, and an append-only file fsynced every second, so that a
/// restart keeps the data.
const DEFAULT_ARGS: [&str; 6] = [
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
];

/// One standalone `redis-server` on `127.0.0.1` at a free port, in its own
/// temporary directory (removed on drop), started with `--save ""
/// --appendonly yes --appendfsync everysec` and then the test's arguments.
/// Dropping it kills the process.
#[derive(Debug)]
pub struct RedisServer {
    node: Node,
}

impl RedisServer {
    /// Starts a server with the default arguments and waits until it
    /// answers `PING` with `PONG` (deadline 30 s; then panics with the tail
    /// of its log).
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Like [`RedisServer::start`], with `args` appended to the
    /// `redis-server` command line; a later argument overrides an earlier
    /// one, e.g. `["--appendonly", "no"]` or `["--maxmemory-policy",
    /// "allkeys-lru"]`.
    pub fn start_with(args: &[&str]) -> RedisServer {
        let all: Vec<&str> = DEFAULT_ARGS.iter().chain(args).copied().collect();
        let mut node = Node::new(free_port(), &all);
        node.spawn();
        node.wait_ready();
        RedisServer { node }
    }

    /// The port the server listens on, on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.node.port()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// `SIGKILL`s the server and waits for it to exit: what a crash looks
    /// like. Does nothing if the server is not running. With the default
    /// `--appendfsync everysec` a write acknowledged before the kill is
    /// usually kept by a later [`restart`](RedisServer::restart) (Redis
    /// writes it to the append-only file before replying unless an fsync
    /// is still running); `--appendfsync always` guarantees it.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// `SIGTERM`s the server (a graceful shutdown that flushes and fsyncs
    /// the append-only file) and waits for it to exit (deadline 30 s, then
    /// it is killed and this panics). Does nothing if the server is not
    /// running.
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Starts the server again on the same port, directory and arguments,
    /// and waits until it answers `PING` with `PONG` (after replaying its
    /// append-only file). A server that is still running is stopped
    /// gracefully first.
    pub fn restart(&mut self) {
        self.node.stop();
        self.node.spawn();
        self.node.wait_ready();
    }

    /// Runs `redis-cli -h 127.0.0.1 -p PORT args...` and returns its stdout,
    /// trimmed. Panics if `redis-cli` exits with a non-zero status (e.g. it
    /// cannot connect) or takes more than 60 s. An error reply is not a
    /// failure for `redis-cli`: it comes back as text, e.g. `ERR unknown
    /// command ...`.
    ///
    /// Each call is a new connection, so per-connection state does not carry
    /// over: in particular `WAIT` here answers at once with every connected
    /// replica, because this connection wrote nothing; send the write and
    /// its `WAIT` on one connection instead.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.port().to_string();
        let all: Vec<&str> = ["-h", "127.0.0.1", "-p", &port]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        run_cli(&all).unwrap_or_else(|why| {
            panic!(
                "redis-cli against the server on port {port} failed: {why}\n{}",
                self.node.log_tail()
            )
        })
    }
}

impl Drop for RedisServer {
    /// Kills the process (its temporary directory is removed after it).
    fn drop(&mut self) {
        self.node.kill_quietly();
    }
}
