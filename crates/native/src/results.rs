//! Tahoe's check-results JSON (`web/check_results.py`:
//! `json_check_results` + `json_check_counts`), computed from what the
//! storage servers said, with the counting rules of Tahoe's immutable
//! checker (`immutable/checker.py`, `_format_results`) and mutable checker
//! (`mutable/checker.py`, `_make_checker_results`, over a `ServerMap`).

use crate::mutable::Version;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The size of a maximum matching between share ids and the servers holding
/// them (`happinessutil.servers_of_happiness`). `holders[i]` lists the
/// servers (by index) holding share id `i`.
pub fn happiness(holders: &[Vec<usize>]) -> usize {
    fn augment(
        share: usize,
        holders: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut Vec<Option<usize>>,
    ) -> bool {
        for &srv in &holders[share] {
            if srv >= seen.len() || seen[srv] {
                continue;
            }
            seen[srv] = true;
            if owner[srv].is_none_or(|other| augment(other, holders, seen, owner)) {
                owner[srv] = Some(share);
                return true;
            }
        }
        false
    }
    let servers = holders.iter().flatten().map(|s| s + 1).max().unwrap_or(0);
    let mut owner: Vec<Option<usize>> = vec![None; servers];
    let mut matched = 0;
    for share in 0..holders.len() {
        let mut seen = vec![false; servers];
        if augment(share, holders, &mut seen, &mut owner) {
            matched += 1;
        }
    }
    matched
}

/// The happiness of a sharemap keyed by anything, valued by server ids.
fn happiness_of<K>(sharemap: &BTreeMap<K, BTreeSet<String>>) -> usize {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let holders: Vec<Vec<usize>> = sharemap
        .values()
        .map(|servers| {
            servers
                .iter()
                .map(|s| {
                    let n = index.len();
                    *index.entry(s.as_str()).or_insert(n)
                })
                .collect()
        })
        .collect();
    happiness(&holders)
}

/// A share a verify found corrupt: Tahoe's locator (server, storage
/// index, share number).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CorruptShare {
    /// The server's id as Tahoe writes it (`get_longname`).
    pub server: String,
    /// The storage index, base32.
    pub si: String,
    pub shnum: u32,
}

impl CorruptShare {
    /// Tahoe's `server.get_name()`: the first 8 characters of the id after
    /// its `v0-` prefix.
    pub fn short_server_name(&self) -> String {
        let id = self.server.strip_prefix("v0-").unwrap_or(&self.server);
        id.chars().take(8).collect()
    }
}

