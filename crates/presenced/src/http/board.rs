//! The board: a live presence page for people, at `/_presenced/board`.
//!
//! Its files (`crates/presenced/board/`) are built into the binary, so the
//! page works offline and from a single file copied to a server. They are
//! plain modern JavaScript modules, CSS and SVG with no build step: what is
//! served is what is in the tree. The page and its files load without a
//! token (a navigation cannot send one); every call the page makes for data
//! goes through the API and needs one, as any other client's.
//!
//! Every answer of the board carries a Content-Security-Policy that allows
//! scripts, styles, images and connections from this origin only, no inline
//! script or style, no framing, and Trusted Types with no policy: a script
//! that tried to write a string as HTML (`innerHTML`) would throw instead,
//! so the page cannot render a caller's text as markup even by mistake.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::state::AppState;

/// The policy every file of the board is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

/// One file of the board.
struct BoardFile {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! board_file {
    ($name:literal, $content_type:literal) => {
        BoardFile {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../board/", $name)),
        }
    };
}

/// The page itself, served at `/_presenced/board`.
const PAGE: BoardFile = board_file!("index.html", "text/html; charset=utf-8");

/// The files the page loads, served at `/_presenced/board/{asset}`.
const ASSETS: [BoardFile; 8] = [
    board_file!("board.js", "text/javascript; charset=utf-8"),
    board_file!("api.js", "text/javascript; charset=utf-8"),
    board_file!("stream.js", "text/javascript; charset=utf-8"),
    board_file!("grid.js", "text/javascript; charset=utf-8"),
    board_file!("detail.js", "text/javascript; charset=utf-8"),
    board_file!("presence.js", "text/javascript; charset=utf-8"),
    board_file!("board.css", "text/css; charset=utf-8"),
    board_file!("icon.svg", "image/svg+xml"),
];

/// The names of the files the page loads (for the OpenAPI document).
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|file| file.name).collect()
}

/// The bytes of the board, all files together (for the README's size).
pub fn total_bytes() -> usize {
    PAGE.body.len() + ASSETS.iter().map(|file| file.body.len()).sum::<usize>()
}

/// The page as served with `--clock manual`: its body says so, so that the
/// page shows the clock's buttons without asking (asking a server that has
/// no manual clock would be a 404, which browsers log as an error).
static PAGE_MANUAL: LazyLock<BoardFile> = LazyLock::new(|| {
    let page = std::str::from_utf8(PAGE.body).expect("the page is UTF-8");
    assert!(page.contains(SYSTEM_CLOCK), "the page names its clock");
    BoardFile {
        name: PAGE.name,
        content_type: PAGE.content_type,
        body: page
            .replace(SYSTEM_CLOCK, "data-clock=\"manual\"")
            .into_bytes()
            .leak(),
    }
});

const SYSTEM_CLOCK: &str = "data-clock=\"system\"";

/// A file's entity tag: a hash of its bytes, so that a browser revalidates
/// (`Cache-Control: no-cache`) and gets a 304 until another build of
/// presenced serves other bytes.
fn tag(body: &[u8]) -> HeaderValue {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same bytes give the same tag in every
    // process of one build.
    let mut hasher = std::hash::DefaultHasher::new();
    body.hash(&mut hasher);
    HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
        .expect("hex digits and quotes are a valid header value")
}

/// Each file's tag, computed once: the page with the system clock, the page
/// with the manual clock, then the assets in order.
static TAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    [PAGE.body, PAGE_MANUAL.body]
        .into_iter()
        .chain(ASSETS.iter().map(|file| file.body))
        .map(tag)
        .collect()
});

fn serve(file: &BoardFile, tag: &HeaderValue, request: &HeaderMap) -> Response {
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| candidate.trim().trim_start_matches("W/") == tag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(header::ETAG, tag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `GET /_presenced/board`: the page.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.clock.is_manual() {
        serve(&PAGE_MANUAL, &TAGS[1], &headers)
    } else {
        serve(&PAGE, &TAGS[0], &headers)
    }
}

/// `GET /_presenced/board/{asset}`: one of the files the page loads.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (index, file) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, file)| file.name == name)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "The board has no file '{}'; open /_presenced/board.",
                crate::http::wire::truncate(&name)
            ))
        })?;
    Ok(serve(file, &TAGS[index + 2], &headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_served_and_every_served_file_is_named() {
        let page = std::str::from_utf8(PAGE.body).expect("the page is UTF-8");
        let scripts: String = ASSETS
            .iter()
            .filter(|file| file.name.ends_with(".js"))
            .map(|file| std::str::from_utf8(file.body).expect("UTF-8"))
            .collect();
        for file in &ASSETS {
            let path = format!("/_presenced/board/{}", file.name);
            let relative = format!("./{}", file.name);
            assert!(
                page.contains(&path) || scripts.contains(&relative),
                "nothing loads {}",
                file.name
            );
        }
    }

    #[test]
    fn no_file_holds_inline_script_or_style() {
        let page = std::str::from_utf8(PAGE.body).expect("UTF-8");
        assert!(!page.contains("<script>"), "an inline script");
        assert!(!page.contains("style="), "an inline style");
        assert!(!page.contains("<style"), "an inline style sheet");
        for file in ASSETS.iter().filter(|file| file.name.ends_with(".js")) {
            let text = std::str::from_utf8(file.body).expect("UTF-8");
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
            ] {
                assert!(
                    !text.contains(sink),
                    "{} writes HTML with {sink}",
                    file.name
                );
            }
        }
    }

    #[test]
    fn the_manual_clock_page_differs_only_in_its_clock() {
        let manual = std::str::from_utf8(PAGE_MANUAL.body).expect("UTF-8");
        assert!(manual.contains("data-clock=\"manual\""));
        assert_eq!(manual.len(), PAGE.body.len());
        assert_ne!(TAGS[0], TAGS[1]);
    }

    #[test]
    fn a_tag_the_browser_holds_gets_304() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, TAGS[2].clone());
        let response = serve(&ASSETS[0], &TAGS[2], &headers);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        let response = serve(&ASSETS[0], &TAGS[2], &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
    }
}
