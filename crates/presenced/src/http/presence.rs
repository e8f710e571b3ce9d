//! Reading presence: one user (three path forms) and a batch.

use axum::Json;
use axum::extract::{OriginalUri, RawPathParams, State};
use axum::http::HeaderMap;
use presence_core::{UserId, UserKey};

use crate::auth::{Access, Caller, Principal};
use crate::http::error::ApiError;
use crate::http::wire::{self, GetPresencesBody, JsonBody, PresenceJson, Reader, presence_json};
use crate::state::AppState;

/// The most ids getPresencesByUserId takes, as Graph.
pub const MAX_BATCH_IDS: usize = 650;

/// The user a path names: its `{id}`, or the caller for `/me`.
pub fn target_user(principal: &Principal, params: &RawPathParams) -> Result<UserId, ApiError> {
    match params.iter().find(|(name, _)| *name == "id") {
        Some((_, id)) => wire::user_id(id),
        None => principal.me().cloned(),
    }
}

pub fn reader(principal: &Principal, target: &UserId) -> Reader {
    match &principal.caller {
        Caller::Delegated { user, .. } if user != target => Reader::OtherUser,
        _ => Reader::Owner,
    }
}

/// `https://host/v1.0/$metadata#...`, from the request's own address.
fn service_root(headers: &HeaderMap, uri: &OriginalUri) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let version = if uri.path().starts_with("/beta") {
        "/beta"
    } else {
        "/v1.0"
    };
    let mut root = String::with_capacity(96);
    root.push_str("http://");
    root.push_str(host);
    root.push_str(version);
    root
}

pub async fn get_presence(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Result<Json<PresenceJson>, ApiError> {
    let user = target_user(&principal, &params)?;
    principal.authorize(Access::Read, &user)?;
    let mut context = service_root(&headers, &uri);
    if uri.path().contains("/communications/") {
        context.push_str("/$metadata#communications/presences/$entity");
    } else {
        context.push_str("/$metadata#users('");
        context.push_str(&user.as_str());
        context.push_str("')/presence/$entity");
    }
    let key = UserKey::new(principal.tenant.clone(), user.clone());
    let now = state.clock.now();
    let reader = reader(&principal, &user);
    let mut body = None;
    state
        .store
        .read(std::slice::from_ref(&key), &mut |_, facts| {
            body = Some(presence_json(
                &user,
                facts,
                now,
                state.timeouts,
                reader,
                Some(context.clone()),
            ));
        })
        .await?;
    let body = body
        .unwrap_or_else(|| presence_json(&user, None, now, state.timeouts, reader, Some(context)));
    Ok(Json(body))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PresenceCollection {
    #[serde(rename = "@odata.context")]
    odata_context: String,
    value: Vec<PresenceJson>,
}

pub async fn get_presences_by_user_id(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    uri: OriginalUri,
    JsonBody(body): JsonBody<GetPresencesBody>,
) -> Result<Json<PresenceCollection>, ApiError> {
    let Some(ids) = body.ids else {
        return Err(ApiError::InvalidArgument(
            "[Ids]: The Ids field is required; send {\"ids\": [\"<user id>\", ...]}.".into(),
        ));
    };
    if ids.len() > MAX_BATCH_IDS {
        return Err(ApiError::InvalidArgument(format!(
            "ids has {} entries; at most {MAX_BATCH_IDS} are allowed in one request.",
            ids.len()
        )));
    }
    let users = ids
        .iter()
        .map(|id| wire::user_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    for user in &users {
        principal.authorize(Access::ReadMany, user)?;
    }
    let keys: Vec<UserKey> = users
        .iter()
        .map(|user| UserKey::new(principal.tenant.clone(), user.clone()))
        .collect();
    let now = state.clock.now();
    let mut value: Vec<Option<PresenceJson>> = Vec::with_capacity(users.len());
    value.resize_with(users.len(), || None);
    state
        .store
        .read(&keys, &mut |index, facts| {
            let user = &users[index];
            value[index] = Some(presence_json(
                user,
                facts,
                now,
                state.timeouts,
                reader(&principal, user),
                None,
            ));
        })
        .await?;
    let value = value
        .into_iter()
        .zip(&users)
        .map(|(presence, user)| {
            presence.unwrap_or_else(|| {
                presence_json(
                    user,
                    None,
                    now,
                    state.timeouts,
                    reader(&principal, user),
                    None,
                )
            })
        })
        .collect();
    let root = service_root(&headers, &uri);
    Ok(Json(PresenceCollection {
        odata_context: format!("{root}/$metadata#Collection(microsoft.graph.presence)"),
        value,
    }))
}
