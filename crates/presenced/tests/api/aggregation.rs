//! The aggregation ladder over HTTP: several sessions, user-preferred
//! presence and its expiry, status-message expiry, and clearing sessions.

use serde_json::json;

use crate::helpers::TestServer;

fn pair(availability: &str, activity: &str) -> (String, String) {
    (availability.to_owned(), activity.to_owned())
}

#[tokio::test]
async fn the_ladder_ranks_do_not_disturb_over_busy_over_available_over_inactive_over_away() {
    let server = TestServer::start(&[]).await;
    // Set from the strongest to the weakest, so that recency never explains
    // what is shown: each later session is weaker.
    for (session, availability, activity) in [
        ("dnd", "DoNotDisturb", "Presenting"),
        ("busy", "Busy", "InACall"),
        ("available", "Available", "Available"),
    ] {
        server
            .set_presence("u1", session, availability, activity, Some("PT1H"))
            .await
            .assert_ok_empty();
        server.advance("PT1S").await;
    }
    server.advance("PT4M57S").await;
    // Now the Available session is 4:58 old; set the Away session last.
    server
        .set_presence("u1", "away", "Away", "Away", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("DoNotDisturb", "Presenting"));
    server.clear_presence("u1", "dnd").await.assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Busy", "InACall"));
    server.clear_presence("u1", "busy").await.assert_ok_empty();
    assert_eq!(
        server.shown("u1").await,
        pair("Available", "Available"),
        "an active Available beats a more recent Away"
    );
    server.advance("PT2S").await;
    assert_eq!(
        server.shown("u1").await,
        pair("Available", "AvailableInactive"),
        "an inactive Available beats a more recent Away"
    );
    server.advance("PT5M").await;
    assert_eq!(server.shown("u1").await, pair("Away", "Away"));
    server.clear_presence("u1", "away").await.assert_ok_empty();
    assert_eq!(
        server.shown("u1").await,
        pair("Away", "Away"),
        "the faded Available session still shows Away"
    );
}

#[tokio::test]
async fn an_active_available_session_beats_an_inactive_one() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "early", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server.advance("PT6M").await;
    server
        .set_presence("u1", "late", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Available", "Available"));
    let sessions = server.get("/_presenced/users/u1/sessions").await;
    assert_eq!(
        sessions.body["decidedBy"],
        json!({"rule": "strongestSession", "sessionId": "late"}),
        "{}",
        sessions.text
    );
}

