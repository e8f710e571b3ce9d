//! How one user's facts are written: a key per (tenant, user) and a small
//! versioned value.
//!
//! Key: the tenant id's length (one byte, ids are at most 128 bytes), the
//! tenant id, then the user id, as text. Text keys keep the directory
//! readable by `presenced check` and sort a tenant's users together; the
//! engine's blocks share key prefixes and compress with LZ4, so the
//! repeated tenant and the hex digits cost little on disk. The key has no
//! version: changing it would mean a new directory `FORMAT`.
//!
//! Value: the facts through their frozen storage type
//! ([`crate::record::facts::FactsV1`]): one format byte, then postcard
//! (serde's compact binary form). Postcard writes integers as varints and
//! strings with a one-byte length, so a user with one GUID session is about
//! 60 bytes before compression. A hand-rolled encoder could pack the
//! session's GUID into 16 bytes and save about 20 more, but the LZ4 blocks
//! already fold the session ids that repeat across users (every user of one
//! application has the same one), and the measured cost is well under the
//! target (ARCHITECTURE.md).
//!
//! The format byte lets a later presenced read old records and convert them
//! as it goes (`record` migrates them forward); a record with a byte this
//! presenced does not know is damage or a newer writer, and is refused
//! rather than guessed at.

use presence_core::{TenantId, UserFacts, UserId, UserKey};

use crate::record::Versioned;
use crate::record::facts::FactsV1;

/// The format of every value this presenced writes.
pub const RECORD_VERSION: u8 = FactsV1::VERSION;

pub fn encode_key(key: &UserKey) -> Vec<u8> {
    let tenant = key.tenant.as_str();
    let user = key.user.as_str();
    let mut bytes = Vec::with_capacity(1 + tenant.len() + user.len());
    // Validated ids are at most 128 bytes long, so the length fits a byte.
    bytes.push(tenant.len() as u8);
    bytes.extend_from_slice(tenant.as_bytes());
    bytes.extend_from_slice(user.as_bytes());
    bytes
}

pub fn decode_key(bytes: &[u8]) -> Result<UserKey, String> {
    let (&length, rest) = bytes
        .split_first()
        .ok_or_else(|| "an empty key".to_string())?;
    let length = usize::from(length);
    if rest.len() <= length {
        return Err(format!("a key of {} bytes is too short", bytes.len()));
    }
    let (tenant, user) = rest.split_at(length);
    fn text(part: &[u8]) -> Result<&str, String> {
        std::str::from_utf8(part).map_err(|_| "a key that is not UTF-8 text".to_string())
    }
    let tenant =
        TenantId::parse(text(tenant)?).map_err(|error| format!("a key whose tenant id {error}"))?;
    let user =
        UserId::parse(text(user)?).map_err(|error| format!("a key whose user id {error}"))?;
    Ok(UserKey::new(tenant, user))
}

pub fn encode_value(facts: &UserFacts) -> Vec<u8> {
    FactsV1::from(facts).encode()
}

pub fn decode_value(bytes: &[u8]) -> Result<UserFacts, String> {
    UserFacts::try_from(FactsV1::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use presence_core::{
        Command, Duration, Instant, OutOfOffice, SessionExpiration, SessionId, SessionState,
        StatusMessageInput, Timeouts, WorkLocation, WorkLocationType, apply,
    };

    use super::*;

    fn key(tenant: &str, user: &str) -> UserKey {
        UserKey::new(
            TenantId::parse(tenant).expect("valid"),
            UserId::parse(user).expect("valid"),
        )
    }

    #[test]
    fn keys_round_trip_and_keep_tenants_apart() {
        for (tenant, user) in [
            ("default", "fa8bf3dc-eca7-46b7-bad1-db199b62afc3"),
            ("t", "alice@contoso.com"),
            (&*"x".repeat(128), &*"y".repeat(128)),
        ] {
            let original = key(tenant, user);
            assert_eq!(decode_key(&encode_key(&original)), Ok(original));
        }
        // "ab"+"c" and "a"+"bc" must not collide.
        assert_ne!(encode_key(&key("ab", "c")), encode_key(&key("a", "bc")));
        assert!(decode_key(&[3, b'a']).is_err());
        assert!(decode_key(&[]).is_err());
    }

    /// Golden bytes, printed by the first release's `encode_key`: the
    /// tenant's length, the tenant, the user. Never regenerate them.
    #[test]
    fn the_key_of_a_user_is_frozen() {
        let user = key("contoso", "fa8bf3dc-eca7-46b7-bad1-db199b62afc3");
        let golden = b"\x07contosofa8bf3dc-eca7-46b7-bad1-db199b62afc3";
        assert_eq!(encode_key(&user), golden);
        assert_eq!(decode_key(golden), Ok(user));
    }

    #[test]
    fn every_fact_round_trips() {
        let now = Instant::from_unix_millis(1_764_000_000_000);
        let timeouts = Timeouts::default();
        let mut facts = UserFacts::default();
        let commands = [
            Command::SetPresence {
                session_id: SessionId::parse("5e55107a-99b0-4c2e-8d4f-b3a1c0ffee01")
                    .expect("valid"),
                state: SessionState::BusyInACall,
                expiration: SessionExpiration::new(Duration::from_hours(1)).expect("in range"),
            },
            Command::PutLegacySession {
                session_id: SessionId::parse("legacy").expect("valid"),
                state: SessionState::Available,
            },
            Command::SetStatusMessage(Some(StatusMessageInput {
                content: "In Berlin 🇩🇪".into(),
                expiry: None,
            })),
            Command::SetOutOfOffice(OutOfOffice {
                is_out_of_office: true,
                message: Some("back Monday".into()),
            }),
            Command::SetManualLocation(WorkLocation {
                location_type: WorkLocationType::Office,
                place_id: Some("b1".into()),
            }),
        ];
        for command in &commands {
            apply(&mut facts, command, now, timeouts).expect("applies");
        }
        let bytes = encode_value(&facts);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode_value(&bytes), Ok(facts));
    }

    #[test]
    fn a_user_with_one_session_is_small() {
        let mut facts = UserFacts::default();
        let command = Command::SetPresence {
            session_id: SessionId::parse("5e55107a-99b0-4c2e-8d4f-b3a1c0ffee01").expect("valid"),
            state: SessionState::Available,
            expiration: SessionExpiration::new(Duration::from_hours(4)).expect("in range"),
        };
        let now = Instant::from_unix_millis(1_764_000_000_000);
        apply(&mut facts, &command, now, Timeouts::default()).expect("applies");
        let size = encode_value(&facts).len();
        assert!(size <= 64, "{size} bytes");
    }

    #[test]
    fn unknown_formats_and_garbage_are_refused() {
        let mut bytes = encode_value(&UserFacts::default());
        bytes[0] = RECORD_VERSION + 1;
        assert!(decode_value(&bytes).is_err_and(|message| message.contains("format 2")));
        assert!(decode_value(&[RECORD_VERSION, 0xff, 0xff]).is_err());
        assert!(decode_value(&[]).is_err());
    }
}
