//! Real identity: hs256 and JWKS tokens, Graph's permission table on every
//! endpoint, 401 versus 403, tenant isolation on every read path, token
//! fuzzing, `presenced token`, and HTTPS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presenced::token::{MintRequest, Secret, mint};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestServer, run_binary};

/// How long a server that must refuse to start may take to say so.
const START_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

const SECRET: &str = "the hs256 secret of the auth tests, 32+ bytes";
const TENANT: &str = "contoso";
const APP: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";
const ME: &str = "alice";
const OTHER: &str = "bob";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn request(tenant: &str, user: Option<&str>, scopes: &[&str], roles: &[&str]) -> MintRequest {
    MintRequest {
        tenant: tenant.into(),
        user: user.map(str::to_owned),
        app: APP.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        ttl_seconds: 3600,
        issuer: None,
        audience: None,
        secret: Secret(SECRET.into()),
    }
}

/// A delegated token of `user` in `tenant` with `scopes`.
fn delegated(tenant: &str, user: &str, scopes: &[&str]) -> String {
    mint(&request(tenant, Some(user), scopes, &[]), now()).unwrap()
}

/// An application token in `tenant` with `roles`.
fn application(tenant: &str, roles: &[&str]) -> String {
    mint(&request(tenant, None, &[], roles), now()).unwrap()
}

/// Signs arbitrary claims with the test secret (HS256).
fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn hs256_server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--auth", "hs256", "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let url = server.url(path);
    let client = server.client();
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "PUT" => client.put(url),
        "DELETE" => client.delete(url),
        other => panic!("no such method {other}"),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    server.send(request).await
}

#[track_caller]
fn assert_unauthorized(reply: &Reply, why: &str) -> String {
    let message = reply.assert_error(401, "InvalidAuthenticationToken");
    let challenge = reply
        .headers
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{why}: a 401 carries WWW-Authenticate: Bearer, got {challenge:?}"
    );
    message
}

/// What an endpoint needs, in Graph's permission table.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    /// Read one user: delegated own with any presence permission, others
    /// with Read.All (or ReadWrite.All); application Read.All or ReadWrite.All.
    Read,
    /// getPresencesByUserId: Read.All or ReadWrite.All, delegated or application.
    ReadMany,
    /// A write: delegated own with ReadWrite (or ReadWrite.All); never
    /// another user's with a delegated token; application ReadWrite.All.
    Write,
    /// Work location: delegated ReadWrite, own presence only; no application.
    Location,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    DelegatedSelf,
    DelegatedOther,
    Application,
}

const PERMISSIONS: [Option<&str>; 5] = [
    None,
    Some("Presence.Read"),
    Some("Presence.Read.All"),
    Some("Presence.ReadWrite"),
    Some("Presence.ReadWrite.All"),
];

/// Graph's table, written out here independently of presenced's code.
fn allowed(need: Need, caller: Caller, permission: Option<&str>) -> bool {
    let Some(permission) = permission else {
        return false;
    };
    let any = |names: &[&str]| names.contains(&permission);
    match (need, caller) {
        (Need::Read, Caller::DelegatedSelf) => true,
        (Need::Read, _) => any(&["Presence.Read.All", "Presence.ReadWrite.All"]),
        (Need::ReadMany, _) => any(&["Presence.Read.All", "Presence.ReadWrite.All"]),
        (Need::Write, Caller::DelegatedSelf) => {
            any(&["Presence.ReadWrite", "Presence.ReadWrite.All"])
        }
        (Need::Write, Caller::DelegatedOther) => false,
        (Need::Write, Caller::Application) => any(&["Presence.ReadWrite.All"]),
        (Need::Location, Caller::DelegatedSelf) => any(&["Presence.ReadWrite"]),
        (Need::Location, _) => false,
    }
}

struct Endpoint {
    method: &'static str,
    /// `{user}` is replaced by the target user, `{app}` by the caller's app id.
    path: &'static str,
    body: Option<Value>,
    need: Need,
}

