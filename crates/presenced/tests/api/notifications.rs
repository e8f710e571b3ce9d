//! Change notifications against real receivers: the handshake, every kind
//! of change (requests and time), retries, isolation of a slow receiver,
//! restarts, encrypted content, renewals, lifecycle events, scoping, the
//! SSRF guard and the live stream.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestServer, graph_instant};
use crate::receiver::{Behaviour, Received, Receiver};

/// How long a notification may take to arrive when nothing is wrong.
/// How long a test waits for what must come before it fails: a guard
/// against a hang, never a claim about speed (the suite runs on busy
/// machines).
const PROMPT: Duration = Duration::from_secs(30);

const CERTIFICATE: &str = include_str!("../fixtures/notify-cert.b64");
const PRIVATE_KEY: &str = include_str!("../fixtures/notify-key.pem");

/// The server's now: its manual clock's, or the wall clock's when the
/// clock cannot be read without a token.
async fn server_now(server: &TestServer) -> jiff::Timestamp {
    let reply = server.get("/_presenced/clock").await;
    match reply.body["now"].as_str() {
        Some(now) => now.parse().expect("an RFC 3339 instant"),
        None => jiff::Timestamp::now(),
    }
}

async fn expiration_in(server: &TestServer, minutes: i64) -> String {
    let now = server_now(server).await;
    graph_instant(now + jiff::SignedDuration::from_mins(minutes))
}

