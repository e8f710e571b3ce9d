//! Graph's change notifications as JSON: one element of a notification
//! POST's `value`, with `encryptedContent` for rich subscriptions, and the
//! lifecycle notifications.

use serde::Serialize;

use crate::wire::presence::PresenceJson;

/// A change notification as Graph sends it (one element of `value`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotification<'a> {
    pub subscription_id: &'a str,
    pub subscription_expiration_date_time: String,
    pub change_type: &'static str,
    pub resource: String,
    pub resource_data: ResourceData<'a>,
    pub client_state: Option<&'a str>,
    pub tenant_id: &'a str,
    pub organization_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<EncryptedContent>,
}

#[derive(Debug, Serialize)]
pub struct ResourceData<'a> {
    #[serde(rename = "@odata.type")]
    pub odata_type: &'static str,
    #[serde(rename = "@odata.id")]
    pub odata_id: String,
    pub id: &'a str,
    /// Beyond Graph: lets a receiver of basic notifications drop stale ones.
    #[serde(rename = "sequenceNumber")]
    pub sequence_number: &'a str,
}

/// The presence inside `encryptedContent`, as Graph's samples decrypt it.
#[derive(Debug, Serialize)]
pub struct ResourcePresence<'a> {
    #[serde(rename = "@odata.type")]
    pub odata_type: &'static str,
    #[serde(rename = "@odata.id")]
    pub odata_id: String,
    #[serde(flatten)]
    pub presence: &'a PresenceJson,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleNotification<'a> {
    pub subscription_id: &'a str,
    pub subscription_expiration_date_time: String,
    pub tenant_id: &'a str,
    pub organization_id: &'a str,
    pub client_state: Option<&'a str>,
    pub resource: &'a str,
    pub lifecycle_event: &'static str,
}

/// A notification's JSON text.
pub fn render<T: Serialize>(value: &T) -> String {
    // presenced's own shapes of strings and numbers always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

/// A notification item's `encryptedContent`, field for field as Graph sends it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedContent {
    /// base64 of the AES-256-CBC ciphertext of the resource JSON.
    pub data: String,
    /// base64 of HMAC-SHA256 over the raw ciphertext, keyed with the symmetric key.
    pub data_signature: String,
    /// base64 of the symmetric key, RSA-OAEP (SHA-1) encrypted to the certificate.
    pub data_key: String,
    /// The subscription's `encryptionCertificateId`.
    pub encryption_certificate_id: String,
    /// Upper-case hex SHA-1 thumbprint of the certificate.
    pub encryption_certificate_thumbprint: String,
}
