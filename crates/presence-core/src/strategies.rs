//! Random facts for property tests, here and in presenced's (the
//! `strategies` feature): command histories at increasing instants, and
//! the timeouts they run under.

use proptest::prelude::*;

use crate::*;

/// The instant histories start at, in Unix milliseconds.
pub const T0: i64 = 1_700_000_000_000;

/// `minutes` after [`T0`].
pub fn at(minutes: i64) -> Instant {
    Instant::from_unix_millis(T0 + minutes * 60_000)
}

/// A session id, from a valid one.
pub fn session_id(name: &str) -> SessionId {
    SessionId::parse(name).expect("valid id")
}

pub fn any_session_state() -> impl Strategy<Value = SessionState> {
    prop::sample::select(SessionState::SET_PRESENCE.to_vec())
}

pub fn any_preferred_state() -> impl Strategy<Value = PreferredState> {
    prop::sample::select(PreferredState::ALL.to_vec())
}

/// A random history: commands at increasing minutes (with odd seconds, so
/// that instants fall between stage boundaries too).
pub fn any_history() -> impl Strategy<Value = Vec<(i64, Command)>> {
    let command = prop_oneof![
        4 => (0..4usize, any_session_state(), 5..=240i64).prop_map(|(session, state, minutes)| {
            Command::SetPresence {
                session_id: session_id(&format!("s{session}")),
                state,
                expiration: SessionExpiration::new(Duration::from_mins(minutes)).expect("in range"),
            }
        }),
        1 => (0..4usize, any_session_state()).prop_map(|(session, state)| Command::PutLegacySession {
            session_id: session_id(&format!("s{session}")),
            state: if state == SessionState::DoNotDisturbPresenting { SessionState::Away } else { state },
        }),
        1 => (0..4usize).prop_map(|session| Command::ClearPresence {
            session_id: session_id(&format!("s{session}")),
        }),
        1 => (any_preferred_state(), proptest::option::of(1..600i64)).prop_map(|(state, minutes)| {
            Command::SetUserPreferredPresence {
                state,
                expiration: minutes.and_then(|m| PreferredExpiration::new(Duration::from_mins(m))),
            }
        }),
        1 => Just(Command::ClearUserPreferredPresence),
        1 => (1..120i64).prop_map(|minutes| Command::SetStatusMessage(Some(StatusMessageInput {
            content: format!("for {minutes}"),
            expiry: Some(StatusMessageExpiry {
                at: at(minutes),
                date_time: String::new(),
                time_zone: "UTC".into(),
            }),
        }))),
        1 => Just(Command::Tick),
    ];
    prop::collection::vec((0..30_000i64, command), 0..12).prop_map(|mut steps| {
        steps.sort_by_key(|(offset, _)| *offset);
        steps
            .into_iter()
            .map(|(offset, command)| (offset * 1_000, command))
            .collect()
    })
}

pub fn replay(history: &[(i64, Command)], timeouts: Timeouts) -> (UserFacts, Instant) {
    let mut facts = UserFacts::default();
    let mut last = at(0);
    for (offset, command) in history {
        last = Instant::from_unix_millis(T0 + offset);
        let _ = apply(&mut facts, command, last, timeouts);
    }
    (facts, last)
}

pub fn any_timeouts() -> impl Strategy<Value = Timeouts> {
    prop_oneof![
        Just(Timeouts::default()),
        (1..10i64).prop_map(|s| Timeouts {
            idle: Duration::from_secs(s * 30)
        })
    ]
}
