//! Throttling: the limits per application and tenant, per tenant and per
//! address, answered 429 with Retry-After in the envelope, in the SPEC's
//! order of checks, applying nothing; and held across nodes over Redis.
//! Every limit here is so slow to refill (a few per hour) that no request
//! of a test comes back within it, however slow the machine.

use presenced_testkit::RedisServer;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestServer, counter, signed_token};

const SECRET: &str = "the hs256 secret of the throttling tests, 32+ bytes";
const USER: &str = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
const APP_A: &str = "5d1f4c8e-0b6a-4d1e-9a43-6f0c2b7e8a91";
const APP_B: &str = "9b0e7d52-3c1a-4f6e-8d2b-1a4c6e8f0b3d";
const APP_C: &str = "c3a1e5f7-2b4d-4e6f-8a0c-2d4f6a8c0e1b";

fn token(tenant: &str, app: &str, roles: &[&str]) -> String {
    signed_token(SECRET, tenant, app, None, roles)
}

fn writer(tenant: &str, app: &str) -> String {
    token(tenant, app, &["Presence.ReadWrite.All"])
}

async fn hs256(extra: &[&str]) -> TestServer {
    let mut args = vec!["--auth", "hs256", "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

async fn get(server: &TestServer, token: &str) -> Reply {
    let path = format!("/v1.0/users/{USER}/presence");
    server
        .send(server.client().get(server.url(&path)).bearer_auth(token))
        .await
}

async fn set(server: &TestServer, token: &str, app: &str, availability: &str) -> Reply {
    let path = format!("/v1.0/users/{USER}/presence/setPresence");
    let activity = if availability == "Busy" {
        "InACall"
    } else {
        availability
    };
    let body = json!({"sessionId": app, "availability": availability, "activity": activity});
    server.post_bearer(&path, token, &body).await
}

/// Asserts a 429 in the envelope, with a Retry-After of whole seconds from
/// 1 to `at_most`; returns the message.
#[track_caller]
fn assert_throttled(reply: &Reply, at_most: u64) -> String {
    let message = reply.assert_error(429, "TooManyRequests");
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After of whole seconds: {:?}", reply.headers));
    assert!(
        (1..=at_most).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert!(message.contains(&retry_after.to_string()), "{message}");
    message
}

/// Sends `request` (a request's head) on a connection of its own and
/// returns the head of the answer, without sending any body.
async fn raw_head(server: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the head is sent");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut buffer))
                .await
                .expect("answered without the body")
                .expect("reads");
        assert!(read > 0, "closed without an answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn shown(reply: &Reply) -> (&Value, &Value) {
    (&reply.body["availability"], &reply.body["activity"])
}

#[tokio::test]
async fn beyond_an_apps_limit_it_gets_429_with_retry_after_and_nothing_is_applied() {
    // Three an hour: one comes back every twenty minutes.
    let server = hs256(&["--throttle-app", "3/PT1H"]).await;
    let a = writer("contoso", APP_A);
    set(&server, &a, APP_A, "Available").await.assert_ok_empty();
    assert_eq!(get(&server, &a).await.status, 200);
    assert_eq!(get(&server, &a).await.status, 200);

    let refused = set(&server, &a, APP_A, "Busy").await;
    let message = assert_throttled(&refused, 1200);
    assert!(message.contains("--throttle-app"), "{message}");
    assert!(message.contains("3 requests every PT1H"), "{message}");

    // Throttling comes before the size (413) and the content type (415):
    // a request announcing a body too large, of no type, is answered 429
    // before any of its body is sent.
    let path = format!("/v1.0/users/{USER}/presence/setPresence");
    let head = raw_head(&server, &format!(
        "POST {path} HTTP/1.1\r\nHost: presenced\r\nAuthorization: Bearer {a}\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    ))
    .await;
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: "),
        "{head}"
    );
    // And before the body (400) and the permission (403).
    let reply = server
        .send(
            server
                .client()
                .post(server.url(&path))
                .bearer_auth(&a)
                .header("content-type", "application/json")
                .body("[1, 2]"),
        )
        .await;
    assert_throttled(&reply, 1200);
    let reader = token("contoso", APP_A, &["Presence.Read.All"]);
    assert_throttled(&set(&server, &reader, APP_A, "Busy").await, 1200);
    // A bad token is still a 401: the token is checked first.
    let reply = get(&server, "not.a.token").await;
    reply.assert_error(401, "InvalidAuthenticationToken");

    // Another application of the tenant is not limited by it, and sees
    // that the refused write changed nothing.
    let b = writer("contoso", APP_B);
    let reply = get(&server, &b).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(shown(&reply), (&json!("Available"), &json!("Available")));
    set(&server, &b, APP_B, "Away").await.assert_ok_empty();
    // Nor is the same application in another tenant.
    let elsewhere = writer("fabrikam", APP_A);
    set(&server, &elsewhere, APP_A, "Busy")
        .await
        .assert_ok_empty();
    assert_eq!(get(&server, &elsewhere).await.status, 200);

    let metrics = server.metrics().await;
    assert_eq!(
        counter(&metrics, "presenced_throttled_total{limit=\"app\"}"),
        4.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_tenants_limit_counts_all_its_applications_together() {
    let server = hs256(&["--throttle-app", "off", "--throttle-tenant", "4/PT1H"]).await;
    let (a, b, c) = (
        writer("contoso", APP_A),
        writer("contoso", APP_B),
        writer("contoso", APP_C),
    );
    set(&server, &a, APP_A, "Available").await.assert_ok_empty();
    assert_eq!(get(&server, &a).await.status, 200);
    set(&server, &b, APP_B, "Busy").await.assert_ok_empty();
    assert_eq!(get(&server, &b).await.status, 200);
    // The fifth request of the tenant, from a third application.
    let message = assert_throttled(&set(&server, &c, APP_C, "Away").await, 900);
    assert!(message.contains("--throttle-tenant"), "{message}");
    assert_throttled(&get(&server, &a).await, 900);
    // Another tenant has its own limit.
    let other = writer("fabrikam", APP_C);
    set(&server, &other, APP_C, "Away").await.assert_ok_empty();
    let metrics = server.metrics().await;
    assert_eq!(
        counter(&metrics, "presenced_throttled_total{limit=\"tenant\"}"),
        2.0
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_are_limited_per_address() {
    let server = hs256(&["--throttle-unauthenticated", "2/PT1H"]).await;
    for token in ["not.a.token", ""] {
        get(&server, token)
            .await
            .assert_error(401, "InvalidAuthenticationToken");
    }
    let message = assert_throttled(&get(&server, "still.not.a.token").await, 1800);
    assert!(message.contains("--throttle-unauthenticated"), "{message}");
    let path = format!("/v1.0/users/{USER}/presence");
    let reply = server.send(server.client().get(server.url(&path))).await;
    assert_throttled(&reply, 1800);
    // A valid token is served, and the operational routes need none.
    assert_eq!(get(&server, &writer("contoso", APP_A)).await.status, 200);
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn with_auth_none_no_limit_is_on_by_default() {
    let server = TestServer::start(&[]).await;
    // Far beyond what any limit in these tests allows.
    for _ in 0..50 {
        let reply = server.get(&format!("/v1.0/users/{USER}/presence")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let metrics = server.metrics().await;
    assert!(!metrics.contains("presenced_throttled_total"), "{metrics}");
}

#[tokio::test]
async fn nodes_over_redis_share_one_limit() {
    let redis = RedisServer::start();
    let urls = vec![redis.url()];
    let args = [
        "--redis-durability",
        "async",
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--throttle-app",
        "6/PT1H",
    ];
    let one = TestServer::start_node(&urls, &args).await;
    let two = TestServer::start_node(&urls, &args).await;
    let a = writer("contoso", APP_A);
    set(&one, &a, APP_A, "Available").await.assert_ok_empty();
    for node in [&one, &two, &one, &two, &two] {
        let reply = get(node, &a).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    // Six served by the two nodes together: the seventh is refused on
    // either, and nothing it asked is applied.
    assert_throttled(&set(&one, &a, APP_A, "Busy").await, 600);
    assert_throttled(&set(&two, &a, APP_A, "Busy").await, 600);
    let b = writer("contoso", APP_B);
    let reply = get(&two, &b).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(shown(&reply), (&json!("Available"), &json!("Available")));
}
