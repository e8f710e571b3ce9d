//! gzip both ways against the real binary: large answers are compressed
//! for clients that accept gzip, gzip request bodies are read (and bounded
//! after they are undone), and any other encoding is a 415 that writes
//! nothing, after authentication as the SPEC orders.

use std::io::{Read, Write};

use serde_json::{Value, json};

use crate::helpers::{Reply, TestServer};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compresses");
    encoder.finish().expect("compresses")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut text)
        .expect("a valid gzip answer");
    text
}

fn encoding(reply_headers: &reqwest::header::HeaderMap) -> Option<&str> {
    reply_headers
        .get("content-encoding")
        .and_then(|value| value.to_str().ok())
}

#[tokio::test]
async fn large_answers_are_gzipped_for_clients_that_accept_it() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("gz-0", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    let ids: Vec<String> = (0..650).map(|n| format!("gz-{n}")).collect();
    let body = json!({ "ids": ids }).to_string();
    let read = |accept: Option<&'static str>| {
        let mut request = server
            .client()
            .post(server.url("/v1.0/communications/getPresencesByUserId"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request.send()
    };
    let plain = read(None).await.expect("answered");
    assert_eq!(plain.status(), 200);
    assert_eq!(encoding(plain.headers()), None, "not asked for gzip");
    let plain = plain.bytes().await.expect("a body");

    let zipped = read(Some("gzip, deflate, br")).await.expect("answered");
    assert_eq!(zipped.status(), 200);
    assert_eq!(encoding(zipped.headers()), Some("gzip"));
    let zipped = zipped.bytes().await.expect("a body");
    assert!(
        zipped.len() * 5 < plain.len(),
        "{} of {}",
        zipped.len(),
        plain.len()
    );
    let unzipped: Value = serde_json::from_slice(&gunzip(&zipped)).expect("JSON inside");
    let expected: Value = serde_json::from_slice(&plain).expect("JSON");
    assert_eq!(unzipped, expected, "the same answer, compressed");
    assert_eq!(unzipped["value"].as_array().map(Vec::len), Some(650));

    // Only gzip is offered: a client that accepts only another gets it plain.
    let brotli = read(Some("br")).await.expect("answered");
    assert_eq!(encoding(brotli.headers()), None);

    // A single presence is too small to be worth compressing.
    let one = server
        .client()
        .get(server.url("/v1.0/users/gz-0/presence"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("answered");
    assert_eq!(one.status(), 200);
    assert_eq!(encoding(one.headers()), None);
}

async fn set_encoded(server: &TestServer, user: &str, encoding: &str, body: Vec<u8>) -> Reply {
    server
        .send(
            server
                .client()
                .post(server.url(&format!("/v1.0/users/{user}/presence/setPresence")))
                .header("content-type", "application/json")
                .header("content-encoding", encoding)
                .body(body),
        )
        .await
}

#[tokio::test]
async fn gzip_request_bodies_are_read_and_other_encodings_refused_with_415() {
    let server = TestServer::start(&[]).await;
    let body = json!({"sessionId": "app", "availability": "Away", "activity": "Away"}).to_string();
    set_encoded(&server, "gz-in", "gzip", gzip(body.as_bytes()))
        .await
        .assert_ok_empty();
    assert_eq!(server.shown("gz-in").await, ("Away".into(), "Away".into()));

    let busy =
        json!({"sessionId": "app", "availability": "Busy", "activity": "InACall"}).to_string();
    for refused in ["br", "deflate", "compress", "zstd"] {
        let reply = set_encoded(&server, "gz-in", refused, busy.clone().into_bytes()).await;
        let message = reply.assert_error(415, "UnsupportedMediaType");
        assert!(message.contains("gzip"), "{message}");
    }
    // The encoding's name in any case, and its old alias.
    for spelling in ["GZIP", "x-gzip"] {
        let user = format!("gz-{spelling}");
        let available =
            json!({"sessionId": "app", "availability": "Available", "activity": "Available"});
        set_encoded(
            &server,
            &user,
            spelling,
            gzip(available.to_string().as_bytes()),
        )
        .await
        .assert_ok_empty();
        assert_eq!(
            server.shown(&user).await,
            ("Available".into(), "Available".into())
        );
    }
    // Broken gzip, not declared JSON: the type is judged first (415).
    let reply = server
        .send(
            server
                .client()
                .post(server.url("/v1.0/users/gz-in/presence/setPresence"))
                .header("content-type", "text/plain")
                .header("content-encoding", "gzip")
                .body(busy.clone()),
        )
        .await;
    reply.assert_error(415, "UnsupportedMediaType");
    // Not gzip after all: a 400 that says so.
    let reply = set_encoded(&server, "gz-in", "gzip", busy.clone().into_bytes()).await;
    reply.assert_error(400, "BadRequest");
    assert_eq!(
        server.shown("gz-in").await,
        ("Away".into(), "Away".into()),
        "nothing applied"
    );

    // A small gzip body that expands past --max-body-bytes is bounded after
    // it is undone.
    let mut bomb = body.clone().into_bytes();
    bomb.truncate(bomb.len() - 1);
    bomb.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    bomb.push(b'}');
    let compressed = gzip(&bomb);
    assert!(compressed.len() < 64 * 1024);
    let reply = set_encoded(&server, "gz-bomb", "gzip", compressed).await;
    reply.assert_error(413, "RequestEntityTooLarge");
    assert_eq!(server.presence("gz-bomb").await["availability"], "Offline");

    // A batch may be sent with gzip too.
    let batch = json!({"requests": [{"id": "1", "method": "POST", "url": "/users/gz-batch/presence/setPresence",
        "headers": {"content-type": "application/json"}, "body": serde_json::from_str::<Value>(&busy).expect("JSON")}]});
    let reply = server
        .send(
            server
                .client()
                .post(server.url("/v1.0/$batch"))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(gzip(batch.to_string().as_bytes())),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["responses"][0]["status"], 200, "{}", reply.text);
    assert_eq!(
        server.shown("gz-batch").await,
        ("Busy".into(), "InACall".into())
    );
}

#[tokio::test]
async fn an_unknown_encoding_is_judged_after_the_token() {
    let server = TestServer::start(&[
        "--auth",
        "hs256",
        "--jwt-secret",
        "the hs256 secret of the compression tests, 32+ bytes",
    ])
    .await;
    let reply = set_encoded(&server, "someone", "br", b"{}".to_vec()).await;
    reply.assert_error(401, "InvalidAuthenticationToken");
}
