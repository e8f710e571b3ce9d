//! Graph's JSON shapes, and their conversion to and from the model's types.
//!
//! Architecture invariant: this module (with the handlers that use it) is the
//! only place that knows JSON. Request bodies are parsed into `*Body` structs
//! by [`JsonBody`], then converted into `presence_core` values by validating
//! functions whose errors say which field is wrong and what it may be.

use axum::extract::{FromRef, FromRequest, Request};
use presence_core::{Activity, Availability, UserId, WorkLocation, WorkLocationType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::limits::Limits;
use crate::wire::schema;

pub use crate::wire::presence::{
    DateTimeTimeZoneOut, ItemBodyOut, OutOfOfficeOut, PRESENCE_JSON_BYTES, PresenceJson, Reader,
    StatusMessageOut, WorkLocationOut, presence_json,
};

/// A JSON request body whose every rejection is an [`ApiError`]: 413 when
/// too large, 400 naming the offending field otherwise. An empty body reads
/// as `{}`, so that actions without parameters accept no body, as the SDKs
/// send them, and actions with required ones say which is missing.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A request body's type, read from JSON by [`parse_json`] unless the type
/// reads the shape clients commonly send faster itself, and leaves every
/// other shape, and every refusal, to [`parse_json`].
pub trait RequestBody: DeserializeOwned {
    fn from_json(text: &[u8]) -> Result<Self, ApiError> {
        parse_json(text)
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: RequestBody,
    Limits: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let limits = Limits::from_ref(state);
        let (parts, body) = request.into_parts();
        read_json(
            &parts.headers,
            body,
            &limits,
            limits.max_body_bytes,
            "send fewer ids or a shorter message",
        )
        .await
        .map(JsonBody)
    }
}

/// Reads and parses a JSON request body of at most `max_bytes` (after gzip
/// is undone), in the SPEC's order: the size (413, whose message ends with
/// `smaller`), then the type and encoding (415), then the content (400).
pub async fn read_json<T: RequestBody>(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limits: &Limits,
    max_bytes: usize,
    smaller: &str,
) -> Result<T, ApiError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("(not text)").to_owned());
    // hyper bounds how long the headers may take; this bounds the body,
    // so that a client trickling one cannot hold a request open forever.
    let timeout = limits.body_timeout();
    let read = tokio::time::timeout(
        timeout,
        http_body_util::Limited::new(body, max_bytes).collect(),
    )
    .await
    .map_err(|_| {
        ApiError::RequestTimeout(format!(
            "The request body did not arrive within {} seconds (--body-timeout); send it whole, at once.",
            timeout.as_secs_f64()
        ))
    })?;
    let declared_json = declared.as_deref().is_some_and(is_json_media_type);
    let bytes = read
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                let flag = if max_bytes == limits.max_body_bytes {
                    " (--max-body-bytes)"
                } else {
                    ""
                };
                ApiError::PayloadTooLarge(format!(
                    "The request body is larger than {max_bytes} bytes{flag}; {smaller}."
                ))
            } else if !declared_json {
                // The type is judged before the content (415 before 400),
                // even when the content (a broken gzip body) failed first.
                not_json(declared.as_deref())
            } else {
                ApiError::BadRequest(format!(
                    "The request body could not be read (a gzip body must be whole and valid gzip): {error}."
                ))
            }
        })?
        .to_bytes();
    // After the size (413), before the body's content (400): a body
    // that is not declared JSON is refused even when empty, so that a
    // web page cannot send a "simple" cross-site request (text/plain,
    // form data) that changes presence.
    if !declared_json {
        return Err(not_json(declared.as_deref()));
    }
    // A gzip body has been undone by the time it is read (its
    // Content-Encoding removed); any other encoding is left in place.
    if let Some(encoding) = headers.get(axum::http::header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("(not text)");
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "The request body is encoded as {:?}; send it as is, or compressed with gzip (Content-Encoding: gzip).",
                truncate(encoding)
            )));
        }
    }
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    T::from_json(text)
}

