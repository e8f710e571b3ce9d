//! Cross-origin requests for browser clients (`--cors-origin`).
//!
//! tower-http's `CorsLayer` does the work; this module turns the flag into
//! its settings. It is the outermost layer, so that a preflight is answered
//! before authentication, throttling and the 415 rule (a browser sends a
//! preflight without the Authorization header or the body). Without the
//! flag there is no layer at all: no `Access-Control-*` header on any
//! answer, and a preflight is an ordinary `OPTIONS`, answered 405.
//!
//! No credentials: Graph's clients send a bearer token in a header, never a
//! cookie, so a page of a listed origin needs none, and without them the
//! browser never attaches cookies of presenced's host either.

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins `--cors-origin` lists, each as a browser sends it in `Origin`
/// (`scheme://host[:port]`), or any origin (`*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsOrigins {
    origins: Vec<HeaderValue>,
    any: bool,
}

/// The request headers a page may send: Graph's, and what the SDKs add.
const ALLOWED_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "content-encoding",
    "client-request-id",
    "last-event-id",
    "sdkversion",
    "prefer",
    "return-client-request-id",
];

/// The response headers a page may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: [&str; 4] = ["retry-after", "request-id", "client-request-id", "location"];

/// How long a browser may keep a preflight's answer (Chromium keeps it two
/// hours at most).
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

impl CorsOrigins {
    /// Parses each `--cors-origin`: an origin (`https://app.example.com`,
    /// `http://localhost:3000`), `*` for any, or `none` (the default). The error says which value
    /// is wrong and what an origin looks like.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<CorsOrigins, String> {
        let mut parsed = CorsOrigins::default();
        for value in values {
            let text = value.as_ref().trim();
            if text == "*" {
                parsed.any = true;
                continue;
            }
            if text.eq_ignore_ascii_case("none") {
                continue;
            }
            let origin = origin(text)?;
            let origin = HeaderValue::from_str(&origin)
                .map_err(|_| format!("--cors-origin {text:?} is not a valid header value"))?;
            if !parsed.origins.contains(&origin) {
                parsed.origins.push(origin);
            }
        }
        Ok(parsed)
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty() && !self.any
    }

    /// The layer for these origins; `None` when none is listed.
    pub fn layer(&self) -> Option<CorsLayer> {
        if self.is_empty() {
            return None;
        }
        let allow_origin = if self.any {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(self.origins.clone())
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
                .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// An origin as a browser serializes it: the scheme and host in lower case,
/// the port only when it is not the scheme's default, nothing after.
fn origin(text: &str) -> Result<String, String> {
    let hint = "give an origin such as https://app.example.com or http://localhost:3000 (scheme, host and port only), or * for any";
    let url = url::Url::parse(text)
        .map_err(|error| format!("--cors-origin {text:?} is not an origin ({error}); {hint}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "--cors-origin {text:?} is not an http or https origin; {hint}"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "--cors-origin {text:?} has a path, query or fragment; {hint}"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "--cors-origin {text:?} has credentials in it; {hint}"
        ));
    }
    match url.origin() {
        url::Origin::Tuple(..) => Ok(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Err(format!("--cors-origin {text:?} has no host; {hint}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_kept_as_browsers_send_them() {
        let parsed = CorsOrigins::parse(&[
            "https://App.Example.com",
            "http://localhost:3000/",
            "https://app.example.com:443",
            "http://127.0.0.1:80",
        ])
        .expect("origins");
        assert_eq!(
            parsed.origins,
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://127.0.0.1"
            ]
            .map(HeaderValue::from_static)
        );
        assert!(!parsed.any);
        assert!(CorsOrigins::parse(&["*"]).expect("any").any);
        assert!(
            CorsOrigins::parse::<&str>(&[])
                .expect("none")
                .layer()
                .is_none()
        );
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_what_one_looks_like() {
        for wrong in [
            "app.example.com",
            "ftp://files.example.com",
            "https://app.example.com/board",
            "https://app.example.com?x=1",
            "https://user:secret@app.example.com",
            "",
        ] {
            let error = CorsOrigins::parse(&[wrong]).expect_err(wrong);
            assert!(error.contains("--cors-origin"), "{error}");
            assert!(error.contains("https://app.example.com"), "{error}");
        }
    }
}
