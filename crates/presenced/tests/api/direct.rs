//! The direct route (`http/direct.rs`), in the real binary: a GET of a
//! presence that needs neither the router nor its layers is answered
//! beside them, and must answer exactly as the router does. The router's
//! answer to the same request is had by accepting gzip, which sends every
//! request through the layers and so through the router; a presence that
//! small is not compressed, and one that large is compared once undone.

use std::io::Read;

use serde_json::{Value, json};

use crate::helpers::{TestServer, counter, signed_token};

const SECRET: &str = "the hs256 secret of the direct route's tests, 32+ bytes";
const TENANT: &str = "contoso";
const APP: &str = "5d1f4c8e-0b6a-4d1e-9a43-6f0c2b7e8a91";
const ALICE: &str = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
const BOB: &str = "0b6d3c2a-8e1f-4a7b-9c5d-3e2f1a0b9c8d";
/// Has a status message long enough that the answer is gzipped through
/// the layers.
const CAROL: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

async fn hs256(extra: &[&str]) -> TestServer {
    let mut args = vec!["--auth", "hs256", "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

fn app_token(roles: &[&str]) -> String {
    signed_token(SECRET, TENANT, APP, None, roles)
}

fn delegated(user: &str, scopes: &[&str]) -> String {
    signed_token(SECRET, TENANT, APP, Some(user), scopes)
}

/// A status, its headers and its body, as the client would read them.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

/// GETs `path` with `token` (and `client_request_id`), through the router
/// when `routed`; the answer with what differs between any two requests
/// taken out: the request ids (a `client-request-id` that repeats the
/// request id is marked as such), the date, and the framing and headers of
/// gzip.
async fn get(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    client_request_id: Option<&str>,
    routed: bool,
) -> Answer {
    let mut request = server.client().get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = client_request_id {
        request = request.header("client-request-id", id);
    }
    if routed {
        request = request.header("accept-encoding", "gzip");
    }
    let response = request.send().await.expect("answered");
    read_answer(path, response, routed).await
}

/// An answer as the tests compare it (see [`get`]).
async fn read_answer(path: &str, response: reqwest::Response, routed: bool) -> Answer {
    let status = response.status().as_u16();
    assert!(status < 500, "{path}: {status}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let request_id = header("request-id");
    assert!(
        !request_id.is_empty(),
        "{path}: every answer has a request-id"
    );
    let gzipped = header("content-encoding") == "gzip";
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "request-id"
                    | "date"
                    | "content-length"
                    | "transfer-encoding"
                    | "content-encoding"
                    | "vary"
            )
        })
        .map(|(name, value)| {
            let value = value.to_str().expect("a visible header").to_owned();
            let value = if name == "client-request-id" && value == request_id {
                "(the request-id)".to_owned()
            } else {
                value
            };
            (name.as_str().to_owned(), value)
        })
        .collect();
    headers.sort();
    let bytes = response.bytes().await.expect("a body").to_vec();
    let bytes = if gzipped {
        assert!(routed, "{path}: gzip only for a client that accepts it");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut text)
            .expect("valid gzip");
        text
    } else {
        bytes
    };
    let mut body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if let Some(inner) = body
        .get_mut("error")
        .and_then(|error| error.get_mut("innerError"))
    {
        for field in ["request-id", "client-request-id", "date"] {
            assert!(inner[field].is_string(), "{path}: {inner}");
            inner[field] = json!("(differs)");
        }
    }
    Answer {
        status,
        headers,
        body,
    }
}