/// Everything but the storage index, summary, healthy and recoverable.
#[allow(clippy::too_many_arguments)]
fn counts(
    happiness: usize,
    good: usize,
    needed: u64,
    expected: u64,
    good_hosts: usize,
    responding: &[String],
    sharemap: Map<String, Value>,
    wrong: usize,
    recoverable_versions: usize,
    unrecoverable_versions: usize,
    corrupt: &[CorruptShare],
) -> Map<String, Value> {
    let corrupt_list: Vec<Value> = corrupt
        .iter()
        .map(|c| json!([c.server, c.si, c.shnum]))
        .collect();
    let v = json!({
        "count-happiness": happiness,
        "count-shares-good": good,
        "count-shares-needed": needed,
        "count-shares-expected": expected,
        "count-good-share-hosts": good_hosts,
        // Only a verify reads share data and finds corrupt shares.
        "count-corrupt-shares": corrupt.len(),
        "list-corrupt-shares": corrupt_list,
        "servers-responding": responding,
        "sharemap": sharemap,
        "count-wrong-shares": wrong,
        "count-recoverable-versions": recoverable_versions,
        "count-unrecoverable-versions": unrecoverable_versions,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn finish(
    si: &str,
    summary: String,
    mut results: Map<String, Value>,
    healthy: bool,
    recoverable: bool,
) -> Value {
    results.insert("healthy".into(), Value::Bool(healthy));
    results.insert("recoverable".into(), Value::Bool(recoverable));
    json!({
        "storage-index": si,
        "summary": summary,
        "results": results,
    })
}

/// What one server answered for one object.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The server's id as Tahoe writes it.
    pub server: String,
    /// Share numbers it holds (good ones, for mutable objects).
    pub shares: BTreeSet<u32>,
}

/// The results of an immutable (CHK) check: `responding` lists the servers
/// that answered (in the order to report them), `listings` those of them
/// that hold shares (with verify: the shares verified good), `corrupt` the
/// shares a verify found corrupt.
pub fn immutable(
    si: &str,
    k: u16,
    n: u16,
    responding: &[String],
    listings: &[Listing],
    corrupt: &[CorruptShare],
) -> Value {
    let mut sharemap: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for l in listings {
        for &sh in &l.shares {
            sharemap.entry(sh).or_default().insert(l.server.clone());
        }
    }
    let good_hosts = listings.iter().filter(|l| !l.shares.is_empty()).count();
    let good = sharemap.len();
    let (healthy, summary) = if good == n as usize {
        (true, "Healthy".to_string())
    } else {
        (
            false,
            format!("Not Healthy: {good} shares (enc {k}-of-{n})"),
        )
    };
    let recoverable = good >= k as usize;
    let json_map: Map<String, Value> = sharemap
        .iter()
        .map(|(sh, servers)| (sh.to_string(), json!(servers)))
        .collect();
    let results = counts(
        happiness_of(&sharemap),
        good,
        k as u64,
        n as u64,
        good_hosts,
        responding,
        json_map,
        0,
        usize::from(recoverable),
        usize::from(!recoverable),
        corrupt,
    );
    finish(si, summary, results, healthy, recoverable)
}

/// One good (validly signed) mutable share.
#[derive(Clone, Debug)]
pub struct MutableShare {
    pub server: String,
    pub shnum: u32,
    pub version: Version,
}

/// The results of a mutable (SDMF/MDMF) check over the good shares found
/// (with verify: without those it found corrupt, listed in `corrupt`, and
/// named in the summary as Tahoe's mutable checker names them).
pub fn mutable(
    si: &str,
    responding: &[String],
    shares: &[MutableShare],
    corrupt: &[CorruptShare],
) -> Value {
    // versionmap: version -> (shnum, server)
    let mut vmap: BTreeMap<&Version, BTreeSet<(u32, &str)>> = BTreeMap::new();
    for s in shares {
        vmap.entry(&s.version)
            .or_default()
            .insert((s.shnum, s.server.as_str()));
    }
    let distinct = |v: &Version| -> usize {
        vmap[v]
            .iter()
            .map(|(sh, _)| *sh)
            .collect::<BTreeSet<_>>()
            .len()
    };
    let recoverable: Vec<&Version> = vmap
        .keys()
        .copied()
        .filter(|v| distinct(v) >= v.k as usize)
        .collect();
    let unrecoverable: Vec<&Version> = vmap
        .keys()
        .copied()
        .filter(|v| distinct(v) < v.k as usize)
        .collect();

    let mut healthy = true;
    let mut summary: Vec<String> = Vec::new();
    if !unrecoverable.is_empty() {
        healthy = false;
        summary.push("some versions are unrecoverable".into());
    }
    if recoverable.is_empty() {
        healthy = false;
        summary.push("no versions are recoverable".into());
    }
    if recoverable.len() > 1 {
        healthy = false;
        summary.push("multiple versions are recoverable".into());
    }

    // (good, needed, expected, good hosts, wrong)
    let count_version = |v: &Version| {
        let good = distinct(v);
        let hosts: BTreeSet<&str> = vmap[v].iter().map(|(_, s)| *s).collect();
        let wrong: usize = vmap
            .iter()
            .filter(|(other, _)| **other != v)
            .map(|(_, s)| s.len())
            .sum();
        (good, v.k as u64, v.n as u64, hosts.len(), wrong)
    };
    let counters = if let Some(best) = recoverable.iter().max() {
        let c = count_version(best);
        let (s, k, n) = (c.0, c.1, c.2);
        if (s as u64) < n {
            healthy = false;
            summary.push(format!("{s} shares (enc {k}-of-{n})"));
        }
        c
    } else if let Some(first) = unrecoverable.iter().max() {
        // Tahoe takes an arbitrary one ("list(unrecoverable)[0]"); the
        // newest is as good and deterministic.
        count_version(first)
    } else {
        // Tahoe's arbitrary defaults when nothing was found at all.
        (0, 3, 10, 0, 0)
    };

    if !corrupt.is_empty() {
        summary.push("Corrupt Shares:".into());
        for c in corrupt {
            summary.push(format!("{}-sh{}", c.short_server_name(), c.shnum));
        }
    }
    let mut sharemap: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (v, set) in &vmap {
        for (sh, server) in set {
            sharemap
                .entry(format!("{}-sh{sh}", v.summary()))
                .or_default()
                .insert(server.to_string());
        }
    }
    let summary = if healthy {
        "Healthy".to_string()
    } else {
        format!("Unhealthy: {}", summary.join(" "))
    };
    let json_map: Map<String, Value> = sharemap
        .iter()
        .map(|(k, servers)| (k.clone(), json!(servers)))
        .collect();
    let results = counts(
        happiness_of(&sharemap),
        counters.0,
        counters.1,
        counters.2,
        counters.3,
        responding,
        json_map,
        counters.4,
        recoverable.len(),
        unrecoverable.len(),
        corrupt,
    );
    finish(si, summary, results, healthy, !recoverable.is_empty())
}

/// What Tahoe's web API answers for a literal cap (no shares anywhere).
pub fn literal() -> Value {
    json!({"storage-index": "", "results": {"healthy": true}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happiness_is_a_maximum_matching() {
        // The example of happinessutil's docstring: 5.
        // server 1: shares 1,2,3,4; server 2: 6; server 3: 3; server 4: 4; server 5: 2
        let holders = vec![
            vec![1],    // share 1
            vec![1, 5], // share 2
            vec![1, 3], // share 3
            vec![1, 4], // share 4
            vec![2],    // share 6
        ];
        assert_eq!(happiness(&holders), 5);
        assert_eq!(happiness(&[vec![0], vec![0], vec![0]]), 1);
        assert_eq!(happiness(&[]), 0);
        assert_eq!(happiness(&[vec![0, 1], vec![0]]), 2);
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("v0-{i}")).collect()
    }

    #[test]
    fn immutable_counts() {
        let servers = ids(3);
        let listings = vec![
            Listing {
                server: servers[0].clone(),
                shares: [0, 1].into(),
            },
            Listing {
                server: servers[1].clone(),
                shares: [1].into(),
            },
            Listing {
                server: servers[2].clone(),
                shares: BTreeSet::new(),
            },
        ];
        let v = immutable("si", 2, 5, &servers, &listings, &[]);
        let r = &v["results"];
        assert_eq!(v["summary"], "Not Healthy: 2 shares (enc 2-of-5)");
        assert_eq!(r["count-shares-good"], 2);
        assert_eq!(r["count-good-share-hosts"], 2);
        assert_eq!(r["count-happiness"], 2);
        assert_eq!(r["sharemap"]["1"], json!(["v0-0", "v0-1"]));
        assert_eq!(r["healthy"], false);
        assert_eq!(r["recoverable"], true);
        assert_eq!(r["count-recoverable-versions"], 1);
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "count-happiness");
        assert_eq!(keys.last().unwrap().as_str(), "recoverable");
    }

    fn version(seq: u64, k: u8, n: u8) -> Version {
        Version {
            seqnum: seq,
            root_hash: [seq as u8; 32],
            salt: None,
            segsize: 1,
            datalen: 1,
            k,
            n,
            prefix: vec![],
            offsets: vec![],
        }
    }

    #[test]
    fn mutable_counts() {
        let servers = ids(2);
        let v1 = version(1, 2, 3);
        let v2 = version(2, 2, 3);
        let share = |s: usize, sh: u32, v: &Version| MutableShare {
            server: servers[s].clone(),
            shnum: sh,
            version: v.clone(),
        };
        // v2 recoverable with 2 of 3, v1 unrecoverable with 1.
        let shares = vec![share(0, 0, &v2), share(1, 1, &v2), share(1, 2, &v1)];
        let v = mutable("si", &servers, &shares, &[]);
        assert_eq!(
            v["summary"],
            "Unhealthy: some versions are unrecoverable 2 shares (enc 2-of-3)"
        );
        let r = &v["results"];
        assert_eq!(r["count-shares-good"], 2);
        assert_eq!(r["count-wrong-shares"], 1);
        assert_eq!(r["count-recoverable-versions"], 1);
        assert_eq!(r["count-unrecoverable-versions"], 1);
        assert_eq!(r["count-happiness"], 2);
        assert_eq!(r["recoverable"], true);
        let key = format!("{}-sh2", v1.summary());
        assert_eq!(r["sharemap"][key.as_str()], json!(["v0-1"]));

        // With a verify's corrupt shares: listed, and named in the summary
        // by Tahoe's short server name.
        let bad = CorruptShare {
            server: "v0-abcdefghijklm".into(),
            si: "si".into(),
            shnum: 3,
        };
        let v = mutable("si", &servers, &shares, std::slice::from_ref(&bad));
        assert_eq!(
            v["summary"],
            "Unhealthy: some versions are unrecoverable 2 shares (enc 2-of-3) Corrupt Shares: abcdefgh-sh3"
        );
        assert_eq!(v["results"]["count-corrupt-shares"], 1);
        assert_eq!(
            v["results"]["list-corrupt-shares"],
            json!([["v0-abcdefghijklm", "si", 3]])
        );

        let v = mutable("si", &servers, &[], &[]);
        assert_eq!(v["summary"], "Unhealthy: no versions are recoverable");
        assert_eq!(v["results"]["count-shares-needed"], 3);
        assert_eq!(v["results"]["count-shares-expected"], 10);
    }
}
