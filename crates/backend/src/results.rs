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
//! Parsing is strict where health is concerned: a result without
//! `results.healthy` is not a check result (never taken for healthy).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

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

impl CheckSummary {
    /// Read Tahoe's check-results object.
    pub fn parse(v: &Value) -> Result<CheckSummary, String> {
        let r = v
            .get("results")
            .and_then(Value::as_object)
            .ok_or("check results without a \"results\" object")?;
        let healthy = r
            .get("healthy")
            .and_then(Value::as_bool)
            .ok_or("check results without a boolean \"results.healthy\"")?;
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
}

/// Tahoe's check results: the JSON, and its [`CheckSummary`].
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResults {
    json: Value,
    summary: CheckSummary,
}

impl CheckResults {
    /// Parse Tahoe's JSON (see [`CheckSummary::parse`]).
    pub fn from_json(json: Value) -> Result<CheckResults, String> {
        let summary = CheckSummary::parse(&json)?;
        Ok(CheckResults { json, summary })
    }

    /// What Tahoe answers for a literal object, which has no shares.
    pub fn literal() -> CheckResults {
        CheckResults::from_json(json!({"storage-index": "", "results": {"healthy": true}}))
            .expect("a valid literal result")
    }

    /// The JSON, as Tahoe shaped it.
    pub fn json(&self) -> &Value {
        &self.json
    }

    pub fn into_json(self) -> Value {
        self.json
    }

    pub fn summary(&self) -> &CheckSummary {
        &self.summary
    }
}

/// The JSON's fields, as with a `serde_json::Value` (`r["results"]`).
impl std::ops::Index<&str> for CheckResults {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.json[key]
    }
}

impl std::ops::Index<&str> for RepairResults {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.json[key]
    }
}

impl std::fmt::Display for CheckResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.json.fmt(f)
    }
}

impl std::fmt::Display for RepairResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.json.fmt(f)
    }
}

impl CheckResults {
    /// A value inside the JSON by JSON pointer (`/results/healthy`).
    pub fn pointer(&self, p: &str) -> Option<&Value> {
        self.json.pointer(p)
    }
}

impl Serialize for CheckResults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CheckResults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        CheckResults::from_json(v).map_err(serde::de::Error::custom)
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

impl Serialize for RepairResults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RepairResults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        RepairResults::from_json(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
