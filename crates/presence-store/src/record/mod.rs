//! The formats of everything presenced writes to disk, frozen, and how an
//! older record is read by a newer presenced.
//!
//! Each stored type has its own storage types here, one per version
//! ([`facts::FactsV1`], [`subscription::SubscriptionRecordV1`]), which mirror
//! the bytes that version writes and are never changed once released. They
//! are deliberately not `presence-core`'s types: the model's types change
//! when the model does, and postcard is positional, so a field added to a
//! core type would silently change the meaning of every byte after it in
//! records already on disk, while every round-trip test kept passing. The
//! storage types change only by adding a version, and the golden-bytes tests
//! beside each one (fixed bytes committed in the tests, checked both ways)
//! fail if anything changes what an existing version writes or reads.
//!
//! Every record says which version it is in (the first byte of a user's
//! record; the `format` field of a subscription). [`Versioned::decode`] reads
//! that marker and walks the chain of versions from the newest back
//! (`Previous`), decodes the record as the version that wrote it, then
//! migrates it forward one version at a time to the newest. A marker newer
//! than any version this presenced knows is refused, never guessed at: it
//! is damage or a newer writer.
//!
//! To add a field to a stored type: copy the newest type to a new version
//! (`FactsV2`), change the copy, give it the next `VERSION` and
//! `type Previous = FactsV1`, write `migrate` (what the old records mean in
//! the new shape), point the conversions to and from the core type at the
//! new version, and add a golden-bytes test for it. The old version's type,
//! and its golden test, stay as they are, so that old records keep loading.
//!
//! This is written here, after garage's `util/migrate.rs`, because the
//! crates that version serde data each bring their own layout on disk:
//! `revision` (SurrealDB's) its own binary format, `pro-serde-versioned`
//! and `serde-evolve` (one 0.1 release) an enum tag of their own around the
//! content, `obake` (last released in 2023) a macro that generates every
//! version from one annotated definition, which is the coupling this module
//! exists to remove. None reads the marker presenced's first release already
//! writes (a leading byte; a JSON `format` field), so adopting one would
//! mean converting every data directory. What is written here is a trait
//! and two encodings; the bytes themselves are serde's, through postcard or
//! JSON.
//!
//! Layout:
//! - this file: [`Versioned`], the [`Encoding`]s ([`Postcard`] after a
//!   version byte, [`Json`] with a `format` field), [`NoPrevious`];
//! - [`facts`]: a user's facts (the embedded store's values);
//! - [`subscription`]: the notifier's subscription and mark records.

pub mod facts;
pub mod subscription;

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One version of a stored type.
///
/// Versions of one type form a chain through `Previous`, newest first, and
/// share one [`Encoding`]; the first version's `Previous` is
/// [`NoPrevious`]. Code outside `record` only ever encodes the newest
/// version; [`Versioned::decode`] reads any version of the chain.
pub trait Versioned: Serialize + DeserializeOwned {
    /// How records of this type carry their version and their content.
    type Encoding: Encoding;

    /// The marker this version writes. Each version of a chain has its own,
    /// larger than its `Previous`'s.
    const VERSION: u8;

    /// The version this one is migrated from.
    type Previous: Versioned<Encoding = Self::Encoding>;

    /// What a record of the previous version means in this version's shape.
    fn migrate(previous: Self::Previous) -> Self;

    /// The record of `self`: its marker and its content.
    fn encode(&self) -> Vec<u8> {
        Self::Encoding::write(Self::VERSION, self)
    }

    /// Reads a record written in this version or any earlier one of the
    /// chain, migrating it forward. The error says what is wrong with the
    /// record, as a noun phrase ("a record of format 9, which ...").
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let found = Self::Encoding::version(bytes)?;
        Self::decode_version(found, bytes).unwrap_or_else(|| {
            Err(format!(
                "a record of format {found}, which this presenced does not know (it writes \
                 format {})",
                Self::VERSION
            ))
        })
    }

    /// Decodes `bytes` as the version `found` if it is this one or one of
    /// its predecessors, and migrates it to this one; `None` if no version
    /// of the chain is `found`. Only [`NoPrevious`] overrides it.
    fn decode_version(found: u64, bytes: &[u8]) -> Option<Result<Self, String>> {
        if found == u64::from(Self::VERSION) {
            return Some(Self::Encoding::read(bytes));
        }
        Self::Previous::decode_version(found, bytes).map(|previous| previous.map(Self::migrate))
    }
}

