//! Every Graph endpoint, under `/v1.0` and `/beta`, in each of the three
//! forms the SDKs address one user's presence by; the shape of what GET
//! answers; and the parameters whose forms are easy to get wrong (enum case,
//! Python's durations, time zones, work-location layers).

use serde_json::{Value, json};

use crate::helpers::{TestServer, graph_instant};

/// The two Graph versions presenced serves.
pub const VERSIONS: [&str; 2] = ["/v1.0", "/beta"];

/// The three forms of the address of one user's presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `/users/{id}/presence`
    Users,
    /// `/me/presence`, as the signed-in user of a delegated token.
    Me,
    /// `/communications/presences/{id}`
    Communications,
}

pub const FORMS: [Form; 3] = [Form::Users, Form::Me, Form::Communications];

impl Form {
    /// The path template, as the OpenAPI document spells it.
    pub fn template(self) -> &'static str {
        match self {
            Form::Users => "/users/{id}/presence",
            Form::Me => "/me/presence",
            Form::Communications => "/communications/presences/{id}",
        }
    }

    /// The address of `user`'s presence under `version`.
    pub fn path(self, version: &str, user: &str) -> String {
        format!("{version}{}", self.template().replace("{id}", user))
    }

    /// The delegated user to call as: only `/me` needs one.
    pub fn caller(self, user: &str) -> Option<&str> {
        (self == Form::Me).then_some(user)
    }
}

/// Every presence action, each served under all three forms.
pub const ACTIONS: [&str; 9] = [
    "setPresence",
    "clearPresence",
    "setUserPreferredPresence",
    "clearUserPreferredPresence",
    "setStatusMessage",
    "setManualLocation",
    "setAutomaticLocation",
    "clearAutomaticLocation",
    "clearLocation",
];

/// The legacy session endpoints, served under `/beta` only.
pub const LEGACY_TEMPLATES: [&str; 2] = [
    "/users/{id}/presence/sessions/{sessionId}",
    "/users/{id}/presence/{sessionId}",
];

/// Every Graph path template presenced serves under `version`.
pub fn graph_path_templates(version: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for form in FORMS {
        paths.push(format!("{version}{}", form.template()));
        for action in ACTIONS {
            paths.push(format!("{version}{}/{action}", form.template()));
        }
    }
    paths.push(format!("{version}/communications/getPresencesByUserId"));
    if version == "/beta" {
        for template in LEGACY_TEMPLATES {
            paths.push(format!("{version}{template}"));
        }
    }
    paths
}

/// One step of [`exercise_every_action`]: an action, its body, and what GET
/// shows afterwards (JSON pointer, value).
struct Step {
    action: &'static str,
    body: Value,
    shows: Vec<(&'static str, Value)>,
}

fn step(action: &'static str, body: Value, shows: &[(&'static str, Value)]) -> Step {
    Step {
        action,
        body,
        shows: shows.to_vec(),
    }
}

