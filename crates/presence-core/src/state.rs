//! Availability and activity values, and the pairs each operation accepts.
//!
//! Graph's documentation has carried two value lists over the years; the
//! enums hold their union so that any value a client learned from either list
//! is recognised, and then each operation accepts only its documented pairs.
//! Parsing is case-insensitive; the canonical spelling is PascalCase, as Graph
//! puts it on the wire.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical (PascalCase) spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a value regardless of case; `None` if it is not one.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|value| value.as_str().eq_ignore_ascii_case(text))
            }

            /// The allowed values, comma separated, for error messages.
            pub fn allowed_values() -> String {
                $name::ALL.iter().map(|value| value.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// The base presence state.
    Availability {
        Available => "Available",
        AvailableIdle => "AvailableIdle",
        Away => "Away",
        BeRightBack => "BeRightBack",
        Busy => "Busy",
        BusyIdle => "BusyIdle",
        DoNotDisturb => "DoNotDisturb",
        Offline => "Offline",
        PresenceUnknown => "PresenceUnknown",
    }
}

string_enum! {
    /// The supplemental state.
    Activity {
        Available => "Available",
        AvailableInactive => "AvailableInactive",
        Away => "Away",
        BeRightBack => "BeRightBack",
        Busy => "Busy",
        DoNotDisturb => "DoNotDisturb",
        Focusing => "Focusing",
        InACall => "InACall",
        InAConferenceCall => "InAConferenceCall",
        Inactive => "Inactive",
        InAMeeting => "InAMeeting",
        Offline => "Offline",
        OffWork => "OffWork",
        OutOfOffice => "OutOfOffice",
        PresenceUnknown => "PresenceUnknown",
        Presenting => "Presenting",
        UrgentInterruptionsOnly => "UrgentInterruptionsOnly",
    }
}

/// The state of a presence session: exactly the pairs setPresence accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionState {
    Available,
    BusyInACall,
    BusyInAConferenceCall,
    Away,
    DoNotDisturbPresenting,
}

impl SessionState {
    /// The pairs accepted by setPresence, in Graph's documentation order.
    pub const SET_PRESENCE: &'static [SessionState] = &[
        SessionState::Available,
        SessionState::BusyInACall,
        SessionState::BusyInAConferenceCall,
        SessionState::Away,
        SessionState::DoNotDisturbPresenting,
    ];

    /// The pairs accepted by the legacy session endpoint: the first four.
    pub const LEGACY: &'static [SessionState] = &[
        SessionState::Available,
        SessionState::BusyInACall,
        SessionState::BusyInAConferenceCall,
        SessionState::Away,
    ];

    pub const fn pair(self) -> (Availability, Activity) {
        match self {
            SessionState::Available => (Availability::Available, Activity::Available),
            SessionState::BusyInACall => (Availability::Busy, Activity::InACall),
            SessionState::BusyInAConferenceCall => {
                (Availability::Busy, Activity::InAConferenceCall)
            }
            SessionState::Away => (Availability::Away, Activity::Away),
            SessionState::DoNotDisturbPresenting => {
                (Availability::DoNotDisturb, Activity::Presenting)
            }
        }
    }

    /// The state among `allowed` with this pair, if any.
    pub fn from_pair(
        allowed: &[SessionState],
        availability: Availability,
        activity: Activity,
    ) -> Option<SessionState> {
        allowed
            .iter()
            .copied()
            .find(|state| state.pair() == (availability, activity))
    }
}

/// The pairs setUserPreferredPresence accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PreferredState {
    Available,
    Busy,
    DoNotDisturb,
    BeRightBack,
    Away,
    /// "Appear offline": Offline / OffWork.
    AppearOffline,
}

impl PreferredState {
    pub const ALL: &'static [PreferredState] = &[
        PreferredState::Available,
        PreferredState::Busy,
        PreferredState::DoNotDisturb,
        PreferredState::BeRightBack,
        PreferredState::Away,
        PreferredState::AppearOffline,
    ];

    pub const fn pair(self) -> (Availability, Activity) {
        match self {
            PreferredState::Available => (Availability::Available, Activity::Available),
            PreferredState::Busy => (Availability::Busy, Activity::Busy),
            PreferredState::DoNotDisturb => (Availability::DoNotDisturb, Activity::DoNotDisturb),
            PreferredState::BeRightBack => (Availability::BeRightBack, Activity::BeRightBack),
            PreferredState::Away => (Availability::Away, Activity::Away),
            PreferredState::AppearOffline => (Availability::Offline, Activity::OffWork),
        }
    }

    pub fn from_pair(availability: Availability, activity: Activity) -> Option<PreferredState> {
        PreferredState::ALL
            .iter()
            .copied()
            .find(|state| state.pair() == (availability, activity))
    }
}

/// Formats pairs as `Available/Available, Busy/InACall` for error messages.
pub fn describe_pairs(pairs: impl IntoIterator<Item = (Availability, Activity)>) -> String {
    pairs
        .into_iter()
        .map(|(availability, activity)| format!("{availability}/{activity}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a work location is, as Graph's `workLocationType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkLocationType {
    Unspecified,
    Office,
    Remote,
    TimeOff,
}

impl WorkLocationType {
    pub const ALL: &'static [WorkLocationType] = &[
        WorkLocationType::Unspecified,
        WorkLocationType::Office,
        WorkLocationType::Remote,
        WorkLocationType::TimeOff,
    ];

    /// The camelCase spelling Graph uses for Edm enums.
    pub const fn as_str(self) -> &'static str {
        match self {
            WorkLocationType::Unspecified => "unspecified",
            WorkLocationType::Office => "office",
            WorkLocationType::Remote => "remote",
            WorkLocationType::TimeOff => "timeOff",
        }
    }

    pub fn parse(text: &str) -> Option<WorkLocationType> {
        WorkLocationType::ALL
            .iter()
            .copied()
            .find(|value| value.as_str().eq_ignore_ascii_case(text))
    }
}

/// Which layer decided the work location, as Graph's `workLocationSource`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkLocationSource {
    None,
    Manual,
    Automatic,
}

impl WorkLocationSource {
    pub const ALL: &'static [WorkLocationSource] = &[
        WorkLocationSource::None,
        WorkLocationSource::Manual,
        WorkLocationSource::Automatic,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            WorkLocationSource::None => "none",
            WorkLocationSource::Manual => "manual",
            WorkLocationSource::Automatic => "automatic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_ignores_case_and_rejects_unknown_values() {
        assert_eq!(
            Availability::parse("donotdisturb"),
            Some(Availability::DoNotDisturb)
        );
        assert_eq!(Activity::parse("INACALL"), Some(Activity::InACall));
        assert_eq!(Availability::parse("Sleeping"), None);
        assert_eq!(
            WorkLocationType::parse("TIMEOFF"),
            Some(WorkLocationType::TimeOff)
        );
    }

    #[test]
    fn only_documented_pairs_are_session_states() {
        assert_eq!(
            SessionState::from_pair(
                SessionState::SET_PRESENCE,
                Availability::Busy,
                Activity::InACall
            ),
            Some(SessionState::BusyInACall)
        );
        assert_eq!(
            SessionState::from_pair(
                SessionState::SET_PRESENCE,
                Availability::Busy,
                Activity::Busy
            ),
            None
        );
        assert_eq!(
            SessionState::from_pair(
                SessionState::LEGACY,
                Availability::DoNotDisturb,
                Activity::Presenting
            ),
            None
        );
        assert_eq!(
            PreferredState::from_pair(Availability::Offline, Activity::OffWork),
            Some(PreferredState::AppearOffline)
        );
    }
}
