//! Authentication as a layer: every route that serves a tenant's data
//! resolves its caller's [`Principal`] here, once, before anything else
//! about the request is looked at (the order of checks starts with 401),
//! and finds it in the request's extensions afterwards. Layers inside this
//! one (a throttle keyed on tenant and application) read it there too; the
//! `Principal` extractor takes it out for the handler.
//!
//! It wraps each method of each route that serves a tenant
//! (`MethodRouter::route_layer`, in `Api::route`), so that an unknown route
//! (404) or method (405) is answered without looking at the token, as
//! before, and the operational routes (`Api::open_route`) are not wrapped
//! at all.
//!
//! Written by hand, like `frame.rs`, rather than with `from_fn`: `from_fn`
//! clones and boxes the inner service and boxes a future on every request.
//! Here a request whose principal is known at once (`--auth none`, or a
//! token already verified: nearly every request) costs no allocation of its
//! own beyond the extension; only a token seen for the first time, which
//! must be verified (and may fetch a JWKS), takes a boxed future and a
//! clone of the inner service.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, Either, Ready, ready};
use tower::{Layer, Service};

use crate::auth::{Authenticator, Resolution};

/// Wraps a route in [`Authenticate`].
#[derive(Clone, Debug)]
pub struct AuthenticateLayer {
    auth: Arc<Authenticator>,
}

impl AuthenticateLayer {
    pub fn new(auth: Arc<Authenticator>) -> AuthenticateLayer {
        AuthenticateLayer { auth }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// Resolves the principal, refuses the request without one, and passes it
/// on in the request's extensions.
#[derive(Clone, Debug)]
pub struct Authenticate<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

/// The inner service's future when the principal was known at once, the
/// refusal, or the verification of a new token followed by the inner call.
type AuthenticateFuture<F> = Either<
    Either<F, Ready<Result<Response, Infallible>>>,
    BoxFuture<'static, Result<Response, Infallible>>,
>;

impl<S> Service<Request> for Authenticate<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AuthenticateFuture<S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let token = match self.auth.resolve(request.headers()) {
            Resolution::Done(Ok(principal)) => {
                request.extensions_mut().insert(principal);
                return Either::Left(Either::Left(self.inner.call(request)));
            }
            Resolution::Done(Err(refused)) => {
                return Either::Left(Either::Right(ready(Ok(
                    crate::http::error::ApiError::from(refused).into_response(),
                ))));
            }
            Resolution::Verify(token) => Box::<str>::from(token),
        };
        // The service that was made ready goes with the request; a clone
        // stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Either::Right(Box::pin(async move {
            match auth.verify(&token).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(refused) => Ok(crate::http::error::ApiError::from(refused).into_response()),
            }
        }))
    }
}

/// The principal that the authentication layer (`http/authenticate.rs`)
/// resolved for the request. It is taken out of the request's extensions,
/// not copied: the handler is the last to need it.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for crate::auth::Principal {
    type Rejection = crate::http::error::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<crate::auth::Principal, crate::http::error::ApiError> {
        parts
            .extensions
            .remove::<crate::auth::Principal>()
            .ok_or_else(|| {
                // A route registered as open (`Api::open_route`) whose handler
                // asks for a principal: refused, never served unauthenticated.
                tracing::error!(
                    path = parts.uri.path(),
                    "a handler asked for a principal on a route without authentication"
                );
                crate::http::error::ApiError::Unauthorized(
                "The request was not authenticated; this is presenced's fault, and it is logged."
                    .into(),
            )
            })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::middleware::Next;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::Principal;
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

    /// A layer after authentication, where a throttle would be: it answers
    /// with the tenant and application it finds in the extensions, in a
    /// header, or refuses if there is no principal.
    async fn throttle_probe(request: Request, next: Next) -> Response {
        let Some(principal) = request.extensions().get::<Principal>() else {
            return StatusCode::IM_A_TEAPOT.into_response();
        };
        let seen = format!(
            "{}/{}",
            principal.tenant.as_str(),
            principal.app_id().unwrap_or("-")
        );
        let mut response = next.run(request).await;
        let seen = HeaderValue::from_str(&seen).expect("a header value");
        response.headers_mut().insert("x-probe", seen);
        response
    }

    /// A route whose handler extracts the principal, as every Graph handler
    /// does, behind the probe and authentication, layered as `Api::route`
    /// does: innermost first.
    fn router(auth: Arc<Authenticator>) -> Router {
        async fn handler(principal: Principal) -> String {
            format!("{}", principal.tenant.as_str())
        }
        let method_router = get(handler)
            .route_layer(axum::middleware::from_fn(throttle_probe))
            .route_layer(AuthenticateLayer::new(auth));
        Router::new().route("/probe", method_router)
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
    async fn no_principal_no_inner_layer() {
        let router = router(hs256().await);
        for token in [None, Some("not.a.token"), Some("")] {
            let response = call(&router, "GET", "/probe", token).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(probe(&response), None, "the probe never ran: {token:?}");
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
