//! `steward dispatch` (issue 11): many accounts under one budget, on the
//! real grid, through a proxy that slows the gateway down and logs every
//! request (to count the checks of shared objects).

use crate::common::*;
use crate::proxy::Proxy;
use crate::resume::big_tree;
use rand::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use steward::unit::ObjectUnit;

/// The storage indexes of the plain checks (not repairs) the proxy saw,
/// with how often each was checked.
pub(crate) fn checks_by_si(log: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in log {
        let Some(rest) = l.strip_prefix("POST /uri/") else {
            continue;
        };
        let Some((cap, query)) = rest.split_once('?') else {
            continue;
        };
        if !query.contains("t=check") || query.contains("repair=true") {
            continue;
        }
        let cap = steward_cap::Cap::parse(cap).expect("a cap in a check request");
        let si = cap.storage_index().expect("a checked object has one");
        *m.entry(si.to_string()).or_insert(0) += 1;
    }
    m
}

/// `steward dispatch status --state DIR --json`, parsed.
fn status_json(state: &Path) -> Value {
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["dispatch", "status", "--json", "--state"])
            .arg(state);
        c
    });
    assert_eq!(code, 0, "status works: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json ({e}): {out}"))
}

pub(crate) fn account<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

/// Object units of one account's stage file, checking each object occurs
/// once (by storage index, or path for literals) and the file ends whole.
fn once(state: &Path, account: &str, stage: &str) -> Vec<ObjectUnit> {
    let p = state.join(account).join(format!("{stage}.ndjson"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(text.is_empty() || text.ends_with('\n'), "no partial line");
    let us = units(&text);
    stats(&us);
    let os = objects(&us);
    let mut seen = BTreeMap::new();
    for o in &os {
        let key = if o.storage_index.is_empty() {
            o.path.join("/")
        } else {
            o.storage_index.clone()
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{account} {stage}: written twice: {twice:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} is private", p.display());
    os
}

fn reused_from(o: &ObjectUnit) -> Option<String> {
    o.check_results
        .as_ref()
        .and_then(|c| c.json().get("reused-from"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// A root for each of `who`, with a file of its own and `common` linked.
fn roots_sharing(g: &steward_testgrid::Grid, t: &str, common: &str, who: [&str; 2]) -> Vec<String> {
    who.iter()
        .map(|who| {
            let root = g.mkdir().unwrap();
            let own = g
                .upload(
                    format!("{t} own {who} {}", "o".repeat(1000)).as_bytes(),
                    "CHK",
                )
                .unwrap();
            g.link(&root, "own", &own).unwrap();
            g.link(&root, "common", common).unwrap();
            root
        })
        .collect()
}

/// Seven good and bad accounts (two sharing a subtree, a malformed root
/// cap, an unknown alias, a gateway that is down): the good ones
/// complete with the tree's known damage, the bad ones fail alone, the
/// shared objects are checked once, `status` is right while it runs and
/// after, and a second dispatch on the same state is refused.
#[test]
fn accounts_run_under_one_budget_and_bad_ones_fail_alone() {
    let g = grid();
    let proxy = Proxy::start(&g.gateway_url());
    let healthy = build_tree(g, "dispatch-healthy");
    let damaged = build_damaged_tree(g, "dispatch-damaged");
    // A subtree two accounts share, each with a file of its own.
    let t = tag("dispatch-shared");
    let common = g.mkdir().unwrap();
    let mut common_sis = BTreeSet::new();
    common_sis.insert(
        steward_cap::Cap::parse(&common)
            .unwrap()
            .storage_index()
            .unwrap()
            .to_string(),
    );
    for i in 0..4 {
        let c = g
            .upload(
                format!("{t} common {i} {}", "c".repeat(1000)).as_bytes(),
                "CHK",
            )
            .unwrap();
        common_sis.insert(
            steward_cap::Cap::parse(&c)
                .unwrap()
                .storage_index()
                .unwrap()
                .to_string(),
        );
        g.link(&common, &format!("f{i}"), &c).unwrap();
    }
    let share_roots = roots_sharing(g, &t, &common, ["s1", "s2"]);
    let down = format!("http://127.0.0.1:{}/", steward_testgrid::free_port());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let accounts = write(
        dir.path(),
        "ACCOUNTS.toml",
        &format!(
            r#"
gateway = "{gw}"

[[account]]
name = "healthy"
root = "{healthy}"
repair = false

[[account]]
name = "damaged"
root = "{damaged}"

[[account]]
name = "share1"
root = "{s1}"
weight = 2

[[account]]
name = "share2"
root = "{s2}"

[[account]]
name = "badcap"
root = "URI:DIR2:notacap"

[[account]]
name = "noalias"
root = "nosuch:some/dir"

[[account]]
name = "downgw"
root = "{healthy}"
gateway = "{down}"
"#,
            gw = proxy.url,
            healthy = healthy.root,
            damaged = damaged.root,
            s1 = share_roots[0],
            s2 = share_roots[1],
        ),
    );
    // Slow enough to be seen running.
    proxy.delay(40);
    proxy.reset_peak();
    let metrics_port = steward_testgrid::free_port();
    let child = steward()
        .args(["dispatch", &accounts, "--state"])
        .arg(&state)
        .args([
            "-j",
            "4",
            "--per-gateway",
            "2",
            "--retries",
            "1",
            "--timeout",
            "30",
        ])
        .args(["--metrics-listen", &metrics_port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs: status shows an account at a stage, held by the run.
    let t0 = Instant::now();
    let mut seen_running = None;
    while t0.elapsed() < Duration::from_secs(120) {
        if state.join("state.sqlite").exists() {
            let s = status_json(&state);
            if let Some(a) = s["accounts"].as_array().unwrap().iter().find(|a| {
                ["manifest", "check", "repair"].contains(&a["stage"].as_str().unwrap())
                    && a["worker"].is_string()
            }) {
                seen_running = Some(a.clone());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = seen_running.expect("status showed an account at work while dispatch ran");
    // Metrics while it runs (a port alone: on loopback), per account and in
    // total.
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .and_then(|r| r.text())
        .expect("metrics served while dispatch runs");
    for want in [
        "steward_dispatch_objects_checked{account=\"healthy\"}",
        "steward_dispatch_objects_checked_all",
        "steward_dispatch_unrecoverable{account=\"damaged\"}",
        "steward_dispatch_accounts{stage=",
    ] {
        assert!(metrics.contains(want), "{want} in {metrics}");
    }
    // A second dispatch on the same state is refused, naming the first.
    let (code, _, err) = run({
        let mut c = steward();
        c.args(["dispatch", &accounts, "--state"]).arg(&state);
        c
    });
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in use by another steward dispatch"), "{err}");
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}\n{stderr}\nseen running: {running}");
    assert_eq!(out.status.code(), Some(2), "an account could not run");
    // Four accounts on one gateway: its cap holds across all of them.
    let peak = proxy.peak_in_flight();
    assert!(
        (1..=2).contains(&peak),
        "--per-gateway 2 over every account: {peak} at once"
    );
    for name in [
        "healthy", "damaged", "share1", "share2", "badcap", "noalias", "downgw",
    ] {
        assert!(stdout.contains(name), "the table names {name}: {stdout}");
    }
    assert!(
        !stderr.contains("notacap") && !stdout.contains(&healthy.root[10..]),
        "no cap printed"
    );

    // After: every good account done, the bad ones failed with a reason.
    let s = status_json(&state);
    for name in ["healthy", "damaged", "share1", "share2"] {
        assert_eq!(account(&s, name)["stage"], "done", "{name}: {s}");
        assert!(account(&s, name)["worker"].is_null());
        assert!(account(&s, name)["last_completed"].is_u64());
    }
    for (name, why) in [
        ("badcap", "root"),
        ("noalias", "unknown alias"),
        ("downgw", "127.0.0.1"),
    ] {
        let a = account(&s, name);
        assert_eq!(a["stage"], "failed", "{name}: {s}");
        let e = a["last_error"].as_str().unwrap();
        assert!(e.contains(why), "{name}: {e}");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["accounts"].as_array().unwrap().len(), 7);

    // The healthy account: every object once, all healthy.
    let h = once(&state, "healthy", "check");
    assert_eq!(h.len(), healthy.caps.len(), "every object of the tree");
    assert!(
        health(&h).values().all(|v| *v == Some(true)),
        "{:?}",
        health(&h)
    );
    once(&state, "healthy", "manifest");
    // The damaged account: the tree's known damage, repaired where it can.
    let d = by_path(&once(&state, "damaged", "repair"));
    once(&state, "damaged", "check");
    once(&state, "damaged", "manifest");
    let dr = &account(&s, "damaged")["report"];
    assert_eq!(dr["unrecoverable"], 2, "a/chk1 and broken: {dr}");
    assert!(
        dr["repairs_successful"].as_u64().unwrap() >= 2,
        "a/chk0, sdmf: {dr}"
    );
    for p in ["a/chk0", "sdmf"] {
        let u = &d[p];
        assert_eq!(
            u.check_and_repair_results
                .as_ref()
                .and_then(|r| r.json().pointer("/post-repair-results/results/healthy"))
                .and_then(|v| v.as_bool()),
            Some(true),
            "{p} repaired"
        );
    }

    // The shared objects were checked once, and the other account's units
    // say whose check they reuse.
    let checks = checks_by_si(&proxy.log());
    let twice: Vec<_> = checks.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "objects checked more than once: {twice:?}"
    );
    for si in &common_sis {
        assert_eq!(checks.get(si), Some(&1), "shared {si} checked once");
    }
    let s1 = once(&state, "share1", "repair");
    let s2 = once(&state, "share2", "repair");
    assert_eq!(s1.len(), 7);
    assert_eq!(s2.len(), 7);
    let mut reused = 0;
    for (mine, other) in [(&s1, "share2"), (&s2, "share1")] {
        for o in mine.iter() {
            if let Some(from) = reused_from(o) {
                assert_eq!(from, other);
                assert!(
                    common_sis.contains(&o.storage_index),
                    "only shared objects: {:?}",
                    o.path
                );
                reused += 1;
            }
        }
    }
    assert_eq!(
        reused,
        common_sis.len(),
        "each shared object checked by one, reused by the other"
    );
    let total_reused = account(&s, "share1")["report"]["reused"].as_u64().unwrap()
        + account(&s, "share2")["report"]["reused"].as_u64().unwrap();
    assert_eq!(total_reused, common_sis.len() as u64);

    // A file of the damaged account alone, on the same state: it runs
    // again (a new round), and unrecoverable objects remain: exit 1.
    let only_damaged = write(
        dir.path(),
        "DAMAGED.toml",
        &format!(
            "gateway = \"{}\"\n[[account]]\nname = \"damaged\"\nroot = \"{}\"\n",
            proxy.url, damaged.root
        ),
    );
    let before = account(&s, "damaged")["round"].as_u64().unwrap();
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["dispatch", &only_damaged, "--state"]).arg(&state);
        c
    });
    assert_eq!(code, 1, "findings remain: {out}{err}");
    let s = status_json(&state);
    assert!(account(&s, "damaged")["round"].as_u64().unwrap() > before);
    assert_eq!(account(&s, "badcap")["stage"], "failed", "left alone");
}

/// The storage index of a cap.
fn si_of(cap: &str) -> String {
    steward_cap::Cap::parse(cap)
        .unwrap()
        .storage_index()
        .unwrap()
        .to_string()
}

/// With almost no memory for check answers (each leaves it at once, for
/// the state store), the objects two accounts share are still checked
/// once in the round: the second account, run after the first, reuses the
/// answers kept on disk, marked with the account that checked them. (The
/// cache kept answers in memory alone: each shared object was checked
/// twice.)
#[test]
fn shared_objects_are_checked_once_whatever_memory_forgets() {
    let g = grid();
    let proxy = Proxy::start(&g.gateway_url());
    let (common, caps) = big_tree("dispatch-forget", 1, 2, 8);
    let common_sis: BTreeSet<String> = caps.values().map(|c| si_of(c)).collect();
    let roots = roots_sharing(g, &tag("dispatch-forget-own"), &common, ["f1", "f2"]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let accounts = write(
        dir.path(),
        "ACCOUNTS.toml",
        &format!(
            "gateway = \"{}\"\nrepair = false\n[[account]]\nname = \"forget1\"\nroot = \"{}\"\n[[account]]\nname = \"forget2\"\nroot = \"{}\"\n",
            proxy.url, roots[0], roots[1]
        ),
    );
    // One account after the other: the second asks for every shared
    // object long after its answer left memory.
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["dispatch", &accounts, "-q", "--accounts-at-once", "1"])
            .args(["--reuse-memory", "1", "--state"])
            .arg(&state);
        c
    });
    assert_eq!(code, 0, "{out}{err}");
    let checks = checks_by_si(&proxy.log());
    for si in &common_sis {
        assert_eq!(checks.get(si), Some(&1), "shared {si} checked once");
    }
    assert_eq!(checks.len(), common_sis.len() + 4, "and the accounts' own");
    let s = status_json(&state);
    let mut reused = 0;
    for (name, other) in [("forget1", "forget2"), ("forget2", "forget1")] {
        let os = once(&state, name, "check");
        assert_eq!(os.len(), common_sis.len() + 2, "{name}: every object");
        for o in &os {
            if let Some(from) = reused_from(o) {
                assert_eq!(from, other);
                assert!(common_sis.contains(&o.storage_index), "{:?}", o.path);
                assert_eq!(
                    health(std::slice::from_ref(o)).values().next(),
                    Some(&Some(true))
                );
                reused += 1;
            }
        }
        assert_eq!(account(&s, name)["stage"], "done");
    }
    assert_eq!(reused, common_sis.len(), "each shared object reused once");
    let total: u64 = ["forget1", "forget2"]
        .iter()
        .map(|n| account(&s, n)["report"]["reused"].as_u64().unwrap())
        .sum();
    assert_eq!(total, common_sis.len() as u64);
    eprintln!(
        "{} objects checked; state file {} bytes",
        checks.len(),
        std::fs::metadata(state.join("state.sqlite")).unwrap().len()
    );
}

/// Kill -9 of dispatch at random moments, then a rerun of the same command:
/// every account completes, each object exactly once in each stage's
/// output; a rerun after that starts a new round.
#[test]
fn dispatch_survives_kill_9_at_random_moments() {
    let g = grid();
    let proxy = Proxy::start(&g.gateway_url());
    let trees: Vec<_> = (0..3)
        .map(|i| big_tree(&format!("dispatch-kill-{i}"), 2, 3, 4))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // Four accounts: three trees, the last shared whole by two accounts.
    let mut text = format!("gateway = \"{}\"\n", proxy.url);
    let names = ["k0", "k1", "k2", "k2b"];
    for (n, t) in names.iter().zip([0, 1, 2, 2]) {
        text.push_str(&format!(
            "[[account]]\nname = \"{n}\"\nroot = \"{}\"\n",
            trees[t].0
        ));
    }
    let accounts = write(dir.path(), "ACCOUNTS.toml", &text);
    let cmd = |state: &Path| {
        let mut c = steward();
        c.args(["dispatch", &accounts, "-q", "-j", "3", "--state"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    proxy.delay(15);
    // A whole run first (elsewhere), to draw the moments within it.
    let t0 = Instant::now();
    let timing = dir.path().join("timing");
    let st = cmd(&timing).status().unwrap();
    assert_eq!(st.code(), Some(0));
    let full = t0.elapsed();
    let state = dir.path().join("state");
    let mut rng = rand::thread_rng();
    for _ in 0..3 {
        let at = full.mul_f64(rng.gen_range(0.1..0.8));
        let mut child = cmd(&state).spawn().unwrap();
        std::thread::sleep(at);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let o = cmd(&state).output().unwrap();
    eprintln!(
        "full run {full:?}; resumed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0));
    let s = status_json(&state);
    for (n, t) in names.iter().zip([0, 1, 2, 2]) {
        assert_eq!(account(&s, n)["stage"], "done", "{s}");
        let want = &trees[t].1;
        for stage in ["manifest", "check", "repair"] {
            let got: BTreeSet<String> = once(&state, n, stage)
                .iter()
                .map(|o| o.path.join("/"))
                .collect();
            let want: BTreeSet<String> = want.keys().cloned().collect();
            assert_eq!(got, want, "{n} {stage}: every object, none twice");
        }
    }
    // The round is over: the same command runs every account again.
    let first = account(&s, "k0")["last_completed"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let o = cmd(&state).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let s = status_json(&state);
    assert!(account(&s, "k0")["last_completed"].as_u64().unwrap() > first);
    // With --max-age, accounts completed within it are not run again.
    let before = status_json(&state);
    let o = cmd(&state)
        .args(["--max-age", "3600", "--rerun", "k1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let after = status_json(&state);
    assert_eq!(
        account(&before, "k0")["last_completed"],
        account(&after, "k0")["last_completed"],
        "not due"
    );
    assert_ne!(
        account(&before, "k1")["last_completed"],
        account(&after, "k1")["last_completed"],
        "forced"
    );
}

/// Request errors by code are in the metrics as they happen, per account
/// and in total, not only once the account's run ends; the end-of-run
/// figures agree with them. (They were read from the final report alone.)
#[test]
fn metrics_count_request_errors_by_code_while_dispatch_runs() {
    let g = grid();
    let proxy = Proxy::start(&g.gateway_url());
    let (root, caps) = big_tree("dispatch-errors", 1, 3, 8);
    let files = caps.values().filter(|c| c.starts_with("URI:CHK:")).count();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let accounts = write(
        dir.path(),
        "ACCOUNTS.toml",
        &format!(
            "gateway = \"{}\"\nrepair = false\n[[account]]\nname = \"errs\"\nroot = \"{root}\"\n",
            proxy.url
        ),
    );
    // Every file's check fails (listings go through); slow, to be seen.
    proxy.fail(500, -1, Some("URI:CHK"));
    proxy.delay(60);
    let port = steward_testgrid::free_port();
    let mut child = steward()
        .args(["dispatch", &accounts, "-q", "-j", "1", "--retries", "0"])
        .args(["--metrics-listen", &port.to_string(), "--state"])
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut seen = None;
    while t0.elapsed() < Duration::from_secs(120) && child.try_wait().unwrap().is_none() {
        if let Ok(text) = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
            .and_then(|r| r.text())
        {
            if text.contains("steward_dispatch_errors_by_code{account=\"errs\",code=") {
                seen = Some(text);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = seen.expect("errors by code in the metrics while dispatch ran");
    // Seen while the account was still at work, in total too.
    assert!(
        !text.contains("steward_dispatch_accounts{stage=\"done\"}"),
        "{text}"
    );
    assert!(
        text.contains("steward_dispatch_errors_by_code_all{code="),
        "{text}"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "failed checks are findings");
    // The end: every file's check failed once, by the same code, in the
    // report and in the row's counts.
    let s = status_json(&state);
    let a = account(&s, "errs");
    let codes = a["report"]["errors_by_code"].as_object().unwrap();
    assert_eq!(codes.len(), 1, "{codes:?}");
    let (code, n) = codes.iter().next().unwrap();
    assert_eq!(n.as_u64(), Some(files as u64), "{a}");
    assert!(text.contains(&format!("code=\"{code}\"")), "{text}");
    assert_eq!(a["counts"]["errors"].as_u64(), Some(files as u64), "{a}");
}
