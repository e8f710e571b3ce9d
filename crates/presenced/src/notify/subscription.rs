//! A subscription as presenced keeps it, the resources it may name, and
//! its records in the store.
//!
//! Records (see `Store::put_records`; their bytes are frozen in
//! `presence_store::record::subscription`):
//! - `s/{id}`: the subscription, as JSON (a format field first, so that a
//!   later presenced can read it and convert);
//! - `m/{id}/{user}`: the sequence number of the last presence of `user`
//!   that the receiver acknowledged, eight bytes little-endian. After a
//!   restart every subscribed user whose presence is now numbered otherwise
//!   is notified again (see `notify/mod.rs`), so these need no sync.

use presence_core::{Instant, TenantId, UserId};
use presence_store::record::Versioned;
use presence_store::record::subscription::SubscriptionRecordV1;
use serde::{Deserialize, Serialize};

/// The most users one subscription may name, as Graph.
pub const MAX_USERS: usize = 650;

/// The longest `clientState` Graph accepts.
pub const MAX_CLIENT_STATE: usize = 128;

/// The format of the subscription records this presenced writes.
const RECORD_FORMAT: u32 = SubscriptionRecordV1::VERSION as u32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub format: u32,
    pub id: String,
    pub tenant: TenantId,
    /// The subscribing application (`applicationId`), from the token.
    pub application_id: Option<String>,
    /// The signed-in user of a delegated token, or the application.
    pub creator_id: Option<String>,
    /// The resource as the caller wrote it.
    pub resource: String,
    /// The users it names, without duplicates, in the caller's order.
    pub users: Vec<UserId>,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub expiration: Instant,
    pub client_state: Option<String>,
    pub include_resource_data: bool,
    /// The certificate as the caller sent it, and its id.
    pub encryption_certificate: Option<String>,
    pub encryption_certificate_id: Option<String>,
    pub latest_supported_tls_version: String,
}

impl Subscription {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant: TenantId,
        application_id: Option<String>,
        creator_id: Option<String>,
        resource: String,
        users: Vec<UserId>,
        notification_url: String,
        lifecycle_notification_url: Option<String>,
        expiration: Instant,
    ) -> Subscription {
        Subscription {
            format: RECORD_FORMAT,
            id: uuid::Uuid::new_v4().to_string(),
            tenant,
            application_id,
            creator_id,
            resource,
            users,
            notification_url,
            lifecycle_notification_url,
            expiration,
            client_state: None,
            include_resource_data: false,
            encryption_certificate: None,
            encryption_certificate_id: None,
            latest_supported_tls_version: "v1_2".into(),
        }
    }

    /// Whether `owner` may see and change this subscription: only its own
    /// application's, in its own tenant, and for a signed-in user only the
    /// ones that user created (as Graph scopes delegated subscriptions).
    pub fn owned_by(&self, owner: &Owner) -> bool {
        self.tenant == owner.tenant
            && self.application_id == owner.application
            && owner
                .user
                .as_ref()
                .is_none_or(|user| self.creator_id.as_ref() == Some(user))
    }
}

impl Subscription {
    /// Whom its notifications' resource data is rendered for: the
    /// signed-in user who created it (a delegated token's subscription has
    /// a creator other than its application), or its application. So a
    /// rich notification shows exactly what that creator would see through
    /// GET.
    pub fn viewer(&self) -> crate::wire::presence::Viewer {
        match &self.creator_id {
            Some(creator) if self.application_id.as_ref() != Some(creator) => {
                match UserId::parse(creator) {
                    Ok(user) => crate::wire::presence::Viewer::user(user),
                    Err(_) => crate::wire::presence::Viewer::APPLICATION,
                }
            }
            _ => crate::wire::presence::Viewer::APPLICATION,
        }
    }
}

/// Who asks for subscriptions: a tenant, an application, and for a
/// delegated caller the signed-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub tenant: TenantId,
    pub application: Option<String>,
    pub user: Option<String>,
}

pub fn encode(subscription: &Subscription) -> Vec<u8> {
    // Taken apart field by field, so that a field added to `Subscription`
    // fails to compile here until the record stores it (in a new version).
    let Subscription {
        format: _,
        id,
        tenant,
        application_id,
        creator_id,
        resource,
        users,
        notification_url,
        lifecycle_notification_url,
        expiration,
        client_state,
        include_resource_data,
        encryption_certificate,
        encryption_certificate_id,
        latest_supported_tls_version,
    } = subscription;
    SubscriptionRecordV1 {
        id: id.clone(),
        tenant: tenant.to_string(),
        application_id: application_id.clone(),
        creator_id: creator_id.clone(),
        resource: resource.clone(),
        users: users.iter().map(UserId::to_string).collect(),
        notification_url: notification_url.clone(),
        lifecycle_notification_url: lifecycle_notification_url.clone(),
        expiration: expiration.as_unix_millis(),
        client_state: client_state.clone(),
        include_resource_data: *include_resource_data,
        encryption_certificate: encryption_certificate.clone(),
        encryption_certificate_id: encryption_certificate_id.clone(),
        latest_supported_tls_version: latest_supported_tls_version.clone(),
    }
    .encode()
}

