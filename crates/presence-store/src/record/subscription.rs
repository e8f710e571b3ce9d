//! The notifier's records, kept beside the users' facts
//! (`Store::put_records`): a subscription, and the mark of what a
//! subscription's receiver acknowledged for one user. Their keys, and the
//! conversion to presenced's own `Subscription`, are presenced's
//! (`notify/subscription.rs`); their bytes are defined here.
//!
//! A subscription ([`SubscriptionRecordV1`]) is a JSON object: few are
//! stored, and an operator may want to read one. Format 1 is exactly the
//! object presenced's first release wrote by serializing its `Subscription`:
//! `format` first, then the fields below in this order, every optional
//! field present (`null` when absent), ids as their text, `expiration` in
//! milliseconds since the Unix epoch. Fields it does not know are ignored
//! on reading, as they were.
//!
//! A mark is the sequence number of the last presence the receiver
//! acknowledged, eight bytes little-endian, with no version marker. It
//! needs none: a mark is only an optimisation (a user whose mark is missing
//! or unreadable is notified once more after a restart, which a receiver
//! must accept anyway), so a later format can take a new key prefix and
//! leave the old marks to be cleared as orphans.

use serde::{Deserialize, Serialize};

use super::{Json, NoPrevious, Versioned};

/// Format 1 of a subscription record. The `format` field is written by the
/// [`Json`] encoding, ahead of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecordV1 {
    pub id: String,
    pub tenant: String,
    pub application_id: Option<String>,
    pub creator_id: Option<String>,
    pub resource: String,
    pub users: Vec<String>,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub expiration: i64,
    pub client_state: Option<String>,
    pub include_resource_data: bool,
    pub encryption_certificate: Option<String>,
    pub encryption_certificate_id: Option<String>,
    pub latest_supported_tls_version: String,
}

impl Versioned for SubscriptionRecordV1 {
    type Encoding = Json;
    const VERSION: u8 = 1;
    type Previous = NoPrevious<Json>;

    fn migrate(previous: NoPrevious<Json>) -> SubscriptionRecordV1 {
        previous.never()
    }
}

/// The value of a mark record.
pub fn encode_mark(sequence: u64) -> Vec<u8> {
    sequence.to_le_bytes().to_vec()
}

