//! The frame around every request: its caller (`authenticate.rs`), its
//! ids, its metrics, its log line, and Graph's error envelope on every
//! error response.
//!
//! One hand-written tower layer instead of a `from_fn` middleware per
//! concern (and tower-http's trace layer): `from_fn` clones and boxes the
//! whole inner service stack on every request, and three of them stacked
//! were a measurable share of what a GET presence costs. Here a request
//! costs one boxed future and a few header inserts.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use tower::{Layer, Service};

use crate::auth::Authenticator;
use crate::http::authenticate;
use crate::http::error::{self, RequestIds};
use crate::http::ops::RequestMetrics;
use crate::throttle::Throttle;

/// Wraps every route (and the fallback) in a [`Frame`].
#[derive(Clone, Debug)]
pub struct FrameLayer {
    metrics: Arc<RequestMetrics>,
    auth: Arc<Authenticator>,
    throttle: Option<Arc<Throttle>>,
}

impl FrameLayer {
    /// The request metrics the frame records into.
    pub fn metrics(&self) -> Arc<RequestMetrics> {
        self.metrics.clone()
    }

    /// `throttle` is passed on to the `Principal` extractor (in the
    /// request's extensions) when any of its limits is on.
    pub fn new(
        metrics: RequestMetrics,
        auth: Arc<Authenticator>,
        throttle: Arc<Throttle>,
    ) -> FrameLayer {
        FrameLayer {
            metrics: Arc::new(metrics),
            auth,
            throttle: throttle.is_on().then_some(throttle),
        }
    }
}

impl<S> Layer<S> for FrameLayer {
    type Service = Frame<S>;

    fn layer(&self, inner: S) -> Frame<S> {
        Frame {
            inner,
            metrics: self.metrics.clone(),
            auth: self.auth.clone(),
            throttle: self.throttle.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Frame<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
    auth: Arc<Authenticator>,
    throttle: Option<Arc<Throttle>>,
}

impl<S> Service<Request> for Frame<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let client_request_id = error::client_request_id(request.headers());
        // The route is known here because the layer sits inside the router.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        let metrics = self.metrics.clone();
        if let Some(throttle) = &self.throttle {
            request.extensions_mut().insert(throttle.clone());
        }
        let answer = match authenticate::attach(&self.auth, &mut request) {
            None => futures_util::future::Either::Left(self.inner.call(request)),
            Some(token) => {
                // A token seen for the first time is verified before the
                // inner service is called: the service that was made ready
                // goes with the request, and a clone stays for the next.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let auth = self.auth.clone();
                // Boxed on its own: this rare path's future holds the request
                // and a whole inner service, and inline it would make every
                // request's future (and what it copies) that much larger.
                let verified: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                    authenticate::verify_into(&auth, &token, &mut request).await;
                    inner.call(request).await
                });
                futures_util::future::Either::Right(verified)
            }
        };
        Box::pin(async move {
            let Ok(response) = answer.await;
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            Ok(conclude(
                &metrics,
                route,
                &method,
                response,
                started,
                client_request_id,
            ))
        })
    }
}

/// What the frame does with every answer, on the router's routes and the
/// direct route (`direct.rs`) alike: counts a refusal, gives the answer its
/// request ids (and an error its envelope), logs it and records it under
/// its route.
pub fn conclude(
    metrics: &RequestMetrics,
    route: &str,
    method: &Method,
    response: Response,
    started: Instant,
    client_request_id: Option<HeaderValue>,
) -> Response {
    metrics.count_refusal(&response);
    let ids = RequestIds::new(client_request_id);
    let response = error::finish(response, &ids);
    let elapsed = started.elapsed();
    log(method, route, &response, elapsed, &ids);
    metrics.record(route, method, response.status(), elapsed);
    response
}

/// One line per request at debug level (cheap when filtered out), and an
/// error for every 5xx but 503, which is always a bug. A 503 (the store
/// loading, or unable to save) is expected while it lasts and is logged
/// where its cause is known.
fn log(
    method: &Method,
    route: &str,
    response: &Response,
    elapsed: std::time::Duration,
    ids: &RequestIds,
) {
    let status = response.status();
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() && status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(%method, route, status = status.as_u16(), elapsed_ms, request_id = ids.request_id.to_str().unwrap_or_default(), "request failed");
    } else {
        tracing::debug!(%method, route, status = status.as_u16(), elapsed_ms, request_id = ids.request_id.to_str().unwrap_or_default(), "request");
    }
}

impl RequestIds {
    /// A new `request-id`; the caller's `client-request-id` if it sent an
    /// acceptable one, else the request id again (as Graph does).
    pub fn new(client_request_id: Option<HeaderValue>) -> RequestIds {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let request_id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        let request_id =
            HeaderValue::from_str(request_id).expect("a hyphenated UUID is a valid header value");
        RequestIds {
            client_request_id: client_request_id.unwrap_or_else(|| request_id.clone()),
            request_id,
        }
    }
}
