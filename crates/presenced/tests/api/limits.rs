//! The bounds on what clients may hold ("Bounded everything"): connections,
//! the size and time of heads and bodies, streams, users per tenant, file
//! descriptors, and the refusals counted by kind. Each test holds real
//! sockets against the real binary; none measures how long anything took:
//! a client that must be cut off is waited for (with a deadline that only
//! turns a hang into a failure), and what is asserted is who was served,
//! who was cut off, and in what order.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{GUARD, SERVE_MEMORY_MANUAL, TestServer, counter, refusals};

/// One HTTP/1.1 connection written and read by hand, to hold it idle, send
/// half a request, or see it closed.
struct Raw {
    read: tokio::net::tcp::OwnedReadHalf,
    /// `None` once handed to a trickle.
    write: Option<tokio::net::tcp::OwnedWriteHalf>,
    /// What arrived and was not consumed yet.
    pending: Vec<u8>,
}

/// A response read by hand.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        Raw::connect_to(&server.base).await
    }

    async fn connect_to(base: &str) -> Raw {
        let address = base.strip_prefix("http://").expect("an http address");
        let stream = TcpStream::connect(address)
            .await
            .expect("the port accepts connections");
        let (read, write) = stream.into_split();
        Raw {
            read,
            write: Some(write),
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let write = self.write.as_mut().expect("not trickling");
        write.write_all(bytes).await.expect("the request is sent");
    }

    /// From now on sends one space every 100 ms, until the server closes
    /// the connection: a client that never finishes what it started.
    fn trickle(&mut self) {
        let mut write = self.write.take().expect("not trickling already");
        tokio::spawn(async move {
            while write.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    /// Reads more; false when the connection is closed (or reset).
    async fn fill(&mut self) -> bool {
        let mut buffer = [0u8; 8192];
        match tokio::time::timeout(GUARD, self.read.read(&mut buffer)).await {
            Err(_) => panic!("nothing arrived and the connection stayed open for {GUARD:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(read)) => {
                self.pending.extend_from_slice(&buffer[..read]);
                true
            }
        }
    }

    /// The next response head (status, text); `None` if the connection
    /// closes first.
    async fn head(&mut self) -> Option<(u16, String)> {
        loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..end + 4);
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|status| status.parse().ok())
                    .unwrap_or_else(|| panic!("a status line: {head}"));
                return Some((status, head));
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next whole response (with a Content-Length body); `None` if the
    /// connection closes first.
    async fn reply(&mut self) -> Option<RawReply> {
        let (status, head) = self.head().await?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.pending.len() < length {
            assert!(self.fill().await, "the connection closed mid-body");
        }
        let body = String::from_utf8_lossy(&self.pending[..length]).into_owned();
        self.pending.drain(..length);
        Some(RawReply { status, head, body })
    }

    /// Sends a GET and reads its answer.
    async fn get(&mut self, path: &str) -> Option<RawReply> {
        self.send(get(path).as_bytes()).await;
        self.reply().await
    }

    /// Reads until `text` has arrived; false if the connection closes first.
    async fn until(&mut self, text: &str) -> bool {
        loop {
            if find(&self.pending, text.as_bytes()).is_some() {
                return true;
            }
            if !self.fill().await {
                return false;
            }
        }
    }

    /// Waits for the server to close the connection; answers what arrived
    /// before it did.
    async fn closed(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Opens a stream of `users` and reads its head and first event.
    async fn stream(server: &TestServer, users: &str) -> Raw {
        Raw::stream_to(&server.base, users).await
    }

    async fn stream_to(base: &str, users: &str) -> Raw {
        let mut raw = Raw::connect_to(base).await;
        raw.send(
            format!(
                "GET /_presenced/stream?ids={users} HTTP/1.1\r\nHost: presenced\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let (status, head) = raw.head().await.expect("the stream is answered");
        assert_eq!(status, 200, "{head}");
        assert!(raw.until("event: presence").await, "the first presence");
        raw
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: presenced\r\n\r\n")
}

/// Sets `user`'s session through `server`'s own client, and asserts 200.
async fn set(server: &TestServer, user: &str, availability: &str, activity: &str) {
    server
        .set_presence(user, "app", availability, activity, None)
        .await
        .assert_ok_empty();
}

#[tokio::test]
async fn at_the_connection_limit_the_connection_idle_the_longest_makes_room() {
    let server = TestServer::start(&["--max-connections", "3", "--header-timeout", "PT5M"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::connect(&server).await;
        assert_eq!(raw.get("/healthz").await.expect("served").status, 200);
        held.push(raw);
    }
    // Three idle keep-alive connections fill the bound (the helper's own
    // pooled connection, older still, made room for the third). A new
    // client is served, and the one idle the longest is closed for it.
    let mut newcomer = Raw::connect(&server).await;
    assert_eq!(newcomer.get("/healthz").await.expect("served").status, 200);
    let mut oldest = held.remove(0);
    assert_eq!(oldest.closed().await, "", "closed without an answer");
    // The others were idle for less long and stay open.
    for raw in &mut held {
        assert_eq!(raw.get("/healthz").await.expect("still open").status, 200);
    }
    assert_eq!(
        newcomer.get("/healthz").await.expect("still open").status,
        200
    );
}

#[tokio::test]
async fn at_the_connection_limit_with_every_connection_busy_a_new_client_is_refused() {
    let server = TestServer::start(&["--max-connections", "2"]).await;
    set(&server, "alice", "Available", "Available").await;
    // Two streams: each connection has a request in flight for as long as
    // it is open.
    let mut first = Raw::stream(&server, "alice").await;
    let second = Raw::stream(&server, "alice").await;
    let mut refused = Raw::connect(&server).await;
    refused.send(get("/healthz").as_bytes()).await;
    assert_eq!(refused.closed().await, "", "closed at once, unanswered");
    // Once the second stream's client has gone, a new client is let in,
    // and the first stream was never disturbed.
    drop(second);
    // Refused while the server has not yet seen the second client go.
    let reply = set_busy_once_let_in(&server).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        first.until("\"availability\":\"Busy\"").await,
        "the first stream goes on"
    );
    drop(first);
    let metrics = metrics_once_let_in(&server).await;
    assert!(
        counter(
            &metrics,
            "presenced_refusals_total{kind=\"connection_refused\"}"
        ) >= 1.0
    );
}

/// Sets alice Busy on a connection of its own, connecting again until the
/// server, full until a client of its leaves, lets one in; its answer.
async fn set_busy_once_let_in(server: &TestServer) -> RawReply {
    loop {
        let mut writer = Raw::connect(server).await;
        writer
            .send(&post(
                "/v1.0/users/alice/presence/setPresence",
                &json!({"sessionId": "app", "availability": "Busy", "activity": "InACall"}),
            ))
            .await;
        if let Some(reply) = writer.reply().await {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/metrics`, asked again until the server lets the client in.
async fn metrics_once_let_in(server: &TestServer) -> String {
    loop {
        if let Ok(reply) = server
            .try_send(server.client().get(server.url("/metrics")))
            .await
        {
            return reply.text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A POST of `body` as JSON, by hand.
fn post(path: &str, body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: presenced\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn slow_senders_are_cut_off_while_a_fast_client_is_served() {
    let server = TestServer::start(&["--header-timeout", "PT2S", "--body-timeout", "PT2S"]).await;
    // A head trickled a byte at a time, and a body likewise: neither ever
    // completes.
    let mut slow_head = Raw::connect(&server).await;
    slow_head
        .send(b"GET /healthz HTTP/1.1\r\nHost: presenced\r\nX-Slow: ")
        .await;
    slow_head.trickle();
    let mut slow_body = Raw::connect(&server).await;
    slow_body
        .send(
            b"POST /v1.0/users/bob/presence/setPresence HTTP/1.1\r\nHost: presenced\r\n\
              Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"sessionId\":",
        )
        .await;
    slow_body.trickle();
    // One that connects and says nothing, and a keep-alive connection that
    // was answered and then sits idle.
    let mut silent = Raw::connect(&server).await;
    let mut idle = Raw::connect(&server).await;
    assert_eq!(idle.get("/healthz").await.expect("served").status, 200);
    // Beside them, a fast client writes and reads.
    set(&server, "alice", "Busy", "InACall").await;
    assert_eq!(server.shown("alice").await.0, "Busy");
    // The slow head is cut off without an answer; the slow body with a 408
    // in the envelope, and then its connection is closed.
    assert_eq!(slow_head.closed().await, "", "a slow head gets no answer");
    let reply = slow_body.reply().await.expect("a slow body is answered");
    assert_eq!(reply.status, 408, "{reply:?}");
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(body["error"]["code"], "RequestTimeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("--body-timeout")),
        "{body}"
    );
    assert!(
        reply
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        reply.head
    );
    assert_eq!(slow_body.closed().await, "", "then closed");
    assert_eq!(silent.closed().await, "", "a silent client is cut off");
    assert_eq!(
        idle.closed().await,
        "",
        "an idle keep-alive connection ends"
    );
    // Nothing of the slow write was applied; the fast client is still served.
    assert_eq!(server.shown("bob").await.0, "Offline");
    assert_eq!(server.shown("alice").await.0, "Busy");
    assert_eq!(
        refusals(&server, "timeout", 3.0).await,
        3.0,
        "the slow head, the slow body and the silent client; not the keep-alive connection that expired"
    );
}

#[tokio::test]
async fn a_head_larger_than_the_bound_is_answered_431() {
    let server = TestServer::start(&["--max-header-bytes", "4096"]).await;
    let within = "x".repeat(3_000);
    let reply = server
        .send(
            server
                .client()
                .get(server.url("/healthz"))
                .header("x-padding", &within),
        )
        .await;
    assert_eq!(reply.status, 200, "a head within the bound is served");
    let beyond = "x".repeat(5_000);
    let reply = server
        .send(
            server
                .client()
                .get(server.url("/healthz"))
                .header("x-padding", &beyond),
        )
        .await;
    assert_eq!(reply.status, 431, "{}", reply.text);
    assert_eq!(refusals(&server, "header_too_large", 1.0).await, 1.0);
}

#[tokio::test]
async fn a_body_larger_than_the_bound_is_answered_413_and_writes_nothing() {
    let server = TestServer::start(&["--max-body-bytes", "2048"]).await;
    let long = "x".repeat(3_000);
    let reply = server
        .post(
            "/v1.0/users/alice/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": long, "contentType": "text"}}}),
        )
        .await;
    let message = reply.assert_error(413, "RequestEntityTooLarge");
    assert!(message.contains("2048"), "{message}");
    assert!(server.presence("alice").await["statusMessage"].is_null());
    let short = "x".repeat(1_000);
    server
        .post(
            "/v1.0/users/alice/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": short, "contentType": "text"}}}),
        )
        .await
        .assert_ok_empty();
    assert!(refusals(&server, "too_large", 1.0).await >= 1.0);
}

#[tokio::test]
async fn streams_beyond_the_bound_are_answered_503_and_the_open_ones_go_on() {
    let server = TestServer::start(&["--max-streams", "2"]).await;
    set(&server, "alice", "Available", "Available").await;
    let mut first = Raw::stream(&server, "alice").await;
    let mut second = Raw::stream(&server, "alice").await;
    let reply = server
        .try_send(
            server
                .client()
                .get(server.url("/_presenced/stream?ids=alice")),
        )
        .await
        .expect("answered");
    let message = reply.assert_error(503, "ServiceUnavailable");
    assert!(message.contains("--max-streams"), "{message}");
    assert!(
        reply.headers.contains_key("retry-after"),
        "{:?}",
        reply.headers
    );
    set(&server, "alice", "Busy", "InACall").await;
    for stream in [&mut first, &mut second] {
        assert!(
            stream.until("\"availability\":\"Busy\"").await,
            "open streams go on"
        );
    }
    // A stream that ends gives its place to a new one (once the server has
    // seen its client go).
    drop(first);
    loop {
        let mut raw = Raw::connect(&server).await;
        raw.send(get("/_presenced/stream?ids=alice").as_bytes())
            .await;
        if raw.head().await.is_some_and(|(status, _)| status == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refusals(&server, "streams_full", 1.0).await >= 1.0);
}

#[tokio::test]
async fn a_tenant_at_its_bound_gets_no_new_user_and_its_users_go_on() {
    let server = TestServer::start(&["--max-users-per-tenant", "2"]).await;
    set(&server, "u1", "Available", "Available").await;
    set(&server, "u2", "Available", "Available").await;
    let reply = server
        .set_presence("u3", "app", "Busy", "InACall", None)
        .await;
    let message = reply.assert_error(403, "quotaLimitReached");
    assert!(message.contains("--max-users-per-tenant"), "{message}");
    assert!(message.contains('2'), "{message}");
    // Any write that would add the user is refused the same way.
    server
        .post(
            "/v1.0/users/u3/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "hi", "contentType": "text"}}}),
        )
        .await
        .assert_error(403, "quotaLimitReached");
    // Nothing of u3 was written.
    let presence = server.presence("u3").await;
    assert_eq!(presence["availability"], "Offline", "{presence}");
    assert!(presence["statusMessage"].is_null(), "{presence}");
    let sessions = server.get("/_presenced/users/u3/sessions").await;
    assert_eq!(sessions.status, 200, "{}", sessions.text);
    assert_eq!(sessions.body["sessions"], json!([]), "{}", sessions.text);
    // The tenant's users are written as before, and reads of anyone work.
    set(&server, "u1", "Busy", "InACall").await;
    server.clear_presence("u2", "app").await.assert_ok_empty();
    assert_eq!(server.shown("u1").await.0, "Busy");
    assert_eq!(refusals(&server, "quota", 2.0).await, 2.0);
    assert_eq!(
        refusals(&server, "forbidden", 0.0).await,
        0.0,
        "a quota is its own kind"
    );
}

#[tokio::test]
async fn the_users_of_a_tenant_are_counted_across_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = TestServer::start_on(dir.path(), &[]).await;
    set(&server, "u1", "Available", "Available").await;
    set(&server, "u2", "Available", "Available").await;
    server.kill().await;
    let server = TestServer::start_on(dir.path(), &["--max-users-per-tenant", "2"]).await;
    server
        .set_presence("u3", "app", "Available", "Available", None)
        .await
        .assert_error(403, "quotaLimitReached");
    set(&server, "u1", "Busy", "InACall").await;
}

/// The descriptors process `pid` holds open.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors are listed")
        .count()
}

/// The next client served, of those waiting.
async fn next(arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<Raw>) -> Raw {
    tokio::time::timeout(GUARD, arrivals.recv())
        .await
        .expect("a waiting client is served once a descriptor is free")
        .expect("a stream")
}

/// The open-file limit the next two tests start presenced with.
const DESCRIPTORS: usize = 64;

async fn start_with_few_descriptors() -> TestServer {
    let limit = format!("--nofile={DESCRIPTORS}:{DESCRIPTORS}");
    TestServer::start_through(&["prlimit", &limit], &SERVE_MEMORY_MANUAL).await
}

#[tokio::test]
async fn out_of_file_descriptors_the_connection_idle_the_longest_makes_room() {
    let server = start_with_few_descriptors().await;
    // Idle keep-alive connections take every descriptor left.
    let mut held = Vec::new();
    while descriptors(server.pid()) < DESCRIPTORS {
        let mut raw = Raw::connect(&server).await;
        assert_eq!(raw.get("/healthz").await.expect("served").status, 200);
        held.push(raw);
    }
    // Each new client is served; the connections idle the longest (the
    // helper's own, then the first held) are closed to make room.
    for _ in 0..3 {
        let mut newcomer = Raw::connect(&server).await;
        assert_eq!(newcomer.get("/healthz").await.expect("served").status, 200);
        drop(newcomer);
    }
    assert_eq!(held[0].closed().await, "", "the oldest idle one is closed");
    let newest = held.last_mut().expect("held");
    assert_eq!(
        newest.get("/healthz").await.expect("still open").status,
        200
    );
    let metrics = server.metrics().await;
    assert!(
        counter(
            &metrics,
            "presenced_http_accept_failures_total{cause=\"out_of_descriptors\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn out_of_file_descriptors_with_every_connection_busy_new_clients_wait_until_one_closes() {
    let server = start_with_few_descriptors().await;
    set(&server, "alice", "Available", "Available").await;
    // More streams (a request in flight each) than there are descriptors
    // left: those that do not fit wait in the listen backlog, since
    // presenced can accept nothing and closes nothing that is busy.
    let free = DESCRIPTORS - descriptors(server.pid());
    let clients = free + 3;
    let (served, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..clients {
        let served = served.clone();
        let base = server.base.clone();
        tokio::spawn(async move {
            let _ = served.send(Raw::stream_to(&base, "alice").await);
        });
    }
    // Those that surely fit are served at once; then each stream that ends
    // lets one more client in, until every one of them has been served.
    let mut open = Vec::new();
    for _ in 0..free - 2 {
        open.push(next(&mut arrivals).await);
    }
    for _ in free - 2..clients {
        drop(open.remove(0));
        open.push(next(&mut arrivals).await);
    }
    // The streams still open carry a change made now.
    drop(open.remove(0));
    let reply = set_busy_once_let_in(&server).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for stream in &mut open {
        assert!(
            stream.until("\"availability\":\"Busy\"").await,
            "every stream went on"
        );
    }
    drop(open);
    let metrics = metrics_once_let_in(&server).await;
    assert!(
        counter(
            &metrics,
            "presenced_http_accept_failures_total{cause=\"out_of_descriptors\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn refusals_are_counted_by_kind_and_never_by_tenant_or_user() {
    const SECRET: &str = "a-shared-secret-of-at-least-32-bytes";
    let server = TestServer::start(&["--auth", "hs256", "--jwt-secret", SECRET]).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args([
            "token", "--tenant", "contoso", "--user", "bob", "--app", "app",
        ])
        .args(["--secret", SECRET])
        .output()
        .expect("presenced token runs");
    assert!(output.status.success(), "{output:?}");
    let bob = String::from_utf8(output.stdout)
        .expect("text")
        .trim()
        .to_owned();
    let action = |user: &str| server.url(&format!("/v1.0/users/{user}/presence/setPresence"));
    let body = json!({"sessionId": "app", "availability": "Busy", "activity": "InACall"});
    // No token: 401. Bob writing alice: 403. Bob writing himself as text: 415.
    let reply = server
        .send(server.client().post(action("bob")).json(&body))
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    let reply = server
        .send(
            server
                .client()
                .post(action("alice"))
                .bearer_auth(&bob)
                .json(&body),
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    let reply = server
        .send(
            server
                .client()
                .post(action("bob"))
                .bearer_auth(&bob)
                .header("content-type", "text/plain")
                .body(body.to_string()),
        )
        .await;
    assert_eq!(reply.status, 415, "{}", reply.text);
    let reply = server
        .send(
            server
                .client()
                .post(action("bob"))
                .bearer_auth(&bob)
                .json(&body),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let metrics = server.metrics().await;
    for (kind, count) in [
        ("unauthorized", 1.0),
        ("forbidden", 1.0),
        ("unsupported_media_type", 1.0),
        ("too_large", 0.0),
        ("throttled", 0.0),
        ("connection_refused", 0.0),
    ] {
        assert_eq!(
            counter(
                &metrics,
                &format!("presenced_refusals_total{{kind=\"{kind}\"}}")
            ),
            count,
            "{kind}: {metrics}"
        );
    }
    for name in ["contoso", "bob", "alice"] {
        assert!(!metrics.contains(name), "{name} in the metrics:\n{metrics}");
    }
}

#[tokio::test]
async fn a_client_that_reads_none_of_its_answers_is_cut_off_while_others_are_served() {
    let server = TestServer::start(&["--send-timeout", "PT1S"]).await;
    let ids: Vec<String> = (0..650)
        .map(|n| format!("a-user-with-a-long-id-{n:04}"))
        .collect();
    let request = post(
        "/v1.0/communications/getPresencesByUserId",
        &json!({ "ids": ids }),
    );
    // Batch reads sent one after another for as long as the server takes
    // them, and nothing read: the answers fill the sockets' buffers, the
    // server can write no more, and so reads no more requests either.
    let mut stalled = Raw::connect(&server).await;
    let mut write = stalled.write.take().expect("a write half");
    let writer = tokio::spawn(async move {
        let mut sent = 0_u64;
        while write.write_all(&request).await.is_ok() {
            sent += 1;
        }
        sent
    });
    // Beside it, a fast client is served.
    set(&server, "alice", "Busy", "InACall").await;
    assert_eq!(server.shown("alice").await.0, "Busy");
    // The server cuts the stalled client off: its writes fail.
    let sent = tokio::time::timeout(GUARD, writer)
        .await
        .expect("the server closes the connection of a client that reads nothing")
        .expect("the writer");
    assert!(sent > 0);
    drop(stalled);
    assert!(refusals(&server, "timeout", 1.0).await >= 1.0);
    assert_eq!(server.shown("alice").await.0, "Busy");
}
