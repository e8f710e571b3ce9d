//! Many presenced nodes over one real Redis (`--store redis`): three real
//! `presenced` processes over a real `redis-server` (standalone, or a Redis
//! Cluster of three primaries with a replica each), started by
//! `presenced-testkit`. Each test asserts what happened, never how fast:
//! every wait polls with a generous deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use presenced_testkit::{RedisCluster, RedisServer};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestServer, counter, gauge, run_binary};
use crate::receiver::Receiver;

/// How long any wait of these tests may take before it fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// The bound on every request of the outage tests: a request that takes
/// longer hangs.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions of a keyspace (`--redis-partitions` default).
const PARTITIONS: f64 = 64.0;

/// States a single session can be set to, each shown as it is set (with a
/// long expiration and before its first fade).
const STATES: [(&str, &str); 4] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// Starts three nodes over `urls` with `extra` arguments: the first alone
/// (it records the shared settings), then the other two together.
async fn three_nodes(urls: &[String], extra: &[&str]) -> Vec<TestServer> {
    let first = TestServer::start_node(urls, extra).await;
    let (second, third) = tokio::join!(
        TestServer::start_node(urls, extra),
        TestServer::start_node(urls, extra)
    );
    vec![first, second, third]
}

/// Polls `check` every 50 ms until it returns `Some`, failing with `what`
/// (and the last state `check` described) after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "waited {DEADLINE:?} for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn owned(node: &TestServer) -> f64 {
    gauge(&node.metrics().await, "presenced_partitions_owned")
}

/// Waits until `nodes` together own every partition, each some.
async fn wait_for_shares(nodes: &[&TestServer]) {
    eventually("the nodes to share every partition", || async {
        let mut shares = Vec::new();
        for node in nodes {
            shares.push(owned(node).await);
        }
        let sum: f64 = shares.iter().sum();
        if sum == PARTITIONS && shares.iter().all(|share| *share > 0.0) {
            Ok(())
        } else {
            Err(format!("partitions owned: {shares:?}"))
        }
    })
    .await;
}

/// The clock's now on `node`: its manual clock's, or the wall clock's.
async fn node_now(node: &TestServer) -> jiff::Timestamp {
    let reply = node.get("/_presenced/clock").await;
    match reply.body["now"].as_str() {
        Some(now) => now.parse().expect("an RFC 3339 instant"),
        None => jiff::Timestamp::now(),
    }
}

/// Subscribes `receiver`'s `/notify` to `users` through `node`; returns the
/// subscription's id.
async fn subscribe(node: &TestServer, receiver: &Receiver, users: &[String]) -> String {
    let ids: Vec<String> = users.iter().map(|user| format!("'{user}'")).collect();
    let expiration = node_now(node).await + jiff::SignedDuration::from_mins(45);
    let reply = node
        .post(
            "/v1.0/subscriptions",
            json!({
                "changeType": "updated",
                "notificationUrl": receiver.url("/notify"),
                "resource": format!("/communications/presences?$filter=id in ({})", ids.join(",")),
                "expirationDateTime": crate::helpers::graph_instant(expiration),
                "clientState": "many nodes",
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["id"].as_str().expect("an id").to_owned()
}

/// (subscription, user, sequenceNumber) of every item at `/notify`, in the
/// order they arrived.
fn notified(receiver: &Receiver) -> Vec<(String, String, String)> {
    receiver
        .items()
        .iter()
        .filter(|received| received.path == "/notify")
        .map(|received| {
            let item = &received.item;
            let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            (
                text(&item["subscriptionId"]),
                text(&item["resourceData"]["id"]),
                text(&item["resourceData"]["sequenceNumber"]),
            )
        })
        .collect()
}

/// Asserts that no (subscription, user, sequenceNumber) arrived twice and
/// that each user's notifications arrived in order.
#[track_caller]
fn assert_once_in_order(items: &[(String, String, String)]) {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for (subscription, user, sequence) in items {
        assert!(
            seen.insert((subscription, user, sequence)),
            "notified twice: {subscription} {user} {sequence}; all: {items:#?}"
        );
        let previous = last.insert((subscription, user), sequence);
        assert!(
            previous.is_none_or(|previous| previous < sequence.as_str()),
            "{user}'s notifications out of order: {previous:?} then {sequence}; all: {items:#?}"
        );
    }
}

/// The distinct sequence numbers notified for each user.
fn sequences_by_user(items: &[(String, String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, user, sequence) in items {
        by_user
            .entry(user.clone())
            .or_default()
            .insert(sequence.clone());
    }
    by_user
}

/// One setPresence that must answer 200.
async fn set(node: &TestServer, user: &str, state: (&str, &str)) {
    node.set_presence(user, "app", state.0, state.1, Some("PT1H"))
        .await
        .assert_ok_empty();
}

/// An SSE stream being read: its events (id, data) one at a time.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// A `retry:` field was received.
    retry_hint: bool,
    /// The last `id:` received, on any event (a browser's `lastEventId`).
    last_id: Option<String>,
    ended: bool,
}

impl EventStream {
    async fn open(node: &TestServer, path: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = node.client().get(node.url(path));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("the stream opens");
        assert_eq!(response.status(), 200, "the stream opens");
        EventStream {
            response,
            buffer: String::new(),
            retry_hint: false,
            last_id: None,
            ended: false,
        }
    }

    /// The next event, or `None` when none came within `limit` or the
    /// stream ended.
    async fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = value.trim().to_owned();
                        self.last_id = Some(id.clone());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    } else if line.starts_with("retry:") {
                        self.retry_hint = true;
                    }
                }
                if !data.is_empty() {
                    return Some((id, serde_json::from_str(&data).expect("JSON data")));
                }
            }
            if self.ended {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self
                    .buffer
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// Exactly the next `count` events (fails after [`DEADLINE`]).
    async fn take(&mut self, count: usize) -> Vec<(String, Value)> {
        let deadline = Instant::now() + DEADLINE;
        let mut events = Vec::new();
        while events.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(event) => events.push(event),
                None => panic!("expected {count} events, got {}: {events:#?}", events.len()),
            }
        }
        events
    }

    /// Whatever arrives until nothing has for `quiet`.
    async fn rest(&mut self, quiet: Duration) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        while let Some(event) = self.next(quiet).await {
            events.push(event);
        }
        events
    }
}

