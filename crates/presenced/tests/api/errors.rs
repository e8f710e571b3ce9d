//! Bad input: each is a 4xx with Graph's OData error envelope, never a 5xx
//! (the helpers fail any test that sees one), and never a partial write.

use serde_json::{Value, json};

use crate::endpoints::{ACTIONS, FORMS, Form, VERSIONS};
use crate::helpers::{Reply, TestServer, dev_token};

/// A valid body for each action, for tests that break one thing at a time.
fn valid_body(action: &str) -> Value {
    match action {
        "setPresence" => json!({
            "sessionId": "app", "availability": "Available", "activity": "Available",
            "expirationDuration": "PT1H",
        }),
        "clearPresence" => json!({"sessionId": "app"}),
        "setUserPreferredPresence" => {
            json!({"availability": "Busy", "activity": "Busy", "expirationDuration": "PT8H"})
        }
        "setStatusMessage" => json!({"statusMessage": {
            "message": {"content": "Hello", "contentType": "text"},
            "expiryDateTime": {"dateTime": "2099-10-18T17:05:33.2079781", "timeZone": "Pacific Standard Time"},
        }}),
        "setManualLocation" | "setAutomaticLocation" => {
            json!({"workLocationType": "office", "placeId": "b40"})
        }
        _ => json!({}),
    }
}

/// The actions that take parameters.
const ACTIONS_WITH_PARAMETERS: [&str; 5] = [
    "setPresence",
    "clearPresence",
    "setUserPreferredPresence",
    "setStatusMessage",
    "setManualLocation",
];

/// The actions that take no body: they ignore any body and its type, as
/// the SDKs send them.
const NO_BODY: [&str; 3] = [
    "clearUserPreferredPresence",
    "clearLocation",
    "clearAutomaticLocation",
];

/// Posts a raw body to `path`, and requires a 4xx envelope with `status`.
async fn expect_refused(server: &TestServer, path: &str, body: &[u8], status: u16) -> Reply {
    let reply = server.post_raw(path, body.to_vec()).await;
    assert_eq!(
        reply.status,
        status,
        "POST {path} with {:?}: {}",
        String::from_utf8_lossy(body),
        reply.text
    );
    let code = reply.body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    reply.assert_error(status, &code);
    reply
}

#[tokio::test]
async fn malformed_json_is_a_400_bad_request_on_every_action_that_takes_a_body() {
    let server = TestServer::start(&[]).await;
    for action in ACTIONS.iter().filter(|action| !NO_BODY.contains(action)) {
        let path = format!("/v1.0/users/u1/presence/{action}");
        for body in [
            &b"{"[..],
            b"{\"sessionId\": \"app\",",
            b"{'sessionId': 'app'}",
            b"{\"a\": 1} trailing",
            b"\xff\xfe{}",
            b"not json at all",
        ] {
            let reply = expect_refused(&server, &path, body, 400).await;
            assert_eq!(reply.body["error"]["code"], "BadRequest", "{}", reply.text);
        }
    }
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned())
    );
}

#[tokio::test]
async fn json_that_is_not_an_object_is_a_400_on_actions_with_parameters() {
    let server = TestServer::start(&[]).await;
    for action in ACTIONS_WITH_PARAMETERS
        .iter()
        .chain(["setAutomaticLocation"].iter())
    {
        let path = format!("/v1.0/users/u1/presence/{action}");
        for body in ["[]", "\"app\"", "42", "true", "null", "1e999"] {
            expect_refused(&server, &path, body.as_bytes(), 400).await;
        }
    }
    for path in [
        "/v1.0/communications/getPresencesByUserId",
        "/_presenced/clock/advance",
    ] {
        for body in ["[\"u1\"]", "\"u1\"", "42", "null"] {
            expect_refused(&server, path, body.as_bytes(), 400).await;
        }
    }
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned())
    );
}

#[tokio::test]
async fn a_json_array_is_not_read_as_the_parameters_in_order() {
    // Graph's action parameters are the members of one JSON object; an
    // array that lists them positionally is not an object and must be
    // refused, not applied.
    let server = TestServer::start(&[]).await;
    server
        .put(
            "/_presenced/users/u2/outOfOffice",
            json!({"isOutOfOffice": false}),
        )
        .await
        .assert_ok_empty();
    server
        .post(
            "/v1.0/users/u2/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "keep me"}}}),
        )
        .await
        .assert_ok_empty();
    let clock = server.now().await;
    let cases: [(&str, &str, &str); 8] = [
        (
            "POST",
            "/v1.0/users/u1/presence/setPresence",
            r#"["app", "Busy", "InACall", "PT1H"]"#,
        ),
        (
            "POST",
            "/v1.0/users/u1/presence/setUserPreferredPresence",
            r#"["DoNotDisturb", "DoNotDisturb", "PT8H"]"#,
        ),
        (
            "POST",
            "/v1.0/users/u2/presence/setStatusMessage",
            r#"[null]"#,
        ),
        (
            "POST",
            "/v1.0/users/u1/presence/setManualLocation",
            r#"["office", "b40"]"#,
        ),
        (
            "POST",
            "/v1.0/communications/getPresencesByUserId",
            r#"[["u1", "u2"]]"#,
        ),
        ("POST", "/_presenced/clock/advance", r#"["PT1M"]"#),
        (
            "PUT",
            "/_presenced/users/u2/outOfOffice",
            r#"[true, "gone"]"#,
        ),
        (
            "PUT",
            "/beta/users/u1/presence/sessions/s1",
            r#"["Busy", "InACall"]"#,
        ),
    ];
    let mut accepted = Vec::new();
    for (method, path, body) in cases {
        let request = server
            .client()
            .request(method.parse().expect("a method"), server.url(path))
            .header("content-type", "application/json")
            .body(body);
        let reply = server.send(request).await;
        if reply.status != 400 {
            accepted.push(format!(
                "{method} {path} {body} -> {} {}",
                reply.status, reply.text
            ));
        } else {
            reply.assert_error(400, "BadRequest");
        }
    }
    let u1 = server.presence("u1").await;
    let u2 = server.presence("u2").await;
    assert!(
        accepted.is_empty(),
        "positional arrays were accepted:\n{}\nu1 now: {u1}\nu2 now: {u2}",
        accepted.join("\n")
    );
    assert_eq!(u1["availability"], "Offline", "{u1}");
    assert_eq!(u1["workLocation"]["source"], "none", "{u1}");
    assert_eq!(u2["statusMessage"]["message"]["content"], "keep me", "{u2}");
    assert_eq!(u2["outOfOfficeSettings"]["isOutOfOffice"], false, "{u2}");
    assert_eq!(server.now().await, clock, "the clock did not move");
}

#[tokio::test]
async fn values_of_the_wrong_type_are_a_400_naming_the_field() {
    let server = TestServer::start(&[]).await;
    let cases = [
        (
            "setPresence",
            json!({"sessionId": "app", "availability": 5, "activity": "Available"}),
            "availability",
        ),
        (
            "setPresence",
            json!({"sessionId": 7, "availability": "Available", "activity": "Available"}),
            "sessionId",
        ),
        (
            "setPresence",
            json!({"sessionId": "app", "availability": "Available", "activity": ["Available"]}),
            "activity",
        ),
        (
            "setPresence",
            json!({"sessionId": "app", "availability": "Available", "activity": "Available", "expirationDuration": 300}),
            "expirationDuration",
        ),
        (
            "clearPresence",
            json!({"sessionId": {"id": "app"}}),
            "sessionId",
        ),
        (
            "setUserPreferredPresence",
            json!({"availability": true, "activity": "Busy"}),
            "availability",
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": "Hello"}),
            "statusMessage",
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": {"message": {"content": 5}}}),
            "content",
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": {"message": {"content": "x"}, "expiryDateTime": "2099-01-01"}}),
            "expiryDateTime",
        ),
        (
            "setManualLocation",
            json!({"workLocationType": 1}),
            "workLocationType",
        ),
        (
            "setAutomaticLocation",
            json!({"workLocationType": "office", "placeId": 9}),
            "placeId",
        ),
    ];
    for (action, body, field) in cases {
        let reply = server
            .post(&format!("/v1.0/users/u1/presence/{action}"), body.clone())
            .await;
        assert_eq!(reply.status, 400, "{action} {body}: {}", reply.text);
        let message = reply.assert_error(400, "BadRequest");
        assert!(
            message.contains(field),
            "{action} {body}: the message names {field}: {message}"
        );
    }
    for body in [
        json!({"ids": "x"}),
        json!({"ids": [1, 2]}),
        json!({"ids": {"0": "u1"}}),
    ] {
        let reply = server
            .post("/v1.0/communications/getPresencesByUserId", body.clone())
            .await;
        let message = reply.assert_error(400, "BadRequest");
        assert!(message.contains("ids"), "{body}: {message}");
    }
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned()),
        "nothing was written"
    );
}

