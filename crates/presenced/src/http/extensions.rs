//! What presenced offers beyond Graph, under `/_presenced/`: the sessions
//! behind a presence and why it is what it is, out-of-office settings, and
//! the manual clock.

use axum::Json;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{Extensions, StatusCode};
use axum::response::Response;
use presence_core::{
    Command, Duration, OutOfOffice, SessionKind, UserId, UserKey, next_change, presence_at,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Access, Principal};
use crate::http::error::ApiError;
use crate::http::ops::local_only_with_tokens;
use crate::http::paging::{Listed, Page};
use crate::http::presence::{PresenceCollection, ServiceRoot, target_user};
use crate::http::wire::{
    ClockAdvanceBody, JsonBody, OutOfOfficeBody, PRESENCE_JSON_BYTES, json_answer, required,
};
use crate::state::AppState;
use crate::wire::presence::DecisionJson;
use crate::wire::schema;
use crate::wire_time::{format_instant, parse_duration};

/// The longest single manual clock advance: ten years of 365 days.
const MAX_ADVANCE: Duration = Duration::from_days(3_650);

/// What `GET /_presenced/users/{id}/sessions` answers: the presence, the
/// rule that decided it, and the facts behind it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionsJson {
    id: String,
    #[schema(schema_with = schema::availability)]
    availability: &'static str,
    #[schema(schema_with = schema::activity)]
    activity: &'static str,
    sequence_number: String,
    decided_by: DecisionJson,
    /// The next instant the presence shown changes by itself; `null` if never.
    #[schema(required = true, schema_with = nullable_instant)]
    next_change_date_time: Option<String>,
    /// `null` when none is set (or it has ended).
    #[schema(required = true)]
    user_preferred_presence: Option<PreferredJson>,
    /// The live sessions, strongest first.
    sessions: Vec<SessionJson>,
    #[schema(schema_with = now)]
    now: String,
}

/// One live session, as `GET /_presenced/users/{id}/sessions` shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionJson {
    session_id: String,
    #[schema(schema_with = schema::session_kind)]
    kind: &'static str,
    /// What the session was set to.
    #[schema(schema_with = schema::availability)]
    set_availability: &'static str,
    #[schema(schema_with = schema::activity)]
    set_activity: &'static str,
    /// What it shows now.
    #[schema(schema_with = schema::availability)]
    availability: &'static str,
    #[schema(schema_with = schema::activity)]
    activity: &'static str,
    #[schema(schema_with = schema::stage)]
    stage: &'static str,
    #[schema(schema_with = set_date_time)]
    set_date_time: String,
    /// `null` for a session that does not fade (any more).
    #[schema(required = true, schema_with = nullable_instant)]
    next_fade_date_time: Option<String>,
    #[schema(schema_with = expiration_date_time)]
    expiration_date_time: String,
    decides_presence: bool,
}

/// The user-preferred presence, as `GET /_presenced/users/{id}/sessions`
/// shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferredJson {
    #[schema(schema_with = schema::availability)]
    availability: &'static str,
    #[schema(schema_with = schema::activity)]
    activity: &'static str,
    #[schema(schema_with = set_date_time)]
    set_date_time: String,
    #[schema(schema_with = expiration_date_time)]
    expiration_date_time: String,
    /// Whether it decides the presence: only while a session exists.
    in_effect: bool,
}

/// The manual clock's now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClockJson {
    #[schema(schema_with = now)]
    now: String,
}

fn now() -> utoipa::openapi::schema::Object {
    schema::instant("The server's now.")
}

fn set_date_time() -> utoipa::openapi::schema::Object {
    schema::instant("When it was last set.")
}

fn expiration_date_time() -> utoipa::openapi::schema::Object {
    schema::instant("The first instant at which it no longer exists.")
}

fn nullable_instant() -> utoipa::openapi::schema::Object {
    let mut instant = schema::instant("An instant, or null.");
    instant.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    instant
}