/// (user, sequenceNumber) of each event, grouped by user in arrival order.
fn by_user(events: &[(String, Value)]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, data) in events {
        grouped
            .entry(data["id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(
                data["sequenceNumber"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
    }
    grouped
}

fn users(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}{n:02}")).collect()
}

#[tokio::test]
async fn a_write_answered_on_one_node_is_read_at_once_on_the_others() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&[redis.url()], &["--auth", "none"]).await;
    for round in 0..2 {
        for n in 0..30 {
            let user = format!("ryw{n:02}");
            let writer = (n + round) % 3;
            let state = STATES[(n + round) % STATES.len()];
            set(&nodes[writer], &user, state).await;
            for (index, node) in nodes.iter().enumerate() {
                assert_eq!(
                    node.shown(&user).await,
                    (state.0.to_owned(), state.1.to_owned()),
                    "{user} written through node {writer}, read through node {index}"
                );
            }
        }
    }
}

#[tokio::test]
async fn concurrent_sessions_set_through_three_nodes_are_all_held() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&[redis.url()], &["--auth", "none"]).await;
    let (user_count, session_count) = (20, 12);
    let writes = (0..user_count).flat_map(|u| (0..session_count).map(move |s| (u, s)));
    let replies = futures_util::future::join_all(writes.map(|(u, s)| {
        let node = &nodes[(u + s) % 3];
        async move {
            let state = STATES[s % STATES.len()];
            let reply = node
                .set_presence(
                    &format!("together{u:02}"),
                    &format!("app-{s:02}"),
                    state.0,
                    state.1,
                    Some("PT1H"),
                )
                .await;
            (u, s, reply)
        }
    }))
    .await;
    for (u, s, reply) in &replies {
        assert_eq!(reply.status, 200, "user {u} session {s}: {}", reply.text);
    }
    let expected: BTreeSet<String> = (0..session_count).map(|s| format!("app-{s:02}")).collect();
    for u in 0..user_count {
        for (index, node) in nodes.iter().enumerate() {
            let reply = node
                .get(&format!("/_presenced/users/together{u:02}/sessions"))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let held: BTreeSet<String> = reply.body["sessions"]
                .as_array()
                .expect("sessions")
                .iter()
                .map(|session| session["sessionId"].as_str().unwrap_or_default().to_owned())
                .collect();
            assert_eq!(held, expected, "together{u:02} read through node {index}");
        }
    }
}

