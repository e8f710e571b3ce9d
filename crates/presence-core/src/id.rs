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
    // Every byte is checked (a fold, no early exit, which the compiler
    // turns into wide compares); the character is looked for only when one
    // is wrong. Ids are parsed for every id of every request, 650 to a
    // getPresencesByUserId.
    let wrong = text
        .bytes()
        .fold(false, |wrong, byte| wrong | !ID_BYTES[usize::from(byte)]);
    match wrong
        .then(|| {
            text.chars()
                .find(|c| !c.is_ascii() || !ID_BYTES[*c as usize])
        })
        .flatten()
    {
        Some(character) => Err(IdError::BadCharacter { character }),
        None => Ok(()),
    }
}

/// The bytes an id may hold: ASCII letters and digits, `-`, `_`, `.`, `@`.
const ID_BYTES: [bool; 256] = {
    let mut allowed = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let c = byte as u8;
        allowed[byte] =
            c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.' || c == b'@';
        byte += 1;
    }
    allowed
};

/// An id's text, stored in 24 bytes without a heap allocation for the ids
/// Graph actually uses: a lowercase GUID packs into its 16 bytes, and any id
/// of up to 22 characters sits in place; longer ones go to the heap. At a
/// million users that is the difference between one allocation per id and
/// none. No crate packs GUID text this way while giving the exact text back,
/// so it is written here.
#[derive(Clone, PartialEq, Eq)]
enum CompactText {
    Inline { length: u8, bytes: [u8; INLINE] },
    Guid([u8; 16]),
    Heap(Box<str>),
}

/// Hashed by hand rather than derived: an id is hashed up to six times a
/// read (the store's shard, its tenant's and its user's maps, the kept
/// renderings' slot, for the tenant and the user each), and the derived
/// hash fed the hasher a discriminant, a length and the bytes, a call each
/// (callgrind: 350 instructions per id of a 650-id batch). A packed GUID is
/// one 128-bit word, an inline id three 64-bit words. Equal ids are the same
/// variant with the same contents, so they hash alike.
impl std::hash::Hash for CompactText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            CompactText::Guid(packed) => state.write_u128(u128::from_le_bytes(*packed)),
            CompactText::Inline { length, bytes } => {
                let mut words = [0u8; 24];
                words[..INLINE].copy_from_slice(bytes);
                words[INLINE] = *length;
                let word = |at: usize| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&words[at..at + 8]);
                    u64::from_le_bytes(word)
                };
                state.write_u64(word(0));
                state.write_u64(word(8));
                state.write_u64(word(16));
            }
            CompactText::Heap(text) => state.write(text.as_bytes()),
        }
    }
}

const INLINE: usize = 22;
pub const GUID_LENGTH: usize = 36;
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// The text of an id: borrowed, or a GUID spelled out into a buffer.
#[derive(Clone, Copy, Debug)]
pub enum IdText<'a> {
    Borrowed(&'a str),
    Guid([u8; GUID_LENGTH]),
}

impl std::ops::Deref for IdText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            IdText::Borrowed(text) => text,
            // Only ever filled with ASCII hex digits and hyphens.
            IdText::Guid(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for IdText<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self)
    }
}

impl Serialize for IdText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

/// A lowercase hex digit's value: the rule `hex_word` is tested against.
#[cfg(test)]
const fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// The 16 bytes of a lowercase hyphenated GUID, or `None`.
fn pack_guid(text: &str) -> Option<[u8; 16]> {
    pack_guid_bytes(text.as_bytes())
}

