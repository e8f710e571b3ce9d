//! One error type for every HTTP response that is not a success, rendered in
//! one place as Graph's OData error envelope:
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
//!
//! A handler returns an [`ApiError`]; its `IntoResponse` only records the
//! code and message in the response's extensions, and the request frame
//! (`frame.rs`, through [`finish`]) writes the body, because only it knows
//! the ids.
//! Responses that axum or tower produce on their own (405, 413, panics) get
//! the same envelope there.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use presence_store::StoreError;

use crate::limits::Refusal;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the JSON this endpoint takes.
    #[error("{0}")]
    BadRequest(String),
    /// A parameter has a value this endpoint does not accept.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// A body sent as something other than JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Beyond a throttling limit (429, with `Retry-After`).
    #[error("{}", .0.message())]
    TooManyRequests(crate::throttle::Throttled),
    /// A request of a batch not run because one it depends on failed.
    #[error("{0}")]
    FailedDependency(String),
    /// A write that would add a user to a tenant at `--max-users-per-tenant`.
    #[error("{0}")]
    QuotaLimitReached(String),
    /// The node holds `--max-streams` live streams.
    #[error("{0}")]
    TooManyStreams(String),
    /// A 400 under a code of Graph's own for the case, such as
    /// `ValidationError` for a failed subscription handshake.
    #[error("{1}")]
    Refused(&'static str, String),
    #[error(
        "The store is unavailable (presenced is starting or stopping, or cannot reach its disk or Redis). Retry later: a write answered so was not made, or is safe to make again."
    )]
    Unavailable(#[source] StoreError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidArgument(_) | ApiError::Refused(..) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::QuotaLimitReached(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::FailedDependency(_) => StatusCode::FAILED_DEPENDENCY,
            ApiError::Unavailable(_) | ApiError::TooManyStreams(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable machine code, as Graph spells its codes.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::InvalidArgument(_) => "InvalidArgument",
            ApiError::Unauthorized(_) => "InvalidAuthenticationToken",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "NotFound",
            ApiError::PayloadTooLarge(_) => "RequestEntityTooLarge",
            ApiError::RequestTimeout(_) => "RequestTimeout",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooManyRequests(_) => "TooManyRequests",
            ApiError::FailedDependency(_) => "FailedDependency",
            // Graph's own code for a tenant past a quota.
            ApiError::QuotaLimitReached(_) => "quotaLimitReached",
            ApiError::TooManyStreams(_) => "ServiceUnavailable",
            ApiError::Refused(code, _) => code,
            ApiError::Unavailable(_) => "ServiceUnavailable",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::Unavailable(error)
    }
}

/// Authentication's and authorization's refusals, as HTTP answers them.
impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> ApiError {
        use crate::auth::AuthError;
        match error {
            AuthError::BadRequest(message) => ApiError::BadRequest(message),
            AuthError::Unauthorized(message) => ApiError::Unauthorized(message),
            AuthError::Forbidden(message) => ApiError::Forbidden(message),
        }
    }
}

/// The service's domain errors, as HTTP answers them.
impl From<crate::service::ServiceError> for ApiError {
    fn from(error: crate::service::ServiceError) -> ApiError {
        use crate::service::ServiceError;
        match error {
            ServiceError::NotFound(message) => ApiError::NotFound(message),
            ServiceError::Refused(message) => ApiError::InvalidArgument(message),
            ServiceError::Unavailable(message) => {
                ApiError::Unavailable(StoreError::Unavailable(message))
            }
            ServiceError::Quota(message) => ApiError::QuotaLimitReached(message),
        }
    }
}

/// The code and message of an error response, waiting for the middleware to
/// add the request ids and write the body.
#[derive(Clone, Debug)]
pub struct ErrorReport {
    pub code: &'static str,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(cause) = &self {
            tracing::warn!(error = %cause, "answering 503");
        }
        let mut response = self.status().into_response();
        response.extensions_mut().insert(ErrorReport {
            code: self.code(),
            message: self.to_string(),
        });
        if matches!(self, ApiError::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // Graph's SDKs retry a 429 and a 503 by themselves after Retry-After.
        match &self {
            ApiError::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::TooManyRequests(throttled) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(throttled.retry_after),
                );
            }
            _ => {}
        }
        if matches!(self, ApiError::TooManyStreams(_)) {
            // Streams stay open for long: a retry a moment later would
            // likely find the node as full.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        if matches!(self, ApiError::RequestTimeout(_)) {
            // What is left of the body would be read as the next request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self {
            ApiError::QuotaLimitReached(_) => {
                response.extensions_mut().insert(Refusal::Quota);
            }
            ApiError::TooManyStreams(_) => {
                response.extensions_mut().insert(Refusal::StreamsFull);
            }
            _ => {}
        }
        response
    }
}

/// The ids of one request, sent back as headers and in every error body.
#[derive(Clone, Debug)]
pub struct RequestIds {
    pub request_id: HeaderValue,
    pub client_request_id: HeaderValue,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

/// Accepts a caller's `client-request-id` only if it is short printable
/// ASCII, so that echoing it can never inject anything.
pub fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = headers.get(&CLIENT_REQUEST_ID)?;
    let bytes = value.as_bytes();
    let acceptable =
        !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|byte| byte.is_ascii_graphic());
    acceptable.then(|| value.clone())
}

/// Gives a response its request ids and, if it is an error, its envelope.
pub fn finish(mut response: Response, ids: &RequestIds) -> Response {
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let report = response.extensions_mut().remove::<ErrorReport>();
        let report = report.unwrap_or_else(|| generic_report(status));
        response = render(status, response.headers().clone(), report, ids);
    }
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, ids.request_id.clone());
    headers.insert(CLIENT_REQUEST_ID, ids.client_request_id.clone());
    response
}

/// An envelope for a status that no handler explained (axum's own 405, a
/// panic caught by the catch-panic layer).
fn generic_report(status: StatusCode) -> ErrorReport {
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "MethodNotAllowed",
            "This endpoint does not accept that HTTP method; see /openapi.json for the methods it takes.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "RequestEntityTooLarge",
            "The request body is too large; send a smaller body.",
        ),
        StatusCode::NOT_FOUND => (
            "NotFound",
            "No such resource; see /openapi.json for the endpoints presenced serves.",
        ),
        status if status.is_server_error() => (
            "InternalServerError",
            "presenced failed to handle the request; the failure is logged with this request-id.",
        ),
        _ => ("BadRequest", "The request could not be handled."),
    };
    ErrorReport {
        code,
        message: message.to_owned(),
    }
}

fn render(
    status: StatusCode,
    headers: HeaderMap,
    report: ErrorReport,
    ids: &RequestIds,
) -> Response {
    let date = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let body = serde_json::json!({
        "error": {
            "code": report.code,
            "message": report.message,
            "innerError": {
                "date": date,
                "request-id": ids.request_id.to_str().unwrap_or_default(),
                "client-request-id": ids.client_request_id.to_str().unwrap_or_default(),
            }
        }
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let kept = [
        header::WWW_AUTHENTICATE,
        header::ALLOW,
        header::RETRY_AFTER,
        header::CONNECTION,
    ];
    for name in kept {
        if let Some(value) = headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // An envelope is JSON and nothing else, whatever the path looked like
    // (a 404 for `/_presenced/board/x.html` must not be sniffed as a page).
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