#[tokio::test]
async fn the_manual_clock_is_one_clock_for_every_node() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&[redis.url()], &["--auth", "none", "--clock", "manual"]).await;
    set(&nodes[0], "clocked", ("Available", "Available")).await;
    nodes[1].advance("PT5M").await;
    assert_eq!(
        nodes[2].shown("clocked").await,
        ("Available".to_owned(), "AvailableInactive".to_owned()),
        "the fade B's advance made due, read through C"
    );
    let nows = [
        nodes[0].now().await,
        nodes[1].now().await,
        nodes[2].now().await,
    ];
    assert!(nows.iter().all(|now| *now == nows[0]), "{nows:?}");
    nodes[2].advance("PT5M").await;
    assert_eq!(
        nodes[0].shown("clocked").await,
        ("Away".to_owned(), "Away".to_owned()),
        "the fade C's advance made due, read through A"
    );
    assert_eq!(
        nodes[1].now().await,
        nows[0] + jiff::SignedDuration::from_mins(5)
    );
}

const SECRET: &str = "the hs256 secret of the many-nodes tests, 32+ bytes";
const APP: &str = "5d1f4c8e-0b6a-4d1e-9a43-6f0c2b7e8a91";

fn app_token(tenant: &str) -> String {
    crate::helpers::signed_token(SECRET, tenant, APP, None, &["Presence.ReadWrite.All"])
}

async fn as_token(
    node: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = node
        .client()
        .request(method, node.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    node.send(request).await
}

async fn read(node: &TestServer, token: &str, path: &str) -> Reply {
    as_token(node, reqwest::Method::GET, path, token, None).await
}

async fn set_as(node: &TestServer, token: &str, availability: &str, activity: &str) {
    let body = json!({"sessionId": APP, "availability": availability, "activity": activity, "expirationDuration": "PT1H"});
    as_token(
        node,
        reqwest::Method::POST,
        "/v1.0/users/alice/presence/setPresence",
        token,
        Some(body),
    )
    .await
    .assert_ok_empty();
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_presence_through_any_node() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&[redis.url()], &["--auth", "hs256", "--jwt-secret", SECRET]).await;
    let (x, y) = (app_token("tenant-x"), app_token("tenant-y"));
    set_as(&nodes[0], &x, "Busy", "InACall").await;

    for (index, node) in nodes.iter().enumerate() {
        let as_x = read(node, &x, "/v1.0/users/alice/presence").await;
        assert_eq!(
            as_x.body["availability"], "Busy",
            "node {index}: {}",
            as_x.text
        );
        let as_y = read(node, &y, "/v1.0/users/alice/presence").await;
        assert_eq!(as_y.status, 200, "node {index}: {}", as_y.text);
        assert_eq!(
            as_y.body["availability"], "Offline",
            "node {index}: {}",
            as_y.text
        );
        let sessions = read(node, &y, "/_presenced/users/alice/sessions").await;
        assert_eq!(
            sessions.body["sessions"],
            json!([]),
            "node {index}: {}",
            sessions.text
        );
    }
    // Tenant y's own write through C lands in y only.
    set_as(&nodes[2], &y, "Away", "Away").await;
    let as_x = read(&nodes[1], &x, "/v1.0/users/alice/presence").await;
    assert_eq!(as_x.body["availability"], "Busy", "{}", as_x.text);
    let as_y = read(&nodes[0], &y, "/v1.0/users/alice/presence").await;
    assert_eq!(as_y.body["availability"], "Away", "{}", as_y.text);
}

/// Changes each of `users` `times` times, each change through the next of
/// `via` in turn, to a state other than the user's last; reads the
/// sequence number each change got (through another node) and appends
/// (user, sequenceNumber) to `made`.
async fn change(
    nodes: &[TestServer],
    via: &[usize],
    users: &[String],
    times: usize,
    turns: &mut BTreeMap<String, usize>,
    made: &mut Vec<(String, String)>,
) {
    let mut step = 0;
    for _ in 0..times {
        for user in users {
            let turn = turns.entry(user.clone()).or_default();
            *turn += 1;
            let writer = via[step % via.len()];
            step += 1;
            set(&nodes[writer], user, STATES[*turn % STATES.len()]).await;
            let sequence = nodes[(writer + 1) % nodes.len()]
                .sequence_number(user)
                .await;
            made.push((user.clone(), sequence));
        }
    }
}

fn grouped(made: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, sequence) in made {
        grouped
            .entry(user.clone())
            .or_default()
            .push(sequence.clone());
    }
    grouped
}

