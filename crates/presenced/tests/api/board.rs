//! The board (`/_presenced/board`) in a real headless Chromium against the
//! real binary: what it shows against what the API answers, live updates
//! without a reload, the detail with its deciding session and countdowns,
//! the manual clock's buttons, search and filters, tokens, caller text shown
//! as text, keyboard-only use, and axe-core's accessibility rules. Also the
//! page's headers and the tenant's user list it reads, over plain HTTP.

use std::time::Duration;

use presenced_testkit::RedisServer;
use serde_json::{Value, json};

use crate::browser::{self, Page, PageReport};
use crate::helpers::{TestServer, signed_token};
use crate::receiver::Receiver;

const PHONE: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";
const DESK: &str = "33553876-f5ab-4529-bffb-cfe50aa89f87";

/// A status message that a page rendering text as HTML would turn into an
/// image whose error handler runs a script.
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>";

/// The tenant the browser tests show: every colour, a status message, an
/// out-of-office, a work location, a user with two sessions, a user-preferred
/// presence, and an Offline user who only has a status message.
async fn seed(server: &TestServer) {
    server
        .set_presence("alice", PHONE, "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("alice", DESK, "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("bob", PHONE, "Away", "Away", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .post(
            "/v1.0/users/bob/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": HOSTILE, "contentType": "text"}}}),
        )
        .await
        .assert_ok_empty();
    server
        .set_presence("carol", PHONE, "DoNotDisturb", "Presenting", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("dave", PHONE, "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_preferred("dave", "BeRightBack", "BeRightBack", None)
        .await
        .assert_ok_empty();
    server
        .set_presence("erin", PHONE, "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    assert_eq!(
        server
            .put(
                "/_presenced/users/erin/outOfOffice",
                json!({"isOutOfOffice": true, "message": "Back on Monday"}),
            )
            .await
            .status,
        200
    );
    server
        .post(
            "/v1.0/users/frank/presence/setStatusMessage",
            json!({"statusMessage": {"message": {"content": "Gone fishing", "contentType": "text"}}}),
        )
        .await
        .assert_ok_empty();
}

fn card(user: &str) -> String {
    format!("button.card[data-user=\"{user}\"]")
}

/// An enum value in the board's words, as `presence.js` writes it.
fn words(value: &str) -> String {
    match value {
        "InACall" => return "In a call".into(),
        "AvailableIdle" => return "Available, idle".into(),
        _ => {}
    }
    let mut text = String::new();
    for (index, character) in value.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            text.push(' ');
            text.extend(character.to_lowercase());
        } else {
            text.push(character);
        }
    }
    text
}

/// Whether a `focused` result is the card of `user`.
fn focused_card(focused: &str, user: &str) -> bool {
    focused.starts_with("button.card") && focused.contains(&format!("[data-user={user}]:"))
}

/// Fails unless the page logged no error at all.
#[track_caller]
fn assert_clean(report: &PageReport) {
    report.assert_ran();
    assert!(
        report.console_errors().is_empty(),
        "the board logged errors: {report:#?}"
    );
}