/// The 415 for a body declared as something other than JSON, or not at all.
fn not_json(declared: Option<&str>) -> ApiError {
    ApiError::UnsupportedMediaType(match declared {
        Some(found) => format!(
            "The request body is sent as {:?}; send it as JSON, with Content-Type: application/json.",
            truncate(found)
        ),
        None => "The request has no Content-Type; send the body as JSON, with Content-Type: application/json.".into(),
    })
}

/// Whether a Content-Type names JSON: `application/json`, in any case, with
/// any parameters (`charset=utf-8`, `odata.metadata=minimal`).
pub fn is_json_media_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses a request body, naming the path of the first offending value.
///
/// Every struct, at any depth, is read only from a JSON object
/// ([`Strict`](crate::http::strict::Strict)): Graph's parameters and their
/// complex values are objects, and an array in their place is refused, not
/// read as the fields in order. A value of another wrong type (a number
/// where a string belongs, a string where a boolean belongs, an object
/// where an array belongs) is refused as serde refuses it. Both name the
/// field and what it must be.
pub fn parse_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, ApiError> {
    // First without tracking the path: serde_path_to_error wraps every
    // value and key it passes, which was half of a setPresence body's
    // parsing (callgrind), and only a body that fails needs the path. Such a
    // body is parsed again below, with it, and answered from that parse.
    let mut untracked = serde_json::Deserializer::from_slice(text);
    if let Ok(value) = T::deserialize(crate::http::strict::Strict(&mut untracked))
        && untracked.end().is_ok()
    {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let strict = crate::http::strict::Strict(&mut deserializer);
    let value = serde_path_to_error::deserialize(strict).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            ApiError::BadRequest(format!(
                "The request body is not valid for this endpoint: {inner}. Send one JSON object of its parameters, as /openapi.json describes it."
            ))
        } else {
            ApiError::BadRequest(format!(
                "The request body's '{path}' is not valid: {inner}. Send '{path}' as /openapi.json describes it."
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
            "'{}' is not a valid {field}; use one of: {}.",
            truncate(text),
            Availability::allowed_values()
        ))
    })
}

pub fn activity(field: &str, text: &str) -> Result<Activity, ApiError> {
    Activity::parse(text).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "'{}' is not a valid {field}; use one of: {}.",
            truncate(text),
            Activity::allowed_values()
        ))
    })
}

pub fn user_id(text: &str) -> Result<UserId, ApiError> {
    UserId::parse(text)
        .map_err(|error| ApiError::BadRequest(format!("The user id '{}' {error}.", truncate(text))))
}

pub use crate::wire::truncate;

pub fn work_location_type(text: &str) -> Result<WorkLocationType, ApiError> {
    WorkLocationType::parse(text).ok_or_else(|| {
        let allowed: Vec<&str> = WorkLocationType::ALL
            .iter()
            .map(|value| value.as_str())
            .collect();
        ApiError::InvalidArgument(format!(
            "'{}' is not a valid workLocationType; use one of: {}.",
            truncate(text),
            allowed.join(", ")
        ))
    })
}

// ---------------------------------------------------------------------------
// Request bodies.
//
// Every field is an `Option` so that a missing or `null` required field is
// answered with Graph's own message naming it (`required`), not serde's;
// the OpenAPI schema says which are required and never `null`.

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPresenceBody {
    /// The calling application's id.
    #[schema(required = true, schema_with = schema::id)]
    pub session_id: Option<String>,
    #[schema(required = true, schema_with = schema::set_presence_availability)]
    pub availability: Option<String>,
    #[schema(required = true, schema_with = schema::set_presence_activity)]
    pub activity: Option<String>,
    #[schema(schema_with = session_expiration)]
    pub expiration_duration: Option<String>,
}

