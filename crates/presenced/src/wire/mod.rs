//! Graph's wire shapes that more than HTTP sends: the presence JSON and
//! change notifications. Request bodies and their extractor live in
//! `http/wire.rs`, beside the handlers that take them.

pub mod notification;
pub mod presence;
pub mod rendered;
pub mod schema;
/// At most 64 characters of caller input, for echoing in a message.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
