//! The direct route: a GET of one user's presence, answered without the
//! router when nothing about it needs the router.
//!
//! A presence is read far more often than anything else is asked, and once
//! its JSON is kept (`wire/rendered.rs`) the read itself is a lookup. What
//! was left of a GET beside hyper's own work was the router's: matching the
//! path and decoding its parameters, the route's boxed and cloned service,
//! the request's extensions written by the frame and read back by the
//! extractors, the handler's future moved through four layers of futures
//! (callgrind: about 8,000 instructions of a GET's 36,000). Here a GET whose
//! path is one of the six presence routes, spelled as the router would
//! match it, whose token is already verified and whose caller may read the
//! user is answered by the same code the handler calls
//! ([`presence_answer`]), inside the same frame ([`frame::conclude`]): the
//! same bytes, headers, metrics, log line and error envelopes.
//!
//! Everything else goes to the router, which answers it as before: another
//! method, a query string, a path with a percent escape or an empty id, an
//! id the user id rules refuse, a missing, refused or not yet verified
//! token, a caller without the permission, `/me` with an application token.
//! Those are the requests whose answers differ (400, 401, 403) or that need
//! more than a lookup (a token's first verification), so the one place that
//! knows what to answer them stays the router. The integration test
//! `the_direct_route_answers_as_the_router_does` holds the two to the same
//! answers.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use presence_core::UserId;
use tower_http::catch_panic::{DefaultResponseForPanic, ResponseForPanic};

use crate::auth::{Access, Resolution};
use crate::http::error::{self, ApiError};
use crate::http::frame;
use crate::http::ops::RequestMetrics;
use crate::http::presence::{ServiceRoot, presence_answer};
use crate::state::AppState;

/// The direct route's answer: one boxed future, as the frame's.
pub type Answer =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

/// The presence routes, as the router registers them (`mod.rs`'s
/// `PRESENCE_BASES` under each version): the metrics record a direct answer
/// under the same route as a routed one.
const ROUTES: [[&str; 3]; 2] = [
    [
        "/v1.0/users/{id}/presence",
        "/v1.0/me/presence",
        "/v1.0/communications/presences/{id}",
    ],
    [
        "/beta/users/{id}/presence",
        "/beta/me/presence",
        "/beta/communications/presences/{id}",
    ],
];

/// Which presence route a path is, and its `{id}` as written.
#[derive(Debug, PartialEq, Eq)]
struct Target<'p> {
    route: &'static str,
    /// `None` for `/me`.
    id: Option<&'p str>,
}

/// The presence route `path` names, if it names one exactly as the router
/// matches it and its id needs no decoding: an id with a `%` is decoded by
/// the router, and an empty one matches no route.
fn target(path: &str) -> Option<Target<'_>> {
    let (routes, rest) = if let Some(rest) = path.strip_prefix("/v1.0") {
        (&ROUTES[0], rest)
    } else {
        (&ROUTES[1], path.strip_prefix("/beta")?)
    };
    if rest == "/me/presence" {
        return Some(Target {
            route: routes[1],
            id: None,
        });
    }
    let (route, id) = if let Some(users) = rest.strip_prefix("/users/") {
        (routes[0], users.strip_suffix("/presence")?)
    } else {
        (routes[2], rest.strip_prefix("/communications/presences/")?)
    };
    let plain = !id.is_empty() && !id.bytes().any(|byte| byte == b'/' || byte == b'%');
    plain.then_some(Target {
        route,
        id: Some(id),
    })
}

/// The direct route of one connection's service.
#[derive(Clone, Debug)]
pub struct Direct {
    state: AppState,
    metrics: Arc<RequestMetrics>,
    /// `presenced_http_direct_answers_total`: the requests answered here,
    /// of all those recorded under the presence routes.
    answered: metrics::Counter,
}

impl Direct {
    /// Records into `metrics`, the frame's.
    pub fn new(state: AppState, metrics: Arc<RequestMetrics>) -> Direct {
        Direct {
            state,
            metrics,
            answered: metrics::counter!("presenced_http_direct_answers_total"),
        }
    }

