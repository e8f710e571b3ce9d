//! The scheduler reclaims what has ended, so memory stays flat for users who
//! stop calling; it is observed through the store's gauges in /metrics.

use crate::helpers::{TestServer, gauge};

#[tokio::test]
async fn expired_sessions_are_reclaimed_without_any_request() {
    let server = TestServer::start(&[]).await;
    for user in 0..40 {
        let expiration = if user % 2 == 0 { "PT5M" } else { "PT30M" };
        let reply = server
            .set_presence(
                &format!("user{user}"),
                "app",
                "Busy",
                "InACall",
                Some(expiration),
            )
            .await;
        reply.assert_ok_empty();
    }
    let metrics = server.get("/metrics").await.text;
    assert_eq!(gauge(&metrics, "presenced_sessions"), 40.0);
    assert_eq!(gauge(&metrics, "presenced_users"), 40.0);

    server.advance("PT5M").await;
    let metrics = server.get("/metrics").await.text;
    assert_eq!(
        gauge(&metrics, "presenced_sessions"),
        20.0,
        "half expired at five minutes"
    );
    assert_eq!(gauge(&metrics, "presenced_users"), 20.0);

    server.advance("PT25M").await;
    let metrics = server.get("/metrics").await.text;
    assert_eq!(gauge(&metrics, "presenced_sessions"), 0.0);
    assert_eq!(gauge(&metrics, "presenced_users"), 0.0);
    assert_eq!(
        gauge(&metrics, "presenced_scheduler_pending_users"),
        0.0,
        "nothing left to wake for"
    );
    assert_eq!(
        server.shown("user1").await,
        ("Offline".to_owned(), "Offline".to_owned())
    );
}

#[tokio::test]
async fn the_system_clock_scheduler_reclaims_on_its_own() {
    // One-second stages keep a legacy session's whole life at three seconds.
    let server = TestServer::start_with(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
        "--idle-timeout",
        "PT1S",
    ])
    .await;
    let reply = server
        .put(
            "/beta/users/u1/presence/sessions/s1",
            serde_json::json!({"availability": "Available", "activity": "Available"}),
        )
        .await;
    reply.assert_ok_empty();
    assert_eq!(
        gauge(&server.get("/metrics").await.text, "presenced_sessions"),
        1.0
    );
    let mut reclaimed = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if gauge(&server.get("/metrics").await.text, "presenced_sessions") == 0.0 {
            reclaimed = true;
            break;
        }
    }
    assert!(
        reclaimed,
        "the legacy session was not reclaimed within ten seconds"
    );
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned())
    );
}
