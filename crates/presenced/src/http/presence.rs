//! Reading presence: one user (three path forms) and a batch.

use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use presence_core::UserId;

use crate::auth::{Access, Principal};
use crate::http::error::ApiError;
use crate::http::wire::{self, GetPresencesBody, JsonBody, PresenceJson, json_bytes_answer};
use crate::state::AppState;
use crate::wire::rendered::collection;

/// The most ids getPresencesByUserId takes, as Graph.
pub const MAX_BATCH_IDS: usize = 650;

/// The user a path names: its `{id}`, or the caller for `/me`.
pub fn target_user(principal: &Principal, params: &RawPathParams) -> Result<UserId, ApiError> {
    match params.iter().find(|(name, _)| *name == "id") {
        Some((_, id)) => wire::user_id(id),
        None => Ok(principal.me().cloned()?),
    }
}

/// The service root of a request (`https://host/v1.0`), from its own
/// address, for `@odata.context`; and whether it came through
/// `/communications/`. An extractor of its own so that a read does not
/// clone the whole header map to find one header.
#[derive(Debug)]
pub struct ServiceRoot {
    pub root: String,
    /// How much of `root` is its origin (`https://host`).
    origin_len: usize,
    pub communications: bool,
}

impl ServiceRoot {
    /// `https://host`: the root without its version.
    pub fn origin(&self) -> &str {
        &self.root[..self.origin_len]
    }

    /// The root of a request with these headers and this URI, served over
    /// `scheme`.
    pub fn of(headers: &HeaderMap, uri: &Uri, scheme: &str) -> ServiceRoot {
        // HTTP/1.1 names the host in `Host`; HTTP/2 in the request's
        // `:authority`, which hyper puts in the URI.
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| uri.authority().map(|authority| authority.as_str()))
            .unwrap_or("localhost");
        // Routes are matched on the full path: the URI is the original one.
        let path = uri.path();
        let version = if path.starts_with("/beta") {
            "/beta"
        } else {
            "/v1.0"
        };
        // Room for a presence's whole `@odata.context`, written after it.
        let mut root = String::with_capacity(160);
        root.push_str(scheme);
        root.push_str("://");
        root.push_str(host);
        let origin_len = root.len();
        root.push_str(version);
        ServiceRoot {
            root,
            origin_len,
            communications: path.contains("/communications/"),
        }
    }
}

impl FromRequestParts<AppState> for ServiceRoot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ServiceRoot, Self::Rejection> {
        Ok(ServiceRoot::of(&parts.headers, &parts.uri, state.scheme))
    }
}

pub async fn get_presence(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    root: ServiceRoot,
) -> Result<Response, ApiError> {
    let user = target_user(&principal, &params)?;
    principal.authorize(Access::Read, &user)?;
    presence_answer(&state, &principal, user, root).await
}

/// The answer to a GET of `user`'s presence by `principal`, who may read
/// it: the router's handler and the direct route (`direct.rs`) both answer
/// with this.
pub async fn presence_answer(
    state: &AppState,
    principal: &Principal,
    user: UserId,
    root: ServiceRoot,
) -> Result<Response, ApiError> {
    let mut context = root.root;
    if root.communications {
        context.push_str("/$metadata#communications/presences/$entity");
    } else {
        context.push_str("/$metadata#users('");
        context.push_str(&user.as_str());
        context.push_str("')/presence/$entity");
    }
    let key = presence_core::UserKey::new(principal.tenant.clone(), user);
    let body = state
        .service
        .read_one_json(&key, &principal.viewer(), Some(&context))
        .await?;
    Ok(json_bytes_answer(body))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PresenceCollection {
    #[serde(rename = "@odata.context")]
    pub odata_context: String,
    pub value: Vec<PresenceJson>,
    /// The next page of a paged list (`GET /_presenced/users`).
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

pub async fn get_presences_by_user_id(
    State(state): State<AppState>,
    principal: Principal,
    root: ServiceRoot,
    JsonBody(body): JsonBody<GetPresencesBody>,
) -> Result<Response, ApiError> {
    let Some(ids) = body.ids else {
        return Err(ApiError::InvalidArgument(
            "[Ids]: The Ids field is required; send {\"ids\": [\"<user id>\", ...]}.".into(),
        ));
    };
    if ids.count > MAX_BATCH_IDS {
        return Err(ApiError::InvalidArgument(format!(
            "ids has {} entries; at most {MAX_BATCH_IDS} are allowed in one request.",
            ids.count
        )));
    }
    if let Some(fault) = ids.fault {
        return Err(fault);
    }
    let users = ids.users;
    principal.authorize_many(&users)?;
    let value = state
        .service
        .read_json(&principal.tenant, &users, &principal.viewer())
        .await?;
    let context = format!(
        "{}/$metadata#Collection(microsoft.graph.presence)",
        root.root
    );
    Ok(json_bytes_answer(collection(&context, value.iter()).into()))
}
