//! A user's facts as the embedded store writes them (the value of a user's
//! record; the key is in `embedded/record.rs`).
//!
//! Format 1 ([`FactsV1`]) is the layout presenced's first release wrote by
//! serializing `presence_core::UserFacts` itself: one version byte (1),
//! then postcard of the facts. Postcard is positional: a struct is its
//! fields in declaration order with no names, an enum is its variant's
//! index as a varint, an `Option` a 0 or 1 byte, a sequence or a string
//! its length then its items, an `i64` a zigzag varint. So every type and
//! every enum's variant order below mirrors the core type it was written
//! from, as it was then, and must never change: a new field or variant
//! means a `FactsV2` (see the module `record`). Instants are milliseconds
//! since the Unix epoch (`Instant` is `#[serde(transparent)]` over `i64`);
//! ids are their text (they serialize through `String`).
//!
//! The golden-bytes tests below hold records as format 1 wrote them, made
//! by the first release's own code before these types existed.

use presence_core::{
    Extras, Instant, OutOfOffice, PreferredPresence, PreferredState, SequenceBase, Session,
    SessionId, SessionKind, SessionState, StatusMessage, StatusMessageExpiry, UserFacts,
    WorkLocation, WorkLocationLayers, WorkLocationType,
};
use serde::{Deserialize, Serialize};

use super::{NoPrevious, Postcard, Versioned};

/// Format 1 of a user's facts: `UserFacts` as it was in the first release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsV1 {
    /// Was `SmallVec<[Session; 1]>`, which serializes as a sequence.
    pub sessions: Vec<SessionV1>,
    /// Was `Option<Box<Extras>>`; `None` whenever every extra is absent.
    pub extras: Option<ExtrasV1>,
    pub sequence: SequenceBaseV1,
}

impl Versioned for FactsV1 {
    type Encoding = Postcard;
    const VERSION: u8 = 1;
    type Previous = NoPrevious<Postcard>;

