//! The legacy beta session endpoints, `PUT`/`DELETE
//! /beta/users/{id}/presence/sessions/{sessionId}` (also addressed as
//! `/beta/users/{id}/presence/{sessionId}`). Graph dropped them; presenced
//! keeps them for older code. They take no expiration: a session fades and
//! then ends at the third idle timeout. Their `{sessionId}` is taken as the
//! setPresence `sessionId` is: with tokens, only the caller's own app id.

use axum::extract::{RawPathParams, State};
use axum::http::StatusCode;
use presence_core::{Command, SessionState, UserKey};

use crate::auth::{Access, Principal};
use crate::http::actions::{session_id, session_state};
use crate::http::error::ApiError;
use crate::http::presence::target_user;
use crate::http::wire::{JsonBody, LegacySessionBody};
use crate::state::AppState;

fn path_session(params: &RawPathParams) -> Result<presence_core::SessionId, ApiError> {
    let text = params
        .iter()
        .find(|(name, _)| *name == "sessionId")
        .map(|(_, value)| value);
    session_id(text.unwrap_or_default())
}

pub async fn put_session(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<LegacySessionBody>,
) -> Result<StatusCode, ApiError> {
    let session_id = path_session(&params)?;
    let session_state = session_state(
        &body.availability,
        &body.activity,
        SessionState::LEGACY,
        "the legacy session PUT",
    )?;
    principal.check_session_id(&session_id)?;
    let user = target_user(&principal, &params)?;
    principal.authorize(Access::Write, &user)?;
    let command = Command::PutLegacySession {
        session_id,
        state: session_state,
    };
    state
        .service
        .apply(&UserKey::new(principal.tenant.clone(), user), &command)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn delete_session(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<StatusCode, ApiError> {
    let session_id = path_session(&params)?;
    principal.check_session_id(&session_id)?;
    let user = target_user(&principal, &params)?;
    principal.authorize(Access::Write, &user)?;
    state
        .service
        .apply(
            &UserKey::new(principal.tenant.clone(), user),
            &Command::ClearPresence { session_id },
        )
        .await?;
    Ok(StatusCode::OK)
}
