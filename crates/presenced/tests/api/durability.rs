//! The embedded store, against the real binary: nothing acknowledged is
//! lost to SIGKILL, a restart applies what fell due while presenced was
//! down, one presenced per directory, a full disk answers 503 and recovers,
//! and damage is refused with a message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestServer, gauge, run_binary};

/// The five setPresence pairs; none of them fades within the test.
const STATES: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// A small xorshift, seeded from the clock: every run kills at other moments.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64);
        Random(nanos | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// What a user was last set to: the state of the last acknowledged write,
/// and of a write sent but not answered when the server died (which may or
/// may not have been applied).
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    acknowledged: Option<usize>,
    in_flight: Option<usize>,
}

/// How far the writers of one cycle have come, counted as they go.
#[derive(Debug, Default)]
struct Progress {
    /// Writes acknowledged in this cycle, over all connections.
    acknowledged: std::sync::atomic::AtomicU64,
    /// Connections each of whose users has had a write acknowledged.
    covered: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

impl Progress {
    fn acknowledged(&self, covers_the_connection: bool) {
        use std::sync::atomic::Ordering;
        self.acknowledged.fetch_add(1, Ordering::AcqRel);
        if covers_the_connection {
            self.covered.fetch_add(1, Ordering::AcqRel);
        }
        self.changed.notify_waiters();
    }

