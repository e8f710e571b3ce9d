//! The request headers presenced reads itself: `Content-Type` (the 415
//! rule), `client-request-id` (echoed), `Last-Event-ID` (a stream's
//! resume point) and, under `--auth none`, the unverified token that makes
//! a request delegated.

use axum::extract::FromRequest;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use presence_store::Cursor;

use super::{block_on, check_refusal};
use crate::auth::{AuthError, Authenticator, Caller, Grants};
use crate::http::error::{ApiError, RequestIds, client_request_id, finish};
use crate::http::wire::{ClearPresenceBody, JsonBody};

/// The input's lines as, in turn, a `Content-Type`, a `client-request-id`,
/// a `Last-Event-ID` and an `Authorization` header (a line that is not a
/// valid header value is left out, as hyper would refuse it):
/// - a body is refused with 415 exactly when its type is not
///   `application/json` (any case, any parameters);
/// - a `client-request-id` is echoed only when it is short printable ASCII,
///   and then exactly, in the error envelope's JSON too;
/// - a `Last-Event-ID` that parses is a cursor whose text parses to it;
/// - under `--auth none` a request is always served as an application or a
///   user with every permission in tenant `default`, or refused with a 400
///   (an `oid` that is not a user id), never a 401 or 403.
pub fn headers(data: &[u8]) {
    let mut lines = data.split(|byte| *byte == b'\n');
    let mut next_value = || {
        lines
            .next()
            .and_then(|line| HeaderValue::from_bytes(line).ok())
    };
    let (content_type, request_id, last_event_id, authorization) =
        (next_value(), next_value(), next_value(), next_value());
    check_content_type(content_type);
    if let Some(value) = request_id {
        check_client_request_id(value);
    }
    if let Some(text) = last_event_id.as_ref().and_then(|value| value.to_str().ok()) {
        check_last_event_id(text);
    }
    let payload = data.rsplit(|byte| *byte == b'\n').next().unwrap_or(data);
    let development_token = format!(
        "Bearer e30.{}.c2lnbmF0dXJl",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
    );
    let development_token = HeaderValue::from_str(&development_token).ok();
    for value in [authorization, development_token].into_iter().flatten() {
        check_open_principal(value);
    }
}

fn check_content_type(value: Option<HeaderValue>) {
    let declared_json = value
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    let mut request = Request::builder().method("POST").uri("/");
    if let Some(value) = &value {
        request = request.header(header::CONTENT_TYPE, value);
    }
    let request = request
        .body(axum::body::Body::from("{}"))
        .expect("a request");
    let limits = crate::limits::Limits::default();
    match block_on(JsonBody::<ClearPresenceBody>::from_request(
        request, &limits,
    )) {
        Ok(_) => assert!(declared_json, "{value:?} was read as JSON"),
        Err(error) => {
            assert!(!declared_json, "{value:?} was refused: {error}");
            assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
            let declared = value
                .as_ref()
                .map(|value| String::from_utf8_lossy(value.as_bytes()));
            check_refusal(declared.as_deref().unwrap_or(""), &error.to_string());
        }
    }
}

fn check_client_request_id(value: HeaderValue) {
    let bytes = value.as_bytes();
    let acceptable =
        (1..=128).contains(&bytes.len()) && bytes.iter().all(|byte| byte.is_ascii_graphic());
    let mut headers = HeaderMap::new();
    headers.insert("client-request-id", value.clone());
    let echoed = client_request_id(&headers);
    assert_eq!(
        echoed.as_ref(),
        acceptable.then_some(&value),
        "client-request-id {value:?}"
    );
    let Some(echoed) = echoed else {
        return;
    };
    let ids = RequestIds {
        request_id: HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
        client_request_id: echoed,
    };
    let refused = ApiError::BadRequest("refused".into()).into_response();
    let response = finish(refused, &ids);
    assert_eq!(response.headers().get("client-request-id"), Some(&value));
    let body = block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .expect("an envelope is in memory");
    let envelope: serde_json::Value =
        serde_json::from_slice(&body).expect("the error envelope is JSON");
    assert_eq!(
        envelope["error"]["innerError"]["client-request-id"].as_str(),
        value.to_str().ok(),
        "client-request-id {value:?} in {envelope}"
    );
}

fn check_last_event_id(text: &str) {
    if let Some(cursor) = Cursor::parse(text) {
        let rendered = cursor.to_text();
        assert_eq!(
            Cursor::parse(&rendered).as_ref(),
            Some(&cursor),
            "Last-Event-ID {text:?} reads as {cursor:?}, written {rendered:?}"
        );
    }
}

fn check_open_principal(authorization: HeaderValue) {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, authorization.clone());
    match block_on(Authenticator::Open.principal(&headers)) {
        Ok(principal) => {
            assert_eq!(&*principal.tenant.as_str(), "default");
            assert_eq!(principal.grants, Grants::EVERYTHING);
            if let Caller::Delegated { user, .. } = &principal.caller {
                assert!(!user.as_str().is_empty());
            }
        }
        Err(AuthError::BadRequest(message)) => {
            check_refusal(&format!("{authorization:?}"), &message);
        }
        Err(other) => panic!("{authorization:?} under --auth none: {other:?}"),
    }
}
