//! The facts held for one user: everything else is derived from them.
//!
//! Facts are plain data. They say what was set and when; they never say what
//! is shown now, because that depends on the instant it is asked at. Expired
//! facts may linger until the next write or scheduler tick prunes them; every
//! function here treats them as absent already.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::id::SessionId;
use crate::state::{Activity, Availability, PreferredState, SessionState, WorkLocationType};
use crate::time::{Duration, Instant};

/// The lengths of time the model depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The length of one fade stage (Graph: five minutes). Legacy sessions
    /// end at the third stage boundary.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            idle: Duration::from_mins(5),
        }
    }
}

/// How a session was created, which decides how it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionKind {
    /// setPresence: ends at its expiration.
    Application,
    /// The legacy beta `sessions/{id}` PUT: ends at the third idle timeout.
    Legacy,
}

/// Where a session is on its timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Available and set less than one idle timeout ago.
    Active,
    /// Available, past the first timeout: Available / AvailableInactive.
    Inactive,
    /// Available, past the second timeout: Away / Away.
    Away,
    /// A state that does not fade; shown as set until it ends.
    Steady,
}

impl Stage {
    pub const ALL: &'static [Stage] = &[Stage::Active, Stage::Inactive, Stage::Away, Stage::Steady];

    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Active => "active",
            Stage::Inactive => "inactive",
            Stage::Away => "away",
            Stage::Steady => "steady",
        }
    }
}

/// One presence session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub state: SessionState,
    pub kind: SessionKind,
    /// When the state was last set: the timeline restarts here.
    pub set_at: Instant,
    /// The first instant at which the session no longer exists.
    pub expires_at: Instant,
}

impl Session {
    /// Whether the session exists at `now`. Expiry wins over a fade that
    /// falls on the same instant, because the session is gone at `expires_at`.
    pub fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    pub fn stage(&self, now: Instant, timeouts: Timeouts) -> Stage {
        if self.state != SessionState::Available {
            return Stage::Steady;
        }
        let elapsed = now.duration_since(self.set_at);
        if elapsed < timeouts.idle {
            Stage::Active
        } else if elapsed < timeouts.idle.saturating_mul(2) {
            Stage::Inactive
        } else {
            Stage::Away
        }
    }

    /// What the session shows at `now` (assuming it is live).
    pub fn shown(&self, now: Instant, timeouts: Timeouts) -> (Availability, Activity) {
        match self.stage(now, timeouts) {
            Stage::Active => (Availability::Available, Activity::Available),
            Stage::Inactive => (Availability::Available, Activity::AvailableInactive),
            Stage::Away => (Availability::Away, Activity::Away),
            Stage::Steady => self.state.pair(),
        }
    }

    /// Rank in the aggregation ladder: DoNotDisturb > Busy > Available
    /// (active) > Available (inactive) > Away.
    pub fn strength(&self, now: Instant, timeouts: Timeouts) -> u8 {
        match self.shown(now, timeouts) {
            (Availability::DoNotDisturb, _) => 4,
            (Availability::Busy, _) => 3,
            (Availability::Available, Activity::Available) => 2,
            (Availability::Available, _) => 1,
            _ => 0,
        }
    }

    /// The instants at which the session fades, whether or not it is still
    /// live then: the first and second idle timeouts of an Available session.
    fn fade_instants(&self, timeouts: Timeouts) -> [Option<Instant>; 2] {
        if self.state != SessionState::Available {
            return [None, None];
        }
        [
            Some(self.set_at.saturating_add(timeouts.idle)),
            Some(self.set_at.saturating_add(timeouts.idle.saturating_mul(2))),
        ]
    }

    /// The next fade strictly after `now` that happens while the session is
    /// still live; `None` if it expires first or never fades again.
    pub fn next_fade(&self, now: Instant, timeouts: Timeouts) -> Option<Instant> {
        self.fade_instants(timeouts)
            .into_iter()
            .flatten()
            .find(|&fade| fade > now && fade < self.expires_at)
    }

    /// Every instant at which this session's contribution may change.
    pub(crate) fn transitions(&self, timeouts: Timeouts) -> impl Iterator<Item = Instant> + '_ {
        self.fade_instants(timeouts)
            .into_iter()
            .flatten()
            .filter(|&fade| fade < self.expires_at)
            .chain(std::iter::once(self.expires_at))
    }
}

/// A user-preferred presence (setUserPreferredPresence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferredPresence {
    pub state: PreferredState,
    pub set_at: Instant,
    pub expires_at: Instant,
}

impl PreferredPresence {
    /// Graph's default: a day for DoNotDisturb and Busy, a week otherwise.
    pub fn default_expiration(state: PreferredState) -> Duration {
        match state {
            PreferredState::DoNotDisturb | PreferredState::Busy => Duration::from_days(1),
            _ => Duration::from_days(7),
        }
    }