/// How the records of one stored type are laid out around their content.
pub trait Encoding {
    /// The version marker of `bytes`, or why it has none.
    fn version(bytes: &[u8]) -> Result<u64, String>;

    /// A record of `value` marked with `version`.
    fn write<T: Serialize>(version: u8, value: &T) -> Vec<u8>;

    /// The content of a record whose marker has been read already.
    fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String>;
}

/// One version byte, then the content as postcard: compact (varints,
/// strings with a one-byte length) and positional, which is why every
/// version's type is frozen.
#[derive(Debug)]
pub enum Postcard {}

impl Encoding for Postcard {
    fn version(bytes: &[u8]) -> Result<u64, String> {
        bytes
            .first()
            .map(|&version| u64::from(version))
            .ok_or_else(|| "an empty record".to_string())
    }

    fn write<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
        let mut bytes = vec![version];
        // Serializing plain data into a vector cannot fail.
        bytes.extend(postcard::to_stdvec(value).unwrap_or_default());
        bytes
    }

    fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        // Like the first release, this ignores bytes after the content.
        postcard::from_bytes(bytes.get(1..).unwrap_or_default())
            .map_err(|error| format!("a record that does not decode ({error})"))
    }
}

/// A JSON object whose first field, `format`, is the version; the content's
/// fields follow it. Used where records are few and worth reading by eye.
#[derive(Debug)]
pub enum Json {}

impl Encoding for Json {
    fn version(bytes: &[u8]) -> Result<u64, String> {
        #[derive(Deserialize)]
        struct Marker {
            format: u64,
        }
        serde_json::from_slice::<Marker>(bytes)
            .map(|marker| marker.format)
            .map_err(|error| format!("a record that is not a JSON object with a format ({error})"))
    }

    fn write<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
        #[derive(Serialize)]
        struct Marked<'a, T> {
            format: u8,
            #[serde(flatten)]
            content: &'a T,
        }
        // A struct of strings, numbers and lists always serializes.
        serde_json::to_vec(&Marked {
            format: version,
            content: value,
        })
        .unwrap_or_default()
    }

    fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        // The content's type has no `format` field; serde skips it.
        serde_json::from_slice(bytes)
            .map_err(|error| format!("a record that does not decode ({error})"))
    }
}

/// The `Previous` of a type's first version: no record is ever of it.
#[derive(Debug)]
pub struct NoPrevious<E> {
    never: std::convert::Infallible,
    encoding: PhantomData<E>,
}

impl<E> NoPrevious<E> {
    /// Anything: there is no value of this type. The first version's
    /// `migrate` is `previous.never()`.
    pub fn never<T>(self) -> T {
        match self.never {}
    }
}

impl<E: Encoding> Versioned for NoPrevious<E> {
    type Encoding = E;
    const VERSION: u8 = 0;
    type Previous = NoPrevious<E>;

    fn migrate(previous: NoPrevious<E>) -> NoPrevious<E> {
        previous
    }

    fn decode_version(_found: u64, _bytes: &[u8]) -> Option<Result<Self, String>> {
        None
    }
}

impl<E> Serialize for NoPrevious<E> {
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        match self.never {}
    }
}

impl<'de, E> Deserialize<'de> for NoPrevious<E> {
    fn deserialize<D: Deserializer<'de>>(_deserializer: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "no record is of the version before the first",
        ))
    }
}

#[cfg(test)]
mod tests {
    //! The migration path, shown on a made-up record of two versions: V0,
    //! which a presenced released first, and V1, which renamed a field and
    //! added one. Real stored types do the same when they change.

    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct NoteV0 {
        text: String,
    }

