//! The HTTP surface: Graph's presence endpoints under `/v1.0` and `/beta`,
//! presenced's own under `/_presenced`, and the operational ones.
//!
//! Every route is registered through [`Api::route`], which adds it to the
//! router and describes it in the OpenAPI document in the same call, so the
//! document cannot drift from what is served.
//!
//! Layout: one file per resource ([`presence`], [`actions`], [`legacy`],
//! [`extensions`], [`ops`]); [`wire`] holds Graph's JSON shapes; [`error`]
//! renders every failure as Graph's OData error envelope; [`frame`] and
//! [`authenticate`] (which the frame calls) are the layer.

pub mod actions;
pub mod authenticate;
pub mod batch;
pub mod board;
pub mod direct;
pub mod error;
pub mod extensions;
pub mod frame;
pub mod legacy;
pub mod openapi;
pub mod ops;
pub mod paging;
pub mod presence;
pub mod served;
pub mod strict;
pub mod subscriptions;
pub mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use utoipa::openapi::PathsBuilder;
use utoipa::openapi::path::{HttpMethod, PathItem};

use crate::http::error::ApiError;
use crate::http::openapi::{Answer, Doc, doc};
use crate::state::AppState;

struct Api {
    router: Router<AppState>,
    paths: PathsBuilder,
    /// Every (method, path template) served, for the request metrics.
    served: Vec<(axum::http::Method, String)>,
}

impl Api {
    /// A route. One that serves a tenant has a handler that asks for the
    /// `Principal` the frame resolved, and so answers 401 without one; the
    /// operational ones (health, readiness, metrics, the OpenAPI document)
    /// ask for none and need no token.
    fn route(
        mut self,
        method: HttpMethod,
        path: &str,
        handler: MethodRouter<AppState>,
        doc: Doc,
    ) -> Api {
        self.router = self.router.route(path, handler);
        self.describe(method, path, doc)
    }

    /// Adds a route to the OpenAPI document and to the routes served.
    fn describe(mut self, method: HttpMethod, path: &str, doc: Doc) -> Api {
        self.served.push((http_method(&method), path.to_owned()));
        let mut operation = openapi::operation(path, &doc);
        operation.operation_id = Some(operation_id(&method, path));
        self.paths = self.paths.path(path, PathItem::new(method, operation));
        self
    }
}

fn http_method(method: &HttpMethod) -> axum::http::Method {
    match method {
        HttpMethod::Get => axum::http::Method::GET,
        HttpMethod::Post => axum::http::Method::POST,
        HttpMethod::Put => axum::http::Method::PUT,
        HttpMethod::Delete => axum::http::Method::DELETE,
        HttpMethod::Patch => axum::http::Method::PATCH,
        HttpMethod::Head => axum::http::Method::HEAD,
        HttpMethod::Options => axum::http::Method::OPTIONS,
        HttpMethod::Trace => axum::http::Method::TRACE,
    }
}

fn operation_id(method: &HttpMethod, path: &str) -> String {
    let method = match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Delete => "delete",
        HttpMethod::Patch => "patch",
        _ => "other",
    };
    let path: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{method}{path}")
}

/// The three forms Graph's SDKs address one user's presence by.
const PRESENCE_BASES: [&str; 3] = [
    "/users/{id}/presence",
    "/me/presence",
    "/communications/presences/{id}",
];

