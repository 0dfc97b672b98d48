//! The lines of a Tahoe-compatible stream: steward's units shaped for the
//! stock `tahoe` CLI, each kept under its line limit.
//!
//! # What the stock CLI reads
//!
//! `tahoe deep-check` reads, for every `file` and `directory` unit,
//! `check-results.results.healthy` (and `summary`, `list-corrupt-shares`);
//! with `--repair` it reads `check-and-repair-results` instead:
//! `repair-attempted`, `repair-successful`, and (unless `storage-index` is
//! empty, a LIT object) `pre-repair-results.results.healthy` and
//! `post-repair-results.results.healthy`. A unit without them makes it
//! raise. So [`Shaper`] gives every such unit those fields:
//!
//! * A check that failed, or an object that could not be checked (a cap
//!   that does not parse), gets check results that say so:
//!   `{"storage-index", "summary": "steward: <code>: <message>", "results":
//!   {"healthy": false}}`, plus `"recoverable": false` when the error says
//!   the object is unrecoverable. Never healthy without a check that said so.
//! * With repair, `check-and-repair-results` is Tahoe's object: the
//!   gateway's own when a repair ran; otherwise built from the check results
//!   (`repair-attempted: false`, `repair-successful: false`, pre = post =
//!   the check), as Tahoe writes it for an object that needed nothing; for
//!   a LIT object `{"storage-index": "", "repair-attempted": false}`, as
//!   Tahoe writes it. The `check-results` of such a unit are dropped (Tahoe
//!   replaces them too); steward's `error` and `repair` fields stay.
//!
//! Unlike Tahoe, an unrecoverable directory or file does not end the
//! stream: its unit carries the `error` and check results saying
//! `"healthy": false, "recoverable": false`, and the walk goes on.
//!
//! # The line limit
//!
//! The stock CLI reads the stream with Twisted's `LineOnlyReceiver`, whose
//! limit is 16,384 bytes: a longer line drops the connection. Every line
//! is kept to [`MAX_LINE`] bytes. When a unit is longer, [`fit`] takes away,
//! in this order, what no client of the stream needs to go on, re-measuring
//! after each step:
//!
//! 1. the per-server maps in every results object (`sharemap`,
//!    `servers-responding`: on a grid of hundreds of servers they alone
//!    pass the limit; `count-good-share-hosts` and the counts stay);
//! 2. long free text (`summary`, `error.message`, `repair.reason`) beyond
//!    200 characters;
//! 3. entries of `list-corrupt-shares` from the end (`count-corrupt-shares`
//!    still says how many there are);
//! 4. the middle of path names longer than 64, then 16 characters
//!    (`…` marks the cut);
//! 5. path components from the middle of a path still too deep (one `…`
//!    component stands for them).
//!
//! A unit that was cut says what in `"steward-trimmed"` (a list of the
//! steps' names), so a reader knows the path or lists are not whole. The
//! caps, type, storage index, health and repair outcome are never cut.

use crate::stage::check::lit_results;
use crate::unit::{to_ascii_json, ObjectType, ObjectUnit, RepairAction, Unit};
use serde_json::{json, Map, Value};
use steward_backend::{CheckResults, RepairResults};

/// The longest line written, newline excluded: under the stock CLI's
/// 16,384-byte limit with room to spare.
pub const MAX_LINE: usize = 16_000;

/// How the units of one stream are shaped.
#[derive(Clone, Copy, Debug)]
pub enum Shaper {
    /// `t=stream-manifest`: units as the traversal writes them.
    Manifest,
    /// `t=stream-deep-check`: check results on every object.
    DeepCheck,
    /// `t=stream-deep-check&repair=true`: check-and-repair results.
    DeepCheckAndRepair,
}

impl Shaper {
    /// The line for `unit` (no newline), within [`MAX_LINE`].
    pub fn line(self, unit: Unit) -> String {
        let unit = match unit {
            Unit::Object(o) => Unit::Object(Box::new(self.shape(*o))),
            stats => stats,
        };
        let line = unit.to_line();
        if line.len() <= MAX_LINE {
            return line;
        }
        match unit {
            Unit::Object(o) => {
                let v = serde_json::to_value(&*o).expect("a unit is JSON");
                fit(v)
            }
            // The stats unit has a fixed set of keys and a histogram of at
            // most a few dozen buckets.
            Unit::Stats(..) => line,
        }
    }

