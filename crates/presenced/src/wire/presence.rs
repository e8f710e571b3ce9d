//! Graph's presence as JSON: what GET answers, what the live stream sends,
//! and what rich notifications encrypt, for one [`Reader`] at a time.
//!
//! Architecture invariant: every presence presenced renders goes through
//! [`PresenceJson::new`] with the viewer's [`Reader`]; there is no other
//! path from the model to JSON.

use presence_core::{
    Decision, Instant, Presence, StatusMessage, UserFacts, UserId, WorkLocation,
    WorkLocationSource, WorkLocationType, format_sequence,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::wire::schema;
use crate::wire_time;

fn published_date_time() -> utoipa::openapi::schema::Object {
    schema::instant("When the message was set.")
}

/// Who is reading, which decides whether the status message's dates show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reader {
    /// The user themself, or an application: everything shows.
    Owner,
    /// Another user: Graph hides `publishedDateTime` and `expiryDateTime`.
    OtherUser,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceJson {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    pub odata_context: Option<String>,
    pub id: String,
    #[schema(schema_with = schema::availability)]
    pub availability: &'static str,
    #[schema(schema_with = schema::activity)]
    pub activity: &'static str,
    /// `null` when the user has none.
    #[schema(required = true)]
    pub status_message: Option<StatusMessageOut>,
    pub out_of_office_settings: OutOfOfficeOut,
    /// Grows on every visible change; compare as strings of equal length.
    pub sequence_number: String,
    pub work_location: WorkLocationOut,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessageOut {
    pub message: ItemBodyOut,
    /// Shown to the user themself and to applications only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = published_date_time)]
    pub published_date_time: Option<String>,
    /// Shown to the user themself and to applications only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = DateTimeTimeZoneOut)]
    pub expiry_date_time: Option<DateTimeTimeZoneOut>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemBodyOut {
    pub content: String,
    #[schema(schema_with = schema::content_type)]
    pub content_type: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZoneOut {
    pub date_time: String,
    pub time_zone: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeOut {
    #[schema(required = true)]
    pub message: Option<String>,
    pub is_out_of_office: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkLocationOut {
    #[schema(schema_with = schema::work_location_type)]
    pub work_location_type: &'static str,
    #[schema(schema_with = schema::work_location_source)]
    pub source: &'static str,
    #[schema(required = true)]
    pub place_id: Option<String>,
}

fn status_message_out(message: &StatusMessage, reader: Reader) -> StatusMessageOut {
    let owner = reader == Reader::Owner;
    StatusMessageOut {
        message: ItemBodyOut {
            content: message.content.clone(),
            content_type: "text",
        },
        published_date_time: owner.then(|| wire_time::format_instant(message.published_at)),
        expiry_date_time: message.expiry.as_ref().filter(|_| owner).map(|expiry| {
            DateTimeTimeZoneOut {
                date_time: expiry.date_time.clone(),
                time_zone: expiry.time_zone.clone(),
            }
        }),
    }
}

fn work_location_out(location: Option<(&WorkLocation, WorkLocationSource)>) -> WorkLocationOut {
    match location {
        Some((location, source)) => WorkLocationOut {
            work_location_type: location.location_type.as_str(),
            source: source.as_str(),
            place_id: location.place_id.clone(),
        },
        None => WorkLocationOut {
            work_location_type: WorkLocationType::Unspecified.as_str(),
            source: WorkLocationSource::None.as_str(),
            place_id: None,
        },
    }
}

impl PresenceJson {
    pub fn new(
        user: &UserId,
        presence: &Presence<'_>,
        reader: Reader,
        odata_context: Option<String>,
    ) -> PresenceJson {
        PresenceJson {
            odata_context,
            id: String::from(&*user.as_str()),
            availability: presence.availability.as_str(),
            activity: presence.activity.as_str(),
            status_message: presence
                .status_message
                .map(|message| status_message_out(message, reader)),
            out_of_office_settings: OutOfOfficeOut {
                message: presence.out_of_office.message.clone(),
                is_out_of_office: presence.out_of_office.is_out_of_office,
            },
            sequence_number: format_sequence(presence.sequence),
            work_location: work_location_out(presence.work_location),
        }
    }
}

/// Who a presence is rendered for: the signed-in user of a delegated token,
/// or an application (`user: None`), which sees what the owner sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub user: Option<UserId>,
}

impl Viewer {
    /// An application, or the user themself: everything shows.
    pub const APPLICATION: Viewer = Viewer { user: None };

    pub fn user(user: UserId) -> Viewer {
        Viewer { user: Some(user) }
    }

    /// What this viewer may see of `target`'s presence: Graph hides a status
    /// message's dates from other users.
    pub fn reader(&self, target: &UserId) -> Reader {
        match &self.user {
            Some(user) if user != target => Reader::OtherUser,
            _ => Reader::Owner,
        }
    }
}

/// The one render path: `user`'s presence as `facts` show it at `at`, for
/// `viewer` (Offline for a user nothing is held for).
pub fn render(
    user: &UserId,
    facts: Option<&UserFacts>,
    at: Instant,
    timeouts: presence_core::Timeouts,
    viewer: &Viewer,
    odata_context: Option<String>,
) -> PresenceJson {
    presence_json(
        user,
        facts,
        at,
        timeouts,
        viewer.reader(user),
        odata_context,
    )
}

/// About what one presence takes as JSON (a plain one is 420 bytes), so
/// that rendering it needs one allocation and no copying as it grows.
pub const PRESENCE_JSON_BYTES: usize = 512;

/// The presence of a user at `now` (Offline for a user nothing is held for).
pub fn presence_json(
    user: &UserId,
    facts: Option<&UserFacts>,
    now: Instant,
    timeouts: presence_core::Timeouts,
    reader: Reader,
    odata_context: Option<String>,
) -> PresenceJson {
    let empty = UserFacts::default();
    let facts = facts.unwrap_or(&empty);
    let presence = presence_core::presence_at(facts, now, timeouts);
    PresenceJson::new(user, &presence, reader, odata_context)
}

/// Which rule of the aggregation ladder decided a presence, for the
/// introspection endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionJson {
    #[schema(schema_with = schema::decision_rule)]
    pub rule: &'static str,
    /// The deciding session, when the rule is `strongestSession`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub session_id: Option<String>,
}

impl DecisionJson {
    pub fn new(decision: &Decision<'_>) -> DecisionJson {
        let (rule, session_id) = match decision {
            Decision::UserPreferred => ("userPreferredPresence", None),
            Decision::Session(id) => ("strongestSession", Some(id.as_str().to_string())),
            Decision::NoSession => ("noSession", None),
        };
        DecisionJson { rule, session_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_core::UserId;

    fn user(id: &str) -> UserId {
        UserId::parse(id).expect("valid")
    }

    #[test]
    fn other_users_are_readers_of_others_and_applications_of_everyone() {
        let alice = user("alice");
        let bob = user("bob");
        assert_eq!(Viewer::user(alice.clone()).reader(&alice), Reader::Owner);
        assert_eq!(Viewer::user(alice).reader(&bob), Reader::OtherUser);
        assert_eq!(Viewer::APPLICATION.reader(&bob), Reader::Owner);
    }
}