/// A mark record's value back into the sequence number.
pub fn decode_mark(bytes: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("a mark of {} bytes (a mark has 8)", bytes.len()))?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    //! Golden records: each literal was written by the first release's own
    //! code (serde_json of presenced's `Subscription`; `to_le_bytes` of a
    //! mark) before these types existed. Never regenerate them.

    use super::*;

    fn every_field() -> SubscriptionRecordV1 {
        SubscriptionRecordV1 {
            id: "7f105c7d-2dc5-4530-97cd-4e7ae6534c07".into(),
            tenant: "contoso".into(),
            application_id: Some("app-1".into()),
            creator_id: Some("alice".into()),
            resource: "/communications/presences?$filter=id in ('bob','carol')".into(),
            users: vec!["bob".into(), "fa8bf3dc-eca7-46b7-bad1-db199b62afc3".into()],
            notification_url: "https://example.com/hook".into(),
            lifecycle_notification_url: Some("https://example.com/lifecycle".into()),
            expiration: 1_764_003_600_000,
            client_state: Some("secret \"state\"".into()),
            include_resource_data: true,
            encryption_certificate: Some("MIIBkTCB+wIJAKHB".into()),
            encryption_certificate_id: Some("cert-1".into()),
            latest_supported_tls_version: "v1_3".into(),
        }
    }

    fn no_optional_field() -> SubscriptionRecordV1 {
        SubscriptionRecordV1 {
            id: "x".into(),
            tenant: "t".into(),
            application_id: None,
            creator_id: None,
            resource: "/communications/presences/bob".into(),
            users: vec!["bob".into()],
            notification_url: "https://example.com/hook".into(),
            lifecycle_notification_url: None,
            expiration: 1_000,
            client_state: None,
            include_resource_data: false,
            encryption_certificate: None,
            encryption_certificate_id: None,
            latest_supported_tls_version: "v1_2".into(),
        }
    }

    const EVERY_FIELD: &str = r#"{"format":1,"id":"7f105c7d-2dc5-4530-97cd-4e7ae6534c07","tenant":"contoso","application_id":"app-1","creator_id":"alice","resource":"/communications/presences?$filter=id in ('bob','carol')","users":["bob","fa8bf3dc-eca7-46b7-bad1-db199b62afc3"],"notification_url":"https://example.com/hook","lifecycle_notification_url":"https://example.com/lifecycle","expiration":1764003600000,"client_state":"secret \"state\"","include_resource_data":true,"encryption_certificate":"MIIBkTCB+wIJAKHB","encryption_certificate_id":"cert-1","latest_supported_tls_version":"v1_3"}"#;

    const NO_OPTIONAL_FIELD: &str = r#"{"format":1,"id":"x","tenant":"t","application_id":null,"creator_id":null,"resource":"/communications/presences/bob","users":["bob"],"notification_url":"https://example.com/hook","lifecycle_notification_url":null,"expiration":1000,"client_state":null,"include_resource_data":false,"encryption_certificate":null,"encryption_certificate_id":null,"latest_supported_tls_version":"v1_2"}"#;

    fn check(record: SubscriptionRecordV1, golden: &str) {
        assert_eq!(String::from_utf8(record.encode()).as_deref(), Ok(golden));
        assert_eq!(SubscriptionRecordV1::decode(golden.as_bytes()), Ok(record));
    }

    #[test]
    fn a_subscription_with_every_optional_field() {
        check(every_field(), EVERY_FIELD);
    }

    #[test]
    fn a_subscription_with_no_optional_field() {
        check(no_optional_field(), NO_OPTIONAL_FIELD);
    }

    #[test]
    fn missing_optional_fields_and_unknown_ones_read_as_before() {
        // serde's derive took a missing `Option` field for `None` and
        // skipped unknown fields; a record written so still loads.
        let sparse = r#"{"format":1,"id":"x","tenant":"t","resource":"/communications/presences/bob","users":["bob"],"notification_url":"https://example.com/hook","expiration":1000,"include_resource_data":false,"latest_supported_tls_version":"v1_2","later":true}"#;
        assert_eq!(
            SubscriptionRecordV1::decode(sparse.as_bytes()),
            Ok(no_optional_field())
        );
    }

    #[test]
    fn unknown_formats_and_garbage_are_refused() {
        let newer = NO_OPTIONAL_FIELD.replace(r#""format":1"#, r#""format":2"#);
        assert_eq!(
            SubscriptionRecordV1::decode(newer.as_bytes()),
            Err(
                "a record of format 2, which this presenced does not know (it writes format 1)"
                    .into()
            )
        );
        let no_format = NO_OPTIONAL_FIELD.replace(r#""format":1,"#, "");
        let error = SubscriptionRecordV1::decode(no_format.as_bytes()).expect_err("refused");
        assert!(error.contains("not a JSON object with a format"), "{error}");
        let no_id = NO_OPTIONAL_FIELD.replace(r#""id":"x","#, "");
        let error = SubscriptionRecordV1::decode(no_id.as_bytes()).expect_err("refused");
        assert!(
            error.contains("does not decode") && error.contains("id"),
            "{error}"
        );
    }

    #[test]
    fn a_mark() {
        let golden = [0x2c, 0x01, 0, 0, 0, 0, 0, 0];
        assert_eq!(encode_mark(300), golden);
        assert_eq!(decode_mark(&golden), Ok(300));
        assert_eq!(
            decode_mark(&[1, 2, 3]),
            Err("a mark of 3 bytes (a mark has 8)".into())
        );
    }
}
