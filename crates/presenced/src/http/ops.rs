//! Operational endpoints and request metrics.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::state::AppState;

/// Graph's error envelope, for the OpenAPI document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ODataError {
    error: ODataErrorBody,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ODataErrorBody {
    code: String,
    message: String,
    inner_error: InnerError,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct InnerError {
    date: String,
    #[serde(rename = "request-id")]
    request_id: String,
    #[serde(rename = "client-request-id")]
    client_request_id: String,
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers a read.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.read(&[], &mut |_, _| {}).await?;
    Ok(Json(json!({ "status": "ready" })))
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let counts = state.store.counts();
    metrics::gauge!("presenced_users").set(counts.users as f64);
    metrics::gauge!("presenced_sessions").set(counts.sessions as f64);
    metrics::gauge!("presenced_scheduler_pending_users").set(state.scheduler.len() as f64);
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

pub async fn openapi(State(state): State<AppState>) -> Response {
    let mut response = state.openapi.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Counts requests by route template, method and status, and times them.
/// Labels come only from small fixed sets: never a user id.
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let class = if status == StatusCode::OK {
        "200".to_owned()
    } else {
        status.as_u16().to_string()
    };
    metrics::counter!("presenced_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => class)
        .increment(1);
    metrics::histogram!("presenced_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