/// A GUID is packed for every id of every request, 650 to a
/// getPresencesByUserId, so its digits are read eight at a time as one
/// 64-bit word (hex_word) rather than a table lookup each: parsing a GUID
/// id went from 357 instructions to 204 (callgrind). The uuid crate parses
/// more forms (uppercase, braces, URNs) and would need this check first.
fn pack_guid_bytes(bytes: &[u8]) -> Option<[u8; 16]> {
    let bytes: &[u8; GUID_LENGTH] = bytes.try_into().ok()?;
    if HYPHENS.iter().any(|&at| bytes[at] != b'-') {
        return None;
    }
    let mut digits = [0u8; 32];
    digits[0..8].copy_from_slice(&bytes[0..8]);
    digits[8..12].copy_from_slice(&bytes[9..13]);
    digits[12..16].copy_from_slice(&bytes[14..18]);
    digits[16..20].copy_from_slice(&bytes[19..23]);
    digits[20..32].copy_from_slice(&bytes[24..36]);
    let mut packed = [0u8; 16];
    let mut valid = true;
    for (four, eight) in packed.chunks_exact_mut(4).zip(digits.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        let (value, digits) = hex_word(u64::from_le_bytes(word));
        four.copy_from_slice(&value.to_le_bytes());
        valid &= digits;
    }
    valid.then_some(packed)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = ONES * 0x80;

/// Eight characters, the first in the lowest byte, as the four bytes they
/// spell in hex (the first character the first byte's high nibble), and
/// whether all eight are lowercase hex digits.
fn hex_word(word: u64) -> (u32, bool) {
    let ascii = word & HIGH_BITS == 0;
    // With every byte below 0x80, adding to or subtracting from each byte
    // never carries into the next one, and each byte's high bit then says
    // whether it is at least (or at most) a bound. A byte of 0x80 or more
    // makes the word invalid whatever these give.
    let at_least_0 = word.wrapping_add(ONES * u64::from(0x80 - b'0'));
    let at_most_9 = (ONES * (0x80 + u64::from(b'9'))).wrapping_sub(word);
    let at_least_a = word.wrapping_add(ONES * u64::from(0x80 - b'a'));
    let at_most_f = (ONES * (0x80 + u64::from(b'f'))).wrapping_sub(word);
    let hex = (at_least_0 & at_most_9) | (at_least_a & at_most_f);
    let valid = ascii && hex & HIGH_BITS == HIGH_BITS;
    // '0' to '9' are 0x30 to 0x39 and 'a' to 'f' 0x61 to 0x66: the value is
    // the low nibble, plus 9 for a letter (bit 6).
    let nibbles = (word & (ONES * 0x0f)) + ((word >> 6) & ONES) * 9;
    // Each pair of nibbles into its byte, then the four bytes together.
    let pairs = ((nibbles & 0x000f_000f_000f_000f) << 4) | ((nibbles >> 8) & 0x000f_000f_000f_000f);
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let value = (quads | (quads >> 16)) & 0xffff_ffff;
    // The mask leaves 32 bits.
    (value as u32, valid)
}

fn unpack_guid(packed: &[u8; 16]) -> [u8; GUID_LENGTH] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; GUID_LENGTH];
    for (byte, places) in packed.iter().zip(DIGIT_PLACES.chunks_exact(2)) {
        text[places[0]] = HEX[usize::from(byte >> 4)];
        text[places[1]] = HEX[usize::from(byte & 0x0f)];
    }
    text
}

/// Where a GUID's 32 digits are, in order (all but the hyphens).
const DIGIT_PLACES: [usize; 32] = {
    let mut places = [0; 32];
    let (mut at, mut next) = (0, 0);
    while at < GUID_LENGTH {
        if at != HYPHENS[0] && at != HYPHENS[1] && at != HYPHENS[2] && at != HYPHENS[3] {
            places[next] = at;
            next += 1;
        }
        at += 1;
    }
    places
};

