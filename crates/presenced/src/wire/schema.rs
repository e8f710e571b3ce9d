//! OpenAPI schemas of the string values whose set is fixed (availability,
//! activity, the work-location enums) and of ids, built from the model's
//! own lists so that the document says what the parsers accept. Request
//! and response types name them with `#[schema(schema_with = ...)]`.

use presence_core::{
    Activity, Availability, MAX_ID_LENGTH, PreferredState, SessionState, Stage, WorkLocationSource,
    WorkLocationType,
};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// A string that is one of `values` (each once, in the order given).
pub fn one_of<'a>(values: impl IntoIterator<Item = &'a str>, description: &str) -> Object {
    let mut unique: Vec<&str> = Vec::new();
    for value in values {
        if !unique.contains(&value) {
            unique.push(value);
        }
    }
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(unique))
        .description(Some(description))
        .build()
}

/// `schema`, or `null` (an optional field: `null` is the same as absent).
pub fn nullable(mut schema: Object) -> Object {
    if let utoipa::openapi::schema::SchemaType::Type(single) = schema.schema_type {
        schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([single, Type::Null]);
    }
    if let Some(values) = &mut schema.enum_values {
        values.push(serde_json::Value::Null);
    }
    schema
}

/// A user or session id as presenced accepts it.
pub fn id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LENGTH))
        .pattern(Some("^[A-Za-z0-9@._-]+$"))
        .description(Some(
            "A user or session id: a GUID, or up to 128 letters, digits, '-', '_', '.' and '@'.",
        ))
        .build()
}

/// An ISO 8601 duration (or Python's `str(timedelta)`), as
/// `wire_time::parse_duration` reads one.
pub fn duration(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .description(Some(description))
        .examples(["PT5M", "PT1H30M", "1:00:00"])
        .build()
}

pub fn availability() -> Object {
    one_of(
        Availability::ALL.iter().map(|value| value.as_str()),
        "The base presence state.",
    )
}

pub fn activity() -> Object {
    one_of(
        Activity::ALL.iter().map(|value| value.as_str()),
        "The supplemental state.",
    )
}

const CASE: &str =
    "Matched case-insensitively; only the pairs listed in the operation are accepted: ";

fn session_pairs(allowed: &[SessionState]) -> String {
    format!(
        "{CASE}{}.",
        presence_core::describe_pairs(allowed.iter().map(|state| state.pair()))
    )
}

fn preferred_pairs() -> String {
    format!(
        "{CASE}{}.",
        presence_core::describe_pairs(PreferredState::ALL.iter().map(|state| state.pair()))
    )
}

pub fn set_presence_availability() -> Object {
    let states = SessionState::SET_PRESENCE;
    one_of(
        states.iter().map(|state| state.pair().0.as_str()),
        &session_pairs(states),
    )
}

pub fn set_presence_activity() -> Object {
    let states = SessionState::SET_PRESENCE;
    one_of(
        states.iter().map(|state| state.pair().1.as_str()),
        &session_pairs(states),
    )
}

pub fn legacy_availability() -> Object {
    let states = SessionState::LEGACY;
    one_of(
        states.iter().map(|state| state.pair().0.as_str()),
        &session_pairs(states),
    )
}

pub fn legacy_activity() -> Object {
    let states = SessionState::LEGACY;
    one_of(
        states.iter().map(|state| state.pair().1.as_str()),
        &session_pairs(states),
    )
}

pub fn preferred_availability() -> Object {
    one_of(
        PreferredState::ALL
            .iter()
            .map(|state| state.pair().0.as_str()),
        &preferred_pairs(),
    )
}

pub fn preferred_activity() -> Object {
    one_of(
        PreferredState::ALL
            .iter()
            .map(|state| state.pair().1.as_str()),
        &preferred_pairs(),
    )
}

pub fn work_location_type() -> Object {
    one_of(
        WorkLocationType::ALL.iter().map(|value| value.as_str()),
        "Where the user works; matched case-insensitively.",
    )
}

pub fn work_location_source() -> Object {
    one_of(
        WorkLocationSource::ALL.iter().map(|value| value.as_str()),
        "Which layer decided the work location.",
    )
}

/// A status message's `contentType`: only text.
pub fn content_type() -> Object {
    one_of(
        ["text"],
        "Only text is supported; matched case-insensitively.",
    )
}

/// A subscription's `changeType`: presences change only by update.
pub fn change_type() -> Object {
    one_of(["updated"], "The only change type of presences.")
}

/// Where a session is on its timeline.
pub fn stage() -> Object {
    one_of(
        Stage::ALL.iter().map(|stage| stage.as_str()),
        "active and inactive are the first two stages of an Available session, away the third; steady is a state that does not fade.",
    )
}

/// How a session was made.
pub fn session_kind() -> Object {
    one_of(
        ["application", "legacy"],
        "application: setPresence; legacy: the beta sessions PUT.",
    )
}

/// Which rule decided the aggregate presence.
pub fn decision_rule() -> Object {
    one_of(
        ["userPreferredPresence", "strongestSession", "noSession"],
        "The rule of the aggregation ladder that decided the presence.",
    )
}

/// An instant as presenced writes one: UTC with seven fractional digits.
pub fn instant(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
        .description(Some(description))
        .build()
}