pub fn decode(bytes: &[u8]) -> Result<Subscription, String> {
    let record = SubscriptionRecordV1::decode(bytes)?;
    let tenant = TenantId::parse(&record.tenant)
        .map_err(|error| format!("subscription {} has a tenant id that {error}", record.id))?;
    let users = record
        .users
        .iter()
        .map(|user| UserId::parse(user))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("subscription {} names a user whose id {error}", record.id))?;
    Ok(Subscription {
        format: RECORD_FORMAT,
        id: record.id,
        tenant,
        application_id: record.application_id,
        creator_id: record.creator_id,
        resource: record.resource,
        users,
        notification_url: record.notification_url,
        lifecycle_notification_url: record.lifecycle_notification_url,
        expiration: Instant::from_unix_millis(record.expiration),
        client_state: record.client_state,
        include_resource_data: record.include_resource_data,
        encryption_certificate: record.encryption_certificate,
        encryption_certificate_id: record.encryption_certificate_id,
        latest_supported_tls_version: record.latest_supported_tls_version,
    })
}

pub use presence_store::subscriptions::{mark_key, mark_prefix, subscription_key};

/// A mark record's key back into (subscription, user), and its value.
pub fn decode_mark(key: &[u8], value: &[u8]) -> Option<(String, UserId, u64)> {
    presence_store::subscriptions::decode_mark(key, value)
        .map(|mark| (mark.subscription, mark.user, mark.sequence))
}

const SINGLE: &str = "communications/presences/";
const MANY: &str = "communications/presences?";

fn resource_help() -> String {
    format!(
        "resource must be /communications/presences/{{id}} or /communications/presences?$filter=id in ('{{id}}','{{id}}',...) with at most {MAX_USERS} ids"
    )
}

