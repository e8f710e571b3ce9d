//! `/subscriptions`: Graph's change-notification subscriptions for
//! presences (create with the validation handshake, list, get, renew,
//! reauthorize, delete), and `GET /_presenced/stream`, the live stream.
//!
//! A caller sees and changes only the subscriptions its own application
//! made in its own tenant; another's answer 404, as if they did not exist.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use presence_core::{Instant, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Access, Caller, Principal};
use crate::http::error::ApiError;
use crate::http::paging::{Listed, Page};
use crate::http::presence::ServiceRoot;
use crate::http::wire::{self, JsonBody, json_answer};
use crate::notify::crypto::EncryptionCertificate;
use crate::notify::subscription::{self, MAX_CLIENT_STATE, Owner, Subscription};
use crate::notify::{NotifyError, address};
use crate::state::AppState;
use crate::wire::schema;
use crate::wire_time::{format_instant, parse_instant};

/// `POST /subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBody {
    #[schema(required = true, schema_with = schema::change_type)]
    pub change_type: Option<String>,
    /// An https URL (http only with --allow-private-webhooks), validated
    /// with Graph's handshake before the subscription is made.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub notification_url: Option<String>,
    /// Where lifecycle notifications go; validated like notificationUrl.
    pub lifecycle_notification_url: Option<String>,
    /// `/communications/presences/{id}`, or
    /// `/communications/presences?$filter=id in ('a','b')` for up to 650 users.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub resource: Option<String>,
    /// In the future, and at most the longest lifetime allowed (one hour by default).
    #[schema(required = true, schema_with = expiration_date_time)]
    pub expiration_date_time: Option<String>,
    /// Sent back with every notification; at most 128 characters.
    #[schema(max_length = 128)]
    pub client_state: Option<String>,
    /// With true, encryptionCertificate and encryptionCertificateId are required.
    pub include_resource_data: Option<bool>,
    /// Base64 of an X.509 certificate with an RSA public key.
    pub encryption_certificate: Option<String>,
    pub encryption_certificate_id: Option<String>,
    pub latest_supported_tls_version: Option<String>,
}

impl crate::http::wire::RequestBody for SubscriptionBody {}

/// `PATCH /subscriptions/{id}`: renew, or move.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionUpdateBody {
    /// The new expiration: in the future, and at most the longest lifetime allowed.
    #[schema(schema_with = new_expiration_date_time)]
    pub expiration_date_time: Option<String>,
    /// A new notification URL, validated again with the handshake.
    pub notification_url: Option<String>,
    /// Can only be set at creation: only the current value is accepted.
    pub lifecycle_notification_url: Option<String>,
}

impl crate::http::wire::RequestBody for SubscriptionUpdateBody {}

fn expiration_date_time() -> utoipa::openapi::schema::Object {
    schema::instant("An RFC 3339 instant, e.g. 2026-01-01T10:00:00Z.")
}

