//! A deserializer adaptor under which every struct, at any depth, reads
//! only from a JSON object.
//!
//! serde's derived `Deserialize` for a struct also accepts a sequence of
//! its fields in order (formats without field names need that), and
//! serde_json offers it one whenever the input has an array where the
//! struct belongs: `{"statusMessage": [{"content": "hi"}, null]}` read as a
//! status message, and `{"statusMessage": ["x", null]}` came close. serde
//! has no switch for it (serde-rs/serde#1587: changing the derive would
//! break compact formats), and no maintained crate offers one, so this
//! wraps the deserializer the way `serde_path_to_error` does (every
//! deserializer, visitor, sequence, map and enum access it hands out) and
//! refuses a sequence wherever a struct asked for its fields. Everything
//! else passes through unchanged, so a type's own rules (a `null` where a
//! string belongs, a number where a boolean belongs) still fail as serde
//! fails them, naming what was expected.
//!
//! It costs nothing per value beyond the wrapping, which monomorphizes
//! away: no intermediate `serde_json::Value`, and duplicate fields are
//! still refused as the derive refuses them.
//!
//! Not covered: `#[serde(flatten)]` and untagged enums buffer their input
//! before deserializing it, and a struct inside such a buffer is read by
//! serde's own buffer deserializer, which takes a sequence too. No request
//! body uses either.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// `deserializer`, with every struct read only from a map.
#[derive(Debug)]
pub struct Strict<D>(pub D);

/// What a value is expected to be, for the messages of the refusals this
/// adaptor (or the format, through it) makes.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Whatever the wrapped visitor says.
    AsIs,
    /// A struct: a JSON object, never an array.
    Object,
    /// A sequence: a JSON array.
    Array,
}

struct StrictVisitor<V> {
    inner: V,
    shape: Shape,
}

impl<V> StrictVisitor<V> {
    fn new(inner: V, shape: Shape) -> StrictVisitor<V> {
        StrictVisitor { inner, shape }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($argument:ident: $type:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(
                self,
                $($argument: $type,)*
                visitor: V,
            ) -> Result<V::Value, D::Error> {
                self.0.$method($($argument,)* StrictVisitor::new(visitor, Shape::AsIs))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_seq(StrictVisitor::new(visitor, Shape::Array))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, StrictVisitor::new(visitor, Shape::Object))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($type:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, value: $type) -> Result<V::Value, E> {
                self.inner.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape {
            Shape::AsIs => self.inner.expecting(formatter),
            Shape::Object => formatter.write_str("a JSON object"),
            Shape::Array => formatter.write_str("a JSON array"),
        }
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Strict(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if let Shape::Object = self.shape {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        self.inner.visit_seq(StrictSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(StrictMap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(StrictEnum(data))
    }
}

/// A seed whose value is deserialized strictly.
struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(deserializer))
    }
}

struct StrictSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct StrictMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(StrictSeed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct StrictEnum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for StrictEnum<A> {
    type Error = A::Error;
    type Variant = StrictVariant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, StrictVariant<A::Variant>), A::Error> {
        self.0
            .variant_seed(StrictSeed(seed))
            .map(|(value, variant)| (value, StrictVariant(variant)))
    }
}

struct StrictVariant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for StrictVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(StrictSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0
            .tuple_variant(len, StrictVisitor::new(visitor, Shape::Array))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0
            .struct_variant(fields, StrictVisitor::new(visitor, Shape::Object))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::Strict;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        content: Option<String>,
        kind: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Choice {
        Unit,
        Newtype(Inner),
        Tuple(String, String),
        Struct { content: String },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        inner: Option<Inner>,
        many: Option<Vec<Inner>>,
        nested: Option<Option<Box<Outer>>>,
        choice: Option<Choice>,
        names: Option<Vec<String>>,
    }

    fn parse(text: &str) -> Result<Outer, String> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(Strict(&mut deserializer)).map_err(|error| {
            let path = error.path().to_string();
            format!("{path}: {}", error.into_inner())
        })
    }

    #[test]
    fn a_struct_reads_from_an_object_at_any_depth() {
        let outer = parse(
            r#"{"inner": {"content": "a"}, "many": [{"kind": "b"}], "nested": {"nested": {"inner": {"content": "c"}}},
                "choice": {"Struct": {"content": "d"}}, "names": ["x", "y"]}"#,
        )
        .expect("objects are read");
        assert_eq!(outer.inner.expect("inner").content.as_deref(), Some("a"));
        assert_eq!(outer.names, Some(vec!["x".to_owned(), "y".to_owned()]));
        assert_eq!(
            outer.choice,
            Some(Choice::Struct {
                content: "d".into()
            })
        );
        for choice in [
            r#""Unit""#,
            r#"{"Newtype": {"content": "e"}}"#,
            r#"{"Tuple": ["f", "g"]}"#,
        ] {
            parse(&format!(r#"{{"choice": {choice}}}"#)).expect("every kind of variant is read");
        }
    }

    #[test]
    fn a_struct_given_an_array_is_refused_at_any_depth_naming_the_path() {
        for (text, path) in [
            (r#"["a", "b"]"#, "."),
            (r#"{"inner": ["a", "b"]}"#, "inner"),
            (r#"{"inner": []}"#, "inner"),
            (r#"{"many": [["a"]]}"#, "many[0]"),
            (r#"{"nested": {"inner": ["a"]}}"#, "nested.inner"),
            (r#"{"nested": {"nested": ["a"]}}"#, "nested.nested"),
            (r#"{"choice": {"Newtype": ["a"]}}"#, "choice.Newtype"),
            (r#"{"choice": {"Struct": ["d"]}}"#, "choice.Struct"),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.starts_with(&format!("{path}: ")), "{text}: {error}");
            assert!(
                error.contains("invalid type: sequence, expected a JSON object"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn other_wrong_types_fail_as_serde_fails_them() {
        for (text, expected) in [
            (
                r#"{"inner": {"content": 5}}"#,
                "inner.content: invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"inner": "a"}"#,
                "inner: invalid type: string \"a\", expected a JSON object",
            ),
            (
                r#"{"names": {"0": "x"}}"#,
                "names: invalid type: map, expected a JSON array",
            ),
            (
                r#"{"names": [null]}"#,
                "names[0]: invalid type: null, expected a string",
            ),
            (
                r#"{"inner": {"content": "a", "content": "b"}}"#,
                "inner: duplicate field `content`",
            ),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }
}