#[tokio::test]
async fn between_sessions_of_equal_strength_the_most_recently_set_wins() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "a", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    server.advance("PT1S").await;
    server
        .set_presence("u1", "b", "Busy", "InAConferenceCall", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Busy", "InAConferenceCall"));
    server.advance("PT1S").await;
    server
        .set_presence("u1", "a", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(
        server.shown("u1").await,
        pair("Busy", "InACall"),
        "refreshing a session makes it the most recently set"
    );
}

#[tokio::test]
async fn between_sessions_of_equal_strength_set_at_the_same_instant_the_one_set_last_wins() {
    // With the manual clock, requests between two advances all happen at the
    // same instant; the one sent last is still the most recently set.
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "alpha", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("u1", "zeta", "Busy", "InAConferenceCall", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(
        server.shown("u1").await,
        pair("Busy", "InAConferenceCall"),
        "zeta was set after alpha"
    );
}

#[tokio::test]
async fn preferred_presence_shows_only_while_a_session_exists() {
    let server = TestServer::start(&[]).await;
    server
        .set_preferred("u1", "DoNotDisturb", "DoNotDisturb", None)
        .await
        .assert_ok_empty();
    assert_eq!(
        server.shown("u1").await,
        pair("Offline", "Offline"),
        "no session, so the preferred presence has no effect"
    );
    server
        .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(
        server.shown("u1").await,
        pair("DoNotDisturb", "DoNotDisturb")
    );
    server.clear_presence("u1", "app").await.assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Offline", "Offline"));
    server
        .set_presence("u1", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(
        server.shown("u1").await,
        pair("DoNotDisturb", "DoNotDisturb"),
        "the preferred presence is kept while no session exists"
    );
    server
        .post(
            "/v1.0/users/u1/presence/clearUserPreferredPresence",
            json!({}),
        )
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Busy", "InACall"));
    // A second clear is a no-op that still answers 200.
    server
        .post(
            "/v1.0/users/u1/presence/clearUserPreferredPresence",
            json!({}),
        )
        .await
        .assert_ok_empty();
}

#[tokio::test]
async fn preferred_presence_ends_at_an_explicit_expiration() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Busy", "InACall", Some("PT4H"))
        .await
        .assert_ok_empty();
    server
        .set_preferred("u1", "Available", "Available", Some("PT30M"))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Available", "Available"));
    server.advance("PT29M59S").await;
    assert_eq!(server.shown("u1").await, pair("Available", "Available"));
    server.advance("PT1S").await;
    assert_eq!(server.shown("u1").await, pair("Busy", "InACall"));
}

#[tokio::test]
async fn preferred_presence_defaults_to_one_day_for_busy_and_dnd_and_seven_days_otherwise() {
    let server = TestServer::start(&[]).await;
    let session = pair("Busy", "InAConferenceCall");
    let users = [
        ("busy", "Busy", "Busy", 1),
        ("dnd", "DoNotDisturb", "DoNotDisturb", 1),
        ("away", "Away", "Away", 7),
        ("brb", "BeRightBack", "BeRightBack", 7),
        ("available", "Available", "Available", 7),
        ("offline", "Offline", "OffWork", 7),
    ];
    for (user, availability, activity, _) in users {
        server
            .set_preferred(user, availability, activity, None)
            .await
            .assert_ok_empty();
    }
    // Sessions last at most four hours, so each check sets a fresh one.
    let check = |elapsed_days: i32| {
        let server = &server;
        let session = session.clone();
        async move {
            for (user, availability, activity, days) in users {
                server
                    .set_presence(user, "app", "Busy", "InAConferenceCall", Some("PT5M"))
                    .await
                    .assert_ok_empty();
                let expected = if elapsed_days < days {
                    pair(availability, activity)
                } else {
                    session.clone()
                };
                assert_eq!(
                    server.shown(user).await,
                    expected,
                    "{user}'s preferred presence after {elapsed_days} day(s) (default {days})"
                );
            }
        }
    };
    server.advance("PT23H59M59S").await;
    check(0).await;
    server.advance("PT1S").await;
    check(1).await;
    server.advance("P5DT23H59M59S").await;
    check(6).await;
    server.advance("PT1S").await;
    check(7).await;
}

#[tokio::test]
async fn a_status_message_disappears_at_its_utc_expiry_and_the_sequence_number_grows() {
    let server = TestServer::start(&[]).await;
    let now = server.now().await;
    let expiry = now
        .checked_add(jiff::SignedDuration::from_mins(3))
        .expect("in range")
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    server
        .post(
            "/v1.0/users/u1/presence/setStatusMessage",
            json!({"statusMessage": {
                "message": {"content": "Back soon", "contentType": "text"},
                "expiryDateTime": {"dateTime": expiry, "timeZone": "UTC"},
            }}),
        )
        .await
        .assert_ok_empty();
    let set = server.presence("u1").await;
    assert_eq!(
        set["statusMessage"]["message"]["content"], "Back soon",
        "{set}"
    );
    assert_eq!(
        set["statusMessage"]["expiryDateTime"],
        json!({"dateTime": expiry, "timeZone": "UTC"}),
        "{set}"
    );
    server.advance("PT2M").await;
    let before = server.presence("u1").await;
    assert_eq!(
        before["statusMessage"]["message"]["content"], "Back soon",
        "{before}"
    );
    server.advance("PT1M").await;
    let after = server.presence("u1").await;
    assert_eq!(after["statusMessage"], serde_json::Value::Null, "{after}");
    assert!(
        after["sequenceNumber"].as_str() > before["sequenceNumber"].as_str(),
        "the expiry is a visible change: {before} then {after}"
    );
}

#[tokio::test]
async fn a_status_message_expiry_in_a_windows_time_zone_is_read_in_that_zone() {
    let server = TestServer::start(&[]).await;
    let now = server.now().await;
    // In the one hour a year when Pacific local times repeat (the end of
    // daylight saving), a local time names two instants and Graph takes the
    // earlier; Tokyo, which has no daylight saving, stands in then.
    let expiry = now
        .checked_add(jiff::SignedDuration::from_mins(3))
        .expect("in range");
    let pacific = jiff::tz::TimeZone::get("America/Los_Angeles").expect("a zone");
    let civil = expiry.to_zoned(pacific.clone()).datetime();
    let (zone, windows_name) = if pacific.to_ambiguous_zoned(civil).is_ambiguous() {
        (
            jiff::tz::TimeZone::get("Asia/Tokyo").expect("a zone"),
            "Tokyo Standard Time",
        )
    } else {
        (pacific, "Pacific Standard Time")
    };
    let local = expiry
        .to_zoned(zone)
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    server
        .post(
            "/v1.0/users/u1/presence/setStatusMessage",
            json!({"statusMessage": {
                "message": {"content": "Back soon", "contentType": "text"},
                "expiryDateTime": {"dateTime": local, "timeZone": windows_name},
            }}),
        )
        .await
        .assert_ok_empty();
    server.advance("PT2M").await;
    let before = server.presence("u1").await;
    assert_eq!(
        before["statusMessage"]["message"]["content"], "Back soon",
        "{local} in {windows_name} is three minutes away: {before}"
    );
    server.advance("PT1M").await;
    let after = server.presence("u1").await;
    assert_eq!(after["statusMessage"], serde_json::Value::Null, "{after}");
}

#[tokio::test]
async fn clearing_the_only_session_shows_offline_and_clearing_a_missing_one_is_404() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let before = server.sequence_number("u1").await;
    server.clear_presence("u1", "app").await.assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Offline", "Offline"));
    assert!(server.sequence_number("u1").await > before);

    let message = server
        .clear_presence("u1", "app")
        .await
        .assert_error(404, "NotFound");
    assert!(
        message.contains("app"),
        "the message names the session: {message}"
    );
    server
        .clear_presence("never-written", "app")
        .await
        .assert_error(404, "NotFound");
    server
        .set_presence("u2", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    server
        .clear_presence("u2", "other-app")
        .await
        .assert_error(404, "NotFound");
    assert_eq!(
        server.shown("u2").await,
        pair("Busy", "InACall"),
        "clearing another session leaves this one"
    );
    server.advance("PT5M").await;
    server
        .clear_presence("u2", "app")
        .await
        .assert_error(404, "NotFound");
    for form in [
        "/v1.0/me/presence/clearPresence",
        "/beta/communications/presences/u3/clearPresence",
    ] {
        let reply = server
            .post_as(form, Some("u3"), json!({"sessionId": "app"}))
            .await;
        reply.assert_error(404, "NotFound");
    }
}

#[tokio::test]
async fn clearing_one_of_two_sessions_shows_the_other() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "teams", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("u1", "phone", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Busy", "InACall"));
    server.clear_presence("u1", "phone").await.assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Available", "Available"));
}