    /// The answer to `request` if it is a GET of a presence the direct route
    /// answers (see the module's documentation); `None` sends it to the
    /// router.
    pub fn answer<B>(&self, request: &Request<B>) -> Option<Answer> {
        if request.method() != Method::GET || request.uri().query().is_some() {
            return None;
        }
        let target = target(request.uri().path())?;
        let headers = request.headers();
        let Resolution::Done(Ok(principal)) = self.state.auth.resolve(headers) else {
            return None;
        };
        let user = match target.id {
            Some(id) => UserId::parse(id).ok()?,
            None => principal.me().ok()?.clone(),
        };
        principal.authorize(Access::Read, &user).ok()?;
        let started = Instant::now();
        self.answered.increment(1);
        let root = ServiceRoot::of(headers, request.uri(), self.state.scheme);
        let client_request_id = error::client_request_id(headers);
        let route = target.route;
        let state = self.state.clone();
        let metrics = self.metrics.clone();
        Some(Box::pin(async move {
            let answered = AssertUnwindSafe(async {
                // Counted as the `Principal` extractor counts a routed one.
                if state.throttle.is_on() {
                    state
                        .throttle
                        .check(&principal)
                        .await
                        .map_err(ApiError::TooManyRequests)?;
                }
                presence_answer(&state, &principal, user, root).await
            })
            .catch_unwind()
            .await;
            let response = match answered {
                Ok(Ok(response)) => response,
                Ok(Err(refused)) => refused.into_response(),
                // As the routes' catch-panic layer answers one.
                Err(panic) => DefaultResponseForPanic::default()
                    .response_for_panic(panic)
                    .map(axum::body::Body::new),
            };
            Ok(frame::conclude(
                &metrics,
                route,
                &Method::GET,
                response,
                started,
                client_request_id,
            ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_are_the_routers_presence_routes() {
        let served = super::super::routes().served;
        let mut presence_gets: Vec<&str> = served
            .iter()
            .filter(|(method, path)| {
                method == Method::GET
                    && (path.ends_with("/presence") || path.contains("/communications/presences/"))
            })
            .map(|(_, path)| path.as_str())
            .collect();
        presence_gets.sort_unstable();
        let mut direct: Vec<&str> = ROUTES.iter().flatten().copied().collect();
        direct.sort_unstable();
        assert_eq!(direct, presence_gets);
    }

    #[test]
    fn paths_are_matched_as_the_router_matches_them() {
        let id = |route, id| {
            Some(Target {
                route,
                id: Some(id),
            })
        };
        for (path, expected) in [
            (
                "/v1.0/users/alice/presence",
                id("/v1.0/users/{id}/presence", "alice"),
            ),
            (
                "/beta/users/alice/presence",
                id("/beta/users/{id}/presence", "alice"),
            ),
            (
                "/v1.0/me/presence",
                Some(Target {
                    route: "/v1.0/me/presence",
                    id: None,
                }),
            ),
            (
                "/beta/communications/presences/8d4a",
                id("/beta/communications/presences/{id}", "8d4a"),
            ),
            // The router's, each of them: decoded, empty, unmatched.
            ("/v1.0/users/al%20ice/presence", None),
            ("/v1.0/users//presence", None),
            ("/v1.0/users/a/b/presence", None),
            ("/v1.0/users/alice/presence/", None),
            ("/v1.0/users/alice/presence/setPresence", None),
            ("/v1.0/communications/presences/", None),
            ("/v1.0/communications/presences/a/b", None),
            ("/v1.0/me/presence/", None),
            ("/V1.0/me/presence", None),
            ("/v2.0/me/presence", None),
            ("/beta/users/alice/presence/sessions/x", None),
            ("/v1.0/users/alice", None),
            ("/", None),
            ("", None),
        ] {
            assert_eq!(target(path), expected, "{path}");
        }
    }
}
