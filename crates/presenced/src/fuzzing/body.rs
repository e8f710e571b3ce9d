//! JSON request bodies: the `JsonBody` extractor and `parse_json`, for
//! every body type, and the validating functions each body's fields go
//! through.

use axum::extract::FromRequest;
use axum::http::{Request, StatusCode, header};
use presence_core::{Activity, Availability, SessionState};

use super::{block_on, check_refusal};
use crate::http::actions::{session_id, session_state};
use crate::http::error::ApiError;
use crate::http::subscriptions::SubscriptionBody;
use crate::http::wire::{
    self, ClearPresenceBody, ClockAdvanceBody, GetPresencesBody, JsonBody, LegacySessionBody,
    OutOfOfficeBody, RequestBody, SetPresenceBody, SetStatusMessageBody,
    SetUserPreferredPresenceBody, WorkLocationBody, parse_json,
};
use crate::notify::crypto::EncryptionCertificate;
use crate::notify::subscription::parse_resource;
use crate::wire_time::{parse_date_time_time_zone, parse_duration, parse_instant};

/// The input as the body of every action that takes one: the extractor
/// accepts only a JSON object (or an empty body) and refuses everything
/// else with a 400 that says what is wrong; on an object it agrees with
/// `parse_json`; and each field that a handler validates is either
/// accepted or refused with a 400 and a bounded message.
pub fn json_body(data: &[u8]) {
    check_body(data, |body: crate::http::batch::BatchBody| {
        // A batch is planned whole (every inner request built, dependsOn
        // checked for cycles) or refused with a 400 and a bounded message.
        let text = String::from_utf8_lossy(data);
        check(&text, crate::http::batch::check(body));
    });
    check_body(data, |body: SetPresenceBody| {
        if let Some(id) = &body.session_id {
            check(id, session_id(id));
        }
        check_pair(
            &body.availability,
            &body.activity,
            SessionState::SET_PRESENCE,
        );
        check_duration(&body.expiration_duration);
    });
    check_body(data, |body: ClearPresenceBody| {
        if let Some(id) = &body.session_id {
            check(id, session_id(id));
        }
    });
    check_body(data, |body: SetUserPreferredPresenceBody| {
        check_pair(&body.availability, &body.activity, &[]);
        check_duration(&body.expiration_duration);
    });
    check_body(data, |body: LegacySessionBody| {
        check_pair(&body.availability, &body.activity, SessionState::LEGACY);
    });
    check_body(data, |body: SetStatusMessageBody| {
        let expiry = body
            .status_message
            .flatten()
            .and_then(|status| status.expiry_date_time);
        if let Some(date_time) = expiry.as_ref().and_then(|expiry| expiry.date_time.as_ref()) {
            let time_zone = expiry
                .as_ref()
                .and_then(|expiry| expiry.time_zone.as_deref());
            let parsed = parse_date_time_time_zone("expiryDateTime", date_time, time_zone);
            check(date_time, parsed.map_err(ApiError::InvalidArgument));
        }
    });
    check_body(data, |body: WorkLocationBody| {
        let shown = format!("{body:?}");
        check(&shown, body.into_location());
    });
    // getPresencesByUserId's own reader of GUID bodies reads what serde does.
    wire::check_read_guids(data);
    check_body(data, |body: GetPresencesBody| {
        if let Some(fault) = body.ids.and_then(|ids| ids.fault) {
            check("an id of getPresencesByUserId", Err::<(), _>(fault));
        }
    });
    check_body(data, |_: OutOfOfficeBody| {});
    check_body(data, |body: ClockAdvanceBody| check_duration(&body.by));
    check_body(data, |body: SubscriptionBody| {
        if let Some(resource) = &body.resource {
            let parsed = parse_resource(resource).map_err(ApiError::BadRequest);
            check(resource, parsed);
        }
        if let Some(text) = &body.expiration_date_time {
            let parsed = parse_instant("expirationDateTime", text);
            check(text, parsed.map_err(ApiError::BadRequest));
        }
        if let (Some(certificate), Some(id)) = (
            &body.encryption_certificate,
            &body.encryption_certificate_id,
        ) {
            let parsed = EncryptionCertificate::parse(certificate, id);
            check(certificate, parsed.map_err(ApiError::BadRequest));
        }
    });
}

/// Runs `data` through the extractor and `parse_json` as a `T`, checks
/// both, and hands an extracted body to `validate`.
fn check_body<T: RequestBody>(data: &[u8], validate: impl FnOnce(T)) {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_json::<T>(data);
    if let Err(error) = &parsed {
        assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{text:?}: {error}");
        assert!(!error.to_string().is_empty(), "{text:?}: no message");
    }
    let first = data.iter().find(|byte| !byte.is_ascii_whitespace());
    let extracted = extract::<T>(data);
    if first == Some(&b'{') {
        assert_eq!(
            extracted.is_ok(),
            parsed.is_ok(),
            "{text:?}: the extractor and parse_json disagree"
        );
    }
    match extracted {
        Ok(body) => {
            assert!(
                matches!(first, None | Some(b'{')),
                "{text:?} is not a JSON object, but the extractor accepted it"
            );
            validate(body);
        }
        Err(error) => {
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{text:?}: {error}");
            assert!(!error.to_string().is_empty(), "{text:?}: no message");
            assert!(first.is_some(), "an empty body reads as {{}}, but: {error}");
        }
    }
}

/// `data` through [`JsonBody`], as a request declared JSON.
fn extract<T: RequestBody>(data: &[u8]) -> Result<T, ApiError> {
    let request = Request::builder()
        .method("POST")
        .uri("/")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(axum::body::Body::from(data.to_vec()))
        .expect("a request");
    let limits = crate::limits::Limits::default();
    block_on(JsonBody::<T>::from_request(request, &limits)).map(|JsonBody(body)| body)
}

/// A validation's outcome: a value, or a 400 with a bounded message.
fn check<T>(input: &str, outcome: Result<T, ApiError>) {
    if let Err(error) = outcome {
        assert_eq!(
            error.status(),
            StatusCode::BAD_REQUEST,
            "{input:?}: {error}"
        );
        check_refusal(input, &error.to_string());
    }
}

/// An availability and activity: each parses regardless of case to the
/// value whose canonical spelling it is, and a pair is looked up among
/// `allowed` (when any are given).
fn check_pair(availability: &Option<String>, activity: &Option<String>, allowed: &[SessionState]) {
    if let Some(text) = availability {
        let parsed = wire::availability("availability", text);
        if let Ok(value) = &parsed {
            assert!(value.as_str().eq_ignore_ascii_case(text));
            assert_eq!(Availability::parse(value.as_str()), Some(*value));
        }
        check(text, parsed);
    }
    if let Some(text) = activity {
        let parsed = wire::activity("activity", text);
        if let Ok(value) = &parsed {
            assert!(value.as_str().eq_ignore_ascii_case(text));
            assert_eq!(Activity::parse(value.as_str()), Some(*value));
        }
        check(text, parsed);
    }
    if !allowed.is_empty() {
        let shown = format!("{availability:?}/{activity:?}");
        check(
            &shown,
            session_state(availability, activity, allowed, "fuzzing"),
        );
    }
}

fn check_duration(text: &Option<String>) {
    if let Some(text) = text {
        let parsed = parse_duration("expirationDuration", text);
        check(text, parsed.map_err(ApiError::InvalidArgument));
    }
}
