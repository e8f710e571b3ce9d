//! What presenced offers beyond Graph, under `/_presenced/`: the sessions
//! behind a presence and why it is what it is, out-of-office settings, and
//! the manual clock.

use axum::Json;
use axum::extract::{RawPathParams, State};
use axum::http::{Extensions, StatusCode};
use presence_core::{
    Command, Duration, OutOfOffice, SessionKind, UserKey, next_change, presence_at,
};
use serde_json::{Value, json};

use crate::auth::{Access, Principal};
use crate::http::error::ApiError;
use crate::http::ops::local_only_with_tokens;
use crate::http::presence::target_user;
use crate::http::wire::{ClockAdvanceBody, JsonBody, OutOfOfficeBody, decision_json, required};
use crate::state::AppState;
use crate::wire_time::{format_instant, parse_duration};

/// The longest single manual clock advance: ten years of 365 days.
const MAX_ADVANCE: Duration = Duration::from_days(3_650);

fn instant_or_null(instant: Option<presence_core::Instant>) -> Value {
    instant.map_or(Value::Null, |instant| {
        Value::String(format_instant(instant))
    })
}

/// `GET /_presenced/users/{id}/sessions`: each live session with what it
/// was set to, what it shows now, its stage, its next fade and its expiry,
/// and which rule decided the aggregate.
pub async fn get_sessions(
    State(state): State<AppState>,
    principal: Principal,
    params: RawPathParams,
) -> Result<Json<Value>, ApiError> {
    let user = target_user(&principal, &params)?;
    principal.authorize(Access::Read, &user)?;
    let key = UserKey::new(principal.tenant.clone(), user.clone());
    let timeouts = state.timeouts;
    let (facts, now) = state.service.facts(&key).await?;
    let presence = presence_at(&facts, now, timeouts);
    let decided_by = decision_json(&presence.decided_by);
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
    let sessions: Vec<Value> = live
        .iter()
        .map(|session| {
            let (set_availability, set_activity) = session.state.pair();
            let (availability, activity) = session.shown(now, timeouts);
            json!({
                "sessionId": session.id.as_str(),
                "kind": match session.kind {
                    SessionKind::Application => "application",
                    SessionKind::Legacy => "legacy",
                },
                "setAvailability": set_availability.as_str(),
                "setActivity": set_activity.as_str(),
                "availability": availability.as_str(),
                "activity": activity.as_str(),
                "stage": session.stage(now, timeouts).as_str(),
                "setDateTime": format_instant(session.set_at),
                "nextFadeDateTime": instant_or_null(session.next_fade(now, timeouts)),
                "expirationDateTime": format_instant(session.expires_at),
                "decidesPresence": presence.decided_by == presence_core::Decision::Session(&session.id),
            })
        })
        .collect();
    let preferred = facts
        .preferred()
        .filter(|preferred| preferred.is_live(now))
        .map(|preferred| {
            let (availability, activity) = preferred.state.pair();
            json!({
                "availability": availability.as_str(),
                "activity": activity.as_str(),
                "setDateTime": format_instant(preferred.set_at),
                "expirationDateTime": format_instant(preferred.expires_at),
                "inEffect": !live.is_empty(),
            })
        });
    Ok(Json(json!({
        "id": user.as_str(),
        "availability": presence.availability.as_str(),
        "activity": presence.activity.as_str(),
        "sequenceNumber": presence_core::format_sequence(presence.sequence),
        "decidedBy": decided_by,
        "nextChangeDateTime": instant_or_null(next_change(&facts, now, timeouts)),
        "userPreferredPresence": preferred.unwrap_or(Value::Null),
        "sessions": sessions,
        "now": format_instant(now),
    })))
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
) -> Result<Json<Value>, ApiError> {
    local_only_with_tokens(&state, &extensions, CLOCK_SPANS_TENANTS)?;
    require_manual_clock(&state)?;
    Ok(Json(json!({ "now": format_instant(state.clock.now()) })))
}

/// `POST /_presenced/clock/advance {"by": "PT5M"}`: moves the clock through
/// every due instant in order, ticking what falls due at exactly that
/// instant, and answers once all of it has been applied.
pub async fn advance_clock(
    State(state): State<AppState>,
    _caller: Principal,
    extensions: Extensions,
    JsonBody(body): JsonBody<ClockAdvanceBody>,
) -> Result<Json<Value>, ApiError> {
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
        return Ok(Json(json!({ "now": format_instant(state.clock.now()) })));
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
    Ok(Json(json!({ "now": format_instant(advanced?) })))
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