#[tokio::test]
async fn subscriptions_and_streams_see_changes_made_through_every_node_once() {
    let redis = RedisServer::start();
    let nodes = three_nodes(&[redis.url()], &["--auth", "none", "--clock", "manual"]).await;
    wait_for_shares(&nodes.iter().collect::<Vec<_>>()).await;
    let receiver = Receiver::start().await;
    let watched = users("sub", 4);
    let subscription = subscribe(&nodes[0], &receiver, &watched).await;
    let stream_path = format!("/_presenced/stream?ids={}", watched.join(","));
    let mut on_c = EventStream::open(&nodes[2], &stream_path, None).await;
    let snapshot = on_c.take(watched.len()).await;
    assert_eq!(
        by_user(&snapshot).keys().cloned().collect::<Vec<_>>(),
        watched,
        "a new stream starts with each user's current presence"
    );

    let (mut turns, mut made) = (BTreeMap::new(), Vec::new());
    // Through B and C, then through A and B.
    change(&nodes, &[1, 2], &watched, 3, &mut turns, &mut made).await;
    change(&nodes, &[0, 1], &watched, 2, &mut turns, &mut made).await;
    let seen = on_c.take(made.len()).await;
    let extra = on_c.rest(Duration::from_secs(1)).await;
    assert!(extra.is_empty(), "more events than changes: {extra:#?}");
    assert_eq!(
        by_user(&seen),
        grouped(&made),
        "C's stream shows every change made through A, B and C, once, in each user's order"
    );

    // Resumed on B from the last event C sent.
    let last_id = seen.last().map(|(id, _)| id.clone()).expect("an id");
    drop(on_c);
    let before_resume = made.len();
    change(&nodes, &[0, 2], &watched, 2, &mut turns, &mut made).await;
    let mut on_b = EventStream::open(&nodes[1], &stream_path, Some(&last_id)).await;
    let resumed = on_b.take(made.len() - before_resume).await;
    let extra = on_b.rest(Duration::from_secs(1)).await;
    assert!(
        extra.is_empty(),
        "more events than changes after the cursor: {extra:#?}"
    );
    assert_eq!(
        by_user(&resumed),
        grouped(&made[before_resume..]),
        "B resumes exactly after C's last event: no snapshot, nothing twice"
    );

    // The webhooks: every change once, in each user's order.
    eventually("every change to be notified", || async {
        let items = notified(&receiver);
        if items.len() >= made.len() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} notified: {items:#?}",
                items.len(),
                made.len()
            ))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let items = notified(&receiver);
    assert_once_in_order(&items);
    let expected: BTreeSet<(String, String, String)> = made
        .iter()
        .map(|(user, sequence)| (subscription.clone(), user.clone(), sequence.clone()))
        .collect();
    let got: BTreeSet<(String, String, String)> = items.iter().cloned().collect();
    assert_eq!(got, expected, "exactly the changes made, each once");
    assert_eq!(items.len(), made.len(), "{items:#?}");
}

/// The sequence number each of `users` shows through `node` once it shows
/// `availability`.
async fn once_shown(
    node: &TestServer,
    users: &[String],
    availability: &str,
) -> BTreeMap<String, String> {
    let mut sequences = BTreeMap::new();
    for user in users {
        let presence = eventually(&format!("{user} to show {availability}"), || async {
            let presence = node.presence(user).await;
            if presence["availability"] == availability {
                Ok(presence)
            } else {
                Err(presence.to_string())
            }
        })
        .await;
        sequences.insert(
            user.clone(),
            presence["sequenceNumber"]
                .as_str()
                .expect("a sequence")
                .to_owned(),
        );
    }
    sequences
}

