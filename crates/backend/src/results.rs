//! Check results, typed once.
//!
//! A check answers Tahoe's JSON object (`json_check_results` in
//! `allmydata/web/check_results.py`), and a repair Tahoe's
//! check-and-repair object. Units carry that JSON unchanged, so that
//! steward's output is Tahoe's; everything that *decides* something (the
//! report, the repair policy, the tallies, the exit code) reads the typed
//! [`CheckSummary`] parsed from it once, when the result is made or read
//! back from a file. The two are kept together in [`CheckResults`] and
//! [`RepairResults`], which serialize as the JSON alone.
//!
//! A check result made from the gateway's answer ([`CheckResults::from_slice`],
//! one per object of a run) keeps the answer's text and never builds a
//! `serde_json::Value` tree: the summary is read from the text by a typed
//! parse that skips what it does not need, and serializing writes the
//! text's values straight into the serializer (a unit's), through
//! `serde_transcode`, so the bytes written are those a tree would give.
//! The tree is built only when asked for ([`CheckResults::json`]) and then
//! kept. Under callgrind this saves about 40,000 instructions per checked
//! object (the tree's allocations, its map's hashing, and dropping it).
//!
//! Parsing is strict where health is concerned: a result without
//! `results.healthy` is not a check result (never taken for healthy).

use crate::lenient::{object_or_none, Scalar};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::sync::OnceLock;

/// What a check found, as the stages need it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// Tahoe's `healthy`: every share present, on enough servers.
    pub healthy: bool,
    /// Enough good shares to read the object (`recoverable`; Tahoe leaves it
    /// out for literal objects, which are always recoverable).
    pub recoverable: bool,
    /// `count-shares-good`.
    pub good_shares: u64,
    /// `count-shares-needed` (k).
    pub needed: u64,
    /// `count-shares-expected` (N).
    pub expected: u64,
    /// `count-happiness`, when given.
    pub happiness: Option<u64>,
    /// `count-corrupt-shares`.
    pub corrupt_shares: u64,
    /// The storage index the result is about (`""` for literal objects).
    pub storage_index: String,
}

const NO_RESULTS: &str = "check results without a \"results\" object";
const NO_HEALTHY: &str = "check results without a boolean \"results.healthy\"";

impl CheckSummary {
    /// Read Tahoe's check-results object.
    pub fn parse(v: &Value) -> Result<CheckSummary, String> {
        let r = v
            .get("results")
            .and_then(Value::as_object)
            .ok_or(NO_RESULTS)?;
        let healthy = r
            .get("healthy")
            .and_then(Value::as_bool)
            .ok_or(NO_HEALTHY)?;
        let num = |k: &str| r.get(k).and_then(Value::as_u64);
        Ok(CheckSummary {
            healthy,
            recoverable: r
                .get("recoverable")
                .and_then(Value::as_bool)
                .unwrap_or(healthy),
            good_shares: num("count-shares-good").unwrap_or(0),
            needed: num("count-shares-needed").unwrap_or(0),
            expected: num("count-shares-expected").unwrap_or(0),
            happiness: num("count-happiness"),
            corrupt_shares: num("count-corrupt-shares").unwrap_or(0),
            storage_index: v
                .get("storage-index")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    }

    /// Read Tahoe's check-results object from its text: the same answers
    /// as [`CheckSummary::parse`] of the parsed text, without the tree.
    /// The whole text is checked to be JSON.
    pub fn parse_text(text: &str) -> Result<CheckSummary, String> {
        // A struct is also read from a JSON array, by position: refuse one.
        if !text.trim_start().starts_with('{') {
            return Err("check results that are not a JSON object".to_string());
        }
        let w: Wire = serde_json::from_str(text)
            .map_err(|e| format!("check results that are not JSON ({e})"))?;
        let r = w.results.ok_or(NO_RESULTS)?;
        let healthy = r.healthy.and_then(Scalar::into_bool).ok_or(NO_HEALTHY)?;
        let num = |s: Option<Scalar>| s.and_then(Scalar::into_u64);
        Ok(CheckSummary {
            healthy,
            recoverable: r.recoverable.and_then(Scalar::into_bool).unwrap_or(healthy),
            good_shares: num(r.good).unwrap_or(0),
            needed: num(r.needed).unwrap_or(0),
            expected: num(r.expected).unwrap_or(0),
            happiness: num(r.happiness),
            corrupt_shares: num(r.corrupt).unwrap_or(0),
            storage_index: w
                .storage_index
                .and_then(Scalar::into_str)
                .map(|s| s.into_owned())
                .unwrap_or_default(),
        })
    }
}

/// The fields of a check result the summary reads; the rest is skipped.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "storage-index", borrow, default)]
    storage_index: Option<Scalar<'a>>,
    #[serde(borrow, default, deserialize_with = "object_or_none")]
    results: Option<WireResults<'a>>,
}

#[derive(Deserialize)]
struct WireResults<'a> {
    #[serde(borrow, default)]
    healthy: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    recoverable: Option<Scalar<'a>>,
    #[serde(rename = "count-shares-good", borrow, default)]
    good: Option<Scalar<'a>>,
    #[serde(rename = "count-shares-needed", borrow, default)]
    needed: Option<Scalar<'a>>,
    #[serde(rename = "count-shares-expected", borrow, default)]
    expected: Option<Scalar<'a>>,
    #[serde(rename = "count-happiness", borrow, default)]
    happiness: Option<Scalar<'a>>,
    #[serde(rename = "count-corrupt-shares", borrow, default)]
    corrupt: Option<Scalar<'a>>,
}