async fn set(server: &TestServer, token: &str, user: &str, body: Value) {
    let path = format!("/v1.0/users/{user}/presence/setPresence");
    let reply = server.post_bearer(&path, token, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

async fn direct_answers(server: &TestServer) -> f64 {
    counter(
        &server.metrics().await,
        "presenced_http_direct_answers_total",
    )
}

#[tokio::test]
async fn the_direct_route_answers_as_the_router_does() {
    let server = hs256(&[]).await;
    let writer = app_token(&["Presence.ReadWrite.All"]);
    set(
        &server,
        &writer,
        ALICE,
        json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"}),
    )
    .await;
    set(
        &server,
        &writer,
        CAROL,
        json!({"sessionId": APP, "availability": "Available", "activity": "Available"}),
    )
    .await;
    let message = "a status message that makes the presence larger than a kibibyte; ".repeat(14);
    let path = format!("/v1.0/users/{CAROL}/presence/setStatusMessage");
    let body = json!({"statusMessage": {"message": {"content": message, "contentType": "text"}}});
    let reply = server.post_bearer(&path, &writer, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let reader = app_token(&["Presence.Read.All"]);
    let no_presence = app_token(&["User.Read.All"]);
    let alice_self = delegated(ALICE, &["Presence.Read"]);
    let alice_all = delegated(ALICE, &["Presence.Read.All"]);
    let tokens: [(&str, Option<&str>); 6] = [
        ("application, Presence.Read.All", Some(&reader)),
        ("application, no presence role", Some(&no_presence)),
        ("alice, Presence.Read", Some(&alice_self)),
        ("alice, Presence.Read.All", Some(&alice_all)),
        ("no token", None),
        ("not a token", Some("not.a.token")),
    ];
    // 'f' is %66: the router decodes it, the direct route leaves it to the
    // router.
    let escaped = format!("%66{}", &ALICE[1..]);
    let long = "x".repeat(129);
    let mut paths = Vec::new();
    for version in ["/v1.0", "/beta"] {
        for user in [
            ALICE,
            BOB,
            CAROL,
            &ALICE.to_uppercase(),
            &escaped,
            "bad,id",
            &long,
        ] {
            paths.push(format!("{version}/users/{user}/presence"));
        }
        paths.push(format!("{version}/me/presence"));
        paths.push(format!("{version}/communications/presences/{ALICE}"));
        paths.push(format!("{version}/communications/presences/{CAROL}"));
        paths.push(format!(
            "{version}/users/{ALICE}/presence?$select=availability"
        ));
        paths.push(format!("{version}/users/{ALICE}/presence/"));
    }

    let before = direct_answers(&server).await;
    let mut expected_direct = 0;
    let mut reads = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for (who, token) in tokens {
        for path in &paths {
            for client_request_id in [None, Some("7f3c0e1a-the-callers-own-id")] {
                // The router first: a token seen for the first time is
                // verified there, and the direct route answers only
                // tokens already verified.
                let routed = get(&server, path, token, client_request_id, true).await;
                let direct = get(&server, path, token, client_request_id, false).await;
                assert_eq!(
                    direct.status, routed.status,
                    "{who} GET {path}: {direct:?} against {routed:?}"
                );
                assert_eq!(direct.headers, routed.headers, "{who} GET {path}");
                assert_eq!(direct.body, routed.body, "{who} GET {path}");
                *statuses.entry(direct.status).or_insert(0) += 1;
                if direct.status == 200 && !path.contains(['?', '%']) {
                    expected_direct += 1;
                }
                if direct.status == 200 && path.starts_with("/v1.0/users/") {
                    reads += 2;
                }
            }
        }
    }
    // Every kind of answer was compared: read, refused for the id, the
    // token, the permission, and the routes that are not there.
    for status in [200, 400, 401, 403, 404] {
        assert!(statuses.contains_key(&status), "{status} in {statuses:?}");
    }
    // The direct route answered exactly the plain reads, each once; every
    // other request, and every one that accepted gzip, went to the router.
    assert!(expected_direct >= 20, "{expected_direct}");
    assert_eq!(
        direct_answers(&server).await - before,
        f64::from(expected_direct)
    );
    // Both record under the same route.
    let metrics = server.metrics().await;
    let recorded = counter(
        &metrics,
        "presenced_http_requests_total{route=\"/v1.0/users/{id}/presence\",method=\"GET\",status=\"200\"}",
    );
    assert_eq!(recorded, f64::from(reads));
}

#[tokio::test]
async fn a_throttled_read_is_refused_alike_on_both_routes() {
    let server = hs256(&["--throttle-app", "4/PT1H"]).await;
    let reader = app_token(&["Presence.Read.All"]);
    let path = format!("/v1.0/users/{ALICE}/presence");
    let first = get(&server, &path, Some(&reader), None, true).await;
    assert_eq!(first.status, 200);
    let before = direct_answers(&server).await;
    for _ in 0..3 {
        let direct = get(&server, &path, Some(&reader), None, false).await;
        assert_eq!(direct.status, 200);
    }
    // The limit is spent on both routes alike: the fifth is refused on
    // either.
    let direct = get(&server, &path, Some(&reader), None, false).await;
    let routed = get(&server, &path, Some(&reader), None, true).await;
    assert_eq!(direct.status, 429, "{direct:?}");
    assert_eq!(routed.status, 429, "{routed:?}");
    let names = |answer: &Answer| -> Vec<String> {
        answer
            .headers
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    };
    assert_eq!(names(&direct), names(&routed));
    let mut direct_body = direct.body.clone();
    let mut routed_body = routed.body.clone();
    // The seconds to wait may have ticked between the two.
    for body in [&mut direct_body, &mut routed_body] {
        body["error"]["message"] = json!("(the wait)");
        body["error"]["innerError"]["retryAfterSeconds"] = json!("(the wait)");
    }
    assert_eq!(direct_body, routed_body);
    assert_eq!(direct_answers(&server).await - before, 4.0);
}

/// POSTs `body` as `content_type` to `path` with `token`, through the
/// router when `routed`; the answer as [`get`] reads it.
async fn post(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
    routed: bool,
) -> Answer {
    let mut request = server
        .client()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if routed {
        request = request.header("accept-encoding", "gzip");
    }
    let response = request.send().await.expect("answered");
    read_answer(path, response, routed).await
}

#[tokio::test]
async fn a_set_presence_is_answered_directly_as_the_router_answers_it() {
    let server = hs256(&["--max-body-bytes", "1024"]).await;
    let writer = app_token(&["Presence.ReadWrite.All"]);
    let reader = app_token(&["Presence.Read.All"]);
    let alice = delegated(ALICE, &["Presence.ReadWrite"]);
    let tokens: [(&str, Option<&str>, bool); 5] = [
        ("application, Presence.ReadWrite.All", Some(&writer), true),
        ("application, Presence.Read.All", Some(&reader), true),
        ("alice, Presence.ReadWrite", Some(&alice), false),
        ("no token", None, false),
        ("not a token", Some("not.a.token"), false),
    ];
    let mut paths = Vec::new();
    for version in ["/v1.0", "/beta"] {
        for user in [ALICE, BOB, "bad,id"] {
            paths.push(format!("{version}/users/{user}/presence/setPresence"));
        }
        paths.push(format!("{version}/me/presence/setPresence"));
        paths.push(format!(
            "{version}/communications/presences/{ALICE}/setPresence"
        ));
        paths.push(format!("{version}/users/{ALICE}/presence/setPresence?x=1"));
        paths.push(format!("{version}/users/{ALICE}/presence/setpresence"));
    }
    let json = "application/json";
    let set = |availability: &str, activity: &str, extra: &str| {
        format!(
            r#"{{"sessionId":"{APP}","availability":"{availability}","activity":"{activity}"{extra}}}"#
        )
    };
    let too_large = set(
        "Available",
        "Available",
        &format!(r#","x":"{}""#, "y".repeat(2000)),
    );
    let bodies: Vec<(&str, String)> = vec![
        (json, set("Available", "Available", "")),
        (
            json,
            set("Busy", "InACall", r#","expirationDuration":"PT5M""#),
        ),
        (json, set("Busy", "Available", "")),
        (
            json,
            set("Available", "Available", r#","expirationDuration":"PT1M""#),
        ),
        (
            json,
            r#"{"availability":"Available","activity":"Available"}"#.into(),
        ),
        (
            json,
            r#"{"sessionId":"another-app","availability":"Away","activity":"Away"}"#.into(),
        ),
        (json, "{".into()),
        (json, format!("{} trailing", set("Away", "Away", ""))),
        (json, r#"{"sessionId":["not","a","string"]}"#.into()),
        (json, String::new()),
        (json, too_large),
        ("text/plain", set("Available", "Available", "")),
    ];

    let before = direct_answers(&server).await;
    let mut expected_direct = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for (who, token, application) in tokens {
        // The router verifies a token seen for the first time.
        let verified = token.is_some_and(|token| token.contains('.') && token.len() > 40);
        for path in &paths {
            let admitted = verified
                && !path.contains('?')
                && !path.contains("bad,id")
                && !path.ends_with("setpresence")
                && (!application || !path.contains("/me/"));
            for (content_type, body) in &bodies {
                let routed = post(&server, path, token, content_type, body, true).await;
                let direct = post(&server, path, token, content_type, body, false).await;
                let case = format!("{who} POST {path} {content_type} {body:.80}");
                assert_eq!(
                    direct.status, routed.status,
                    "{case}: {direct:?} against {routed:?}"
                );
                assert_eq!(direct.headers, routed.headers, "{case}");
                assert_eq!(direct.body, routed.body, "{case}");
                *statuses.entry(direct.status).or_insert(0) += 1;
                if admitted {
                    expected_direct += 1;
                }
            }
        }
    }
    for status in [200, 400, 401, 403, 404, 413, 415] {
        assert!(statuses.contains_key(&status), "{status} in {statuses:?}");
    }
    assert!(expected_direct >= 100, "{expected_direct}");
    assert_eq!(
        direct_answers(&server).await - before,
        f64::from(expected_direct)
    );

    // A write answered directly is made: read back through the router.
    let dave = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let path = format!("/v1.0/users/{dave}/presence/setPresence");
    let body = set("DoNotDisturb", "Presenting", "");
    let direct = post(&server, &path, Some(&writer), json, &body, false).await;
    assert_eq!(direct.status, 200, "{direct:?}");
    let read = get(
        &server,
        &format!("/v1.0/users/{dave}/presence"),
        Some(&reader),
        None,
        true,
    )
    .await;
    assert_eq!(read.body["availability"], "DoNotDisturb", "{:?}", read.body);
    assert_eq!(read.body["activity"], "Presenting", "{:?}", read.body);
}
