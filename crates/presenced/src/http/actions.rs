//! The presence write actions: setPresence, clearPresence, preferred
//! presence, status message and work location. Each parses its body into a
//! command (validation first, as Graph does, so a bad body is a 400 whatever
//! the caller's permissions), authorizes, applies, and answers 200 with an
//! empty body.

use axum::extract::{RawPathParams, State};
use axum::http::StatusCode;
use presence_core::{
    Command, PreferredExpiration, PreferredState, SessionExpiration, SessionId, SessionState,
    StatusMessageExpiry, StatusMessageInput, UserId, UserKey, describe_pairs,
};

use crate::auth::{Access, Principal};
use crate::http::error::ApiError;
use crate::http::presence::target_user;
use crate::http::wire::{
    self, ClearPresenceBody, JsonBody, SetPresenceBody, SetStatusMessageBody,
    SetUserPreferredPresenceBody, WorkLocationBody, required,
};
use crate::state::AppState;
use crate::wire_time;

/// The longest status message accepted, in characters.
pub const MAX_STATUS_MESSAGE_CHARS: usize = 1_000;

pub fn session_id(text: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(text).map_err(|error| {
        ApiError::InvalidArgument(format!("The sessionId '{}' {error}.", wire::truncate(text)))
    })
}

/// Parses an availability/activity pair and finds it among `allowed`.
pub fn session_state(
    availability: &Option<String>,
    activity: &Option<String>,
    allowed: &[SessionState],
    action: &str,
) -> Result<SessionState, ApiError> {
    let availability = wire::availability("availability", required(availability, "availability")?)?;
    let activity = wire::activity("activity", required(activity, "activity")?)?;
    SessionState::from_pair(allowed, availability, activity).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "The pair availability '{availability}' with activity '{activity}' is not supported by {action}; use one of: {}.",
            describe_pairs(allowed.iter().map(|state| state.pair()))
        ))
    })
}

async fn apply_write(
    state: &AppState,
    principal: &Principal,
    params: &RawPathParams,
    access: Access,
    command: Command,
) -> Result<StatusCode, ApiError> {
    apply_to(
        state,
        principal,
        target_user(principal, params),
        access,
        command,
    )
    .await
}

/// Applies `command` to `user` (the path's, or why the path names none) for
/// `principal`, if it may.
async fn apply_to(
    state: &AppState,
    principal: &Principal,
    user: Result<UserId, ApiError>,
    access: Access,
    command: Command,
) -> Result<StatusCode, ApiError> {
    let user = user?;
    principal.authorize(access, &user)?;
    state
        .service
        .apply(&UserKey::new(principal.tenant.clone(), user), &command)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn set_presence(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<SetPresenceBody>,
) -> Result<StatusCode, ApiError> {
    let user = target_user(&principal, &params);
    set_presence_of(&state, &principal, user, body).await
}

/// setPresence of `user` (the path's, or why the path names none) by
/// `principal`, with its body read: the router's handler and the direct
/// route (`direct.rs`) both answer with this, the body's faults first,
/// then the path's and the permissions'.
pub async fn set_presence_of(
    state: &AppState,
    principal: &Principal,
    user: Result<UserId, ApiError>,
    body: SetPresenceBody,
) -> Result<StatusCode, ApiError> {
    let session_id = session_id(required(&body.session_id, "sessionId")?)?;
    let session_state = session_state(
        &body.availability,
        &body.activity,
        SessionState::SET_PRESENCE,
        "setPresence",
    )?;
    let expiration = match &body.expiration_duration {
        None => SessionExpiration::DEFAULT,
        Some(text) => {
            let duration = wire_time::parse_duration("expirationDuration", text)
                .map_err(ApiError::InvalidArgument)?;
            SessionExpiration::new(duration).ok_or_else(|| {
                ApiError::InvalidArgument(
                    "The provided [ExpirationDuration] is out of range. Use a duration from PT5M to PT4H.".into(),
                )
            })?
        }
    };
    principal.check_session_id(&session_id)?;
    let command = Command::SetPresence {
        session_id,
        state: session_state,
        expiration,
    };
    apply_to(state, principal, user, Access::Write, command).await
}

pub async fn clear_presence(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<ClearPresenceBody>,
) -> Result<StatusCode, ApiError> {
    let session_id = session_id(required(&body.session_id, "sessionId")?)?;
    principal.check_session_id(&session_id)?;
    apply_write(
        &state,
        &principal,
        &params,
        Access::Write,
        Command::ClearPresence { session_id },
    )
    .await
}

pub async fn set_user_preferred_presence(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<SetUserPreferredPresenceBody>,
) -> Result<StatusCode, ApiError> {
    let availability = wire::availability(
        "availability",
        required(&body.availability, "availability")?,
    )?;
    let activity = wire::activity("activity", required(&body.activity, "activity")?)?;
    let preferred = PreferredState::from_pair(availability, activity).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "The pair availability '{availability}' with activity '{activity}' is not supported by setUserPreferredPresence; use one of: {}.",
            describe_pairs(PreferredState::ALL.iter().map(|state| state.pair()))
        ))
    })?;
    let expiration = match &body.expiration_duration {
        None => None,
        Some(text) => {
            let duration = wire_time::parse_duration("expirationDuration", text)
                .map_err(ApiError::InvalidArgument)?;
            Some(PreferredExpiration::new(duration).ok_or_else(|| {
                ApiError::InvalidArgument(
                    "The provided [ExpirationDuration] is out of range. Use a positive duration such as PT8H.".into(),
                )
            })?)
        }
    };
    let command = Command::SetUserPreferredPresence {
        state: preferred,
        expiration,
    };
    apply_write(&state, &principal, &params, Access::Write, command).await
}