/// `GET /_presenced/users/{id}/sessions`: each live session with what it
/// was set to, what it shows now, its stage, its next fade and its expiry,
/// and which rule decided the aggregate.
pub async fn get_sessions(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let user = target_user(&principal, &params)?;
    principal.authorize(Access::Read, &user)?;
    let key = UserKey::new(principal.tenant.clone(), user.clone());
    let timeouts = state.timeouts;
    let (facts, now) = state.service.facts(&key).await?;
    let presence = presence_at(&facts, now, timeouts);
    let mut live: Vec<_> = facts
        .sessions
        .iter()
        .filter(|session| session.is_live(now))
        .collect();
    live.sort_by(|a, b| {
        b.strength(now, timeouts)
            .cmp(&a.strength(now, timeouts))
            .then(b.set_at.cmp(&a.set_at))
    });
    let sessions = live
        .iter()
        .map(|session| {
            let (set_availability, set_activity) = session.state.pair();
            let (availability, activity) = session.shown(now, timeouts);
            SessionJson {
                session_id: session.id.as_str().to_string(),
                kind: match session.kind {
                    SessionKind::Application => "application",
                    SessionKind::Legacy => "legacy",
                },
                set_availability: set_availability.as_str(),
                set_activity: set_activity.as_str(),
                availability: availability.as_str(),
                activity: activity.as_str(),
                stage: session.stage(now, timeouts).as_str(),
                set_date_time: format_instant(session.set_at),
                next_fade_date_time: session.next_fade(now, timeouts).map(format_instant),
                expiration_date_time: format_instant(session.expires_at),
                decides_presence: presence.decided_by
                    == presence_core::Decision::Session(&session.id),
            }
        })
        .collect();
    let user_preferred_presence = facts
        .preferred()
        .filter(|preferred| preferred.is_live(now))
        .map(|preferred| {
            let (availability, activity) = preferred.state.pair();
            PreferredJson {
                availability: availability.as_str(),
                activity: activity.as_str(),
                set_date_time: format_instant(preferred.set_at),
                expiration_date_time: format_instant(preferred.expires_at),
                in_effect: !live.is_empty(),
            }
        });
    let answer = SessionsJson {
        id: user.as_str().to_string(),
        availability: presence.availability.as_str(),
        activity: presence.activity.as_str(),
        sequence_number: presence_core::format_sequence(presence.sequence),
        decided_by: DecisionJson::new(&presence.decided_by),
        next_change_date_time: next_change(&facts, now, timeouts).map(format_instant),
        user_preferred_presence,
        sessions,
        now: format_instant(now),
    };
    Ok(json_answer(&answer, 1024))
}

/// How `GET /_presenced/users` pages: a thousand presences a page unless
/// `$top` asks for fewer.
const USERS: Listed = Listed {
    what: "users",
    default_page: 1000,
    max_page: 1000,
};

/// `GET /_presenced/users`: the presence of every user the caller's tenant
/// holds facts for (Offline ones included), a page at a time in the order
/// of their ids, with `@odata.nextLink` while more follow. It spans the
/// tenant, so it needs `Presence.Read.All`, as the tenant's stream does.
/// The board reads it once the stream is open, and keeps for each user
/// whichever of the two carries the higher `sequenceNumber`.
pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    root: ServiceRoot,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let page = Page::parse(query.as_deref(), USERS)?;
    if !principal.reads_tenant() {
        return Err(ApiError::Forbidden(
            "Listing a tenant's users needs Presence.Read.All or Presence.ReadWrite.All; read named users with getPresencesByUserId instead.".into(),
        ));
    }
    let all = state.service.users_of(&principal.tenant).await?;
    let (listed, next_link) = page.of(
        &all,
        |(text, _)| text.as_str(),
        &format!("{}/_presenced/users", root.origin()),
    );
    let users: Vec<UserId> = listed.iter().map(|(_, user)| user.clone()).collect();
    let value = state
        .service
        .read(&principal.tenant, &users, &principal.viewer(), |_| None)
        .await?;
    let capacity = 200 + value.len() * PRESENCE_JSON_BYTES;
    let collection = PresenceCollection {
        odata_context: format!(
            "{}/v1.0/$metadata#Collection(microsoft.graph.presence)",
            root.origin()
        ),
        value,
        next_link,
    };
    Ok(json_answer(&collection, capacity))
}

/// `PUT /_presenced/users/{id}/outOfOffice`.
pub async fn put_out_of_office(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
    JsonBody(body): JsonBody<OutOfOfficeBody>,
) -> Result<StatusCode, ApiError> {
    let Some(is_out_of_office) = body.is_out_of_office else {
        return Err(ApiError::InvalidArgument(
            "[IsOutOfOffice]: The IsOutOfOffice field is required; send true or false.".into(),
        ));
    };
    if body
        .message
        .as_ref()
        .is_some_and(|message| message.chars().count() > 4_000)
    {
        return Err(ApiError::InvalidArgument(
            "message is longer than 4000 characters; send a shorter message.".into(),
        ));
    }
    let user = target_user(&principal, &params)?;
    principal.authorize(Access::Write, &user)?;
    let settings = OutOfOffice {
        is_out_of_office,
        message: body.message,
    };
    state
        .service
        .apply(
            &UserKey::new(principal.tenant.clone(), user),
            &Command::SetOutOfOffice(settings),
        )
        .await?;
    Ok(StatusCode::OK)
}