fn new_expiration_date_time() -> utoipa::openapi::schema::Object {
    schema::nullable(expiration_date_time())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionJson {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    odata_context: Option<String>,
    id: String,
    resource: String,
    #[schema(required = true)]
    application_id: Option<String>,
    #[schema(schema_with = schema::change_type)]
    change_type: &'static str,
    #[schema(required = true)]
    client_state: Option<String>,
    notification_url: String,
    #[schema(required = true)]
    notification_query_options: Option<String>,
    #[schema(required = true)]
    lifecycle_notification_url: Option<String>,
    #[schema(schema_with = expiration_date_time)]
    expiration_date_time: String,
    #[schema(required = true)]
    creator_id: Option<String>,
    include_resource_data: bool,
    latest_supported_tls_version: String,
    #[schema(required = true)]
    encryption_certificate: Option<String>,
    #[schema(required = true)]
    encryption_certificate_id: Option<String>,
    #[schema(required = true)]
    notification_url_app_id: Option<String>,
}

impl SubscriptionJson {
    fn new(subscription: &Subscription, odata_context: Option<String>) -> SubscriptionJson {
        SubscriptionJson {
            odata_context,
            id: subscription.id.clone(),
            resource: subscription.resource.clone(),
            application_id: subscription.application_id.clone(),
            change_type: "updated",
            client_state: subscription.client_state.clone(),
            notification_url: subscription.notification_url.clone(),
            notification_query_options: None,
            lifecycle_notification_url: subscription.lifecycle_notification_url.clone(),
            expiration_date_time: format_instant(subscription.expiration),
            creator_id: subscription.creator_id.clone(),
            include_resource_data: subscription.include_resource_data,
            latest_supported_tls_version: subscription.latest_supported_tls_version.clone(),
            encryption_certificate: subscription.encryption_certificate.clone(),
            encryption_certificate_id: subscription.encryption_certificate_id.clone(),
            notification_url_app_id: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionCollection {
    #[serde(rename = "@odata.context")]
    odata_context: String,
    /// One page, in the order of the subscriptions' ids; `clientState` is
    /// withheld (null), as Graph's list does.
    value: Vec<SubscriptionJson>,
    /// The next page, when there is one.
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

/// How `GET /subscriptions` pages: 100 a page unless `$top` says otherwise.
const SUBSCRIPTIONS: Listed = Listed {
    what: "subscriptions",
    default_page: 100,
    max_page: 1000,
};

fn invalid(message: String) -> ApiError {
    ApiError::Refused("InvalidRequest", message)
}

fn required<'a>(
    value: &'a Option<String>,
    field: &str,
    example: &str,
) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "{field} is required, e.g. \"{field}\": \"{example}\"."
            ))
        })
}

/// Checks an `expirationDateTime`: in the future, and no further than the
/// longest lifetime allowed.
fn expiration(state: &AppState, text: &str) -> Result<Instant, ApiError> {
    let at = parse_instant("expirationDateTime", text).map_err(invalid)?;
    let now = state.clock.now();
    if at <= now {
        return Err(invalid(format!(
            "expirationDateTime {} is not in the future; the server's time is {}.",
            wire::truncate(text),
            format_instant(now)
        )));
    }
    let longest = state.notifier.settings.max_lifetime;
    if at.duration_since(now) > longest {
        let minutes = longest.as_millis() / 60_000;
        return Err(ApiError::Refused(
            "ExtensionError",
            format!(
                "Subscription expiration can only be {minutes} minutes in the future; expirationDateTime may be at most {} (the server's time plus {minutes} minutes).",
                format_instant(now.saturating_add(longest))
            ),
        ));
    }
    Ok(at)
}

/// Checks a notification URL: its scheme, and where its host resolves.
async fn checked_url(state: &AppState, field: &str, text: &str) -> Result<url::Url, ApiError> {
    address::check_url(field, text, state.notifier.settings.allow_private)
        .await
        .map_err(invalid)
}

/// Graph's validation handshake with a checked URL.
async fn handshake(state: &AppState, field: &str, url: &url::Url) -> Result<(), ApiError> {
    state
        .notifier
        .delivery()
        .validate(field, url)
        .await
        .map_err(|message| ApiError::Refused("ValidationError", message))
}

fn context(root: &ServiceRoot, what: &str) -> String {
    format!("{}/$metadata#{what}", root.root)
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "No subscription '{}' exists for this application in this tenant; it may have expired or been deleted.",
        wire::truncate(id)
    ))
}

/// The most subscriptions one application may hold in one tenant: far
/// more than 650 users each needs, few enough that one caller cannot make
/// every change cost thousands of notifications.
pub const MAX_SUBSCRIPTIONS_PER_APPLICATION: usize = 10_000;

/// Whose subscriptions a caller sees: its application's in its tenant,
/// and for a signed-in user the ones that user created.
fn owner(principal: &Principal) -> Owner {
    Owner {
        tenant: principal.tenant.clone(),
        application: principal.app_id().map(str::to_string),
        user: match &principal.caller {
            Caller::Delegated { user, .. } => Some(user.as_str().to_string()),
            Caller::Application { .. } => None,
        },
    }
}

/// The caller's own subscription `id`; 404 for anyone else's.
fn owned(state: &AppState, principal: &Principal, id: &str) -> Result<Arc<Subscription>, ApiError> {
    state
        .notifier
        .get(id, &owner(principal))
        .ok_or_else(|| not_found(id))
}