impl CompactText {
    fn new(text: &str) -> CompactText {
        if let Some(packed) = pack_guid(text) {
            return CompactText::Guid(packed);
        }
        if text.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            // The length fits: it is at most INLINE.
            return CompactText::Inline {
                length: text.len() as u8,
                bytes,
            };
        }
        CompactText::Heap(text.into())
    }

    fn text(&self) -> IdText<'_> {
        match self {
            CompactText::Inline { length, bytes } => IdText::Borrowed(
                // Validated ids are ASCII, so any prefix is valid UTF-8.
                std::str::from_utf8(&bytes[..usize::from(*length)]).unwrap_or_default(),
            ),
            CompactText::Guid(packed) => IdText::Guid(unpack_guid(packed)),
            CompactText::Heap(text) => IdText::Borrowed(text),
        }
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(CompactText);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, IdError> {
                // A lowercase GUID, the most common id, is checked by
                // packing it: its hyphens and hex digits are all allowed.
                if let Some(packed) = pack_guid(text) {
                    return Ok($name(CompactText::Guid(packed)));
                }
                check(text)?;
                Ok($name(CompactText::new(text)))
            }

            /// The id a lowercase GUID spells, read from bytes not yet
            /// known to be UTF-8 (a GUID's are ASCII); `None` for anything
            /// else, which is for [`Self::parse`] to read as text.
            pub fn from_guid_bytes(bytes: &[u8]) -> Option<$name> {
                pack_guid_bytes(bytes).map(|packed| $name(CompactText::Guid(packed)))
            }

            /// The id's text (a GUID is spelled out into a small buffer).
            pub fn as_str(&self) -> IdText<'_> {
                self.0.text()
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<$name, IdError> {
                $name::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.as_str().to_string()
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &$name) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        /// Ordered by text, whatever the representation.
        impl Ord for $name {
            fn cmp(&self, other: &$name) -> std::cmp::Ordering {
                (*self.as_str()).cmp(&*other.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(&self.as_str())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "{}({:?})", stringify!($name), &*self.as_str())
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

/// Byte that marks a packed GUID in [`UserKey::to_bytes`]: validated ids are
/// ASCII text, so a zero byte never starts one.
const PACKED_GUID: u8 = 0;

fn push_id(bytes: &mut Vec<u8>, text: &CompactText) {
    match text {
        CompactText::Guid(packed) => {
            bytes.push(PACKED_GUID);
            bytes.extend_from_slice(packed);
        }
        other => bytes.extend_from_slice(other.text().as_bytes()),
    }
}

fn read_id(bytes: &[u8]) -> Option<CompactText> {
    match bytes.split_first() {
        Some((&PACKED_GUID, packed)) => Some(CompactText::Guid(packed.try_into().ok()?)),
        _ => {
            let text = std::str::from_utf8(bytes).ok()?;
            check(text).ok()?;
            Some(CompactText::new(text))
        }
    }
}

impl UserId {
    /// The id in as few bytes as possible: a packed GUID (a zero byte and
    /// 16 bytes), or its text.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(17);
        push_id(&mut bytes, &self.0);
        bytes
    }

    /// [`UserId::to_bytes`] back into an id; `None` for bytes that are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<UserId> {
        read_id(bytes).map(UserId)
    }
}