    pub fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// When a status message stops being shown, with the wall-clock form the
/// caller gave so that it can be echoed back in the caller's own time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessageExpiry {
    pub at: Instant,
    /// The `dateTime` as given (no offset).
    pub date_time: String,
    /// The `timeZone` as given (a Windows or IANA name, or `UTC`).
    pub time_zone: String,
}

/// A status message (setStatusMessage). Only text content exists in Graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessage {
    pub content: String,
    pub published_at: Instant,
    pub expiry: Option<StatusMessageExpiry>,
}

impl StatusMessage {
    pub fn is_live(&self, now: Instant) -> bool {
        self.expiry.as_ref().is_none_or(|expiry| now < expiry.at)
    }
}

/// `outOfOfficeSettings`, which Graph derives from a mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfOffice {
    pub is_out_of_office: bool,
    pub message: Option<String>,
}

/// One layer of the work location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkLocation {
    pub location_type: WorkLocationType,
    pub place_id: Option<String>,
}

/// The work-location layers; manual beats automatic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkLocationLayers {
    pub manual: Option<WorkLocation>,
    pub automatic: Option<WorkLocation>,
}

/// The sequence number as of an instant. Changes caused by time after
/// `as_of` are counted on top of `value` when the presence is read, so the
/// number grows on fades and expiries without anything being written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceBase {
    pub value: u64,
    pub as_of: Instant,
}

impl Default for Instant {
    fn default() -> Instant {
        Instant::EPOCH
    }
}

/// The facts most users never have, kept behind one pointer so that a user
/// with only sessions costs eight bytes for all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extras {
    pub preferred: Option<PreferredPresence>,
    pub status_message: Option<StatusMessage>,
    pub out_of_office: OutOfOffice,
    pub work_location: WorkLocationLayers,
}

static NO_OUT_OF_OFFICE: OutOfOffice = OutOfOffice {
    is_out_of_office: false,
    message: None,
};
static NO_WORK_LOCATION: WorkLocationLayers = WorkLocationLayers {
    manual: None,
    automatic: None,
};

/// Everything held for one (tenant, user).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFacts {
    /// Sessions in no particular order; one per session id.
    pub sessions: SmallVec<[Session; 1]>,
    /// `None` whenever every extra fact is absent (see [`UserFacts::tidy`]).
    extras: Option<Box<Extras>>,
    pub sequence: SequenceBase,
}

impl UserFacts {
    pub fn preferred(&self) -> Option<&PreferredPresence> {
        self.extras
            .as_ref()
            .and_then(|extras| extras.preferred.as_ref())
    }

    pub fn status_message(&self) -> Option<&StatusMessage> {
        self.extras
            .as_ref()
            .and_then(|extras| extras.status_message.as_ref())
    }

    pub fn out_of_office(&self) -> &OutOfOffice {
        self.extras
            .as_ref()
            .map_or(&NO_OUT_OF_OFFICE, |extras| &extras.out_of_office)
    }

    pub fn work_location(&self) -> &WorkLocationLayers {
        self.extras
            .as_ref()
            .map_or(&NO_WORK_LOCATION, |extras| &extras.work_location)
    }

    /// The extra facts, for changing them; call [`UserFacts::tidy`] after.
    pub fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Frees the extras when nothing is left in them.
    pub fn tidy(&mut self) {
        if self
            .extras
            .as_deref()
            .is_some_and(|extras| *extras == Extras::default())
        {
            self.extras = None;
        }
    }

    /// Whether nothing but the sequence number is held: such a user reads as
    /// Offline, and only the sequence number needs keeping.
    pub fn holds_nothing(&self) -> bool {
        self.sessions.is_empty() && self.extras.is_none()
    }

    /// Whether two versions hold the same facts, whatever their sequence
    /// bases (which only fold in changes that time made).
    pub fn same_facts(&self, other: &UserFacts) -> bool {
        self.sessions == other.sessions && self.extras == other.extras
    }

    /// Drops every fact that has ended by `now`. Never changes what is shown.
    pub fn prune(&mut self, now: Instant) {
        self.sessions.retain(|session| session.is_live(now));
        if let Some(extras) = self.extras.as_deref_mut() {
            if extras
                .preferred
                .as_ref()
                .is_some_and(|preferred| !preferred.is_live(now))
            {
                extras.preferred = None;
            }
            if extras
                .status_message
                .as_ref()
                .is_some_and(|message| !message.is_live(now))
            {
                extras.status_message = None;
            }
        }
        self.tidy();
    }

    pub fn session(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.iter().find(|session| &session.id == id)
    }
}
