//! The model checked against the SPEC: example timelines through one
//! `check_timeline` helper, and properties over random facts with proptest.

use proptest::prelude::*;

use crate::strategies::{T0, any_history, any_session_state, any_timeouts, at, replay, session_id};
use crate::*;

const MINUTE: i64 = 60_000;

fn set(
    facts: &mut UserFacts,
    minute: i64,
    session: &str,
    state: SessionState,
    expiry_minutes: i64,
) {
    let command = Command::SetPresence {
        session_id: session_id(session),
        state,
        expiration: SessionExpiration::new(Duration::from_mins(expiry_minutes)).expect("in range"),
    };
    apply(facts, &command, at(minute), Timeouts::default()).expect("applies");
}

fn shown(facts: &UserFacts, minute: i64) -> (Availability, Activity) {
    let presence = presence_at(facts, at(minute), Timeouts::default());
    (presence.availability, presence.activity)
}

/// Checks what `facts` shows at each listed minute.
fn check_timeline(facts: &UserFacts, expected: &[(i64, Availability, Activity)]) {
    for &(minute, availability, activity) in expected {
        assert_eq!(
            shown(facts, minute),
            (availability, activity),
            "at t0+{minute}m"
        );
    }
}

use Activity as Ac;
use Availability as Av;

#[test]
fn an_available_session_fades_in_two_stages_then_expires() {
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "app", SessionState::Available, 60);
    check_timeline(
        &facts,
        &[
            (0, Av::Available, Ac::Available),
            (4, Av::Available, Ac::Available),
            (5, Av::Available, Ac::AvailableInactive),
            (9, Av::Available, Ac::AvailableInactive),
            (10, Av::Away, Ac::Away),
            (59, Av::Away, Ac::Away),
            (60, Av::Offline, Ac::Offline),
        ],
    );
}

#[test]
fn expiry_wins_over_a_fade_on_the_same_instant() {
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "app", SessionState::Available, 5);
    check_timeline(
        &facts,
        &[
            (4, Av::Available, Ac::Available),
            (5, Av::Offline, Ac::Offline),
        ],
    );
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "app", SessionState::Available, 10);
    check_timeline(
        &facts,
        &[
            (5, Av::Available, Ac::AvailableInactive),
            (10, Av::Offline, Ac::Offline),
        ],
    );
}

#[test]
fn a_busy_session_does_not_fade() {
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "app", SessionState::BusyInACall, 30);
    check_timeline(
        &facts,
        &[
            (0, Av::Busy, Ac::InACall),
            (29, Av::Busy, Ac::InACall),
            (30, Av::Offline, Ac::Offline),
        ],
    );
}

#[test]
fn a_keep_alive_restarts_the_timeline() {
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "app", SessionState::Available, 60);
    set(&mut facts, 7, "app", SessionState::Available, 60);
    check_timeline(
        &facts,
        &[
            (7, Av::Available, Ac::Available),
            (11, Av::Available, Ac::Available),
            (12, Av::Available, Ac::AvailableInactive),
            (17, Av::Away, Ac::Away),
        ],
    );
}

#[test]
fn legacy_sessions_go_offline_at_the_third_timeout() {
    let mut facts = UserFacts::default();
    let timeouts = Timeouts::default();
    let command = Command::PutLegacySession {
        session_id: session_id("a"),
        state: SessionState::Available,
    };
    apply(&mut facts, &command, at(0), timeouts).expect("applies");
    check_timeline(
        &facts,
        &[
            (4, Av::Available, Ac::Available),
            (5, Av::Available, Ac::AvailableInactive),
            (10, Av::Away, Ac::Away),
            (14, Av::Away, Ac::Away),
            (15, Av::Offline, Ac::Offline),
        ],
    );
    let mut busy = UserFacts::default();
    let command = Command::PutLegacySession {
        session_id: session_id("b"),
        state: SessionState::BusyInACall,
    };
    apply(&mut busy, &command, at(0), timeouts).expect("applies");
    check_timeline(
        &busy,
        &[(14, Av::Busy, Ac::InACall), (15, Av::Offline, Ac::Offline)],
    );
}