fn graph_routes(mut api: Api, version: &str) -> Api {
    use HttpMethod::{Delete, Get, Post, Put};
    use actions::*;
    for base in PRESENCE_BASES {
        let path = |action: &str| format!("{version}{base}{action}");
        api = api
            .route(
                Get,
                &path(""),
                get(presence::get_presence),
                doc(
                    "Get a user's aggregated presence.",
                    None,
                    Answer::Json("PresenceJson"),
                ),
            )
            .route(
                Post,
                &path("/setPresence"),
                post(set_presence),
                doc(
                    "Create or refresh the calling application's presence session.",
                    Some("SetPresenceBody"),
                    Answer::Empty,
                ),
            )
            .route(
                Post,
                &path("/clearPresence"),
                post(clear_presence),
                doc(
                    "Delete the calling application's presence session (404 if it does not exist).",
                    Some("ClearPresenceBody"),
                    Answer::Empty,
                )
                .also(&[404]),
            )
            .route(
                Post,
                &path("/setUserPreferredPresence"),
                post(set_user_preferred_presence),
                doc(
                    "Set the user-preferred presence, which wins while any session exists.",
                    Some("SetUserPreferredPresenceBody"),
                    Answer::Empty,
                ),
            )
            .route(
                Post,
                &path("/clearUserPreferredPresence"),
                post(clear_user_preferred_presence),
                doc("Clear the user-preferred presence.", None, Answer::Empty),
            )
            .route(
                Post,
                &path("/setStatusMessage"),
                post(set_status_message),
                doc(
                    "Set or clear (null or empty content) the status message.",
                    Some("SetStatusMessageBody"),
                    Answer::Empty,
                ),
            )
            .route(
                Post,
                &path("/setManualLocation"),
                post(set_manual_location),
                doc(
                    "Set the manual work location (overrides automatic).",
                    Some("WorkLocationBody"),
                    Answer::Empty,
                ),
            )
            .route(
                Post,
                &path("/setAutomaticLocation"),
                post(set_automatic_location),
                doc(
                    "Set the automatic work location.",
                    Some("WorkLocationBody"),
                    Answer::Empty,
                ),
            )
            .route(
                Post,
                &path("/clearAutomaticLocation"),
                post(clear_automatic_location),
                doc("Clear the automatic work location.", None, Answer::Empty),
            )
            .route(
                Post,
                &path("/clearLocation"),
                post(clear_location),
                doc(
                    "Clear the manual and automatic work locations.",
                    None,
                    Answer::Empty,
                ),
            );
    }
    api = api.route(
        Post,
        &format!("{version}/communications/getPresencesByUserId"),
        post(presence::get_presences_by_user_id),
        doc(
            "Get the presence of up to 650 users; one entry per requested id.",
            Some("GetPresencesBody"),
            Answer::Json("PresenceCollection"),
        ),
    );
    use subscriptions::*;
    let one = format!("{version}/subscriptions/{{id}}");
    api = api
        .route(Post, &format!("{version}/subscriptions"), post(create_subscription), doc("Subscribe to presence changes: validates notificationUrl (and lifecycleNotificationUrl) with Graph's handshake, then answers 201 with the subscription.", Some("SubscriptionBody"), Answer::Created("SubscriptionJson")))
        .route(Get, &format!("{version}/subscriptions"), get(list_subscriptions), doc("The calling application's subscriptions in its tenant, a page at a time in the order of their ids (clientState withheld); @odata.nextLink leads to the next page.", None, Answer::Json("SubscriptionCollection")).queries(&[("$top", "Subscriptions per page, 1 to 1000 [default: 100]."), ("$skiptoken", "Where the page starts: as @odata.nextLink gives it.")]))
        .route(Get, &one, get(get_subscription), doc("One of the calling application's subscriptions.", None, Answer::Json("SubscriptionJson")).also(&[404]))
        .route(HttpMethod::Patch, &one, patch(update_subscription), doc("Renew (expirationDateTime) or move (notificationUrl, validated again) a subscription.", Some("SubscriptionUpdateBody"), Answer::Json("SubscriptionJson")).also(&[404]))
        .route(Delete, &one, delete(delete_subscription), doc("Delete a subscription.", None, Answer::NoContent).also(&[404]))
        .route(Post, &format!("{one}/reauthorize"), post(reauthorize_subscription), doc("Reauthorize a subscription after reauthorizationRequired.", None, Answer::NoContent).also(&[404]));
    if version == "/beta" {
        for path in [
            "/beta/users/{id}/presence/sessions/{sessionId}",
            "/beta/users/{id}/presence/{sessionId}",
        ] {
            api = api
                .route(Put, path, put(legacy::put_session), doc("Legacy: create or refresh a session that fades and ends at the third idle timeout.", Some("LegacySessionBody"), Answer::Empty))
                .route(Delete, path, delete(legacy::delete_session), doc("Legacy: delete a session (404 if it does not exist).", None, Answer::Empty).also(&[404]));
        }
    }
    api
}

/// The paths of Graph's JSON batching, which `app` serves outside the
/// router its inner requests are sent through.
const BATCH_PATHS: [&str; 2] = ["/v1.0/$batch", "/beta/$batch"];

