//! The official Microsoft Graph JavaScript SDKs against presenced: the
//! legacy client (@microsoft/microsoft-graph-client 3.x) and the
//! Kiota-based one (@microsoft/msgraph-sdk), unmodified, each pointed at
//! presenced by its base URL (and the legacy one told, with customHosts,
//! that presenced may receive the token). The scripts are in `tests/js`;
//! their packages are pinned there and installed under the target
//! directory (`npm.rs`).
//!
//! Each test starts the real binary over TLS with a certificate of a test
//! CA (Node trusts the CA through NODE_EXTRA_CA_CERTS, the legacy client
//! sends its token only over https), with `--auth hs256` and real tokens,
//! and with `--webhook-ca-file`, so that the scripts' https webhook
//! receiver, whose certificate the same CA signed, is trusted.

use crate::certs::{TestPki, text};
use crate::helpers::TestServer;
use crate::sdk::{self, SECRET, app_token, delegated_token};

/// The user whose own presence the scripts read through `/me`.
const USER: &str = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";

/// One script's run: its servers and its certificates.
struct Run {
    pki: TestPki,
    server: TestServer,
    /// A server that allows two requests an hour, for the 429.
    throttled: Option<TestServer>,
}

impl Run {
    async fn start(with_throttled: bool) -> Run {
        let pki = TestPki::new();
        let ca = text(&pki.ca());
        // The scripts' receiver listens on loopback, with a certificate of
        // the test CA.
        let server = sdk::start_https(
            &pki,
            &["--allow-private-webhooks", "--webhook-ca-file", &ca],
        )
        .await;
        let throttled = match with_throttled {
            false => None,
            true => Some(sdk::start_https(&pki, &["--throttle-app", "2/PT1H"]).await),
        };
        Run {
            pki,
            server,
            throttled,
        }
    }

    /// Runs `script` with `part` and returns what it printed.
    async fn script(&self, script: &str, part: &str) -> String {
        let workspace = tokio::task::spawn_blocking(crate::npm::workspace)
            .await
            .expect("the installer ran");
        let settings = serde_json::json!({
            "origin": self.server.base,
            "throttledOrigin": self.throttled.as_ref().map(|server| server.base.clone()),
            "appToken": app_token(SECRET),
            "meToken": delegated_token(SECRET, USER),
            "badToken": app_token("another secret, not the server's, 32+ bytes"),
            "receiverCert": text(&self.pki.cert()),
            "receiverKey": text(&self.pki.key()),
        });
        let mut command = tokio::process::Command::new("node");
        command
            .arg(workspace.join(script))
            .arg(part)
            .arg(settings.to_string())
            .current_dir(&workspace)
            .env("NODE_EXTRA_CA_CERTS", self.pki.ca());
        sdk::run_script(command, script).await
    }
}

/// Every presence call, /me and work location, every subscription call
/// with an https receiver, and 404, 400, 401 and 429 as the client's own
/// GraphError.
#[tokio::test]
async fn the_legacy_javascript_client_works_over_https_with_its_base_url_and_custom_hosts() {
    let run = Run::start(true).await;
    let stdout = run.script("sdk_legacy.mjs", "roundtrip").await;
    sdk::assert_checks(&stdout, 25);
}

/// The same with the Kiota-based SDK, errors as its ODataError, and a
/// request body gzipped by Kiota's own CompressionHandler.
#[tokio::test]
async fn the_kiota_javascript_sdk_works_over_https_with_only_its_base_url() {
    let run = Run::start(true).await;
    let stdout = run.script("sdk_kiota.mjs", "roundtrip").await;
    sdk::assert_checks(&stdout, 27);
}

/// setPresence for 20 users in one `$batch` through the legacy client's
/// BatchRequestContent and BatchResponseContent; each user is then read.
#[tokio::test]
async fn the_legacy_javascript_client_batches_set_presence_for_twenty_users() {
    let run = Run::start(false).await;
    let stdout = run.script("sdk_legacy.mjs", "batch").await;
    sdk::assert_checks(&stdout, 21);
}

/// The same as a raw `$batch` request through the Kiota SDK's request
/// adapter (its own batch helper drops the inner requests' headers; see
/// the script).
#[tokio::test]
async fn the_kiota_javascript_sdk_batches_set_presence_for_twenty_users() {
    let run = Run::start(false).await;
    let stdout = run.script("sdk_kiota.mjs", "batch").await;
    sdk::assert_checks(&stdout, 21);
}
