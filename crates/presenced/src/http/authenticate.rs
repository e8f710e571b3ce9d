//! Authentication: every request's caller is resolved once, by the frame
//! layer (`frame.rs`) around every route, before any layer inside it runs,
//! and put in the request's extensions: the [`Principal`], or the
//! [`Refusal`] that says why there is none. Layers inside the frame (a
//! throttle keyed on tenant and application) read the principal there; the
//! `Principal` extractor takes it out for the handler, or answers the
//! refusal (401, with `WWW-Authenticate: Bearer`).
//!
//! The refusal is answered by the extractor, not by the layer, so that an
//! unknown route (404), an unknown method (405) and the operational routes
//! (health, readiness, metrics, the OpenAPI document), which never ask for
//! a principal, are answered as if no token were needed; and a handler asks
//! for its principal before its body, so a refused request is answered
//! before its body is read.
//!
//! It lives in the frame rather than in a layer of its own on each route:
//! axum boxes a layered route once more and clones that box on every
//! request, which measured about 1,400 instructions per GET presence
//! (callgrind), 4% of the whole request. Resolving in the frame costs what
//! the extractor alone used to: a cached or open principal is found without
//! allocating, and only a token seen for the first time is verified inside
//! the frame's one boxed future.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::extract::connect_info::ConnectInfo;

use crate::auth::{AuthError, Authenticator, Principal, Resolution};
use crate::throttle::Throttle;

/// Why a request has no principal: answered by the `Principal` extractor
/// when (and only when) a handler asks for one.
#[derive(Clone, Debug)]
pub struct Refusal(pub AuthError);

/// Puts the request's principal (or its refusal) into its extensions when
/// it is known at once; returns the bearer token that must be verified
/// first otherwise (see [`verify_into`]).
pub fn attach(auth: &Authenticator, request: &mut Request) -> Option<Box<str>> {
    match auth.resolve(request.headers()) {
        Resolution::Done(Ok(principal)) => {
            request.extensions_mut().insert(principal);
            None
        }
        Resolution::Done(Err(refused)) => {
            request.extensions_mut().insert(Refusal(refused));
            None
        }
        Resolution::Verify(token) => Some(Box::from(token)),
    }
}

/// Verifies a token [`attach`] could not resolve at once, and puts the
/// principal (or the refusal) into the request's extensions.
pub async fn verify_into(auth: &Authenticator, token: &str, request: &mut Request) {
    match auth.verify(token).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
        }
        Err(refused) => {
            request.extensions_mut().insert(Refusal(refused));
        }
    }
}

/// The principal the frame resolved for the request, taken out of the
/// request's extensions (the handler is the last to need it), counted
/// against its throttling limits; or its refusal, counted against its
/// address's.
///
/// Here, because this is where the SPEC's order puts throttling: after the
/// token (401), before the body (413, 415, 400) and permissions (403); and
/// only requests to routes that need a caller are counted.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = crate::http::error::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Principal, crate::http::error::ApiError> {
        let throttle = parts.extensions.remove::<Arc<Throttle>>();
        if let Some(principal) = parts.extensions.remove::<Principal>() {
            if let Some(throttle) = throttle {
                throttle
                    .check(&principal)
                    .await
                    .map_err(crate::http::error::ApiError::TooManyRequests)?;
            }
            return Ok(principal);
        }
        if let Some(Refusal(refused)) = parts.extensions.remove::<Refusal>() {
            if let Some(throttle) = throttle {
                let address = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(peer)| peer.ip());
                throttle
                    .check_unauthenticated(address)
                    .await
                    .map_err(crate::http::error::ApiError::TooManyRequests)?;
            }
            return Err(refused.into());
        }
        // Only a request that bypassed the frame gets here: refused, never
        // served unauthenticated.
        tracing::error!(
            path = parts.uri.path(),
            "a handler asked for a principal on a request the frame did not authenticate"
        );
        Err(crate::http::error::ApiError::Unauthorized(
            "The request was not authenticated; this is presenced's fault, and it is logged."
                .into(),
        ))
    }
}

/// The principal, without counting the request against its throttling
/// limits: for `$batch`, which counts each of its inner requests instead
/// (`batch.rs`), and itself only when it is refused whole ([`charge`]).
/// A request without a principal is refused 401, and counted against its
/// address's limit, as any other.
///
/// [`charge`]: Unthrottled::charge
#[derive(Debug)]
pub struct Unthrottled {
    pub principal: Principal,
    throttle: Option<Arc<Throttle>>,
}

