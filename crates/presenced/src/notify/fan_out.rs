//! The fan-out: each change read from the store's change feed becomes one
//! notification per subscription naming the user that has not been sent
//! that sequence number yet, rendered for the subscription's creator and
//! queued for its URL; and one stream event, if a stream watches the user.

use std::collections::HashMap;
use std::sync::Arc;

use presence_core::{Instant, Timeouts, UserFacts, UserKey};
use presence_store::{Change, Cursor, Position};

use super::Notifier;
use super::crypto::EncryptionCertificate;
use super::delivery::Item;
use super::nodes::Sender;
use super::stream::StreamEvent;
use super::subscription::Subscription;
use crate::wire::notification::{
    ChangeNotification, ResourceData, ResourcePresence, render as render_json,
};
use crate::wire::presence::PresenceJson;
use crate::wire::presence::{Viewer, render};
use crate::wire_time::format_instant;

/// One visible change, as the fan-out handles it: from the feed, or made up
/// by the catch-up from a user's current facts.
#[derive(Debug)]
pub struct Visible {
    pub key: UserKey,
    pub facts: Arc<UserFacts>,
    pub at: Instant,
    /// Where the change sits in the feed; `None` for the catch-up, which
    /// streams never see.
    pub position: Option<Position>,
}

impl From<Change> for Visible {
    fn from(change: Change) -> Visible {
        Visible {
            key: change.key,
            facts: change.facts,
            at: change.at,
            position: Some(change.position),
        }
    }
}

impl Notifier {
    /// Turns changes into notifications, queued with one call per URL.
    /// `cursor` (the feed's, for changes read from it) is moved past each
    /// change in turn, so that a streamed one's event id is the cursor
    /// after it; the id is written out only for those.
    pub(super) fn fan_out(
        &self,
        changes: impl Iterator<Item = Visible>,
        mut cursor: Option<&mut Cursor>,
    ) {
        let mut by_url: HashMap<String, Vec<Item>> = HashMap::new();
        for change in changes {
            self.fan_out_one(change, cursor.as_deref_mut(), &mut by_url);
        }
        for (url, items) in by_url {
            self.delivery.send(&url, items);
        }
    }

    fn fan_out_one(
        &self,
        change: Visible,
        cursor: Option<&mut Cursor>,
        by_url: &mut HashMap<String, Vec<Item>>,
    ) {
        let sequence = presence_core::sequence_at(&change.facts, change.at, self.timeouts);
        let sender = self.sender(&change.key, change.position);
        let (targets, streamed) = {
            let mut registry = self.registry();
            (
                match sender {
                    Sender::ThisNode(_) => registry.claim(&change.key, sequence),
                    Sender::Elsewhere => Vec::new(),
                },
                registry.streamed(&change.key),
            )
        };
        for (url, mut item) in notifications(&change, sequence, &targets, self.timeouts) {
            if let Sender::ThisNode(warrant) = sender {
                item.warrant = warrant;
            }
            match by_url.get_mut(&url) {
                Some(items) => items.push(item),
                None => {
                    by_url.insert(url, vec![item]);
                }
            }
        }
        let Some((cursor, position)) = cursor.zip(change.position) else {
            return;
        };
        cursor.advance(position);
        if streamed {
            self.streams.publish(StreamEvent {
                id: cursor.to_text(),
                position,
                key: change.key,
                facts: change.facts,
                at: change.at,
            });
        }
    }
}

/// The notifications of one change numbered `sequence` for `targets`, each
/// with its URL: the presence rendered once per kind of viewer, through the
/// one render path.
pub fn notifications(
    change: &Visible,
    sequence: u64,
    targets: &[(Arc<Subscription>, Option<Arc<EncryptionCertificate>>)],
    timeouts: Timeouts,
) -> Vec<(String, Item)> {
    let user_text = change.key.user.as_str().to_string();
    let mut rendered: Vec<(Viewer, PresenceJson)> = Vec::new();
    let mut out = Vec::with_capacity(targets.len());
    for (subscription, certificate) in targets {
        let viewer = subscription.viewer();
        let index = match rendered.iter().position(|(seen, _)| *seen == viewer) {
            Some(index) => index,
            None => {
                let json = render(
                    &change.key.user,
                    Some(&change.facts),
                    change.at,
                    timeouts,
                    &viewer,
                    None,
                );
                rendered.push((viewer, json));
                rendered.len() - 1
            }
        };
        let presence = &rendered[index].1;
        let json = change_json(
            subscription,
            certificate.as_deref(),
            &user_text,
            &presence.sequence_number,
            presence,
        );
        out.push((
            subscription.notification_url.clone(),
            Item {
                subscription: Arc::from(subscription.id.as_str()),
                mark: Some((change.key.user.clone(), sequence)),
                warrant: None,
                json,
                queued: std::time::Instant::now(),
            },
        ));
    }
    out
}

