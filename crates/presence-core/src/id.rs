//! Validated identifiers: tenants, users and sessions.
//!
//! Graph's ids are GUIDs, but clients in tests and demos use readable names,
//! so any short id of unreserved URL characters is accepted. What is refused is
//! what could never be a Graph id and would make keys ambiguous: empty ids,
//! very long ones, and characters outside `A-Z a-z 0-9 - _ . @`.

use serde::{Deserialize, Serialize};

/// The longest id accepted, in bytes.
pub const MAX_ID_LENGTH: usize = 128;

/// Why an id was refused; the message says what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {length} characters long; at most {MAX_ID_LENGTH} are allowed")]
    TooLong { length: usize },
    #[error(
        "contains the character {character:?}; only letters, digits, '-', '_', '.' and '@' are allowed"
    )]
    BadCharacter { character: char },
}

fn check(text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.len() > MAX_ID_LENGTH {
        return Err(IdError::TooLong {
            length: text.chars().count(),
        });
    }
    match text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
    {
        Some(character) => Err(IdError::BadCharacter { character }),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Box<str>);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, IdError> {
                check(text)?;
                Ok($name(text.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<$name, IdError> {
                check(&text)?;
                Ok($name(text.into_boxed_str()))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.into()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(&self.0)
            }
        }
    };
}

id_type! {
    /// A tenant (`tid`): presence state never crosses tenants.
    TenantId
}
id_type! {
    /// A user's object id.
    UserId
}
id_type! {
    /// A presence session: for setPresence, the id of the application that owns it.
    SessionId
}

/// The key of one user's facts: everything is partitioned by tenant first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserKey {
    pub tenant: TenantId,
    pub user: UserId,
}

impl UserKey {
    pub fn new(tenant: TenantId, user: UserId) -> UserKey {
        UserKey { tenant, user }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_guids_and_readable_names() {
        assert!(UserId::parse("fa8bf3dc-eca7-46b7-bad1-db199b62afc3").is_ok());
        assert!(UserId::parse("alice@contoso.com").is_ok());
    }

    #[test]
    fn refuses_empty_long_and_odd_ids() {
        assert_eq!(UserId::parse(""), Err(IdError::Empty));
        assert_eq!(
            UserId::parse(&"a".repeat(129)),
            Err(IdError::TooLong { length: 129 })
        );
        assert_eq!(
            SessionId::parse("a/b"),
            Err(IdError::BadCharacter { character: '/' })
        );
    }
}
