//! Graph's JSON batching: `POST /v1.0/$batch` and `/beta/$batch`.
//!
//! A batch is up to 20 requests in one body. Each inner request is turned
//! into an HTTP request of its own, carrying the batch's `Authorization`
//! header, and sent through the same application every other request goes
//! through, frame and all: it is authenticated, throttled, bounded and
//! answered exactly as if it had been sent alone, and it is counted once in
//! the metrics, as its own route. The batch itself is authenticated (401)
//! but not throttled: a batch counts its inner requests, not itself.
//!
//! What is wrong with the batch as a whole (not JSON, more than 20
//! requests, an id missing or used twice, a method that is not one of
//! Graph's, a `dependsOn` naming no request of the batch or making a cycle)
//! is a 400 and runs nothing. What is wrong with one inner request (a URL
//! that is absolute, leaves the version, or names another batch or
//! presenced's own routes; a body that cannot be sent) is that request's
//! own 400, and the others run.
//!
//! Requests without `dependsOn` run concurrently; a request runs once every
//! request it depends on has been answered, and is answered 424 without
//! running when any of them failed (anything but a 2xx). The responses
//! come in the order of the requests (Graph allows any order; clients
//! match them by id).

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tower::ServiceExt;
use utoipa::ToSchema;

use crate::http::authenticate::Unthrottled;
use crate::http::error::{self, ApiError, RequestIds};
use crate::http::wire::{self, json_answer};
use crate::limits::Limits;

/// The most requests one batch may hold, as Graph allows.
pub const MAX_REQUESTS: usize = 20;

/// The largest batch body, in bytes (or `--max-body-bytes`, when that is
/// larger): twenty requests of the largest body each would not fit, and
/// need not; Graph's own bound is of this order.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The most headers one inner request may carry: far more than any SDK
/// sends, few enough that a batch cannot build a header map past its bound.
pub const MAX_INNER_HEADERS: usize = 64;

/// The largest inner response read back into a batch's answer: far more
/// than a 650-id read, so it bounds only what cannot happen.
const MAX_INNER_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// What the batch handler needs: the application its inner requests are
/// sent through (every route but the batches themselves, so that a batch
/// can never hold another one), and the bounds.
#[derive(Clone, Debug)]
pub struct Batches {
    pub inner: Router,
    pub limits: Limits,
}

/// The body of `POST /$batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchBody {
    /// The requests, at most 20, each with an id unique in the batch.
    #[schema(max_items = 20, min_items = 1)]
    pub requests: Option<Vec<BatchRequestJson>>,
}

impl crate::http::wire::RequestBody for BatchBody {}

/// One request of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequestJson {
    /// Unique in the batch; its response carries it.
    #[schema(min_length = 1)]
    pub id: Option<String>,
    /// GET, POST, PUT, PATCH or DELETE.
    #[schema(example = "POST")]
    pub method: Option<String>,
    /// Relative to the version: `/users/{id}/presence` or `users/{id}/presence`.
    #[schema(example = "/users/4a5b7f93-3b0c-4a9b-bb4f-3c2d1b5a6e7f/presence")]
    pub url: Option<String>,
    /// The request's headers; a request with a body needs `Content-Type: application/json`.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// The request's body: a JSON value, or a base64 string of one.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: Option<serde_json::Value>,
    /// Ids of requests of this batch that must succeed before this one runs.
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
}

/// The answer to a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponseCollection {
    /// One response per request.
    pub responses: Vec<BatchResponseJson>,
}

/// The answer to one request of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponseJson {
    pub id: String,
    /// The HTTP status the request was answered with.
    pub status: u16,
    /// Its response headers (Content-Type, Location, Retry-After, ...).
    #[schema(value_type = BTreeMap<String, String>)]
    pub headers: BTreeMap<String, String>,
    /// Its JSON body, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Box<RawValue>>,
}

/// One request of a batch, checked: what runs it, and what it waits for.
#[derive(Debug)]
struct Step {
    id: String,
    /// The request to send, or the 400 that answers it without sending.
    request: Result<Request, ApiError>,
    depends_on: Vec<usize>,
}