/// Calls every action, in an order where each one's effect is visible, under
/// both versions in one form; each must answer 200 with an empty body.
async fn exercise_every_action(form: Form) {
    let server = TestServer::start(&[]).await;
    let no_location = [
        ("/workLocation/workLocationType", json!("unspecified")),
        ("/workLocation/source", json!("none")),
        ("/workLocation/placeId", Value::Null),
    ];
    let steps = [
        step(
            "setPresence",
            json!({"sessionId": "app", "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"}),
            &[
                ("/availability", json!("Busy")),
                ("/activity", json!("InACall")),
            ],
        ),
        step(
            "setUserPreferredPresence",
            json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb"}),
            &[
                ("/availability", json!("DoNotDisturb")),
                ("/activity", json!("DoNotDisturb")),
            ],
        ),
        step(
            "clearUserPreferredPresence",
            json!({}),
            &[
                ("/availability", json!("Busy")),
                ("/activity", json!("InACall")),
            ],
        ),
        step(
            "setStatusMessage",
            json!({"statusMessage": {"message": {"content": "In a call", "contentType": "text"}}}),
            &[
                ("/statusMessage/message/content", json!("In a call")),
                ("/statusMessage/message/contentType", json!("text")),
            ],
        ),
        step(
            "setAutomaticLocation",
            json!({"workLocationType": "remote"}),
            &[
                ("/workLocation/workLocationType", json!("remote")),
                ("/workLocation/source", json!("automatic")),
            ],
        ),
        step(
            "setManualLocation",
            json!({"workLocationType": "office", "placeId": "building-40"}),
            &[
                ("/workLocation/workLocationType", json!("office")),
                ("/workLocation/source", json!("manual")),
                ("/workLocation/placeId", json!("building-40")),
            ],
        ),
        step("clearLocation", json!({}), &no_location),
        step(
            "setAutomaticLocation",
            json!({"workLocationType": "timeOff"}),
            &[
                ("/workLocation/workLocationType", json!("timeOff")),
                ("/workLocation/source", json!("automatic")),
            ],
        ),
        step("clearAutomaticLocation", json!({}), &no_location),
        step(
            "clearPresence",
            json!({"sessionId": "app"}),
            &[
                ("/availability", json!("Offline")),
                ("/activity", json!("Offline")),
            ],
        ),
    ];
    let covered: std::collections::BTreeSet<&str> = steps.iter().map(|step| step.action).collect();
    assert_eq!(covered.len(), ACTIONS.len(), "every action is exercised");
    for version in VERSIONS {
        let user = format!("user-{}", version.trim_start_matches('/'));
        let base = form.path(version, &user);
        for step in &steps {
            let path = format!("{base}/{}", step.action);
            let reply = server
                .post_as(&path, form.caller(&user), step.body.clone())
                .await;
            assert_eq!(reply.status, 200, "POST {path}: {}", reply.text);
            reply.assert_ok_empty();
            let shown = server.get_as(&base, form.caller(&user)).await;
            assert_eq!(shown.status, 200, "GET {base}: {}", shown.text);
            for (pointer, expected) in &step.shows {
                assert_eq!(
                    shown.body.pointer(pointer),
                    Some(expected),
                    "after POST {path}, GET {base} should show {pointer} = {expected}: {}",
                    shown.text
                );
            }
            // The same fact, whichever form it is read through.
            let through_users = server.get(&format!("/v1.0/users/{user}/presence")).await;
            assert_eq!(
                through_users.body["sequenceNumber"], shown.body["sequenceNumber"],
                "{}",
                through_users.text
            );
            assert_eq!(
                through_users.body["availability"],
                shown.body["availability"]
            );
        }
    }
}

#[tokio::test]
async fn every_action_under_users_answers_200_empty_and_its_effect_shows_in_both_versions() {
    exercise_every_action(Form::Users).await;
}

#[tokio::test]
async fn every_action_under_me_answers_200_empty_and_its_effect_shows_in_both_versions() {
    exercise_every_action(Form::Me).await;
}

#[tokio::test]
async fn every_action_under_communications_presences_answers_200_empty_and_its_effect_shows_in_both_versions()
 {
    exercise_every_action(Form::Communications).await;
}

#[tokio::test]
async fn actions_without_parameters_accept_a_request_with_no_body_at_all() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    for action in [
        "clearUserPreferredPresence",
        "clearAutomaticLocation",
        "clearLocation",
    ] {
        for version in VERSIONS {
            let request = server
                .client()
                .post(server.url(&format!("{version}/users/u1/presence/{action}")));
            server.send(request).await.assert_ok_empty();
        }
    }
}

#[tokio::test]
async fn a_never_written_user_is_offline_with_200_in_every_form_and_version() {
    let server = TestServer::start(&[]).await;
    for version in VERSIONS {
        for form in FORMS {
            let path = form.path(version, "nobody");
            let reply = server.get_as(&path, form.caller("nobody")).await;
            assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
            assert_eq!(reply.body["id"], "nobody", "{}", reply.text);
            assert_eq!(reply.body["availability"], "Offline", "{}", reply.text);
            assert_eq!(reply.body["activity"], "Offline", "{}", reply.text);
        }
    }
}

