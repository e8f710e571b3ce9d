//! A real browser for the tests: Debian's Chromium, headless, driven by
//! playwright-core (pinned in `tests/js`, installed by `npm.rs`; it downloads
//! no browser) through `tests/js/browser_driver.mjs`, and static sites on
//! loopback ports to serve the pages it opens. A test describes each page
//! as steps (`Page`), and gets back per page what the steps read, the
//! console messages, uncaught errors and failed requests (`PageReport`).
//!
//! Chromium is installed by `scripts/test.sh` when it runs as root; a test
//! that needs it fails, saying how to install it, when it is missing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one step may wait (for a page, an element): a guard against a
/// hang, never a claim about speed.
const STEP_LIMIT_SECONDS: u64 = 30;

/// A guard against a hung driver.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// A loopback port bound now, so that a test knows a site's origin (to
/// give presenced as `--cors-origin`) before the site serves.
pub fn reserve_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port")
}

/// One file of a static site.
#[derive(Clone)]
pub struct SiteFile {
    /// Its path, such as `/index.html`.
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl SiteFile {
    /// The file `source` served at `path`; its type from its extension.
    pub fn from_disk(path: &str, source: &Path) -> SiteFile {
        let content_type = match source.extension().and_then(|extension| extension.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js" | "mjs") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("json") => "application/json",
            Some("png") => "image/png",
            _ => "application/octet-stream",
        };
        let body = std::fs::read(source)
            .unwrap_or_else(|error| panic!("{} is readable: {error}", source.display()));
        SiteFile {
            path: path.to_owned(),
            content_type,
            body,
        }
    }
}

/// A static site: fixed files, served over plain HTTP until the test ends.
pub struct Site {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
}

type Files = Arc<HashMap<String, (&'static str, Vec<u8>)>>;

impl Site {
    /// Serves `files` on `listener` (from `reserve_port`).
    pub fn serve(listener: std::net::TcpListener, files: Vec<SiteFile>) -> Site {
        listener.set_nonblocking(true).expect("non-blocking");
        let origin = format!("http://{}", listener.local_addr().expect("bound"));
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let files: Files = Arc::new(
            files
                .into_iter()
                .map(|file| (file.path, (file.content_type, file.body)))
                .collect(),
        );
        let app = axum::Router::new().fallback(serve_file).with_state(files);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Site { origin }
    }
}

async fn serve_file(State(files): State<Files>, OriginalUri(uri): OriginalUri) -> Response {
    match files.get(uri.path()) {
        Some((content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type)], body.clone()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// What the browser does in one tab, step by step.
#[derive(Default)]
pub struct Page {
    steps: Vec<Value>,
    /// The name of each step that gives a result, in order.
    names: Vec<String>,
}

impl Page {
    pub fn new() -> Page {
        Page::default()
    }

    pub fn goto(mut self, url: &str) -> Page {
        self.steps.push(json!({ "goto": url }));
        self
    }

    /// Waits until an element matches `selector`.
    pub fn wait_for(mut self, selector: &str) -> Page {
        self.steps.push(json!({ "waitFor": selector }));
        self
    }

    /// Reads the text of the element matching `selector`: the next entry
    /// of the report's `results`, named by the selector.
    pub fn text(self, selector: &str) -> Page {
        self.result(selector, json!({ "text": selector }))
    }

    /// Reads the text of the element matching `selector`, as `name`.
    pub fn text_as(self, name: &str, selector: &str) -> Page {
        self.result(name, json!({ "text": selector }))
    }

    fn result(mut self, name: &str, step: Value) -> Page {
        self.names.push(name.to_owned());
        self.steps.push(step);
        self
    }

    /// Waits until the text of the element matching `selector` holds `text`.
    pub fn wait_for_text(mut self, selector: &str, text: &str) -> Page {
        self.steps.push(json!({ "waitForText": [selector, text] }));
        self
    }

    /// Waits until the text of the element matching `selector` changes.
    pub fn wait_for_change(mut self, selector: &str) -> Page {
        self.steps.push(json!({ "waitForChange": selector }));
        self
    }

    /// How many elements match `selector`, as `name`.
    pub fn count(self, name: &str, selector: &str) -> Page {
        self.result(name, json!({ "count": selector }))
    }

    /// The attribute `attribute` of the element matching `selector`, as `name`.
    pub fn attribute(self, name: &str, selector: &str, attribute: &str) -> Page {
        self.result(name, json!({ "attribute": [selector, attribute] }))
    }

    /// Presses `key` (such as `Tab`, `Enter`, `ArrowRight`) wherever the
    /// focus is.
    pub fn key(mut self, key: &str) -> Page {
        self.steps.push(json!({ "key": key }));
        self
    }

    /// The focused element (`tag#id.class[data-user=...]: text`), as `name`.
    pub fn focused(self, name: &str) -> Page {
        self.result(name, json!({ "focused": true }))
    }

    /// The value of `expression` in the page, as JSON, as `name`.
    pub fn eval(self, name: &str, expression: &str) -> Page {
        self.result(name, json!({ "eval": expression }))
    }

    /// axe-core's violations on the page as it is now, as `name`.
    pub fn axe(self, name: &str) -> Page {
        self.result(name, json!({ "axe": true }))
    }

    /// An HTTP request made by the driver while the page stays open; its
    /// status, as `name`.
    pub fn request(
        self,
        name: &str,
        method: &str,
        url: &str,
        headers: Value,
        body: Option<&str>,
    ) -> Page {
        self.result(
            name,
            json!({ "request": { "method": method, "url": url, "headers": headers, "body": body } }),
        )
    }

    /// Resizes the page.
    pub fn viewport(mut self, width: u32, height: u32) -> Page {
        self.steps.push(json!({ "viewport": [width, height] }));
        self
    }

    pub fn click(mut self, selector: &str) -> Page {
        self.steps.push(json!({ "click": selector }));
        self
    }

    pub fn fill(mut self, selector: &str, value: &str) -> Page {
        self.steps.push(json!({ "fill": [selector, value] }));
        self
    }

    pub fn press(mut self, selector: &str, key: &str) -> Page {
        self.steps.push(json!({ "press": [selector, key] }));
        self
    }

    /// A PNG of the whole page, to look at.
    pub fn screenshot(mut self, path: &Path) -> Page {
        self.steps
            .push(json!({ "screenshot": path.to_str().expect("a UTF-8 path") }));
        self
    }
}

#[derive(Debug, Deserialize)]
pub struct ConsoleMessage {
    /// `log`, `error`, `warning`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub struct FailedRequest {
    pub url: String,
    pub error: String,
}

/// What happened in one tab.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageReport {
    /// What the `text` steps read, in order.
    pub results: Vec<Option<String>>,
    pub console: Vec<ConsoleMessage>,
    /// Uncaught errors of the page's scripts.
    pub errors: Vec<String>,
    pub failed: Vec<FailedRequest>,
    /// The step that failed (a page that did not load, an element that
    /// never appeared), which ended the page's steps.
    pub step_error: Option<String>,
    /// The names of the results, from the page's steps.
    #[serde(skip)]
    pub names: Vec<String>,
}

impl PageReport {
    /// The console's error messages.
    pub fn console_errors(&self) -> Vec<&str> {
        self.console
            .iter()
            .filter(|message| message.kind == "error")
            .map(|message| message.text.as_str())
            .collect()
    }

    /// The result named `name` (the first of that name); fails with the
    /// whole report (console included) when the steps did not get to it.
    #[track_caller]
    pub fn get(&self, name: &str) -> &str {
        let index = self
            .names
            .iter()
            .position(|candidate| candidate == name)
            .unwrap_or_else(|| panic!("no step gives a result named {name:?}"));
        self.result(index)
    }

    /// Fails, with the whole report, unless every step ran and the page's
    /// scripts threw nothing.
    #[track_caller]
    pub fn assert_ran(&self) {
        assert!(
            self.step_error.is_none() && self.errors.is_empty(),
            "the page's steps did not all run: {self:#?}"
        );
    }

    /// The text the `index`th `text` step read; fails with the whole report
    /// (console included) when the steps did not get that far.
    #[track_caller]
    pub fn result(&self, index: usize) -> &str {
        self.results
            .get(index)
            .and_then(|text| text.as_deref())
            .unwrap_or_else(|| panic!("the page has no result {index}: {self:#?}"))
    }
}

/// Fails, saying how to install it, unless Chromium is there.
fn check_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with \
         `apt-get install chromium chromium-driver` (scripts/test.sh does it when run as root)."
    );
}

/// Opens each of `pages` in its own tab of one headless Chromium, which
/// accepts the (test) certificates `trust` for https; returns a report per
/// page.
pub async fn run(pages: Vec<Page>, trust: &[&Path]) -> Vec<PageReport> {
    check_chromium();
    let workspace = tokio::task::spawn_blocking(crate::npm::workspace)
        .await
        .expect("the installer ran");
    let plan = json!({
        "chromium": CHROMIUM,
        "trust": trust.iter().map(|path| path.to_str().expect("a UTF-8 path")).collect::<Vec<_>>(),
        "timeoutSeconds": STEP_LIMIT_SECONDS,
        "pages": pages.iter().map(|page| json!({ "steps": page.steps })).collect::<Vec<_>>(),
    });
    let output = tokio::time::timeout(
        RUN_LIMIT,
        tokio::process::Command::new("node")
            .arg(workspace.join("browser_driver.mjs"))
            .arg(plan.to_string())
            .current_dir(&workspace)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the browser driver did not end within {RUN_LIMIT:?}"))
    .expect("node runs the browser driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser driver failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    #[derive(Deserialize)]
    struct Report {
        pages: Vec<PageReport>,
    }
    let report: Report = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("the browser driver printed no report:\n{stdout}"));
    report
        .pages
        .into_iter()
        .zip(pages)
        .map(|(mut report, page)| {
            report.names = page.names;
            report
        })
        .collect()
}

/// The harness itself: a page's text is read once its script has run, a
/// form is filled, typed into and clicked, a screenshot is taken, and the
/// page's console errors, uncaught errors and failed requests are reported.
#[tokio::test]
async fn the_browser_drives_a_page_and_reports_its_errors() {
    let closed = reserve_port().local_addr().expect("bound").port();
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><title>harness</title><link rel="icon" href="data:,">
<output id="result">waiting</output>
<form id="form"><input id="name"><button id="send">Send</button></form>
<output id="sent"></output>
<script>throw new Error("an uncaught error");</script>
<script src="http://127.0.0.1:{closed}/nothing-listens-here.js"></script>
<script type="module" src="/page.js"></script>"#
    );
    let script = r#"
const result = document.getElementById("result");
result.textContent = `ran at ${location.origin}`;
result.dataset.done = "true";
console.error("an error the harness must report");
const sent = document.getElementById("sent");
document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  sent.textContent += `[${document.getElementById("name").value}]`;
});
"#;
    let site = Site::serve(
        reserve_port(),
        vec![
            SiteFile {
                path: "/".into(),
                content_type: "text/html; charset=utf-8",
                body: page.into(),
            },
            SiteFile {
                path: "/page.js".into(),
                content_type: "text/javascript",
                body: script.into(),
            },
        ],
    );
    let pictures = tempfile::tempdir().expect("a temporary directory");
    let picture = pictures.path().join("page.png");
    let reports = run(
        vec![
            Page::new()
                .goto(&format!("{}/", site.origin))
                .wait_for("#result[data-done]")
                .text("#result")
                .fill("#name", "alice")
                .click("#send")
                .press("#name", "Enter")
                .text("#sent")
                .screenshot(&picture),
            Page::new().goto(&format!("{}/missing", site.origin)),
        ],
        &[],
    )
    .await;
    let report = &reports[0];
    assert!(report.step_error.is_none(), "{report:#?}");
    assert_eq!(
        report.result(0),
        format!("ran at {}", site.origin),
        "{report:#?}"
    );
    assert_eq!(report.result(1), "[alice][alice]", "{report:#?}");
    let png = std::fs::read(&picture).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        report
            .console_errors()
            .contains(&"an error the harness must report"),
        "{report:#?}"
    );
    assert!(
        report
            .errors
            .iter()
            .any(|error| error.contains("an uncaught error")),
        "{report:#?}"
    );
    assert!(
        report
            .failed
            .iter()
            .any(|failed| failed.url.contains("nothing-listens-here") && !failed.error.is_empty()),
        "{report:#?}"
    );
    // A page that is not there: the browser's own console error.
    let missing = &reports[1];
    assert!(
        missing
            .console_errors()
            .iter()
            .any(|error| error.contains("404")),
        "{missing:#?}"
    );
}
