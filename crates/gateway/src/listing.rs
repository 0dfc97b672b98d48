//! A directory listing, read from the gateway's `t=json` answer:
//! `["dirnode", {..., "children": {NAME: [NODETYPE, {FIELDS}], ...}}]`.
//!
//! Read straight into [`Listing`], children in the answer's order, without a
//! `serde_json::Value` tree (one listing per directory, one child per
//! object of a run); fields are read as leniently as the tree's accessors
//! would ([`steward_backend::lenient`]): a child whose fields are missing
//! or mistyped is kept, for the traversal to report.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use steward_backend::lenient::{object_or_none, shaped, skip_seq, Scalar, Shape};
use steward_backend::{Child, Listing, NodeType};

/// Parse the gateway's `t=json` answer for a directory: `None` when the
/// answer is JSON but not a directory's listing, an error when it is not
/// JSON.
pub fn parse_listing(body: &[u8]) -> Result<Option<Listing>, serde_json::Error> {
    let l: ListingWire = serde_json::from_slice(body)?;
    Ok(l.0.map(|children| Listing {
        children,
        size: None,
    }))
}

struct ListingWire(Option<Vec<Child>>);

impl<'de> Deserialize<'de> for ListingWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        shaped(d).map(|l: Option<ListingWire>| l.unwrap_or(ListingWire(None)))
    }
}

impl<'de> Shape<'de> for ListingWire {
    fn from_seq<A: SeqAccess<'de>>(mut a: A) -> Result<Option<Self>, A::Error> {
        let tag = a.next_element::<Scalar>()?.and_then(Scalar::into_str);
        if tag.as_deref() != Some("dirnode") {
            skip_seq(a)?;
            return Ok(None);
        }
        let dir = a.next_element::<DirWire>()?;
        skip_seq(a)?;
        Ok(Some(ListingWire(dir.and_then(|d| d.children))))
    }
}

/// The directory's own fields: only `children` is read.
#[derive(serde::Deserialize)]
struct DirFields {
    #[serde(default, deserialize_with = "object_or_none")]
    children: Option<Children>,
}

/// `DirFields` from an object, or nothing.
struct DirWire {
    children: Option<Vec<Child>>,
}

impl<'de> Deserialize<'de> for DirWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f: Option<DirFields> = object_or_none(d)?;
        Ok(DirWire {
            children: f.and_then(|f| f.children).map(|c| c.0),
        })
    }
}

/// The `children` object, in its order.
struct Children(Vec<Child>);

impl<'de> Deserialize<'de> for Children {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Children;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of children")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Children, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(name) = a.next_key::<String>()? {
                    let entry: Entry<'de> = a.next_value()?;
                    out.push(entry.into_child(name));
                }
                Ok(Children(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// One child: `[NODETYPE, {FIELDS}]`; anything else is an unknown node
/// without fields.
#[derive(Default)]
struct Entry<'a> {
    node_type: Option<Cow<'a, str>>,
    fields: Option<Fields<'a>>,
}

#[derive(Default, serde::Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    rw_uri: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    ro_uri: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    verify_uri: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    size: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    format: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    mutable: Option<Scalar<'a>>,
}

impl Entry<'_> {
    fn into_child(self, name: String) -> Child {
        let node_type = match self.node_type.as_deref() {
            Some("filenode") => NodeType::File,
            Some("dirnode") => NodeType::Directory,
            _ => NodeType::Unknown,
        };
        let f = self.fields.unwrap_or_default();
        let s = |v: Option<Scalar>| v.and_then(Scalar::into_str).map(Cow::into_owned);
        Child {
            name,
            node_type,
            rw_uri: s(f.rw_uri),
            ro_uri: s(f.ro_uri),
            verify_uri: s(f.verify_uri),
            size: f.size.and_then(Scalar::into_u64),
            format: s(f.format),
            mutable: f.mutable.and_then(Scalar::into_bool),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Entry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        shaped(d).map(Option::unwrap_or_default)
    }
}