#[tokio::test]
async fn unknown_enum_values_are_a_400_listing_the_allowed_values() {
    let server = TestServer::start(&[]).await;
    let cases = [
        (
            "setPresence",
            json!({"sessionId": "app", "availability": "Sleeping", "activity": "Available"}),
            "Sleeping",
            &["Available", "Busy", "DoNotDisturb", "Away"][..],
        ),
        (
            "setPresence",
            json!({"sessionId": "app", "availability": "Available", "activity": "Napping"}),
            "Napping",
            &["Available", "InACall", "Presenting"][..],
        ),
        (
            "setUserPreferredPresence",
            json!({"availability": "Gone", "activity": "Away"}),
            "Gone",
            &["BeRightBack", "Offline"][..],
        ),
        (
            "setManualLocation",
            json!({"workLocationType": "moon"}),
            "moon",
            &["office", "remote", "timeOff"][..],
        ),
        (
            "setAutomaticLocation",
            json!({"workLocationType": ""}),
            "workLocationType",
            &["office", "remote"][..],
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": {"message": {"content": "x", "contentType": "html"}}}),
            "html",
            &["text"][..],
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": {"message": {"content": "x"}, "expiryDateTime": {"dateTime": "2099-01-01T00:00:00", "timeZone": "Mars/Olympus"}}}),
            "Mars/Olympus",
            &["Pacific Standard Time"][..],
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": {"message": {"content": "x"}, "expiryDateTime": {"dateTime": "tomorrow", "timeZone": "UTC"}}}),
            "tomorrow",
            &["2026-10-18T17:05:33"][..],
        ),
    ];
    for (action, body, named, allowed) in cases {
        let reply = server
            .post(&format!("/v1.0/users/u1/presence/{action}"), body.clone())
            .await;
        assert_eq!(reply.status, 400, "{action} {body}: {}", reply.text);
        let message = reply.assert_error(400, "InvalidArgument");
        assert!(message.contains(named), "{action} {body}: {message}");
        for value in allowed {
            assert!(
                message.contains(value),
                "{action} {body}: the message lists {value}: {message}"
            );
        }
    }
    let reply = server
        .put(
            "/beta/users/u1/presence/sessions/s1",
            json!({"availability": "Sleeping", "activity": "Available"}),
        )
        .await;
    let message = reply.assert_error(400, "InvalidArgument");
    assert!(
        message.contains("Sleeping") && message.contains("Available"),
        "{message}"
    );
    let presence = server.presence("u1").await;
    assert_eq!(
        presence["availability"], "Offline",
        "nothing was written: {presence}"
    );
    assert_eq!(
        presence["statusMessage"],
        Value::Null,
        "nothing was written: {presence}"
    );
    assert_eq!(
        presence["workLocation"]["source"], "none",
        "nothing was written: {presence}"
    );
}

#[tokio::test]
async fn missing_required_fields_are_a_400_invalid_argument_naming_them() {
    let server = TestServer::start(&[]).await;
    let required = "[SessionId]: The SessionId field is required.";
    let message = server
        .post("/v1.0/users/u1/presence/clearPresence", json!({}))
        .await
        .assert_error(400, "InvalidArgument");
    assert_eq!(message, required);
    let no_body = server
        .client()
        .post(server.url("/v1.0/users/u1/presence/clearPresence"))
        .header("content-type", "application/json");
    let message = server
        .send(no_body)
        .await
        .assert_error(400, "InvalidArgument");
    assert_eq!(message, required, "an empty JSON body reads as {{}}");
    let cases = [
        (
            "setPresence",
            json!({"availability": "Available", "activity": "Available"}),
            "[SessionId]",
        ),
        (
            "setPresence",
            json!({"sessionId": "app", "activity": "Available"}),
            "[Availability]",
        ),
        (
            "setPresence",
            json!({"sessionId": "app", "availability": "Available"}),
            "[Activity]",
        ),
        (
            "setPresence",
            json!({"sessionId": null, "availability": "Available", "activity": "Available"}),
            "[SessionId]",
        ),
        (
            "setUserPreferredPresence",
            json!({"activity": "Busy"}),
            "[Availability]",
        ),
        (
            "setUserPreferredPresence",
            json!({"availability": "Busy"}),
            "[Activity]",
        ),
        ("setStatusMessage", json!({}), "[StatusMessage]"),
        (
            "setManualLocation",
            json!({"placeId": "b40"}),
            "[WorkLocationType]",
        ),
        ("setAutomaticLocation", json!({}), "[WorkLocationType]"),
    ];
    for (action, body, field) in cases {
        let message = server
            .post(&format!("/v1.0/users/u1/presence/{action}"), body.clone())
            .await
            .assert_error(400, "InvalidArgument");
        assert!(message.contains(field), "{action} {body}: {message}");
    }
    let message = server
        .post("/v1.0/communications/getPresencesByUserId", json!({}))
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("[Ids]"), "{message}");
    let message = server
        .put(
            "/beta/users/u1/presence/sessions/s1",
            json!({"availability": "Available"}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("[Activity]"), "{message}");
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned())
    );
}