impl RequestBody for SetPresenceBody {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClearPresenceBody {
    /// The calling application's id.
    #[schema(required = true, schema_with = schema::id)]
    pub session_id: Option<String>,
}

impl RequestBody for ClearPresenceBody {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetUserPreferredPresenceBody {
    #[schema(required = true, schema_with = schema::preferred_availability)]
    pub availability: Option<String>,
    #[schema(required = true, schema_with = schema::preferred_activity)]
    pub activity: Option<String>,
    #[schema(schema_with = preferred_expiration)]
    pub expiration_duration: Option<String>,
}

impl RequestBody for SetUserPreferredPresenceBody {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacySessionBody {
    #[schema(required = true, schema_with = schema::legacy_availability)]
    pub availability: Option<String>,
    #[schema(required = true, schema_with = schema::legacy_activity)]
    pub activity: Option<String>,
}

impl RequestBody for LegacySessionBody {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemBodyJson {
    /// At most 1,000 characters; empty clears the status message.
    #[schema(max_length = 1000)]
    pub content: Option<String>,
    #[schema(schema_with = content_type)]
    pub content_type: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZoneJson {
    /// A local date and time without offset, e.g. `2026-10-18T17:05:33.2079781`.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub date_time: Option<String>,
    /// A Windows or IANA time zone name; default UTC.
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessageJson {
    /// The message; none (or empty content) clears the status message.
    pub message: Option<ItemBodyJson>,
    /// When the message ends; none keeps it until it is changed.
    pub expiry_date_time: Option<DateTimeTimeZoneJson>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetStatusMessageBody {
    /// `null` clears the status message.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, value_type = Option<StatusMessageJson>)]
    pub status_message: Option<Option<StatusMessageJson>>,
}

impl RequestBody for SetStatusMessageBody {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkLocationBody {
    #[schema(required = true, schema_with = schema::work_location_type)]
    pub work_location_type: Option<String>,
    /// At most 256 characters.
    #[schema(max_length = 256)]
    pub place_id: Option<String>,
}

impl RequestBody for WorkLocationBody {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetPresencesBody {
    /// Up to 650 user ids.
    #[schema(required = true, schema_with = ids)]
    pub ids: Option<BatchIds>,
}

impl RequestBody for GetPresencesBody {
    /// A body of lowercase GUIDs is read by [`BatchIds::read_guids`].
    fn from_json(text: &[u8]) -> Result<GetPresencesBody, ApiError> {
        match BatchIds::read_guids(text) {
            Some(ids) => Ok(GetPresencesBody { ids: Some(ids) }),
            None => parse_json(text),
        }
    }
}

/// The ids of a getPresencesByUserId body, each checked as it is read from
/// the body's text: no `String` per id, and one vector sized once, where a
/// `Vec<String>` copied each of 650 ids, then checked and freed it, and grew
/// by copying eight times (callgrind).
#[derive(Debug, Default)]
pub struct BatchIds {
    /// The valid ids in order, of the first 650.
    pub users: Vec<UserId>,
    /// How many ids the body holds.
    pub count: usize,
    /// The refusal the first invalid id earns. The handler gives it after
    /// the count's, as it would have checking each id after reading them
    /// all.
    pub fault: Option<ApiError>,
}

impl BatchIds {
    /// The ids of a body of the shape clients send,
    /// `{"ids":["<guid>","<guid>",...]}`, with JSON's whitespace anywhere
    /// between tokens and at most 650 ids, each a GUID in lowercase, as
    /// Microsoft Entra ID gives them; `None` for any other body (another
    /// member, an escape, another kind of id), which serde then reads or
    /// refuses. A GUID holds no quote and no backslash, so its bytes
    /// between the quotes are the id, and the whole body is read in one
    /// pass: 650 ids in 182,000 instructions where serde took 281,000
    /// (callgrind). A property test checks that serde reads every body
    /// accepted here the same.
    fn read_guids(text: &[u8]) -> Option<BatchIds> {
        let most = crate::http::presence::MAX_BATCH_IDS;
        let mut body = Tokens { text, at: 0 };
        body.expect(b"{")?;
        body.expect(b"\"ids\"")?;
        body.expect(b":")?;
        body.expect(b"[")?;
        let mut users = Vec::with_capacity(most);
        if body.expect(b"]").is_none() {
            loop {
                body.expect(b"\"")?;
                let guid = text.get(body.at..body.at + presence_core::id::GUID_LENGTH)?;
                if users.len() == most {
                    return None;
                }
                users.push(UserId::from_guid_bytes(guid)?);
                body.at += guid.len();
                // The closing quote right after the GUID: whitespace there
                // would be inside the string.
                body.expect_here(b'"')?;
                if body.expect(b",").is_none() {
                    body.expect(b"]")?;
                    break;
                }
            }
        }
        body.expect(b"}")?;
        body.skip_whitespace();
        (body.at == text.len()).then_some(BatchIds {
            count: users.len(),
            users,
            fault: None,
        })
    }
}

/// Whether [`BatchIds::read_guids`] reads `text`; panics, naming the body,
/// if it does and serde does not read the same ids from it. For the
/// property test and the `json_body` fuzz target.
pub(crate) fn check_read_guids(text: &[u8]) -> bool {
    let Some(read) = BatchIds::read_guids(text) else {
        return false;
    };
    let shown = String::from_utf8_lossy(text);
    let serde = parse_json::<GetPresencesBody>(text)
        .unwrap_or_else(|error| panic!("{shown:?}: read_guids reads it, serde refuses it: {error}"))
        .ids
        .unwrap_or_else(|| panic!("{shown:?}: read_guids reads ids, serde finds none"));
    assert!(serde.fault.is_none(), "{shown:?}: serde refuses an id");
    assert_eq!(
        (read.users, read.count),
        (serde.users, serde.count),
        "{shown:?}: read_guids and serde read different ids"
    );
    true
}

/// A cursor over JSON text, for [`BatchIds::read_guids`].
struct Tokens<'a> {
    text: &'a [u8],
    at: usize,
}

impl Tokens<'_> {
    /// Past JSON's whitespace: space, tab, line feed, carriage return.
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    /// Past `byte`, if it is the very next byte.
    fn expect_here(&mut self, byte: u8) -> Option<()> {
        let next = self.text.get(self.at) == Some(&byte);
        next.then(|| self.at += 1)
    }

    /// Past whitespace and then `token`, if `token` is next.
    fn expect(&mut self, token: &[u8]) -> Option<()> {
        self.skip_whitespace();
        let next = self.text.get(self.at..)?.starts_with(token);
        next.then(|| self.at += token.len())
    }
}

impl<'de> Deserialize<'de> for BatchIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BatchIds, D::Error> {
        struct Ids;
        impl<'de> serde::de::Visitor<'de> for Ids {
            type Value = BatchIds;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // What serde says of a Vec, as the refusals did before.
                formatter.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BatchIds, A::Error> {
                let most = crate::http::presence::MAX_BATCH_IDS;
                let mut ids = BatchIds {
                    users: Vec::with_capacity(most),
                    count: 0,
                    fault: None,
                };
                while let Some(BatchId(id)) = seq.next_element()? {
                    ids.count += 1;
                    match id {
                        Ok(user) if ids.count <= most => ids.users.push(user),
                        Ok(_) => {}
                        Err(fault) => {
                            ids.fault.get_or_insert(fault);
                        }
                    }
                }
                Ok(ids)
            }
        }
        deserializer.deserialize_seq(Ids)
    }
}

/// One id of a getPresencesByUserId body: the id, or the refusal its text
/// earns.
struct BatchId(Result<UserId, ApiError>);

impl<'de> Deserialize<'de> for BatchId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BatchId, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = BatchId;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // What serde says of a String, so that the refusal of a
                // number or an object among the ids reads as before.
                formatter.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<BatchId, E> {
                Ok(BatchId(user_id(text)))
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<BatchId, E> {
                if let Some(user) = UserId::from_guid_bytes(bytes) {
                    return Ok(BatchId(Ok(user)));
                }
                match std::str::from_utf8(bytes) {
                    Ok(text) => self.visit_str(text),
                    Err(_) => Err(E::custom(
                        "a user id is not valid UTF-8; send each id as a JSON string of letters, digits, '-', '_', '.' and '@'",
                    )),
                }
            }
        }
        // As bytes: serde_json then skips checking that the string is
        // UTF-8, which a GUID, the common id, is by being hex digits and
        // hyphens; any other id is checked here (80 instructions an id).
        deserializer.deserialize_bytes(Text)
    }
}

fn content_type() -> utoipa::openapi::schema::Object {
    schema::nullable(schema::content_type())
}

fn session_expiration() -> utoipa::openapi::schema::Object {
    schema::nullable(schema::duration(
        "How long the session lives: from PT5M to PT4H; default PT5M.",
    ))
}

fn preferred_expiration() -> utoipa::openapi::schema::Object {
    schema::nullable(schema::duration(
        "How long the preferred presence lasts; default 1 day for Busy and DoNotDisturb, 7 days otherwise.",
    ))
}

fn advance() -> utoipa::openapi::schema::Object {
    schema::duration("How far to move the clock: not negative, at most ten years.")
}

/// getPresencesByUserId's `ids`, for the OpenAPI document.
fn ids() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(schema::id())
        .max_items(Some(crate::http::presence::MAX_BATCH_IDS))
        .description(Some("The users to read: at most 650 ids."))
        .build()
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeBody {
    #[schema(required = true, value_type = bool)]
    pub is_out_of_office: Option<bool>,
    /// At most 4,000 characters.
    #[schema(max_length = 4000)]
    pub message: Option<String>,
}

impl RequestBody for OutOfOfficeBody {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockAdvanceBody {
    #[schema(required = true, schema_with = advance)]
    pub by: Option<String>,
}

impl RequestBody for ClockAdvanceBody {}

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

/// A `200` with `value` as JSON, written into a buffer of `capacity` bytes
/// (axum's `Json` starts at 128 and grows, copying, several times for a
/// presence).
/// A JSON answer already written (a rendered presence, a collection of them).
pub fn json_bytes_answer(body: bytes::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn guid() -> impl Strategy<Value = String> {
        any::<u128>().prop_map(|bits| {
            let hex = format!("{bits:032x}");
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        })
    }

    /// At most one thing in a generated batch body that `read_guids` must
    /// leave to serde.
    #[derive(Clone, Debug)]
    enum Flaw {
        /// The id at this index (modulo the count): upper case, an escaped
        /// first digit, one digit short, a letter past 'f', or a space, a
        /// tab or a line feed after it inside its string.
        Id(usize, u8),
        /// This between two tokens (the gap at this index, modulo the
        /// gaps): a form feed or a no-break space, not JSON's whitespace.
        Space(usize, &'static str),
        /// Another member after the ids.
        Member(&'static str),
        /// The key spelled otherwise.
        Key(&'static str),
        /// Something after the body.
        Trailing(&'static str),
    }

    fn flaw() -> impl Strategy<Value = Option<Flaw>> {
        prop_oneof![
            4 => Just(None),
            2 => (any::<usize>(), 0..7u8).prop_map(|(at, how)| Some(Flaw::Id(at, how))),
            1 => (any::<usize>(), prop::sample::select(vec!["\u{c}", "\u{a0}"]))
                .prop_map(|(at, text)| Some(Flaw::Space(at, text))),
            1 => prop::sample::select(vec![r#","other":1"#, r#","ids":[]"#])
                .prop_map(|text| Some(Flaw::Member(text))),
            1 => prop::sample::select(vec![r#""\u0069ds""#, r#""IDS""#, r#""ids ""#])
                .prop_map(|text| Some(Flaw::Key(text))),
            1 => prop::sample::select(vec!["x", ",", "}", "[]"])
                .prop_map(|text| Some(Flaw::Trailing(text))),
        ]
    }

    proptest! {
        /// Every body `read_guids` reads, serde reads to the same ids
        /// (`check_read_guids` panics otherwise); it reads every body of
        /// the shape it is for, with up to 650 ids, and no other.
        #[test]
        fn the_batchs_reader_agrees_with_serde(
            ids in prop_oneof![
                prop::collection::vec(guid(), 0..4),
                prop::collection::vec(guid(), 645..656),
                prop::collection::vec(guid(), 0..660),
            ],
            spaces in prop::collection::vec(
                prop::sample::select(vec!["", "", "", " ", "\t\n", "\r\n  "]),
                1..16,
            ),
            flaw in flaw(),
        ) {
            let mut ids = ids;
            let mut flawed = false;
            if let Some(Flaw::Id(at, how)) = flaw
                && !ids.is_empty()
            {
                let count = ids.len();
                let id = &mut ids[at % count];
                let flawless = id.clone();
                *id = match how {
                    0 => id.to_uppercase(),
                    1 => format!("\\u00{:x}{}", id.as_bytes()[0], &id[1..]),
                    2 => id[1..].to_string(),
                    3 => format!("g{}", &id[1..]),
                    4 => format!("{id} "),
                    5 => format!("{id}\t"),
                    _ => format!("{id}\n"),
                };
                // A GUID of digits alone reads the same in upper case.
                flawed = *id != flawless;
            }
            // One gap before each id and seven around the tokens.
            let gaps = ids.len() + 7;
            let flawed_gap = match flaw {
                Some(Flaw::Space(at, text)) => Some((at % gaps, text)),
                _ => None,
            };
            let mut gap = 0;
            let mut body = String::new();
            let mut space = |body: &mut String| {
                match flawed_gap {
                    Some((at, text)) if at == gap => body.push_str(text),
                    _ => body.push_str(spaces[gap % spaces.len()]),
                }
                gap += 1;
            };
            flawed |= flawed_gap.is_some();
            space(&mut body);
            body.push('{');
            space(&mut body);
            body.push_str(match flaw {
                Some(Flaw::Key(key)) => key,
                _ => r#""ids""#,
            });
            space(&mut body);
            body.push(':');
            space(&mut body);
            body.push('[');
            for (index, id) in ids.iter().enumerate() {
                if index > 0 {
                    body.push(',');
                }
                space(&mut body);
                body.push('"');
                body.push_str(id);
                body.push('"');
            }
            space(&mut body);
            body.push(']');
            if let Some(Flaw::Member(member)) = flaw {
                body.push_str(member);
            }
            space(&mut body);
            body.push('}');
            space(&mut body);
            if let Some(Flaw::Trailing(text)) = flaw {
                body.push_str(text);
            }
            flawed |= matches!(flaw, Some(Flaw::Member(_) | Flaw::Key(_) | Flaw::Trailing(_)));
            let readable = !flawed && ids.len() <= 650;
            prop_assert_eq!(check_read_guids(body.as_bytes()), readable, "{:?}", body);
            // Cut anywhere, it is not read (and never wrongly).
            let cut = &body.as_bytes()[..body.len() / 2];
            prop_assert!(!check_read_guids(cut));
        }
    }

    /// A refusal echoes at most 64 characters of what the caller sent,
    /// however long it was (found by the json_body and headers fuzz
    /// targets: these echoed the whole value, as long as the body or the
    /// header could be).
    #[test]
    fn refusals_echo_a_bounded_part_of_the_value() {
        let long = "x".repeat(10_000);
        let refusals = [
            availability("availability", &long).map(|_| ()),
            activity("activity", &long).map(|_| ()),
            work_location_type(&long).map(|_| ()),
            user_id(&long).map(|_| ()),
        ];
        for refusal in refusals {
            let message = refusal.expect_err("refused").to_string();
            assert!(
                message.contains(&format!("'{}…'", "x".repeat(64))),
                "{message}"
            );
            assert!(message.len() < 400, "{} bytes: {message}", message.len());
        }
    }

    #[tokio::test]
    async fn a_refused_content_type_is_echoed_cut() {
        let request = Request::builder()
            .method("POST")
            .header(axum::http::header::CONTENT_TYPE, "t".repeat(10_000))
            .body(axum::body::Body::from("{}"))
            .expect("a request");
        let refusal = JsonBody::<ClearPresenceBody>::from_request(request, &Limits::default())
            .await
            .expect_err("not JSON");
        assert_eq!(
            refusal.status(),
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let message = refusal.to_string();
        assert!(
            message.contains(&format!("\"{}…\"", "t".repeat(64))),
            "{message}"
        );
        assert!(message.len() < 400, "{} bytes: {message}", message.len());
    }
}
