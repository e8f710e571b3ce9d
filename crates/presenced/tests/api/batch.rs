//! Graph's JSON batching against the real binary: up to 20 requests, each
//! answered as if sent alone (authorized, throttled, bounded), `dependsOn`
//! with 424 for dependents of a failed request, inner URLs with or without
//! a leading slash, and whole-batch refusals that run nothing.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestServer, signed_token};

const SECRET: &str = "the hs256 secret of the batching tests, 32+ bytes!";
const APP: &str = "6e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";

fn token(roles: &[&str]) -> String {
    signed_token(SECRET, "contoso", APP, None, roles)
}

fn set_presence(id: &str, url: &str, availability: &str, activity: &str) -> Value {
    json!({
        "id": id,
        "method": "POST",
        "url": url,
        "headers": {"Content-Type": "application/json"},
        "body": {"sessionId": "batch-app", "availability": availability, "activity": activity},
    })
}

async fn batch(server: &TestServer, path: &str, body: Value, token: Option<&str>) -> Reply {
    let mut request = server.client().post(server.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    server.send(request).await
}

/// The response to the request `id`, asserting there is exactly one.
#[track_caller]
fn response<'a>(reply: &'a Reply, id: &str) -> &'a Value {
    let responses = reply.body["responses"]
        .as_array()
        .unwrap_or_else(|| panic!("a batch answer: {}", reply.text));
    let matching: Vec<&Value> = responses.iter().filter(|one| one["id"] == id).collect();
    assert_eq!(matching.len(), 1, "one response for {id}: {}", reply.text);
    matching[0]
}

#[track_caller]
fn status(reply: &Reply, id: &str) -> u64 {
    response(reply, id)["status"].as_u64().expect("a status")
}

