//! Reading the few fields steward needs from Tahoe's JSON answers without
//! building a `serde_json::Value` tree, and as leniently as the tree's
//! accessors (`Value::as_bool`, `as_u64`, `as_str`, `as_object`) read them:
//! a field of another type reads as missing, never as an error, while the
//! whole text must still be JSON. Check results ([`crate::results`]) and the
//! gateway's directory listings are read this way, once per object.
//!
//! Two pitfalls of serde's derived structs are closed here: a struct would
//! also be read from a JSON array, by position ([`object_or_none`] reads
//! only objects), and a mistyped field would fail the whole answer
//! ([`Scalar`] reads any value).

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// Any JSON value, kept only when it is a boolean, an unsigned integer or
/// a string.
pub enum Scalar<'a> {
    Bool(bool),
    U64(u64),
    Str(Cow<'a, str>),
    Other,
}

impl<'a> Scalar<'a> {
    /// `Value::as_bool`.
    pub fn into_bool(self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// `Value::as_u64`.
    pub fn into_u64(self) -> Option<u64> {
        match self {
            Scalar::U64(n) => Some(n),
            _ => None,
        }
    }

    /// `Value::as_str`.
    pub fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(v).map_or(Scalar::Other, Scalar::U64))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                skip_seq(a).map(|()| Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                skip_map(a).map(|()| Scalar::Other)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The rest of an array, read and dropped.
pub fn skip_seq<'de, A: SeqAccess<'de>>(mut a: A) -> Result<(), A::Error> {
    while a.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The rest of an object, read and dropped.
pub fn skip_map<'de, A: MapAccess<'de>>(mut a: A) -> Result<(), A::Error> {
    while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A value read from a JSON object or from a JSON array (as
/// [`shaped`] reads it); the other shape reads as missing by default.
pub trait Shape<'de>: Sized {
    fn from_map<A: MapAccess<'de>>(a: A) -> Result<Option<Self>, A::Error> {
        skip_map(a).map(|()| None)
    }

    fn from_seq<A: SeqAccess<'de>>(a: A) -> Result<Option<Self>, A::Error> {
        skip_seq(a).map(|()| None)
    }
}

/// `T` read from an object or an array as its [`Shape`] says; any other
/// value (a string, a number, `null`...) reads as missing.
pub fn shaped<'de, D: Deserializer<'de>, T: Shape<'de>>(d: D) -> Result<Option<T>, D::Error> {
    struct V<T>(PhantomData<T>);
    impl<'de, T: Shape<'de>> Visitor<'de> for V<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
            T::from_map(a)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
            T::from_seq(a)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// A struct read from an object only.
struct AsObject<T>(T);

impl<'de, T: Deserialize<'de>> Shape<'de> for AsObject<T> {
    fn from_map<A: MapAccess<'de>>(a: A) -> Result<Option<Self>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(a)).map(|t| Some(AsObject(t)))
    }
}

/// `T` read from a JSON object (as `deserialize_with`); any other value is
/// read and dropped, and reads as missing.
pub fn object_or_none<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    shaped::<D, AsObject<T>>(d).map(|o| o.map(|o| o.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct S<'a> {
        #[serde(borrow, default)]
        a: Option<Scalar<'a>>,
        #[serde(borrow, default, deserialize_with = "object_or_none")]
        o: Option<Inner<'a>>,
    }

    #[derive(serde::Deserialize)]
    struct Inner<'a> {
        #[serde(borrow, default)]
        n: Option<Scalar<'a>>,
    }

    fn read(text: &str) -> (Option<String>, Option<Option<u64>>) {
        let s: S = serde_json::from_str(text).unwrap();
        (
            s.a.and_then(Scalar::into_str).map(Cow::into_owned),
            s.o.map(|i| i.n.and_then(Scalar::into_u64)),
        )
    }

    #[test]
    fn fields_of_another_type_read_as_missing() {
        assert_eq!(
            read(r#"{"a": "x", "o": {"n": 3}}"#),
            (Some("x".into()), Some(Some(3)))
        );
        assert_eq!(read(r#"{"a": 1, "o": [{"n": 3}]}"#), (None, None));
        assert_eq!(
            read(r#"{"a": {"b": [1]}, "o": {"n": -1}}"#),
            (None, Some(None))
        );
        assert_eq!(
            read(r#"{"a": "\u00e9", "o": null, "z": [[]]}"#),
            (Some("é".into()), None)
        );
        assert!(
            serde_json::from_str::<S>(r#"{"a": "x""#).is_err(),
            "still JSON"
        );
    }
}
