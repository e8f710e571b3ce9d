//! The aggregated presence: a pure function of a user's facts and an instant.

use crate::facts::{OutOfOffice, Session, StatusMessage, Timeouts, UserFacts, WorkLocation};
use crate::id::SessionId;
use crate::state::{Activity, Availability, WorkLocationSource};
use crate::time::Instant;

/// Which rule of the aggregation ladder decided the shown state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// An unexpired user-preferred presence, with at least one live session.
    UserPreferred,
    /// The strongest live session (most recently set among equals).
    Session(&'a SessionId),
    /// No live session: Offline / Offline.
    NoSession,
}

/// What everybody sees for one user at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence<'a> {
    pub availability: Availability,
    pub activity: Activity,
    pub decided_by: Decision<'a>,
    pub status_message: Option<&'a StatusMessage>,
    pub out_of_office: &'a OutOfOffice,
    pub work_location: Option<(&'a WorkLocation, WorkLocationSource)>,
    pub sequence: u64,
}

/// The part of a presence whose change counts as a visible change.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Visible<'a> {
    availability: Availability,
    activity: Activity,
    status_message: Option<&'a StatusMessage>,
    out_of_office: &'a OutOfOffice,
    work_location: Option<(&'a WorkLocation, WorkLocationSource)>,
}

/// The strongest live session at `now`: highest rank, then most recently
/// set. Sessions are kept in write order (a write moves its session last)
/// and `max_by` returns the last of equals, so of two sessions set within
/// the same millisecond the one written last wins.
pub fn strongest_session(facts: &UserFacts, now: Instant, timeouts: Timeouts) -> Option<&Session> {
    facts
        .sessions
        .iter()
        .filter(|session| session.is_live(now))
        .max_by(|a, b| {
            a.strength(now, timeouts)
                .cmp(&b.strength(now, timeouts))
                .then(a.set_at.cmp(&b.set_at))
        })
}

fn visible(facts: &UserFacts, now: Instant, timeouts: Timeouts) -> (Visible<'_>, Decision<'_>) {
    let strongest = strongest_session(facts, now, timeouts);
    let preferred = facts.preferred().filter(|preferred| preferred.is_live(now));
    let ((availability, activity), decided_by) = match (strongest, preferred) {
        (Some(_), Some(preferred)) => (preferred.state.pair(), Decision::UserPreferred),
        (Some(session), None) => (session.shown(now, timeouts), Decision::Session(&session.id)),
        (None, _) => (
            (Availability::Offline, Activity::Offline),
            Decision::NoSession,
        ),
    };
    let layers = facts.work_location();
    let work_location = match (&layers.manual, &layers.automatic) {
        (Some(manual), _) => Some((manual, WorkLocationSource::Manual)),
        (None, Some(automatic)) => Some((automatic, WorkLocationSource::Automatic)),
        (None, None) => None,
    };
    let visible = Visible {
        availability,
        activity,
        status_message: facts
            .status_message()
            .filter(|message| message.is_live(now)),
        out_of_office: facts.out_of_office(),
        work_location,
    };
    (visible, decided_by)
}

/// The first instant strictly after `after` at which any fact changes: a
/// fade, a session's expiry, or the end of a preferred presence or status
/// message. Facts that ended at or before `after` contribute nothing.
pub fn next_transition(facts: &UserFacts, after: Instant, timeouts: Timeouts) -> Option<Instant> {
    let sessions = facts
        .sessions
        .iter()
        .flat_map(|session| session.transitions(timeouts));
    let preferred = facts.preferred().map(|preferred| preferred.expires_at);
    let status = facts
        .status_message()
        .and_then(|message| message.expiry.as_ref().map(|expiry| expiry.at));
    sessions
        .chain(preferred)
        .chain(status)
        .filter(|&instant| instant > after)
        .min()
}

/// The first instant strictly after `now` at which the presence shown will
/// differ from the one shown at `now`; `None` if it never changes by itself.
pub fn next_change(facts: &UserFacts, now: Instant, timeouts: Timeouts) -> Option<Instant> {
    let (current, _) = visible(facts, now, timeouts);
    let mut instant = now;
    while let Some(candidate) = next_transition(facts, instant, timeouts) {
        if visible(facts, candidate, timeouts).0 != current {
            return Some(candidate);
        }
        instant = candidate;
    }
    None
}

/// The sequence number at `now`: the stored base, plus one for every visible
/// change that time caused after the base was taken.
pub fn sequence_at(facts: &UserFacts, now: Instant, timeouts: Timeouts) -> u64 {
    let base = facts.sequence;
    if now <= base.as_of {
        return base.value;
    }
    let mut value = base.value;
    let mut previous = visible(facts, base.as_of, timeouts).0;
    let mut instant = base.as_of;
    while let Some(candidate) = next_transition(facts, instant, timeouts) {
        if candidate > now {
            break;
        }
        let shown = visible(facts, candidate, timeouts).0;
        if shown != previous {
            value += 1;
            previous = shown;
        }
        instant = candidate;
    }
    value
}

/// The aggregated presence of a user at `now`.
pub fn presence_at(facts: &UserFacts, now: Instant, timeouts: Timeouts) -> Presence<'_> {
    let (visible, decided_by) = visible(facts, now, timeouts);
    Presence {
        availability: visible.availability,
        activity: visible.activity,
        decided_by,
        status_message: visible.status_message,
        out_of_office: visible.out_of_office,
        work_location: visible.work_location,
        sequence: sequence_at(facts, now, timeouts),
    }
}

/// Whether what is shown at `now` differs between two versions of the facts.
pub(crate) fn visibly_differs(
    before: &UserFacts,
    after: &UserFacts,
    now: Instant,
    timeouts: Timeouts,
) -> bool {
    visible(before, now, timeouts).0 != visible(after, now, timeouts).0
}

/// Formats a sequence number as Graph does: a fixed-width, lexicographically
/// sortable string (Graph's samples look like `A0129311063`).
pub fn format_sequence(value: u64) -> String {
    // By hand rather than `format!("A{value:020}")`, which goes through the
    // formatting machinery (padding, width) on every presence rendered.
    let mut text = [b'0'; 21];
    text[0] = b'A';
    let mut rest = value;
    for digit in text[1..].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    String::from_utf8(text.to_vec()).expect("an A and ASCII digits")
}