const CLOCK_SPANS_TENANTS: &str = "The manual clock is every tenant's";

fn require_manual_clock(state: &AppState) -> Result<(), ApiError> {
    if state.clock.is_manual() {
        Ok(())
    } else {
        Err(ApiError::NotFound(
            "The manual clock exists only when presenced runs with --clock manual.".into(),
        ))
    }
}

/// `GET /_presenced/clock`.
///
/// The manual clock is the whole server's: moving it fires every tenant's
/// fades. So with tokens it takes a valid token and is served only to
/// clients on the server's own machine, like `/metrics`.
pub async fn get_clock(
    State(state): State<AppState>,
    _caller: Principal,
    extensions: Extensions,
) -> Result<Json<ClockJson>, ApiError> {
    local_only_with_tokens(&state, &extensions, CLOCK_SPANS_TENANTS)?;
    require_manual_clock(&state)?;
    Ok(Json(ClockJson {
        now: format_instant(state.clock.now()),
    }))
}

/// `POST /_presenced/clock/advance {"by": "PT5M"}`: moves the clock through
/// every due instant in order, ticking what falls due at exactly that
/// instant, and answers once all of it has been applied.
pub async fn advance_clock(
    State(state): State<AppState>,
    _caller: Principal,
    extensions: Extensions,
    JsonBody(body): JsonBody<ClockAdvanceBody>,
) -> Result<Json<ClockJson>, ApiError> {
    local_only_with_tokens(&state, &extensions, CLOCK_SPANS_TENANTS)?;
    require_manual_clock(&state)?;
    let by = parse_duration("by", required(&body.by, "by")?).map_err(ApiError::InvalidArgument)?;
    if by.as_millis() < 0 {
        return Err(ApiError::InvalidArgument(
            "by must not be negative: the manual clock only moves forward.".into(),
        ));
    }
    if by > MAX_ADVANCE {
        return Err(ApiError::InvalidArgument(
            "by is longer than ten years; advance in smaller steps.".into(),
        ));
    }
    let timeline = state.timeline.get().ok_or_else(|| {
        ApiError::Unavailable(presence_store::StoreError::Unavailable(
            "presenced is still loading its store".into(),
        ))
    })?;
    let Some(redis) = state.redis.get() else {
        let target = state.clock.now().saturating_add(by);
        timeline.advance(&state.clock, target).await;
        return Ok(Json(ClockJson {
            now: format_instant(state.clock.now()),
        }));
    };
    // Many nodes share the clock in Redis: one advance at a time across
    // them, from the clock as Redis holds it.
    let token = lock_advances(redis).await?;
    let advanced = async {
        if let Some(shared) = redis.clock().await? {
            state.clock.set_manual(shared);
        }
        let target = state.clock.now().saturating_add(by);
        timeline.advance(&state.clock, target).await;
        let now = redis.set_clock(target).await?;
        state.clock.set_manual(now);
        Ok::<_, presence_store::StoreError>(now)
    }
    .await;
    if let Err(error) = redis.unlock(ADVANCING, &token).await {
        tracing::warn!(%error, "could not unlock the clock's advance; it lapses by itself");
    }
    Ok(Json(ClockJson {
        now: format_instant(advanced?),
    }))
}

/// The cluster-wide lock of the shared clock's advances.
const ADVANCING: &str = "clock:advancing";

/// How long an advance may hold the lock (a node that dies holding it
/// blocks the others this long at most).
const ADVANCE_LOCK: std::time::Duration = std::time::Duration::from_secs(120);

async fn lock_advances(redis: &presence_store::RedisStore) -> Result<String, ApiError> {
    let deadline = tokio::time::Instant::now() + ADVANCE_LOCK;
    loop {
        if let Some(token) = redis.lock(ADVANCING, ADVANCE_LOCK).await? {
            return Ok(token);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Unavailable(
                presence_store::StoreError::Unavailable(
                    "another node's advance of the shared clock is still running; retry".into(),
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// With many nodes on the manual clock, every request first reads the
/// clock from Redis, so that an advance made through any node shows on
/// every node at once.
pub async fn follow_shared_clock(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.clock.is_manual()
        && let Some(redis) = state.redis.get()
    {
        match redis.clock().await {
            Ok(Some(at)) => state.clock.set_manual(at),
            Ok(None) => {}
            Err(error) => return ApiError::Unavailable(error).into_response(),
        }
    }
    next.run(request).await
}