/// `POST /v1.0/$batch` and `POST /beta/$batch`.
pub async fn batch(
    State(batches): State<Batches>,
    caller: Unthrottled,
    request: Request,
) -> Result<Response, ApiError> {
    let version = if request.uri().path().starts_with("/beta") {
        "/beta"
    } else {
        "/v1.0"
    };
    let (parts, body) = request.into_parts();
    let limit = batches.limits.max_body_bytes.max(MAX_BATCH_BYTES);
    let planned = wire::read_json::<BatchBody>(
        &parts.headers,
        body,
        &batches.limits,
        limit,
        "send at most 20 requests, each with a small body",
    )
    .await
    .and_then(|body| plan(body, version, &parts.uri, &parts.headers, &parts.extensions));
    let steps = match planned {
        Ok(steps) => steps,
        // A batch refused whole runs no inner request to count, so it is
        // counted itself: a caller cannot have batches parsed without end.
        Err(refused) => {
            caller.charge().await?;
            return Err(refused);
        }
    };
    let answers = run(&batches.inner, steps).await;
    Ok(json_answer(
        &BatchResponseCollection { responses: answers },
        4096,
    ))
}

/// Plans a batch as `POST /v1.0/$batch` would, without running it: the
/// number of requests planned, or the 400 that refuses it whole (for the
/// fuzz targets, which hold each refusal to the SPEC's standards).
#[doc(hidden)]
pub fn check(body: BatchBody) -> Result<usize, ApiError> {
    plan(
        body,
        "/v1.0",
        &Uri::from_static("/v1.0/$batch"),
        &HeaderMap::new(),
        &axum::http::Extensions::new(),
    )
    .map(|steps| steps.len())
}

/// Checks the batch as a whole and builds each of its requests.
fn plan(
    body: BatchBody,
    version: &str,
    uri: &Uri,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<Vec<Step>, ApiError> {
    let requests = body.requests.ok_or_else(|| {
        ApiError::BadRequest(
            "The batch has no 'requests'; send {\"requests\": [...]} with 1 to 20 requests.".into(),
        )
    })?;
    if requests.is_empty() || requests.len() > MAX_REQUESTS {
        return Err(ApiError::BadRequest(format!(
            "The batch holds {} requests; a batch holds 1 to {MAX_REQUESTS}: send more batches.",
            requests.len()
        )));
    }
    let mut index: HashMap<String, usize> = HashMap::with_capacity(requests.len());
    for (position, inner) in requests.iter().enumerate() {
        let id = inner.id.as_deref().unwrap_or_default();
        if id.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "requests[{position}] has no 'id'; give every request of the batch an id of its own."
            )));
        }
        if index.insert(id.to_owned(), position).is_some() {
            return Err(ApiError::BadRequest(format!(
                "The id {:?} is used by more than one request of the batch; give each its own.",
                wire::truncate(id)
            )));
        }
    }
    let authorization = headers.get(header::AUTHORIZATION);
    // HTTP/2 sends the host as the URI's authority rather than a header.
    let host = headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });
    let peer = extensions.get::<ConnectInfo<std::net::SocketAddr>>();
    let mut steps = Vec::with_capacity(requests.len());
    for inner in requests {
        let id = inner.id.clone().unwrap_or_default();
        let method = method(&id, inner.method.as_deref())?;
        let mut depends_on = Vec::new();
        for needed in inner.depends_on.iter().flatten() {
            let Some(&position) = index.get(needed) else {
                return Err(ApiError::BadRequest(format!(
                    "Request {:?} depends on {:?}, which is not a request of this batch.",
                    wire::truncate(&id),
                    wire::truncate(needed)
                )));
            };
            depends_on.push(position);
        }
        let request = build(&inner, method, version, authorization, host.as_ref(), peer);
        steps.push(Step {
            id,
            request,
            depends_on,
        });
    }
    if let Some(id) = in_a_cycle(&steps) {
        return Err(ApiError::BadRequest(format!(
            "Request {:?} depends, through dependsOn, on itself; a batch's dependencies may not form a cycle.",
            wire::truncate(id)
        )));
    }
    Ok(steps)
}

fn method(id: &str, given: Option<&str>) -> Result<Method, ApiError> {
    let Some(given) = given else {
        return Err(ApiError::BadRequest(format!(
            "Request {:?} has no 'method'; give GET, POST, PUT, PATCH or DELETE.",
            wire::truncate(id)
        )));
    };
    match given.to_ascii_uppercase().as_str() {
        "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        _ => Err(ApiError::BadRequest(format!(
            "Request {:?} has the method {:?}; a batch's requests are GET, POST, PUT, PATCH or DELETE.",
            wire::truncate(id),
            wire::truncate(given)
        ))),
    }
}

