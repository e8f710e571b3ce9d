//! The SPEC's timelines, driven by the manual clock.

use serde_json::json;

use crate::helpers::TestServer;

fn pair(availability: &str, activity: &str) -> (String, String) {
    (availability.to_owned(), activity.to_owned())
}

/// Advances the clock step by step and checks what `user` shows after each.
async fn check_timeline(server: &TestServer, user: &str, steps: &[(&str, &str, &str)]) {
    for (index, (advance, availability, activity)) in steps.iter().enumerate() {
        if !advance.is_empty() {
            server.advance(advance).await;
        }
        assert_eq!(
            server.shown(user).await,
            pair(availability, activity),
            "step {index} (after advancing {advance})"
        );
    }
}

#[tokio::test]
async fn an_available_session_fades_in_stages_and_expires() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    check_timeline(
        &server,
        "u1",
        &[
            ("", "Available", "Available"),
            ("PT4M59S", "Available", "Available"),
            ("PT1S", "Available", "AvailableInactive"),
            ("PT5M", "Away", "Away"),
            ("PT49M59S", "Away", "Away"),
            ("PT1S", "Offline", "Offline"),
        ],
    )
    .await;
}

#[tokio::test]
async fn with_the_default_expiration_expiry_wins_over_the_first_fade() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    check_timeline(
        &server,
        "u1",
        &[
            ("PT4M59.999S", "Available", "Available"),
            ("PT0.001S", "Offline", "Offline"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_keep_alive_restarts_the_timeline() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server.advance("PT7M").await;
    assert_eq!(
        server.shown("u1").await,
        pair("Available", "AvailableInactive")
    );
    server
        .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    check_timeline(
        &server,
        "u1",
        &[
            ("", "Available", "Available"),
            ("PT4M", "Available", "Available"),
            ("PT1M", "Available", "AvailableInactive"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_legacy_session_goes_offline_at_the_third_timeout() {
    let server = TestServer::start(&[]).await;
    for path in [
        "/beta/users/u1/presence/sessions/s1",
        "/beta/users/u2/presence/s1",
    ] {
        let reply = server
            .put(
                path,
                json!({"availability": "Available", "activity": "Available"}),
            )
            .await;
        reply.assert_ok_empty();
    }
    let reply = server
        .put(
            "/beta/users/u3/presence/sessions/s1",
            json!({"availability": "Busy", "activity": "InACall"}),
        )
        .await;
    reply.assert_ok_empty();
    for (advance, available, busy) in [
        (
            "PT5M",
            pair("Available", "AvailableInactive"),
            pair("Busy", "InACall"),
        ),
        ("PT5M", pair("Away", "Away"), pair("Busy", "InACall")),
        ("PT4M59S", pair("Away", "Away"), pair("Busy", "InACall")),
        (
            "PT1S",
            pair("Offline", "Offline"),
            pair("Offline", "Offline"),
        ),
    ] {
        server.advance(advance).await;
        assert_eq!(server.shown("u1").await, available);
        assert_eq!(server.shown("u2").await, available);
        assert_eq!(server.shown("u3").await, busy);
    }
}

#[tokio::test]
async fn the_idle_timeout_flag_shortens_the_stages_only() {
    let server = TestServer::start(&["--idle-timeout", "PT10S"]).await;
    server
        .set_presence("u1", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    check_timeline(
        &server,
        "u1",
        &[
            ("PT10S", "Available", "AvailableInactive"),
            ("PT10S", "Away", "Away"),
            // The expiration default is still five minutes.
            ("PT4M39S", "Away", "Away"),
            ("PT1S", "Offline", "Offline"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_sequence_number_grows_on_changes_caused_by_time() {
    let server = TestServer::start(&[]).await;
    let sequence = |reply: &crate::helpers::Reply| {
        reply.body["sequenceNumber"]
            .as_str()
            .expect("a string")
            .to_owned()
    };
    let never_written = server.get("/v1.0/users/u1/presence").await;
    server
        .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    let set = server.get("/v1.0/users/u1/presence").await;
    let again = server.get("/v1.0/users/u1/presence").await;
    assert_eq!(sequence(&set), sequence(&again), "no change, no growth");
    server.advance("PT5M").await;
    let faded = server.get("/v1.0/users/u1/presence").await;
    server.advance("PT5M").await;
    let away = server.get("/v1.0/users/u1/presence").await;
    let numbers = [
        sequence(&never_written),
        sequence(&set),
        sequence(&faded),
        sequence(&away),
    ];
    for window in numbers.windows(2) {
        assert!(window[0] < window[1], "{numbers:?} must grow");
    }
}
