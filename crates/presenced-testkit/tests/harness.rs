//! The testkit against real `redis-server` processes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use presenced_testkit::{RedisCluster, RedisServer, free_cluster_port, free_port, redis_binaries};

fn refuses_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// `SET key value` then `WAIT 1 2000` on one connection, returning both
/// replies. They must share a connection: `WAIT` waits only for the writes
/// of its own connection, so a `WAIT` sent by a separate `redis-cli` run
/// answers at once with every connected replica, acknowledged or not.
fn set_and_wait_for_one_replica(port: u16, key: &str, value: &str) -> (String, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the primary");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    (&stream)
        .write_all(format!("SET {key} {value}\r\nWAIT 1 2000\r\n").as_bytes())
        .expect("send SET and WAIT");
    let mut replies = BufReader::new(&stream).lines();
    let mut next = || replies.next().expect("a reply").expect("read a reply");
    (next(), next())
}

#[test]
fn binaries_are_found() {
    let binaries = redis_binaries();
    assert!(binaries.server.is_file(), "{binaries:?}");
    assert!(binaries.cli.is_file(), "{binaries:?}");
}

#[test]
fn ports_are_not_handed_out_twice() {
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        assert!(seen.insert(free_port()));
        let p = free_cluster_port();
        assert!(p <= 55000, "{p}");
        assert!(seen.insert(p) && seen.insert(p + 10000), "{p}");
    }
}

#[test]
fn standalone_set_get_stop_restart_keeps_data() {
    let mut server = RedisServer::start();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert_eq!(server.cli(&["ping"]), "PONG");
    assert_eq!(server.cli(&["set", "k", "v"]), "OK");
    assert_eq!(server.cli(&["get", "k"]), "v");
    assert_eq!(
        server.cli(&["config", "get", "appendonly"]),
        "appendonly\nyes"
    );

    server.stop();
    assert!(refuses_connections(server.port()));
    server.restart();
    assert_eq!(
        server.cli(&["get", "k"]),
        "v",
        "the append-only file kept k"
    );

    // restart() on a running server stops it gracefully first.
    server.cli(&["set", "k2", "v2"]);
    server.restart();
    assert_eq!(server.cli(&["get", "k2"]), "v2");
}

#[test]
fn standalone_kill_and_restart() {
    // `always`: every write is in the append-only file before its reply,
    // so a crash cannot lose it (with `everysec` it usually does not).
    let mut server = RedisServer::start_with(&["--appendfsync", "always"]);
    let port = server.port();
    assert_eq!(server.cli(&["set", "k", "v"]), "OK");
    server.kill();
    assert!(refuses_connections(port), "the killed server still listens");
    server.kill(); // killing a dead server does nothing
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(server.cli(&["ping"]), "PONG");
    assert_eq!(server.cli(&["get", "k"]), "v");
}

#[test]
fn standalone_extra_args_override_defaults() {
    let server =
        RedisServer::start_with(&["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"]);
    assert_eq!(
        server.cli(&["config", "get", "appendonly"]),
        "appendonly\nno"
    );
    assert_eq!(
        server.cli(&["config", "get", "maxmemory-policy"]),
        "maxmemory-policy\nallkeys-lru"
    );
    // An error reply is text, not a panic.
    assert!(server.cli(&["nosuchcommand"]).starts_with("ERR"));
}

#[test]
fn dropping_a_server_kills_it() {
    let server = RedisServer::start();
    let port = server.port();
    drop(server);
    assert!(refuses_connections(port));
}

#[test]
fn cluster_fails_over_a_killed_primary_and_keeps_acknowledged_data() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    eprintln!("RedisCluster::start(3, 1) took {:?}", started.elapsed());

    let ports = cluster.ports();
    assert_eq!(ports.len(), 6);
    assert_eq!(cluster.urls().len(), 6);
    assert!(ports.iter().all(|&p| p <= 55000));
    let primaries = cluster.primary_ports();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    let replicas: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| !primaries.contains(p))
        .collect();
    assert_eq!(replicas.len(), 3);
    for &replica in &replicas {
        let role = cluster.cli(replica, &["role"]);
        assert!(role.starts_with("slave"), "node {replica}: {role}");
    }

    // Write through any node (following MOVED).
    let any = ports[0];
    assert_eq!(cluster.cli(any, &["-c", "set", "x", "1"]), "OK");
    assert_eq!(cluster.cli(any, &["-c", "get", "x"]), "1");

    // Write to the primary of the key's slot, and wait until its replica
    // has acknowledged the write.
    let slot: u16 = cluster
        .cli(any, &["cluster", "keyslot", "somekey"])
        .parse()
        .expect("CLUSTER KEYSLOT answers a number");
    let primary = cluster.primary_for_slot(slot);
    assert!(primaries.contains(&primary));
    let (set, acked) = set_and_wait_for_one_replica(primary, "somekey", "v");
    assert_eq!((set.as_str(), acked.as_str()), ("+OK", ":1"));

    let failed_over = Instant::now();
    cluster.kill(primary);
    cluster.wait_until_ok();
    eprintln!("failover after SIGKILL took {:?}", failed_over.elapsed());

    let after = cluster.primary_ports();
    assert_eq!(after.len(), 3, "{after:?}");
    assert_ne!(after, primaries);
    assert!(!after.contains(&primary), "{after:?} still has {primary}");
    let promoted = cluster.primary_for_slot(slot);
    assert!(replicas.contains(&promoted), "{promoted} was not a replica");
    let live = *after.first().expect("three primaries");
    assert_eq!(cluster.cli(live, &["-c", "get", "somekey"]), "v");

    // The killed node comes back as a replica of the promoted one.
    cluster.restart(primary);
    cluster.wait_until_ok();
    assert_eq!(cluster.primary_ports(), after);
    assert_eq!(cluster.cli(primary, &["-c", "get", "somekey"]), "v");
}

#[test]
#[should_panic(expected = "exited with")]
fn a_server_that_cannot_start_panics_with_the_cause() {
    RedisServer::start_with(&["--no-such-directive", "x"]);
}