/// Waits until, for each user, every sequence number from `first` to
/// `last` (its set and its two fades: three changes) has been notified.
async fn wait_for_every_change(
    receiver: &Receiver,
    first: &BTreeMap<String, String>,
    last: &BTreeMap<String, String>,
) {
    eventually("every set and fade to be notified", || async {
        let by_user = sequences_by_user(&notified(receiver));
        for (user, first) in first {
            let last = &last[user];
            let theirs: Vec<&String> = by_user
                .get(user)
                .map(|all| all.range(first.clone()..=last.clone()).collect())
                .unwrap_or_default();
            if theirs.len() < 3 || theirs.first() != Some(&first) || theirs.last() != Some(&last) {
                return Err(format!("{user}: {first}..={last}, notified {theirs:?}"));
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_killed_nodes_fades_are_notified_by_the_nodes_that_take_its_partitions() {
    let redis = RedisServer::start();
    let args = [
        "--auth",
        "none",
        "--redis-lease",
        "PT1S",
        "--idle-timeout",
        "PT3S",
    ];
    let mut nodes = three_nodes(&[redis.url()], &args).await;
    wait_for_shares(&nodes.iter().collect::<Vec<_>>()).await;
    let receiver = Receiver::start().await;
    // 40 users over 64 partitions: each node owns some of theirs.
    let watched = users("kill", 40);
    subscribe(&nodes[0], &receiver, &watched).await;
    for (n, user) in watched.iter().enumerate() {
        set(&nodes[n % 3], user, ("Available", "Available")).await;
    }
    let first = once_shown(&nodes[0], &watched, "Available").await;
    let victim = nodes.pop().expect("three nodes");
    assert!(owned(&victim).await > 0.0, "the victim owns partitions");
    victim.kill().await;
    wait_for_shares(&[&nodes[0], &nodes[1]]).await;
    let last = once_shown(&nodes[1], &watched, "Away").await;
    wait_for_every_change(&receiver, &first, &last).await;
    assert_eq!(owned(&nodes[0]).await + owned(&nodes[1]).await, PARTITIONS);
}

#[tokio::test]
async fn a_node_paused_past_its_lease_is_fenced_and_nothing_is_notified_twice_or_lost() {
    let redis = RedisServer::start();
    let args = [
        "--auth",
        "none",
        "--redis-lease",
        "PT1S",
        "--idle-timeout",
        "PT5S",
    ];
    let nodes = three_nodes(&[redis.url()], &args).await;
    wait_for_shares(&nodes.iter().collect::<Vec<_>>()).await;
    let receiver = Receiver::start().await;
    let watched = users("pause", 40);
    let subscription = subscribe(&nodes[0], &receiver, &watched).await;
    for (n, user) in watched.iter().enumerate() {
        set(&nodes[n % 3], user, ("Available", "Available")).await;
    }
    let first = once_shown(&nodes[0], &watched, "Available").await;
    // Steady state before the pause: every set notified (and acknowledged).
    eventually("every set to be notified", || async {
        let by_user = sequences_by_user(&notified(&receiver));
        let missing: Vec<&String> = first
            .iter()
            .filter(|(user, sequence)| !by_user.get(*user).is_some_and(|s| s.contains(*sequence)))
            .map(|(user, _)| user)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not yet: {missing:?}"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = &nodes[2];
    let before = paused.metrics().await;
    assert!(gauge(&before, "presenced_partitions_owned") > 0.0);
    // Its users' fades (the second, Away, at least) are still due.
    for user in &watched {
        assert_eq!(
            nodes[0].presence(user).await["activity"],
            "Available",
            "the pause must come before {user}'s fades are done; the machine is too slow for this test"
        );
    }
    paused.signal("STOP");
    let stopped = Instant::now();
    let result = async {
        wait_for_shares(&[&nodes[0], &nodes[1]]).await;
        let last = once_shown(&nodes[1], &watched, "Away").await;
        wait_for_every_change(&receiver, &first, &last).await;
        last
    }
    .await;
    paused.signal("CONT");
    let continued = Instant::now();
    let last = result;
    let moved = |metrics: &str| {
        counter(metrics, "presenced_redis_fenced_total")
            + counter(metrics, "presenced_lease_changes_total{change=\"lost\"}")
    };
    eventually("the paused node to find its leases taken", || async {
        let after = paused.metrics().await;
        if moved(&after) > moved(&before) {
            Ok(())
        } else {
            Err(after
                .lines()
                .filter(|line| line.contains("fenced") || line.contains("lease_changes"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    })
    .await;
    wait_for_shares(&nodes.iter().collect::<Vec<_>>()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let items = notified(&receiver);
    let arrivals: Vec<String> = receiver
        .items()
        .iter()
        .filter(|received| received.path == "/notify")
        .map(|received| {
            let offset = |mark: Instant| {
                if received.at >= mark {
                    format!("+{:?}", received.at - mark)
                } else {
                    format!("-{:?}", mark - received.at)
                }
            };
            format!(
                "{} {} at STOP{} CONT{}",
                received.item["resourceData"]["id"],
                received.item["resourceData"]["sequenceNumber"],
                offset(stopped),
                offset(continued)
            )
        })
        .collect();
    let distinct: BTreeSet<&(String, String, String)> = items.iter().collect();
    assert_eq!(
        distinct.len(),
        items.len(),
        "a notification came twice; arrivals: {arrivals:#?}"
    );
    assert_once_in_order(&items);
    let by_user = sequences_by_user(&items);
    for user in &watched {
        let theirs = &by_user[user];
        assert_eq!(
            theirs.len(),
            3,
            "{user}: the set and two fades, {}..={}; got {theirs:?}",
            first[user],
            last[user]
        );
        assert!(
            theirs.contains(&first[user]) && theirs.contains(&last[user]),
            "{theirs:?}"
        );
    }
    assert!(items.iter().all(|(id, _, _)| *id == subscription));
}

/// What the writers of the outage tests saw.
#[derive(Debug, Default)]
struct Tally {
    /// (user, index into STATES) of every write answered 200.
    acknowledged: Vec<(String, usize)>,
    /// 503s, each with Retry-After and the envelope.
    unavailable: usize,
    /// Anything else: another status, a malformed 503, a request that
    /// failed or hung past the client's timeout.
    wrong: Vec<String>,
    /// The write in flight and when it was sent (for failure messages).
    current: Option<(String, Instant)>,
}

/// Why `reply` is not a proper 503 (Retry-After and the envelope), if not.
fn improper_503(reply: &Reply) -> Option<String> {
    let retry_after = reply
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let error = &reply.body["error"];
    let well_formed = retry_after.is_some_and(|seconds| seconds >= 1)
        && error["code"].as_str().is_some_and(|code| !code.is_empty())
        && error["message"].as_str().is_some_and(|m| m.len() > 10)
        && error["innerError"]["request-id"].is_string();
    (!well_formed).then(|| {
        format!(
            "a 503 without Retry-After or the envelope: {:?} {}",
            reply.headers, reply.text
        )
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("a client")
}

/// Sends `request` through `node`, recording a wrong outcome in `tally`;
/// returns the reply when it is a 200.
async fn outage_send(
    node: &TestServer,
    request: reqwest::RequestBuilder,
    tally: &Mutex<Tally>,
) -> Option<Reply> {
    match node.try_send(request).await {
        Ok(reply) if reply.status == 200 => Some(reply),
        Ok(reply) if reply.status == 503 => {
            let mut tally = tally.lock().unwrap();
            tally.unavailable += 1;
            if let Some(why) = improper_503(&reply) {
                tally.wrong.push(why);
            }
            None
        }
        Ok(reply) => {
            tally
                .lock()
                .unwrap()
                .wrong
                .push(format!("{}: {}", reply.status, reply.text));
            None
        }
        Err(error) => {
            tally
                .lock()
                .unwrap()
                .wrong
                .push(format!("no answer: {error}"));
            None
        }
    }
}

/// Writes distinct users through `node` until `stop`, recording each
/// acknowledged write.
async fn writer(
    node: Arc<TestServer>,
    tag: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let client = client();
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let user = format!("{tag}-{k:05}");
        let state = k % STATES.len();
        let request = client
            .post(node.url(&format!("/v1.0/users/{user}/presence/setPresence")))
            .json(&json!({
                "sessionId": "app",
                "availability": STATES[state].0,
                "activity": STATES[state].1,
                "expirationDuration": "PT1H",
            }));
        tally.lock().unwrap().current = Some((user.clone(), Instant::now()));
        let outcome = outage_send(&node, request, &tally).await;
        if outcome.is_some() {
            tally.lock().unwrap().acknowledged.push((user, state));
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three writers, one per node.
struct Writers {
    stop: Arc<AtomicBool>,
    tallies: Vec<Arc<Mutex<Tally>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(nodes: &[Arc<TestServer>]) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let tallies: Vec<_> = nodes
            .iter()
            .map(|_| Arc::new(Mutex::new(Tally::default())))
            .collect();
        let tasks = nodes
            .iter()
            .zip(&tallies)
            .enumerate()
            .map(|(n, (node, tally))| {
                tokio::spawn(writer(
                    node.clone(),
                    format!("writer{n}"),
                    stop.clone(),
                    tally.clone(),
                ))
            })
            .collect();
        Writers {
            stop,
            tallies,
            tasks,
        }
    }

    fn acknowledged(&self) -> usize {
        self.tallies
            .iter()
            .map(|t| t.lock().unwrap().acknowledged.len())
            .sum()
    }

    /// Waits until every writer has had `more` further writes answered 200.
    async fn wait_for_more(&self, more: usize) {
        let start: Vec<usize> = self
            .tallies
            .iter()
            .map(|t| t.lock().unwrap().acknowledged.len())
            .collect();
        eventually("every writer to succeed again", || async {
            let now: Vec<usize> = self
                .tallies
                .iter()
                .map(|t| t.lock().unwrap().acknowledged.len())
                .collect();
            if now
                .iter()
                .zip(&start)
                .all(|(now, start)| *now >= start + more)
            {
                Ok(())
            } else {
                let seen: Vec<String> = self
                    .tallies
                    .iter()
                    .map(|t| {
                        let t = t.lock().unwrap();
                        let last = t.wrong.len().saturating_sub(3);
                        let current = t
                            .current
                            .as_ref()
                            .map(|(user, since)| (user, since.elapsed()));
                        format!(
                            "503s {}, wrong {:?}, in flight {current:?}",
                            t.unavailable,
                            &t.wrong[last..]
                        )
                    })
                    .collect();
                Err(format!("acknowledged {now:?}, from {start:?}; {seen:#?}"))
            }
        })
        .await;
    }

    /// Stops the writers; returns every acknowledged write, the count of
    /// 503s, and asserts nothing else was seen.
    async fn stop(self) -> (Vec<(String, usize)>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a writer ends");
        }
        let mut acknowledged = Vec::new();
        let mut unavailable = 0;
        for tally in self.tallies {
            let tally = std::mem::take(&mut *tally.lock().unwrap());
            assert!(
                tally.wrong.is_empty(),
                "besides 200 and 503: {:#?}",
                tally.wrong
            );
            acknowledged.extend(tally.acknowledged);
            unavailable += tally.unavailable;
        }
        (acknowledged, unavailable)
    }
}

/// Asserts that every acknowledged write reads back through every node.
async fn assert_all_read_back(nodes: &[Arc<TestServer>], acknowledged: &[(String, usize)]) {
    for (index, node) in nodes.iter().enumerate() {
        for chunk in acknowledged.chunks(500) {
            let ids: Vec<&str> = chunk.iter().map(|(user, _)| user.as_str()).collect();
            let reply = node
                .post(
                    "/v1.0/communications/getPresencesByUserId",
                    json!({ "ids": ids }),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let shown: BTreeMap<&str, &str> = reply.availabilities().into_iter().collect();
            for (user, state) in chunk {
                assert_eq!(
                    shown.get(user.as_str()).copied(),
                    Some(STATES[*state].0),
                    "the acknowledged write of {user}, read through node {index}"
                );
            }
        }
    }
}

/// Three nodes over `urls`, with writers through each of them that have
/// had some writes acknowledged.
async fn three_nodes_writing(urls: &[String]) -> (Vec<Arc<TestServer>>, Writers) {
    let nodes: Vec<Arc<TestServer>> = three_nodes(urls, &["--auth", "none"])
        .await
        .into_iter()
        .map(Arc::new)
        .collect();
    let writers = Writers::start(&nodes);
    eventually("the writers to get going", || async {
        let count = writers.acknowledged();
        if count >= 60 {
            Ok(())
        } else {
            Err(format!("{count} acknowledged"))
        }
    })
    .await;
    (nodes, writers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_primary_loses_no_acknowledged_write() {
    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start(3, 1));
    let (nodes, writers) = three_nodes_writing(&cluster.urls()).await;
    let primary = cluster.primary_ports()[0];
    tokio::task::block_in_place(|| cluster.kill(primary));
    // Let the writers run into the dead shard before the failover.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| cluster.wait_until_ok());
    writers.wait_for_more(20).await;
    let (acknowledged, unavailable) = writers.stop().await;
    eprintln!(
        "{} writes acknowledged, {unavailable} answered 503 around the failover",
        acknowledged.len()
    );
    assert_all_read_back(&nodes, &acknowledged).await;
}

/// Checks, through each node, that a write, a read and `/readyz` answer 503
/// (with Retry-After and the envelope for the first two) within the client's
/// timeout.
async fn assert_unavailable_everywhere(nodes: &[Arc<TestServer>]) {
    let client = client();
    for (index, node) in nodes.iter().enumerate() {
        eventually(
            &format!("node {index} to answer 503 while Redis is down"),
            || async {
                let write = client
                    .post(node.url("/v1.0/users/outage/presence/setPresence"))
                    .json(
                        &json!({"sessionId": "app", "availability": "Busy", "activity": "InACall"}),
                    );
                let read = client.get(node.url("/v1.0/users/outage/presence"));
                let ready = client.get(node.url("/readyz"));
                let mut statuses = Vec::new();
                for (what, request) in [("write", write), ("read", read), ("readyz", ready)] {
                    let reply = node.try_send(request).await.unwrap_or_else(|error| {
                        panic!("node {index}: the {what} was not answered: {error}")
                    });
                    assert!(
                        reply.status == 200 || reply.status == 503,
                        "node {index}: the {what} answered {}: {}",
                        reply.status,
                        reply.text
                    );
                    if reply.status == 503 && what != "readyz" {
                        assert_eq!(improper_503(&reply), None, "node {index}: the {what}");
                    }
                    statuses.push(reply.status);
                }
                if statuses == [503, 503, 503] {
                    Ok(())
                } else {
                    Err(format!("write, read, readyz answered {statuses:?}"))
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_under_traffic_answers_503_then_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let (nodes, writers) = three_nodes_writing(&[redis.url()]).await;
    tokio::task::block_in_place(|| redis.stop());
    assert_unavailable_everywhere(&nodes).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| redis.restart());
    for (index, node) in nodes.iter().enumerate() {
        eventually(&format!("node {index} to be ready again"), || async {
            let reply = node.try_send(node.client().get(node.url("/readyz"))).await;
            match reply {
                Ok(reply) if reply.status == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    writers.wait_for_more(20).await;
    let (acknowledged, unavailable) = writers.stop().await;
    assert!(unavailable > 0, "the writers ran into the outage");
    assert_all_read_back(&nodes, &acknowledged).await;
}

#[tokio::test]
async fn sigterm_drains_a_node_and_the_others_take_its_partitions() {
    let redis = RedisServer::start();
    let mut nodes = three_nodes(
        &[redis.url()],
        &["--auth", "none", "--drain-timeout", "PT10S"],
    )
    .await;
    wait_for_shares(&nodes.iter().collect::<Vec<_>>()).await;
    let mut leaving = nodes.pop().expect("three nodes");
    let mut stream = EventStream::open(&leaving, "/_presenced/stream?ids=drained", None).await;
    stream.take(1).await;
    // Every stream opens with a retry: field; the one asserted below is
    // the one sent as the node stops.
    stream.retry_hint = false;
    leaving.signal("TERM");
    eventually("the stopping node's /readyz to answer 503", || async {
        match leaving
            .try_send(leaving.client().get(leaving.url("/readyz")))
            .await
        {
            Ok(reply) if reply.status == 503 => Ok(()),
            Err(error) if error.is_connect() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let rest = stream.rest(DEADLINE).await;
    assert!(rest.is_empty(), "{rest:#?}");
    assert!(stream.ended, "the stream ends");
    assert!(stream.retry_hint, "the stream ends with a retry hint");
    // And with the id to resume with: on another node, what changed since
    // arrives, and nothing from before.
    let closing_id = stream.last_id.clone().expect("the stream ends with an id");
    nodes[0]
        .set_presence("drained", "app", "Away", "Away", Some("PT1H"))
        .await
        .assert_ok_empty();
    let mut resumed = EventStream::open(
        &nodes[0],
        "/_presenced/stream?ids=drained",
        Some(&closing_id),
    )
    .await;
    let (_, replayed) = resumed.take(1).await.remove(0);
    assert_eq!(replayed["activity"], "Away", "{replayed:#}");
    wait_for_shares(&[&nodes[0], &nodes[1]]).await;
    let status = leaving.wait().await;
    assert!(
        status.success(),
        "presenced exits 0 after SIGTERM: {status}"
    );
}

#[tokio::test]
async fn a_node_with_other_shared_settings_refuses_to_start_and_names_them() {
    let redis = RedisServer::start();
    let _first = TestServer::start_node(&[redis.url()], &["--auth", "none"]).await;
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let url = redis.url();
    let output = run_binary(
        DEADLINE,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "none",
            "--data-dir",
            data_dir.path().to_str().expect("UTF-8"),
            "--store",
            "redis",
            "--redis-url",
            &url,
            "--idle-timeout",
            "PT10S",
            "--max-subscription-lifetime",
            "PT2H",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "it must refuse to start: {stderr}"
    );
    assert!(stderr.contains("--idle-timeout"), "{stderr}");
    assert!(stderr.contains("--max-subscription-lifetime"), "{stderr}");
}
