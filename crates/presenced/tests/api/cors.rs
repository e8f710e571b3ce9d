//! CORS against the real binary: with `--cors-origin`, preflights from a
//! listed origin are answered before the token is checked, and answers to
//! it carry the SPEC's `Access-Control-*` headers; an unlisted origin gets
//! none, and without the flag no answer has any. (The browser itself is
//! driven in the browser tests.)

use crate::helpers::{Reply, TestServer, signed_token};

const LISTED: &str = "http://app.example.test:8080";
const SECRET: &str = "the hs256 secret of the cors tests, at least 32 bytes";

async fn preflight(server: &TestServer, origin: &str, method: &str, headers: &str) -> Reply {
    server
        .send(
            server
                .client()
                .request(
                    reqwest::Method::OPTIONS,
                    server.url("/v1.0/me/presence/setPresence"),
                )
                .header("origin", origin)
                .header("access-control-request-method", method)
                .header("access-control-request-headers", headers),
        )
        .await
}

/// GET a presence as a page of `origin` would (or a client that sends no
/// Origin), with `token` when given.
async fn read_presence(server: &TestServer, origin: Option<&str>, token: Option<&str>) -> Reply {
    let mut request = server
        .client()
        .get(server.url("/v1.0/users/someone/presence"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    server.send(request).await
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The comma-separated list of `name`, in lower case.
fn listed(reply: &Reply, name: &str) -> Vec<String> {
    header(reply, name)
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

#[tokio::test]
async fn a_listed_origin_is_answered_before_the_token_and_an_unlisted_one_is_not() {
    // One unauthenticated request an hour per address: preflights are
    // answered before throttling too.
    let server = TestServer::start(&[
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--cors-origin",
        LISTED,
        "--cors-origin",
        "https://other.example.test",
        "--throttle-unauthenticated",
        "1/PT1H",
    ])
    .await;
    for _ in 0..3 {
        let reply = preflight(
            &server,
            LISTED,
            "POST",
            "authorization,content-type,content-encoding,client-request-id,sdkversion,prefer",
        )
        .await;
        assert!(reply.status == 200 || reply.status == 204, "{reply:?}");
        assert_eq!(header(&reply, "access-control-allow-origin"), Some(LISTED));
        let methods = listed(&reply, "access-control-allow-methods");
        for method in ["get", "post", "put", "patch", "delete"] {
            assert!(methods.contains(&method.to_string()), "{methods:?}");
        }
        let headers = listed(&reply, "access-control-allow-headers");
        for name in [
            "authorization",
            "content-type",
            "content-encoding",
            "client-request-id",
            "last-event-id",
            "sdkversion",
            "prefer",
        ] {
            assert!(headers.contains(&name.to_string()), "{name}: {headers:?}");
        }
        assert!(header(&reply, "access-control-max-age").is_some());
        assert_eq!(header(&reply, "access-control-allow-credentials"), None);
    }

    // A request from the page: its answer, even a refusal, may be read.
    let token = signed_token(
        SECRET,
        "contoso",
        "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a",
        None,
        &["Presence.Read.All"],
    );
    let reply = read_presence(&server, Some(LISTED), Some(&token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(header(&reply, "access-control-allow-origin"), Some(LISTED));
    // Every answer says it depends on the origin, one to a request without
    // an Origin too, so that a cache never serves it to a page.
    let plain = read_presence(&server, None, Some(&token)).await;
    assert!(
        listed(&plain, "vary").contains(&"origin".to_string()),
        "{:?}",
        plain.headers
    );
    let exposed = listed(&reply, "access-control-expose-headers");
    for name in ["retry-after", "request-id", "client-request-id", "location"] {
        assert!(exposed.contains(&name.to_string()), "{name}: {exposed:?}");
    }
    let refused = read_presence(&server, Some(LISTED), None).await;
    refused.assert_error(401, "InvalidAuthenticationToken");
    assert_eq!(
        header(&refused, "access-control-allow-origin"),
        Some(LISTED)
    );

    // Another origin gets no permission, to preflight or to read.
    let unlisted = "http://elsewhere.example.test";
    let reply = preflight(&server, unlisted, "POST", "authorization,content-type").await;
    assert_eq!(header(&reply, "access-control-allow-origin"), None);
    let reply = read_presence(&server, Some(unlisted), Some(&token)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_the_flag_no_answer_has_cors_headers() {
    let server = TestServer::start(&[]).await;
    let reply = preflight(&server, LISTED, "POST", "content-type").await;
    reply.assert_error(405, "MethodNotAllowed");
    assert!(
        reply
            .headers
            .keys()
            .all(|name| !name.as_str().starts_with("access-control-")),
        "{:?}",
        reply.headers
    );
    let reply = read_presence(&server, Some(LISTED), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_malformed_origin_stops_the_server_with_a_message() {
    let output = crate::helpers::run_binary(
        std::time::Duration::from_secs(30),
        &[
            "serve",
            "--store",
            "memory",
            "--cors-origin",
            "app.example.test/board",
        ],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cors-origin"), "{stderr}");
    assert!(stderr.contains("https://app.example.com"), "{stderr}");
}