fn endpoints(version: &str) -> Vec<Endpoint> {
    let endpoint = |method, path: &'static str, body: Option<Value>, need| Endpoint {
        method,
        path,
        body,
        need,
    };
    let mut all = vec![
        endpoint("GET", "/users/{user}/presence", None, Need::Read),
        endpoint("GET", "/communications/presences/{user}", None, Need::Read),
        endpoint(
            "POST",
            "/communications/getPresencesByUserId",
            Some(json!({"ids": [ME, OTHER]})),
            Need::ReadMany,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/setPresence",
            Some(json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"})),
            Need::Write,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/clearPresence",
            Some(json!({"sessionId": APP})),
            Need::Write,
        ),
        endpoint(
            "POST",
            "/communications/presences/{user}/setPresence",
            Some(json!({"sessionId": APP, "availability": "Away", "activity": "Away"})),
            Need::Write,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/setUserPreferredPresence",
            Some(json!({"availability": "Busy", "activity": "Busy"})),
            Need::Write,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/clearUserPreferredPresence",
            None,
            Need::Write,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/setStatusMessage",
            Some(json!({"statusMessage": {"message": {"content": "hi", "contentType": "text"}}})),
            Need::Write,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/setManualLocation",
            Some(json!({"workLocationType": "office"})),
            Need::Location,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/setAutomaticLocation",
            Some(json!({"workLocationType": "remote"})),
            Need::Location,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/clearAutomaticLocation",
            None,
            Need::Location,
        ),
        endpoint(
            "POST",
            "/users/{user}/presence/clearLocation",
            None,
            Need::Location,
        ),
    ];
    if version == "/beta" {
        all.push(endpoint(
            "PUT",
            "/users/{user}/presence/sessions/{app}",
            Some(json!({"availability": "Busy", "activity": "InACall"})),
            Need::Write,
        ));
        all.push(endpoint(
            "DELETE",
            "/users/{user}/presence/sessions/{app}",
            None,
            Need::Write,
        ));
    }
    all
}

/// presenced's own endpoints follow the same table: introspection is a
/// read, out-of-office a write.
fn presenced_endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint {
            method: "GET",
            path: "/_presenced/users/{user}/sessions",
            body: None,
            need: Need::Read,
        },
        Endpoint {
            method: "PUT",
            path: "/_presenced/users/{user}/outOfOffice",
            body: Some(json!({"isOutOfOffice": true, "message": "away"})),
            need: Need::Write,
        },
    ]
}

