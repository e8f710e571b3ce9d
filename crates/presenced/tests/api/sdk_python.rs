//! The official Microsoft Graph Python SDK against presenced, changing only
//! the base URL. The test installs the SDK into a virtual environment under
//! the target directory the first time (and whenever the pinned requirements
//! change); it fails, saying how to fix it, if Python cannot do that.

use std::path::{Path, PathBuf};

use crate::helpers::TestServer;
use crate::sdk::{self, SECRET, app_token};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk")
}

/// A virtual environment with the pinned SDK; returns its python.
fn sdk_python() -> PathBuf {
    crate::venv::installed(
        "graph-sdk-venv",
        &sdk_dir().join("requirements.txt"),
        "msgraph-sdk",
    )
    .join("python")
}

/// Runs one of the SDK scripts; asserts it succeeded and returns what it
/// printed.
async fn run_script(python: &Path, script: &str, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(python);
    command.arg(sdk_dir().join(script)).args(args);
    sdk::run_script(command, script).await
}

#[tokio::test]
async fn the_official_python_sdk_works_with_a_real_token_by_changing_only_the_base_url() {
    let python = tokio::task::spawn_blocking(sdk_python)
        .await
        .expect("the installer ran");
    // With real token verification: the SDK sends an application token of
    // the script's app, signed with the server's secret.
    // The script's webhook listens on loopback.
    let server = TestServer::start(&[
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--allow-private-webhooks",
    ])
    .await;
    let token = app_token(SECRET);
    let base_url = format!("{}/v1.0", server.base);
    let fixtures = sdk_dir().join("../fixtures");
    let stdout = run_script(
        &python,
        "graph_sdk_roundtrip.py",
        &[&base_url, &token, fixtures.to_str().expect("a UTF-8 path")],
    )
    .await;
    sdk::assert_checks(&stdout, 19);
}

/// The SDK's own retry handler backs off after a 429's Retry-After and
/// succeeds by itself: a limit of one request every two seconds (a burst
/// of two), and a script that makes six in a row with no retry code of its
/// own.
#[tokio::test]
async fn the_official_python_sdk_retries_a_429_by_itself_after_retry_after() {
    let python = tokio::task::spawn_blocking(sdk_python)
        .await
        .expect("the installer ran");
    let server = TestServer::start(&[
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--throttle-app",
        "2/PT4S",
    ])
    .await;
    let token = app_token(SECRET);
    let base_url = format!("{}/v1.0", server.base);
    let stdout = run_script(&python, "graph_sdk_throttled.py", &[&base_url, &token, "6"]).await;
    assert!(stdout.contains("ok: 6 requests answered"), "{stdout}");
    // It did meet the limit: the server refused some of them first.
    let metrics = server.metrics().await;
    let refused = crate::helpers::counter(&metrics, "presenced_throttled_total{limit=\"app\"}");
    assert!(refused >= 1.0, "no request was throttled:\n{metrics}");
}
