//! What presenced offers beyond Graph, under `/_presenced/`: the sessions
//! behind a presence, out-of-office settings, and the manual clock.

use serde_json::{Value, json};

use crate::helpers::{TestServer, graph_instant};

fn later(now: jiff::Timestamp, seconds: i64) -> String {
    graph_instant(
        now.checked_add(jiff::SignedDuration::from_secs(seconds))
            .expect("in range"),
    )
}

/// The session with `id` in a sessions reply.
fn session<'a>(reply: &'a Value, id: &str) -> &'a Value {
    reply["sessions"]
        .as_array()
        .and_then(|sessions| sessions.iter().find(|session| session["sessionId"] == id))
        .unwrap_or_else(|| panic!("no session {id}: {reply}"))
}

#[tokio::test]
async fn the_sessions_endpoint_shows_each_session_stage_deadlines_and_the_deciding_rule() {
    let server = TestServer::start(&[]).await;
    let t0 = server.now().await;
    server
        .set_presence("u1", "busy-app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("u1", "teams", "Available", "Available", Some("PT2H"))
        .await
        .assert_ok_empty();

    let reply = server.get("/_presenced/users/u1/sessions").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = &reply.body;
    assert_eq!(body["id"], "u1", "{body}");
    assert_eq!(body["availability"], "Busy", "{body}");
    assert_eq!(body["activity"], "InACall", "{body}");
    assert_eq!(
        body["decidedBy"],
        json!({"rule": "strongestSession", "sessionId": "busy-app"}),
        "{body}"
    );
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(
        body["nextChangeDateTime"],
        later(t0, 3_600),
        "fades of the weaker session change nothing shown; Busy ending does: {body}"
    );
    assert_eq!(body["now"], graph_instant(t0), "{body}");
    assert_eq!(
        body["sessions"][0]["sessionId"], "busy-app",
        "the strongest session comes first: {body}"
    );
    let busy = session(body, "busy-app");
    assert_eq!(busy["stage"], "steady", "{busy}");
    assert_eq!(
        busy["nextFadeDateTime"],
        Value::Null,
        "Busy never fades: {busy}"
    );
    assert_eq!(busy["expirationDateTime"], later(t0, 3_600), "{busy}");
    assert_eq!(busy["decidesPresence"], true, "{busy}");
    assert_eq!(busy["kind"], "application", "{busy}");
    let teams = session(body, "teams");
    assert_eq!(teams["stage"], "active", "{teams}");
    assert_eq!(teams["availability"], "Available", "{teams}");
    assert_eq!(teams["activity"], "Available", "{teams}");
    assert_eq!(teams["nextFadeDateTime"], later(t0, 300), "{teams}");
    assert_eq!(teams["expirationDateTime"], later(t0, 7_200), "{teams}");
    assert_eq!(teams["decidesPresence"], false, "{teams}");

    server.advance("PT5M").await;
    let reply = server.get("/_presenced/users/u1/sessions").await;
    let teams = session(&reply.body, "teams");
    assert_eq!(teams["stage"], "inactive", "{teams}");
    assert_eq!(teams["activity"], "AvailableInactive", "{teams}");
    assert_eq!(teams["setAvailability"], "Available", "{teams}");
    assert_eq!(teams["setActivity"], "Available", "{teams}");
    assert_eq!(teams["nextFadeDateTime"], later(t0, 600), "{teams}");

    server.advance("PT5M").await;
    let reply = server.get("/_presenced/users/u1/sessions").await;
    let teams = session(&reply.body, "teams");
    assert_eq!(teams["stage"], "away", "{teams}");
    assert_eq!(teams["availability"], "Away", "{teams}");
    assert_eq!(teams["nextFadeDateTime"], Value::Null, "{teams}");

    server
        .set_preferred("u1", "DoNotDisturb", "DoNotDisturb", Some("PT1H"))
        .await
        .assert_ok_empty();
    let reply = server.get("/_presenced/users/u1/sessions").await;
    let body = &reply.body;
    assert_eq!(
        body["decidedBy"],
        json!({"rule": "userPreferredPresence"}),
        "{body}"
    );
    assert_eq!(body["availability"], "DoNotDisturb", "{body}");
    assert_eq!(body["userPreferredPresence"]["inEffect"], true, "{body}");
    for id in ["busy-app", "teams"] {
        assert_eq!(session(body, id)["decidesPresence"], false, "{body}");
    }

    for id in ["busy-app", "teams"] {
        server.clear_presence("u1", id).await.assert_ok_empty();
    }
    let reply = server.get("/_presenced/users/u1/sessions").await;
    let body = &reply.body;
    assert_eq!(body["decidedBy"], json!({"rule": "noSession"}), "{body}");
    assert_eq!(body["sessions"], json!([]), "{body}");
    assert_eq!(body["availability"], "Offline", "{body}");
    assert_eq!(body["userPreferredPresence"]["inEffect"], false, "{body}");
}

#[tokio::test]
async fn the_sessions_endpoint_answers_for_a_never_written_user_and_shows_legacy_sessions() {
    let server = TestServer::start(&[]).await;
    let reply = server.get("/_presenced/users/nobody/sessions").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body["decidedBy"],
        json!({"rule": "noSession"}),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["sessions"], json!([]), "{}", reply.text);
    assert_eq!(
        reply.body["userPreferredPresence"],
        Value::Null,
        "{}",
        reply.text
    );

    let t0 = server.now().await;
    server
        .put(
            "/beta/users/u1/presence/sessions/old-client",
            json!({"availability": "Available", "activity": "Available"}),
        )
        .await
        .assert_ok_empty();
    let reply = server.get("/_presenced/users/u1/sessions").await;
    let legacy = session(&reply.body, "old-client");
    assert_eq!(legacy["kind"], "legacy", "{legacy}");
    assert_eq!(legacy["stage"], "active", "{legacy}");
    assert_eq!(
        legacy["expirationDateTime"],
        later(t0, 900),
        "a legacy session ends at the third idle timeout: {legacy}"
    );
    assert_eq!(legacy["decidesPresence"], true, "{legacy}");

    server
        .get("/_presenced/users/a!b/sessions")
        .await
        .assert_error(400, "BadRequest");
}

