//! The direct route: a GET of one user's presence, and a setPresence,
//! answered without the router when nothing about them needs the router.
//!
//! A presence is read far more often than anything else is asked, and once
//! its JSON is kept (`wire/rendered.rs`) the read itself is a lookup. What
//! was left of a GET beside hyper's own work was the router's: matching the
//! path and decoding its parameters, the route's boxed and cloned service,
//! the request's extensions written by the frame and read back by the
//! extractors, the handler's future moved through four layers of futures
//! (callgrind: about 8,000 instructions of a GET's 36,000, and as much of a
//! setPresence's 46,000). Here a GET or a setPresence whose path is one of
//! the presence routes, spelled as the router would match it, whose token
//! is already verified (and, for a GET, whose caller may read the user) is
//! answered by the same code the handlers call ([`presence_answer`],
//! [`set_presence_of`], the `JsonBody` extractor), in the same order,
//! inside the same frame ([`frame::conclude`]): the same bytes, headers,
//! metrics, log line and error envelopes.
//!
//! Everything else goes to the router, which answers it as before: another
//! method or action, a query string, a path with a percent escape or an
//! empty id, an id the user id rules refuse, a missing, refused or not yet
//! verified token, a reader without the permission, `/me` with an
//! application token. Those are the requests whose answers the path or the
//! token already decide (400, 401, 403) or that need more than a lookup (a
//! token's first verification), so the one place that knows what to answer
//! them stays the router. The integration tests
//! `the_direct_route_answers_as_the_router_does` and
//! `a_set_presence_is_answered_directly_as_the_router_answers_it` hold the
//! two to the same answers.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRequest;
use axum::http::Method;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use presence_core::UserId;
use tower_http::catch_panic::{DefaultResponseForPanic, ResponseForPanic};

use crate::auth::{Access, Principal, Resolution};
use crate::http::actions::set_presence_of;
use crate::http::error::{self, ApiError};
use crate::http::frame;
use crate::http::ops::RequestMetrics;
use crate::http::presence::{ServiceRoot, presence_answer};
use crate::http::wire::{JsonBody, SetPresenceBody};
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

/// The setPresence routes, in the order of [`ROUTES`].
const SET_PRESENCE_ROUTES: [[&str; 3]; 2] = [
    [
        "/v1.0/users/{id}/presence/setPresence",
        "/v1.0/me/presence/setPresence",
        "/v1.0/communications/presences/{id}/setPresence",
    ],
    [
        "/beta/users/{id}/presence/setPresence",
        "/beta/me/presence/setPresence",
        "/beta/communications/presences/{id}/setPresence",
    ],
];

/// What a direct request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// GET the presence.
    Read,
    /// POST setPresence.
    SetPresence,
}

impl Action {
    /// The method the router serves the action's route for.
    fn method(self) -> Method {
        match self {
            Action::Read => Method::GET,
            Action::SetPresence => Method::POST,
        }
    }
}

/// Which presence route a path is, and its `{id}` as written.
#[derive(Debug, PartialEq, Eq)]
struct Target<'p> {
    route: &'static str,
    action: Action,
    /// `None` for `/me`.
    id: Option<&'p str>,
}

/// The presence route `path` names, if it names one exactly as the router
/// matches it and its id needs no decoding: an id with a `%` is decoded by
/// the router, and an empty one matches no route.
fn target(path: &str) -> Option<Target<'_>> {
    let (version, rest) = if let Some(rest) = path.strip_prefix("/v1.0") {
        (0, rest)
    } else {
        (1, path.strip_prefix("/beta")?)
    };
    let (action, rest) = match rest.strip_suffix("/setPresence") {
        Some(rest) => (Action::SetPresence, rest),
        None => (Action::Read, rest),
    };
    let routes = match action {
        Action::Read => &ROUTES[version],
        Action::SetPresence => &SET_PRESENCE_ROUTES[version],
    };
    if rest == "/me/presence" {
        return Some(Target {
            route: routes[1],
            action,
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
        action,
        id: Some(id),
    })
}

/// A request the direct route answers: its route and action, its caller
/// and the user its path names.
#[derive(Debug)]
pub struct Admitted {
    route: &'static str,
    action: Action,
    principal: Principal,
    user: UserId,
}

/// What the frame needs to conclude a direct answer.
struct Framing {
    state: AppState,
    metrics: Arc<RequestMetrics>,
    route: &'static str,
    started: Instant,
    client_request_id: Option<axum::http::HeaderValue>,
}

impl Framing {
    /// `work`, throttled first as the `Principal` extractor throttles a
    /// routed request, its panic answered as the routes' catch-panic layer
    /// answers one, and concluded as the frame concludes every answer.
    fn answer<W, F>(self, action: Action, principal: Principal, work: W) -> Answer
    where
        W: FnOnce(AppState, Principal) -> F + Send + 'static,
        F: std::future::Future<Output = Result<Response, ApiError>> + Send,
    {
        let Framing {
            state,
            metrics,
            route,
            started,
            client_request_id,
        } = self;
        Box::pin(async move {
            let answered = AssertUnwindSafe(async move {
                if state.throttle.is_on() {
                    state
                        .throttle
                        .check(&principal)
                        .await
                        .map_err(ApiError::TooManyRequests)?;
                }
                work(state, principal).await
            })
            .catch_unwind()
            .await;
            let response = match answered {
                Ok(Ok(response)) => response,
                Ok(Err(refused)) => refused.into_response(),
                Err(panic) => DefaultResponseForPanic::default()
                    .response_for_panic(panic)
                    .map(axum::body::Body::new),
            };
            Ok(frame::conclude(
                &metrics,
                route,
                &action.method(),
                response,
                started,
                client_request_id,
            ))
        })
    }
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

