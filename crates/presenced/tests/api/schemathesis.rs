//! schemathesis (property-based tests generated from the OpenAPI document)
//! against the real binary with real tokens: every operation of
//! `/openapi.json` but the live stream, with a fixed seed and a fixed
//! number of examples, failing on any server error and on any answer the
//! document does not describe (its status, content type, headers or body).
//! The document must also validate as OpenAPI (openapi-spec-validator).
//!
//! Both tools are installed, pinned (`tests/schemathesis/requirements.txt`),
//! into a virtual environment under the target directory on first use. The
//! run's settings are `tests/schemathesis/schemathesis.toml`; to run it
//! longer or differently, set `PRESENCED_SCHEMATHESIS_EXAMPLES` (default
//! 10 per operation) and `PRESENCED_SCHEMATHESIS_SEED` (default 1).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Reply, TestServer, graph_instant};
use crate::receiver::Receiver;

const SECRET: &str = "the hs256 secret of the schemathesis run, 32+ bytes";

/// The application the token is for; setPresence takes it as `sessionId`.
const APP: &str = "schemathesis-app";

/// The signed-in user of the token.
const USER: &str = "alice";

fn schemathesis_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("schemathesis")
}

fn tools() -> PathBuf {
    crate::venv::installed(
        "schemathesis-venv",
        &schemathesis_dir().join("requirements.txt"),
        "schemathesis and openapi-spec-validator",
    )
}

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
        Err(_) => default,
    }
}

/// Sends `body` with the token and requires `status`.
async fn call(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
    status: u16,
) -> Reply {
    let request = server
        .client()
        .request(method.parse().expect("a method"), server.url(path))
        .bearer_auth(token)
        .json(&body);
    let reply = server.send(request).await;
    assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
    reply
}

/// Gives the user every fact there is, so that what GET answers has every
/// part its schema describes.
async fn seed(server: &TestServer, token: &str) {
    let actions = [
        (
            "setPresence",
            json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"}),
        ),
        (
            "setUserPreferredPresence",
            json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb"}),
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": {
                "message": {"content": "Seeded", "contentType": "text"},
                "expiryDateTime": {"dateTime": "2099-01-01T00:00:00", "timeZone": "UTC"},
            }}),
        ),
        (
            "setAutomaticLocation",
            json!({"workLocationType": "remote", "placeId": "home"}),
        ),
        (
            "setManualLocation",
            json!({"workLocationType": "office", "placeId": "b40"}),
        ),
    ];
    for (action, body) in actions {
        call(
            server,
            token,
            "POST",
            &format!("/v1.0/me/presence/{action}"),
            body,
            200,
        )
        .await;
    }
    call(
        server,
        token,
        "PUT",
        &format!("/_presenced/users/{USER}/outOfOffice"),
        json!({"isOutOfOffice": true, "message": "Away this week"}),
        200,
    )
    .await;
    call(
        server,
        token,
        "PUT",
        &format!("/beta/users/{USER}/presence/sessions/{APP}"),
        json!({"availability": "Available", "activity": "Available"}),
        200,
    )
    .await;
}

#[tokio::test]
async fn schemathesis_finds_no_answer_the_openapi_document_does_not_describe() {
    let bin = tokio::task::spawn_blocking(tools)
        .await
        .expect("the installer ran");
    let receiver = Receiver::start().await;
    let server = TestServer::start(&[
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--allow-private-webhooks",
    ])
    .await;
    let token = crate::helpers::signed_token(
        SECRET,
        "contoso",
        APP,
        Some(USER),
        &["Presence.Read.All", "Presence.ReadWrite"],
    );
    let work = tempfile::tempdir().expect("a working directory");

    // The document is valid OpenAPI.
    let document = server.get("/openapi.json").await;
    assert_eq!(document.status, 200, "{}", document.text);
    let document_file = work.path().join("openapi.json");
    std::fs::write(&document_file, &document.text).expect("the document is written");
    let validated = tokio::process::Command::new(bin.join("openapi-spec-validator"))
        .arg(&document_file)
        .output()
        .await
        .expect("openapi-spec-validator runs");
    assert!(
        validated.status.success(),
        "/openapi.json is not valid OpenAPI:\n{}\n{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // What the fuzzer's ids name.
    seed(&server, &token).await;
    let now: jiff::Timestamp = call(
        &server,
        &token,
        "GET",
        "/_presenced/clock",
        Value::Null,
        200,
    )
    .await
    .body["now"]
        .as_str()
        .expect("now")
        .parse()
        .expect("an instant");
    let expiration = graph_instant(now + jiff::SignedDuration::from_mins(45));
    let subscription = call(
        &server,
        &token,
        "POST",
        "/v1.0/subscriptions",
        json!({
            "changeType": "updated",
            "notificationUrl": receiver.url("/notify"),
            "resource": format!("/communications/presences/{USER}"),
            "expirationDateTime": expiration,
        }),
        201,
    )
    .await;
    let subscription = subscription.body["id"].as_str().expect("an id").to_owned();

    let examples = setting("PRESENCED_SCHEMATHESIS_EXAMPLES", 10);
    let seed = setting("PRESENCED_SCHEMATHESIS_SEED", 1);
    let template = std::fs::read_to_string(schemathesis_dir().join("schemathesis.toml"))
        .expect("schemathesis.toml is readable");
    let config = template
        .replace("@SEED@", &seed.to_string())
        .replace("@EXAMPLES@", &examples.to_string())
        .replace("@TOKEN@", &token)
        .replace("@APP@", APP)
        .replace("@SUBSCRIPTION@", &subscription)
        .replace("@WEBHOOK@", &receiver.url("/fuzzed"))
        .replace("@EXPIRATION@", &expiration);
    assert!(!config.contains('@'), "a value is not filled in:\n{config}");
    let config_file = work.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).expect("the configuration is written");

    let run = tokio::process::Command::new(bin.join("schemathesis"))
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--url", &server.base])
        .kill_on_drop(true)
        .output();
    // A bound for a run that hangs, far above what the examples take.
    let limit = Duration::from_secs(600 + 10 * examples);
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {limit:?}"))
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!(
        "{stdout}\n{}\nReproduce with PRESENCED_SCHEMATHESIS_SEED={seed} PRESENCED_SCHEMATHESIS_EXAMPLES={examples}.",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    // Every operation was tested but the stream: none was filtered out by
    // mistake, none failed to load. (schemathesis leaves out the document's
    // own address when it loads the document from it.)
    let operations: usize = document.body["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |methods| methods.len()))
        .sum();
    assert!(operations > 80, "{operations} operations");
    let summary = |label: &str| -> String {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no '{label}' in the summary:\n{report}"))
            .trim()
            .to_owned()
    };
    let selected = summary("Selected:");
    let tested = summary("Tested:");
    assert_eq!(
        selected,
        format!("{}/{}", operations - 2, operations - 1),
        "every operation but the stream is selected:\n{report}"
    );
    assert_eq!(
        tested,
        (operations - 2).to_string(),
        "every selected operation is tested:\n{report}"
    );
    // The server is still well.
    assert_eq!(server.get("/healthz").await.status, 200);
}