#[tokio::test]
async fn bodies_over_128_kib_are_a_413_envelope() {
    let server = TestServer::start(&[]).await;
    let padding = "x".repeat(128 * 1024 + 1);
    let oversized = [
        (
            "/v1.0/users/u1/presence/setPresence",
            json!({"sessionId": "app", "availability": "Available", "activity": "Available", "pad": padding}),
        ),
        (
            "/v1.0/users/u1/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": padding}}}),
        ),
        (
            "/v1.0/communications/getPresencesByUserId",
            json!({"ids": vec!["u"; 70_000]}),
        ),
        (
            "/_presenced/clock/advance",
            json!({"by": "PT1M", "pad": padding}),
        ),
    ];
    for (path, body) in oversized {
        let reply = server.post_as(path, Some("u1"), body).await;
        assert_eq!(reply.status, 413, "POST {path}: {}", reply.text);
        let message = reply.assert_error(413, "RequestEntityTooLarge");
        assert!(
            message.contains("larger") || message.contains("too large"),
            "{message}"
        );
    }
    let reply = server
        .put(
            "/beta/users/u1/presence/sessions/s1",
            json!({"availability": "Available", "activity": "Available", "pad": padding}),
        )
        .await;
    reply.assert_error(413, "RequestEntityTooLarge");
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned())
    );
}

#[tokio::test]
async fn a_status_message_longer_than_the_limit_is_refused() {
    let server = TestServer::start(&[]).await;
    let message = server
        .post(
            "/v1.0/users/u1/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "x".repeat(1_001)}}}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("1000"), "{message}");
    server
        .post(
            "/v1.0/users/u1/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "é".repeat(1_000)}}}),
        )
        .await
        .assert_ok_empty();
}

#[tokio::test]
async fn bad_ids_in_the_path_are_a_400() {
    let server = TestServer::start(&[]).await;
    let too_long = "a".repeat(129);
    let longest = "a".repeat(128);
    for id in [
        too_long.as_str(),
        "a%20b",
        "a!b",
        "a%2Fb",
        "%C3%A9",
        "a,b",
        "a%00b",
    ] {
        for version in VERSIONS {
            for form in [Form::Users, Form::Communications] {
                let path = form.path(version, id);
                let reply = server.get(&path).await;
                assert_eq!(reply.status, 400, "GET {path}: {}", reply.text);
                reply.assert_error(400, "BadRequest");
                let reply = server
                    .post(&format!("{path}/setPresence"), valid_body("setPresence"))
                    .await;
                assert_eq!(reply.status, 400, "POST {path}/setPresence: {}", reply.text);
                reply.assert_error(400, "BadRequest");
            }
        }
        server
            .get(&format!("/_presenced/users/{id}/sessions"))
            .await
            .assert_error(400, "BadRequest");
        server
            .put(
                &format!("/_presenced/users/{id}/outOfOffice"),
                json!({"isOutOfOffice": true}),
            )
            .await
            .assert_error(400, "BadRequest");
        let reply = server
            .put(
                &format!("/beta/users/u1/presence/sessions/{id}"),
                json!({"availability": "Available", "activity": "Available"}),
            )
            .await;
        assert_eq!(reply.status, 400, "legacy session id {id}: {}", reply.text);
        let message = server
            .post(
                "/v1.0/communications/getPresencesByUserId",
                json!({"ids": ["u1", percent_decoded(id)]}),
            )
            .await
            .assert_error(400, "BadRequest");
        assert!(message.contains("user id"), "{message}");
        let reply = server
            .set_presence("u1", &percent_decoded(id), "Available", "Available", None)
            .await;
        assert_eq!(reply.status, 400, "sessionId {id}: {}", reply.text);
    }
    let reply = server.get(&format!("/v1.0/users/{longest}/presence")).await;
    assert_eq!(
        reply.status, 200,
        "128 characters are allowed: {}",
        reply.text
    );
    let message = server
        .get(&format!("/v1.0/users/{too_long}/presence"))
        .await
        .assert_error(400, "BadRequest");
    assert!(message.contains("128"), "{message}");
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned()),
        "nothing was written"
    );
}

/// The id a path segment stands for, for sending it in a JSON body.
fn percent_decoded(id: &str) -> String {
    match id {
        "a%20b" => "a b".to_owned(),
        "a%2Fb" => "a/b".to_owned(),
        "%C3%A9" => "é".to_owned(),
        "a%00b" => "a\0b".to_owned(),
        other => other.to_owned(),
    }
}

#[tokio::test]
async fn an_oid_claim_that_is_not_a_valid_id_is_a_400() {
    let server = TestServer::start(&[]).await;
    let reply = server.get_as("/v1.0/me/presence", Some("not an id!")).await;
    let message = reply.assert_error(400, "BadRequest");
    assert!(message.contains("oid"), "{message}");
}

#[tokio::test]
async fn durations_outside_pt5m_to_pt4h_or_malformed_are_a_400_and_write_nothing() {
    let server = TestServer::start(&[]).await;
    let out_of_range = "The provided [ExpirationDuration] is out of range.";
    for duration in [
        "PT1M", "PT5H", "PT4M59S", "PT4H0M1S", "-PT5M", "PT0S", "4:00:01", "0:04:59", "P1D",
    ] {
        let message = server
            .set_presence("u1", "app", "Available", "Available", Some(duration))
            .await
            .assert_error(400, "InvalidArgument");
        assert!(message.contains(out_of_range), "{duration}: {message}");
    }
    for (duration, needle) in [
        ("1h", "'1h'"),
        ("P1Y", "years"),
        ("P1M", "years or months"),
        ("", "empty"),
        ("   ", "empty"),
        ("300", "unit"),
        ("PT", "'T'"),
        ("P", "'P'"),
        ("PT5M30", "unit"),
        ("5 minutes", "5 minutes"),
        ("1 day 0:00:00", "day"),
        ("0:5:00", "H:MM:SS"),
        ("P99999999999999999999999D", "too large"),
    ] {
        let message = server
            .set_presence("u1", "app", "Available", "Available", Some(duration))
            .await
            .assert_error(400, "InvalidArgument");
        assert!(
            message.contains("expirationDuration") && message.contains(needle),
            "{duration:?}: the message names the field and says {needle}: {message}"
        );
    }
    for duration in ["PT0S", "-PT1H", "-1 day, 23:00:00"] {
        let message = server
            .set_preferred("u1", "Busy", "Busy", Some(duration))
            .await
            .assert_error(400, "InvalidArgument");
        assert!(message.contains("out of range"), "{duration}: {message}");
    }
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned()),
        "nothing was written"
    );
    for duration in ["PT5M", "PT4H", "pt1h", " PT1H ", "PT0.5H", "P0DT1H"] {
        server
            .set_presence("u1", "app", "Available", "Available", Some(duration))
            .await
            .assert_ok_empty();
    }
}