    /// The answer to `request`, which [`Direct::admit`] admitted.
    pub fn answer<B>(&self, admitted: Admitted, request: Request<B>) -> Answer
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let Admitted {
            route,
            action,
            principal,
            user,
        } = admitted;
        let started = Instant::now();
        self.answered.increment(1);
        let headers = request.headers();
        let client_request_id = error::client_request_id(headers);
        let framing = Framing {
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            route,
            started,
            client_request_id,
        };
        // Each action's future is boxed on its own: a read's stays as small
        // as a read needs. A read is done with its request (its body
        // unread, as the handler leaves it); a write keeps it for its body.
        match action {
            Action::Read => {
                let root = ServiceRoot::of(headers, request.uri(), self.state.scheme);
                framing.answer(action, principal, move |state, principal| async move {
                    presence_answer(&state, &principal, user, root).await
                })
            }
            Action::SetPresence => {
                let request = request.map(axum::body::Body::new);
                framing.answer(action, principal, move |state, principal| async move {
                    let JsonBody(body) =
                        JsonBody::<SetPresenceBody>::from_request(request, &state).await?;
                    set_presence_of(&state, &principal, Ok(user), body)
                        .await
                        .map(IntoResponse::into_response)
                })
            }
        }
    }

    /// What the direct route needs to answer `request`, if it answers it
    /// (see the module's documentation); `None` sends it to the router.
    pub fn admit<B>(&self, request: &Request<B>) -> Option<Admitted> {
        if request.uri().query().is_some() {
            return None;
        }
        let target = target(request.uri().path())?;
        if request.method() != target.action.method() {
            return None;
        }
        let Resolution::Done(Ok(principal)) = self.state.auth.resolve(request.headers()) else {
            return None;
        };
        let user = match target.id {
            Some(id) => UserId::parse(id).ok()?,
            None => principal.me().ok()?.clone(),
        };
        // A write is authorized after its body is read, as the handler
        // does: its body's faults come first.
        if target.action == Action::Read {
            principal.authorize(Access::Read, &user).ok()?;
        }
        Some(Admitted {
            route: target.route,
            action: target.action,
            principal,
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_are_the_routers_presence_reads_and_set_presence() {
        let served = super::super::routes().served;
        let mut routed: Vec<(Method, &str)> = served
            .iter()
            .filter(|(method, path)| {
                let read = method == Method::GET
                    && (path.ends_with("/presence") || path.contains("/communications/presences/"));
                let set = method == Method::POST && path.ends_with("/setPresence");
                read || set
            })
            .map(|(method, path)| (method.clone(), path.as_str()))
            .collect();
        routed.sort_unstable_by_key(|(method, path)| (method.to_string(), *path));
        let mut direct: Vec<(Method, &str)> = ROUTES
            .iter()
            .flatten()
            .map(|route| (Method::GET, *route))
            .chain(
                SET_PRESENCE_ROUTES
                    .iter()
                    .flatten()
                    .map(|route| (Method::POST, *route)),
            )
            .collect();
        direct.sort_unstable_by_key(|(method, path)| (method.to_string(), *path));
        assert_eq!(direct, routed);
    }

    #[test]
    fn paths_are_matched_as_the_router_matches_them() {
        let read = |route, id| {
            Some(Target {
                route,
                action: Action::Read,
                id,
            })
        };
        let set = |route, id| {
            Some(Target {
                route,
                action: Action::SetPresence,
                id,
            })
        };
        for (path, expected) in [
            (
                "/v1.0/users/alice/presence",
                read("/v1.0/users/{id}/presence", Some("alice")),
            ),
            (
                "/beta/users/alice/presence",
                read("/beta/users/{id}/presence", Some("alice")),
            ),
            ("/v1.0/me/presence", read("/v1.0/me/presence", None)),
            (
                "/beta/communications/presences/8d4a",
                read("/beta/communications/presences/{id}", Some("8d4a")),
            ),
            (
                "/v1.0/users/alice/presence/setPresence",
                set("/v1.0/users/{id}/presence/setPresence", Some("alice")),
            ),
            (
                "/beta/me/presence/setPresence",
                set("/beta/me/presence/setPresence", None),
            ),
            (
                "/v1.0/communications/presences/8d4a/setPresence",
                set(
                    "/v1.0/communications/presences/{id}/setPresence",
                    Some("8d4a"),
                ),
            ),
            // The router's, each of them: decoded, empty, unmatched, other
            // actions.
            ("/v1.0/users/al%20ice/presence", None),
            ("/v1.0/users//presence", None),
            ("/v1.0/users/a/b/presence", None),
            ("/v1.0/users/alice/presence/", None),
            ("/v1.0/users/alice/presence/clearPresence", None),
            ("/v1.0/users/alice/presence/setpresence", None),
            ("/v1.0/users/alice/presence/setPresence/", None),
            ("/v1.0/users//presence/setPresence", None),
            ("/v1.0/communications/presences/setPresence", None),
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