/// Tahoe's check results: the JSON, and its [`CheckSummary`].
#[derive(Clone)]
pub struct CheckResults {
    /// The JSON's text, when made from text (checked to be JSON).
    text: Option<Box<str>>,
    /// The tree: given, or parsed from `text` the first time it is asked for.
    tree: OnceLock<Value>,
    summary: CheckSummary,
}

/// What Tahoe answers for a literal object, which has no shares.
const LITERAL: &str = r#"{"storage-index": "", "results": {"healthy": true}}"#;

impl CheckResults {
    /// Parse Tahoe's JSON (see [`CheckSummary::parse`]).
    pub fn from_json(json: Value) -> Result<CheckResults, String> {
        let summary = CheckSummary::parse(&json)?;
        Ok(CheckResults {
            text: None,
            tree: OnceLock::from(json),
            summary,
        })
    }

    /// Read Tahoe's JSON from its text (a gateway's answer), keeping the
    /// text and building no tree (see the module doc).
    pub fn from_slice(body: &[u8]) -> Result<CheckResults, String> {
        let text = std::str::from_utf8(body)
            .map_err(|e| format!("check results that are not UTF-8 ({e})"))?
            .trim();
        let summary = CheckSummary::parse_text(text)?;
        Ok(CheckResults {
            text: Some(text.into()),
            tree: OnceLock::new(),
            summary,
        })
    }

    /// What Tahoe answers for a literal object, which has no shares.
    pub fn literal() -> CheckResults {
        CheckResults {
            text: Some(LITERAL.into()),
            tree: OnceLock::new(),
            summary: CheckSummary {
                healthy: true,
                recoverable: true,
                ..CheckSummary::default()
            },
        }
    }

    /// The JSON, as Tahoe shaped it (parsed from the text the first time).
    pub fn json(&self) -> &Value {
        self.tree.get_or_init(|| self.parse_text())
    }

    pub fn into_json(self) -> Value {
        let CheckResults { text, tree, .. } = self;
        tree.into_inner().unwrap_or_else(|| {
            serde_json::from_str(text.as_deref().unwrap_or("null"))
                .expect("the text was checked to be JSON when it was read")
        })
    }

    /// The JSON's text: as read, or written from the tree (without
    /// building a tree from the text).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match (&self.text, self.tree.get()) {
            (Some(t), _) => std::borrow::Cow::Borrowed(t),
            (None, Some(v)) => std::borrow::Cow::Owned(v.to_string()),
            (None, None) => std::borrow::Cow::Borrowed("null"),
        }
    }

    /// A value inside the JSON by JSON pointer (`/results/healthy`).
    pub fn pointer(&self, p: &str) -> Option<&Value> {
        self.json().pointer(p)
    }

    pub fn summary(&self) -> &CheckSummary {
        &self.summary
    }

    /// About how many bytes of memory the results hold (their text, and
    /// their tree if built): for a cache that keeps many within a budget.
    /// Counted without serializing or allocating.
    pub fn approx_bytes(&self) -> usize {
        /// A tree's strings and keys, and a slot for every value.
        fn tree_bytes(v: &Value) -> usize {
            std::mem::size_of::<Value>()
                + match v {
                    Value::String(s) => s.len(),
                    Value::Array(a) => a.iter().map(tree_bytes).sum(),
                    Value::Object(o) => o.iter().map(|(k, v)| 32 + k.len() + tree_bytes(v)).sum(),
                    _ => 0,
                }
        }
        std::mem::size_of::<Self>()
            + self.text.as_ref().map_or(0, |t| t.len())
            + self.tree.get().map_or(0, tree_bytes)
    }

    fn parse_text(&self) -> Value {
        serde_json::from_str(self.text.as_deref().unwrap_or("null"))
            .expect("the text was checked to be JSON when it was read")
    }
}