#[tokio::test]
async fn out_of_office_settings_put_through_the_extension_show_in_graphs_presence() {
    let server = TestServer::start(&[]).await;
    let before = server.sequence_number("u1").await;
    server
        .put(
            "/_presenced/users/u1/outOfOffice",
            json!({"isOutOfOffice": true, "message": "On leave until Monday"}),
        )
        .await
        .assert_ok_empty();
    for path in [
        "/v1.0/users/u1/presence",
        "/beta/communications/presences/u1",
    ] {
        let reply = server.get(path).await;
        assert_eq!(
            reply.body["outOfOfficeSettings"],
            json!({"message": "On leave until Monday", "isOutOfOffice": true}),
            "GET {path}: {}",
            reply.text
        );
    }
    let reply = server.get_as("/v1.0/me/presence", Some("u1")).await;
    assert_eq!(
        reply.body["outOfOfficeSettings"]["isOutOfOffice"], true,
        "{}",
        reply.text
    );
    assert!(
        server.sequence_number("u1").await > before,
        "out of office is a visible change"
    );

    server
        .put(
            "/_presenced/users/u1/outOfOffice",
            json!({"isOutOfOffice": false}),
        )
        .await
        .assert_ok_empty();
    assert_eq!(
        server.presence("u1").await["outOfOfficeSettings"],
        json!({"message": null, "isOutOfOffice": false})
    );

    let message = server
        .put("/_presenced/users/u1/outOfOffice", json!({"message": "hi"}))
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("IsOutOfOffice"), "{message}");
    server
        .put(
            "/_presenced/users/u1/outOfOffice",
            json!({"isOutOfOffice": "yes"}),
        )
        .await
        .assert_error(400, "BadRequest");
}

#[tokio::test]
async fn the_manual_clock_reads_now_and_advances_by_exactly_the_amount() {
    let server = TestServer::start(&[]).await;
    let reply = server.get("/_presenced/clock").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let text = reply.body["now"].as_str().expect("now is a string");
    assert!(text.ends_with('Z'), "an RFC 3339 UTC instant: {text}");
    let start: jiff::Timestamp = text.parse().expect("RFC 3339");

    // The manual clock never moves by itself.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(server.now().await, start);

    let reply = server
        .post("/_presenced/clock/advance", json!({"by": "PT1H30M5.5S"}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let expected = start
        .checked_add(jiff::SignedDuration::from_millis(5_405_500))
        .expect("in range");
    assert_eq!(reply.body["now"], graph_instant(expected), "{}", reply.text);
    assert_eq!(server.now().await, expected);

    server.advance("P1D").await;
    server.advance("PT0S").await;
    let expected = expected
        .checked_add(jiff::SignedDuration::from_hours(24))
        .expect("in range");
    assert_eq!(server.now().await, expected);
    server.advance("0:05:00").await;
    assert_eq!(
        server.now().await,
        expected
            .checked_add(jiff::SignedDuration::from_mins(5))
            .expect("in range")
    );
}

#[tokio::test]
async fn the_manual_clock_refuses_negative_missing_and_malformed_amounts() {
    let server = TestServer::start(&[]).await;
    let start = server.now().await;
    for (body, needle) in [
        (json!({"by": "-PT5M"}), "negative"),
        (json!({"by": "-1 day, 23:55:00"}), "negative"),
        (json!({}), "[By]"),
        (json!({"by": null}), "[By]"),
        (json!({"by": ""}), "empty"),
        (json!({"by": "soon"}), "soon"),
        (json!({"by": "P1Y"}), "years"),
    ] {
        let reply = server.post("/_presenced/clock/advance", body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        let message = reply.assert_error(400, "InvalidArgument");
        assert!(message.contains(needle), "{body}: {message}");
    }
    server
        .post("/_presenced/clock/advance", json!({"by": 300}))
        .await
        .assert_error(400, "BadRequest");
    assert_eq!(server.now().await, start, "a refused advance moves nothing");
}

#[tokio::test]
async fn the_clock_endpoints_are_404_envelopes_with_the_system_clock() {
    let server =
        TestServer::start_with(&["serve", "--listen", "127.0.0.1:0", "--store", "memory"]).await;
    let message = server
        .get("/_presenced/clock")
        .await
        .assert_error(404, "NotFound");
    assert!(message.contains("--clock manual"), "{message}");
    server
        .post("/_presenced/clock/advance", json!({"by": "PT5M"}))
        .await
        .assert_error(404, "NotFound");
    let reply = server.get("/v1.0/users/u1/presence").await;
    assert_eq!(reply.status, 200, "the rest is served: {}", reply.text);
}