#[test]
fn the_ladder_prefers_the_strongest_then_the_most_recent() {
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "away", SessionState::Away, 60);
    set(&mut facts, 1, "available", SessionState::Available, 60);
    assert_eq!(shown(&facts, 2), (Av::Available, Ac::Available));
    // The Available session fades below Away's rank only at its second stage,
    // where it shows Away itself.
    assert_eq!(shown(&facts, 7), (Av::Available, Ac::AvailableInactive));
    set(&mut facts, 8, "call", SessionState::BusyInACall, 60);
    set(
        &mut facts,
        9,
        "conference",
        SessionState::BusyInAConferenceCall,
        60,
    );
    assert_eq!(shown(&facts, 9), (Av::Busy, Ac::InAConferenceCall));
    set(&mut facts, 10, "call", SessionState::BusyInACall, 60);
    assert_eq!(shown(&facts, 10), (Av::Busy, Ac::InACall));
    set(
        &mut facts,
        11,
        "presenting",
        SessionState::DoNotDisturbPresenting,
        60,
    );
    assert_eq!(shown(&facts, 11), (Av::DoNotDisturb, Ac::Presenting));
}

#[test]
fn preferred_presence_needs_a_session_and_expires() {
    let timeouts = Timeouts::default();
    let mut facts = UserFacts::default();
    let prefer = Command::SetUserPreferredPresence {
        state: PreferredState::DoNotDisturb,
        expiration: PreferredExpiration::new(Duration::from_mins(30)),
    };
    apply(&mut facts, &prefer, at(0), timeouts).expect("applies");
    assert_eq!(shown(&facts, 0), (Av::Offline, Ac::Offline));
    set(&mut facts, 1, "app", SessionState::Available, 240);
    assert_eq!(shown(&facts, 1), (Av::DoNotDisturb, Ac::DoNotDisturb));
    assert_eq!(
        presence_at(&facts, at(1), timeouts).decided_by,
        Decision::UserPreferred
    );
    assert_eq!(shown(&facts, 30), (Av::Away, Ac::Away));
}

#[test]
fn preferred_presence_defaults_to_a_day_for_busy_and_a_week_otherwise() {
    let timeouts = Timeouts::default();
    for (state, days) in [(PreferredState::Busy, 1), (PreferredState::Away, 7)] {
        let mut facts = UserFacts::default();
        let command = Command::SetUserPreferredPresence {
            state,
            expiration: None,
        };
        apply(&mut facts, &command, at(0), timeouts).expect("applies");
        let preferred = facts.preferred().cloned().expect("set");
        assert_eq!(preferred.expires_at, at(days * 24 * 60));
    }
}

#[test]
fn clearing_a_missing_session_is_refused_without_change() {
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "app", SessionState::Available, 5);
    let before = facts.clone();
    let clear = Command::ClearPresence {
        session_id: session_id("other"),
    };
    assert_eq!(
        apply(&mut facts, &clear, at(1), Timeouts::default()),
        Err(CommandError::SessionNotFound(session_id("other")))
    );
    assert_eq!(facts, before);
    // An expired session is as missing as one that never existed.
    let clear = Command::ClearPresence {
        session_id: session_id("app"),
    };
    assert!(apply(&mut facts, &clear, at(5), Timeouts::default()).is_err());
}

#[test]
fn the_sequence_number_counts_changes_caused_by_time() {
    let timeouts = Timeouts::default();
    let mut facts = UserFacts::default();
    set(&mut facts, 0, "app", SessionState::Available, 15);
    let first = sequence_at(&facts, at(0), timeouts);
    assert_eq!(first, 1);
    assert_eq!(sequence_at(&facts, at(4), timeouts), 1);
    assert_eq!(sequence_at(&facts, at(5), timeouts), 2);
    assert_eq!(sequence_at(&facts, at(10), timeouts), 3);
    assert_eq!(sequence_at(&facts, at(15), timeouts), 4);
    // A tick folds time's changes into the base without changing the number.
    apply(&mut facts, &Command::Tick, at(20), timeouts).expect("applies");
    assert!(facts.holds_nothing());
    assert_eq!(sequence_at(&facts, at(20), timeouts), 4);
    // A keep-alive that changes nothing visible does not count.
    set(&mut facts, 21, "app", SessionState::Available, 15);
    set(&mut facts, 22, "app", SessionState::Available, 15);
    assert_eq!(sequence_at(&facts, at(22), timeouts), 5);
}

