//! Changes to one user's facts, as data, and the pure function that applies
//! them. Every store applies a command as one atomic read-modify-write of one
//! user's facts, so the same command means the same thing on every backend.

use serde::{Deserialize, Serialize};

use crate::facts::{
    OutOfOffice, PreferredPresence, Session, SessionKind, StatusMessage, StatusMessageExpiry,
    Timeouts, UserFacts, WorkLocation,
};
use crate::id::SessionId;
use crate::presence::{sequence_at, visibly_differs};
use crate::state::{PreferredState, SessionState};
use crate::time::{Duration, Instant};

/// The most sessions one user may hold at once. Graph has one per app plus
/// Teams' own clients; the bound keeps a runaway client from growing a user
/// without limit.
pub const MAX_SESSIONS_PER_USER: usize = 64;

/// A setPresence expiration: between five minutes and four hours, as Graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionExpiration(Duration);

impl SessionExpiration {
    pub const MIN: Duration = Duration::from_mins(5);
    pub const MAX: Duration = Duration::from_hours(4);
    pub const DEFAULT: SessionExpiration = SessionExpiration(Duration::from_mins(5));

    /// `None` if the duration lies outside PT5M..=PT4H.
    pub fn new(duration: Duration) -> Option<SessionExpiration> {
        (SessionExpiration::MIN..=SessionExpiration::MAX)
            .contains(&duration)
            .then_some(SessionExpiration(duration))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

/// A user-preferred presence expiration: any positive duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferredExpiration(Duration);

impl PreferredExpiration {
    pub fn new(duration: Duration) -> Option<PreferredExpiration> {
        duration
            .is_positive()
            .then_some(PreferredExpiration(duration))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

/// A status message to set; `None` content clears it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessageInput {
    pub content: String,
    pub expiry: Option<StatusMessageExpiry>,
}

/// One change to one user's facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    SetPresence {
        session_id: SessionId,
        state: SessionState,
        expiration: SessionExpiration,
    },
    ClearPresence {
        session_id: SessionId,
    },
    /// The legacy beta `PUT .../sessions/{id}`: no expiration parameter.
    PutLegacySession {
        session_id: SessionId,
        state: SessionState,
    },
    SetUserPreferredPresence {
        state: PreferredState,
        expiration: Option<PreferredExpiration>,
    },
    ClearUserPreferredPresence,
    /// `None` clears the message.
    SetStatusMessage(Option<StatusMessageInput>),
    SetManualLocation(WorkLocation),
    SetAutomaticLocation(WorkLocation),
    ClearAutomaticLocation,
    ClearLocation,
    SetOutOfOffice(OutOfOffice),
    /// Nothing but time: drop what has ended and fold the changes that time
    /// caused into the stored sequence number. The scheduler sends this.
    Tick,
}

impl Command {
    /// A short, fixed name for logs and metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            Command::SetPresence { .. } => "setPresence",
            Command::ClearPresence { .. } => "clearPresence",
            Command::PutLegacySession { .. } => "putLegacySession",
            Command::SetUserPreferredPresence { .. } => "setUserPreferredPresence",
            Command::ClearUserPreferredPresence => "clearUserPreferredPresence",
            Command::SetStatusMessage(_) => "setStatusMessage",
            Command::SetManualLocation(_) => "setManualLocation",
            Command::SetAutomaticLocation(_) => "setAutomaticLocation",
            Command::ClearAutomaticLocation => "clearAutomaticLocation",
            Command::ClearLocation => "clearLocation",
            Command::SetOutOfOffice(_) => "setOutOfOffice",
            Command::Tick => "tick",
        }
    }
}

/// Why a command was refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the user has no presence session with id '{0}'")]
    SessionNotFound(SessionId),
    #[error(
        "the user already has {MAX_SESSIONS_PER_USER} presence sessions; clear one before creating another"
    )]
    TooManySessions,
    /// Refused by a store, never by [`apply`]: the command would add a user
    /// to a tenant that already holds the store's bound of `limit` users.
    #[error("the tenant already holds {limit} users, its limit; no user can be added to it")]
    TenantFull { limit: u64 },
}