/// Fails unless axe-core found nothing serious or critical.
#[track_caller]
fn assert_accessible(report: &PageReport, name: &str) {
    let violations: Vec<Value> =
        serde_json::from_str(report.get(name)).expect("axe's violations as JSON");
    let serious: Vec<&Value> = violations
        .iter()
        .filter(|violation| matches!(violation["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(serious.is_empty(), "axe-core ({name}): {serious:#?}");
}

#[tokio::test]
async fn the_board_shows_the_tenant_live_explains_a_presence_and_moves_the_clock() {
    let server = TestServer::start(&["--auth", "none"]).await;
    seed(&server).await;
    let listed = server.get("/_presenced/users").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let users = listed.body["value"].as_array().expect("a list").clone();
    let ids: Vec<&str> = users
        .iter()
        .map(|user| user["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, ["alice", "bob", "carol", "dave", "erin", "frank"]);

    let board = server.url("/_presenced/board");
    let mut page = Page::new()
        .goto(&board)
        .wait_for(&card("frank"))
        .text_as("summary", "#summary");
    // Every card against the API.
    for user in &users {
        let id = user["id"].as_str().expect("an id");
        page = page
            .text_as(
                &format!("{id} availability"),
                &format!("{} .availability", card(id)),
            )
            .text_as(
                &format!("{id} activity"),
                &format!("{} .activity", card(id)),
            );
    }
    page = page
        .count("cards", ".cell:not([hidden]) button.card")
        .text_as("bob status", &format!("{} .status", card("bob")))
        .count("markup from a status", "#grid img, #grid b")
        .eval("title", "document.title")
        .text_as("erin marks", &format!("{} .marks", card("erin")))
        .text_as("frank status", &format!("{} .status", card("frank")))
        // A change through the API reaches the open page: no reload (the
        // mark set on the page's window survives).
        .eval("mark", "window.notReloaded = 'still here'")
        .request(
            "set dave busy",
            "POST",
            &server.url("/v1.0/users/dave/presence/clearUserPreferredPresence"),
            json!({}),
            None,
        )
        .set_presence("set dave busy 2", &server, "dave", "Busy", "InACall")
        .wait_for_text(&format!("{} .availability", card("dave")), "Busy")
        .eval("still here", "window.notReloaded")
        // Filters: only Busy (alice, carol, dave), then all again.
        .click("button.filter[data-group=\"busy\"]")
        .count("busy cards", ".cell:not([hidden]) button.card")
        .attribute(
            "busy pressed",
            "button.filter[data-group=\"busy\"]",
            "aria-pressed",
        )
        .click("button.filter[data-group=\"busy\"]")
        .count("all cards again", ".cell:not([hidden]) button.card")
        // Search by status message, then by an id nobody holds facts for.
        .fill("#search", "fishing")
        .count("fishing cards", ".cell:not([hidden]) button.card")
        .text_as("fishing card", ".cell:not([hidden]) button.card .user")
        .fill("#search", "zoe")
        .wait_for("#lookup:not([hidden])")
        .click("#lookup button")
        .wait_for("#decided-by")
        .text_as("zoe title", "#detail-title")
        .text_as("zoe decided", "#decided-by")
        .click("#detail-close")
        .fill("#search", "")
        // The detail: the deciding session and its countdowns, which move
        // with the manual clock.
        .click(&card("alice"))
        .wait_for("#decided-by")
        .text_as("alice decided", "#decided-by")
        .text_as("alice deciding row", "#detail-body tr.decides")
        .count("alice sessions", "#detail-body tbody tr")
        .axe("axe with the detail open")
        .text_as(
            "fade before",
            "#detail-body tbody tr:not(.decides) td:nth-child(5)",
        )
        .click("#detail-clock button[data-by=\"PT1M\"]")
        .wait_for_text(
            "#detail-body tbody tr:not(.decides) td:nth-child(5)",
            "in 4 min 0 s",
        )
        .text_as(
            "fade after",
            "#detail-body tbody tr:not(.decides) td:nth-child(5)",
        )
        .key("Escape")
        // The clock fades a card: erin's only session, Available, is
        // Available/AvailableInactive after one idle timeout, then Away.
        .click("#clock button[data-by=\"PT5M\"]")
        .wait_for_text(&format!("{} .activity", card("erin")), "Available inactive")
        .click("#clock button[data-by=\"PT5M\"]")
        .wait_for_text(&format!("{} .availability", card("erin")), "Away")
        .axe("axe on the board");

    let keyboard = Page::new()
        .goto(&board)
        .wait_for(&card("frank"))
        // The first Tab reaches the skip link, which leads to the cards.
        .key("Tab")
        .focused("first tab")
        .key("Enter")
        .focused("on the cards")
        .key("ArrowRight")
        .key("ArrowRight")
        .focused("third card")
        .key("Enter")
        .wait_for("#decided-by")
        .text_as("keyboard detail", "#detail-title")
        .focused("in the detail")
        .key("Escape")
        .focused("back on the card")
        // The focused card leaves the list (Busy only, and carol becomes
        // Available): the focus moves to the next card, not to nowhere.
        .click("button.filter[data-group=\"busy\"]")
        .eval("skip", "document.getElementById('skip').click()")
        .wait_for(&format!("{}:focus", card("carol")))
        .set_presence(
            "carol available",
            &server,
            "carol",
            "Available",
            "Available",
        )
        .wait_for("#grid button.card:focus:not([data-user=\"carol\"])")
        .focused("after carol left")
        .click("button.filter[data-group=\"busy\"]")
        .viewport(390, 844)
        .axe("axe at phone width");

    let reports = browser::run(vec![page, keyboard], &[]).await;
    let (report, keyboard) = (&reports[0], &reports[1]);
    assert_clean(report);
    assert_eq!(report.get("summary"), "6 users");
    for user in &users {
        let id = user["id"].as_str().expect("an id");
        assert_eq!(
            report.get(&format!("{id} availability")),
            words(user["availability"].as_str().expect("availability")),
            "{id}"
        );
        assert_eq!(
            report.get(&format!("{id} activity")),
            words(user["activity"].as_str().expect("activity")),
            "{id}"
        );
    }
    assert_eq!(report.get("cards"), "6");
    assert_eq!(report.get("bob status"), HOSTILE, "shown as text");
    assert_eq!(report.get("markup from a status"), "0");
    assert_eq!(report.get("title"), "\"Presence board · presenced\"");
    assert!(
        report.get("erin marks").contains("Out of office"),
        "{report:#?}"
    );
    assert_eq!(report.get("frank status"), "Gone fishing");
    assert_eq!(report.get("set dave busy"), "200");
    assert_eq!(report.get("set dave busy 2"), "200");
    assert_eq!(report.get("still here"), "\"still here\"");
    assert_eq!(report.get("busy cards"), "3");
    assert_eq!(report.get("busy pressed"), "true");
    assert_eq!(report.get("all cards again"), "6");
    assert_eq!(report.get("fishing cards"), "1");
    assert_eq!(report.get("fishing card"), "frank");
    assert_eq!(report.get("zoe title"), "zoe");
    assert!(
        report.get("zoe decided").contains("No session"),
        "{report:#?}"
    );
    assert!(
        report.get("alice decided").contains("strongest session"),
        "{report:#?}"
    );
    let deciding = report.get("alice deciding row");
    assert!(
        deciding.contains(DESK) && deciding.contains("Decides") && deciding.contains("Busy"),
        "{deciding}"
    );
    assert_eq!(report.get("alice sessions"), "2");
    assert_eq!(report.get("fade before"), "in 5 min 0 s");
    assert_eq!(report.get("fade after"), "in 4 min 0 s");
    assert_accessible(report, "axe with the detail open");
    assert_accessible(report, "axe on the board");
    // What the page's clock showed is what the API says now.
    assert_eq!(server.shown("erin").await, ("Away".into(), "Away".into()));

    assert_clean(keyboard);
    assert!(
        keyboard.get("first tab").starts_with("a#skip"),
        "{keyboard:#?}"
    );
    assert!(
        focused_card(keyboard.get("on the cards"), "alice"),
        "{keyboard:#?}"
    );
    assert!(
        focused_card(keyboard.get("third card"), "carol"),
        "{keyboard:#?}"
    );
    assert_eq!(keyboard.get("keyboard detail"), "carol");
    assert!(
        keyboard
            .get("in the detail")
            .starts_with("button#detail-close"),
        "{keyboard:#?}"
    );
    assert!(
        focused_card(keyboard.get("back on the card"), "carol"),
        "{keyboard:#?}"
    );
    assert_eq!(keyboard.get("carol available"), "200");
    // Busy were alice, carol and dave (made Busy above); carol was the
    // second, and dave takes her place.
    assert!(
        focused_card(keyboard.get("after carol left"), "dave"),
        "{keyboard:#?}"
    );
    assert_accessible(keyboard, "axe at phone width");
}

const SECRET: &str = "the board test's hs256 secret, 32 bytes or more";

#[tokio::test]
async fn with_tokens_the_board_asks_for_one_and_says_why_one_is_refused() {
    let server = TestServer::start_with(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
        "--auth",
        "hs256",
        "--jwt-secret",
        SECRET,
    ])
    .await;
    let writer = signed_token(SECRET, "contoso", PHONE, None, &["Presence.ReadWrite.All"]);
    // The default idle timeout of five minutes: the fade's countdown shows
    // seconds, and ticks with the system clock.
    let reply = server
        .send(
            server
                .client()
                .post(server.url("/v1.0/users/alice/presence/setPresence"))
                .bearer_auth(&writer)
                .json(&json!({
                    "sessionId": PHONE,
                    "availability": "Available",
                    "activity": "Available",
                    "expirationDuration": "PT1H",
                })),
        )
        .await;
    reply.assert_ok_empty();
    let narrow = signed_token(SECRET, "contoso", PHONE, Some("alice"), &["Presence.Read"]);
    let reader = signed_token(SECRET, "contoso", PHONE, None, &["Presence.Read.All"]);

    let page = Page::new()
        .goto(&server.url("/_presenced/board"))
        .wait_for("#token-panel:not([hidden])")
        .text_as("no token", "#token-message")
        .fill("#token-input", "eyJhbGciOiJIUzI1NiJ9.e30.sig nature")
        .click("#token-form button")
        .wait_for_text("#token-message", "visible ASCII")
        .text_as("unsendable token", "#token-message")
        .fill("#token-input", "not-a-token")
        .click("#token-form button")
        .wait_for_text("#token-message", "refused this token")
        .text_as("bad token", "#token-message")
        .fill("#token-input", &narrow)
        .click("#token-form button")
        .wait_for_text("#token-message", "403")
        .text_as("narrow token", "#token-message")
        .fill("#token-input", &format!("Bearer {reader}"))
        .click("#token-form button")
        .wait_for(&card("alice"))
        .eval(
            "kept",
            "sessionStorage.length === 1 && localStorage.length === 0",
        )
        .click(&card("alice"))
        .wait_for("#detail-body tbody tr.decides")
        .wait_for_change("#detail-body tr.decides td:nth-child(5)")
        .text_as("fade", "#detail-body tr.decides td:nth-child(5)");

    let reports = browser::run(vec![page], &[]).await;
    let report = &reports[0];
    report.assert_ran();
    let no_token = report.get("no token");
    assert!(
        no_token.contains("needs a token") && no_token.contains("401"),
        "{no_token}"
    );
    assert!(
        report
            .get("unsendable token")
            .contains("a space or line break at character 29"),
        "{report:#?}"
    );
    assert!(report.get("bad token").contains("401"), "{report:#?}");
    let narrow = report.get("narrow token");
    assert!(
        narrow.contains("403") && narrow.contains("Presence.Read.All"),
        "{narrow}"
    );
    assert_eq!(report.get("kept"), "true");
    assert!(report.get("fade").starts_with("in 4 min"), "{report:#?}");
    // The only errors are the browser's own lines for the refused calls.
    for error in report.console_errors() {
        assert!(
            error.contains("401") || error.contains("403"),
            "an error other than a refusal: {error}"
        );
    }
}

#[tokio::test]
async fn the_board_is_served_without_a_token_under_a_strict_policy() {
    let server = TestServer::start(&["--auth", "hs256", "--jwt-secret", SECRET]).await;
    let page = server.get("/_presenced/board").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    let policy = page.headers["content-security-policy"]
        .to_str()
        .expect("text");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(policy.contains(directive), "{policy} lacks {directive}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(page.text.contains("<main"), "{}", page.text);
    for (asset, content_type) in [
        ("board.js", "text/javascript; charset=utf-8"),
        ("board.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let reply = server.get(&format!("/_presenced/board/{asset}")).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert_eq!(reply.headers["content-type"], content_type, "{asset}");
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        let tag = reply.headers["etag"].clone();
        let again = server
            .send(
                server
                    .client()
                    .get(server.url(&format!("/_presenced/board/{asset}")))
                    .header("If-None-Match", tag),
            )
            .await;
        assert_eq!(again.status, 304, "{asset}");
    }
    let missing = server.get("/_presenced/board/secrets.txt").await;
    missing.assert_error(404, "NotFound");
    assert_eq!(missing.headers["x-content-type-options"], "nosniff");
    // The data is not open: the list needs a token, and the tenant's
    // permission.
    server
        .get("/_presenced/users")
        .await
        .assert_error(401, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn the_user_list_pages_through_the_tenant_in_id_order_and_needs_read_all() {
    let server = TestServer::start(&["--auth", "hs256", "--jwt-secret", SECRET]).await;
    let writer = signed_token(SECRET, "contoso", PHONE, None, &["Presence.ReadWrite.All"]);
    let other = signed_token(SECRET, "fabrikam", PHONE, None, &["Presence.ReadWrite.All"]);
    for user in ["erin", "bob", "alice", "dave", "carol"] {
        server
            .send(
                server
                    .client()
                    .post(server.url(&format!("/v1.0/users/{user}/presence/setPresence")))
                    .bearer_auth(&writer)
                    .json(
                        &json!({"sessionId": PHONE, "availability": "Busy", "activity": "InACall"}),
                    ),
            )
            .await
            .assert_ok_empty();
    }
    // Offline again, and still held: listed.
    server
        .send(
            server
                .client()
                .post(server.url("/v1.0/users/dave/presence/clearPresence"))
                .bearer_auth(&writer)
                .json(&json!({"sessionId": PHONE})),
        )
        .await
        .assert_ok_empty();
    // Another tenant's user is not.
    server
        .send(
            server
                .client()
                .post(server.url("/v1.0/users/zed/presence/setPresence"))
                .bearer_auth(&other)
                .json(&json!({"sessionId": PHONE, "availability": "Busy", "activity": "InACall"})),
        )
        .await
        .assert_ok_empty();

    let mut seen = Vec::new();
    let mut next = Some(server.url("/_presenced/users?$top=2"));
    let mut pages = 0;
    while let Some(url) = next {
        let reply = server
            .send(server.client().get(&url).bearer_auth(&writer))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        pages += 1;
        for presence in reply.body["value"].as_array().expect("a page") {
            seen.push((
                presence["id"].as_str().expect("an id").to_owned(),
                presence["availability"]
                    .as_str()
                    .expect("availability")
                    .to_owned(),
            ));
        }
        next = reply.body["@odata.nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(pages, 3);
    let expected: Vec<(String, String)> = [
        ("alice", "Busy"),
        ("bob", "Busy"),
        ("carol", "Busy"),
        ("dave", "Offline"),
        ("erin", "Busy"),
    ]
    .iter()
    .map(|(id, availability)| (id.to_string(), availability.to_string()))
    .collect();
    assert_eq!(seen, expected);

    let narrow = signed_token(
        SECRET,
        "contoso",
        PHONE,
        Some("alice"),
        &["Presence.ReadWrite"],
    );
    let refused = server
        .send(
            server
                .client()
                .get(server.url("/_presenced/users"))
                .bearer_auth(&narrow),
        )
        .await;
    assert!(
        refused
            .assert_error(403, "Forbidden")
            .contains("Presence.Read.All"),
        "{}",
        refused.text
    );
    for bad in ["$top=0", "$top=1001", "$skiptoken=!!"] {
        server
            .send(
                server
                    .client()
                    .get(server.url(&format!("/_presenced/users?{bad}")))
                    .bearer_auth(&writer),
            )
            .await
            .assert_error(400, "BadRequest");
    }
}

#[tokio::test]
async fn the_board_s_words_countdowns_and_event_parser_hold_in_node() {
    let workspace = tokio::task::spawn_blocking(crate::npm::workspace)
        .await
        .expect("the installer ran");
    let board = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(workspace.join("board_units.mjs"))
        .arg(&board)
        .current_dir(&workspace);
    let stdout = crate::sdk::run_script(command, "board_units.mjs").await;
    crate::sdk::assert_checks(&stdout, 8);
}

/// A page step that tells the test where the page has got to: a POST to the
/// test's receiver at `path`, which the test waits for before it changes
/// presenced under the open page.
fn tell(page: Page, receiver: &Receiver, path: &str) -> Page {
    page.request(
        path,
        "POST",
        &receiver.url(path),
        json!({"Content-Type": "application/json"}),
        Some(r#"{"value": [{}]}"#),
    )
}

/// The body of a setPresence for the session `PHONE`.
fn set_body(availability: &str, activity: &str) -> String {
    json!({
        "sessionId": PHONE, "availability": availability, "activity": activity, "expirationDuration": "PT1H",
    })
    .to_string()
}

/// A page step that sets `user`'s `PHONE` session through the API (a
/// change made while the page is open); its status is the result `name`.
trait SetFromPage {
    fn set_presence(
        self,
        name: &str,
        server: &TestServer,
        user: &str,
        availability: &str,
        activity: &str,
    ) -> Page;
}

impl SetFromPage for Page {
    fn set_presence(
        self,
        name: &str,
        server: &TestServer,
        user: &str,
        availability: &str,
        activity: &str,
    ) -> Page {
        self.request(
            name,
            "POST",
            &server.url(&format!("/v1.0/users/{user}/presence/setPresence")),
            json!({"Content-Type": "application/json"}),
            Some(&set_body(availability, activity)),
        )
    }
}

#[tokio::test]
async fn the_board_starts_again_when_presenced_restarts_without_its_data() {
    // The same port before and after, as a restarted service has.
    let address = browser::reserve_port()
        .local_addr()
        .expect("an address")
        .to_string();
    let args = [
        "serve", "--listen", &address, "--store", "memory", "--clock", "manual", "--auth", "none",
    ];
    let server = TestServer::start_with(&args).await;
    // Several changes: alice's sequence number is well past what a new
    // process gives her first.
    for activity in [
        "InACall",
        "InAConferenceCall",
        "InACall",
        "InAConferenceCall",
        "InACall",
    ] {
        server
            .set_presence("alice", PHONE, "Busy", activity, Some("PT1H"))
            .await
            .assert_ok_empty();
    }
    server
        .set_presence("carol", PHONE, "Away", "Away", Some("PT1H"))
        .await
        .assert_ok_empty();
    let receiver = Receiver::start().await;
    let page = Page::new()
        .goto(&server.url("/_presenced/board"))
        .wait_for(&card("carol"))
        .wait_for_text(&format!("{} .activity", card("alice")), "In a call")
        .wait_for_text("#connection", "Live");
    let page = tell(page, &receiver, "/restart")
        // The new process holds alice (Available, her first change there)
        // and bob; carol is gone with the old one.
        .wait_for(&card("bob"))
        .wait_for_text(&format!("{} .availability", card("alice")), "Available")
        .count("cards", ".cell:not([hidden]) button.card")
        .text_as("summary", "#summary")
        // And it is live: a change on the new process arrives.
        .set_presence("bob busy", &server, "bob", "Busy", "InACall")
        .wait_for_text(&format!("{} .availability", card("bob")), "Busy");
    let restart = async {
        receiver
            .wait_for(Some("/restart"), 1, Duration::from_secs(60))
            .await;
        server.kill().await;
        let server = TestServer::start_with(&args).await;
        server
            .set_presence("alice", PHONE, "Available", "Available", Some("PT1H"))
            .await
            .assert_ok_empty();
        server
            .set_presence("bob", PHONE, "Away", "Away", Some("PT1H"))
            .await
            .assert_ok_empty();
        server
    };
    let (reports, server) = tokio::join!(browser::run(vec![page], &[]), restart);
    let report = &reports[0];
    report.assert_ran();
    assert_eq!(report.get("cards"), "2", "{report:#?}");
    assert_eq!(report.get("summary"), "2 users");
    assert_eq!(report.get("bob busy"), "200");
    assert_eq!(server.shown("bob").await, ("Busy".into(), "InACall".into()));
}

#[tokio::test]
async fn while_presenced_does_not_stream_the_board_shows_the_list_and_catches_up_after() {
    let server = TestServer::start(&["--auth", "none", "--max-streams", "1"]).await;
    server
        .set_presence("alice", PHONE, "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    // The node's one stream, held by someone else.
    let held = server
        .client()
        .get(server.url("/_presenced/stream"))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(held.status(), 200);
    let receiver = Receiver::start().await;
    let page = Page::new()
        .goto(&server.url("/_presenced/board"))
        .wait_for(&card("alice"))
        .wait_for_text("#connection", "paused")
        .text_as("paused", "#connection");
    let page = tell(page, &receiver, "/release")
        // Changed before the board's stream opens, so not in it: the board
        // reads the list again when it opens without resuming.
        .wait_for(&card("carol"))
        .wait_for_text("#connection", "Live")
        .set_presence("bob busy", &server, "bob", "Busy", "InACall")
        .wait_for(&card("bob"))
        .count("cards", ".cell:not([hidden]) button.card");
    let release = async {
        receiver
            .wait_for(Some("/release"), 1, Duration::from_secs(60))
            .await;
        server
            .set_presence("carol", PHONE, "Away", "Away", Some("PT1H"))
            .await
            .assert_ok_empty();
        drop(held);
    };
    let (reports, ()) = tokio::join!(browser::run(vec![page], &[]), release);
    let report = &reports[0];
    assert_clean_but_refusals(report);
    assert!(
        report.get("paused").contains("live streams"),
        "the 503's message: {report:#?}"
    );
    assert_eq!(report.get("cards"), "3", "{report:#?}");
}

#[tokio::test]
async fn a_list_that_fails_while_redis_is_down_is_read_again_when_it_is_back() {
    let mut redis = RedisServer::start();
    let server = TestServer::start_node(&[redis.url()], &["--auth", "none"]).await;
    server
        .set_presence("alice", PHONE, "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    redis.stop();
    let receiver = Receiver::start().await;
    let page = Page::new()
        .goto(&server.url("/_presenced/board"))
        .wait_for_text("#message", "cannot be read")
        .text_as("failed", "#message");
    let page = tell(page, &receiver, "/down")
        // Only the list has alice: a fresh stream sends nothing until a
        // change.
        .wait_for(&card("alice"))
        .eval(
            "message hidden",
            "document.getElementById('message').hidden",
        )
        .wait_for_text("#connection", "Live")
        // Written once the node writes again (it takes its partitions back
        // from Redis first), then a change made from the page: both arrive.
        .wait_for(&card("bob"))
        .set_presence("carol busy", &server, "carol", "Busy", "InACall")
        .wait_for(&card("carol"))
        .text_as("alice", &format!("{} .availability", card("alice")));
    let back = async {
        receiver
            .wait_for(Some("/down"), 1, Duration::from_secs(60))
            .await;
        redis.restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reply = server
                .try_send(
                    server
                        .client()
                        .post(server.url("/v1.0/users/bob/presence/setPresence"))
                        .header("Content-Type", "application/json")
                        .body(set_body("Away", "Away")),
                )
                .await;
            if reply.as_ref().is_ok_and(|reply| reply.status == 200) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the node writes again within 60 s: {reply:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (reports, ()) = tokio::join!(browser::run(vec![page], &[]), back);
    let report = &reports[0];
    assert_clean_but_refusals(report);
    assert!(report.get("failed").contains("Trying again"), "{report:#?}");
    assert_eq!(report.get("alice"), "Busy");
    assert_eq!(
        report.get("message hidden"),
        "true",
        "the failure is no longer shown"
    );
    assert_eq!(report.get("carol busy"), "200");
}

/// Fails unless the page ran every step and logged no error other than
/// the browser's own line for a refused request (a 503 it was told of).
#[track_caller]
fn assert_clean_but_refusals(report: &PageReport) {
    report.assert_ran();
    let errors: Vec<&str> = report
        .console_errors()
        .into_iter()
        .filter(|text| !text.contains("503"))
        .collect();
    assert!(errors.is_empty(), "the board logged errors: {report:#?}");
}

#[tokio::test]
async fn the_detail_reads_the_sessions_again_when_a_countdown_reaches_zero() {
    // Fade stages of ten seconds on the system clock (time enough for the
    // page to open and read the sessions first): alice's phone fades
    // while her desk keeps her Busy, so her presence (and the stream) does
    // not change; only the detail's own countdown says the table is stale.
    let server = TestServer::start_with(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
        "--auth",
        "none",
        "--idle-timeout",
        "PT10S",
    ])
    .await;
    server
        .set_presence("alice", DESK, "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    server
        .set_presence("alice", PHONE, "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    let phone_row = "#detail-body tbody tr:not(.decides)";
    let page = Page::new()
        .goto(&server.url("/_presenced/board"))
        .click(&card("alice"))
        .wait_for(phone_row)
        .text_as("before", &format!("{phone_row} td:nth-child(3)"))
        .wait_for_text(
            &format!("{phone_row} td:nth-child(3)"),
            "Available inactive",
        )
        .text_as("faded", &format!("{phone_row} td:nth-child(3)"))
        .text_as("still busy", &format!("{} .availability", card("alice")));
    let reports = browser::run(vec![page], &[]).await;
    let report = &reports[0];
    assert_clean(report);
    assert_eq!(report.get("before"), "Available · Available");
    assert_eq!(report.get("faded"), "Available · Available inactive");
    assert_eq!(report.get("still busy"), "Busy");
}