#[tokio::test]
async fn a_batch_takes_up_to_650_ids_and_answers_one_entry_per_id_in_order() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("user-17", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    let ids: Vec<String> = (0..650)
        .map(|index| format!("user-{index}"))
        .rev()
        .collect();
    let reply = server
        .post(
            "/v1.0/communications/getPresencesByUserId",
            json!({"ids": ids}),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        &reply.text[..reply.text.len().min(500)]
    );
    let value = reply.body["value"].as_array().expect("value");
    assert_eq!(value.len(), 650);
    for (entry, id) in value.iter().zip(&ids) {
        assert_eq!(&entry["id"], id, "entries come in the order asked");
        let expected = if id == "user-17" { "Busy" } else { "Offline" };
        assert_eq!(entry["availability"], expected, "{entry}");
    }

    let mut too_many = ids.clone();
    too_many.push("user-650".to_owned());
    let message = server
        .post(
            "/v1.0/communications/getPresencesByUserId",
            json!({"ids": too_many}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("650"), "{message}");

    let reply = server
        .post(
            "/beta/communications/getPresencesByUserId",
            json!({"ids": ["user-17", "nobody", "user-17", "nobody"]}),
        )
        .await;
    let value = reply.body["value"].as_array().expect("value");
    let shown: Vec<(&str, &str)> = value
        .iter()
        .map(|entry| {
            (
                entry["id"].as_str().unwrap_or("?"),
                entry["availability"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("user-17", "Busy"),
            ("nobody", "Offline"),
            ("user-17", "Busy"),
            ("nobody", "Offline")
        ],
        "duplicates get one entry each: {}",
        reply.text
    );

    // 650 ids of the longest accepted length fit in one body.
    let longest: Vec<String> = (0..650).map(|index| format!("{index:0>128}")).collect();
    let reply = server
        .post(
            "/v1.0/communications/getPresencesByUserId",
            json!({"ids": longest}),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        &reply.text[..reply.text.len().min(500)]
    );
    assert_eq!(reply.body["value"].as_array().map(Vec::len), Some(650));

    let reply = server
        .post(
            "/v1.0/communications/getPresencesByUserId",
            json!({"ids": []}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["value"], json!([]), "{}", reply.text);
    for body in [json!({}), json!({"ids": null})] {
        server
            .post("/v1.0/communications/getPresencesByUserId", body)
            .await
            .assert_error(400, "InvalidArgument");
    }
}

#[tokio::test]
async fn the_client_request_id_is_echoed_and_every_response_has_a_request_id() {
    let server = TestServer::start(&[]).await;
    let header = |reply: &Reply, name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    // An error: both headers, and the same ids in the envelope.
    let request = server
        .client()
        .post(server.url("/v1.0/users/u1/presence/clearPresence"))
        .header("client-request-id", "c0ffee-1234")
        .json(&json!({}));
    let reply = server.send(request).await;
    reply.assert_error(400, "InvalidArgument");
    let inner = &reply.body["error"]["innerError"];
    assert_eq!(inner["client-request-id"], "c0ffee-1234", "{}", reply.text);
    assert_eq!(
        header(&reply, "client-request-id").as_deref(),
        Some("c0ffee-1234")
    );
    let request_id = header(&reply, "request-id").expect("a request-id header");
    assert_eq!(inner["request-id"], request_id.as_str(), "{}", reply.text);
    let date = inner["date"].as_str().expect("a date");
    assert!(
        date.len() == 19 && date.parse::<jiff::civil::DateTime>().is_ok(),
        "date is UTC without offset or fraction: {date}"
    );

    // A success: both headers too.
    let request = server
        .client()
        .get(server.url("/v1.0/users/u1/presence"))
        .header("client-request-id", "abc-123");
    let reply = server.send(request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        header(&reply, "client-request-id").as_deref(),
        Some("abc-123")
    );
    assert!(header(&reply, "request-id").is_some_and(|id| !id.is_empty()));

    // Without a client-request-id, the request-id stands in for it.
    let reply = server.get("/v1.0/nothing-here").await;
    reply.assert_error(404, "NotFound");
    let inner = &reply.body["error"]["innerError"];
    assert_eq!(
        inner["client-request-id"], inner["request-id"],
        "{}",
        reply.text
    );

    // Each request gets its own request-id.
    let first = server.get("/healthz").await;
    let second = server.get("/healthz").await;
    assert_ne!(header(&first, "request-id"), header(&second, "request-id"));

    // A client-request-id that could inject anything is not echoed.
    let request = server
        .client()
        .get(server.url("/v1.0/nothing-here"))
        .header("client-request-id", "x".repeat(500));
    let reply = server.send(request).await;
    let inner = &reply.body["error"]["innerError"];
    assert_eq!(
        inner["client-request-id"], inner["request-id"],
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn an_unknown_route_is_a_404_envelope() {
    let server = TestServer::start(&[]).await;
    for path in [
        "/",
        "/v1.0",
        "/v2.0/users/u1/presence",
        "/v1.0/users/u1/presences",
        "/v1.0/users/u1",
        "/v1.0/communications/presences",
        "/v1.0/users/u1/presence/setPresence/extra",
        "/_presenced/users/u1",
        "/_presenced/nothing",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text);
        reply.assert_error(404, "NotFound");
    }
    let reply = server
        .post("/v1.0/users/u1/presence/doSomething", json!({}))
        .await;
    reply.assert_error(404, "NotFound");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_envelope() {
    let server = TestServer::start(&[]).await;
    for version in VERSIONS {
        for form in FORMS {
            let base = form.path(version, "u1");
            for action in ACTIONS {
                let path = format!("{base}/{action}");
                let reply = server.get_as(&path, form.caller("u1")).await;
                assert_eq!(reply.status, 405, "GET {path}: {}", reply.text);
                reply.assert_error(405, "MethodNotAllowed");
            }
            let reply = server.send(server.client().delete(server.url(&base))).await;
            reply.assert_error(405, "MethodNotAllowed");
            let reply = server.post(&base, json!({})).await;
            reply.assert_error(405, "MethodNotAllowed");
        }
        server
            .get(&format!("{version}/communications/getPresencesByUserId"))
            .await
            .assert_error(405, "MethodNotAllowed");
    }
    server
        .get("/_presenced/clock/advance")
        .await
        .assert_error(405, "MethodNotAllowed");
    server
        .post("/_presenced/users/u1/sessions", json!({}))
        .await
        .assert_error(405, "MethodNotAllowed");
    server
        .get("/_presenced/users/u1/outOfOffice")
        .await
        .assert_error(405, "MethodNotAllowed");
}

// ---------------------------------------------------------------------------
// A small deterministic fuzz test.

/// Marsaglia's xorshift64: deterministic, seedable, and enough for picking
/// among cases.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FIELDS: &[&str] = &[
    "sessionId",
    "availability",
    "activity",
    "expirationDuration",
    "statusMessage",
    "message",
    "content",
    "contentType",
    "expiryDateTime",
    "dateTime",
    "timeZone",
    "workLocationType",
    "placeId",
    "ids",
    "by",
    "isOutOfOffice",
];

const STRINGS: &[&str] = &[
    "",
    "app",
    "Available",
    "busy",
    "InACall",
    "DoNotDisturb",
    "Presenting",
    "Offline",
    "OffWork",
    "PT5M",
    "PT4H",
    "PT0S",
    "-PT5M",
    "P1Y",
    "P106751991167300D",
    "PT9223372036854775807S",
    "P99999999999999999999W",
    "PT0.0000000001S",
    "1:00:00",
    "1 day, 0:00:00",
    "-999999999999 days, 0:00:00",
    "99999999999999999999:00:00",
    "0:00:00.9999999999999999999999",
    "2099-10-18T17:05:33.2079781",
    "9999-12-31T23:59:59.9999999",
    "-009999-01-01T00:00:00",
    "0000-01-01",
    "2026-03-08T02:30:00",
    "1970-01-01T00:00:00Z",
    "Pacific Standard Time",
    "Line Islands Standard Time",
    "Dateline Standard Time",
    "Europe/Berlin",
    "UTC",
    "office",
    "timeOff",
    "text",
    "html",
    "a b",
    "é",
    "\u{0}",
    "\u{202e}",
    "🙂",
];

fn random_value(rng: &mut XorShift, depth: u32) -> Value {
    let choice = if depth > 3 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => match rng.below(4) {
            0 => json!(rng.next() as i64),
            1 => json!(u64::MAX),
            2 => json!(-1.5e300),
            _ => json!(rng.below(1000)),
        },
        3 | 4 => Value::String(rng.pick(STRINGS).to_string()),
        5 | 6 => {
            let mut object = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                object.insert(rng.pick(FIELDS).to_string(), random_value(rng, depth + 1));
            }
            Value::Object(object)
        }
        _ => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
    }
}

/// A body for `action`: a valid one with one field replaced, a random
/// object, a truncated or byte-flipped valid one, or random bytes.
fn random_body(rng: &mut XorShift, action: &str) -> Vec<u8> {
    let valid = valid_body(action);
    match rng.below(6) {
        0 => {
            let mut body = valid;
            if let Some(object) = body.as_object_mut() {
                object.insert(rng.pick(FIELDS).to_string(), random_value(rng, 1));
            }
            body.to_string().into_bytes()
        }
        1 => random_value(rng, 0).to_string().into_bytes(),
        2 => {
            let mut object = serde_json::Map::new();
            for _ in 0..1 + rng.below(4) {
                object.insert(rng.pick(FIELDS).to_string(), random_value(rng, 1));
            }
            Value::Object(object).to_string().into_bytes()
        }
        3 => {
            let text = valid.to_string().into_bytes();
            let cut = rng.below(text.len() + 1);
            text[..cut].to_vec()
        }
        4 => {
            let mut text = valid.to_string().into_bytes();
            let at = rng.below(text.len());
            text[at] = rng.next() as u8;
            text
        }
        _ => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
    }
}

#[tokio::test]
async fn random_and_truncated_bodies_never_get_a_5xx() {
    let server = TestServer::start(&[]).await;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut targets: Vec<(String, Option<&str>, &str)> = Vec::new();
    for version in VERSIONS {
        for form in FORMS {
            for action in ACTIONS {
                targets.push((
                    format!("{}/{action}", form.path(version, "fuzz-user")),
                    form.caller("fuzz-user"),
                    action,
                ));
            }
        }
        targets.push((
            format!("{version}/communications/getPresencesByUserId"),
            None,
            "getPresencesByUserId",
        ));
    }
    targets.push(("/_presenced/clock/advance".to_owned(), None, "advance"));
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for iteration in 0..300 {
        let (path, caller, action) = rng.pick(&targets).clone();
        let body = random_body(&mut rng, action);
        let mut request = server
            .client()
            .post(server.url(&path))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(user) = caller {
            request = request.bearer_auth(dev_token(user));
        }
        // `send` fails the test on any 5xx.
        let reply = server.send(request).await;
        *statuses.entry(reply.status).or_default() += 1;
        let context = format!(
            "iteration {iteration}: POST {path} with {:?} -> {} {}",
            String::from_utf8_lossy(&body),
            reply.status,
            reply.text
        );
        if reply.status >= 400 {
            assert!(reply.body["error"]["code"].is_string(), "{context}");
            assert!(reply.body["error"]["message"].is_string(), "{context}");
        } else if action != "getPresencesByUserId" && action != "advance" {
            assert_eq!(reply.status, 200, "{context}");
            assert!(reply.text.is_empty(), "{context}");
        }
    }
    assert!(
        statuses.contains_key(&200) && statuses.contains_key(&400),
        "the bodies should reach both acceptance and refusal: {statuses:?}"
    );
    let health = server.get("/healthz").await;
    assert_eq!(health.status, 200, "still healthy after {statuses:?}");
    let presence = server.get("/v1.0/users/fuzz-user/presence").await;
    assert_eq!(presence.status, 200, "{}", presence.text);
    let sessions = server.get("/_presenced/users/fuzz-user/sessions").await;
    assert_eq!(sessions.status, 200, "{}", sessions.text);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408_envelope_and_the_server_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&[]).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    // Promise 200 bytes, send 20, then nothing.
    let head = format!(
        "POST /v1.0/users/u1/presence/setPresence HTTP/1.1\r\nhost: {address}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"sessionId\":\"app\","
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(
        read.is_ok(),
        "presenced answered a stalled body within 30 s"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_secs(9),
        "the body was given its 10 s: {elapsed:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"RequestTimeout\""), "{answer}");
    assert!(answer.contains("within 10 seconds"), "{answer}");
    // Nothing was applied, and other requests were served all along.
    assert_eq!(
        server.shown("u1").await,
        ("Offline".into(), "Offline".into())
    );
}

/// Sends `body` to `path` with the given Content-Type (none with `None`).
async fn post_typed(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Reply {
    let mut request = server.client().post(server.url(path)).body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    server.send(request).await
}

#[tokio::test]
async fn a_body_not_sent_as_json_is_a_415_and_writes_nothing() {
    let server = TestServer::start(&[]).await;
    let path = "/v1.0/users/csrf/presence/setPresence";
    let body = r#"{"sessionId":"page","availability":"Busy","activity":"InACall","expirationDuration":"PT1H"}"#;
    // What a web page can send cross-site without a preflight, and no type.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let reply = post_typed(&server, path, content_type, body).await;
        let message = reply.assert_error(415, "UnsupportedMediaType");
        assert!(message.contains("application/json"), "{message}");
    }
    // An empty body is no exception on a route that takes one.
    post_typed(&server, path, Some("text/plain"), "")
        .await
        .assert_error(415, "UnsupportedMediaType");
    assert_eq!(
        server.shown("csrf").await,
        ("Offline".to_owned(), "Offline".to_owned()),
        "nothing was written"
    );
    // JSON in any spelling, with parameters, is accepted.
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON;odata.metadata=minimal",
    ] {
        post_typed(&server, path, Some(content_type), body)
            .await
            .assert_ok_empty();
    }
    assert_eq!(server.presence("csrf").await["availability"], "Busy");
}

#[tokio::test]
async fn routes_that_take_no_body_ignore_any_body_and_its_type() {
    let server = TestServer::start(&[]).await;
    for action in NO_BODY {
        let path = format!("/v1.0/users/quiet/presence/{action}");
        for (content_type, body) in [
            (None, "not json at all"),
            (Some("text/plain"), "{"),
            (Some("application/json"), "[]"),
            (Some("application/json"), "42"),
            (Some("application/json"), ""),
        ] {
            let reply = post_typed(&server, &path, content_type, body).await;
            assert_eq!(
                reply.status, 200,
                "{action} {content_type:?} {body:?}: {}",
                reply.text
            );
        }
    }
}

/// A body sent to one route, and the field its refusal must name.
struct WrongShape {
    method: &'static str,
    /// The path, with `{user}` where the user goes.
    path: &'static str,
    body: &'static str,
    field: &'static str,
}

const fn wrong(
    method: &'static str,
    path: &'static str,
    body: &'static str,
    field: &'static str,
) -> WrongShape {
    WrongShape {
        method,
        path,
        body,
        field,
    }
}

/// For each route that takes a body, bodies whose other fields are valid and
/// one field has the wrong JSON type: an array or a number where a string
/// or an object belongs, an object where a string or an array belongs, a
/// string where a boolean belongs, a null where a value is required. A
/// route served under several addresses is listed once with `{presence}`,
/// which the test expands to each of them.
#[rustfmt::skip]
const WRONG_SHAPES: &[WrongShape] = &[
    // setPresence
    wrong("POST", "{presence}/setPresence", r#"{"sessionId": ["app"], "availability": "Busy", "activity": "InACall"}"#, "sessionId"),
    wrong("POST", "{presence}/setPresence", r#"{"sessionId": 7, "availability": "Busy", "activity": "InACall"}"#, "sessionId"),
    wrong("POST", "{presence}/setPresence", r#"{"sessionId": null, "availability": "Busy", "activity": "InACall"}"#, "sessionId"),
    wrong("POST", "{presence}/setPresence", r#"{"sessionId": "app", "availability": {"value": "Busy"}, "activity": "InACall"}"#, "availability"),
    wrong("POST", "{presence}/setPresence", r#"{"sessionId": "app", "availability": "Busy", "activity": null}"#, "activity"),
    wrong("POST", "{presence}/setPresence", r#"{"sessionId": "app", "availability": "Busy", "activity": "InACall", "expirationDuration": 3600}"#, "expirationDuration"),
    wrong("POST", "{presence}/setPresence", r#"{"sessionId": "app", "availability": "Busy", "activity": "InACall", "expirationDuration": ["PT1H"]}"#, "expirationDuration"),
    // clearPresence
    wrong("POST", "{presence}/clearPresence", r#"{"sessionId": ["app"]}"#, "sessionId"),
    wrong("POST", "{presence}/clearPresence", r#"{"sessionId": true}"#, "sessionId"),
    wrong("POST", "{presence}/clearPresence", r#"{"sessionId": null}"#, "sessionId"),
    // setUserPreferredPresence
    wrong("POST", "{presence}/setUserPreferredPresence", r#"{"availability": ["DoNotDisturb"], "activity": "DoNotDisturb"}"#, "availability"),
    wrong("POST", "{presence}/setUserPreferredPresence", r#"{"availability": "DoNotDisturb", "activity": 4}"#, "activity"),
    wrong("POST", "{presence}/setUserPreferredPresence", r#"{"availability": null, "activity": "DoNotDisturb"}"#, "availability"),
    wrong("POST", "{presence}/setUserPreferredPresence", r#"{"availability": "DoNotDisturb", "activity": "DoNotDisturb", "expirationDuration": {"hours": 8}}"#, "expirationDuration"),
    // setStatusMessage: the complex values nest two levels deep.
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": ["x", null]}"#, "statusMessage"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": [{"content": "new"}, null]}"#, "statusMessage"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": []}"#, "statusMessage"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": "new"}"#, "statusMessage"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": 5}"#, "statusMessage"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": ["new", "text"]}}"#, "statusMessage.message"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": "new"}}"#, "statusMessage.message"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": 42}}}"#, "statusMessage.message.content"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": ["new"]}}}"#, "statusMessage.message.content"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": "new", "contentType": false}}}"#, "statusMessage.message.contentType"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": "new"}, "expiryDateTime": ["2099-01-01T00:00:00", "UTC"]}}"#, "statusMessage.expiryDateTime"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": "new"}, "expiryDateTime": "2099-01-01T00:00:00"}}"#, "statusMessage.expiryDateTime"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": "new"}, "expiryDateTime": {"dateTime": 2099}}}"#, "statusMessage.expiryDateTime.dateTime"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": "new"}, "expiryDateTime": {"dateTime": null}}}"#, "statusMessage.expiryDateTime.dateTime"),
    wrong("POST", "{presence}/setStatusMessage", r#"{"statusMessage": {"message": {"content": "new"}, "expiryDateTime": {"dateTime": "2099-01-01T00:00:00", "timeZone": ["UTC"]}}}"#, "statusMessage.expiryDateTime.timeZone"),
    // The work-location actions.
    wrong("POST", "{presence}/setManualLocation", r#"{"workLocationType": ["remote"]}"#, "workLocationType"),
    wrong("POST", "{presence}/setManualLocation", r#"{"workLocationType": null}"#, "workLocationType"),
    wrong("POST", "{presence}/setManualLocation", r#"{"workLocationType": "remote", "placeId": 7}"#, "placeId"),
    wrong("POST", "{presence}/setAutomaticLocation", r#"{"workLocationType": {"type": "remote"}}"#, "workLocationType"),
    wrong("POST", "{presence}/setAutomaticLocation", r#"{"workLocationType": "remote", "placeId": ["home"]}"#, "placeId"),
    // getPresencesByUserId (a read: nothing to write, still a 400).
    wrong("POST", "{version}/communications/getPresencesByUserId", r#"{"ids": "{user}"}"#, "ids"),
    wrong("POST", "{version}/communications/getPresencesByUserId", r#"{"ids": [["{user}"]]}"#, "ids[0]"),
    wrong("POST", "{version}/communications/getPresencesByUserId", r#"{"ids": [null]}"#, "ids[0]"),
    wrong("POST", "{version}/communications/getPresencesByUserId", r#"{"ids": {"0": "{user}"}}"#, "ids"),
    wrong("POST", "{version}/communications/getPresencesByUserId", r#"{"ids": null}"#, "ids"),
    // Subscriptions: create and update.
    wrong("POST", "{version}/subscriptions", r#"{"changeType": ["updated"], "notificationUrl": "{receiver}/other", "resource": "/communications/presences/{user}", "expirationDateTime": "{expiry}"}"#, "changeType"),
    wrong("POST", "{version}/subscriptions", r#"{"changeType": "updated", "notificationUrl": {"url": "{receiver}/other"}, "resource": "/communications/presences/{user}", "expirationDateTime": "{expiry}"}"#, "notificationUrl"),
    wrong("POST", "{version}/subscriptions", r#"{"changeType": "updated", "notificationUrl": "{receiver}/other", "resource": ["/communications/presences/{user}"], "expirationDateTime": "{expiry}"}"#, "resource"),
    wrong("POST", "{version}/subscriptions", r#"{"changeType": "updated", "notificationUrl": "{receiver}/other", "resource": null, "expirationDateTime": "{expiry}"}"#, "resource"),
    wrong("POST", "{version}/subscriptions", r#"{"changeType": "updated", "notificationUrl": "{receiver}/other", "resource": "/communications/presences/{user}", "expirationDateTime": 4102444800}"#, "expirationDateTime"),
    wrong("POST", "{version}/subscriptions", r#"{"changeType": "updated", "notificationUrl": "{receiver}/other", "resource": "/communications/presences/{user}", "expirationDateTime": "{expiry}", "includeResourceData": "false"}"#, "includeResourceData"),
    wrong("POST", "{version}/subscriptions", r#"{"changeType": "updated", "notificationUrl": "{receiver}/other", "resource": "/communications/presences/{user}", "expirationDateTime": "{expiry}", "clientState": 12}"#, "clientState"),
    wrong("PATCH", "{version}/subscriptions/{subscription}", r#"{"expirationDateTime": ["{expiry}"]}"#, "expirationDateTime"),
    wrong("PATCH", "{version}/subscriptions/{subscription}", r#"{"expirationDateTime": {"dateTime": "{expiry}"}}"#, "expirationDateTime"),
    wrong("PATCH", "{version}/subscriptions/{subscription}", r#"{"notificationUrl": 5}"#, "notificationUrl"),
    wrong("PATCH", "{version}/subscriptions/{subscription}", r#"{"expirationDateTime": null}"#, "expirationDateTime"),
    // The legacy session PUT (beta only), in both of its addresses.
    wrong("PUT", "/beta/users/{user}/presence/sessions/legacy", r#"{"availability": ["Busy"], "activity": "InACall"}"#, "availability"),
    wrong("PUT", "/beta/users/{user}/presence/sessions/legacy", r#"{"availability": "Busy", "activity": 1}"#, "activity"),
    wrong("PUT", "/beta/users/{user}/presence/legacy", r#"{"availability": null, "activity": "InACall"}"#, "availability"),
    wrong("PUT", "/beta/users/{user}/presence/legacy", r#"{"availability": "Busy", "activity": {"name": "InACall"}}"#, "activity"),
    // outOfOffice
    wrong("PUT", "/_presenced/users/{user}/outOfOffice", r#"{"isOutOfOffice": "false"}"#, "isOutOfOffice"),
    wrong("PUT", "/_presenced/users/{user}/outOfOffice", r#"{"isOutOfOffice": 0}"#, "isOutOfOffice"),
    wrong("PUT", "/_presenced/users/{user}/outOfOffice", r#"{"isOutOfOffice": null, "message": "back"}"#, "isOutOfOffice"),
    wrong("PUT", "/_presenced/users/{user}/outOfOffice", r#"{"isOutOfOffice": false, "message": ["back"]}"#, "message"),
    wrong("PUT", "/_presenced/users/{user}/outOfOffice", r#"{"isOutOfOffice": false, "message": {"content": "back"}}"#, "message"),
    // The manual clock.
    wrong("POST", "/_presenced/clock/advance", r#"{"by": 300}"#, "by"),
    wrong("POST", "/_presenced/clock/advance", r#"{"by": ["PT5M"]}"#, "by"),
    wrong("POST", "/_presenced/clock/advance", r#"{"by": {"minutes": 5}}"#, "by"),
    wrong("POST", "/_presenced/clock/advance", r#"{"by": null}"#, "by"),
];

/// What a request could have changed: the user's presence, the sessions
/// and preferred presence behind it (with their set instants and expiries),
/// the subscriptions, and the manual clock.
async fn everything_visible(server: &TestServer, user: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/v1.0/users/{user}/presence"),
        format!("/_presenced/users/{user}/sessions"),
        "/v1.0/subscriptions".to_owned(),
        "/_presenced/clock".to_owned(),
    ] {
        let reply = server.get(&path).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
        seen.push(reply.body);
    }
    seen
}

#[tokio::test]
async fn a_field_of_the_wrong_json_type_is_a_400_naming_it_on_every_body_route_and_writes_nothing()
{
    let receiver = crate::receiver::Receiver::start().await;
    let server = TestServer::start(&["--allow-private-webhooks"]).await;
    let user = "u1";
    // Every fact a wrong body could change, set to something it would not
    // write.
    let setup: [(&str, String, Value); 8] = [
        (
            "POST",
            format!("/v1.0/users/{user}/presence/setPresence"),
            json!({"sessionId": "app", "availability": "Away", "activity": "Away", "expirationDuration": "PT1H"}),
        ),
        (
            "POST",
            format!("/v1.0/users/{user}/presence/setUserPreferredPresence"),
            json!({"availability": "BeRightBack", "activity": "BeRightBack"}),
        ),
        (
            "POST",
            format!("/v1.0/users/{user}/presence/setStatusMessage"),
            json!({"statusMessage": {"message": {"content": "keep me"}}}),
        ),
        (
            "POST",
            format!("/v1.0/users/{user}/presence/setManualLocation"),
            json!({"workLocationType": "office", "placeId": "b40"}),
        ),
        (
            "POST",
            format!("/v1.0/users/{user}/presence/setAutomaticLocation"),
            json!({"workLocationType": "office", "placeId": "b41"}),
        ),
        (
            "PUT",
            format!("/_presenced/users/{user}/outOfOffice"),
            json!({"isOutOfOffice": true, "message": "away this week"}),
        ),
        (
            "PUT",
            format!("/beta/users/{user}/presence/sessions/legacy"),
            json!({"availability": "Available", "activity": "Available"}),
        ),
        (
            "PUT",
            format!("/beta/users/{user}/presence/sessions/other"),
            json!({"availability": "Available", "activity": "Available"}),
        ),
    ];
    for (method, path, body) in setup {
        let request = server
            .client()
            .request(method.parse().expect("a method"), server.url(&path))
            .json(&body);
        server.send(request).await.assert_ok_empty();
    }
    let now = server.now().await;
    let expiry = graph_instant_in(now, 30);
    let created = server
        .post(
            "/v1.0/subscriptions",
            json!({
                "changeType": "updated",
                "notificationUrl": receiver.url("/notify"),
                "resource": format!("/communications/presences/{user}"),
                "expirationDateTime": graph_instant_in(now, 45),
                "clientState": "kept",
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let subscription = created.body["id"].as_str().expect("an id").to_owned();
    let before = everything_visible(&server, user).await;

    let mut sent = 0;
    for case in WRONG_SHAPES {
        let paths: Vec<String> = if case.path.starts_with("{presence}") {
            VERSIONS
                .iter()
                .flat_map(|version| FORMS.iter().map(move |form| form.path(version, user)))
                .map(|presence| case.path.replace("{presence}", &presence))
                .collect()
        } else if case.path.starts_with("{version}") {
            VERSIONS
                .iter()
                .map(|version| case.path.replace("{version}", version))
                .collect()
        } else {
            vec![case.path.to_owned()]
        };
        let body = case
            .body
            .replace("{user}", user)
            .replace("{receiver}", &receiver.base)
            .replace("{expiry}", &expiry);
        for path in paths {
            let path = path
                .replace("{user}", user)
                .replace("{subscription}", &subscription);
            let mut request = server
                .client()
                .request(case.method.parse().expect("a method"), server.url(&path))
                .header("content-type", "application/json")
                .body(body.clone());
            if path.contains("/me/") {
                request = request.bearer_auth(dev_token(user));
            }
            let reply = server.send(request).await;
            let what = format!("{} {path} {body}", case.method);
            assert_eq!(reply.status, 400, "{what}: {}", reply.text);
            let code = reply.body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                ["BadRequest", "InvalidArgument", "InvalidRequest"].contains(&code),
                "{what}: {}",
                reply.text
            );
            let message = reply.assert_error(400, code);
            assert!(
                message.to_lowercase().contains(&case.field.to_lowercase()),
                "{what}: the message names {}: {message}",
                case.field
            );
            sent += 1;
        }
    }
    // Every action under six addresses, the rest under one or two.
    assert!(sent > 200, "{sent} requests");
    assert_eq!(
        everything_visible(&server, user).await,
        before,
        "a refused body changed something"
    );
    assert_eq!(receiver.tokens().len(), 1, "only the setup's handshake");
}

fn graph_instant_in(now: jiff::Timestamp, minutes: i64) -> String {
    crate::helpers::graph_instant(now + jiff::SignedDuration::from_mins(minutes))
}

/// getPresencesByUserId reads each id as the JSON string it is, escapes
/// decoded: a GUID with an escaped digit is that GUID, and `\u0061lice` is
/// alice. An id whose bytes are not UTF-8 is a 400 that names the field,
/// and so is one that decodes to a character no id may hold.
#[tokio::test]
async fn batch_ids_are_read_through_their_escapes_and_must_be_utf8() {
    let server = TestServer::start(&[]).await;
    let guid = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
    for user in ["alice", guid] {
        let reply = server
            .post(
                &format!("/v1.0/users/{user}/presence/setPresence"),
                valid_body("setPresence"),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let body = r#"{"ids": ["\u0061lice", "\u0066a8bf3dc-eca7-46b7-bad1-db199b62afc3", "fa8bf3dc-eca7-46b7-bad1-db199b62afc3", "nobody"]}"#;
    let reply = server
        .post_raw("/v1.0/communications/getPresencesByUserId", body)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let shown = reply.availabilities();
    assert_eq!(
        shown,
        [
            ("alice", "Available"),
            (guid, "Available"),
            (guid, "Available"),
            ("nobody", "Offline")
        ]
    );
    // A body of lowercase GUIDs alone, as clients send it (read by the
    // batch's own reader): answered in the order asked, repeats and
    // unknown users included.
    let unknown = "00000000-0000-4000-8000-000000000000";
    let body = format!("{{ \"ids\" :\n [ \"{guid}\",\t\"{unknown}\" , \"{guid}\" ] }}\r\n");
    let reply = server
        .post_raw("/v1.0/communications/getPresencesByUserId", body.clone())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let shown = reply.availabilities();
    assert_eq!(
        shown,
        [
            (guid, "Available"),
            (unknown, "Offline"),
            (guid, "Available")
        ],
        "{body:?}"
    );
    let mut not_utf8 = br#"{"ids": ["alice", "b"#.to_vec();
    not_utf8.extend_from_slice(&[0xff, 0xfe]);
    not_utf8.extend_from_slice(br#"b"]}"#);
    let reply = expect_refused(
        &server,
        "/v1.0/communications/getPresencesByUserId",
        &not_utf8,
        400,
    )
    .await;
    let message = reply.assert_error(400, "BadRequest");
    assert!(message.contains("ids[1]"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
    let reply = server
        .post_raw(
            "/v1.0/communications/getPresencesByUserId",
            r#"{"ids": ["al\u00e9ce"]}"#,
        )
        .await;
    let message = reply.assert_error(400, "BadRequest");
    assert!(message.contains("'é'"), "{message}");
    // Whitespace inside an id's string is part of the id, even right after
    // a GUID, and a character no id holds.
    for (after, says) in [(" ", "' '"), ("\n", "'\\n'")] {
        let body = format!(r#"{{"ids": ["{guid}{after}"]}}"#);
        let reply = server
            .post_raw("/v1.0/communications/getPresencesByUserId", body.clone())
            .await;
        let message = reply.assert_error(400, "BadRequest");
        assert!(message.contains(says), "{body:?}: {message}");
    }
}