/// One change notification's JSON, encrypted for rich subscriptions.
pub fn change_json(
    subscription: &Subscription,
    certificate: Option<&EncryptionCertificate>,
    user: &str,
    sequence: &str,
    presence: &PresenceJson,
) -> String {
    let tenant = subscription.tenant.as_str();
    let encrypted_content = match certificate {
        Some(certificate) if subscription.include_resource_data => {
            let plain = render_json(&ResourcePresence {
                odata_type: "#microsoft.graph.presence",
                odata_id: format!("users/{user}/presence"),
                presence,
            });
            match certificate.encrypt(plain.as_bytes()) {
                Ok(content) => Some(content),
                Err(problem) => {
                    tracing::error!(subscription = %subscription.id, %problem, "could not encrypt a notification; it is sent without resource data");
                    None
                }
            }
        }
        _ => None,
    };
    render_json(&ChangeNotification {
        subscription_id: &subscription.id,
        subscription_expiration_date_time: format_instant(subscription.expiration),
        change_type: "updated",
        resource: format!("communications/presences/{user}"),
        resource_data: ResourceData {
            odata_type: "#microsoft.graph.presence",
            odata_id: format!("users/{user}/presence"),
            id: user,
            sequence_number: sequence,
        },
        client_state: subscription.client_state.as_deref(),
        tenant_id: &tenant,
        organization_id: &tenant,
        encrypted_content,
    })
}

#[cfg(test)]
mod tests {
    use presence_core::{
        Command, Duration, SessionExpiration, SessionId, SessionState, StatusMessageInput,
        TenantId, UserId, apply,
    };
    use serde_json::Value;

    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).expect("valid")
    }

    fn subscription(creator: &str, url: &str) -> Arc<Subscription> {
        let mut subscription = Subscription::new(
            TenantId::parse("t").expect("valid"),
            Some("app".into()),
            Some(creator.into()),
            "communications/presences/alice".into(),
            vec![user("alice")],
            url.into(),
            None,
            Instant::from_unix_millis(10_000_000),
        );
        subscription.client_state = Some("state".into());
        Arc::new(subscription)
    }

    /// alice, Available with a status message, at `now`.
    fn alice(now: Instant) -> Visible {
        let mut facts = UserFacts::default();
        let timeouts = Timeouts::default();
        for command in [
            Command::SetPresence {
                session_id: SessionId::parse("app").expect("valid"),
                state: SessionState::Available,
                expiration: SessionExpiration::new(Duration::from_hours(1)).expect("in range"),
            },
            Command::SetStatusMessage(Some(StatusMessageInput {
                content: "hello".into(),
                expiry: None,
            })),
        ] {
            apply(&mut facts, &command, now, timeouts).expect("applies");
        }
        Visible {
            key: UserKey::new(TenantId::parse("t").expect("valid"), user("alice")),
            facts: Arc::new(facts),
            at: now,
            position: None,
        }
    }

    #[test]
    fn each_subscription_gets_graphs_notification_at_its_own_url() {
        let now = Instant::from_unix_millis(1_000_000);
        let change = alice(now);
        let targets = vec![
            (subscription("app", "https://a.example/hook"), None),
            (subscription("bob", "https://b.example/hook"), None),
        ];
        let out = notifications(&change, 2, &targets, Timeouts::default());
        assert_eq!(
            out.iter().map(|(url, _)| url.as_str()).collect::<Vec<_>>(),
            ["https://a.example/hook", "https://b.example/hook"]
        );
        for ((_, item), (subscription, _)) in out.iter().zip(&targets) {
            assert_eq!(&*item.subscription, subscription.id.as_str());
            assert_eq!(item.mark, Some((user("alice"), 2)));
            let json: Value = serde_json::from_str(&item.json).expect("JSON");
            assert_eq!(json["subscriptionId"], subscription.id.as_str());
            assert_eq!(json["changeType"], "updated");
            assert_eq!(json["clientState"], "state");
            assert_eq!(json["tenantId"], "t");
            assert_eq!(json["resource"], "communications/presences/alice");
            assert_eq!(json["resourceData"]["id"], "alice");
            assert_eq!(
                json["resourceData"]["sequenceNumber"],
                presence_core::format_sequence(2)
            );
            assert!(json.get("encryptedContent").is_none(), "not rich");
        }
    }

    #[test]
    fn a_delegated_creator_is_a_viewer_of_another_user() {
        assert_eq!(
            subscription("app", "https://a.example/hook").viewer(),
            Viewer::APPLICATION
        );
        assert_eq!(
            subscription("bob", "https://a.example/hook").viewer(),
            Viewer::user(user("bob"))
        );
    }
}