fn routes() -> Api {
    use HttpMethod::{Get, Post, Put};
    let mut api = Api {
        router: Router::new(),
        paths: PathsBuilder::new(),
        served: Vec::new(),
    };
    api = graph_routes(api, "/v1.0");
    api = graph_routes(api, "/beta");
    for path in BATCH_PATHS {
        api = api.describe(
            Post,
            path,
            doc(
                "Graph's JSON batching: up to 20 requests, each authorized, throttled and answered as if sent alone; dependsOn orders them (424 when one they depend on failed). The body may be up to 1 MiB.",
                Some("BatchBody"),
                Answer::Json("BatchResponseCollection"),
            ),
        );
    }
    api.route(Get, "/_presenced/users", get(extensions::list_users), doc("The presence of every user the caller's tenant holds facts for (Offline ones included), a page at a time in the order of their ids; @odata.nextLink leads to the next page. Needs Presence.Read.All.", None, Answer::Json("PresenceCollection")).queries(&[("$top", "Users per page, 1 to 1000 [default: 1000]."), ("$skiptoken", "Where the page starts: as @odata.nextLink gives it.")]))
        .route(Get, "/_presenced/users/{id}/sessions", get(extensions::get_sessions), doc("The sessions behind a presence: each one's set state, current stage, next fade and expiry, and the rule that decided the aggregate.", None, Answer::Json("SessionsJson")))
        .route(Put, "/_presenced/users/{id}/outOfOffice", put(extensions::put_out_of_office), doc("Set outOfOfficeSettings, which Graph derives from a mailbox.", Some("OutOfOfficeBody"), Answer::Empty))
        .route(Get, "/_presenced/stream", get(subscriptions::stream), doc("Server-Sent Events: a `presence` event for every visible change of the users in ?ids=a,b (or of the whole tenant, with Presence.Read.All); Last-Event-ID resumes.", None, Answer::EventStream).queries(&[("ids", "Comma-separated user ids (at most 650); without it, the whole tenant.")]))
        .route(Get, "/_presenced/clock", get(extensions::get_clock), doc("The manual clock's now (only with --clock manual; with tokens, only from the server's own machine).", None, Answer::Json("ClockJson")).also(&[404]))
        .route(Post, "/_presenced/clock/advance", post(extensions::advance_clock), doc("Advance the manual clock, firing every fade and expiry that falls due, each at its instant.", Some("ClockAdvanceBody"), Answer::Json("ClockJson")).also(&[404]))
        .route(Get, "/_presenced/board", get(board::page), doc("The board: a live presence page for people. The page and its files load without a token; the data it shows is read through the API with one.", None, Answer::Board).open())
        .route(Get, "/_presenced/board/{asset}", get(board::asset), doc("One of the files the board loads.", None, Answer::BoardAsset).open().also(&[404]))
        .route(Get, "/healthz", get(ops::healthz), doc("Liveness: the process answers.", None, Answer::Json("HealthJson")).open())
        .route(Get, "/readyz", get(ops::readyz), doc("Readiness: the store answers.", None, Answer::Json("HealthJson")).open())
        .route(Get, "/metrics", get(ops::metrics), doc("Prometheus metrics (with tokens, only to clients on the server's own machine).", None, Answer::Metrics).open().also(&[403]))
        .route(Get, "/openapi.json", get(ops::openapi), doc("This document.", None, Answer::Document).open())
}

/// The OpenAPI document for every route [`app`] serves, as JSON.
pub fn openapi_document() -> serde_json::Value {
    openapi::document(routes().paths.build())
}

/// The whole application for a given state.
///
/// Outermost first, for the requests that need them ([`served`]): gzip for
/// answers a client accepts it for, CORS (only with `--cors-origin`, and
/// before everything else that refuses, so that a preflight is answered
/// without a token), gzip request bodies undone; then the router, whose routes have the frame (the caller's principal or
/// refusal into the request's extensions, ids, metrics, log line, error
/// envelope), catch-panic and the body limit. Unknown routes (404) and
/// methods (405) and the operational routes (health, readiness, metrics,
/// the OpenAPI document) never ask for the principal, so they are answered
/// without regard to the token.
///
/// The batch routes sit beside the router's other routes rather than among
/// them: their inner requests are sent through a router that holds every
/// route but the batches themselves, frame and all.
///
/// With `shared_clock` (nodes over Redis on the manual clock), every request
/// first reads the clock from Redis; without it, that layer is not there at
/// all (a `from_fn` layer boxes and clones the route on every request, about
/// two thousand instructions of a GET).
pub fn app(state: AppState, cors: &crate::cors::CorsOrigins, shared_clock: bool) -> served::Served {
    let api = routes();
    let request_metrics = ops::RequestMetrics::register(&api.served);
    let frame = frame::FrameLayer::new(request_metrics, state.auth.clone(), state.throttle.clone());
    let mut router = api.router.fallback(fallback);
    if shared_clock {
        router = router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extensions::follow_shared_clock,
        ));
    }
    let inner = router
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(frame.clone())
        .with_state(state.clone());
    let batches = batch::Batches {
        inner: inner.clone(),
        limits: state.limits,
    };
    let mut router = inner;
    for path in BATCH_PATHS {
        router = router.route(
            path,
            post(batch::batch)
                .with_state(batches.clone())
                .layer(tower_http::catch_panic::CatchPanicLayer::new())
                .layer(frame.clone()),
        );
    }
    // The direct route answers a GET of a presence and a setPresence as
    // the router would; not where the router's shared-clock layer must see
    // every request.
    let direct = (!shared_clock).then(|| direct::Direct::new(state.clone(), frame.metrics()));
    served::Served::new(router, cors, direct)
}

async fn fallback(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "No endpoint answers {method} {}; see /openapi.json for the endpoints presenced serves.",
        wire::truncate(uri.path())
    ))
}