#[test]
fn status_messages_expire_and_count_as_visible_changes() {
    let timeouts = Timeouts::default();
    let mut facts = UserFacts::default();
    let expiry = StatusMessageExpiry {
        at: at(10),
        date_time: "whatever".into(),
        time_zone: "UTC".into(),
    };
    let command = Command::SetStatusMessage(Some(StatusMessageInput {
        content: "lunch".into(),
        expiry: Some(expiry),
    }));
    apply(&mut facts, &command, at(0), timeouts).expect("applies");
    assert!(
        presence_at(&facts, at(9), timeouts)
            .status_message
            .is_some()
    );
    assert!(
        presence_at(&facts, at(10), timeouts)
            .status_message
            .is_none()
    );
    assert_eq!(next_change(&facts, at(0), timeouts), Some(at(10)));
    assert_eq!(sequence_at(&facts, at(10), timeouts), 2);
}

// ---------------------------------------------------------------------------
// Properties over random facts.

proptest! {
    #[test]
    fn presence_never_changes_between_computed_change_instants(
        history in any_history(),
        timeouts in any_timeouts(),
        probes in prop::collection::vec(0..1_000_000i64, 8),
    ) {
        let (facts, mut now) = replay(&history, timeouts);
        let shown_at = |instant: Instant| {
            let presence = presence_at(&facts, instant, timeouts);
            (presence.availability, presence.activity, presence.status_message.cloned())
        };
        // Walk the whole future, change by change.
        for _ in 0..32 {
            let current = shown_at(now);
            let next = next_change(&facts, now, timeouts);
            let horizon = next.unwrap_or(now.saturating_add(Duration::from_days(8)));
            for probe in &probes {
                let span = horizon.duration_since(now).as_millis().max(1);
                let instant = now.saturating_add(Duration::from_millis(probe % span));
                prop_assert_eq!(shown_at(instant), current.clone());
            }
            match next {
                Some(change) => {
                    prop_assert!(change > now);
                    prop_assert_ne!(shown_at(change), current);
                    now = change;
                }
                None => break,
            }
        }
    }

    #[test]
    fn the_aggregate_follows_the_ladder(history in any_history(), offset in 0..40_000_000i64) {
        let timeouts = Timeouts::default();
        let (facts, last) = replay(&history, timeouts);
        let now = last.saturating_add(Duration::from_millis(offset % 20_000_000));
        let presence = presence_at(&facts, now, timeouts);
        let live: Vec<&Session> = facts.sessions.iter().filter(|s| s.is_live(now)).collect();
        let preferred = facts.preferred().filter(|p| p.is_live(now));
        if live.is_empty() {
            prop_assert_eq!((presence.availability, presence.activity), (Av::Offline, Ac::Offline));
        } else if let Some(preferred) = preferred {
            prop_assert_eq!((presence.availability, presence.activity), preferred.state.pair());
        } else {
            let best = live.iter().map(|s| s.strength(now, timeouts)).max().expect("non-empty");
            let winner = strongest_session(&facts, now, timeouts).expect("a live session");
            prop_assert_eq!(winner.strength(now, timeouts), best);
            for session in live.iter().filter(|s| s.strength(now, timeouts) == best) {
                prop_assert!(session.set_at <= winner.set_at);
            }
            prop_assert_eq!((presence.availability, presence.activity), winner.shown(now, timeouts));
        }
    }

    #[test]
    fn a_single_session_follows_the_spec_timeline(
        state in any_session_state(),
        expiry_minutes in 5..=240i64,
        probe_seconds in 0..20_000i64,
    ) {
        let mut facts = UserFacts::default();
        set(&mut facts, 0, "app", state, expiry_minutes);
        let elapsed = probe_seconds * 1_000;
        let now = Instant::from_unix_millis(T0 + elapsed);
        let expected = if elapsed >= expiry_minutes * MINUTE {
            (Av::Offline, Ac::Offline)
        } else if state != SessionState::Available {
            state.pair()
        } else if elapsed < 5 * MINUTE {
            (Av::Available, Ac::Available)
        } else if elapsed < 10 * MINUTE {
            (Av::Available, Ac::AvailableInactive)
        } else {
            (Av::Away, Ac::Away)
        };
        let presence = presence_at(&facts, now, Timeouts::default());
        prop_assert_eq!((presence.availability, presence.activity), expected);
    }

    #[test]
    fn the_sequence_number_grows_with_every_visible_change(
        history in any_history(),
        first in 0..20_000_000i64,
        gap in 0..20_000_000i64,
    ) {
        let timeouts = Timeouts::default();
        let (facts, last) = replay(&history, timeouts);
        let earlier = last.saturating_add(Duration::from_millis(first));
        let later = earlier.saturating_add(Duration::from_millis(gap));
        let before = presence_at(&facts, earlier, timeouts);
        let after = presence_at(&facts, later, timeouts);
        prop_assert!(after.sequence >= before.sequence);
        if (before.availability, before.activity, before.status_message)
            != (after.availability, after.activity, after.status_message)
        {
            prop_assert!(after.sequence > before.sequence);
        }
        // Ticking at any instant never changes the number or what is shown.
        let mut ticked = facts.clone();
        apply(&mut ticked, &Command::Tick, earlier, timeouts).expect("tick applies");
        let again = presence_at(&ticked, later, timeouts);
        prop_assert_eq!(again.sequence, after.sequence);
        prop_assert_eq!((again.availability, again.activity), (after.availability, after.activity));
    }

    #[test]
    fn writes_that_change_what_is_shown_bump_the_sequence(history in any_history()) {
        let timeouts = Timeouts::default();
        let mut facts = UserFacts::default();
        for (offset, command) in &history {
            let now = Instant::from_unix_millis(T0 + offset);
            let before = sequence_at(&facts, now, timeouts);
            if let Ok(applied) = apply(&mut facts, command, now, timeouts) {
                let after = sequence_at(&facts, now, timeouts);
                prop_assert_eq!(after, before + u64::from(applied.visibly_changed));
            }
        }
    }
}