/// The id of a request that depends on itself, through any chain of
/// `dependsOn`, if there is one.
fn in_a_cycle(steps: &[Step]) -> Option<&str> {
    // Depth-first, three colours: a request met again while its own
    // dependencies are being walked closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Walking,
        Done,
    }
    /// The request met again while being walked (one on the cycle), if any.
    fn walk(at: usize, steps: &[Step], marks: &mut [Mark]) -> Option<usize> {
        match marks[at] {
            Mark::Done => return None,
            Mark::Walking => return Some(at),
            Mark::New => {}
        }
        marks[at] = Mark::Walking;
        for &next in &steps[at].depends_on {
            if let Some(on_cycle) = walk(next, steps, marks) {
                return Some(on_cycle);
            }
        }
        marks[at] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; steps.len()];
    (0..steps.len())
        .find_map(|start| walk(start, steps, &mut marks))
        .map(|on_cycle| steps[on_cycle].id.as_str())
}

/// The HTTP request an inner request stands for, or the 400 that answers it.
fn build(
    inner: &BatchRequestJson,
    method: Method,
    version: &str,
    authorization: Option<&HeaderValue>,
    host: Option<&HeaderValue>,
    peer: Option<&ConnectInfo<std::net::SocketAddr>>,
) -> Result<Request, ApiError> {
    let uri = inner_uri(inner.url.as_deref().unwrap_or_default(), version)?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(inner_body(inner.body.as_ref())?))
        .map_err(|error| {
            ApiError::BadRequest(format!("The request could not be built: {error}."))
        })?;
    let given = inner.headers.as_ref().map_or(0, BTreeMap::len);
    if given > MAX_INNER_HEADERS {
        return Err(ApiError::BadRequest(format!(
            "The request has {given} headers; a request of a batch may have at most {MAX_INNER_HEADERS}."
        )));
    }
    let headers = request.headers_mut();
    for (name, value) in inner.headers.iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ApiError::BadRequest(format!(
                "The header name {:?} is not valid.",
                wire::truncate(name)
            ))
        })?;
        if IGNORED_HEADERS.contains(&name) {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            ApiError::BadRequest(format!(
                "The value of the header {name} is not valid: send printable text."
            ))
        })?;
        headers.append(name, value);
    }
    if let Some(authorization) = authorization {
        headers.insert(header::AUTHORIZATION, authorization.clone());
    }
    // The batch's host, so that what an inner answer says of itself
    // (`@odata.context`, `Location`, `@odata.nextLink`) names it.
    if let Some(host) = host {
        headers.insert(header::HOST, host.clone());
    }
    if let Some(peer) = peer {
        request.extensions_mut().insert(*peer);
    }
    Ok(request)
}

/// Headers of an inner request that are not passed on: the batch's own
/// token stands for every request of it, and the inner body is JSON in the
/// batch, neither encoded nor framed.
const IGNORED_HEADERS: [HeaderName; 6] = [
    header::AUTHORIZATION,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::HOST,
];

/// The path an inner URL names: relative to the batch's `version`, with or
/// without a leading slash (`/users/{id}/presence`, `users/{id}/presence`),
/// as Graph documents them; or naming its version (`/v1.0/users/...`), as
/// the JavaScript client's batch helper sends them; or absolute
/// (`https://host/v1.0/users/...`), as the Python SDK's does. Whatever the
/// host of an absolute URL, the request is served here: presenced never
/// forwards one. Never another batch, and never outside Graph's API.
fn inner_uri(url: &str, version: &str) -> Result<Uri, ApiError> {
    let hint =
        "give a URL relative to the version, such as /users/{id}/presence or users/{id}/presence";
    if url.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "The request has no 'url'; {hint}."
        )));
    }
    let absolute = ["http://", "https://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    });
    let target: String = if absolute {
        let parsed = url::Url::parse(url).map_err(|_| {
            ApiError::BadRequest(format!(
                "The URL {:?} is not a valid URL; {hint}.",
                wire::truncate(url)
            ))
        })?;
        let path = parsed.path();
        if !(path.starts_with("/v1.0/") || path.starts_with("/beta/")) {
            return Err(ApiError::BadRequest(format!(
                "The URL {:?} is absolute but names no version (/v1.0 or /beta); {hint}.",
                wire::truncate(url)
            )));
        }
        match parsed.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        }
    } else if url.starts_with("//") || url.contains("://") {
        return Err(ApiError::BadRequest(format!(
            "The URL {:?} is not relative to the version; {hint}.",
            wire::truncate(url)
        )));
    } else {
        url.to_owned()
    };
    let relative = target.strip_prefix('/').unwrap_or(&target);
    let (version, relative) = match relative.split_once('/') {
        Some(("v1.0", rest)) => ("/v1.0", rest),
        Some(("beta", rest)) => ("/beta", rest),
        _ => (version, relative),
    };
    let path = relative.split(['?', '#']).next().unwrap_or_default();
    let first = path.split('/').next().unwrap_or_default();
    if first.eq_ignore_ascii_case("$batch") || first.eq_ignore_ascii_case("%24batch") {
        return Err(ApiError::BadRequest(
            "A batch cannot hold another batch; send its requests in this one.".into(),
        ));
    }
    if first.starts_with("_presenced")
        || path
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
    {
        return Err(ApiError::BadRequest(format!(
            "The URL {:?} leaves Graph's API; a batch's requests are Graph's presence and subscription requests ({hint}).",
            wire::truncate(url)
        )));
    }
    format!("{version}/{relative}").parse::<Uri>().map_err(|_| {
        ApiError::BadRequest(format!(
            "The URL {:?} is not a valid URL; {hint}.",
            wire::truncate(url)
        ))
    })
}