    /// Waits until `connections` are covered and `writes` were acknowledged.
    async fn wait_for(&self, connections: u64, writes: u64) {
        use std::sync::atomic::Ordering;
        loop {
            let changed = self.changed.notified();
            if self.covered.load(Ordering::Acquire) >= connections
                && self.acknowledged.load(Ordering::Acquire) >= writes
            {
                return;
            }
            // A short poll as well, so that a wake-up lost between the check
            // and the wait costs a few milliseconds, not the test.
            let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
        }
    }
}

/// Reads every written user in batches of 650 and checks that each shows
/// its last acknowledged state, or the one in flight at the kill, or, for a
/// user never acknowledged, Offline. Then records what is shown as the
/// user's acknowledged state: it was read back after a restart, so it is on
/// disk, whether or not its write was answered.
async fn check_every_acknowledged_write(
    server: &TestServer,
    written: &mut HashMap<String, Written>,
) {
    let users: Vec<String> = written.keys().cloned().collect();
    for chunk in users.chunks(650) {
        let reply = server
            .post(
                "/v1.0/communications/getPresencesByUserId",
                json!({ "ids": chunk }),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let entries = reply.body["value"].as_array().expect("a value array");
        assert_eq!(entries.len(), chunk.len());
        for entry in entries {
            let user = entry["id"].as_str().expect("an id");
            let shown = (
                entry["availability"].as_str().unwrap_or_default(),
                entry["activity"].as_str().unwrap_or_default(),
            );
            let expected = written.get_mut(user).expect("a written user");
            let shown_state = STATES.iter().position(|state| *state == shown);
            let allowed = shown_state.is_some_and(|state| {
                expected.acknowledged == Some(state) || expected.in_flight == Some(state)
            }) || (shown_state.is_none()
                && shown == ("Offline", "Offline")
                && expected.acknowledged.is_none());
            assert!(
                allowed,
                "user {user} shows {shown:?} after the restart; its last acknowledged write \
                 was {:?} (in flight at the kill: {:?})",
                expected.acknowledged.map(|state| STATES[state]),
                expected.in_flight.map(|state| STATES[state]),
            );
            expected.acknowledged = shown_state;
            expected.in_flight = None;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill_at_a_random_moment() {
    kill_and_restart_while_writing(&[], 20).await;
}

/// Relaxed durability answers before the sync, but after the write reached
/// the operating system, which outlives the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_durability_also_survives_sigkill() {
    kill_and_restart_while_writing(&["--durability", "relaxed"], 5).await;
}

/// `cycles` times: start presenced with `args` on one directory, check every
/// write acknowledged so far, write at full speed on many connections, and
/// kill it with SIGKILL after a random count of acknowledged writes (at least
/// one for every user, so that every cycle covers every user).
async fn kill_and_restart_while_writing(args: &[&str], cycles: usize) {
    const CONNECTIONS: usize = 48;
    const USERS_PER_CONNECTION: usize = 16;
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let written: Arc<Mutex<HashMap<String, Written>>> = Arc::default();
    let mut random = Random::seeded();
    let mut acknowledged_in_all = 0u64;
    for cycle in 0..cycles {
        let server = TestServer::start_on(dir.path(), args).await;
        {
            let mut checked = written.lock().expect("not poisoned").clone();
            check_every_acknowledged_write(&server, &mut checked).await;
            *written.lock().expect("not poisoned") = checked;
        }
        // The kill comes after a random count of acknowledged writes, not
        // after a random time: on a busy machine a time can pass before every
        // user was written once, and what the test covers would then depend
        // on the machine's speed. Each connection reports when it has had
        // all its users acknowledged at least once (`covered`), and the
        // kill waits for that too.
        let progress = Arc::new(Progress::default());
        let kill_after = (CONNECTIONS * USERS_PER_CONNECTION) as u64
            + random.below(4 * (CONNECTIONS * USERS_PER_CONNECTION) as u64);
        let mut clients = tokio::task::JoinSet::new();
        for connection in 0..CONNECTIONS {
            let progress = progress.clone();
            let written = written.clone();
            let client = reqwest::Client::new();
            let base = server.base.clone();
            let seed = random.below(u64::MAX) | 1;
            clients.spawn(async move {
                let mut random = Random(seed);
                let mut acknowledged = 0u64;
                for write in 0.. {
                    let user = format!("c{connection}-u{}", write % USERS_PER_CONNECTION);
                    let state = random.below(STATES.len() as u64) as usize;
                    written
                        .lock()
                        .expect("not poisoned")
                        .entry(user.clone())
                        .or_default()
                        .in_flight = Some(state);
                    let (availability, activity) = STATES[state];
                    let answer = client
                        .post(format!("{base}/v1.0/users/{user}/presence/setPresence"))
                        .json(&json!({
                            "sessionId": format!("app{connection}"),
                            "availability": availability,
                            "activity": activity,
                            "expirationDuration": "PT1H",
                        }))
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status() == 200 => {
                            let mut written = written.lock().expect("not poisoned");
                            let entry = written.get_mut(&user).expect("recorded");
                            entry.acknowledged = Some(state);
                            entry.in_flight = None;
                            drop(written);
                            acknowledged += 1;
                            progress.acknowledged(acknowledged == USERS_PER_CONNECTION as u64);
                        }
                        Ok(response) => panic!(
                            "setPresence answered {}: {:?}",
                            response.status(),
                            response.text().await
                        ),
                        // The server was killed: this write was never answered.
                        Err(_) => return acknowledged,
                    }
                }
                acknowledged
            });
        }
        // A generous guard, so that a writer that died makes the test fail
        // instead of hang; reaching it is a failure, not a measurement.
        if tokio::time::timeout(
            Duration::from_secs(120),
            progress.wait_for(CONNECTIONS as u64, kill_after),
        )
        .await
        .is_err()
        {
            panic!(
                "cycle {cycle}: the writers stopped before {kill_after} acknowledged writes: {progress:?}"
            );
        }
        server.kill().await;
        let mut acknowledged = 0;
        while let Some(joined) = clients.join_next().await {
            acknowledged += joined.expect("no client panicked");
        }
        assert!(
            acknowledged > 0,
            "cycle {cycle}: no write was acknowledged before the kill"
        );
        acknowledged_in_all += acknowledged;
    }
    let server = TestServer::start_on(dir.path(), args).await;
    let mut written = written.lock().expect("not poisoned").clone();
    check_every_acknowledged_write(&server, &mut written).await;
    assert_eq!(written.len(), CONNECTIONS * USERS_PER_CONNECTION);
    eprintln!("{acknowledged_in_all} acknowledged writes over {cycles} kills, none lost");
}

#[tokio::test]
async fn a_restart_after_a_downtime_applies_the_fades_and_expiries_that_fell_due() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    // One-second stages: a legacy session fades at 1 s and 2 s and is gone at 3 s.
    let args = ["--clock", "system", "--idle-timeout", "PT1S"];
    let server = TestServer::start_on(dir.path(), &args).await;
    server
        .put(
            "/beta/users/fading/presence/sessions/s1",
            json!({"availability": "Available", "activity": "Available"}),
        )
        .await
        .assert_ok_empty();
    server
        .set_presence("staying", "app", "Busy", "InACall", Some("PT4H"))
        .await
        .assert_ok_empty();
    server
        .post(
            "/v1.0/users/staying/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "in the lab", "contentType": "text"}}}),
        )
        .await
        .assert_ok_empty();
    server
        .set_preferred("staying", "DoNotDisturb", "DoNotDisturb", Some("PT8H"))
        .await
        .assert_ok_empty();
    server
        .put(
            "/_presenced/users/staying/outOfOffice",
            json!({"isOutOfOffice": true, "message": "back Monday"}),
        )
        .await
        .assert_ok_empty();
    let before = server.sequence_number("fading").await;
    let without_context = |mut presence: serde_json::Value| {
        presence["@odata.context"].take();
        presence
    };
    let staying_before = without_context(server.presence("staying").await);
    server.kill().await;

    // Down for longer than the legacy session lives.
    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let server = TestServer::start_on(dir.path(), &args).await;
    assert_eq!(
        server.shown("fading").await,
        ("Offline".to_owned(), "Offline".to_owned())
    );
    let after = server.sequence_number("fading").await;
    assert!(
        after > before,
        "the sequence number went from {before} to {after}: the fades and the expiry \
         that fell due during the downtime must count"
    );
    assert_eq!(
        after, "A00000000000000000004",
        "set, two fades and the expiry"
    );
    let sessions = server.get("/_presenced/users/fading/sessions").await;
    assert_eq!(sessions.status, 200, "{}", sessions.text);
    assert_eq!(sessions.body["sessions"], json!([]), "{}", sessions.text);
    // The start-up tick reclaims the expired session: only `staying` holds one.
    let mut reclaimed = false;
    for _ in 0..200 {
        if gauge(&server.get("/metrics").await.text, "presenced_sessions") == 1.0 {
            reclaimed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        reclaimed,
        "the expired session was not reclaimed after the restart"
    );
    // Everything else came back as it was.
    assert_eq!(
        without_context(server.presence("staying").await),
        staying_before
    );
    // And the tombstone keeps the number after another restart.
    server.kill().await;
    let server = TestServer::start_on(dir.path(), &args).await;
    assert_eq!(server.sequence_number("fading").await, after);
}

#[tokio::test]
async fn a_second_presenced_on_the_same_directory_refuses_to_start() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let first = TestServer::start_on(dir.path(), &[]).await;
    let data_dir = dir.path().to_str().expect("UTF-8");
    let output = run_binary(
        Duration::from_secs(30),
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the second one must not run");
    assert!(
        stderr.contains("another presenced is using the data directory")
            && stderr.contains(data_dir),
        "{stderr}"
    );
    // The first one is unharmed.
    first
        .set_presence("u1", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    // And it reports its commits: one synced batch at least.
    let metrics = first.get("/metrics").await.text;
    assert!(
        gauge(&metrics, "presenced_store_sync_seconds_count") >= 1.0,
        "{metrics}"
    );
    // Each write's wait, recorded through the handle the writer resolved
    // when the store opened, after the recorder was installed.
    assert!(
        gauge(&metrics, "presenced_store_write_seconds_count") >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("presenced_store_batch_writes"),
        "{metrics}"
    );
}

/// Flips bytes in the middle of every table file under `dir`.
fn damage_tables(dir: &Path) -> usize {
    let mut damaged = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .parent()
                .is_some_and(|parent| parent.ends_with("tables"))
            {
                let mut bytes = std::fs::read(&path).expect("readable");
                if bytes.len() > 64 {
                    let middle = bytes.len() / 3;
                    for byte in &mut bytes[middle..middle + 32] {
                        *byte ^= 0x5a;
                    }
                    std::fs::write(&path, bytes).expect("writable");
                    damaged += 1;
                }
            }
        }
    }
    damaged
}

#[tokio::test]
async fn check_reports_a_healthy_directory_and_a_damaged_one_refuses_to_start() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let data_dir = dir.path().to_str().expect("UTF-8").to_owned();
    let mut server = TestServer::start_on(dir.path(), &[]).await;
    for user in 0..50 {
        server
            .set_presence(&format!("u{user}"), "app", "Busy", "InACall", Some("PT4H"))
            .await
            .assert_ok_empty();
    }
    // A clean stop flushes the data into table files.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(server.wait().await.success());

    let output = run_binary(Duration::from_secs(30), &["check", "--data-dir", &data_dir]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("is healthy") && stdout.contains("50 users"),
        "{stdout}"
    );

    assert!(damage_tables(dir.path()) > 0, "no table file to damage");
    let output = run_binary(Duration::from_secs(30), &["check", "--data-dir", &data_dir]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "check must fail: {output:?}");
    assert!(stderr.contains("damaged"), "{stderr}");

    let output = run_binary(
        Duration::from_secs(30),
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it must not serve damaged data");
    assert!(
        stderr.contains("damaged")
            && stderr.contains(&format!("{data_dir}/engine"))
            && stderr.contains("backup")
            && stderr.contains("presenced check"),
        "the message names the file and what to do: {stderr}"
    );
}

#[tokio::test]
async fn check_refuses_a_directory_of_a_newer_format_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let data_dir = dir.path().to_str().expect("UTF-8").to_owned();
    let marker = "presenced embedded store, format 99\n";
    std::fs::write(dir.path().join("FORMAT"), marker).expect("writable");
    for args in [
        vec!["check", "--data-dir", &data_dir],
        vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir],
    ] {
        let output = run_binary(Duration::from_secs(30), &args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains("newer presenced"), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FORMAT")).expect("readable"),
        marker
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_opens_and_the_line_is_printed_only_once_the_store_is_loaded() {
    use presence_core::{
        Command, Duration as ModelDuration, SessionExpiration, SessionId, SessionState, TenantId,
        Timeouts, UserId, UserKey,
    };
    use presence_store::{Durability, EmbeddedStore, Facts};

    // Enough users that loading them takes a while, written straight into a
    // data directory.
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let users = 100_000;
    {
        let store = Arc::new(EmbeddedStore::open(dir.path(), Durability::Relaxed).expect("opens"));
        let now = presence_core::Instant::from_unix_millis(jiff::Timestamp::now().as_millisecond());
        let command = Command::SetPresence {
            session_id: SessionId::parse("app").expect("valid"),
            state: SessionState::BusyInACall,
            expiration: SessionExpiration::new(ModelDuration::from_hours(4)).expect("in range"),
        };
        let mut writers = tokio::task::JoinSet::new();
        for part in 0..8 {
            let (store, command) = (store.clone(), command.clone());
            writers.spawn(async move {
                for user in (part..users).step_by(8) {
                    let key = UserKey::new(
                        TenantId::parse("default").expect("valid"),
                        UserId::parse(&format!("user{user}")).expect("valid"),
                    );
                    store
                        .apply(&key, &command, now, Timeouts::default())
                        .await
                        .expect("store works")
                        .expect("applies");
                }
            });
        }
        while let Some(joined) = writers.join_next().await {
            joined.expect("no panic");
        }
    }

    // A port of the test's choosing, so that it can be tried before
    // presenced prints it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("bound")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let data_dir = dir.path().to_str().expect("a UTF-8 path");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(["serve", "--listen", &listen, "--data-dir", data_dir])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("presenced starts");
    // Until the store is loaded the port is closed; the first request that
    // reaches presenced is served.
    let client = reqwest::Client::new();
    let mut refused = 0;
    let first = loop {
        match client.get(format!("http://{listen}/readyz")).send().await {
            Ok(response) => break response.status().as_u16(),
            Err(error) => {
                assert!(error.is_connect(), "{error}");
                refused += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    assert_eq!(first, 200, "the first answer is ready, never 503");
    assert!(refused > 0, "the port was closed while the store loaded");
    let stdout = child.stdout.take().expect("stdout is piped");
    let line = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout))
        .next_line()
        .await
        .expect("readable")
        .expect("a line");
    assert_eq!(line, format!("presenced listening on http://{listen}"));
    let server = TestServer::attach(child, format!("http://{listen}"));
    assert_eq!(
        server.shown(&format!("user{}", users - 1)).await,
        ("Busy".to_owned(), "InACall".to_owned())
    );
    let metrics = server.get("/metrics").await.text;
    assert_eq!(gauge(&metrics, "presenced_users"), users as f64);
}