/// The users a subscription's `resource` names: one user, or a filter on
/// up to [`MAX_USERS`] ids. The error says what to write instead.
pub fn parse_resource(resource: &str) -> Result<Vec<UserId>, String> {
    let text = resource.trim();
    let text = text.strip_prefix('/').unwrap_or(text);
    let starts = |prefix: &str| {
        text.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    if starts(SINGLE) {
        let id = &text[SINGLE.len()..];
        let user = UserId::parse(id).map_err(|error| {
            format!(
                "resource names the user '{}', whose id {error}; {}",
                crate::wire::truncate(id),
                resource_help()
            )
        })?;
        return Ok(vec![user]);
    }
    if !starts(MANY) {
        return Err(format!(
            "resource '{}' is not a presence resource; {}",
            crate::wire::truncate(resource),
            resource_help()
        ));
    }
    let query = percent_encoding::percent_decode_str(&text[MANY.len()..])
        .decode_utf8()
        .map_err(|_| format!("resource's query is not UTF-8 text; {}", resource_help()))?
        .replace('+', " ");
    let filter = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("$filter="))
        .ok_or_else(|| format!("resource has no $filter; {}", resource_help()))?;
    let list = filter
        .trim()
        .strip_prefix("id")
        .map(str::trim_start)
        .and_then(|rest| {
            rest.get(..2)
                .filter(|word| word.eq_ignore_ascii_case("in"))
                .map(|_| rest[2..].trim())
        })
        .and_then(|rest| rest.strip_prefix('('))
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| {
            format!(
                "resource's $filter '{}' is not of the form id in ('{{id}}',...); {}",
                crate::wire::truncate(filter),
                resource_help()
            )
        })?;
    let mut users: Vec<UserId> = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let id = item
            .strip_prefix('\'')
            .and_then(|rest| rest.strip_suffix('\''))
            .ok_or_else(|| {
                format!(
                    "resource's $filter lists {}, which is not an id in single quotes; {}",
                    crate::wire::truncate(item),
                    resource_help()
                )
            })?;
        let user = UserId::parse(id).map_err(|error| {
            format!(
                "resource's $filter lists '{}', whose id {error}",
                crate::wire::truncate(id)
            )
        })?;
        if !users.contains(&user) {
            users.push(user);
        }
        if users.len() > MAX_USERS {
            return Err(format!(
                "resource names more than {MAX_USERS} users; split them over several subscriptions"
            ));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(users: &[UserId]) -> Vec<String> {
        users.iter().map(|user| user.as_str().to_string()).collect()
    }

    #[test]
    fn one_user_with_or_without_the_leading_slash() {
        for resource in [
            "/communications/presences/alice",
            "communications/presences/alice",
            "/Communications/Presences/alice",
        ] {
            assert_eq!(ids(&parse_resource(resource).expect("valid")), ["alice"]);
        }
    }

    #[test]
    fn a_filter_of_ids_plain_or_percent_encoded() {
        let users = parse_resource("/communications/presences?$filter=id in ('a', 'b','a')")
            .expect("valid");
        assert_eq!(ids(&users), ["a", "b"]);
        let users = parse_resource("/communications/presences?$filter=id%20in%20(%27a%27,%27c%27)")
            .expect("valid");
        assert_eq!(ids(&users), ["a", "c"]);
    }

    #[test]
    fn refusals_say_what_to_write() {
        for (resource, expected) in [
            ("/users/alice/presence", "not a presence resource"),
            ("/communications/presences/", "whose id"),
            ("/communications/presences?$top=5", "has no $filter"),
            (
                "/communications/presences?$filter=id eq 'a'",
                "not of the form",
            ),
            (
                "/communications/presences?$filter=id in (a)",
                "single quotes",
            ),
        ] {
            let error = parse_resource(resource).expect_err(resource);
            assert!(error.contains(expected), "{resource}: {error}");
        }
        let many: Vec<String> = (0..=MAX_USERS).map(|n| format!("'u{n}'")).collect();
        let resource = format!(
            "communications/presences?$filter=id in ({})",
            many.join(",")
        );
        let error = parse_resource(&resource).expect_err("too many");
        assert!(error.contains("more than 650"), "{error}");
    }

    #[test]
    fn records_round_trip() {
        let subscription = Subscription::new(
            TenantId::parse("t").expect("valid"),
            Some("app".into()),
            Some("alice".into()),
            "/communications/presences/bob".into(),
            vec![UserId::parse("bob").expect("valid")],
            "https://example.com/hook".into(),
            None,
            Instant::from_unix_millis(1_000),
        );
        assert_eq!(decode(&encode(&subscription)), Ok(subscription.clone()));
        let user = UserId::parse("bob").expect("valid");
        let key = mark_key(&subscription.id, &user);
        assert_eq!(
            decode_mark(&key, &7u64.to_le_bytes()),
            Some((subscription.id.clone(), user, 7))
        );
        assert!(key.starts_with(&mark_prefix(&subscription.id)));
    }

    /// Golden records, written by the first release's own code (serde_json
    /// of `Subscription`, the key helpers, `to_le_bytes`). Never regenerate
    /// them: a failure means stored subscriptions would not load as written.
    #[test]
    fn records_keep_the_bytes_the_first_release_wrote() {
        let subscription = Subscription {
            format: RECORD_FORMAT,
            id: "7f105c7d-2dc5-4530-97cd-4e7ae6534c07".into(),
            tenant: TenantId::parse("contoso").expect("valid"),
            application_id: Some("app-1".into()),
            creator_id: Some("alice".into()),
            resource: "/communications/presences?$filter=id in ('bob','carol')".into(),
            users: ["bob", "fa8bf3dc-eca7-46b7-bad1-db199b62afc3"]
                .map(|user| UserId::parse(user).expect("valid"))
                .to_vec(),
            notification_url: "https://example.com/hook".into(),
            lifecycle_notification_url: Some("https://example.com/lifecycle".into()),
            expiration: Instant::from_unix_millis(1_764_003_600_000),
            client_state: Some("secret \"state\"".into()),
            include_resource_data: true,
            encryption_certificate: Some("MIIBkTCB+wIJAKHB".into()),
            encryption_certificate_id: Some("cert-1".into()),
            latest_supported_tls_version: "v1_3".into(),
        };
        let golden = r#"{"format":1,"id":"7f105c7d-2dc5-4530-97cd-4e7ae6534c07","tenant":"contoso","application_id":"app-1","creator_id":"alice","resource":"/communications/presences?$filter=id in ('bob','carol')","users":["bob","fa8bf3dc-eca7-46b7-bad1-db199b62afc3"],"notification_url":"https://example.com/hook","lifecycle_notification_url":"https://example.com/lifecycle","expiration":1764003600000,"client_state":"secret \"state\"","include_resource_data":true,"encryption_certificate":"MIIBkTCB+wIJAKHB","encryption_certificate_id":"cert-1","latest_supported_tls_version":"v1_3"}"#;
        assert_eq!(
            String::from_utf8(encode(&subscription)).as_deref(),
            Ok(golden)
        );
        assert_eq!(decode(golden.as_bytes()), Ok(subscription.clone()));
        assert_eq!(
            subscription_key(&subscription.id),
            b"s/7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
        );
        let bob = UserId::parse("bob").expect("valid");
        let key = b"m/7f105c7d-2dc5-4530-97cd-4e7ae6534c07/bob";
        assert_eq!(mark_key(&subscription.id, &bob), key);
        assert_eq!(
            decode_mark(key, &[0x2c, 0x01, 0, 0, 0, 0, 0, 0]),
            Some((subscription.id.clone(), bob, 300))
        );
        let newer = golden.replace(r#""format":1"#, r#""format":2"#);
        assert_eq!(
            decode(newer.as_bytes()),
            Err(
                "a record of format 2, which this presenced does not know (it writes format 1)"
                    .into()
            )
        );
        let bad_user = golden.replace(r#"["bob","#, r#"["b b","#);
        let error = decode(bad_user.as_bytes()).expect_err("refused");
        assert!(error.contains("names a user whose id"), "{error}");
    }
}