/// The JSON's fields, as with a `serde_json::Value` (`r["results"]`).
impl std::ops::Index<&str> for CheckResults {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.json()[key]
    }
}

impl PartialEq for CheckResults {
    fn eq(&self, other: &Self) -> bool {
        self.summary == other.summary && self.json() == other.json()
    }
}

/// Shows the summary only: the JSON names servers and share maps, and is
/// long.
impl fmt::Debug for CheckResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckResults")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for CheckResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.json().fmt(f)
    }
}

impl std::fmt::Display for RepairResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.json.fmt(f)
    }
}

impl Serialize for CheckResults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.tree.get(), &self.text) {
            (Some(tree), _) => tree.serialize(s),
            (None, Some(text)) => {
                let mut de = serde_json::Deserializer::from_str(text);
                serde_transcode::Transcoder::new(&mut de).serialize(s)
            }
            (None, None) => unreachable!("a check result has a text or a tree"),
        }
    }
}

impl<'de> Deserialize<'de> for CheckResults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        CheckResults::from_json(v).map_err(de::Error::custom)
    }
}

/// Tahoe's check-and-repair results: the JSON, and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct RepairResults {
    json: Value,
    /// `repair-attempted`: false when the repairer found it healthy.
    pub attempted: bool,
    /// `repair-successful`.
    pub successful: bool,
    pub pre: Option<CheckSummary>,
    pub post: Option<CheckSummary>,
}

impl RepairResults {
    pub fn from_json(json: Value) -> Result<RepairResults, String> {
        let flag = |k: &str| json.get(k).and_then(Value::as_bool);
        let attempted = flag("repair-attempted")
            .ok_or("check-and-repair results without a boolean \"repair-attempted\"")?;
        let part = |k: &str| json.get(k).map(CheckSummary::parse).transpose();
        Ok(RepairResults {
            attempted,
            successful: flag("repair-successful").unwrap_or(false),
            pre: part("pre-repair-results")?,
            post: part("post-repair-results")?,
            json,
        })
    }

    pub fn json(&self) -> &Value {
        &self.json
    }

    pub fn into_json(self) -> Value {
        self.json
    }

    /// Whether the object is healthy after it: the post-repair results,
    /// else the pre-repair ones (when nothing was attempted).
    pub fn healthy_after(&self) -> bool {
        self.post
            .as_ref()
            .or(self.pre.as_ref())
            .is_some_and(|s| s.healthy)
    }
}

impl std::ops::Index<&str> for RepairResults {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.json[key]
    }
}

