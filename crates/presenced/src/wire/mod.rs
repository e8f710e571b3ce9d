//! Graph's wire shapes that more than HTTP sends: the presence JSON and
//! change notifications. Request bodies and their extractor live in
//! `http/wire.rs`, beside the handlers that take them.

pub mod notification;
pub mod presence;