#[tokio::test]
async fn every_endpoint_enforces_graphs_permission_table_for_both_token_kinds() {
    let server = hs256_server(&[]).await;
    let mut checked = 0;
    let mut cases: Vec<(String, Endpoint)> = Vec::new();
    for version in ["/v1.0", "/beta"] {
        for endpoint in endpoints(version) {
            cases.push((version.to_owned(), endpoint));
        }
    }
    for endpoint in presenced_endpoints() {
        cases.push((String::new(), endpoint));
    }
    for (prefix, endpoint) in &cases {
        for caller in [
            Caller::DelegatedSelf,
            Caller::DelegatedOther,
            Caller::Application,
        ] {
            for permission in PERMISSIONS {
                let scopes: Vec<&str> = permission.into_iter().collect();
                let (token, target) = match caller {
                    Caller::DelegatedSelf => (delegated(TENANT, ME, &scopes), ME),
                    Caller::DelegatedOther => (delegated(TENANT, ME, &scopes), OTHER),
                    Caller::Application => (application(TENANT, &scopes), OTHER),
                };
                let path = format!(
                    "{prefix}{}",
                    endpoint
                        .path
                        .replace("{user}", target)
                        .replace("{app}", APP)
                );
                let reply = call(
                    &server,
                    endpoint.method,
                    &path,
                    Some(&token),
                    endpoint.body.clone(),
                )
                .await;
                let case = format!(
                    "{} {path} as {caller:?} with {permission:?}",
                    endpoint.method
                );
                if allowed(endpoint.need, caller, permission) {
                    assert!(
                        reply.status == 200 || reply.status == 404,
                        "{case} must be allowed: {} {}",
                        reply.status,
                        reply.text
                    );
                } else {
                    let message = reply.assert_error(403, "Forbidden");
                    assert!(
                        message.contains("Presence.") || message.contains("delegated"),
                        "{case}: the 403 names the permission or token kind needed: {message}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 300, "only {checked} cases were checked");
}

#[tokio::test]
async fn me_needs_a_delegated_token_and_means_its_user() {
    let server = hs256_server(&[]).await;
    let mine = delegated(TENANT, ME, &["Presence.ReadWrite"]);
    let reply = call(
        &server,
        "POST",
        "/v1.0/me/presence/setPresence",
        Some(&mine),
        Some(json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"})),
    )
    .await;
    reply.assert_ok_empty();
    let read = call(&server, "GET", "/v1.0/me/presence", Some(&mine), None).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["id"], ME);
    assert_eq!(read.body["availability"], "Busy");
    let app = application(TENANT, &["Presence.ReadWrite.All"]);
    let reply = call(&server, "GET", "/v1.0/me/presence", Some(&app), None).await;
    let message = reply.assert_error(400, "BadRequest");
    assert!(message.contains("delegated"), "{message}");
}

#[tokio::test]
async fn set_and_clear_presence_take_only_the_callers_app_id_as_session_id() {
    let server = hs256_server(&[]).await;
    let app = application(TENANT, &["Presence.ReadWrite.All"]);
    for action in ["setPresence", "clearPresence"] {
        let reply = call(
            &server,
            "POST",
            &format!("/v1.0/users/{OTHER}/presence/{action}"),
            Some(&app),
            Some(
                json!({"sessionId": "another-app", "availability": "Busy", "activity": "InACall"}),
            ),
        )
        .await;
        let message = reply.assert_error(403, "Forbidden");
        assert!(
            message.contains(APP),
            "the 403 says which sessionId is expected: {message}"
        );
    }
    let missing = call(
        &server,
        "POST",
        &format!("/v1.0/users/{OTHER}/presence/clearPresence"),
        Some(&app),
        Some(json!({})),
    )
    .await;
    missing.assert_error(400, "InvalidArgument");
}

#[tokio::test]
async fn each_cause_of_a_401_is_told_apart_and_echoes_nothing_of_the_token() {
    let server = hs256_server(&[
        "--issuer",
        "https://login.example/",
        "--audience",
        "presenced",
    ])
    .await;
    let path = format!("/v1.0/users/{OTHER}/presence");
    let base = json!({
        "tid": TENANT, "appid": APP, "roles": ["Presence.Read.All"],
        "iss": "https://login.example/", "aud": "presenced",
        "nbf": now() - 10, "exp": now() + 600,
    });
    let with = |changes: Value| {
        let mut claims = base.clone();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    };
    let good = signed(base.clone());
    let ok = call(&server, "GET", &path, Some(&good), None).await;
    assert_eq!(ok.status, 200, "the untouched token works: {}", ok.text);

    let other_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &base,
        &EncodingKey::from_secret(b"some other secret that is long enough"),
    )
    .unwrap();
    let rsa = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &base,
        &EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa-a.pem")).unwrap(),
    )
    .unwrap();
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &base,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let unsigned = {
        use base64::Engine;
        let encode = |value: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        format!(
            "{}.{}.",
            encode(&json!({"alg": "none", "typ": "JWT"})),
            encode(&base)
        )
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no Authorization header", None, "Bearer"),
        (
            "a Basic header",
            Some("Basic dXNlcjpwYXNz".into()),
            "Bearer <token>",
        ),
        ("not a JWT", Some("Bearer not-a-jwt".into()), "well-formed"),
        (
            "another secret",
            Some(format!("Bearer {other_secret}")),
            "signature",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                signed(with(json!({"exp": now() - 3600, "nbf": now() - 7200})))
            )),
            "expired",
        ),
        (
            "not valid yet",
            Some(format!(
                "Bearer {}",
                signed(with(json!({"nbf": now() + 3600})))
            )),
            "not valid yet",
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                signed(with(json!({"iss": "https://evil.example/"})))
            )),
            "issuer",
        ),
        (
            "wrong audience",
            Some(format!("Bearer {}", signed(with(json!({"aud": "graph"}))))),
            "audience",
        ),
        (
            "no exp",
            Some(format!("Bearer {}", signed(with(json!({"exp": null}))))),
            "exp",
        ),
        (
            "no tid",
            Some(format!("Bearer {}", signed(with(json!({"tid": null}))))),
            "tid",
        ),
        (
            "delegated without oid",
            Some(format!(
                "Bearer {}",
                signed(with(json!({"scp": "Presence.Read"})))
            )),
            "oid",
        ),
        ("alg none", Some(format!("Bearer {unsigned}")), "algorithm"),
        (
            "RS256 on an hs256 server",
            Some(format!("Bearer {rsa}")),
            "algorithm",
        ),
        ("HS512", Some(format!("Bearer {hs512}")), "algorithm"),
    ];
    for (why, header, says) in cases {
        let mut request = server.client().get(server.url(&path));
        if let Some(header) = &header {
            request = request.header("authorization", header);
        }
        let reply = server.send(request).await;
        let message = assert_unauthorized(&reply, why);
        assert!(
            message.contains(says),
            "{why}: the message says what is wrong ({says:?}): {message}"
        );
        if let Some(header) = &header
            && let Some(token) = header.split(' ').nth(1)
        {
            for part in token.split('.').filter(|part| part.len() > 8) {
                assert!(
                    !reply.text.contains(part),
                    "{why}: the body echoes the token"
                );
            }
        }
    }
}