impl Serialize for RepairResults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RepairResults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        RepairResults::from_json(v).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A gateway's answer, shaped and indented as Tahoe's (`indent=1`),
    /// with escapes, a non-ASCII server nickname, nested lists and maps.
    const ANSWER: &str = "{\n \"storage-index\": \"rbrklpiblumo2dmqx6krlziaom\",\n \"summary\": \"Healthy \\u00e9 \\\"q\\\"\\n\",\n \"results\": {\n  \"count-happiness\": 5,\n  \"count-shares-good\": 5,\n  \"count-shares-needed\": 2,\n  \"count-shares-expected\": 5,\n  \"count-corrupt-shares\": 0,\n  \"list-corrupt-shares\": [],\n  \"servers-responding\": [\"v0-abc\", \"v0-déf\"],\n  \"sharemap\": {\"0\": [\"v0-abc\"], \"1\": []},\n  \"ratio\": 0.5,\n  \"negative\": -3,\n  \"nothing\": null,\n  \"healthy\": true,\n  \"recoverable\": true\n }\n}\n";

    #[test]
    fn text_and_tree_give_the_same_summary_and_the_same_bytes() {
        let from_text = CheckResults::from_slice(ANSWER.as_bytes()).unwrap();
        let tree: Value = serde_json::from_str(ANSWER).unwrap();
        let from_tree = CheckResults::from_json(tree.clone()).unwrap();
        assert_eq!(from_text.summary(), from_tree.summary());
        assert_eq!(
            from_text.summary().storage_index,
            "rbrklpiblumo2dmqx6krlziaom"
        );
        assert_eq!(from_text.summary().happiness, Some(5));
        // Serialized without a tree, the bytes are the tree's, in any
        // formatter (the compact one here, a unit's elsewhere).
        assert!(from_text.tree.get().is_none());
        let written = serde_json::to_string(&from_text).unwrap();
        assert!(from_text.tree.get().is_none(), "no tree was built");
        assert_eq!(written, serde_json::to_string(&tree).unwrap());
        let pretty = |r: &CheckResults| serde_json::to_string_pretty(r).unwrap();
        assert_eq!(pretty(&from_text), pretty(&from_tree));
        // The tree, when asked for, is the text's.
        assert_eq!(from_text.json(), &tree);
        assert_eq!(from_text["results"]["healthy"], true);
        assert_eq!(
            from_text.pointer("/results/count-shares-good"),
            Some(&json!(5))
        );
        assert_eq!(from_text, from_tree);
        assert_eq!(from_text.clone().into_json(), tree);
        let lit = CheckResults::literal();
        assert_eq!(
            serde_json::to_string(&lit).unwrap(),
            r#"{"storage-index":"","results":{"healthy":true}}"#
        );
        assert_eq!(
            lit.summary(),
            &CheckSummary::parse(&serde_json::from_str(LITERAL).unwrap()).unwrap()
        );
    }

    #[test]
    fn text_is_read_as_strictly_as_a_tree() {
        let both = |text: &str| {
            let t = CheckResults::from_slice(text.as_bytes()).map(|r| r.summary().clone());
            let v = serde_json::from_str::<Value>(text)
                .map_err(|e| e.to_string())
                .and_then(|v| CheckSummary::parse(&v));
            (t, v)
        };
        for bad in [
            "{}",
            r#"{"results": {}}"#,
            r#"{"results": null}"#,
            r#"{"results": {"healthy": "yes"}}"#,
            r#"{"results": {"healthy": 1}}"#,
            r#"{"results": [true]}"#,
            r#"[{"healthy": true}]"#,
            r#"["x", {"healthy": true}]"#,
            r#"{"results": {"healthy": true}"#,
            r#"{"results": {"healthy": true}} x"#,
            "",
        ] {
            let (t, v) = both(bad);
            assert!(t.is_err() && v.is_err(), "{bad}: {t:?} {v:?}");
        }
        assert!(
            CheckResults::from_slice(b"{\"results\": {\"healthy\": true}, \"x\": \"\xff\"}")
                .is_err()
        );
        // Fields of another type read as missing, as with a tree.
        for odd in [
            r#"{"storage-index": 7, "results": {"healthy": false, "recoverable": "no", "count-shares-good": -1, "count-shares-needed": 2.5, "count-happiness": "4", "count-corrupt-shares": {"a": [1]}}}"#,
            r#"{"results": {"healthy": true, "count-shares-expected": [1, 2], "count-shares-good": null}}"#,
            r#"{"storage-index": "a\u00e9", "results": {"healthy": true, "recoverable": false}}"#,
        ] {
            let (t, v) = both(odd);
            assert_eq!(t.unwrap(), v.unwrap(), "{odd}");
        }
    }

    #[test]
    fn summaries_are_read_strictly() {
        let r = CheckResults::from_json(json!({"storage-index": "aaaa", "summary": "x",
            "results": {"healthy": false, "recoverable": true, "count-shares-good": 4,
            "count-shares-needed": 2, "count-shares-expected": 5, "count-happiness": 4,
            "count-corrupt-shares": 1}}))
        .unwrap();
        let s = r.summary();
        assert!(!s.healthy && s.recoverable);
        assert_eq!(
            (s.good_shares, s.needed, s.expected, s.happiness),
            (4, 2, 5, Some(4))
        );
        assert_eq!(s.corrupt_shares, 1);
        assert_eq!(s.storage_index, "aaaa");
        assert!(CheckResults::literal().summary().healthy);
        assert!(CheckResults::from_json(json!({"results": {}})).is_err());
        assert!(CheckResults::from_json(json!({"results": {"healthy": "yes"}})).is_err());
        assert!(CheckResults::from_json(json!({})).is_err());
        // Serialized as the JSON alone, unchanged.
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), *r.json());
    }

    #[test]
    fn repair_results() {
        let r = RepairResults::from_json(json!({"repair-attempted": true,
            "repair-successful": true,
            "pre-repair-results": {"results": {"healthy": false}},
            "post-repair-results": {"results": {"healthy": true}}}))
        .unwrap();
        assert!(r.attempted && r.successful && r.healthy_after());
        let r = RepairResults::from_json(json!({"repair-attempted": false,
            "pre-repair-results": {"results": {"healthy": true}}}))
        .unwrap();
        assert!(!r.attempted && r.healthy_after());
        assert!(RepairResults::from_json(json!({})).is_err());
    }
}