impl Unthrottled {
    /// Counts the request once against the principal's limits: 429 beyond
    /// them.
    pub async fn charge(&self) -> Result<(), crate::http::error::ApiError> {
        match &self.throttle {
            Some(throttle) => throttle
                .check(&self.principal)
                .await
                .map_err(crate::http::error::ApiError::TooManyRequests),
            None => Ok(()),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Unthrottled {
    type Rejection = crate::http::error::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Unthrottled, crate::http::error::ApiError> {
        if let Some(principal) = parts.extensions.remove::<Principal>() {
            let throttle = parts.extensions.remove::<Arc<Throttle>>();
            return Ok(Unthrottled {
                principal,
                throttle,
            });
        }
        // No principal: refused, and counted, as the extractor refuses.
        <Principal as axum::extract::FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|principal| Unthrottled {
                principal,
                throttle: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::middleware::Next;
    use axum::response::Response;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::token::{KeySource, MintRequest, Secret, Verifier};

    const SECRET: &str = "a shared secret of at least 32 bytes, for tests";

    async fn hs256() -> Arc<Authenticator> {
        let keys = KeySource::SharedSecret(Secret(SECRET.into()));
        let verifier = Verifier::new(&keys, None, None).await.expect("a verifier");
        Arc::new(Authenticator::tokens(verifier))
    }

    fn token(tenant: &str, app: &str) -> String {
        let request = MintRequest {
            tenant: tenant.into(),
            user: None,
            app: app.into(),
            scopes: Vec::new(),
            roles: vec!["Presence.Read.All".into()],
            ttl_seconds: 3600,
            issuer: None,
            audience: None,
            secret: Secret(SECRET.into()),
        };
        crate::token::mint(&request, jiff::Timestamp::now().as_second()).expect("a token")
    }

    /// A layer after authentication, where a throttle would be: it reports
    /// the tenant and application it finds in the extensions, in a header
    /// ("none" without a principal, where a throttle keys on the address).
    async fn throttle_probe(request: Request, next: Next) -> Response {
        let seen = match request.extensions().get::<Principal>() {
            Some(principal) => format!(
                "{}/{}",
                principal.tenant.as_str(),
                principal.app_id().unwrap_or("-")
            ),
            None => "none".to_string(),
        };
        let mut response = next.run(request).await;
        let seen = HeaderValue::from_str(&seen).expect("a header value");
        response.headers_mut().insert("x-probe", seen);
        response
    }

    /// A route whose handler extracts the principal, as every Graph handler
    /// does, behind the probe and the frame, layered as `http::app` does:
    /// the frame outermost.
    fn router(auth: Arc<Authenticator>) -> Router {
        async fn handler(principal: Principal) -> String {
            format!("{}", principal.tenant.as_str())
        }
        let served = [(axum::http::Method::GET, "/probe".to_string())];
        let frame = crate::http::frame::FrameLayer::new(
            crate::http::ops::RequestMetrics::register(&served),
            auth,
            Arc::new(crate::throttle::Throttle::new(Default::default())),
        );
        Router::new()
            .route(
                "/probe",
                get(handler).route_layer(axum::middleware::from_fn(throttle_probe)),
            )
            .layer(frame)
    }

    async fn call(router: &Router, method: &str, path: &str, token: Option<&str>) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        router
            .clone()
            .oneshot(request.body(Body::empty()).expect("a request"))
            .await
            .expect("infallible")
    }

    fn probe(response: &Response) -> Option<&str> {
        response.headers().get("x-probe")?.to_str().ok()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn a_layer_after_authentication_sees_the_tenant_and_application() {
        let router = router(hs256().await);
        let contoso = token("contoso", "contoso-app");
        // The first request verifies the token, the second finds it cached:
        // both paths pass the principal on.
        for _ in 0..2 {
            let response = call(&router, "GET", "/probe", Some(&contoso)).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(probe(&response), Some("contoso/contoso-app"));
            assert_eq!(body(response).await, "contoso", "the handler's principal");
        }
        let fabrikam = token("fabrikam", "fabrikam-app");
        let response = call(&router, "GET", "/probe", Some(&fabrikam)).await;
        assert_eq!(probe(&response), Some("fabrikam/fabrikam-app"));
    }

    #[tokio::test]
    async fn without_a_principal_the_handler_answers_401() {
        let router = router(hs256().await);
        for token in [None, Some("not.a.token"), Some("")] {
            let response = call(&router, "GET", "/probe", token).await;
            // The inner layer ran without a principal (a throttle keys on the
            // address then); the frame's envelope replaced its answer.
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(
                response.headers().get(header::WWW_AUTHENTICATE),
                Some(&HeaderValue::from_static("Bearer"))
            );
        }
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_are_answered_before_authentication() {
        let router = router(hs256().await);
        let response = call(&router, "GET", "/elsewhere", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = call(&router, "POST", "/probe", None).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn without_tokens_every_request_is_the_default_tenant() {
        let router = router(Arc::new(Authenticator::Open));
        let response = call(&router, "GET", "/probe", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(probe(&response), Some("default/-"));
    }
}
