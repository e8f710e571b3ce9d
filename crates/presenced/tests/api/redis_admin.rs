//! `presenced migrate` (an embedded store copied into a real Redis) and
//! `presenced check --store redis`, through the real binary.

use std::time::Duration;

use presenced_testkit::RedisServer;
use serde_json::json;

use crate::helpers::{TestServer, run_binary};
use crate::receiver::Receiver;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn an_embedded_store_moves_into_redis_and_check_reports_it() {
    let dir = tempfile::tempdir().expect("a data directory");
    let embedded = TestServer::start_on(dir.path(), &[]).await;
    for user in ["ann", "ben", "cat"] {
        embedded
            .set_presence(user, "app", "Busy", "InACall", Some("PT1H"))
            .await
            .assert_ok_empty();
    }
    let receiver = Receiver::start().await;
    let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(45);
    let created = embedded
        .post(
            "/v1.0/subscriptions",
            json!({
                "changeType": "updated",
                "notificationUrl": receiver.url("/notify"),
                "resource": "/communications/presences?$filter=id in ('ann','ben')",
                "expirationDateTime": expiration.to_string(),
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    embedded.kill().await;

    let redis = RedisServer::start();
    let url = redis.url();
    let empty = run_binary(
        Duration::from_secs(60),
        &["check", "--store", "redis", "--redis-url", &url],
    )
    .await;
    assert!(empty.status.success());
    assert!(
        stdout(&empty).contains("no presenced keyspace yet"),
        "{}",
        stdout(&empty)
    );

    let data_dir = dir.path().to_str().expect("UTF-8");
    let migrate = ["migrate", "--from-data-dir", data_dir, "--to-redis", &url];
    let first = run_binary(Duration::from_secs(60), &migrate).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout(&first).contains("copied 3 users (0 already")
            && stdout(&first).contains("1 subscriptions"),
        "{}",
        stdout(&first)
    );
    // Again: nothing is copied twice.
    let again = run_binary(Duration::from_secs(60), &migrate).await;
    assert!(
        stdout(&again).contains("copied 0 users (3 already"),
        "{}",
        stdout(&again)
    );

    let check = run_binary(
        Duration::from_secs(60),
        &["check", "--store", "redis", "--redis-url", &url],
    )
    .await;
    let report = stdout(&check);
    assert!(check.status.success(), "{report}");
    for expected in [
        "a standalone Redis",
        "key layout version 1",
        "64 partitions",
        "3 users holding facts",
        "1 subscriptions",
    ] {
        assert!(report.contains(expected), "{expected:?} in {report}");
    }

    // A node over Redis serves what the embedded store held.
    let node = TestServer::start_node(std::slice::from_ref(&url), &[]).await;
    assert_eq!(node.presence("ben").await["availability"], "Busy");
    let listed = node.get("/v1.0/subscriptions").await;
    assert_eq!(
        listed.body["value"][0]["id"],
        id.as_str(),
        "{}",
        listed.text
    );
    let owned = node.get("/metrics").await;
    assert_eq!(
        crate::helpers::gauge(&owned.text, "presenced_partitions_owned"),
        64.0,
        "a lone node owns every partition"
    );
    let check = run_binary(
        Duration::from_secs(60),
        &["check", "--store", "redis", "--redis-url", &url],
    )
    .await;
    assert!(
        stdout(&check).contains(": 64 partitions (0-63)"),
        "{}",
        stdout(&check)
    );
}

#[tokio::test]
async fn check_fails_on_an_unreachable_redis() {
    let port = presenced_testkit::free_port();
    let output = run_binary(
        Duration::from_secs(60),
        &[
            "check",
            "--store",
            "redis",
            "--redis-url",
            &format!("redis://127.0.0.1:{port}"),
        ],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot read Redis"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_node_reaches_redis_over_tls_with_a_private_ca() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let cert = directory.path().join("redis.pem");
    let key = directory.path().join("redis-key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls_port = presenced_testkit::free_port().to_string();
    let _redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    // Without the private CA the server's certificate is not trusted.
    let untrusted = run_binary(
        Duration::from_secs(60),
        &["check", "--store", "redis", "--redis-url", &url],
    )
    .await;
    assert!(!untrusted.status.success(), "{}", stdout(&untrusted));
    let refusal = String::from_utf8_lossy(&untrusted.stderr);
    assert!(refusal.contains("cannot read Redis"), "{refusal}");
    let node = TestServer::start_node(std::slice::from_ref(&url), &["--redis-ca-file", cert]).await;
    node.set_presence("tls", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(node.presence("tls").await["availability"], "Busy");
    let trusted = run_binary(
        Duration::from_secs(60),
        &[
            "check",
            "--store",
            "redis",
            "--redis-url",
            &url,
            "--redis-ca-file",
            cert,
        ],
    )
    .await;
    assert!(
        stdout(&trusted).contains("1 users holding facts"),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
}
