//! What the official SDKs' tests share: the application their scripts act
//! as, real tokens for it signed with the server's secret, and the running
//! of a script, whose exit status is the verdict and whose `ok:` lines are
//! the evidence.

use std::time::Duration;

/// The application the SDK scripts act as (their `sessionId`).
pub const APP: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";

/// The tenant of every SDK token.
const TENANT: &str = "contoso";

/// The `--jwt-secret` of the servers the SDK tests start.
pub const SECRET: &str = "the hs256 secret of the SDK test, 32+ bytes long";

/// A guard against a hung script, never a claim about speed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// An application token of the scripts' app, signed with `secret`, with
/// Presence.ReadWrite.All.
pub fn app_token(secret: &str) -> String {
    crate::helpers::signed_token(secret, TENANT, APP, None, &["Presence.ReadWrite.All"])
}

/// A delegated token of `user` signed in to the scripts' app, signed with
/// `secret`: what `/me` needs.
pub fn delegated_token(secret: &str, user: &str) -> String {
    crate::helpers::signed_token(
        secret,
        TENANT,
        APP,
        Some(user),
        &["Presence.ReadWrite", "Presence.Read.All"],
    )
}

/// Runs an SDK script to completion; asserts it succeeded and returns what
/// it printed.
pub async fn run_script(mut command: tokio::process::Command, script: &str) -> String {
    let output = tokio::time::timeout(SCRIPT_LIMIT, command.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("the SDK script {script} did not end within {SCRIPT_LIMIT:?}"))
        .unwrap_or_else(|error| {
            panic!("the SDK script {script} cannot run ({command:?}): {error}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the SDK script {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts that a script's output holds at least `expected` `ok:` lines.
#[track_caller]
pub fn assert_checks(stdout: &str, expected: usize) {
    let passed = stdout
        .lines()
        .filter(|line| line.starts_with("ok: "))
        .count();
    assert!(
        passed >= expected,
        "{passed} checks passed, {expected} expected:\n{stdout}"
    );
}

/// presenced over HTTPS with the certificate of `pki`, checking tokens
/// signed with [`SECRET`], with `extra` arguments: how the JavaScript SDK
/// and browser tests serve it (the legacy client sends its token only over
/// https).
pub async fn start_https(
    pki: &crate::certs::TestPki,
    extra: &[&str],
) -> crate::helpers::TestServer {
    let (cert, key) = (
        crate::certs::text(&pki.cert()),
        crate::certs::text(&pki.key()),
    );
    let mut args = vec![
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    args.extend_from_slice(extra);
    let server = crate::helpers::TestServer::start(&args).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    server
}