    impl Versioned for NoteV0 {
        type Encoding = Postcard;
        const VERSION: u8 = 0;
        type Previous = NoPrevious<Postcard>;
        fn migrate(previous: NoPrevious<Postcard>) -> NoteV0 {
            previous.never()
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct NoteV1 {
        content: String,
        pinned: bool,
    }

    impl Versioned for NoteV1 {
        type Encoding = Postcard;
        const VERSION: u8 = 1;
        type Previous = NoteV0;
        fn migrate(previous: NoteV0) -> NoteV1 {
            NoteV1 {
                content: previous.text,
                pinned: false,
            }
        }
    }

    /// The same two versions, as JSON records.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct JsonNoteV0 {
        text: String,
    }

    impl Versioned for JsonNoteV0 {
        type Encoding = Json;
        const VERSION: u8 = 0;
        type Previous = NoPrevious<Json>;
        fn migrate(previous: NoPrevious<Json>) -> JsonNoteV0 {
            previous.never()
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct JsonNoteV1 {
        content: String,
        pinned: bool,
    }

    impl Versioned for JsonNoteV1 {
        type Encoding = Json;
        const VERSION: u8 = 1;
        type Previous = JsonNoteV0;
        fn migrate(previous: JsonNoteV0) -> JsonNoteV1 {
            JsonNoteV1 {
                content: previous.text,
                pinned: false,
            }
        }
    }

    #[test]
    fn an_older_version_decodes_and_migrates_forward() {
        // A V0 record as the older presenced wrote it: marker 0, then the
        // string's length and bytes.
        let old = [0, 2, b'h', b'i'];
        assert_eq!(NoteV0 { text: "hi".into() }.encode(), old);
        let expected = NoteV1 {
            content: "hi".into(),
            pinned: false,
        };
        assert_eq!(NoteV1::decode(&old), Ok(expected.clone()));
        // Written back, it is a V1 record, which decodes as itself.
        let new = [1, 2, b'h', b'i', 1];
        let pinned = NoteV1 {
            pinned: true,
            ..expected
        };
        assert_eq!(pinned.encode(), new);
        assert_eq!(NoteV1::decode(&new), Ok(pinned));
        // The older presenced refuses the newer record.
        assert_eq!(
            NoteV0::decode(&new),
            Err(
                "a record of format 1, which this presenced does not know (it writes format 0)"
                    .into()
            )
        );
    }

    #[test]
    fn an_older_json_version_decodes_and_migrates_forward() {
        let old = br#"{"format":0,"text":"hi"}"#;
        assert_eq!(JsonNoteV0 { text: "hi".into() }.encode(), old);
        let expected = JsonNoteV1 {
            content: "hi".into(),
            pinned: false,
        };
        assert_eq!(JsonNoteV1::decode(old), Ok(expected.clone()));
        let new = br#"{"format":1,"content":"hi","pinned":false}"#;
        assert_eq!(expected.encode(), new);
        assert_eq!(JsonNoteV1::decode(new), Ok(expected));
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused_with_what_is_wrong() {
        for (bytes, expected) in [
            (
                &[7, 0][..],
                "a record of format 7, which this presenced does not know (it writes format 1)",
            ),
            (&[], "an empty record"),
            (&[1, 2, b'h'], "a record that does not decode"),
        ] {
            let error = NoteV1::decode(bytes).expect_err("refused");
            assert!(error.starts_with(expected), "{bytes:?}: {error}");
        }
        for (bytes, expected) in [
            (
                &br#"{"format":300,"content":"hi","pinned":false}"#[..],
                "a record of format 300, which this presenced does not know (it writes format 1)",
            ),
            (
                br#"{"content":"hi"}"#,
                "a record that is not a JSON object with a format",
            ),
            (b"", "a record that is not a JSON object with a format"),
            (
                br#"{"format":1,"content":7}"#,
                "a record that does not decode",
            ),
        ] {
            let error = JsonNoteV1::decode(bytes).expect_err("refused");
            assert!(error.starts_with(expected), "{bytes:?}: {error}");
        }
    }
}