fn resource_of(users: &[&str]) -> String {
    match users {
        [one] => format!("/communications/presences/{one}"),
        many => format!(
            "/communications/presences?$filter=id in ({})",
            many.iter()
                .map(|user| format!("'{user}'"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

async fn body(server: &TestServer, receiver: &Receiver, users: &[&str]) -> Value {
    json!({
        "changeType": "updated",
        "notificationUrl": receiver.url("/notify"),
        "lifecycleNotificationUrl": receiver.url("/lifecycle"),
        "resource": resource_of(users),
        "expirationDateTime": expiration_in(server, 45).await,
        "clientState": "the client state",
    })
}

/// Creates a subscription; asserts 201 and returns it.
async fn subscribe(server: &TestServer, body: Value) -> Value {
    let reply = server.post("/v1.0/subscriptions", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body
}

fn user_of(received: &Received) -> String {
    received.item["resourceData"]["id"]
        .as_str()
        .expect("resourceData.id")
        .to_owned()
}

fn sequence_of(received: &Received) -> String {
    received.item["resourceData"]["sequenceNumber"]
        .as_str()
        .expect("resourceData.sequenceNumber")
        .to_owned()
}

/// Graph's documented receiver steps, done independently of presenced:
/// unwrap the key with RSA-OAEP (SHA-1), check the HMAC-SHA256 over the
/// ciphertext, decrypt AES-256-CBC with the key's first 16 bytes as IV.
fn decrypt(item: &Value) -> Value {
    use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    use hmac::Mac;
    use rsa::pkcs8::DecodePrivateKey;
    let content = &item["encryptedContent"];
    let base64 = base64::engine::general_purpose::STANDARD;
    let field = |name: &str| {
        base64
            .decode(content[name].as_str().expect(name))
            .expect("base64")
    };
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(PRIVATE_KEY).expect("the test key");
    let key = private
        .decrypt(rsa::Oaep::new::<sha1::Sha1>(), &field("dataKey"))
        .expect("dataKey unwraps with the certificate's private key");
    assert_eq!(key.len(), 32);
    let data = field("data");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(&data);
    mac.verify_slice(&field("dataSignature"))
        .expect("dataSignature is the HMAC-SHA256 of data");
    let plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &key[..16])
        .expect("a 32-byte key")
        .decrypt_padded_vec_mut::<Pkcs7>(&data)
        .expect("PKCS7 padding");
    serde_json::from_slice(&plain).expect("the presence as JSON")
}

#[tokio::test]
async fn the_handshake_succeeds_and_the_subscription_can_be_read_renewed_and_deleted() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    let created = subscribe(&server, body(&server, &receiver, &["alice", "bob"]).await).await;
    // Both URLs were validated, each with the token URL-decoded back.
    let tokens = receiver.tokens();
    assert_eq!(
        tokens
            .iter()
            .map(|(path, _)| path.as_str())
            .collect::<Vec<_>>(),
        ["/notify", "/lifecycle"]
    );
    assert!(
        tokens[0]
            .1
            .starts_with("Validation: Testing client application reachability"),
        "{tokens:?}"
    );
    let id = created["id"].as_str().expect("an id").to_owned();
    assert!(
        created["@odata.context"]
            .as_str()
            .is_some_and(|context| context.ends_with("/v1.0/$metadata#subscriptions/$entity")),
        "{created}"
    );
    assert_eq!(created["changeType"], "updated");
    assert_eq!(created["clientState"], "the client state");
    assert_eq!(created["resource"], resource_of(&["alice", "bob"]));
    assert_eq!(created["includeResourceData"], false);

    let one = server.get(&format!("/v1.0/subscriptions/{id}")).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["id"], id.as_str());
    let list = server.get("/v1.0/subscriptions").await;
    assert_eq!(
        list.body["value"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.text
    );

    let later = expiration_in(&server, 55).await;
    let renewed = server
        .send(
            server
                .client()
                .patch(server.url(&format!("/v1.0/subscriptions/{id}")))
                .json(&json!({ "expirationDateTime": later })),
        )
        .await;
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    assert_eq!(renewed.body["expirationDateTime"], later.as_str());

    let reauthorized = server
        .post(&format!("/v1.0/subscriptions/{id}/reauthorize"), json!({}))
        .await;
    assert_eq!(reauthorized.status, 204, "{}", reauthorized.text);

    let deleted = server.delete(&format!("/v1.0/subscriptions/{id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    server
        .get(&format!("/v1.0/subscriptions/{id}"))
        .await
        .assert_error(404, "NotFound");
    // Deleted means no more notifications.
    server
        .set_presence("alice", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    receiver
        .assert_no_more("/notify", 0, Duration::from_millis(500))
        .await;
}

#[tokio::test]
async fn the_list_comes_in_pages_by_id_and_withholds_client_state() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        let subscription = subscribe(&server, body(&server, &receiver, &["alice"]).await).await;
        assert_eq!(
            subscription["clientState"], "the client state",
            "shown to its creator"
        );
        created.push(subscription["id"].as_str().expect("an id").to_owned());
    }
    created.sort();

    // Everything in one page by default: no next link.
    let all = server.get("/v1.0/subscriptions").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert!(all.body.get("@odata.nextLink").is_none(), "{}", all.text);
    let ids: Vec<&str> = all.body["value"]
        .as_array()
        .expect("a value")
        .iter()
        .map(|subscription| {
            assert_eq!(
                subscription["clientState"],
                Value::Null,
                "withheld: {subscription}"
            );
            subscription["id"].as_str().expect("an id")
        })
        .collect();
    assert_eq!(ids, created, "in the order of their ids");

    // Two at a time, following @odata.nextLink as a client does.
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut next = Some(server.url("/v1.0/subscriptions?$top=2"));
    while let Some(link) = next {
        let page = server.send(server.client().get(&link)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let value = page.body["value"].as_array().expect("a value");
        assert!(value.len() <= 2, "{}", page.text);
        seen.extend(
            value
                .iter()
                .map(|subscription| subscription["id"].as_str().expect("an id").to_owned()),
        );
        next = page.body["@odata.nextLink"].as_str().map(str::to_owned);
        if let Some(link) = &next {
            assert!(link.starts_with(&server.base), "an absolute link: {link}");
            assert!(link.contains("$top=2"), "{link}");
        }
        pages += 1;
        assert!(pages <= 3, "five subscriptions make three pages");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);

    for wrong in ["$top=0", "$top=1001", "$top=two", "$skiptoken=%%%"] {
        let reply = server.get(&format!("/v1.0/subscriptions?{wrong}")).await;
        let message = reply.assert_error(400, "BadRequest");
        assert!(
            message.contains(wrong.split('=').next().expect("a name")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_failed_handshake_is_a_400_that_says_why() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    for (behaviour, expected) in [
        (Behaviour::WrongEcho, "must exactly match validationToken"),
        (Behaviour::Status(500), "must respond with 200 OK"),
        (Behaviour::JsonEcho, "text/plain"),
    ] {
        receiver.behave(behaviour);
        let reply = server
            .post(
                "/v1.0/subscriptions",
                body(&server, &receiver, &["alice"]).await,
            )
            .await;
        let message = reply.assert_error(400, "ValidationError");
        assert!(message.contains(expected), "{behaviour:?}: {message}");
    }
    // Nobody listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("bound").port()
    };
    let mut unreachable = body(&server, &receiver, &["alice"]).await;
    unreachable["notificationUrl"] = json!(format!("http://127.0.0.1:{closed}/notify"));
    let message = server
        .post("/v1.0/subscriptions", unreachable)
        .await
        .assert_error(400, "ValidationError");
    assert!(message.contains("could not be reached"), "{message}");
    let list = server.get("/v1.0/subscriptions").await;
    assert_eq!(list.body["value"], json!([]), "nothing was created");
}

#[tokio::test]
async fn a_hanging_handshake_fails_after_ten_seconds() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    receiver.behave(Behaviour::Hang);
    let started = Instant::now();
    let message = server
        .post(
            "/v1.0/subscriptions",
            body(&server, &receiver, &["alice"]).await,
        )
        .await
        .assert_error(400, "ValidationError");
    assert!(message.contains("timed out"), "{message}");
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(20)).contains(&waited),
        "{waited:?}"
    );
    receiver.behave(Behaviour::Accept);
}

#[tokio::test]
async fn bad_subscriptions_are_refused_with_what_to_fix() {
    let server = TestServer::start(&["--max-subscription-lifetime", "PT3H"]).await;
    let receiver = Receiver::start().await;
    let good = body(&server, &receiver, &["alice"]).await;
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let too_many: Vec<String> = (0..651).map(|n| format!("u{n}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let cases = [
        (
            with("changeType", json!("created")),
            "InvalidRequest",
            "only changeType is 'updated'",
        ),
        (
            with("changeType", Value::Null),
            "InvalidRequest",
            "changeType is required",
        ),
        (
            with("resource", json!("/users/alice/presence")),
            "InvalidRequest",
            "not a presence resource",
        ),
        (
            with("resource", json!(resource_of(&too_many))),
            "InvalidRequest",
            "more than 650",
        ),
        (
            with(
                "expirationDateTime",
                json!(expiration_in(&server, -1).await),
            ),
            "InvalidRequest",
            "not in the future",
        ),
        (
            with(
                "expirationDateTime",
                json!(expiration_in(&server, 181).await),
            ),
            "ExtensionError",
            "180 minutes",
        ),
        (
            with("expirationDateTime", json!("tomorrow")),
            "InvalidRequest",
            "expirationDateTime",
        ),
        (
            with("clientState", json!("x".repeat(129))),
            "InvalidRequest",
            "at most 128",
        ),
        (
            with("includeResourceData", json!(true)),
            "InvalidRequest",
            "encryptionCertificate",
        ),
        (
            with("notificationUrl", json!("ftp://example.com/")),
            "InvalidRequest",
            "https",
        ),
        (
            with("notificationUrl", json!("not a url")),
            "InvalidRequest",
            "absolute URL",
        ),
    ];
    for (body, code, expected) in cases {
        let message = server
            .post("/v1.0/subscriptions", body.clone())
            .await
            .assert_error(400, code);
        assert!(message.contains(expected), "{body}: {message}");
    }
    let mut bad_certificate = with("includeResourceData", json!(true));
    bad_certificate["encryptionCertificate"] = json!("bm90IGEgY2VydGlmaWNhdGU=");
    bad_certificate["encryptionCertificateId"] = json!("test");
    let message = server
        .post("/v1.0/subscriptions", bad_certificate)
        .await
        .assert_error(400, "InvalidRequest");
    assert!(message.contains("X.509"), "{message}");
    server
        .post("/v1.0/subscriptions", json!(["not", "an", "object"]))
        .await
        .assert_error(400, "BadRequest");
    // The lifetime is a setting: three hours here.
    subscribe(
        &server,
        with(
            "expirationDateTime",
            json!(expiration_in(&server, 170).await),
        ),
    )
    .await;
    // Nothing refused reached the receiver's handshake.
    assert_eq!(receiver.tokens().len(), 2);
}

#[tokio::test]
async fn every_kind_of_change_made_by_a_request_is_notified_in_order() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    let subscription = subscribe(&server, body(&server, &receiver, &["alice", "bob"]).await).await;
    server
        .set_presence("alice", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("bob", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_preferred("alice", "DoNotDisturb", "DoNotDisturb", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .post(
            "/v1.0/users/alice/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "Lunch", "contentType": "text"}}}),
        )
        .await
        .assert_ok_empty();
    server
        .post(
            "/v1.0/users/alice/presence/clearUserPreferredPresence",
            json!({}),
        )
        .await
        .assert_ok_empty();
    server
        .clear_presence("alice", "app")
        .await
        .assert_ok_empty();
    // A refresh that shows the same is not a change.
    server
        .set_presence("bob", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let items = receiver.wait_for(Some("/notify"), 6, PROMPT).await;
    receiver
        .assert_no_more("/notify", 6, Duration::from_millis(500))
        .await;
    let alice: Vec<String> = items
        .iter()
        .filter(|received| user_of(received) == "alice")
        .map(sequence_of)
        .collect();
    assert_eq!(alice.len(), 5, "{items:#?}");
    let mut sorted = alice.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(alice, sorted, "in order, each once");
    assert_eq!(alice.last(), Some(&server.sequence_number("alice").await));
    let first = &items[0].item;
    assert_eq!(first["subscriptionId"], subscription["id"]);
    assert_eq!(first["clientState"], "the client state");
    assert_eq!(first["changeType"], "updated");
    assert_eq!(first["tenantId"], "default");
    assert_eq!(first["resource"], "communications/presences/alice");
    assert_eq!(
        first["resourceData"]["@odata.type"],
        "#microsoft.graph.presence"
    );
    assert_eq!(first["resourceData"]["@odata.id"], "users/alice/presence");
    assert_eq!(
        first["subscriptionExpirationDateTime"],
        subscription["expirationDateTime"]
    );
    assert!(
        first.get("encryptedContent").is_none(),
        "basic notifications carry no content"
    );
    // Someone not subscribed to is never notified.
    server
        .set_presence("carol", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    receiver
        .assert_no_more("/notify", 6, Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn fades_and_expiries_are_notified_at_their_instant_with_encrypted_content() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    server
        .set_presence("alice", "app", "Available", "Available", Some("PT12M"))
        .await
        .assert_ok_empty();
    server
        .post(
            "/v1.0/users/alice/presence/setStatusMessage",
            json!({"statusMessage": {
                "message": {"content": "Back at 3", "contentType": "text"},
                "expiryDateTime": {"dateTime": graph_instant(server_now(&server).await + jiff::SignedDuration::from_mins(7)).trim_end_matches('Z'), "timeZone": "UTC"}
            }}),
        )
        .await
        .assert_ok_empty();
    let mut rich = body(&server, &receiver, &["alice"]).await;
    rich["includeResourceData"] = json!(true);
    rich["encryptionCertificate"] = json!(CERTIFICATE.trim());
    rich["encryptionCertificateId"] = json!("test-certificate");
    subscribe(&server, rich).await;
    // +5 min: AvailableInactive; +7: the status message expires; +10: Away;
    // +12: the session expires, Offline.
    server.advance("PT13M").await;
    let items = receiver.wait_for(Some("/notify"), 4, PROMPT).await;
    let presences: Vec<Value> = items
        .iter()
        .map(|received| decrypt(&received.item))
        .collect();
    let shown: Vec<(String, String, bool)> = presences
        .iter()
        .map(|presence| {
            (
                presence["availability"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                presence["activity"].as_str().unwrap_or_default().to_owned(),
                presence["statusMessage"].is_object(),
            )
        })
        .collect();
    let expected = [
        ("Available", "AvailableInactive", true),
        ("Available", "AvailableInactive", false),
        ("Away", "Away", false),
        ("Offline", "Offline", false),
    ];
    assert_eq!(
        shown,
        expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
            .collect::<Vec<_>>(),
        "{presences:#?}"
    );
    for (received, presence) in items.iter().zip(&presences) {
        assert_eq!(presence["@odata.type"], "#microsoft.graph.presence");
        assert_eq!(presence["id"], "alice");
        assert_eq!(
            presence["sequenceNumber"],
            received.item["resourceData"]["sequenceNumber"]
        );
        let content = &received.item["encryptedContent"];
        assert_eq!(content["encryptionCertificateId"], "test-certificate");
        assert_eq!(
            content["encryptionCertificateThumbprint"],
            "C3A076691A4486E20148BFE04269BDC09F10B200"
        );
    }
}

#[tokio::test]
async fn a_refused_or_timed_out_batch_is_retried_until_accepted() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    subscribe(&server, body(&server, &receiver, &["alice"]).await).await;
    // Two 500s, then accepted.
    receiver.fail_next(2);
    server
        .set_presence("alice", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    let items = receiver
        .wait_for(Some("/notify"), 1, Duration::from_secs(15))
        .await;
    assert_eq!(user_of(&items[0]), "alice");
    assert!(receiver.posts() >= 3, "two refusals and the acceptance");
    // A receiver that does not answer within 3 s: the batch is retried.
    receiver.behave(Behaviour::Hang);
    let posts_before = receiver.posts();
    server
        .set_presence("alice", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert!(
        receiver.posts() > posts_before,
        "the first attempt was made"
    );
    receiver.behave(Behaviour::Accept);
    let items = receiver
        .wait_for(Some("/notify"), 2, Duration::from_secs(15))
        .await;
    assert_eq!(
        sequence_of(&items[1]),
        server.sequence_number("alice").await
    );
    let metrics = server.get("/metrics").await.text;
    assert!(
        crate::helpers::gauge(&metrics, "presenced_notification_retries_total") >= 3.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_hanging_receiver_never_delays_a_healthy_one() {
    let server = TestServer::start(&[]).await;
    let stuck = Receiver::start().await;
    let healthy = Receiver::start().await;
    subscribe(&server, body(&server, &stuck, &["alice"]).await).await;
    subscribe(&server, body(&server, &healthy, &["alice"]).await).await;
    stuck.behave(Behaviour::Hang);
    for round in 0..5 {
        let activity = if round % 2 == 0 {
            "InACall"
        } else {
            "InAConferenceCall"
        };
        server
            .set_presence("alice", "app", "Busy", activity, None)
            .await
            .assert_ok_empty();
        healthy.wait_for(Some("/notify"), round + 1, PROMPT).await;
    }
    // Every change reached the healthy receiver while the stuck one still
    // held its first delivery: had the healthy one waited behind it, the
    // stuck one would have seen its delivery given up and retried first.
    assert!(
        stuck.posts() <= 1,
        "the stuck receiver saw a retry before the healthy one had every change"
    );
    assert!(stuck.items().is_empty());
    let metrics = server.get("/metrics").await.text;
    let depth = metrics
        .lines()
        .find(|line| {
            line.starts_with("presenced_notification_queue_depth")
                && line.contains(stuck.base.as_str())
        })
        .unwrap_or_else(|| panic!("a queue depth for the stuck receiver: {metrics}"));
    let depth: f64 = depth
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number");
    assert!(
        depth >= 1.0,
        "{depth}: the stuck receiver's notifications wait in its own queue"
    );
    stuck.behave(Behaviour::Accept);
    let items = stuck
        .wait_for(Some("/notify"), 5, Duration::from_secs(15))
        .await;
    let mut sequences: Vec<String> = items.iter().map(sequence_of).collect();
    let in_order = sequences.clone();
    sequences.sort();
    assert_eq!(
        in_order, sequences,
        "delivered in order once the receiver answers"
    );
}

#[tokio::test]
async fn pending_notifications_are_delivered_after_a_kill_and_restart() {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let receiver = Receiver::start().await;
    let args = ["--auth", "none", "--clock", "manual"];
    let server = TestServer::start_on(data_dir.path(), &args).await;
    let subscription = subscribe(&server, body(&server, &receiver, &["alice", "bob"]).await).await;
    server
        .set_presence("bob", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    receiver.wait_for(Some("/notify"), 1, PROMPT).await;
    // The receiver goes down; alice changes; presenced is killed.
    receiver.behave(Behaviour::Status(503));
    server
        .set_presence("alice", "app", "DoNotDisturb", "Presenting", Some("PT1H"))
        .await
        .assert_ok_empty();
    let expected = server.sequence_number("alice").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().await;
    receiver.behave(Behaviour::Accept);
    let restarted = TestServer::start_on(data_dir.path(), &args).await;
    let items = receiver
        .wait_for(Some("/notify"), 2, Duration::from_secs(10))
        .await;
    let alice: Vec<&Received> = items
        .iter()
        .filter(|received| user_of(received) == "alice")
        .collect();
    assert_eq!(alice.len(), 1, "{items:#?}");
    assert_eq!(sequence_of(alice[0]), expected);
    assert_eq!(alice[0].item["subscriptionId"], subscription["id"]);
    // bob was acknowledged before the kill: not sent again.
    receiver
        .assert_no_more("/notify", 2, Duration::from_millis(500))
        .await;
    // The subscription itself survived, and keeps notifying.
    let id = subscription["id"].as_str().expect("an id");
    assert_eq!(
        restarted
            .get(&format!("/v1.0/subscriptions/{id}"))
            .await
            .status,
        200
    );
    restarted
        .set_presence("bob", "app", "Away", "Away", None)
        .await
        .assert_ok_empty();
    receiver.wait_for(Some("/notify"), 3, PROMPT).await;
}

#[tokio::test]
async fn lifecycle_events_warn_before_expiry_then_remove_the_subscription() {
    let server = TestServer::start(&[]).await;
    let receiver = Receiver::start().await;
    let mut short = body(&server, &receiver, &["alice"]).await;
    short["expirationDateTime"] = json!(expiration_in(&server, 30).await);
    let subscription = subscribe(&server, short).await;
    let id = subscription["id"].as_str().expect("an id").to_owned();
    // Ten minutes before expiry: reauthorizationRequired.
    server.advance("PT19M").await;
    receiver
        .assert_no_more("/lifecycle", 0, Duration::from_millis(300))
        .await;
    server.advance("PT2M").await;
    let events = receiver.wait_for(Some("/lifecycle"), 1, PROMPT).await;
    assert_eq!(events[0].item["lifecycleEvent"], "reauthorizationRequired");
    assert_eq!(events[0].item["subscriptionId"], id.as_str());
    assert_eq!(events[0].item["clientState"], "the client state");
    assert!(events[0].item.get("changeType").is_none());
    // At expiry: removed, and subscriptionRemoved.
    server.advance("PT10M").await;
    let events = receiver.wait_for(Some("/lifecycle"), 2, PROMPT).await;
    assert_eq!(events[1].item["lifecycleEvent"], "subscriptionRemoved");
    server
        .get(&format!("/v1.0/subscriptions/{id}"))
        .await
        .assert_error(404, "NotFound");
    let renew = server
        .send(
            server
                .client()
                .patch(server.url(&format!("/v1.0/subscriptions/{id}")))
                .json(&json!({ "expirationDateTime": expiration_in(&server, 30).await })),
        )
        .await;
    renew.assert_error(404, "NotFound");
    server
        .set_presence("alice", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    receiver
        .assert_no_more("/notify", 0, Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_batch_never_accepted_within_the_retry_window_becomes_missed() {
    let server = TestServer::start(&["--webhook-retry-window", "PT2S"]).await;
    let receiver = Receiver::start().await;
    subscribe(&server, body(&server, &receiver, &["alice"]).await).await;
    // Only /notify fails: the lifecycle URL is the same receiver, so fail
    // by count rather than by behaviour.
    receiver.fail_next(1_000);
    server
        .set_presence("alice", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    tokio::time::sleep(Duration::from_secs(3)).await;
    receiver.fail_next(0);
    let events = receiver
        .wait_for(Some("/lifecycle"), 1, Duration::from_secs(10))
        .await;
    assert_eq!(events[0].item["lifecycleEvent"], "missed");
    assert!(
        receiver
            .items()
            .iter()
            .all(|received| received.path != "/notify")
    );
    let metrics = server.get("/metrics").await.text;
    assert_eq!(
        crate::helpers::gauge(&metrics, "presenced_notifications_missed_total"),
        1.0
    );
}

const SECRET: &str = "the hs256 secret of the notification tests, 32+";

/// presenced verifying hs256 tokens (minted by [`token`]) and delivering to
/// loopback receivers, and a receiver.
async fn start_with_tokens() -> (TestServer, Receiver) {
    let server = TestServer::start(&[
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--allow-private-webhooks",
    ])
    .await;
    (server, Receiver::start().await)
}

fn token(tenant: &str, app: &str, user: Option<&str>, grants: &[&str]) -> String {
    crate::helpers::signed_token(SECRET, tenant, app, user, grants)
}

async fn as_caller(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = server
        .client()
        .request(method, server.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    server.send(request).await
}

#[tokio::test]
async fn callers_see_and_change_only_their_own_apps_subscriptions_in_their_tenant() {
    let (server, receiver) = start_with_tokens().await;
    let app_a = token("contoso", "app-a", None, &["Presence.Read.All"]);
    let app_b = token("contoso", "app-b", None, &["Presence.Read.All"]);
    let other_tenant = token("fabrikam", "app-a", None, &["Presence.Read.All"]);
    let delegated = token("contoso", "app-a", Some("alice"), &["Presence.Read"]);
    let created = as_caller(
        &server,
        reqwest::Method::POST,
        "/v1.0/subscriptions",
        &app_a,
        Some(body(&server, &receiver, &["bob"]).await),
    )
    .await;
    assert_eq!(
        created.status, 201,
        "an application token may subscribe: {}",
        created.text
    );
    assert_eq!(created.body["applicationId"], "app-a");
    let id = created.body["id"].as_str().expect("an id").to_owned();
    let one = format!("/v1.0/subscriptions/{id}");
    for caller in [&app_b, &other_tenant] {
        let list = as_caller(
            &server,
            reqwest::Method::GET,
            "/v1.0/subscriptions",
            caller,
            None,
        )
        .await;
        assert_eq!(list.body["value"], json!([]), "{}", list.text);
        as_caller(&server, reqwest::Method::GET, &one, caller, None)
            .await
            .assert_error(404, "NotFound");
        as_caller(&server, reqwest::Method::DELETE, &one, caller, None)
            .await
            .assert_error(404, "NotFound");
        as_caller(
            &server,
            reqwest::Method::PATCH,
            &one,
            caller,
            Some(json!({"expirationDateTime": expiration_in(&server, 50).await})),
        )
        .await
        .assert_error(404, "NotFound");
    }
    // Reading another user's presence needs Presence.Read.All.
    as_caller(
        &server,
        reqwest::Method::POST,
        "/v1.0/subscriptions",
        &delegated,
        Some(body(&server, &receiver, &["bob"]).await),
    )
    .await
    .assert_error(403, "Forbidden");
    let own = as_caller(
        &server,
        reqwest::Method::POST,
        "/v1.0/subscriptions",
        &delegated,
        Some(body(&server, &receiver, &["alice"]).await),
    )
    .await;
    assert_eq!(own.status, 201, "{}", own.text);
    assert_eq!(own.body["creatorId"], "alice");
    // Another user of the same application sees neither: a signed-in user
    // sees only the subscriptions it created.
    let carol = token("contoso", "app-a", Some("carol"), &["Presence.Read.All"]);
    let list = as_caller(
        &server,
        reqwest::Method::GET,
        "/v1.0/subscriptions",
        &carol,
        None,
    )
    .await;
    assert_eq!(list.body["value"], json!([]), "{}", list.text);
    let alices = format!(
        "/v1.0/subscriptions/{}",
        own.body["id"].as_str().expect("an id")
    );
    as_caller(&server, reqwest::Method::GET, &alices, &carol, None)
        .await
        .assert_error(404, "NotFound");
    let mine = as_caller(
        &server,
        reqwest::Method::GET,
        "/v1.0/subscriptions",
        &delegated,
        None,
    )
    .await;
    assert_eq!(
        mine.body["value"].as_array().map(Vec::len),
        Some(1),
        "{}",
        mine.text
    );
    // Changes in another tenant to a user of the same id are not notified.
    let writer = |tenant: &str| token(tenant, "writer", None, &["Presence.ReadWrite.All"]);
    as_caller(
        &server,
        reqwest::Method::POST,
        "/v1.0/users/bob/presence/setPresence",
        &writer("fabrikam"),
        Some(json!({"sessionId": "writer", "availability": "Busy", "activity": "InACall"})),
    )
    .await
    .assert_ok_empty();
    receiver
        .assert_no_more("/notify", 0, Duration::from_millis(300))
        .await;
    as_caller(
        &server,
        reqwest::Method::POST,
        "/v1.0/users/bob/presence/setPresence",
        &writer("contoso"),
        Some(json!({"sessionId": "writer", "availability": "Busy", "activity": "InACall"})),
    )
    .await
    .assert_ok_empty();
    let items = receiver.wait_for(Some("/notify"), 1, PROMPT).await;
    assert_eq!(items[0].item["tenantId"], "contoso");
    let list = as_caller(
        &server,
        reqwest::Method::GET,
        "/v1.0/subscriptions",
        &app_a,
        None,
    )
    .await;
    assert_eq!(
        list.body["value"].as_array().map(Vec::len),
        Some(2),
        "app-a's two: {}",
        list.text
    );
    as_caller(&server, reqwest::Method::DELETE, &one, &app_a, None).await;
}

#[tokio::test]
async fn private_and_loopback_webhooks_are_refused_unless_allowed() {
    let server = TestServer::start(&["--auth", "hs256", "--jwt-secret", SECRET]).await;
    let receiver = Receiver::start().await;
    let app = token("contoso", "app-a", None, &["Presence.Read.All"]);
    for url in [
        receiver.url("/notify"),
        "https://127.0.0.1/notify".to_string(),
        "https://10.0.0.8/notify".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://[::1]/notify".to_string(),
        "https://localhost/notify".to_string(),
    ] {
        let mut body = body(&server, &receiver, &["bob"]).await;
        body["notificationUrl"] = json!(url);
        let message = as_caller(
            &server,
            reqwest::Method::POST,
            "/v1.0/subscriptions",
            &app,
            Some(body),
        )
        .await
        .assert_error(400, "InvalidRequest");
        assert!(
            message.contains("--allow-private-webhooks"),
            "{url}: {message}"
        );
    }
    let mut lifecycle = body(&server, &receiver, &["bob"]).await;
    lifecycle["notificationUrl"] = json!("https://93.184.216.34/notify");
    let message = as_caller(
        &server,
        reqwest::Method::POST,
        "/v1.0/subscriptions",
        &app,
        Some(lifecycle),
    )
    .await
    .assert_error(400, "InvalidRequest");
    assert!(message.contains("lifecycleNotificationUrl"), "{message}");
    assert!(
        receiver.tokens().is_empty(),
        "no request was made to a refused address"
    );
}

/// Reads SSE events (id, data) from a streaming response until `count`
/// have arrived.
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + PROMPT;
    while events.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{count} events within {PROMPT:?}; got {events:?}"))
            .expect("the stream is readable")
            .expect("the stream is open");
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if !data.is_empty() {
                events.push((id, serde_json::from_str(&data).expect("JSON data")));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_stream_sends_current_presence_then_every_change_and_resumes_from_last_event_id() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("alice", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let mut stream = server
        .client()
        .get(server.url("/_presenced/stream?ids=alice,bob"))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let first = read_events(&mut stream, 2).await;
    let mut users: Vec<&str> = first
        .iter()
        .map(|(_, data)| data["id"].as_str().unwrap_or_default())
        .collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"], "the current presence of each");
    server
        .set_presence("bob", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server.advance("PT5M").await;
    let changes = read_events(&mut stream, 2).await;
    let shown: Vec<(String, String)> = changes
        .iter()
        .map(|(_, data)| {
            (
                data["id"].as_str().unwrap_or_default().to_owned(),
                data["activity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // Busy does not fade; bob's Available does, at +5 min.
    assert_eq!(
        shown,
        [
            ("bob".to_owned(), "Available".to_owned()),
            ("bob".to_owned(), "AvailableInactive".to_owned())
        ]
    );
    let last_id = changes.last().map(|(id, _)| id.clone()).expect("an id");
    drop(stream);
    // Missed while disconnected, then resumed.
    server
        .set_presence("alice", "app", "Away", "Away", Some("PT1H"))
        .await
        .assert_ok_empty();
    let mut resumed = server
        .client()
        .get(server.url("/_presenced/stream?ids=alice,bob"))
        .header("last-event-id", &last_id)
        .send()
        .await
        .expect("the stream opens");
    let replayed = read_events(&mut resumed, 1).await;
    assert_eq!(replayed[0].1["id"], "alice");
    assert_eq!(
        replayed[0].1["sequenceNumber"],
        json!(server.sequence_number("alice").await)
    );
}

/// A tenant stream sends nothing until something changes; a client dropped
/// before then still resumes without a gap, with the opening event's id.
#[tokio::test]
async fn a_stream_dropped_before_any_presence_resumes_with_its_opening_id() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("alice", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let mut stream = server
        .client()
        .get(server.url("/_presenced/stream"))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), 200);
    let opening = raw_events(&mut stream, 1).await.remove(0);
    let opening_id = opening
        .lines()
        .find_map(|line| line.strip_prefix("id:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("an id: on the opening event, got {opening:?}"))
        .to_owned();
    drop(stream);
    // Made while the client was away, before it had heard any presence.
    server
        .set_presence("bob", "app", "Away", "Away", Some("PT1H"))
        .await
        .assert_ok_empty();
    let mut resumed = server
        .client()
        .get(server.url("/_presenced/stream"))
        .header("last-event-id", &opening_id)
        .send()
        .await
        .expect("the stream opens");
    let (_, replayed) = read_events(&mut resumed, 1).await.remove(0);
    assert_eq!(
        (replayed["id"].as_str(), replayed["activity"].as_str()),
        (Some("bob"), Some("Away")),
        "the change made while away, and not alice's older one"
    );
}

#[tokio::test]
async fn a_resumed_stream_replays_only_its_own_users_changes() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("alice", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let path = "/_presenced/stream?ids=alice";
    let mut stream = server
        .client()
        .get(server.url(path))
        .send()
        .await
        .expect("the stream opens");
    let (last_id, _) = read_events(&mut stream, 1).await.remove(0);
    drop(stream);
    // Missed while away: carol's changes around alice's, which the replay
    // reads past.
    for (user, availability, activity) in [
        ("carol", "Busy", "InACall"),
        ("alice", "Away", "Away"),
        ("carol", "Available", "Available"),
    ] {
        server
            .set_presence(user, "app", availability, activity, Some("PT1H"))
            .await
            .assert_ok_empty();
    }
    let mut resumed = server
        .client()
        .get(server.url(path))
        .header("last-event-id", &last_id)
        .send()
        .await
        .expect("the stream opens");
    let (replayed_id, replayed) = read_events(&mut resumed, 1).await.remove(0);
    assert_eq!(
        (replayed["id"].as_str(), replayed["activity"].as_str()),
        (Some("alice"), Some("Away"))
    );
    // Replayed from the feed, not started again from the current presence:
    // its id is the cursor just after alice's change (the second of the
    // three missed), where a fresh start would name the feed's head.
    let offset = |id: &str| -> u64 {
        id.rsplit_once('-')
            .and_then(|(_, offset)| offset.parse().ok())
            .unwrap_or_else(|| panic!("a one-partition cursor, got {id:?}"))
    };
    assert_eq!(offset(&replayed_id), offset(&last_id) + 2);
    // Live again: carol's next change is not sent, alice's is.
    for (user, availability, activity) in [
        ("carol", "Away", "Away"),
        ("alice", "DoNotDisturb", "Presenting"),
    ] {
        server
            .set_presence(user, "app", availability, activity, Some("PT1H"))
            .await
            .assert_ok_empty();
    }
    let (_, live) = read_events(&mut resumed, 1).await.remove(0);
    assert_eq!(
        (live["id"].as_str(), live["activity"].as_str()),
        (Some("alice"), Some("Presenting"))
    );
}

/// The first `count` events of a stream as sent: each the text up to its
/// blank line.
async fn raw_events(response: &mut reqwest::Response, count: usize) -> Vec<String> {
    let mut buffer = String::new();
    let deadline = Instant::now() + PROMPT;
    loop {
        let blocks: Vec<&str> = buffer.split("\n\n").collect();
        // The last piece is what follows the last blank line.
        if blocks.len() > count {
            return blocks[..count]
                .iter()
                .map(|block| block.to_string())
                .collect();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{count} events within {PROMPT:?}; got {buffer:?}"))
            .expect("the stream is readable")
            .expect("the stream is open");
        buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }
}

#[tokio::test]
async fn every_stream_opens_with_an_id_and_its_own_retry_of_one_to_three_seconds() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("alice", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let mut waits = Vec::new();
    for _ in 0..6 {
        let mut stream = server
            .client()
            .get(server.url("/_presenced/stream?ids=alice"))
            .send()
            .await
            .expect("the stream opens");
        assert_eq!(stream.status(), 200);
        // Before any presence: a client dropped while the first presences
        // are sent already knows how long to wait.
        let events = raw_events(&mut stream, 2).await;
        let lines: Vec<&str> = events[0].lines().collect();
        let [id, line] = lines[..] else {
            panic!("the first event is an id: and a retry: field, got {events:?}");
        };
        let id = id.strip_prefix("id:").map(str::trim);
        assert!(
            id.is_some_and(|id| !id.is_empty()),
            "the opening event names where to resume: {events:?}"
        );
        let wait: u64 = line
            .strip_prefix("retry:")
            .and_then(|millis| millis.trim().parse().ok())
            .unwrap_or_else(|| panic!("a retry: field in milliseconds, got {line:?}"));
        assert!((1_000..=3_000).contains(&wait), "retry: {wait}");
        let data = events[1]
            .lines()
            .find_map(|line| line.strip_prefix("data:"))
            .unwrap_or_else(|| panic!("then the presence, got {events:?}"));
        let presence: Value = serde_json::from_str(data.trim()).expect("JSON data");
        assert_eq!(presence["activity"], "InACall", "then the presence");
        waits.push(wait);
    }
    assert!(
        waits.iter().any(|wait| *wait != waits[0]),
        "each stream draws its own wait: {waits:?}"
    );
}

#[tokio::test]
async fn moving_a_subscription_to_another_url_validates_it_first() {
    let server = TestServer::start(&[]).await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let subscription = subscribe(&server, body(&server, &first, &["alice"]).await).await;
    let path = format!(
        "/v1.0/subscriptions/{}",
        subscription["id"].as_str().expect("an id")
    );
    let patch = |url: String| {
        server
            .client()
            .patch(server.url(&path))
            .json(&json!({ "notificationUrl": url }))
    };
    second.behave(Behaviour::WrongEcho);
    let refused = server.send(patch(second.url("/moved"))).await;
    let message = refused.assert_error(400, "ValidationError");
    assert!(message.contains("exactly match"), "{message}");
    assert_eq!(
        server.get(&path).await.body["notificationUrl"],
        first.url("/notify").as_str(),
        "a refused move changes nothing"
    );
    second.behave(Behaviour::Accept);
    let moved = server.send(patch(second.url("/moved"))).await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.body["notificationUrl"], second.url("/moved").as_str());
    assert_eq!(second.tokens().len(), 2, "validated at each attempt");
    server
        .set_presence("alice", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    second.wait_for(Some("/moved"), 1, PROMPT).await;
    first
        .assert_no_more("/notify", 0, Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn on_the_system_clock_a_fade_is_notified_at_its_instant_also_after_a_restart() {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let receiver = Receiver::start().await;
    // Fades every 3 s, so that the test waits seconds, not minutes.
    let args = ["--auth", "none", "--idle-timeout", "PT3S"];
    let server = TestServer::start_on(data_dir.path(), &args).await;
    subscribe(&server, body(&server, &receiver, &["alice"]).await).await;
    server
        .set_presence("alice", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    let sessions = server.get("/_presenced/users/alice/sessions").await;
    let due: jiff::Timestamp = sessions.body["nextChangeDateTime"]
        .as_str()
        .expect("a next change")
        .parse()
        .expect("an instant");
    receiver.wait_for(Some("/notify"), 1, PROMPT).await;
    // Down and up again before the fade falls due.
    server.kill().await;
    let restarted = TestServer::start_on(data_dir.path(), &args).await;
    // The first notification may come again after the restart (its
    // acknowledgement is recorded after the receiver answers): wait for the
    // fade's own sequence number.
    let deadline = Instant::now() + PROMPT;
    let fade = loop {
        let items = receiver.items();
        if let Some(fade) = items
            .iter()
            .find(|received| sequence_of(received) == "A00000000000000000002")
        {
            break fade.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no fade notification: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Never before its instant (however late a busy machine runs it).
    assert!(
        fade.wall >= due,
        "the fade due at {due} was notified early, at {}",
        fade.wall
    );
    assert_eq!(sequence_of(&fade), restarted.sequence_number("alice").await);
}

/// One visibility rule: what a caller sees of another user through GET is
/// exactly what it sees through the stream and through the resource data
/// of a rich subscription it created. A delegated caller never sees another
/// user's status-message dates (Graph hides them); an application sees them
/// through all three.
#[tokio::test]
async fn get_the_stream_and_rich_notifications_show_a_caller_the_same_presence() {
    let (server, receiver) = start_with_tokens().await;
    let writer = token("contoso", "app-w", None, &["Presence.ReadWrite.All"]);
    let bob = token("contoso", "app-a", Some("bob"), &["Presence.Read.All"]);
    let app = token("contoso", "app-a", None, &["Presence.Read.All"]);
    let set_message = |content: &'static str| {
        let server = &server;
        let writer = &writer;
        async move {
            let expiry =
                graph_instant(server_now(server).await + jiff::SignedDuration::from_hours(2));
            as_caller(
                server,
                reqwest::Method::POST,
                "/v1.0/users/alice/presence/setStatusMessage",
                writer,
                Some(json!({"statusMessage": {
                    "message": {"content": content, "contentType": "text"},
                    "expiryDateTime": {"dateTime": expiry.trim_end_matches('Z'), "timeZone": "UTC"}
                }})),
            )
            .await
            .assert_ok_empty();
        }
    };
    set_message("In the lab").await;
    let dated = |presence: &Value| {
        let message = &presence["statusMessage"];
        (
            message["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            message.get("publishedDateTime").is_some(),
            message.get("expiryDateTime").is_some(),
        )
    };
    // GET.
    let as_bob = as_caller(
        &server,
        reqwest::Method::GET,
        "/v1.0/users/alice/presence",
        &bob,
        None,
    )
    .await;
    assert_eq!(as_bob.status, 200, "{}", as_bob.text);
    assert_eq!(dated(&as_bob.body), ("In the lab".into(), false, false));
    let as_app = as_caller(
        &server,
        reqwest::Method::GET,
        "/v1.0/users/alice/presence",
        &app,
        None,
    )
    .await;
    assert_eq!(dated(&as_app.body), ("In the lab".into(), true, true));
    // The stream, as each.
    let open = |token: &String| {
        server
            .client()
            .get(server.url("/_presenced/stream?ids=alice"))
            .bearer_auth(token)
            .send()
    };
    let mut bob_stream = open(&bob).await.expect("the stream opens");
    let mut app_stream = open(&app).await.expect("the stream opens");
    assert_eq!(bob_stream.status(), 200);
    assert_eq!(
        dated(&read_events(&mut bob_stream, 1).await[0].1),
        ("In the lab".into(), false, false)
    );
    assert_eq!(
        dated(&read_events(&mut app_stream, 1).await[0].1),
        ("In the lab".into(), true, true)
    );
    // Rich subscriptions, one created by bob and one by the application.
    for creator in [&bob, &app] {
        let mut rich = body(&server, &receiver, &["alice"]).await;
        rich["includeResourceData"] = json!(true);
        rich["encryptionCertificate"] = json!(CERTIFICATE.trim());
        rich["encryptionCertificateId"] = json!("test-certificate");
        let created = as_caller(
            &server,
            reqwest::Method::POST,
            "/v1.0/subscriptions",
            creator,
            Some(rich),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text);
    }
    set_message("Back at 3").await;
    assert_eq!(
        dated(&read_events(&mut bob_stream, 1).await[0].1),
        ("Back at 3".into(), false, false)
    );
    assert_eq!(
        dated(&read_events(&mut app_stream, 1).await[0].1),
        ("Back at 3".into(), true, true)
    );
    let items = receiver.wait_for(Some("/notify"), 2, PROMPT).await;
    let mut seen: Vec<(String, bool, bool)> = items
        .iter()
        .map(|item| dated(&decrypt(&item.item)))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("Back at 3".into(), false, false),
            ("Back at 3".into(), true, true)
        ],
        "bob's subscription shows what bob's GET shows, the application's what its GET shows"
    );
}