/// What applying a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Whether what is shown at `now` changed.
    pub visibly_changed: bool,
}

/// Applies `command` to `facts` at `now`. On error, `facts` is untouched.
pub fn apply(
    facts: &mut UserFacts,
    command: &Command,
    now: Instant,
    timeouts: Timeouts,
) -> Result<Applied, CommandError> {
    let mut next = facts.clone();
    next.prune(now);
    match command {
        Command::SetPresence {
            session_id,
            state,
            expiration,
        } => upsert_session(
            &mut next,
            session_id,
            *state,
            SessionKind::Application,
            now,
            now.saturating_add(expiration.duration()),
        )?,
        Command::PutLegacySession { session_id, state } => upsert_session(
            &mut next,
            session_id,
            *state,
            SessionKind::Legacy,
            now,
            now.saturating_add(timeouts.idle.saturating_mul(3)),
        )?,
        Command::ClearPresence { session_id } => {
            let before = next.sessions.len();
            next.sessions.retain(|session| &session.id != session_id);
            if next.sessions.len() == before {
                return Err(CommandError::SessionNotFound(session_id.clone()));
            }
        }
        Command::SetUserPreferredPresence { state, expiration } => {
            let duration = expiration
                .map(PreferredExpiration::duration)
                .unwrap_or_else(|| PreferredPresence::default_expiration(*state));
            next.extras_mut().preferred = Some(PreferredPresence {
                state: *state,
                set_at: now,
                expires_at: now.saturating_add(duration),
            });
        }
        Command::ClearUserPreferredPresence => next.extras_mut().preferred = None,
        Command::SetStatusMessage(input) => {
            next.extras_mut().status_message = input.as_ref().map(|input| StatusMessage {
                content: input.content.clone(),
                published_at: now,
                expiry: input.expiry.clone(),
            });
            // A message that has already expired is not kept at all.
            next.prune(now);
        }
        Command::SetManualLocation(location) => {
            next.extras_mut().work_location.manual = Some(location.clone())
        }
        Command::SetAutomaticLocation(location) => {
            next.extras_mut().work_location.automatic = Some(location.clone())
        }
        Command::ClearAutomaticLocation => next.extras_mut().work_location.automatic = None,
        Command::ClearLocation => {
            next.extras_mut().work_location.manual = None;
            next.extras_mut().work_location.automatic = None;
        }
        Command::SetOutOfOffice(settings) => next.extras_mut().out_of_office = settings.clone(),
        Command::Tick => {}
    }
    next.tidy();
    let visibly_changed = visibly_differs(facts, &next, now, timeouts);
    let as_of = now.max(facts.sequence.as_of);
    next.sequence.value = sequence_at(facts, now, timeouts) + u64::from(visibly_changed);
    next.sequence.as_of = as_of;
    *facts = next;
    Ok(Applied { visibly_changed })
}

fn upsert_session(
    facts: &mut UserFacts,
    session_id: &SessionId,
    state: SessionState,
    kind: SessionKind,
    set_at: Instant,
    expires_at: Instant,
) -> Result<(), CommandError> {
    let session = Session {
        id: session_id.clone(),
        state,
        kind,
        set_at,
        expires_at,
    };
    // Keep the sessions in write order: the aggregation's tie break on equal
    // set instants picks the one written last.
    match facts
        .sessions
        .iter()
        .position(|existing| &existing.id == session_id)
    {
        Some(index) => {
            facts.sessions.remove(index);
        }
        None if facts.sessions.len() >= MAX_SESSIONS_PER_USER => {
            return Err(CommandError::TooManySessions);
        }
        None => {}
    }
    facts.sessions.push(session);
    Ok(())
}