    fn migrate(previous: NoPrevious<Postcard>) -> FactsV1 {
        previous.never()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionV1 {
    pub id: String,
    pub state: SessionStateV1,
    pub kind: SessionKindV1,
    /// Milliseconds since the Unix epoch, as every instant here.
    pub set_at: i64,
    pub expires_at: i64,
}

/// Written as the variant's index: the order is part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStateV1 {
    Available,
    BusyInACall,
    BusyInAConferenceCall,
    Away,
    DoNotDisturbPresenting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionKindV1 {
    Application,
    Legacy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtrasV1 {
    pub preferred: Option<PreferredPresenceV1>,
    pub status_message: Option<StatusMessageV1>,
    pub out_of_office: OutOfOfficeV1,
    pub work_location: WorkLocationLayersV1,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferredPresenceV1 {
    pub state: PreferredStateV1,
    pub set_at: i64,
    pub expires_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreferredStateV1 {
    Available,
    Busy,
    DoNotDisturb,
    BeRightBack,
    Away,
    AppearOffline,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessageV1 {
    pub content: String,
    pub published_at: i64,
    pub expiry: Option<StatusMessageExpiryV1>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessageExpiryV1 {
    pub at: i64,
    pub date_time: String,
    pub time_zone: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfOfficeV1 {
    pub is_out_of_office: bool,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkLocationLayersV1 {
    pub manual: Option<WorkLocationV1>,
    pub automatic: Option<WorkLocationV1>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkLocationV1 {
    pub location_type: WorkLocationTypeV1,
    pub place_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkLocationTypeV1 {
    Unspecified,
    Office,
    Remote,
    TimeOff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceBaseV1 {
    pub value: u64,
    pub as_of: i64,
}

// The core types to format 1. The matches are exhaustive, and the other
// direction builds every core struct with a literal, on purpose: a variant
// or a field added to a core type fails to compile here, which is the
// moment to add a version. (`UserFacts` itself cannot be built so, its
// extras being private; a field added to it is caught by no compiler.)

impl From<&UserFacts> for FactsV1 {
    fn from(facts: &UserFacts) -> FactsV1 {
        // `UserFacts` keeps its extras `None` exactly when every extra is
        // absent (`tidy`, which every command ends with), which is what
        // format 1 wrote.
        let extras = (facts.preferred().is_some()
            || facts.status_message().is_some()
            || *facts.out_of_office() != OutOfOffice::default()
            || *facts.work_location() != WorkLocationLayers::default())
        .then(|| ExtrasV1 {
            preferred: facts.preferred().map(PreferredPresenceV1::from),
            status_message: facts.status_message().map(StatusMessageV1::from),
            out_of_office: OutOfOfficeV1 {
                is_out_of_office: facts.out_of_office().is_out_of_office,
                message: facts.out_of_office().message.clone(),
            },
            work_location: WorkLocationLayersV1 {
                manual: facts.work_location().manual.as_ref().map(Into::into),
                automatic: facts.work_location().automatic.as_ref().map(Into::into),
            },
        });
        FactsV1 {
            sessions: facts.sessions.iter().map(SessionV1::from).collect(),
            extras,
            sequence: SequenceBaseV1 {
                value: facts.sequence.value,
                as_of: facts.sequence.as_of.as_unix_millis(),
            },
        }
    }
}

impl From<&Session> for SessionV1 {
    fn from(session: &Session) -> SessionV1 {
        SessionV1 {
            id: session.id.as_str().to_string(),
            state: match session.state {
                SessionState::Available => SessionStateV1::Available,
                SessionState::BusyInACall => SessionStateV1::BusyInACall,
                SessionState::BusyInAConferenceCall => SessionStateV1::BusyInAConferenceCall,
                SessionState::Away => SessionStateV1::Away,
                SessionState::DoNotDisturbPresenting => SessionStateV1::DoNotDisturbPresenting,
            },
            kind: match session.kind {
                SessionKind::Application => SessionKindV1::Application,
                SessionKind::Legacy => SessionKindV1::Legacy,
            },
            set_at: session.set_at.as_unix_millis(),
            expires_at: session.expires_at.as_unix_millis(),
        }
    }
}

impl From<&PreferredPresence> for PreferredPresenceV1 {
    fn from(preferred: &PreferredPresence) -> PreferredPresenceV1 {
        PreferredPresenceV1 {
            state: match preferred.state {
                PreferredState::Available => PreferredStateV1::Available,
                PreferredState::Busy => PreferredStateV1::Busy,
                PreferredState::DoNotDisturb => PreferredStateV1::DoNotDisturb,
                PreferredState::BeRightBack => PreferredStateV1::BeRightBack,
                PreferredState::Away => PreferredStateV1::Away,
                PreferredState::AppearOffline => PreferredStateV1::AppearOffline,
            },
            set_at: preferred.set_at.as_unix_millis(),
            expires_at: preferred.expires_at.as_unix_millis(),
        }
    }
}

impl From<&StatusMessage> for StatusMessageV1 {
    fn from(message: &StatusMessage) -> StatusMessageV1 {
        StatusMessageV1 {
            content: message.content.clone(),
            published_at: message.published_at.as_unix_millis(),
            expiry: message.expiry.as_ref().map(|expiry| StatusMessageExpiryV1 {
                at: expiry.at.as_unix_millis(),
                date_time: expiry.date_time.clone(),
                time_zone: expiry.time_zone.clone(),
            }),
        }
    }
}

impl From<&WorkLocation> for WorkLocationV1 {
    fn from(location: &WorkLocation) -> WorkLocationV1 {
        WorkLocationV1 {
            location_type: match location.location_type {
                WorkLocationType::Unspecified => WorkLocationTypeV1::Unspecified,
                WorkLocationType::Office => WorkLocationTypeV1::Office,
                WorkLocationType::Remote => WorkLocationTypeV1::Remote,
                WorkLocationType::TimeOff => WorkLocationTypeV1::TimeOff,
            },
            place_id: location.place_id.clone(),
        }
    }
}

// Format 1 to the core types. Only the ids can be refused: every other
// value of format 1 has a core value.

impl TryFrom<FactsV1> for UserFacts {
    type Error = String;

    fn try_from(record: FactsV1) -> Result<UserFacts, String> {
        let mut facts = UserFacts::default();
        for session in record.sessions {
            facts.sessions.push(Session::try_from(session)?);
        }
        if let Some(extras) = record.extras {
            *facts.extras_mut() = Extras {
                preferred: extras.preferred.map(Into::into),
                status_message: extras.status_message.map(Into::into),
                out_of_office: OutOfOffice {
                    is_out_of_office: extras.out_of_office.is_out_of_office,
                    message: extras.out_of_office.message,
                },
                work_location: WorkLocationLayers {
                    manual: extras.work_location.manual.map(Into::into),
                    automatic: extras.work_location.automatic.map(Into::into),
                },
            };
            facts.tidy();
        }
        facts.sequence = SequenceBase {
            value: record.sequence.value,
            as_of: Instant::from_unix_millis(record.sequence.as_of),
        };
        Ok(facts)
    }
}

impl TryFrom<SessionV1> for Session {
    type Error = String;

    fn try_from(session: SessionV1) -> Result<Session, String> {
        let id = SessionId::parse(&session.id)
            .map_err(|error| format!("a record whose session id {error}"))?;
        Ok(Session {
            id,
            state: match session.state {
                SessionStateV1::Available => SessionState::Available,
                SessionStateV1::BusyInACall => SessionState::BusyInACall,
                SessionStateV1::BusyInAConferenceCall => SessionState::BusyInAConferenceCall,
                SessionStateV1::Away => SessionState::Away,
                SessionStateV1::DoNotDisturbPresenting => SessionState::DoNotDisturbPresenting,
            },
            kind: match session.kind {
                SessionKindV1::Application => SessionKind::Application,
                SessionKindV1::Legacy => SessionKind::Legacy,
            },
            set_at: Instant::from_unix_millis(session.set_at),
            expires_at: Instant::from_unix_millis(session.expires_at),
        })
    }
}

impl From<PreferredPresenceV1> for PreferredPresence {
    fn from(preferred: PreferredPresenceV1) -> PreferredPresence {
        PreferredPresence {
            state: match preferred.state {
                PreferredStateV1::Available => PreferredState::Available,
                PreferredStateV1::Busy => PreferredState::Busy,
                PreferredStateV1::DoNotDisturb => PreferredState::DoNotDisturb,
                PreferredStateV1::BeRightBack => PreferredState::BeRightBack,
                PreferredStateV1::Away => PreferredState::Away,
                PreferredStateV1::AppearOffline => PreferredState::AppearOffline,
            },
            set_at: Instant::from_unix_millis(preferred.set_at),
            expires_at: Instant::from_unix_millis(preferred.expires_at),
        }
    }
}

impl From<StatusMessageV1> for StatusMessage {
    fn from(message: StatusMessageV1) -> StatusMessage {
        StatusMessage {
            content: message.content,
            published_at: Instant::from_unix_millis(message.published_at),
            expiry: message.expiry.map(|expiry| StatusMessageExpiry {
                at: Instant::from_unix_millis(expiry.at),
                date_time: expiry.date_time,
                time_zone: expiry.time_zone,
            }),
        }
    }
}

impl From<WorkLocationV1> for WorkLocation {
    fn from(location: WorkLocationV1) -> WorkLocation {
        WorkLocation {
            location_type: match location.location_type {
                WorkLocationTypeV1::Unspecified => WorkLocationType::Unspecified,
                WorkLocationTypeV1::Office => WorkLocationType::Office,
                WorkLocationTypeV1::Remote => WorkLocationType::Remote,
                WorkLocationTypeV1::TimeOff => WorkLocationType::TimeOff,
            },
            place_id: location.place_id,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Golden bytes: each hex literal was printed by the first release's
    //! `encode_value` (postcard of `UserFacts` itself, before `FactsV1`
    //! existed) for the facts beside it. Never regenerate them: a failure
    //! here means records on disk would no longer load as they were
    //! written. A change of format is a new version with its own test.

    use super::*;

    fn instant(millis: i64) -> Instant {
        Instant::from_unix_millis(millis)
    }

    fn session(id: &str, state: SessionState, kind: SessionKind, set_at: i64) -> Session {
        Session {
            id: SessionId::parse(id).expect("valid"),
            state,
            kind,
            set_at: instant(set_at),
            expires_at: instant(1_764_003_600_000),
        }
    }

    fn tombstone() -> UserFacts {
        let mut facts = UserFacts::default();
        facts.sequence = SequenceBase {
            value: 7,
            as_of: instant(1_764_000_000_000),
        };
        facts
    }

    fn one_guid_session() -> UserFacts {
        let mut facts = UserFacts::default();
        facts.sessions.push(Session {
            id: SessionId::parse("5e55107a-99b0-4c2e-8d4f-b3a1c0ffee01").expect("valid"),
            state: SessionState::Available,
            kind: SessionKind::Application,
            set_at: instant(1_764_000_000_000),
            expires_at: instant(1_764_014_400_000),
        });
        facts.sequence = SequenceBase {
            value: 1,
            as_of: instant(1_764_000_000_000),
        };
        facts
    }

    /// Every kind of fact, every session state, both kinds of session.
    fn every_fact() -> UserFacts {
        let mut facts = UserFacts::default();
        for (n, state) in SessionState::SET_PRESENCE.iter().enumerate() {
            let kind = if n % 2 == 0 {
                SessionKind::Application
            } else {
                SessionKind::Legacy
            };
            facts.sessions.push(session(
                &format!("s{n}"),
                *state,
                kind,
                1_764_000_000_000 + n as i64,
            ));
        }
        let extras = facts.extras_mut();
        extras.preferred = Some(PreferredPresence {
            state: PreferredState::AppearOffline,
            set_at: instant(1_764_000_000_000),
            expires_at: instant(1_764_604_800_000),
        });
        extras.status_message = Some(StatusMessage {
            content: "In Berlin 🇩🇪".into(),
            published_at: instant(1_764_000_000_000),
            expiry: Some(StatusMessageExpiry {
                at: instant(1_764_086_400_000),
                date_time: "2025-11-25T17:00:00".into(),
                time_zone: "W. Europe Standard Time".into(),
            }),
        });
        extras.out_of_office = OutOfOffice {
            is_out_of_office: true,
            message: Some("back Monday".into()),
        };
        extras.work_location = WorkLocationLayers {
            manual: Some(WorkLocation {
                location_type: WorkLocationType::TimeOff,
                place_id: None,
            }),
            automatic: Some(WorkLocation {
                location_type: WorkLocationType::Office,
                place_id: Some("b1".into()),
            }),
        };
        facts.sequence = SequenceBase {
            value: 300,
            as_of: instant(1_764_000_000_005),
        };
        facts
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
            .collect()
    }

    /// `facts` encodes to exactly `golden`, and `golden` decodes to exactly
    /// `facts`.
    fn check(facts: UserFacts, golden: &str) {
        assert_eq!(hex(&FactsV1::from(&facts).encode()), golden);
        let decoded = FactsV1::decode(&unhex(golden)).expect("decodes");
        assert_eq!(UserFacts::try_from(decoded), Ok(facts));
    }

    #[test]
    fn a_user_holding_nothing() {
        check(UserFacts::default(), "0100000000");
    }

    #[test]
    fn a_tombstone() {
        check(tombstone(), "0100000780a0bfe9d666");
    }

    #[test]
    fn one_guid_session_of_an_application() {
        check(
            one_guid_session(),
            "01012435653535313037612d393962302d346332652d386434662d623361316330666665653031000080a0bfe9d66680889df7d666000180a0bfe9d666",
        );
    }

    #[test]
    fn every_kind_of_fact() {
        check(
            every_fact(),
            "0105027330000080a0bfe9d66680daf6ecd666027331010182a0bfe9d66680daf6ecd666027332020084a0bfe9d66680daf6ecd666027333030186a0bfe9d66680daf6ecd666027334040088a0bfe9d66680daf6ecd66601010580a0bfe9d66680b0a3aadb660112496e204265726c696e20f09f87a9f09f87aa80a0bfe9d666018090f2bbd76613323032352d31312d32355431373a30303a303017572e204575726f7065205374616e646172642054696d6501010b6261636b204d6f6e646179010300010101026231ac028aa0bfe9d666",
        );
    }

    /// Each enum value's index, as the first release's derives wrote it
    /// (a varint, one byte for these), both ways.
    #[test]
    fn every_enum_value_keeps_its_index() {
        fn byte(value: &impl Serialize) -> Vec<u8> {
            postcard::to_stdvec(value).expect("serializes")
        }
        for (state, index) in [
            (SessionState::Available, 0),
            (SessionState::BusyInACall, 1),
            (SessionState::BusyInAConferenceCall, 2),
            (SessionState::Away, 3),
            (SessionState::DoNotDisturbPresenting, 4),
        ] {
            for (kind, kind_index) in [(SessionKind::Application, 0), (SessionKind::Legacy, 1)] {
                let original = session("s", state, kind, 0);
                let record = SessionV1::from(&original);
                assert_eq!(byte(&record.state), [index]);
                assert_eq!(byte(&record.kind), [kind_index]);
                assert_eq!(Session::try_from(record), Ok(original));
            }
        }
        for (state, index) in [
            (PreferredState::Available, 0),
            (PreferredState::Busy, 1),
            (PreferredState::DoNotDisturb, 2),
            (PreferredState::BeRightBack, 3),
            (PreferredState::Away, 4),
            (PreferredState::AppearOffline, 5),
        ] {
            let original = PreferredPresence {
                state,
                set_at: instant(0),
                expires_at: instant(1),
            };
            let record = PreferredPresenceV1::from(&original);
            assert_eq!(byte(&record.state), [index]);
            assert_eq!(PreferredPresence::from(record), original);
        }
        for (location_type, index) in [
            (WorkLocationType::Unspecified, 0),
            (WorkLocationType::Office, 1),
            (WorkLocationType::Remote, 2),
            (WorkLocationType::TimeOff, 3),
        ] {
            let original = WorkLocation {
                location_type,
                place_id: None,
            };
            let record = WorkLocationV1::from(&original);
            assert_eq!(byte(&record.location_type), [index]);
            assert_eq!(WorkLocation::from(record), original);
        }
    }

    #[test]
    fn unknown_formats_bad_ids_and_garbage_are_refused() {
        let mut newer = unhex("0100000000");
        newer[0] = 2;
        assert_eq!(
            FactsV1::decode(&newer),
            Err(
                "a record of format 2, which this presenced does not know (it writes format 1)"
                    .into()
            )
        );
        let error = FactsV1::decode(&[1, 0xff, 0xff]).expect_err("garbage");
        assert!(
            error.starts_with("a record that does not decode"),
            "{error}"
        );
        assert_eq!(FactsV1::decode(&[]), Err("an empty record".into()));
        // A session id that core refuses (a space) in a well-formed record.
        let mut record = FactsV1::from(&one_guid_session());
        record.sessions[0].id = "not an id".into();
        let error = UserFacts::try_from(record).expect_err("refused");
        assert!(error.starts_with("a record whose session id"), "{error}");
    }
}