#[tokio::test]
async fn get_answers_graphs_presence_shape_with_defaults_for_a_user_with_nothing_set() {
    let server = TestServer::start(&[]).await;
    let reply = server.get("/v1.0/users/u1/presence").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
    let mut body = reply.body.clone();
    let object = body.as_object_mut().expect("an object");
    let context = object.remove("@odata.context").expect("@odata.context");
    assert!(
        context.as_str().is_some_and(
            |context| context.ends_with("/v1.0/$metadata#users('u1')/presence/$entity")
        ),
        "{context}"
    );
    let sequence = object.remove("sequenceNumber").expect("sequenceNumber");
    assert!(
        sequence.as_str().is_some_and(|text| !text.is_empty()),
        "sequenceNumber is a non-empty string: {sequence}"
    );
    assert_eq!(
        body,
        json!({
            "id": "u1",
            "availability": "Offline",
            "activity": "Offline",
            "statusMessage": null,
            "outOfOfficeSettings": {"message": null, "isOutOfOffice": false},
            "workLocation": {"workLocationType": "unspecified", "source": "none", "placeId": null},
        }),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn the_odata_context_names_the_version_and_the_form_of_the_address() {
    let server = TestServer::start(&[]).await;
    for version in VERSIONS {
        for (form, expected) in [
            (Form::Users, "$metadata#users('alice')/presence/$entity"),
            (Form::Me, "$metadata#users('alice')/presence/$entity"),
            (
                Form::Communications,
                "$metadata#communications/presences/$entity",
            ),
        ] {
            let path = form.path(version, "alice");
            let reply = server.get_as(&path, form.caller("alice")).await;
            let context = reply.body["@odata.context"].as_str().unwrap_or_default();
            assert!(
                context.ends_with(&format!("{version}/{expected}")),
                "GET {path}: @odata.context {context:?} should end with {version}/{expected}"
            );
        }
    }
}

#[tokio::test]
async fn get_presences_by_user_id_answers_one_entry_per_id_in_both_versions() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    for version in VERSIONS {
        let reply = server
            .post(
                &format!("{version}/communications/getPresencesByUserId"),
                json!({"ids": ["u1", "never-written"]}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(
            reply.body["@odata.context"]
                .as_str()
                .is_some_and(|context| context.ends_with(&format!(
                    "{version}/$metadata#Collection(microsoft.graph.presence)"
                ))),
            "{}",
            reply.text
        );
        let value = reply.body["value"].as_array().expect("value is an array");
        assert_eq!(value.len(), 2, "{}", reply.text);
        assert_eq!(value[0]["id"], "u1");
        assert_eq!(value[0]["availability"], "Busy");
        assert_eq!(value[0]["activity"], "InACall");
        assert_eq!(value[1]["id"], "never-written");
        assert_eq!(value[1]["availability"], "Offline");
        assert_eq!(value[1]["activity"], "Offline");
        assert_eq!(value[1]["statusMessage"], Value::Null);
        assert!(value[1]["sequenceNumber"].is_string(), "{}", reply.text);
    }
}

#[tokio::test]
async fn the_legacy_session_put_and_delete_work_at_both_beta_addresses() {
    let server = TestServer::start(&[]).await;
    for (index, template) in LEGACY_TEMPLATES.iter().enumerate() {
        let user = format!("legacy-{index}");
        let path = format!(
            "/beta{}",
            template.replace("{id}", &user).replace("{sessionId}", "s1")
        );
        server
            .put(
                &path,
                json!({"availability": "Busy", "activity": "InAConferenceCall"}),
            )
            .await
            .assert_ok_empty();
        assert_eq!(
            server.shown(&user).await,
            ("Busy".to_owned(), "InAConferenceCall".to_owned()),
            "after PUT {path}"
        );
        // A second PUT refreshes the same session rather than adding one.
        server
            .put(&path, json!({"availability": "Away", "activity": "Away"}))
            .await
            .assert_ok_empty();
        assert_eq!(
            server.shown(&user).await,
            ("Away".to_owned(), "Away".to_owned())
        );
        server.delete(&path).await.assert_ok_empty();
        assert_eq!(
            server.shown(&user).await,
            ("Offline".to_owned(), "Offline".to_owned()),
            "after DELETE {path}"
        );
        server.delete(&path).await.assert_error(404, "NotFound");
    }
}

#[tokio::test]
async fn the_legacy_session_endpoints_are_not_served_under_v1() {
    let server = TestServer::start(&[]).await;
    for template in LEGACY_TEMPLATES {
        let path = format!(
            "/v1.0{}",
            template.replace("{id}", "u1").replace("{sessionId}", "s1")
        );
        server
            .put(
                &path,
                json!({"availability": "Available", "activity": "Available"}),
            )
            .await
            .assert_error(404, "NotFound");
        server.delete(&path).await.assert_error(404, "NotFound");
    }
    assert_eq!(
        server.shown("u1").await,
        ("Offline".to_owned(), "Offline".to_owned()),
        "nothing was written"
    );
}

#[tokio::test]
async fn me_without_a_delegated_token_is_a_400_envelope() {
    let server = TestServer::start(&[]).await;
    for version in VERSIONS {
        let message = server
            .get(&format!("{version}/me/presence"))
            .await
            .assert_error(400, "BadRequest");
        assert!(message.contains("delegated"), "{message}");
        server
            .post(
                &format!("{version}/me/presence/setPresence"),
                json!({"sessionId": "app", "availability": "Available", "activity": "Available"}),
            )
            .await
            .assert_error(400, "BadRequest");
        server
            .post(
                &format!("{version}/me/presence/setManualLocation"),
                json!({"workLocationType": "office"}),
            )
            .await
            .assert_error(400, "BadRequest");
    }
}

#[tokio::test]
async fn work_location_shows_manual_over_automatic_and_each_clear_removes_its_layers() {
    let server = TestServer::start(&[]).await;
    let base = "/v1.0/me/presence";
    let me = Some("alice");
    let location = || {
        let server = &server;
        async move {
            let reply = server.get_as(base, me).await;
            let location = &reply.body["workLocation"];
            (
                location["workLocationType"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                location["source"].as_str().unwrap_or("?").to_owned(),
                location["placeId"].clone(),
            )
        }
    };
    let expect =
        |kind: &str, source: &str, place: Value| (kind.to_owned(), source.to_owned(), place);
    let post = |action: &'static str, body: Value| {
        let server = &server;
        async move {
            server
                .post_as(&format!("{base}/{action}"), me, body)
                .await
                .assert_ok_empty();
        }
    };
    post(
        "setManualLocation",
        json!({"workLocationType": "office", "placeId": "b40"}),
    )
    .await;
    post(
        "setAutomaticLocation",
        json!({"workLocationType": "remote"}),
    )
    .await;
    assert_eq!(
        location().await,
        expect("office", "manual", json!("b40")),
        "manual beats automatic, whichever was set last"
    );
    post("clearAutomaticLocation", json!({})).await;
    assert_eq!(
        location().await,
        expect("office", "manual", json!("b40")),
        "clearing the automatic layer falls back to manual"
    );
    post(
        "setAutomaticLocation",
        json!({"workLocationType": "remote", "placeId": "home"}),
    )
    .await;
    post("clearLocation", json!({})).await;
    assert_eq!(
        location().await,
        expect("unspecified", "none", Value::Null),
        "clearLocation clears both layers"
    );
    post(
        "setAutomaticLocation",
        json!({"workLocationType": "remote", "placeId": "home"}),
    )
    .await;
    assert_eq!(
        location().await,
        expect("remote", "automatic", json!("home")),
        "the automatic layer shows when there is no manual one"
    );
    post("setManualLocation", json!({"workLocationType": "timeOff"})).await;
    assert_eq!(location().await, expect("timeOff", "manual", Value::Null));
    post("clearAutomaticLocation", json!({})).await;
    post("clearLocation", json!({})).await;
    assert_eq!(location().await, expect("unspecified", "none", Value::Null));
}

#[tokio::test]
async fn a_status_message_with_a_pacific_expiry_is_echoed_with_its_published_date_time() {
    let server = TestServer::start(&[]).await;
    let published = graph_instant(server.now().await);
    server
        .post(
            "/v1.0/users/u1/presence/setStatusMessage",
            json!({"statusMessage": {
                "message": {"content": "Hey I'm currently in a meeting.", "contentType": "text"},
                "expiryDateTime": {"dateTime": "2099-10-18T17:05:33.2079781", "timeZone": "Pacific Standard Time"},
            }}),
        )
        .await
        .assert_ok_empty();
    let presence = server.presence("u1").await;
    assert_eq!(
        presence["statusMessage"],
        json!({
            "message": {"content": "Hey I'm currently in a meeting.", "contentType": "text"},
            "publishedDateTime": published,
            "expiryDateTime": {"dateTime": "2099-10-18T17:05:33.2079781", "timeZone": "Pacific Standard Time"},
        }),
        "{presence}"
    );
}

#[tokio::test]
async fn a_status_message_is_cleared_by_null_and_by_empty_content() {
    let server = TestServer::start(&[]).await;
    let set = json!({"statusMessage": {"message": {"content": "Lunch", "contentType": "text"}}});
    let path = "/v1.0/users/u1/presence/setStatusMessage";
    for clear in [
        json!({"statusMessage": null}),
        json!({"statusMessage": {"message": {"content": "", "contentType": "text"}}}),
    ] {
        server.post(path, set.clone()).await.assert_ok_empty();
        let before = server.presence("u1").await;
        assert_eq!(
            before["statusMessage"]["message"]["content"], "Lunch",
            "{before}"
        );
        server.post(path, clear.clone()).await.assert_ok_empty();
        let after = server.presence("u1").await;
        assert_eq!(
            after["statusMessage"],
            Value::Null,
            "{clear} should clear the message: {after}"
        );
        assert!(
            after["sequenceNumber"].as_str() > before["sequenceNumber"].as_str(),
            "clearing is a visible change: {before} then {after}"
        );
    }
}

#[tokio::test]
async fn enum_values_are_matched_without_regard_to_case_and_echoed_in_pascal_case() {
    let server = TestServer::start(&[]).await;
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    server
        .set_presence("u1", "app", "available", "AVAILABLE", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Available", "Available"));
    server
        .set_presence("u2", "app", "bUSY", "inaconferencecall", None)
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u2").await, pair("Busy", "InAConferenceCall"));
    server
        .set_presence("u3", "app", "DONOTDISTURB", "presenting", None)
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u3").await, pair("DoNotDisturb", "Presenting"));
    server
        .set_preferred("u1", "berightback", "BERIGHTBACK", None)
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("BeRightBack", "BeRightBack"));
    server
        .set_preferred("u1", "offline", "offwork", None)
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u1").await, pair("Offline", "OffWork"));
    server
        .put(
            "/beta/users/u4/presence/sessions/s1",
            json!({"availability": "away", "activity": "AWAY"}),
        )
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u4").await, pair("Away", "Away"));
    server
        .post(
            "/v1.0/users/u5/presence/setManualLocation",
            json!({"workLocationType": "TIMEOFF"}),
        )
        .await
        .assert_ok_empty();
    assert_eq!(
        server.presence("u5").await["workLocation"]["workLocationType"],
        "timeOff"
    );
    server
        .post(
            "/v1.0/users/u5/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "hi", "contentType": "TEXT"}}}),
        )
        .await
        .assert_ok_empty();
    assert_eq!(
        server.presence("u5").await["statusMessage"]["message"]["contentType"],
        "text"
    );
}

#[tokio::test]
async fn the_python_sdk_duration_forms_are_accepted_where_in_range() {
    let server = TestServer::start(&[]).await;
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    for (user, duration) in [("u1", "1:00:00"), ("u2", "0:05:00"), ("u3", "4:00:00")] {
        server
            .set_presence(user, "app", "Busy", "InACall", Some(duration))
            .await
            .assert_ok_empty();
    }
    server
        .set_presence("u4", "app", "Busy", "InACall", Some("1 day, 0:00:00"))
        .await
        .assert_error(400, "InvalidArgument");
    server.advance("PT4M59S").await;
    assert_eq!(server.shown("u2").await, pair("Busy", "InACall"));
    server.advance("PT1S").await;
    assert_eq!(server.shown("u2").await, pair("Offline", "Offline"));
    server.advance("PT54M59S").await;
    assert_eq!(server.shown("u1").await, pair("Busy", "InACall"));
    server.advance("PT1S").await;
    assert_eq!(server.shown("u1").await, pair("Offline", "Offline"));
    assert_eq!(server.shown("u3").await, pair("Busy", "InACall"));
    server.advance("PT3H").await;
    assert_eq!(server.shown("u3").await, pair("Offline", "Offline"));
    assert_eq!(server.shown("u4").await, pair("Offline", "Offline"));

    // A preferred presence for "1 day, 0:00:00" lasts exactly one day.
    server
        .set_preferred("u5", "Available", "Available", Some("1 day, 0:00:00"))
        .await
        .assert_ok_empty();
    server.advance("PT23H59M59S").await;
    server
        .set_presence("u5", "app", "Away", "Away", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("u5").await, pair("Available", "Available"));
    server.advance("PT1S").await;
    assert_eq!(server.shown("u5").await, pair("Away", "Away"));
}

#[tokio::test]
async fn another_delegated_user_sees_a_status_message_without_its_dates() {
    let server = TestServer::start(&[]).await;
    server
        .post_as(
            "/v1.0/me/presence/setStatusMessage",
            Some("bob"),
            json!({"statusMessage": {
                "message": {"content": "Out to lunch", "contentType": "text"},
                "expiryDateTime": {"dateTime": "2099-01-01T12:00:00", "timeZone": "UTC"},
            }}),
        )
        .await
        .assert_ok_empty();
    let has_dates = |message: &Value| {
        (
            message.get("publishedDateTime").is_some(),
            message.get("expiryDateTime").is_some(),
        )
    };
    for (who, path, caller, expected) in [
        (
            "bob himself",
            "/v1.0/me/presence",
            Some("bob"),
            (true, true),
        ),
        (
            "bob through /users",
            "/v1.0/users/bob/presence",
            Some("bob"),
            (true, true),
        ),
        (
            "an application",
            "/v1.0/users/bob/presence",
            None,
            (true, true),
        ),
        (
            "alice",
            "/v1.0/users/bob/presence",
            Some("alice"),
            (false, false),
        ),
        (
            "alice",
            "/beta/communications/presences/bob",
            Some("alice"),
            (false, false),
        ),
    ] {
        let reply = server.get_as(path, caller).await;
        let message = &reply.body["statusMessage"];
        assert_eq!(
            message["message"]["content"], "Out to lunch",
            "{who}: {}",
            reply.text
        );
        assert_eq!(
            has_dates(message),
            expected,
            "{who} via {path}: {}",
            reply.text
        );
    }
    let reply = server
        .post_as(
            "/v1.0/communications/getPresencesByUserId",
            Some("alice"),
            json!({"ids": ["bob"]}),
        )
        .await;
    let message = &reply.body["value"][0]["statusMessage"];
    assert_eq!(has_dates(message), (false, false), "{}", reply.text);
}