impl<'de: 'a, 'a> Shape<'de> for Entry<'a> {
    fn from_seq<A: SeqAccess<'de>>(mut a: A) -> Result<Option<Self>, A::Error> {
        let node_type = a.next_element::<Scalar>()?.and_then(Scalar::into_str);
        let fields = a.next_element::<FieldsWire>()?.and_then(|f| f.0);
        skip_seq(a)?;
        Ok(Some(Entry { node_type, fields }))
    }
}

/// `Fields` from an object, or nothing.
struct FieldsWire<'a>(Option<Fields<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FieldsWire<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object_or_none(d).map(FieldsWire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// How listings were read before, through a `Value` tree: the typed
    /// reading must agree with it on every input.
    fn through_a_tree(v: &Value) -> Option<Vec<Child>> {
        let arr = v.as_array()?;
        if arr.first()?.as_str()? != "dirnode" {
            return None;
        }
        let children = arr.get(1)?.get("children")?.as_object()?;
        let mut out = Vec::new();
        for (name, entry) in children {
            let node_type = match entry.get(0).and_then(Value::as_str) {
                Some("filenode") => NodeType::File,
                Some("dirnode") => NodeType::Directory,
                _ => NodeType::Unknown,
            };
            let d = entry.get(1);
            let s = |k: &str| {
                d.and_then(|d| d.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            out.push(Child {
                name: name.clone(),
                node_type,
                rw_uri: s("rw_uri"),
                ro_uri: s("ro_uri"),
                verify_uri: s("verify_uri"),
                size: d.and_then(|d| d.get("size")).and_then(Value::as_u64),
                format: s("format"),
                mutable: d.and_then(|d| d.get("mutable")).and_then(Value::as_bool),
            });
        }
        Some(out)
    }

    fn key(c: &Child) -> String {
        format!("{c:?}")
    }

    #[test]
    fn the_typed_reading_agrees_with_a_tree() {
        for text in [
            r#"["dirnode", {"rw_uri": "URI:DIR2:a:b", "mutable": true, "children": {
                "z": ["filenode", {"ro_uri": "URI:CHK:x:y:2:5:100", "verify_uri": "URI:CHK-Verifier:v:y:2:5:100", "size": 100, "format": "CHK", "mutable": false, "metadata": {"tahoe": {"linkmotime": 1.5}}}],
                "a\u00e9\"": ["dirnode", {"rw_uri": "URI:DIR2:q:r", "ro_uri": "URI:DIR2-RO:s:r", "mutable": true, "metadata": {}}],
                "u": ["unknown", {"metadata": {}}],
                "odd": ["filenode", {"ro_uri": 5, "size": -1, "format": null, "mutable": "yes"}],
                "short": ["filenode"],
                "flat": "filenode",
                "obj": {"0": "filenode"},
                "extra": ["filenode", {"size": 7}, "more", [1]],
                "notfields": ["dirnode", ["ro_uri", "x"]],
                "m": [3, {"ro_uri": "URI:LIT:aa"}]
              }}]"#,
            r#"["dirnode", {"children": {}}]"#,
            r#"["dirnode", {"children": []}]"#,
            r#"["dirnode", {}]"#,
            r#"["dirnode", []]"#,
            r#"["dirnode"]"#,
            r#"["filenode", {"children": {}}]"#,
            r#"{"dirnode": {"children": {}}}"#,
            r#"[]"#,
            r#""dirnode""#,
            r#"null"#,
        ] {
            let typed = parse_listing(text.as_bytes()).unwrap().map(|l| l.children);
            let tree = through_a_tree(&serde_json::from_str(text).unwrap());
            assert_eq!(
                typed
                    .as_ref()
                    .map(|c| c.iter().map(key).collect::<Vec<_>>()),
                tree.as_ref().map(|c| c.iter().map(key).collect::<Vec<_>>()),
                "{text}"
            );
        }
        // Children in the answer's order (the traversal's order).
        let l = parse_listing(
            br#"["dirnode", {"children": {"b": ["filenode", {}], "a": ["filenode", {}]}}]"#,
        )
        .unwrap()
        .unwrap();
        let names: Vec<&str> = l.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        for bad in [
            &b"[\"dirnode\", {\"children\": {\"a\": [}}]"[..],
            b"",
            b"[1] x",
        ] {
            assert!(parse_listing(bad).is_err());
        }
    }
}