    fn shape(self, mut u: ObjectUnit) -> ObjectUnit {
        if u.object_type == ObjectType::Unknown || matches!(self, Shaper::Manifest) {
            return u;
        }
        if u.check_results.is_none() {
            u.check_results =
                Some(CheckResults::from_json(failed_results(&u)).expect("valid results"));
        }
        if matches!(self, Shaper::DeepCheckAndRepair) && u.check_and_repair_results.is_none() {
            u.check_and_repair_results =
                Some(RepairResults::from_json(unrepaired(&u)).expect("valid results"));
        }
        if matches!(self, Shaper::DeepCheckAndRepair) {
            u.check_results = None;
        }
        u
    }
}

/// Check results for an object whose check gave none.
fn failed_results(u: &ObjectUnit) -> Value {
    let (code, message) = match &u.error {
        Some(e) => (e.code.as_str(), e.message.as_str()),
        None => ("not-checked", "no check results"),
    };
    let mut results = Map::new();
    results.insert("healthy".into(), Value::Bool(false));
    if code == steward_backend::ErrorCode::Unrecoverable.as_str() {
        results.insert("recoverable".into(), Value::Bool(false));
    }
    json!({
        "storage-index": u.storage_index,
        "summary": format!("steward: {code}: {message}"),
        "results": results,
    })
}

/// Tahoe's check-and-repair results for an object that was not repaired.
fn unrepaired(u: &ObjectUnit) -> Value {
    let cr = u
        .check_results
        .as_ref()
        .map_or_else(|| failed_results(u), |c| c.json().clone());
    if u.storage_index.is_empty() && cr == *lit_results().json() {
        return json!({"storage-index": "", "repair-attempted": false});
    }
    let attempted = u.repair.as_ref().map(|r| r.action) == Some(RepairAction::Repaired);
    json!({
        "storage-index": u.storage_index,
        // A repair that was sent but failed with an error (so no results).
        "repair-attempted": attempted,
        "repair-successful": false,
        "pre-repair-results": cr,
        "post-repair-results": cr,
    })
}

fn len(v: &Value) -> usize {
    to_ascii_json(v).len()
}

