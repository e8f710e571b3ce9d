//! Operational endpoints and request metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::connect_info::ConnectInfo;
use axum::http::Extensions;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::limits::{Refusal, Refusals};
use crate::state::AppState;

/// Graph's error envelope, for the OpenAPI document (`error.rs` writes it).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ODataError {
    error: ODataErrorBody,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ODataErrorBody {
    /// A stable machine code, as Graph spells its codes (`BadRequest`,
    /// `InvalidArgument`, `Forbidden`, `NotFound`, ...).
    code: String,
    /// What went wrong and what to send instead.
    message: String,
    inner_error: InnerError,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct InnerError {
    /// When the error happened (UTC, to the second).
    date: String,
    /// This request's id, also in the `request-id` header.
    #[serde(rename = "request-id")]
    request_id: String,
    /// The caller's `client-request-id`, or the request id.
    #[serde(rename = "client-request-id")]
    client_request_id: String,
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HealthJson {
    /// `ok` (the process answers) or `ready` (the store answers too).
    #[schema(schema_with = health_status)]
    status: &'static str,
}

fn health_status() -> utoipa::openapi::schema::Object {
    crate::wire::schema::one_of(["ok", "ready"], "ok from /healthz, ready from /readyz.")
}

pub async fn healthz() -> Json<HealthJson> {
    Json(HealthJson { status: "ok" })
}

/// Ready when the store answers a read (Redis a round trip), and not
/// stopping.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<HealthJson>, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::Unavailable(
            presence_store::StoreError::Unavailable(
                "presenced is stopping; send requests to another node".into(),
            ),
        ));
    }
    state.service.store()?.read(&[], &mut |_, _| {}).await?;
    if let Some(redis) = state.redis.get() {
        redis.ping().await?;
    }
    Ok(Json(HealthJson { status: "ready" }))
}

/// `/metrics` counts every tenant's users and sessions together, so when
/// tokens are required (tenants are separate) it is served only to clients
/// on the same machine, where a Prometheus agent or sidecar scrapes it;
/// no tenant's token can read another tenant's counts through it.
///
/// A reverse proxy on the same machine makes every client look local: put
/// `/metrics` behind the proxy's own access rule in that setup.
pub async fn metrics(State(state): State<AppState>, extensions: Extensions) -> Response {
    if let Err(refused) =
        local_only_with_tokens(&state, &extensions, "/metrics holds every tenant's counts")
    {
        return refused.into_response();
    }
    if let Ok(store) = state.service.store() {
        let counts = store.counts();
        metrics::gauge!("presenced_users").set(counts.users as f64);
        metrics::gauge!("presenced_sessions").set(counts.sessions as f64);
        metrics::gauge!("presenced_scheduler_pending_users").set(store.pending() as f64);
    } else {
        metrics::gauge!("presenced_users").set(0.0);
        metrics::gauge!("presenced_sessions").set(0.0);
        metrics::gauge!("presenced_scheduler_pending_users").set(0.0);
    }
    metrics::gauge!("presenced_render_cache_bytes").set(state.service.rendered_bytes() as f64);
    let body = state
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// With tokens (tenants kept apart), what spans every tenant is served only
/// to clients on the server's own machine.
pub fn local_only_with_tokens(
    state: &AppState,
    extensions: &Extensions,
    what: &str,
) -> Result<(), ApiError> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    if state.auth.requires_tokens() && !peer.is_some_and(|peer| peer.ip().is_loopback()) {
        return Err(ApiError::Forbidden(format!(
            "{what}; it is served only to clients on the server's own machine (loopback) when tokens are required."
        )));
    }
    Ok(())
}

pub async fn openapi(State(state): State<AppState>) -> Response {
    let mut response = state.openapi.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The request metrics of every route, registered once at start.
///
/// Building a metric's label set and looking it up in the registry costs
/// several allocations and a hash of every label; done per request, that was
/// a measurable share of a GET presence. Here each route's histogram and
/// its `200` counter are resolved once, and a request costs one map lookup
/// by its route template. Other statuses are rare and go through the
/// registry.
#[derive(Debug)]
pub struct RequestMetrics {
    /// By route template, then by method (a template has one or two).
    /// Hashed with foldhash: the keys are the routes' own templates, fixed
    /// at start, and SipHash took 400 instructions of every request.
    routes: HashMap<Box<str>, Vec<(Method, RouteMetrics)>, foldhash::fast::RandomState>,
    /// `presenced_refusals_total`, by kind.
    refusals: Refusals,
}

#[derive(Debug)]
struct RouteMetrics {
    duration: metrics::Histogram,
    ok: metrics::Counter,
}

impl RequestMetrics {
    pub fn register(served: &[(Method, String)]) -> RequestMetrics {
        let mut routes: HashMap<Box<str>, Vec<(Method, RouteMetrics)>, _> =
            HashMap::with_hasher(foldhash::fast::RandomState::default());
        for (method, route) in served {
            let handles = RouteMetrics {
                duration: request_duration(route, method_label(method)),
                ok: requests_total(route, method_label(method), "200"),
            };
            routes
                .entry(route.as_str().into())
                .or_default()
                .push((method.clone(), handles));
        }
        RequestMetrics {
            routes,
            refusals: Refusals::register(),
        }
    }

    /// Counts a response that refuses the request, by kind: the kind the
    /// error named (a quota, full streams), else the one its status stands
    /// for. Called before the error envelope is written, which keeps no
    /// extension.
    pub fn count_refusal(&self, response: &Response) {
        let refusal = response
            .extensions()
            .get::<Refusal>()
            .copied()
            .or_else(|| Refusal::of_status(response.status().as_u16()));
        if let Some(refusal) = refusal {
            self.refusals.count(refusal);
        }
    }

    fn route(&self, route: &str, method: &Method) -> Option<&RouteMetrics> {
        let methods = self.routes.get(route)?;
        methods
            .iter()
            .find(|(served, _)| served == method)
            .map(|(_, handles)| handles)
    }
}

/// A method as a metric label: any method outside HTTP's usual few is
/// `OTHER`, so that callers cannot make new series by inventing methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn request_duration(route: &str, method: &str) -> metrics::Histogram {
    metrics::histogram!("presenced_http_request_duration_seconds", "route" => route.to_owned(), "method" => method.to_owned())
}

fn requests_total(route: &str, method: &str, status: &str) -> metrics::Counter {
    metrics::counter!("presenced_http_requests_total", "route" => route.to_owned(), "method" => method.to_owned(), "status" => status.to_owned())
}

impl RequestMetrics {
    /// Counts a request by route template, method and status, and times it.
    /// Labels come only from small fixed sets: never a user id.
    pub fn record(&self, route: &str, method: &Method, status: StatusCode, elapsed: Duration) {
        let elapsed = elapsed.as_secs_f64();
        match self.route(route, method) {
            Some(handles) => {
                handles.duration.record(elapsed);
                if status == StatusCode::OK {
                    handles.ok.increment(1);
                } else {
                    requests_total(route, method_label(method), status.as_str()).increment(1);
                }
            }
            None => {
                // The fallback and axum's own 405s: a route template (or
                // "unmatched") with a method it does not serve.
                request_duration(route, method_label(method)).record(elapsed);
                requests_total(route, method_label(method), status.as_str()).increment(1);
            }
        }
    }
}
