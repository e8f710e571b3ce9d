//! `--cors-origin` in a real browser: a page from a listed origin reads a
//! presence through the legacy Graph client's browser bundle (served by the
//! page's own site from node_modules, no CDN) with a real token over https;
//! the same page from an origin that is not listed is refused by the
//! browser.

use crate::browser::{self, Page, Site, SiteFile};
use crate::certs::TestPki;
use crate::sdk::{self, SECRET, app_token};

const USER: &str = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";

/// The page and its scripts, as a site serves them.
fn page_files() -> Vec<SiteFile> {
    let workspace = crate::npm::workspace();
    vec![
        SiteFile::from_disk("/", &workspace.join("cors_page.html")),
        SiteFile::from_disk("/cors_page.js", &workspace.join("cors_page.js")),
        SiteFile::from_disk(
            "/graph-js-sdk.js",
            &workspace.join("node_modules/@microsoft/microsoft-graph-client/lib/graph-js-sdk.js"),
        ),
    ]
}

#[tokio::test]
async fn a_page_from_a_listed_origin_reads_a_presence_and_one_from_another_origin_is_refused() {
    let pki = TestPki::new();
    // Both sites' origins are known before presenced starts.
    let (listed, unlisted) = (browser::reserve_port(), browser::reserve_port());
    let listed_origin = format!("http://{}", listed.local_addr().expect("bound"));
    let server = sdk::start_https(&pki, &["--cors-origin", &listed_origin]).await;
    let token = app_token(SECRET);
    server
        .send(
            server
                .client()
                .post(server.url(&format!("/v1.0/users/{USER}/presence/setPresence")))
                .bearer_auth(&token)
                .json(&serde_json::json!({
                    "sessionId": crate::sdk::APP,
                    "availability": "Busy",
                    "activity": "InACall",
                    "expirationDuration": "PT1H",
                })),
        )
        .await
        .assert_ok_empty();

    let files = tokio::task::spawn_blocking(page_files)
        .await
        .expect("the files are read");
    let listed = Site::serve(listed, files.clone());
    let unlisted = Site::serve(unlisted, files);
    assert_eq!(listed.origin, listed_origin);
    let query = format!("?presenced={}&token={token}&user={USER}", server.base);
    let read_from = |site: &Site| {
        Page::new()
            .goto(&format!("{}/{query}", site.origin))
            .wait_for("#result[data-done]")
            .text("#result")
    };
    let reports = browser::run(
        vec![read_from(&listed), read_from(&unlisted)],
        &[&pki.cert()],
    )
    .await;

    let (allowed, refused) = (&reports[0], &reports[1]);
    assert_eq!(allowed.result(0), "shown: Busy/InACall", "{allowed:#?}");
    assert!(
        allowed.console_errors().is_empty() && allowed.errors.is_empty(),
        "the listed origin's page logged errors: {allowed:#?}"
    );
    assert!(
        refused.result(0).starts_with("failed:"),
        "the unlisted origin's page read the presence: {refused:#?}"
    );
    // Refused by the browser for CORS, not for anything else.
    assert!(
        refused
            .console_errors()
            .iter()
            .any(|error| error.contains("blocked by CORS policy")),
        "{refused:#?}"
    );
}