#[tokio::test]
async fn twenty_set_presences_in_one_batch_are_each_applied_and_answered() {
    let server = TestServer::start(&[]).await;
    let requests: Vec<Value> = (0..20)
        .map(|n| {
            // Each form clients send: relative with and without a leading
            // slash (Graph's documentation), naming the version (the
            // JavaScript client), absolute (the Python SDK).
            let path = format!("users/batch-user-{n}/presence/setPresence");
            let url = match n % 4 {
                0 => format!("/{path}"),
                1 => path,
                2 => format!("/v1.0/{path}"),
                _ => server.url(&format!("/v1.0/{path}")),
            };
            set_presence(&n.to_string(), &url, "Busy", "InACall")
        })
        .collect();
    let reply = batch(
        &server,
        "/v1.0/$batch",
        json!({ "requests": requests }),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["responses"].as_array().map(Vec::len), Some(20));
    for n in 0..20 {
        let answer = response(&reply, &n.to_string());
        assert_eq!(answer["status"], 200, "{answer}");
        assert!(
            answer.get("body").is_none(),
            "a write answers no body: {answer}"
        );
        assert!(answer["headers"].is_object(), "{answer}");
        assert_eq!(
            server.shown(&format!("batch-user-{n}")).await,
            ("Busy".into(), "InACall".into())
        );
    }

    // Reads come back with their JSON bodies and headers; /beta takes the
    // same batches.
    let reads: Vec<Value> = (0..3)
        .map(|n| json!({"id": format!("r{n}"), "method": "GET", "url": format!("/users/batch-user-{n}/presence")}))
        .collect();
    let reply = batch(&server, "/beta/$batch", json!({ "requests": reads }), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for n in 0..3 {
        let answer = response(&reply, &format!("r{n}"));
        assert_eq!(answer["status"], 200);
        assert_eq!(answer["body"]["id"], format!("batch-user-{n}"));
        assert_eq!(answer["body"]["availability"], "Busy");
        // The inner request was served as the batch's host.
        assert!(
            answer["body"]["@odata.context"]
                .as_str()
                .is_some_and(|context| context.starts_with(&format!("{}/beta/", server.base))),
            "{answer}"
        );
        assert!(
            answer["headers"]["content-type"]
                .as_str()
                .is_some_and(|value| value.starts_with("application/json")),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn depends_on_orders_requests_and_a_failed_one_makes_its_dependents_424() {
    let server = TestServer::start(&[]).await;
    let body = json!({"requests": [
        // Clearing a session that does not exist: 404.
        {"id": "clear", "method": "POST", "url": "/users/dep-a/presence/clearPresence",
         "headers": {"content-type": "application/json"}, "body": {"sessionId": "nobody"}},
        set_presence("after-clear", "/users/dep-a/presence/setPresence", "Away", "Away")
            .as_object().cloned().map(|mut request| { request.insert("dependsOn".into(), json!(["clear"])); request }).expect("an object"),
        {"id": "chained", "method": "GET", "url": "/users/dep-a/presence", "dependsOn": ["after-clear"]},
        set_presence("set", "/users/dep-b/presence/setPresence", "DoNotDisturb", "Presenting"),
        {"id": "read-after-set", "method": "GET", "url": "/users/dep-b/presence", "dependsOn": ["set"]},
    ]});
    let reply = batch(&server, "/v1.0/$batch", body, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(status(&reply, "clear"), 404);
    let failed = response(&reply, "after-clear");
    assert_eq!(failed["status"], 424, "{failed}");
    assert_eq!(failed["body"]["error"]["code"], "FailedDependency");
    assert_eq!(status(&reply, "chained"), 424, "a dependent of a dependent");
    // Not applied: the request that depended on the failure never ran.
    let presence = server.presence("dep-a").await;
    assert_eq!(presence["availability"], "Offline", "{presence}");
    assert_eq!(status(&reply, "set"), 200);
    // The read ran after the write it depends on, so it sees it.
    let read = response(&reply, "read-after-set");
    assert_eq!(read["status"], 200);
    assert_eq!(read["body"]["availability"], "DoNotDisturb", "{read}");
    assert_eq!(read["body"]["activity"], "Presenting", "{read}");
}

#[tokio::test]
async fn a_malformed_batch_is_refused_whole_and_runs_nothing() {
    let server = TestServer::start(&[]).await;
    let write = set_presence(
        "w",
        "/users/untouched/presence/setPresence",
        "Busy",
        "InACall",
    );
    let get = |id: &str| json!({"id": id, "method": "GET", "url": "/me/presence"});
    let cases = [
        (
            json!({"requests": (0..21).map(|n| get(&n.to_string())).collect::<Vec<_>>()}),
            "21",
        ),
        (json!({"requests": []}), "1 to 20"),
        (json!({}), "requests"),
        (
            json!({"requests": [write.clone(), get("w")]}),
            "more than one",
        ),
        (
            json!({"requests": [write.clone(), {"method": "GET", "url": "/me/presence"}]}),
            "id",
        ),
        (
            json!({"requests": [write.clone(), {"id": "x", "url": "/me/presence"}]}),
            "method",
        ),
        (
            json!({"requests": [write.clone(), {"id": "x", "method": "TRACE", "url": "/me/presence"}]}),
            "TRACE",
        ),
        (
            json!({"requests": [write.clone(), {"id": "x", "method": "GET", "url": "/me/presence", "dependsOn": ["nope"]}]}),
            "nope",
        ),
        (
            json!({"requests": [write.clone(),
            {"id": "x", "method": "GET", "url": "/me/presence", "dependsOn": ["y"]},
            {"id": "y", "method": "GET", "url": "/me/presence", "dependsOn": ["x"]}]}),
            "cycle",
        ),
        (json!({"requests": {"id": "x"}}), "requests"),
        (
            json!({"requests": [write.clone(), {"id": "x", "method": "GET", "url": "/me/presence", "headers": {"a": 1}}]}),
            "headers",
        ),
    ];
    for (body, expected) in cases {
        let reply = batch(&server, "/v1.0/$batch", body.clone(), None).await;
        let message = reply.assert_error(400, "BadRequest");
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(
        server.presence("untouched").await["availability"],
        "Offline"
    );
    // Not JSON at all.
    let reply = server
        .send(
            server
                .client()
                .post(server.url("/v1.0/$batch"))
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    reply.assert_error(415, "UnsupportedMediaType");
    let reply = server.get("/v1.0/$batch").await;
    reply.assert_error(405, "MethodNotAllowed");
}

#[tokio::test]
async fn an_inner_request_that_leaves_the_api_is_refused_alone() {
    let server = TestServer::start(&[]).await;
    let body = json!({"requests": [
        {"id": "absolute", "method": "GET", "url": "https://graph.microsoft.com/me/presence"},
        {"id": "nested", "method": "POST", "url": "/$batch", "headers": {"content-type": "application/json"}, "body": {"requests": []}},
        {"id": "stream", "method": "GET", "url": "/_presenced/stream"},
        {"id": "clock", "method": "POST", "url": "../_presenced/clock/advance", "headers": {"content-type": "application/json"}, "body": {"by": "PT1H"}},
        {"id": "unknown", "method": "GET", "url": "/users/a/nothing"},
        {"id": "no-type", "method": "POST", "url": "/users/a/presence/setPresence", "body": {"sessionId": "s", "availability": "Busy", "activity": "InACall"}},
        set_presence("fine", "users/kept/presence/setPresence", "Away", "Away"),
    ]});
    let before = server.now().await;
    let reply = batch(&server, "/v1.0/$batch", body, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for id in ["absolute", "nested", "stream", "clock"] {
        let answer = response(&reply, id);
        assert_eq!(answer["status"], 400, "{id}: {answer}");
        assert_eq!(answer["body"]["error"]["code"], "BadRequest", "{answer}");
        assert!(answer["body"]["error"]["innerError"]["request-id"].is_string());
    }
    assert_eq!(status(&reply, "unknown"), 404);
    // A body without its Content-Type is refused as it would be alone.
    assert_eq!(status(&reply, "no-type"), 415);
    assert_eq!(status(&reply, "fine"), 200);
    assert_eq!(server.shown("kept").await, ("Away".into(), "Away".into()));
    assert_eq!(server.presence("a").await["availability"], "Offline");
    assert_eq!(server.now().await, before, "the clock was not advanced");
}

#[tokio::test]
async fn each_inner_request_is_authorized_and_throttled_as_if_sent_alone() {
    // Three requests an hour for the application: the batch itself is not
    // counted, its inner requests are.
    let server = TestServer::start(&[
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--throttle-app",
        "3/PT1H",
        "--throttle-unauthenticated",
        "1/PT1H",
    ])
    .await;
    let reader = token(&["Presence.Read.All"]);
    let body = json!({"requests": [
        set_presence("write", "/users/auth-a/presence/setPresence", "Busy", "InACall"),
        {"id": "read", "method": "GET", "url": "/users/auth-a/presence"},
    ]});
    // Without a token the batch is refused whole, and counted against the
    // address's limit as any request without one.
    let reply = batch(&server, "/v1.0/$batch", body.clone(), None).await;
    reply.assert_error(401, "InvalidAuthenticationToken");
    let reply = batch(&server, "/v1.0/$batch", body.clone(), None).await;
    reply.assert_error(429, "TooManyRequests");
    let reply = batch(&server, "/v1.0/$batch", body, Some(&reader)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let write = response(&reply, "write");
    assert_eq!(write["status"], 403, "a reader may not write: {write}");
    assert_eq!(write["body"]["error"]["code"], "Forbidden");
    assert_eq!(status(&reply, "read"), 200);

    // Two of the three requests are spent; of four more, one is served.
    let reads: Vec<Value> = (0..4)
        .map(|n| json!({"id": n.to_string(), "method": "GET", "url": "/users/auth-a/presence"}))
        .collect();
    let reply = batch(
        &server,
        "/v1.0/$batch",
        json!({ "requests": reads }),
        Some(&reader),
    )
    .await;
    assert_eq!(
        reply.status, 200,
        "the batch itself is not throttled: {}",
        reply.text
    );
    let statuses: Vec<u64> = (0..4).map(|n| status(&reply, &n.to_string())).collect();
    assert_eq!(
        statuses.iter().filter(|&&status| status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&status| status == 429).count(),
        3,
        "{statuses:?}"
    );
    for n in 0..4 {
        let answer = response(&reply, &n.to_string());
        if answer["status"] == 429 {
            assert_eq!(answer["body"]["error"]["code"], "TooManyRequests");
            let retry_after: u64 = answer["headers"]["retry-after"]
                .as_str()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("a Retry-After: {answer}"));
            assert!(retry_after >= 1, "{answer}");
        }
    }
    // A batch refused whole runs nothing to count, so it counts itself:
    // beyond the limit, even a malformed batch is a 429.
    let reply = batch(
        &server,
        "/v1.0/$batch",
        json!({"requests": []}),
        Some(&reader),
    )
    .await;
    reply.assert_error(429, "TooManyRequests");
}

#[tokio::test]
async fn a_batch_may_be_up_to_a_mebibyte_and_each_inner_body_is_bounded_alone() {
    let server = TestServer::start(&[]).await;
    // 20 reads of 650 ids each: about 200 KB, more than one request's
    // 128 KiB, within a batch's 1 MiB.
    let requests: Vec<Value> = (0..20)
        .map(|n| {
            let ids: Vec<String> = (0..650).map(|m| format!("big-user-{n}-{m:04}")).collect();
            json!({"id": n.to_string(), "method": "POST", "url": "/communications/getPresencesByUserId",
                   "headers": {"Content-Type": "application/json"}, "body": {"ids": ids}})
        })
        .collect();
    let body = json!({ "requests": requests });
    assert!(body.to_string().len() > 128 * 1024);
    let reply = batch(&server, "/v1.0/$batch", body, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for n in 0..20 {
        let answer = response(&reply, &n.to_string());
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["body"]["value"].as_array().map(Vec::len), Some(650));
    }

    // An inner body larger than one request may be is that request's 413.
    let ids: Vec<String> = (0..14_000).map(|m| format!("huge-{m:05}")).collect();
    let huge = json!({"id": "huge", "method": "POST", "url": "/communications/getPresencesByUserId",
        "headers": {"Content-Type": "application/json"}, "body": {"ids": ids}});
    let reply = batch(&server, "/v1.0/$batch", json!({"requests": [huge]}), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(status(&reply, "huge"), 413);

    // A batch beyond 1 MiB is refused whole.
    let filler = "f".repeat(1024 * 1024);
    let body = json!({"requests": [{"id": "1", "method": "GET", "url": "/me/presence", "headers": {"x-filler": filler}}]});
    let reply = batch(&server, "/v1.0/$batch", body, None).await;
    reply.assert_error(413, "RequestEntityTooLarge");
}