#[tokio::test]
async fn operational_endpoints_need_no_token_and_metrics_stay_on_loopback() {
    let server = hs256_server(&[]).await;
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    // The test runs on the server's own machine: loopback may scrape.
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    let clock = server.get("/_presenced/clock").await;
    assert_unauthorized(&clock, "the manual clock needs a token");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_answered_before_the_token_is_checked() {
    let server = hs256_server(&[]).await;
    // 404 and 405 say what is wrong with the request whatever its token.
    for token in [None, Some("not-a-token")] {
        call(&server, "GET", "/v1.0/users/u1/nowhere", token, None)
            .await
            .assert_error(404, "NotFound");
        call(&server, "DELETE", "/v1.0/users/u1/presence", token, None)
            .await
            .assert_error(405, "MethodNotAllowed");
        let unauthorized = call(&server, "GET", "/v1.0/users/u1/presence", token, None).await;
        assert_unauthorized(&unauthorized, "a served route checks the token first");
        // The token is checked before the body: 401, not 415 or 400.
        let unauthorized = call(
            &server,
            "POST",
            "/v1.0/users/u1/presence/setPresence",
            token,
            None,
        )
        .await;
        assert_unauthorized(&unauthorized, "before the body");
    }
}

#[tokio::test]
async fn one_tenant_never_sees_or_changes_another_tenants_presence() {
    let server = hs256_server(&[]).await;
    let writer = application("tenant-a", &["Presence.ReadWrite.All"]);
    let reader = application("tenant-b", &["Presence.ReadWrite.All"]);
    let set = call(
        &server,
        "POST",
        &format!("/v1.0/users/{ME}/presence/setPresence"),
        Some(&writer),
        Some(json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"})),
    )
    .await;
    set.assert_ok_empty();
    call(
        &server,
        "POST",
        &format!("/v1.0/users/{ME}/presence/setStatusMessage"),
        Some(&writer),
        Some(json!({"statusMessage": {"message": {"content": "tenant a only", "contentType": "text"}}})),
    )
    .await
    .assert_ok_empty();

    let offline = |reply: &Reply, path: &str| {
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(
            reply.body["availability"], "Offline",
            "{path}: {}",
            reply.text
        );
        assert!(
            reply.body["statusMessage"].is_null(),
            "{path}: {}",
            reply.text
        );
        assert!(
            !reply.text.contains("tenant a only"),
            "{path}: {}",
            reply.text
        );
    };
    for path in [
        format!("/v1.0/users/{ME}/presence"),
        format!("/beta/users/{ME}/presence"),
        format!("/v1.0/communications/presences/{ME}"),
    ] {
        offline(
            &call(&server, "GET", &path, Some(&reader), None).await,
            &path,
        );
    }
    let as_me_in_b = delegated("tenant-b", ME, &["Presence.Read"]);
    offline(
        &call(&server, "GET", "/v1.0/me/presence", Some(&as_me_in_b), None).await,
        "/me",
    );
    let batch = call(
        &server,
        "POST",
        "/v1.0/communications/getPresencesByUserId",
        Some(&reader),
        Some(json!({"ids": [ME]})),
    )
    .await;
    offline(
        &Reply {
            version: batch.version,
            status: batch.status,
            headers: batch.headers.clone(),
            text: batch.body["value"][0].to_string(),
            body: batch.body["value"][0].clone(),
        },
        "getPresencesByUserId",
    );
    let sessions = call(
        &server,
        "GET",
        &format!("/_presenced/users/{ME}/sessions"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(sessions.status, 200, "{}", sessions.text);
    assert_eq!(sessions.body["sessions"], json!([]), "{}", sessions.text);
    assert_eq!(sessions.body["availability"], "Offline");

    // Tenant b cannot clear tenant a's session: for b it does not exist.
    let clear = call(
        &server,
        "POST",
        &format!("/v1.0/users/{ME}/presence/clearPresence"),
        Some(&reader),
        Some(json!({"sessionId": APP})),
    )
    .await;
    clear.assert_error(404, "NotFound");
    // ... and b's own writes land in b.
    call(
        &server,
        "POST",
        &format!("/v1.0/users/{ME}/presence/setPresence"),
        Some(&reader),
        Some(json!({"sessionId": APP, "availability": "Away", "activity": "Away"})),
    )
    .await
    .assert_ok_empty();
    let in_a = call(
        &server,
        "GET",
        &format!("/v1.0/users/{ME}/presence"),
        Some(&writer),
        None,
    )
    .await;
    assert_eq!(in_a.body["availability"], "Busy", "{}", in_a.text);
    assert_eq!(
        in_a.body["statusMessage"]["message"]["content"],
        "tenant a only"
    );
    let in_b = call(
        &server,
        "GET",
        &format!("/v1.0/users/{ME}/presence"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(in_b.body["availability"], "Away", "{}", in_b.text);
}

/// A tiny deterministic generator for the fuzz loop.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test]
async fn random_truncated_and_huge_tokens_never_get_a_5xx() {
    let server = hs256_server(&[]).await;
    let path = format!("/v1.0/users/{OTHER}/presence");
    let good = application(TENANT, &["Presence.Read.All"]);
    let mut tokens: Vec<String> = Vec::new();
    // Every prefix of a valid token.
    for length in (0..good.len()).step_by(7) {
        tokens.push(good[..length].to_owned());
    }
    // Valid parts with one byte flipped.
    let mut state = 0x5eed_1234_u64;
    for _ in 0..60 {
        let mut bytes = good.clone().into_bytes();
        let at = (next(&mut state) as usize) % bytes.len();
        let replacement = b"AZaz09-_."[(next(&mut state) % 9) as usize];
        if bytes[at] == replacement {
            continue;
        }
        bytes[at] = replacement;
        tokens.push(String::from_utf8(bytes).unwrap());
    }
    // Random printable noise, with and without dots.
    for round in 0..60 {
        let length = 1 + (next(&mut state) % 400) as usize;
        let noise: String = (0..length)
            .map(|_| char::from(33 + (next(&mut state) % 94) as u8))
            .collect();
        tokens.push(if round % 2 == 0 {
            noise
        } else {
            format!("{noise}.{noise}.{noise}")
        });
    }
    // Headers that decode but are wrong in shape.
    {
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        for header in [
            "{}",
            "[]",
            "null",
            r#"{"alg":"HS256","kid":"x"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"ES256","typ":"JWT"}"#,
            r#"{"alg":12}"#,
        ] {
            tokens.push(format!(
                "{}.{}.sig",
                encode(header),
                encode(r#"{"tid":"x","exp":99999999999}"#)
            ));
        }
        let huge_claims = format!(r#"{{"tid":"{}","exp":99999999999}}"#, "t".repeat(20_000));
        tokens.push(signed(serde_json::from_str(&huge_claims).unwrap()));
        tokens.push(format!(
            "{}.{}.x",
            encode(r#"{"alg":"HS256"}"#),
            "A".repeat(60_000)
        ));
    }
    for token in &tokens {
        let reply = server
            .send(
                server
                    .client()
                    .get(server.url(&path))
                    .header("authorization", format!("Bearer {token}")),
            )
            .await;
        assert!(
            reply.status == 401 || reply.status == 431,
            "a bad token is a 401: {} {}",
            reply.status,
            reply.text
        );
    }
    // A header far larger than any token: refused before any handler, never a 5xx.
    let enormous = format!("Bearer {}", "a".repeat(600_000));
    let response = server
        .client()
        .get(server.url(&path))
        .header("authorization", enormous)
        .send()
        .await;
    if let Ok(response) = response {
        assert!(response.status().as_u16() < 500, "{}", response.status());
    }
    // And the server still answers.
    let ok = call(&server, "GET", &path, Some(&good), None).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn presenced_token_mints_tokens_the_server_accepts() {
    let server = hs256_server(&[
        "--issuer",
        "https://issuer.test/",
        "--audience",
        "api://presenced",
    ])
    .await;
    let mint_with = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
            .arg("token")
            .args(args)
            .output()
            .expect("presenced token runs");
        assert!(
            output.status.success(),
            "presenced token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let common = [
        "--tenant",
        TENANT,
        "--app",
        APP,
        "--secret",
        SECRET,
        "--issuer",
        "https://issuer.test/",
        "--audience",
        "api://presenced",
    ];
    let mut user_args = common.to_vec();
    user_args.extend_from_slice(&["--user", ME]);
    let user_token = mint_with(&user_args);
    let reply = call(
        &server,
        "POST",
        "/v1.0/me/presence/setPresence",
        Some(&user_token),
        Some(json!({"sessionId": APP, "availability": "Available", "activity": "Available"})),
    )
    .await;
    reply.assert_ok_empty();
    let mut app_args = common.to_vec();
    app_args.extend_from_slice(&["--roles", "Presence.Read.All", "--ttl", "PT10M"]);
    let app_token = mint_with(&app_args);
    let read = call(
        &server,
        "GET",
        &format!("/v1.0/users/{ME}/presence"),
        Some(&app_token),
        None,
    )
    .await;
    assert_eq!(read.body["availability"], "Available", "{}", read.text);
    let write = call(
        &server,
        "POST",
        &format!("/v1.0/users/{ME}/presence/clearPresence"),
        Some(&app_token),
        Some(json!({"sessionId": APP})),
    )
    .await;
    let message = write.assert_error(403, "Forbidden");
    assert!(message.contains("Presence.ReadWrite.All"), "{message}");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args([
            "token", "--tenant", TENANT, "--app", APP, "--secret", SECRET, "--ttl", "soon",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--ttl"));
}

#[tokio::test]
async fn the_server_refuses_to_start_with_incomplete_or_weak_auth_settings() {
    let cases: &[(&[&str], &str)] = &[
        (&["--auth", "hs256"], "--jwt-secret"),
        (
            &["--auth", "hs256", "--jwt-secret", "short"],
            "at least 32 bytes",
        ),
        (
            &["--auth", "jwks", "--jwks-file", "x.json"],
            "--issuer and --audience",
        ),
        (
            &["--auth", "jwks", "--issuer", "i", "--audience", "a"],
            "exactly one of --jwks-file and --jwks-url",
        ),
        (
            &[
                "--auth",
                "jwks",
                "--issuer",
                "i",
                "--audience",
                "a",
                "--jwks-file",
                "/nonexistent/jwks.json",
            ],
            "cannot read the JWKS file",
        ),
        (&["--jwt-secret", SECRET], "need --auth hs256"),
        (&["--tls-cert", "/nonexistent/cert.pem"], "--tls-key"),
    ];
    for (args, says) in cases {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--store", "memory"];
        all.extend_from_slice(args);
        let output = run_binary(START_LIMIT, &all).await;
        assert!(!output.status.success(), "{args:?} must not start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(says),
            "{args:?}: expected {says:?} in:\n{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// JWKS: RS256 and ES256, keys by kid, a URL refreshed on an unknown kid.

const ISSUER: &str = "https://login.test/contoso/v2.0";
const AUDIENCE: &str = "api://presenced";

fn jwk(name: &str) -> Value {
    let text = match name {
        "rsa-a" => include_str!("../fixtures/rsa-a.jwk.json"),
        "rsa-b" => include_str!("../fixtures/rsa-b.jwk.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

/// A fresh P-256 key: its private PEM and its public JWK with `kid`.
fn ec_key(kid: &str) -> (String, Value) {
    use base64::Engine;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": encode(&point[1..33]), "y": encode(&point[33..65]),
    });
    (key.serialize_pem(), jwk)
}

fn jwks_claims(user: Option<&str>) -> Value {
    let mut claims = json!({
        "tid": TENANT, "azp": APP, "iss": ISSUER, "aud": AUDIENCE,
        "nbf": now() - 10, "exp": now() + 600, "ver": "2.0",
    });
    match user {
        Some(user) => {
            claims["oid"] = json!(user);
            claims["scp"] = json!("Presence.ReadWrite Presence.Read.All");
        }
        None => claims["roles"] = json!(["Presence.ReadWrite.All"]),
    }
    claims
}

fn rs256(kid: &str, claims: &Value) -> String {
    let pem: &[u8] = match kid {
        "rsa-a" => include_bytes!("../fixtures/rsa-a.pem"),
        "rsa-b" => include_bytes!("../fixtures/rsa-b.pem"),
        other => panic!("no fixture {other}"),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

fn es256(kid: &str, pem: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A server checking tokens against `keys`, written to a JWKS file in a
/// directory that lives as long as the returned handle.
async fn jwks_file_server(keys: Value) -> (TestServer, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let jwks_path = directory.path().join("jwks.json");
    std::fs::write(&jwks_path, keys.to_string()).unwrap();
    let server = TestServer::start(&[
        "--auth",
        "jwks",
        "--jwks-file",
        jwks_path.to_str().unwrap(),
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ])
    .await;
    (server, directory)
}

#[tokio::test]
async fn jwks_file_tokens_signed_with_rs256_and_es256_are_accepted_by_kid() {
    let (ec_pem, ec_jwk) = ec_key("ec-1");
    let (server, _directory) = jwks_file_server(json!({"keys": [jwk("rsa-a"), ec_jwk]})).await;
    let set = call(
        &server,
        "POST",
        "/v1.0/me/presence/setPresence",
        Some(&rs256("rsa-a", &jwks_claims(Some(ME)))),
        Some(json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"})),
    )
    .await;
    set.assert_ok_empty();
    let read = call(
        &server,
        "GET",
        &format!("/v1.0/users/{ME}/presence"),
        Some(&es256("ec-1", &ec_pem, &jwks_claims(None))),
        None,
    )
    .await;
    assert_eq!(read.body["availability"], "Busy", "{}", read.text);

    // A key the set does not hold, and a known kid with another key's signature.
    let unknown = call(
        &server,
        "GET",
        "/v1.0/me/presence",
        Some(&rs256("rsa-b", &jwks_claims(Some(ME)))),
        None,
    )
    .await;
    assert!(assert_unauthorized(&unknown, "unknown kid").contains("kid"));
    let forged = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-a".into());
        jsonwebtoken::encode(
            &header,
            &jwks_claims(Some(ME)),
            &EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa-b.pem")).unwrap(),
        )
        .unwrap()
    };
    let reply = call(&server, "GET", "/v1.0/me/presence", Some(&forged), None).await;
    assert!(assert_unauthorized(&reply, "forged").contains("signature"));
    // The EC key named in an RS256 header: algorithm confusion.
    let confused = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("ec-1".into());
        jsonwebtoken::encode(
            &header,
            &jwks_claims(Some(ME)),
            &EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa-a.pem")).unwrap(),
        )
        .unwrap()
    };
    let reply = call(&server, "GET", "/v1.0/me/presence", Some(&confused), None).await;
    assert_unauthorized(&reply, "a key used with another algorithm");
    // hs256 tokens mean nothing to a JWKS server, even signed with a public key's bytes.
    let reply = call(
        &server,
        "GET",
        "/v1.0/me/presence",
        Some(&delegated(TENANT, ME, &["Presence.Read"])),
        None,
    )
    .await;
    assert!(assert_unauthorized(&reply, "hs256 on jwks").contains("RS256"));
    // The issuer and audience are checked.
    let mut foreign = jwks_claims(Some(ME));
    foreign["aud"] = json!("api://someone-else");
    let reply = call(
        &server,
        "GET",
        "/v1.0/me/presence",
        Some(&rs256("rsa-a", &foreign)),
        None,
    )
    .await;
    assert!(assert_unauthorized(&reply, "audience").contains("audience"));
}

/// Serves a JWKS that the test can change, counting fetches.
struct JwksServer {
    url: String,
    keys: Arc<std::sync::Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(initial: Value) -> JwksServer {
    let keys = Arc::new(std::sync::Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = {
        let keys = keys.clone();
        let fetches = fetches.clone();
        axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let keys = keys.clone();
                let fetches = fetches.clone();
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(keys.lock().unwrap().clone())
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer {
        url: format!("http://{address}/keys"),
        keys,
        fetches,
    }
}

#[tokio::test]
async fn a_jwks_url_is_fetched_at_start_and_again_for_an_unknown_kid_at_most_once_a_minute() {
    let jwks = jwks_server(json!({"keys": [jwk("rsa-a")]})).await;
    let server = TestServer::start(&[
        "--auth",
        "jwks",
        "--jwks-url",
        &jwks.url,
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ])
    .await;
    // Requests are served only once start-up, the fetch included, is done.
    assert_eq!(server.get("/healthz").await.status, 200);
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "fetched once at start"
    );
    let path = format!("/v1.0/users/{OTHER}/presence");
    let app_claims = jwks_claims(None);
    let reply = call(
        &server,
        "GET",
        &path,
        Some(&rs256("rsa-a", &app_claims)),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "a known kid fetches nothing"
    );

    // The issuer rotates in a new key: the first token naming it is accepted.
    *jwks.keys.lock().unwrap() = json!({"keys": [jwk("rsa-a"), jwk("rsa-b")]});
    let reply = call(
        &server,
        "GET",
        &path,
        Some(&rs256("rsa-b", &app_claims)),
        None,
    )
    .await;
    assert_eq!(
        reply.status, 200,
        "a rotated key works after one refetch: {}",
        reply.text
    );
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

    // A made-up kid within the minute: refused without another fetch.
    let (ec_pem, _) = ec_key("made-up");
    for _ in 0..5 {
        let reply = call(
            &server,
            "GET",
            &path,
            Some(&es256("made-up", &ec_pem, &app_claims)),
            None,
        )
        .await;
        assert_unauthorized(&reply, "made-up kid");
    }
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        2,
        "at most one refetch a minute"
    );
}

#[tokio::test]
async fn a_jwks_url_that_cannot_be_fetched_stops_the_server_at_start() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{address}/keys");
    let output = run_binary(
        START_LIMIT,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--auth",
            "jwks",
            "--jwks-url",
            &url,
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
        ],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot fetch the JWKS"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------
// HTTPS.

#[tokio::test]
async fn tls_serves_https_with_a_generated_certificate() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let cert_path = directory.path().join("cert.pem");
    let key_path = directory.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let server = hs256_server(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ])
    .await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let token = application(TENANT, &["Presence.ReadWrite.All"]);
    let set = client
        .post(format!(
            "{}/v1.0/users/{ME}/presence/setPresence",
            server.base
        ))
        .bearer_auth(&token)
        .json(&json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let read: Value = client
        .get(format!("{}/v1.0/users/{ME}/presence", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["availability"], "Busy");
    let context = read["@odata.context"].as_str().unwrap_or_default();
    assert!(
        context.starts_with("https://"),
        "the context names https: {context}"
    );
    // Plain HTTP to the TLS port gets no answer.
    let plain = server.base.replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());
    // A client that does not trust the certificate cannot connect.
    assert!(
        reqwest::get(format!("{}/healthz", server.base))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tls_files_that_are_not_a_certificate_and_key_stop_the_server() {
    let directory = tempfile::tempdir().unwrap();
    let junk = directory.path().join("junk.pem");
    std::fs::write(&junk, "not pem at all").unwrap();
    let junk_path = junk.to_str().unwrap();
    let output = run_binary(
        START_LIMIT,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--tls-cert",
            junk_path,
            "--tls-key",
            junk_path,
        ],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("junk.pem"),
        "the message names the file: {stderr}"
    );
}

#[tokio::test]
async fn legacy_sessions_take_only_the_callers_app_id_with_tokens() {
    let server = hs256_server(&[]).await;
    let app = application(TENANT, &["Presence.ReadWrite.All"]);
    for method in ["PUT", "DELETE"] {
        let reply = call(
            &server,
            method,
            &format!("/beta/users/{OTHER}/presence/sessions/another-app"),
            Some(&app),
            (method == "PUT").then(|| json!({"availability": "Busy", "activity": "InACall"})),
        )
        .await;
        let message = reply.assert_error(403, "Forbidden");
        assert!(message.contains(APP), "{method}: {message}");
    }
    let own = call(
        &server,
        "PUT",
        &format!("/beta/users/{OTHER}/presence/{APP}"),
        Some(&app),
        Some(json!({"availability": "Busy", "activity": "InACall"})),
    )
    .await;
    own.assert_ok_empty();
}

#[tokio::test]
async fn a_token_that_names_no_application_owns_no_session() {
    let server = hs256_server(&[]).await;
    let anonymous = signed(json!({
        "tid": TENANT, "oid": ME, "scp": "Presence.ReadWrite", "exp": now() + 600,
    }));
    let reply = call(
        &server,
        "POST",
        "/v1.0/me/presence/setPresence",
        Some(&anonymous),
        Some(json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"})),
    )
    .await;
    let message = reply.assert_error(403, "Forbidden");
    assert!(message.contains("appid"), "{message}");
    // An empty scp still makes the token a user's, never the app's roles.
    let confused = signed(json!({
        "tid": TENANT, "appid": APP, "scp": "", "roles": ["Presence.ReadWrite.All"],
        "exp": now() + 600,
    }));
    let reply = call(
        &server,
        "GET",
        &format!("/v1.0/users/{OTHER}/presence"),
        Some(&confused),
        None,
    )
    .await;
    assert!(assert_unauthorized(&reply, "scp without oid").contains("oid"));
}

#[tokio::test]
async fn me_paths_follow_the_delegated_rows_of_the_table() {
    let server = hs256_server(&[]).await;
    let cases: [(&str, &str, Option<Value>, Need); 4] = [
        ("GET", "/v1.0/me/presence", None, Need::Read),
        (
            "POST",
            "/v1.0/me/presence/setPresence",
            Some(json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"})),
            Need::Write,
        ),
        (
            "POST",
            "/beta/me/presence/setStatusMessage",
            Some(json!({"statusMessage": {"message": {"content": "hi", "contentType": "text"}}})),
            Need::Write,
        ),
        (
            "POST",
            "/v1.0/me/presence/setManualLocation",
            Some(json!({"workLocationType": "office"})),
            Need::Location,
        ),
    ];
    for (method, path, body, need) in cases {
        for permission in PERMISSIONS {
            let scopes: Vec<&str> = permission.into_iter().collect();
            let token = delegated(TENANT, ME, &scopes);
            let reply = call(&server, method, path, Some(&token), body.clone()).await;
            if allowed(need, Caller::DelegatedSelf, permission) {
                assert_eq!(
                    reply.status, 200,
                    "{method} {path} with {permission:?}: {}",
                    reply.text
                );
            } else {
                reply.assert_error(403, "Forbidden");
            }
        }
    }
}

#[tokio::test]
async fn jwks_tokens_without_a_kid_or_expired_are_refused() {
    let (_, ec_jwk) = ec_key("ec-1");
    let (server, _directory) = jwks_file_server(json!({"keys": [jwk("rsa-a"), ec_jwk]})).await;
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &jwks_claims(None),
        &EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa-a.pem")).unwrap(),
    )
    .unwrap();
    let path = format!("/v1.0/users/{OTHER}/presence");
    let reply = call(&server, "GET", &path, Some(&no_kid), None).await;
    assert!(assert_unauthorized(&reply, "no kid, two keys").contains("kid"));
    let mut expired = jwks_claims(None);
    expired["exp"] = json!(now() - 3600);
    expired["nbf"] = json!(now() - 7200);
    let reply = call(&server, "GET", &path, Some(&rs256("rsa-a", &expired)), None).await;
    assert!(assert_unauthorized(&reply, "expired").contains("expired"));
    let mut foreign = jwks_claims(None);
    foreign["iss"] = json!("https://login.test/another-tenant/v2.0");
    let reply = call(&server, "GET", &path, Some(&rs256("rsa-a", &foreign)), None).await;
    assert!(assert_unauthorized(&reply, "issuer").contains("issuer"));
}

#[tokio::test]
async fn the_manual_clock_answers_a_token_from_the_servers_own_machine() {
    let server = hs256_server(&[]).await;
    let token = application(TENANT, &["Presence.Read.All"]);
    let reply = call(&server, "GET", "/_presenced/clock", Some(&token), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let advanced = call(
        &server,
        "POST",
        "/_presenced/clock/advance",
        Some(&token),
        Some(json!({"by": "PT1M"})),
    )
    .await;
    assert_eq!(advanced.status, 200, "{}", advanced.text);
}