/// The results objects inside a unit (check, pre- and post-repair).
fn results_objects(v: &mut Value) -> Vec<&mut Map<String, Value>> {
    let mut out = Vec::new();
    let Some(o) = v.as_object_mut() else {
        return out;
    };
    for (k, val) in o.iter_mut() {
        match k.as_str() {
            "check-results" => {
                if let Some(r) = val.get_mut("results").and_then(Value::as_object_mut) {
                    out.push(r);
                }
            }
            "check-and-repair-results" => {
                if let Some(crr) = val.as_object_mut() {
                    for (k2, v2) in crr.iter_mut() {
                        if k2 == "pre-repair-results" || k2 == "post-repair-results" {
                            if let Some(r) = v2.get_mut("results").and_then(Value::as_object_mut) {
                                out.push(r);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn cut_middle(s: &str, keep: usize) -> String {
    let n = s.chars().count();
    if n <= keep {
        return s.to_string();
    }
    let head = keep / 2;
    let tail = keep - head - 1;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

fn cut_end(s: &str, keep: usize) -> Option<String> {
    (s.chars().count() > keep).then(|| {
        let mut out: String = s.chars().take(keep).collect();
        out.push('…');
        out
    })
}

/// Shorten an object unit (as JSON) until its line fits, as the module doc
/// says; returns the line.
pub fn fit(mut v: Value) -> String {
    let mut trimmed: Vec<&'static str> = Vec::new();
    type Step = (&'static str, fn(&mut Value) -> bool);
    let steps: [Step; 6] = [
        ("per-server-maps", |v| {
            let mut changed = false;
            for r in results_objects(v) {
                changed |= r.remove("sharemap").is_some();
                changed |= r.remove("servers-responding").is_some();
            }
            changed
        }),
        ("long-text", |v| {
            let mut changed = false;
            let mut cut = |slot: Option<&mut Value>| {
                if let Some(Value::String(s)) = slot {
                    if let Some(short) = cut_end(s, 200) {
                        *s = short;
                        changed = true;
                    }
                }
            };
            cut(v.pointer_mut("/error/message"));
            cut(v.pointer_mut("/repair/reason"));
            cut(v.pointer_mut("/check-results/summary"));
            cut(v.pointer_mut("/check-and-repair-results/pre-repair-results/summary"));
            cut(v.pointer_mut("/check-and-repair-results/post-repair-results/summary"));
            changed
        }),
        ("list-corrupt-shares", |v| {
            // Halve the longest list each time: few steps even for long lists.
            let mut lists: Vec<&mut Vec<Value>> = results_objects(v)
                .into_iter()
                .filter_map(|r| r.get_mut("list-corrupt-shares"))
                .filter_map(Value::as_array_mut)
                .filter(|l| !l.is_empty())
                .collect();
            lists.sort_by_key(|l| std::cmp::Reverse(l.len()));
            match lists.first_mut() {
                Some(l) => {
                    let keep = l.len() / 2;
                    l.truncate(keep);
                    true
                }
                None => false,
            }
        }),
        ("path-names", |v| shorten_names(v, 64)),
        ("path-names", |v| shorten_names(v, 16)),
        ("path-depth", |v| {
            let Some(path) = v.get_mut("path").and_then(Value::as_array_mut) else {
                return false;
            };
            if path.len() < 3 {
                return false;
            }
            // Replace the middle component by `…`, then take components on
            // either side of it, keeping the first and the last.
            // An eighth of what can go at a time: few re-measurements
            // even for a path thousands of components deep.
            let Some(i) = path.iter().position(|c| c == "…") else {
                let mid = path.len() / 2;
                path[mid] = Value::String("…".into());
                return true;
            };
            let after = path.len() - i - 2; // keeping the last component
            let before = i - 1; // keeping the first
            if after == 0 && before == 0 {
                return false;
            }
            let n = (after + before).div_ceil(8).max(1);
            if after >= before {
                path.drain(i + 1..i + 1 + n.min(after));
            } else {
                path.drain(i - n.min(before)..i);
            }
            true
        }),
    ];
    for (name, step) in steps {
        loop {
            if len(&v) + trimmed_note_len(&trimmed, name) <= MAX_LINE {
                break;
            }
            if !step(&mut v) {
                break;
            }
            if !trimmed.contains(&name) {
                trimmed.push(name);
            }
            // Only the repeating steps go round again.
            if !matches!(name, "list-corrupt-shares" | "path-depth") {
                break;
            }
        }
    }
    if !trimmed.is_empty() {
        if let Some(o) = v.as_object_mut() {
            o.insert("steward-trimmed".into(), json!(trimmed));
        }
    }
    to_ascii_json(&v)
}

/// Room the `"steward-trimmed"` note will take once `next` is in it.
fn trimmed_note_len(trimmed: &[&str], next: &str) -> usize {
    let mut names: Vec<&str> = trimmed.to_vec();
    if !names.contains(&next) {
        names.push(next);
    }
    // `, "steward-trimmed": ["a", "b"]`
    23 + names.iter().map(|n| n.len() + 4).sum::<usize>()
}

fn shorten_names(v: &mut Value, keep: usize) -> bool {
    let Some(path) = v.get_mut("path").and_then(Value::as_array_mut) else {
        return false;
    };
    let mut changed = false;
    for c in path.iter_mut() {
        if let Value::String(s) = c {
            let short = cut_middle(s, keep);
            if short != *s {
                *s = short;
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::UnitError;

    fn unit(path: Vec<String>) -> ObjectUnit {
        ObjectUnit {
            path,
            cap: "URI:CHK:aaaa:bbbb:2:5:100".into(),
            object_type: ObjectType::File,
            verifycap: "URI:CHK-Verifier:cccc:bbbb:2:5:100".into(),
            repaircap: "URI:CHK-Verifier:cccc:bbbb:2:5:100".into(),
            storage_index: "cccc".into(),
            error: None,
            check_results: None,
            check_and_repair_results: None,
            repair: None,
            literal: false,
            built_from: Default::default(),
        }
    }

    fn server(i: usize) -> String {
        format!("v0-{:052}", i)
    }

    /// Check results from a grid of `servers` servers with a share on
    /// each, `corrupt` of them corrupt.
    fn big_results(servers: usize, corrupt: usize, healthy: bool) -> Value {
        let sharemap: Map<String, Value> = (0..servers)
            .map(|i| (i.to_string(), json!([server(i)])))
            .collect();
        json!({
            "storage-index": "cccc",
            "summary": "Not Healthy: ".to_string() + &"x".repeat(1000),
            "results": {
                "count-happiness": servers,
                "count-shares-good": servers - corrupt,
                "count-corrupt-shares": corrupt,
                "list-corrupt-shares": (0..corrupt).map(|i| json!([server(i), "cccc", i])).collect::<Vec<_>>(),
                "servers-responding": (0..servers).map(server).collect::<Vec<_>>(),
                "sharemap": sharemap,
                "healthy": healthy,
                "recoverable": true,
            }
        })
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_unit_too_long_for_the_stock_cli_is_trimmed_and_says_so() {
        // 300 servers: the per-server maps alone are about 40 KB; with
        // repair, pre- and post-repair results hold them twice.
        let mut u = unit(vec!["docs".into(), "é".repeat(3000)]);
        u.check_results = Some(CheckResults::from_json(big_results(300, 120, false)).unwrap());
        u.check_and_repair_results = Some(
            RepairResults::from_json(json!({
                "storage-index": "cccc",
                "repair-attempted": true,
                "repair-successful": false,
                "pre-repair-results": big_results(300, 120, false),
                "post-repair-results": big_results(300, 120, false),
            }))
            .unwrap(),
        );
        u.repair = Some(crate::unit::RepairNote::new(
            RepairAction::Repaired,
            "r".repeat(5000),
        ));
        let whole = Unit::Object(Box::new(u.clone())).to_line();
        assert!(
            whole.len() > 100_000,
            "the test unit is long: {}",
            whole.len()
        );
        let line = Shaper::DeepCheckAndRepair.line(Unit::Object(Box::new(u)));
        assert!(line.len() <= MAX_LINE, "{}", line.len());
        assert!(line.is_ascii() && !line.contains('\n'));
        let v = parse(&line);
        // What the stock CLI reads is all there.
        let crr = &v["check-and-repair-results"];
        assert_eq!(crr["repair-attempted"], true);
        assert_eq!(crr["repair-successful"], false);
        assert_eq!(crr["pre-repair-results"]["results"]["healthy"], false);
        assert_eq!(crr["post-repair-results"]["results"]["healthy"], false);
        assert!(crr["pre-repair-results"]["results"]["list-corrupt-shares"].is_array());
        assert_eq!(
            crr["pre-repair-results"]["results"]["count-corrupt-shares"],
            120
        );
        assert_eq!(v["storage-index"], "cccc");
        assert_eq!(v["cap"], "URI:CHK:aaaa:bbbb:2:5:100");
        assert!(v.get("check-results").is_none(), "replaced, as Tahoe does");
        let path = v["path"].as_array().unwrap();
        assert_eq!(path[0], "docs");
        assert!(path[1].as_str().unwrap().contains('…'));
        let trimmed: Vec<&str> = v["steward-trimmed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(trimmed.contains(&"per-server-maps"), "{trimmed:?}");
        assert!(trimmed.contains(&"path-names"), "{trimmed:?}");
    }

    #[test]
    fn a_deep_path_keeps_its_ends() {
        let path: Vec<String> = (0..2000).map(|i| format!("d{i}")).collect();
        let line = Shaper::Manifest.line(Unit::Object(Box::new(unit(path))));
        assert!(line.len() <= MAX_LINE, "{}", line.len());
        let v = parse(&line);
        let p = v["path"].as_array().unwrap();
        assert_eq!(p[0], "d0");
        assert_eq!(p[p.len() - 1], "d1999");
        assert!(p.iter().any(|c| c == "…"));
        assert_eq!(v["steward-trimmed"], json!(["path-depth"]));
    }

    #[test]
    fn short_units_are_untouched_and_failed_checks_are_not_healthy() {
        let u = unit(vec!["a".into()]);
        let line = Shaper::Manifest.line(Unit::Object(Box::new(u.clone())));
        assert_eq!(line, Unit::Object(Box::new(u.clone())).to_line());
        let mut lost = u.clone();
        lost.error = Some(UnitError {
            code: "unrecoverable".into(),
            message: "not enough shares".into(),
        });
        let v = parse(&Shaper::DeepCheck.line(Unit::Object(Box::new(lost.clone()))));
        assert_eq!(v["check-results"]["results"]["healthy"], false);
        assert_eq!(v["check-results"]["results"]["recoverable"], false);
        assert_eq!(v["error"]["code"], "unrecoverable");
        let v = parse(&Shaper::DeepCheckAndRepair.line(Unit::Object(Box::new(lost))));
        let crr = &v["check-and-repair-results"];
        assert_eq!(crr["repair-attempted"], false);
        assert_eq!(crr["post-repair-results"]["results"]["healthy"], false);
        let mut failed = u;
        failed.error = Some(UnitError {
            code: "gateway-http-5xx".into(),
            message: "500".into(),
        });
        let v = parse(&Shaper::DeepCheck.line(Unit::Object(Box::new(failed))));
        assert_eq!(v["check-results"]["results"]["healthy"], false);
        assert!(v["check-results"]["results"].get("recoverable").is_none());
        // A LIT object in a repair stream: Tahoe's LIT form.
        let mut lit = unit(vec!["lit".into()]);
        lit.storage_index.clear();
        lit.check_results = Some(lit_results());
        let v = parse(&Shaper::DeepCheckAndRepair.line(Unit::Object(Box::new(lit))));
        assert_eq!(
            v["check-and-repair-results"],
            json!({"storage-index": "", "repair-attempted": false})
        );
    }
}