fn notify_error(id: &str, error: NotifyError) -> ApiError {
    match error {
        NotifyError::NotFound => not_found(id),
        NotifyError::Store(error) => ApiError::Unavailable(error),
    }
}

/// `POST /subscriptions`.
pub async fn create_subscription(
    State(state): State<AppState>,
    principal: Principal,
    root: ServiceRoot,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> Result<Response, ApiError> {
    let change_type = required(&body.change_type, "changeType", "updated")?;
    if !change_type.trim().eq_ignore_ascii_case("updated") {
        return Err(invalid(format!(
            "changeType '{}' is not supported for presence; the only changeType is 'updated'.",
            wire::truncate(change_type)
        )));
    }
    let resource = required(&body.resource, "resource", "/communications/presences/{id}")?;
    let users = subscription::parse_resource(resource).map_err(invalid)?;
    let expires = expiration(
        &state,
        required(
            &body.expiration_date_time,
            "expirationDateTime",
            "2026-01-01T10:00:00Z",
        )?,
    )?;
    if let Some(client_state) = &body.client_state
        && client_state.chars().count() > MAX_CLIENT_STATE
    {
        return Err(invalid(format!(
            "clientState is {} characters long; it may have at most {MAX_CLIENT_STATE}.",
            client_state.chars().count()
        )));
    }
    let include_resource_data = body.include_resource_data.unwrap_or(false);
    let certificate = match (
        include_resource_data,
        &body.encryption_certificate,
        &body.encryption_certificate_id,
    ) {
        (false, _, _) => None,
        (true, Some(certificate), Some(id)) => {
            Some(EncryptionCertificate::parse(certificate, id).map_err(invalid)?)
        }
        (true, _, _) => {
            return Err(invalid(
                "includeResourceData is true, so encryptionCertificate (base64 of an X.509 certificate with an RSA public key) and encryptionCertificateId are required.".into(),
            ));
        }
    };
    for user in &users {
        principal.authorize(Access::Read, user)?;
    }
    if state.notifier.count(&principal.tenant, principal.app_id())
        >= MAX_SUBSCRIPTIONS_PER_APPLICATION
    {
        return Err(ApiError::Refused(
            "ExtensionError",
            format!(
                "This application already has {MAX_SUBSCRIPTIONS_PER_APPLICATION} subscriptions in this tenant; delete some, or name up to 650 users in one subscription."
            ),
        ));
    }
    let notification_url = required(
        &body.notification_url,
        "notificationUrl",
        "https://webhook.example.com/api",
    )?;
    // Both addresses are checked before either handshake, so that a bad
    // lifecycle URL is reported without calling the other.
    let checked = checked_url(&state, "notificationUrl", notification_url).await?;
    let lifecycle_checked = match &body.lifecycle_notification_url {
        Some(lifecycle) => Some(checked_url(&state, "lifecycleNotificationUrl", lifecycle).await?),
        None => None,
    };
    handshake(&state, "notificationUrl", &checked).await?;
    if let Some(lifecycle) = &lifecycle_checked {
        handshake(&state, "lifecycleNotificationUrl", lifecycle).await?;
    }
    // The handshakes may have taken up to 20 s.
    if expires <= state.clock.now() {
        return Err(invalid(
            "expirationDateTime passed while the notification URLs were being validated; send a later one.".into(),
        ));
    }
    // The signed-in user, or the application acting as itself.
    let owner = owner(&principal);
    let creator = owner.user.clone().or_else(|| owner.application.clone());
    let mut subscription = Subscription::new(
        owner.tenant,
        owner.application,
        creator,
        resource.trim().to_string(),
        users,
        notification_url.to_string(),
        body.lifecycle_notification_url.clone(),
        expires,
    );
    subscription.client_state = body.client_state.clone();
    subscription.include_resource_data = include_resource_data;
    if certificate.is_some() {
        subscription.encryption_certificate = body.encryption_certificate.clone();
        subscription.encryption_certificate_id = body.encryption_certificate_id.clone();
    }
    if let Some(version) = &body.latest_supported_tls_version {
        subscription.latest_supported_tls_version = version.clone();
    }
    let created = state.notifier.create(subscription, certificate).await?;
    let json = SubscriptionJson::new(&created, Some(context(&root, "subscriptions/$entity")));
    let mut response = json_answer(&json, 1024);
    *response.status_mut() = StatusCode::CREATED;
    // The id is a UUID, so the address is a valid header value.
    let location = format!("{}/subscriptions/{}", root.root, created.id);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /subscriptions`: a page of the caller's subscriptions, `$top` of
/// them (100 by default), with `@odata.nextLink` to the next page while
/// more follow. Pages follow the subscriptions' ids, so that one renewed or
/// created between two pages never moves another across the boundary.
pub async fn list_subscriptions(
    State(state): State<AppState>,
    principal: Principal,
    root: ServiceRoot,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let page = Page::parse(query.as_deref(), SUBSCRIPTIONS)?;
    let all = state.notifier.list(&owner(&principal));
    let (listed, next_link) = page.of(
        &all,
        |subscription| subscription.id.as_str(),
        &format!("{}/subscriptions", root.root),
    );
    let value = listed
        .iter()
        .map(|subscription| {
            let mut json = SubscriptionJson::new(subscription, None);
            // Graph's list withholds what the subscriber chose as a secret.
            json.client_state = None;
            json
        })
        .collect();
    let collection = SubscriptionCollection {
        odata_context: context(&root, "subscriptions"),
        value,
        next_link,
    };
    Ok(json_answer(&collection, 4096))
}

/// `GET /subscriptions/{id}`.
pub async fn get_subscription(
    State(state): State<AppState>,
    principal: Principal,
    root: ServiceRoot,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let subscription = owned(&state, &principal, &id)?;
    let json = SubscriptionJson::new(&subscription, Some(context(&root, "subscriptions/$entity")));
    Ok(json_answer(&json, 1024))
}

/// `PATCH /subscriptions/{id}`: renew (`expirationDateTime`) or move
/// (`notificationUrl`, validated again).
pub async fn update_subscription(
    State(state): State<AppState>,
    principal: Principal,
    root: ServiceRoot,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SubscriptionUpdateBody>,
) -> Result<Response, ApiError> {
    let existing = owned(&state, &principal, &id)?;
    // The caller's permissions may have changed since it subscribed.
    for user in &existing.users {
        principal.authorize(Access::Read, user)?;
    }
    if body
        .lifecycle_notification_url
        .as_ref()
        .is_some_and(|url| Some(url) != existing.lifecycle_notification_url.as_ref())
    {
        return Err(invalid(
            "lifecycleNotificationUrl can only be set when the subscription is created; create a new subscription to change it.".into(),
        ));
    }
    let expires = body
        .expiration_date_time
        .as_deref()
        .map(|text| expiration(&state, text))
        .transpose()?;
    let notification_url = match &body.notification_url {
        Some(url) if *url != existing.notification_url => {
            let checked = checked_url(&state, "notificationUrl", url).await?;
            handshake(&state, "notificationUrl", &checked).await?;
            Some(url.clone())
        }
        _ => None,
    };
    if expires.is_none() && notification_url.is_none() && body.notification_url.is_none() {
        return Err(invalid(
            "Send expirationDateTime to renew the subscription, or notificationUrl to move it; nothing else can be changed.".into(),
        ));
    }
    let updated = state
        .notifier
        .update(&id, &owner(&principal), |subscription| {
            if let Some(expires) = expires {
                subscription.expiration = expires;
            }
            if let Some(url) = notification_url {
                subscription.notification_url = url;
            }
        })
        .await
        .map_err(|error| notify_error(&id, error))?;
    let json = SubscriptionJson::new(&updated, Some(context(&root, "subscriptions/$entity")));
    Ok(json_answer(&json, 1024))
}

/// `DELETE /subscriptions/{id}`: 204.
pub async fn delete_subscription(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .notifier
        .delete(&id, &owner(&principal))
        .await
        .map_err(|error| notify_error(&id, error))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /subscriptions/{id}/reauthorize`: 204. The caller's token was
/// verified for this request; nothing else is needed.
pub async fn reauthorize_subscription(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let subscription = owned(&state, &principal, &id)?;
    for user in &subscription.users {
        principal.authorize(Access::Read, user)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------
// The live stream.

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    ids: Option<String>,
}

fn presence_event(id: String, data: String) -> Event {
    Event::default().event("presence").id(id).data(data)
}

/// How long a client should wait before it reconnects: 1 to 3 s, drawn for
/// each stream, so that clients dropped together (a node stopping, a load
/// balancer restarting, a network blip) come back spread over two seconds
/// rather than in one wave.
fn reconnect_wait() -> std::time::Duration {
    std::time::Duration::from_millis(rand::random_range(1_000..=3_000))
}

/// `GET /_presenced/stream?ids=a,b`: Server-Sent Events, one `presence`
/// event per visible change of the named users (of the caller's whole
/// tenant without `ids`, which needs `Presence.Read.All`). A new stream
/// starts with a `retry:` field (see [`reconnect_wait`]) and the `id:` that
/// resumes before anything it sends, then each named user's current
/// presence; `Last-Event-ID` resumes where a dropped one stopped. A stream
/// ended by presenced stopping closes with the `id:` that resumes after all
/// it sent. So a client always has an id to resume with, even when it was
/// dropped before its first presence event, or when none of the changes
/// it heard were its users'.
pub async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let users: Option<Vec<UserId>> = match query.ids.as_deref() {
        None => None,
        Some(text) => {
            let mut users = Vec::new();
            for id in text.split(',').map(str::trim).filter(|id| !id.is_empty()) {
                let user = wire::user_id(id)?;
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            if users.is_empty() {
                return Err(ApiError::InvalidArgument(
                    "ids names no user; give ids=a,b or leave it out to stream the whole tenant."
                        .into(),
                ));
            }
            if users.len() > crate::http::presence::MAX_BATCH_IDS {
                return Err(ApiError::InvalidArgument(format!(
                    "ids names {} users; one stream takes at most {}.",
                    users.len(),
                    crate::http::presence::MAX_BATCH_IDS
                )));
            }
            Some(users)
        }
    };
    match &users {
        Some(users) => {
            for user in users {
                principal.authorize(Access::Read, user)?;
            }
        }
        None => {
            if !principal.reads_tenant() {
                return Err(ApiError::Forbidden(
                    "Streaming a whole tenant needs Presence.Read.All or Presence.ReadWrite.All; name the users with ids=a,b to stream only those.".into(),
                ));
            }
        }
    }
    // One permit per open stream, held by the stream's body: released
    // when the stream ends or its client goes away.
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        return Err(ApiError::TooManyStreams(format!(
            "This presenced node holds {} live streams, its limit (--max-streams); retry after Retry-After, or on another node.",
            state.limits.max_streams
        )));
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let stream = state
        .service
        .stream(principal.tenant.clone(), users, principal.viewer(), resume)
        .await?;
    let stopping = state.notifier.shutdown().clone();
    let opening = Event::default()
        .id(stream.start_id())
        .retry(reconnect_wait());
    let live = futures_util::stream::unfold(Some((stream, permit)), move |open| {
        let stopping = stopping.clone();
        async move {
            let (mut stream, permit) = open?;
            match stream.next().await {
                Some((id, presence)) => {
                    let event =
                        presence_event(id, serde_json::to_string(&presence).unwrap_or_default());
                    Some((Ok::<Event, Infallible>(event), Some((stream, permit))))
                }
                // The node is stopping: the client is told to come back
                // (to another node, through the load balancer) after a
                // short, spread-out wait, and resumes with Last-Event-ID.
                None if stopping.is_cancelled() => {
                    let event = Event::default()
                        .comment("presenced is stopping; reconnect to resume")
                        .id(stream.resume_id())
                        .retry(reconnect_wait());
                    Some((Ok(event), None))
                }
                None => None,
            }
        }
    });
    let events = futures_util::stream::once(std::future::ready(Ok(opening))).chain(live);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