#[test]
fn sequence_numbers_are_an_a_and_twenty_digits_that_sort_as_text() {
    assert_eq!(format_sequence(0), "A00000000000000000000");
    assert_eq!(format_sequence(1), "A00000000000000000001");
    assert_eq!(format_sequence(1234567890), "A00000000001234567890");
    assert_eq!(format_sequence(u64::MAX), "A18446744073709551615");
    let mut numbers = [9, 10, 99, 100, 7, u64::MAX, 0];
    let mut texts: Vec<String> = numbers.iter().map(|&n| format_sequence(n)).collect();
    numbers.sort_unstable();
    texts.sort();
    let sorted: Vec<String> = numbers.iter().map(|&n| format_sequence(n)).collect();
    assert_eq!(texts, sorted);
}

#[test]
fn same_facts_ignores_only_the_sequence_base() {
    let mut base = UserFacts::default();
    set(&mut base, 0, "app", SessionState::Available, 60);
    let mut rebased = base.clone();
    rebased.sequence.value += 7;
    rebased.sequence.as_of = at(3);
    assert!(base.same_facts(&rebased));
    assert_ne!(base, rebased);
    let mut refreshed = base.clone();
    set(&mut refreshed, 1, "app", SessionState::Available, 60);
    assert!(!base.same_facts(&refreshed), "a refresh moves set_at");
    let mut other = base.clone();
    set(&mut other, 0, "other", SessionState::BusyInACall, 60);
    assert!(!base.same_facts(&other));
}
