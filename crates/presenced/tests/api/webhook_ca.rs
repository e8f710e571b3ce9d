//! `--webhook-ca-file`: an https receiver whose certificate a private CA
//! signed is reachable (handshake and delivery) when presenced trusts that
//! CA, and refused, as Graph refuses an unreachable receiver, when not.

use std::time::Duration;

use serde_json::{Value, json};

use crate::certs::{TestPki, text};
use crate::helpers::{TestServer, graph_instant, run_binary};
use crate::receiver::Receiver;

/// A guard against a hang, never a claim about speed.
const PROMPT: Duration = Duration::from_secs(30);

async fn subscription(server: &TestServer, receiver: &Receiver) -> Value {
    let now = server.now().await;
    json!({
        "changeType": "updated",
        "notificationUrl": receiver.url("/notify"),
        "lifecycleNotificationUrl": receiver.url("/lifecycle"),
        "resource": "/communications/presences/alice",
        "expirationDateTime": graph_instant(now + jiff::SignedDuration::from_mins(45)),
        "clientState": "the client state",
    })
}

#[tokio::test]
async fn a_receiver_signed_by_a_private_ca_is_used_with_the_ca_file_and_refused_without() {
    let pki = TestPki::new();
    let receiver = Receiver::start_tls(&pki.cert(), &pki.key()).await;
    assert!(receiver.base.starts_with("https://"), "{}", receiver.base);

    // Without the CA, the handshake cannot trust the receiver: Graph's 400.
    let untrusting = TestServer::start(&[]).await;
    let refused = untrusting
        .post(
            "/v1.0/subscriptions",
            subscription(&untrusting, &receiver).await,
        )
        .await;
    let message = refused.assert_error(400, "ValidationError");
    assert!(
        message.contains("Subscription validation request failed")
            && message.contains("could not be reached")
            && message.contains("certificate"),
        "{message}"
    );
    assert!(receiver.tokens().is_empty(), "{:?}", receiver.tokens());

    // With it, both URLs pass the handshake and notifications arrive.
    let ca = text(&pki.ca());
    let trusting = TestServer::start(&["--webhook-ca-file", &ca]).await;
    let created = trusting
        .post(
            "/v1.0/subscriptions",
            subscription(&trusting, &receiver).await,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let validated: Vec<String> = receiver
        .tokens()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert!(
        validated.contains(&"/notify".to_owned()) && validated.contains(&"/lifecycle".to_owned()),
        "{validated:?}"
    );
    trusting
        .set_presence("alice", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let arrived = receiver.wait_for(Some("/notify"), 1, PROMPT).await;
    assert_eq!(arrived[0].item["resourceData"]["id"], "alice");
    assert_eq!(arrived[0].item["clientState"], "the client state");
}

#[tokio::test]
async fn an_unusable_ca_file_stops_the_start_naming_the_file_and_the_fault() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let junk = directory.path().join("webhook-ca.pem");
    std::fs::write(&junk, "no certificate in here\n").expect("written");
    let missing = directory.path().join("missing.pem");
    for (file, fault) in [
        (text(&junk), "holds no CERTIFICATE block"),
        (text(&missing), "cannot read --webhook-ca-file"),
    ] {
        let output = run_binary(
            PROMPT,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--webhook-ca-file",
                &file,
            ],
        )
        .await;
        assert!(!output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&file) && stderr.contains(fault), "{stderr}");
    }
}
