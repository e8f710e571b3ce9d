//! Graph's JSON shapes, and their conversion to and from the model's types.
//!
//! Architecture invariant: this module (with the handlers that use it) is the
//! only place that knows JSON. Request bodies are parsed into `*Body` structs
//! by [`JsonBody`], then converted into `presence_core` values by validating
//! functions whose errors say which field is wrong and what it may be.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use presence_core::{
    Activity, Availability, Decision, Instant, Presence, StatusMessage, UserFacts, UserId,
    WorkLocation, WorkLocationSource, WorkLocationType, format_sequence,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::wire_time;

/// How long a request body may take to arrive once its headers have.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A JSON request body whose every rejection is an [`ApiError`]: 413 when
/// too large, 400 naming the offending field otherwise. An empty body reads
/// as `{}`, so that actions without parameters accept no body, as the SDKs
/// send them, and actions with required ones say which is missing.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        // hyper bounds how long the headers may take; this bounds the body,
        // so that a client trickling one cannot hold a request open forever.
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(request, state))
            .await
            .map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "The request body did not arrive within {} seconds; send it whole.",
                    BODY_READ_TIMEOUT.as_secs()
                ))
            })?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!(
                    "The request body is larger than {} bytes; send fewer ids or a shorter message.",
                    crate::http::MAX_BODY_BYTES
                ))
            } else {
                ApiError::BadRequest(format!("The request body could not be read: {rejection}."))
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // serde's derive would also read a JSON array as the fields in order;
        // Graph's parameters are always an object.
        if text.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::BadRequest(
                "The request body must be a JSON object of this action's parameters, such as {\"sessionId\": \"...\"}.".into(),
            ));
        }
        parse_json(text).map(JsonBody)
    }
}

/// Parses JSON, naming the path of the first offending value.
pub fn parse_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            ApiError::BadRequest(format!(
                "The request body is not valid JSON for this action: {inner}."
            ))
        } else {
            ApiError::BadRequest(format!(
                "The request body's '{path}' is not valid: {inner}."
            ))
        }
    })?;
    deserializer.end().map_err(|error| {
        ApiError::BadRequest(format!(
            "The request body has trailing characters after the JSON value: {error}."
        ))
    })?;
    Ok(value)
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`)
/// or a value (`Some(Some(_))`); use with `#[serde(default)]`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A required string field: missing is Graph's `[Field]: The Field field is required.`
pub fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    match value {
        Some(value) => Ok(value),
        None => {
            let mut pascal = field.to_owned();
            if let Some(first) = pascal.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            Err(ApiError::InvalidArgument(format!(
                "[{pascal}]: The {pascal} field is required."
            )))
        }
    }
}

pub fn availability(field: &str, text: &str) -> Result<Availability, ApiError> {
    Availability::parse(text).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "'{text}' is not a valid {field}; use one of: {}.",
            Availability::allowed_values()
        ))
    })
}

pub fn activity(field: &str, text: &str) -> Result<Activity, ApiError> {
    Activity::parse(text).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "'{text}' is not a valid {field}; use one of: {}.",
            Activity::allowed_values()
        ))
    })
}

pub fn user_id(text: &str) -> Result<UserId, ApiError> {
    UserId::parse(text)
        .map_err(|error| ApiError::BadRequest(format!("The user id '{}' {error}.", truncate(text))))
}

/// At most 64 characters of caller input, for echoing in a message.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

pub fn work_location_type(text: &str) -> Result<WorkLocationType, ApiError> {
    WorkLocationType::parse(text).ok_or_else(|| {
        let allowed: Vec<&str> = WorkLocationType::ALL
            .iter()
            .map(|value| value.as_str())
            .collect();
        ApiError::InvalidArgument(format!(
            "'{text}' is not a valid workLocationType; use one of: {}.",
            allowed.join(", ")
        ))
    })
}