impl UserKey {
    /// The key in as few bytes as possible, for stores that keep millions of
    /// them as binary-safe strings: a one-byte length of the tenant's part,
    /// then the tenant and the user, each either a packed GUID (a zero byte
    /// and 16 bytes) or its text. Thirty-five bytes for a pair of GUIDs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(35);
        bytes.push(0);
        push_id(&mut bytes, &self.tenant.0);
        // Validated ids are at most 128 bytes long, so the length fits.
        bytes[0] = (bytes.len() - 1) as u8;
        push_id(&mut bytes, &self.user.0);
        bytes
    }

    /// [`UserKey::to_bytes`] back into a key; `None` for bytes that are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<UserKey> {
        let (&length, rest) = bytes.split_first()?;
        let length = usize::from(length);
        if rest.len() <= length {
            return None;
        }
        let (tenant, user) = rest.split_at(length);
        Some(UserKey {
            tenant: TenantId(read_id(tenant)?),
            user: UserId(read_id(user)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The table-driven checks agree with the rules as written: a
        /// lowercase hyphenated GUID packs and reads back the same, nothing
        /// else packs, and an id is refused for its first wrong character.
        #[test]
        fn ids_pack_and_check_as_their_rules_say(
            text in "[0-9a-fA-Fg\\-_.@é ]{0,40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-fA-F]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ) {
            let bytes = text.as_bytes();
            let is_guid = bytes.len() == GUID_LENGTH
                && bytes.iter().enumerate().all(|(at, byte)| {
                    if HYPHENS.contains(&at) { *byte == b'-' } else { matches!(byte, b'0'..=b'9' | b'a'..=b'f') }
                });
            let packed = pack_guid(&text);
            prop_assert_eq!(packed.is_some(), is_guid);
            if let Some(packed) = packed {
                prop_assert_eq!(&unpack_guid(&packed)[..], bytes);
            }
            let first_wrong = text
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')));
            match check(&text) {
                Err(IdError::BadCharacter { character }) => prop_assert_eq!(Some(character), first_wrong),
                Err(IdError::Empty) => prop_assert!(text.is_empty()),
                Err(other) => prop_assert!(false, "{other:?}"),
                Ok(()) => prop_assert!(first_wrong.is_none() && !text.is_empty()),
            }
            if let Ok(id) = UserId::parse(&text) {
                prop_assert_eq!(&*id.as_str(), text.as_str());
            }
        }
    }

    /// Every byte at every digit's place of a GUID: packed exactly when it
    /// is a lowercase hex digit, to its value.
    #[test]
    fn every_byte_at_every_digit_packs_as_the_digit_rules_say() {
        let guid = *b"0123abcd-ef45-6789-a0b1-c2d3e4f5a6b7";
        let reference = |bytes: &[u8; GUID_LENGTH]| {
            let digits: Vec<u8> = DIGIT_PLACES
                .iter()
                .map(|&at| hex_value(bytes[at]))
                .collect::<Option<_>>()?;
            let mut packed = [0u8; 16];
            for (byte, pair) in packed.iter_mut().zip(digits.chunks_exact(2)) {
                *byte = (pair[0] << 4) | pair[1];
            }
            Some(packed)
        };
        for at in DIGIT_PLACES {
            for byte in 0..=u8::MAX {
                let mut bytes = guid;
                bytes[at] = byte;
                assert_eq!(
                    pack_guid_bytes(&bytes),
                    reference(&bytes),
                    "byte {byte:#04x} at {at}"
                );
            }
        }
        for at in HYPHENS {
            let mut bytes = guid;
            bytes[at] = b'0';
            assert_eq!(pack_guid_bytes(&bytes), None);
        }
    }

    #[test]
    fn keys_round_trip_through_their_bytes() {
        for (tenant, user, length) in [
            (
                "fa8bf3dc-eca7-46b7-bad1-db199b62afc3",
                "0b2f5e4c-1d3a-4e6f-8a9b-0c1d2e3f4a5b",
                35,
            ),
            ("contoso", "alice@contoso.com", 25),
            ("FA8BF3DC-ECA7-46B7-BAD1-DB199B62AFC3", "a", 38),
        ] {
            let key = UserKey::new(
                TenantId::parse(tenant).expect("valid"),
                UserId::parse(user).expect("valid"),
            );
            let bytes = key.to_bytes();
            assert_eq!(bytes.len(), length, "{tenant}/{user}");
            assert_eq!(UserKey::from_bytes(&bytes), Some(key));
        }
        let guid = UserId::parse("0b2f5e4c-1d3a-4e6f-8a9b-0c1d2e3f4a5b").expect("valid");
        assert_eq!(guid.to_bytes().len(), 17);
        assert_eq!(UserId::from_bytes(&guid.to_bytes()), Some(guid));
        assert_eq!(UserId::from_bytes(b"a b"), None);
        for bad in [&b""[..], b"\x05ab", b"\x01a", b"\x01a b", b"\x11\x00abc"] {
            assert_eq!(UserKey::from_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn accepts_guids_and_readable_names() {
        assert!(UserId::parse("fa8bf3dc-eca7-46b7-bad1-db199b62afc3").is_ok());
        assert!(UserId::parse("alice@contoso.com").is_ok());
    }

    #[test]
    fn every_representation_gives_the_text_back() {
        for text in [
            "fa8bf3dc-eca7-46b7-bad1-db199b62afc3",
            "FA8BF3DC-ECA7-46B7-BAD1-DB199B62AFC3",
            "a",
            "exactly-twenty-two-ch.",
            "twenty-three-characters",
            "alice@contoso.com",
            &"x".repeat(128),
        ] {
            let id = UserId::parse(text).expect("valid");
            assert_eq!(&*id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(
                serde_json::to_string(&id).ok(),
                serde_json::to_string(text).ok()
            );
        }
        assert_eq!(std::mem::size_of::<UserId>(), 24);
        let guid = UserId::parse("fa8bf3dc-eca7-46b7-bad1-db199b62afc3").expect("valid");
        assert!(matches!(guid.0, CompactText::Guid(_)));
    }

    #[test]
    fn ids_order_by_text() {
        let guid = SessionId::parse("00000000-0000-0000-0000-000000000000").expect("valid");
        let name = SessionId::parse("1").expect("valid");
        let long = SessionId::parse(&"0".repeat(40)).expect("valid");
        assert!(guid < name);
        assert!(guid < long, "a hyphen sorts before a digit");
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
