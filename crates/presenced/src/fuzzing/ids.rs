//! Tenant, user and session ids (paths, bodies, tokens), and the binary
//! form of a user's key.

use presence_core::id::MAX_ID_LENGTH;
use presence_core::{SessionId, TenantId, UserId, UserKey};

use super::check_refusal;
use crate::http::actions::session_id;
use crate::http::wire::user_id;

/// The input as ids, whole and as the two parts around its first `/` (a
/// character no id has): each id type accepts exactly the ids the rule in
/// `presence_core::id` describes and gives their text back; a user id
/// survives JSON and its binary form; two ids compare as their texts do,
/// whatever each is stored as; and any bytes that read as a user's key
/// read the same from the key's own bytes.
pub fn ids(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('/').unwrap_or((&text, ""));
    for candidate in [&*text, first, second] {
        check_id(candidate);
    }
    if let (Ok(a), Ok(b)) = (UserId::parse(first), UserId::parse(second)) {
        assert_eq!(a.cmp(&b), first.cmp(second), "{first:?} and {second:?}");
        assert_eq!(a == b, first == second, "{first:?} and {second:?}");
    }
    for key in [UserKey::from_bytes(data), bytes_of_text(&text)]
        .into_iter()
        .flatten()
    {
        assert_eq!(
            UserKey::from_bytes(&key.to_bytes()),
            Some(key.clone()),
            "{key:?} from {data:?}"
        );
    }
    if let Some(user) = UserId::from_bytes(data) {
        assert_eq!(UserId::from_bytes(&user.to_bytes()), Some(user));
    }
}

/// A key made of the input's text, when both halves are ids.
fn bytes_of_text(text: &str) -> Option<UserKey> {
    let (tenant, user) = text.split_once('/')?;
    Some(UserKey::new(
        TenantId::parse(tenant).ok()?,
        UserId::parse(user).ok()?,
    ))
}

/// Whether `text` is an id by the rule `presence_core::id` states: 1 to
/// 128 bytes of ASCII letters, digits, `-`, `_`, `.` and `@`.
fn is_valid_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_LENGTH
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

fn check_id(text: &str) {
    let valid = is_valid_id(text);
    match UserId::parse(text) {
        Ok(user) => {
            assert!(valid, "{text:?} was accepted as a user id");
            assert_eq!(&*user.as_str(), text);
            assert_eq!(user.to_string(), text);
            let json = serde_json::to_string(&user).expect("an id serializes");
            assert_eq!(json, serde_json::to_string(text).expect("text serializes"));
            let back: UserId = serde_json::from_str(&json).expect("an id deserializes");
            assert_eq!(back, user);
            assert_eq!(UserId::from_bytes(&user.to_bytes()), Some(user.clone()));
            assert!(
                user_id(text).is_ok(),
                "{text:?}: the HTTP layer refuses an id"
            );
        }
        Err(error) => {
            assert!(!valid, "{text:?} was refused as a user id: {error}");
            check_refusal(text, &error.to_string());
            let refusal = user_id(text).expect_err("the HTTP layer agrees");
            assert_eq!(refusal.status(), axum::http::StatusCode::BAD_REQUEST);
            check_refusal(text, &refusal.to_string());
        }
    }
    match TenantId::parse(text) {
        Ok(tenant) => assert_eq!((valid, &*tenant.as_str()), (true, text)),
        Err(_) => assert!(!valid, "{text:?} was refused as a tenant id"),
    }
    match SessionId::parse(text) {
        Ok(session) => assert_eq!((valid, &*session.as_str()), (true, text)),
        Err(_) => assert!(!valid, "{text:?} was refused as a session id"),
    }
    match session_id(text) {
        Ok(_) => assert!(valid, "{text:?} was accepted as a sessionId"),
        Err(refusal) => {
            assert_eq!(refusal.status(), axum::http::StatusCode::BAD_REQUEST);
            check_refusal(text, &refusal.to_string());
        }
    }
}