/// The bytes of an inner body: a JSON value as it is written, or a string
/// holding the base64 of the body (as Graph takes bodies that are not JSON
/// objects, and as some SDKs send them all).
fn inner_body(body: Option<&serde_json::Value>) -> Result<Vec<u8>, ApiError> {
    match body {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(text)) => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| {
                ApiError::BadRequest(
                    "The request's body is a string that is not base64; send the body as a JSON object, or its bytes in base64.".into(),
                )
            }),
        Some(value) => serde_json::to_vec(value).map_err(|error| {
            ApiError::BadRequest(format!("The request's body cannot be sent: {error}."))
        }),
    }
}

/// Runs every step in rounds: each round sends, concurrently, every request
/// whose dependencies have all been answered, and answers 424 to those
/// whose dependencies did not all succeed. A round always finishes at
/// least one request (there is no cycle), so at most 20 rounds run.
async fn run(inner: &Router, steps: Vec<Step>) -> Vec<BatchResponseJson> {
    let count = steps.len();
    let mut answers: Vec<Option<BatchResponseJson>> = (0..count).map(|_| None).collect();
    let mut pending: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    while answers.iter().any(Option::is_none) {
        let mut round = Vec::new();
        for position in 0..count {
            let Some(step) = &pending[position] else {
                continue;
            };
            let needed: Option<Vec<u16>> = step
                .depends_on
                .iter()
                .map(|&other| answers[other].as_ref().map(|answer| answer.status))
                .collect();
            let Some(needed) = needed else {
                continue;
            };
            let step = pending[position].take().expect("a pending step");
            if let Some(failed) = needed.iter().find(|status| !(200..300).contains(*status)) {
                let refused = ApiError::FailedDependency(format!(
                    "Request {:?} was not run: a request it depends on was answered {failed}.",
                    wire::truncate(&step.id)
                ));
                answers[position] = Some(answer(step.id, refused.into_response()).await);
                continue;
            }
            round.push((position, step));
        }
        let sent = round.into_iter().map(|(position, step)| {
            let inner = inner.clone();
            async move {
                let response = match step.request {
                    Ok(request) => match inner.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    Err(refused) => refused.into_response(),
                };
                (position, answer(step.id, response).await)
            }
        });
        for (position, answer) in futures_util::future::join_all(sent).await {
            answers[position] = Some(answer);
        }
    }
    answers.into_iter().flatten().collect()
}

/// Headers of an inner response that are not repeated in the batch's
/// answer: the batch's own response frames the whole.
const DROPPED_HEADERS: [HeaderName; 4] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::DATE,
];

