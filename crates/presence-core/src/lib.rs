//! The presence model of presenced, with no IO, no async and no clock.
//!
//! A user's presence is never stored: it is a pure function of the facts held
//! for that user ([`UserFacts`]) and an instant. This crate holds those facts,
//! the rules that derive the presence from them (fading, expiry, the
//! aggregation ladder, user-preferred presence, status messages), and the
//! commands that change them. Everything takes `now` as an argument.
//!
//! Layout:
//! - [`time`]: millisecond instants and durations.
//! - [`id`]: validated tenant, user and session ids.
//! - [`state`]: availability and activity values and the pairs each operation accepts.
//! - [`facts`]: what is held per user, and each fact's own timeline.
//! - [`presence`]: the aggregate at an instant, its next change, the sequence number.
//! - [`command`]: the changes a request or the scheduler makes, applied atomically.

pub mod command;
pub mod facts;
pub mod id;
pub mod presence;
pub mod state;
pub mod time;

pub use command::{
    Applied, Command, CommandError, PreferredExpiration, SessionExpiration, StatusMessageInput,
    apply,
};
pub use facts::{
    Extras, OutOfOffice, PreferredPresence, SequenceBase, Session, SessionKind, Stage,
    StatusMessage, StatusMessageExpiry, Timeouts, UserFacts, WorkLocation, WorkLocationLayers,
};
pub use id::{IdError, MAX_ID_LENGTH, SessionId, TenantId, UserId, UserKey};
pub use presence::{
    Decision, Presence, format_sequence, next_change, next_transition, presence_at, sequence_at,
    strongest_session,
};
pub use state::{
    Activity, Availability, PreferredState, SessionState, WorkLocationSource, WorkLocationType,
    describe_pairs,
};
pub use time::{Duration, Instant};

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "strategies"))]
pub mod strategies;