// ---------------------------------------------------------------------------
// Request bodies.

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPresenceBody {
    /// The calling application's id.
    pub session_id: Option<String>,
    pub availability: Option<String>,
    pub activity: Option<String>,
    /// ISO 8601 duration between PT5M and PT4H; default PT5M.
    pub expiration_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClearPresenceBody {
    pub session_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetUserPreferredPresenceBody {
    pub availability: Option<String>,
    pub activity: Option<String>,
    /// ISO 8601 duration; default 1 day for Busy and DoNotDisturb, 7 days otherwise.
    pub expiration_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacySessionBody {
    pub availability: Option<String>,
    pub activity: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemBodyJson {
    pub content: Option<String>,
    /// Only `text` is supported.
    pub content_type: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZoneJson {
    /// A local date and time without offset, e.g. `2026-10-18T17:05:33.2079781`.
    pub date_time: Option<String>,
    /// A Windows or IANA time zone name; default UTC.
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessageJson {
    pub message: Option<ItemBodyJson>,
    pub expiry_date_time: Option<DateTimeTimeZoneJson>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetStatusMessageBody {
    /// `null` clears the status message.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<StatusMessageJson>)]
    pub status_message: Option<Option<StatusMessageJson>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkLocationBody {
    /// `unspecified`, `office`, `remote` or `timeOff`.
    pub work_location_type: Option<String>,
    pub place_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetPresencesBody {
    /// Up to 650 user ids.
    pub ids: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeBody {
    pub is_out_of_office: Option<bool>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockAdvanceBody {
    /// A non-negative ISO 8601 duration, e.g. `PT5M`.
    pub by: Option<String>,
}

impl WorkLocationBody {
    pub fn into_location(self) -> Result<WorkLocation, ApiError> {
        let location_type =
            work_location_type(required(&self.work_location_type, "workLocationType")?)?;
        if let Some(place) = &self.place_id
            && place.len() > 256
        {
            return Err(ApiError::InvalidArgument(
                "placeId is longer than 256 characters; send a shorter id.".into(),
            ));
        }
        Ok(WorkLocation {
            location_type,
            place_id: self.place_id,
        })
    }
}

// ---------------------------------------------------------------------------
// Response shapes.

/// Who is reading, which decides whether the status message's dates show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// The user themself, or an application: everything shows.
    Owner,
    /// Another user: Graph hides `publishedDateTime` and `expiryDateTime`.
    OtherUser,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceJson {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    pub odata_context: Option<String>,
    pub id: String,
    pub availability: &'static str,
    pub activity: &'static str,
    pub status_message: Option<StatusMessageOut>,
    pub out_of_office_settings: OutOfOfficeOut,
    pub sequence_number: String,
    pub work_location: WorkLocationOut,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessageOut {
    pub message: ItemBodyOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry_date_time: Option<DateTimeTimeZoneOut>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemBodyOut {
    pub content: String,
    pub content_type: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZoneOut {
    pub date_time: String,
    pub time_zone: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeOut {
    pub message: Option<String>,
    pub is_out_of_office: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkLocationOut {
    pub work_location_type: &'static str,
    pub source: &'static str,
    pub place_id: Option<String>,
}

fn status_message_out(message: &StatusMessage, reader: Reader) -> StatusMessageOut {
    let owner = reader == Reader::Owner;
    StatusMessageOut {
        message: ItemBodyOut {
            content: message.content.clone(),
            content_type: "text",
        },
        published_date_time: owner.then(|| wire_time::format_instant(message.published_at)),
        expiry_date_time: message.expiry.as_ref().filter(|_| owner).map(|expiry| {
            DateTimeTimeZoneOut {
                date_time: expiry.date_time.clone(),
                time_zone: expiry.time_zone.clone(),
            }
        }),
    }
}

fn work_location_out(location: Option<(&WorkLocation, WorkLocationSource)>) -> WorkLocationOut {
    match location {
        Some((location, source)) => WorkLocationOut {
            work_location_type: location.location_type.as_str(),
            source: source.as_str(),
            place_id: location.place_id.clone(),
        },
        None => WorkLocationOut {
            work_location_type: WorkLocationType::Unspecified.as_str(),
            source: WorkLocationSource::None.as_str(),
            place_id: None,
        },
    }
}

impl PresenceJson {
    pub fn new(
        user: &UserId,
        presence: &Presence<'_>,
        reader: Reader,
        odata_context: Option<String>,
    ) -> PresenceJson {
        PresenceJson {
            odata_context,
            id: String::from(&*user.as_str()),
            availability: presence.availability.as_str(),
            activity: presence.activity.as_str(),
            status_message: presence
                .status_message
                .map(|message| status_message_out(message, reader)),
            out_of_office_settings: OutOfOfficeOut {
                message: presence.out_of_office.message.clone(),
                is_out_of_office: presence.out_of_office.is_out_of_office,
            },
            sequence_number: format_sequence(presence.sequence),
            work_location: work_location_out(presence.work_location),
        }
    }
}

/// About what one presence takes as JSON (a plain one is 420 bytes), so
/// that rendering it needs one allocation and no copying as it grows.
pub const PRESENCE_JSON_BYTES: usize = 512;

/// A `200` with `value` as JSON, written into a buffer of `capacity` bytes
/// (axum's `Json` starts at 128 and grows, copying, several times for a
/// presence).
pub fn json_answer<T: Serialize>(value: &T, capacity: usize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut buffer = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut buffer, value) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            buffer,
        )
            .into_response(),
        // Only a `Serialize` implementation that fails can get here, and
        // presenced's own types never do.
        Err(error) => {
            tracing::error!(%error, "a response could not be rendered as JSON");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The presence of a user at `now` (Offline for a user nothing is held for).
pub fn presence_json(
    user: &UserId,
    facts: Option<&UserFacts>,
    now: Instant,
    timeouts: presence_core::Timeouts,
    reader: Reader,
    odata_context: Option<String>,
) -> PresenceJson {
    let empty = UserFacts::default();
    let facts = facts.unwrap_or(&empty);
    let presence = presence_core::presence_at(facts, now, timeouts);
    PresenceJson::new(user, &presence, reader, odata_context)
}

/// The rule that decided a presence, for the introspection endpoint.
pub fn decision_json(decision: &Decision<'_>) -> serde_json::Value {
    match decision {
        Decision::UserPreferred => serde_json::json!({ "rule": "userPreferredPresence" }),
        Decision::Session(id) => {
            serde_json::json!({ "rule": "strongestSession", "sessionId": id.as_str() })
        }
        Decision::NoSession => serde_json::json!({ "rule": "noSession" }),
    }
}