/// One inner response as the batch answers it. A response that did not
/// pass through the frame (a refusal made here) gets its envelope and ids
/// here.
async fn answer(id: String, response: Response) -> BatchResponseJson {
    let response = if response.headers().contains_key("request-id") {
        response
    } else {
        error::finish(response, &RequestIds::new(None))
    };
    let (parts, body) = response.into_parts();
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        if DROPPED_HEADERS.contains(name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), value.to_owned());
        }
    }
    let bytes = axum::body::to_bytes(body, MAX_INNER_RESPONSE_BYTES)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        None
    } else {
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(wire::is_json_media_type);
        if json {
            serde_json::from_slice::<Box<RawValue>>(&bytes).ok()
        } else {
            // Not JSON: its bytes in base64, as a JSON string.
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            serde_json::value::to_raw_value(&encoded).ok()
        }
    };
    BatchResponseJson {
        id,
        status: parts.status.as_u16(),
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(id: &str, depends_on: &[&str]) -> BatchRequestJson {
        BatchRequestJson {
            id: Some(id.into()),
            method: Some("GET".into()),
            url: Some("/users/a/presence".into()),
            headers: None,
            body: None,
            depends_on: Some(depends_on.iter().map(|id| id.to_string()).collect()),
        }
    }

    fn planned(requests: Vec<BatchRequestJson>) -> Result<Vec<Step>, ApiError> {
        plan(
            BatchBody {
                requests: Some(requests),
            },
            "/v1.0",
            &Uri::from_static("/v1.0/$batch"),
            &HeaderMap::new(),
            &axum::http::Extensions::new(),
        )
    }

    #[test]
    fn inner_urls_are_relative_to_the_version() {
        for (url, path) in [
            ("/users/a/presence", "/v1.0/users/a/presence"),
            ("users/a/presence", "/v1.0/users/a/presence"),
            ("me/presence?x=1", "/v1.0/me/presence?x=1"),
            ("/v1.0/users/a/presence", "/v1.0/users/a/presence"),
            ("/beta/users/a/presence", "/beta/users/a/presence"),
            (
                "https://graph.microsoft.com/v1.0/users/a/presence",
                "/v1.0/users/a/presence",
            ),
            (
                "HTTP://127.0.0.1:8080/beta/me/presence?x=1",
                "/beta/me/presence?x=1",
            ),
        ] {
            assert_eq!(inner_uri(url, "/v1.0").expect(url).to_string(), path);
        }
        for url in [
            "",
            "https://graph.microsoft.com/users/a/presence",
            "ftp://graph.microsoft.com/v1.0/users/a/presence",
            "//elsewhere/users",
            "/v1.0/$batch",
            "https://host/beta/_presenced/clock",
            "$batch",
            "/$batch",
            "_presenced/stream",
            "/_presenced/clock/advance",
            "../_presenced/clock",
            "users/../../metrics",
        ] {
            let refused = inner_uri(url, "/v1.0").expect_err(url);
            assert_eq!(refused.status(), 400, "{url}");
        }
    }

    #[test]
    fn a_batch_is_checked_whole_before_anything_runs() {
        assert!(planned((0..20).map(|n| inner(&n.to_string(), &[])).collect()).is_ok());
        let refusals = [
            (Vec::new(), "1 to 20"),
            (
                (0..21).map(|n| inner(&n.to_string(), &[])).collect(),
                "21 requests",
            ),
            (
                vec![inner("1", &[]), inner("1", &[])],
                "more than one request",
            ),
            (vec![inner("", &[])], "no 'id'"),
            (vec![inner("1", &["9"])], "not a request of this batch"),
            (vec![inner("1", &["1"])], "on itself"),
            (
                vec![inner("1", &["3"]), inner("2", &["1"]), inner("3", &["2"])],
                "cycle",
            ),
        ];
        for (requests, expected) in refusals {
            let error = planned(requests).expect_err(expected);
            assert_eq!(error.status(), 400);
            assert!(error.to_string().contains(expected), "{error}");
        }
        let mut crowded = inner("1", &[]);
        crowded.headers = Some((0..65).map(|n| (format!("x-{n}"), String::new())).collect());
        let steps = planned(vec![crowded]).expect("refused alone");
        let refused = steps[0].request.as_ref().expect_err("too many headers");
        assert!(refused.to_string().contains("at most 64"), "{refused}");
        let mut put = inner("1", &[]);
        put.method = Some("TRACE".into());
        assert!(
            planned(vec![put])
                .expect_err("TRACE")
                .to_string()
                .contains("TRACE")
        );
        let mut lower = inner("1", &[]);
        lower.method = Some("post".into());
        let steps = planned(vec![lower]).expect("a lower-case method");
        assert_eq!(
            steps[0].request.as_ref().expect("a request").method(),
            Method::POST
        );
    }

    #[test]
    fn bodies_are_json_values_or_base64() {
        assert_eq!(inner_body(None).expect("none"), b"");
        let object = serde_json::json!({"sessionId": "a"});
        assert_eq!(
            inner_body(Some(&object)).expect("an object"),
            br#"{"sessionId":"a"}"#
        );
        let encoded = serde_json::Value::String("eyJhIjoxfQ==".into());
        assert_eq!(inner_body(Some(&encoded)).expect("base64"), br#"{"a":1}"#);
        let text = serde_json::Value::String("not base64!".into());
        assert_eq!(inner_body(Some(&text)).expect_err("text").status(), 400);
    }
}
