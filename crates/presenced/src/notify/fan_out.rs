//! The fan-out: each change read from the store's change feed becomes one
//! notification per subscription naming the user that has not been sent
//! that sequence number yet, rendered for the subscription's creator and
//! queued for its URL; and one stream event, if a stream watches the user.

use std::collections::HashMap;
use std::sync::Arc;

use presence_core::{Instant, UserFacts, UserKey};
use presence_store::{Change, Position};

use super::Notifier;
use super::crypto::EncryptionCertificate;
use super::delivery::Item;
use super::stream::StreamEvent;
use super::subscription::Subscription;
use crate::service::{Viewer, render};
use crate::wire::notification::{
    ChangeNotification, ResourceData, ResourcePresence, render as render_json,
};
use crate::wire::presence::PresenceJson;
use crate::wire_time::format_instant;

/// One visible change, as the fan-out handles it: from the feed, or made up
/// by the catch-up from a user's current facts.
#[derive(Debug)]
pub struct Visible {
    pub key: UserKey,
    pub facts: Arc<UserFacts>,
    pub at: Instant,
    /// Where the change sits in the feed, and the stream event id after
    /// it; `None` for the catch-up, which streams never see.
    pub streamed_as: Option<(Position, String)>,
}

impl Visible {
    pub fn from_feed(change: Change, event_id: String) -> Visible {
        Visible {
            key: change.key,
            facts: change.facts,
            at: change.at,
            streamed_as: Some((change.position, event_id)),
        }
    }
}

impl Notifier {
    /// Turns changes into notifications, queued with one call per URL.
    pub(super) fn fan_out(&self, changes: impl Iterator<Item = Visible>) {
        let mut by_url: HashMap<String, Vec<Item>> = HashMap::new();
        for change in changes {
            self.fan_out_one(change, &mut by_url);
        }
        for (url, items) in by_url {
            self.delivery.send(&url, items);
        }
    }

    fn fan_out_one(&self, change: Visible, by_url: &mut HashMap<String, Vec<Item>>) {
        let sequence = presence_core::sequence_at(&change.facts, change.at, self.timeouts);
        let (targets, streamed) = {
            let mut registry = self.registry();
            (
                registry.claim(&change.key, sequence),
                registry.streamed(&change.key),
            )
        };
        if !targets.is_empty() {
            let user_text = change.key.user.as_str().to_string();
            // Rendered at most once per kind of viewer.
            let mut rendered: Vec<(Viewer, PresenceJson)> = Vec::new();
            for (subscription, certificate) in targets {
                let viewer = subscription.viewer();
                let index = match rendered.iter().position(|(seen, _)| *seen == viewer) {
                    Some(index) => index,
                    None => {
                        let json = render(
                            &change.key.user,
                            Some(&change.facts),
                            change.at,
                            self.timeouts,
                            &viewer,
                            None,
                        );
                        rendered.push((viewer, json));
                        rendered.len() - 1
                    }
                };
                let presence = &rendered[index].1;
                let json = change_json(
                    &subscription,
                    certificate.as_deref(),
                    &user_text,
                    &presence.sequence_number,
                    presence,
                );
                let item = Item {
                    subscription: Arc::from(subscription.id.as_str()),
                    mark: Some((change.key.user.clone(), sequence)),
                    json,
                    queued: std::time::Instant::now(),
                };
                match by_url.get_mut(&subscription.notification_url) {
                    Some(items) => items.push(item),
                    None => {
                        by_url.insert(subscription.notification_url.clone(), vec![item]);
                    }
                }
            }
        }
        if streamed && let Some((position, id)) = change.streamed_as {
            self.streams.publish(StreamEvent {
                id,
                position,
                key: change.key,
                facts: change.facts,
                at: change.at,
            });
        }
    }
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