pub async fn clear_user_preferred_presence(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<StatusCode, ApiError> {
    apply_write(
        &state,
        &principal,
        &params,
        Access::Write,
        Command::ClearUserPreferredPresence,
    )
    .await
}

pub async fn set_status_message(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<SetStatusMessageBody>,
) -> Result<StatusCode, ApiError> {
    let Some(status_message) = body.status_message else {
        return Err(ApiError::InvalidArgument(
            "[StatusMessage]: The StatusMessage field is required; send \"statusMessage\": null to clear the message.".into(),
        ));
    };
    let input = match status_message.and_then(|status| {
        status
            .message
            .map(|message| (message, status.expiry_date_time))
    }) {
        None => None,
        Some((message, expiry)) => {
            if let Some(content_type) = &message.content_type
                && !content_type.eq_ignore_ascii_case("text")
            {
                return Err(ApiError::InvalidArgument(format!(
                    "statusMessage.message.contentType '{}' is not supported; only 'text' is.",
                    wire::truncate(content_type)
                )));
            }
            let content = message.content.unwrap_or_default();
            if content.chars().count() > MAX_STATUS_MESSAGE_CHARS {
                return Err(ApiError::InvalidArgument(format!(
                    "statusMessage.message.content is longer than {MAX_STATUS_MESSAGE_CHARS} characters; send a shorter message."
                )));
            }
            let expiry = match expiry {
                None => None,
                Some(expiry) => {
                    let field = "statusMessage.expiryDateTime";
                    let Some(date_time) = expiry.date_time else {
                        return Err(ApiError::InvalidArgument(format!(
                            "{field}.dateTime is required when expiryDateTime is given, e.g. \"2026-10-18T17:05:33\"."
                        )));
                    };
                    let time_zone = expiry.time_zone.filter(|zone| !zone.is_empty());
                    let at = wire_time::parse_date_time_time_zone(
                        field,
                        &date_time,
                        time_zone.as_deref(),
                    )
                    .map_err(ApiError::InvalidArgument)?;
                    Some(StatusMessageExpiry {
                        at,
                        date_time,
                        time_zone: time_zone.unwrap_or_else(|| "UTC".to_owned()),
                    })
                }
            };
            (!content.is_empty()).then_some(StatusMessageInput { content, expiry })
        }
    };
    apply_write(
        &state,
        &principal,
        &params,
        Access::Write,
        Command::SetStatusMessage(input),
    )
    .await
}

pub async fn set_manual_location(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<WorkLocationBody>,
) -> Result<StatusCode, ApiError> {
    let location = body.into_location()?;
    apply_write(
        &state,
        &principal,
        &params,
        Access::WriteLocation,
        Command::SetManualLocation(location),
    )
    .await
}

pub async fn set_automatic_location(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<WorkLocationBody>,
) -> Result<StatusCode, ApiError> {
    let location = body.into_location()?;
    apply_write(
        &state,
        &principal,
        &params,
        Access::WriteLocation,
        Command::SetAutomaticLocation(location),
    )
    .await
}

pub async fn clear_automatic_location(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<StatusCode, ApiError> {
    apply_write(
        &state,
        &principal,
        &params,
        Access::WriteLocation,
        Command::ClearAutomaticLocation,
    )
    .await
}

pub async fn clear_location(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<StatusCode, ApiError> {
    apply_write(
        &state,
        &principal,
        &params,
        Access::WriteLocation,
        Command::ClearLocation,
    )
    .await
}
