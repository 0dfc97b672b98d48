//! `steward repair` (issue 3).

use crate::common::*;

fn action(o: &steward::unit::ObjectUnit) -> String {
    o.repair
        .as_ref()
        .map(|r| r.action.as_str())
        .unwrap_or("")
        .to_string()
}

/// manifest (write caps) -> check, into files in `dir`; returns the check file.
fn checked(tree: &Tree, dir: &std::path::Path, verify: bool) -> String {
    let m = dir.join("m.ndjson");
    let c = dir.join("c.ndjson");
    run(stw(&[
        "manifest",
        "-q",
        "--caps",
        "write",
        &tree.root,
        "-o",
        m.to_str().unwrap(),
    ]));
    let mut args = vec![
        "check",
        "-q",
        m.to_str().unwrap(),
        "-o",
        c.to_str().unwrap(),
    ];
    if verify {
        args.push("--verify");
    }
    run(stw(&args));
    c.to_str().unwrap().to_string()
}

#[test]
fn repair_heals_the_recoverable_and_reports_the_rest() {
    let g = grid();
    let tree = build_damaged_tree(g, "repair-all");
    let dir = tempfile::tempdir().unwrap();
    let c = checked(&tree, dir.path(), true);
    let (code, out, err) = run(stw(&["repair", "-q", &c]));
    assert_eq!(code, 1, "unrecoverable objects remain: {err}");
    let objs = objects(&units(&out));
    let p = by_path(&objs);
    // Healthy objects are not touched (not written without --all).
    assert!(!p.contains_key("lit") && !p.contains_key("a"));
    for path in ["a/chk0", "sdmf"] {
        let o = &p[path];
        assert_eq!(action(o), "repaired", "{path}");
        let crr = o.check_and_repair_results.as_ref().unwrap();
        assert_eq!(crr["repair-attempted"], true, "{path}");
        assert_eq!(crr["repair-successful"], true, "{path}: {crr}");
        assert_eq!(
            crr["post-repair-results"]["results"]["healthy"], true,
            "{path}"
        );
    }
    // Tahoe 1.20 does not replace a corrupt share a server still holds: the
    // repair is attempted, fails, and the unit says what to do.
    let o = &p["a/chk2"];
    let crr = o.check_and_repair_results.as_ref().unwrap();
    assert_eq!(crr["repair-attempted"], true);
    assert_eq!(crr["repair-successful"], false);
    assert!(o
        .repair
        .as_ref()
        .unwrap()
        .reason
        .contains("corrupt shares remain"));
    for path in ["a/chk1", "broken"] {
        assert_eq!(action(&p[path]), "not-repairable", "{path}");
    }
    assert!(
        err.contains("3 repairs attempted, 2 successful, 1 failed; 2 not repairable"),
        "{err}"
    );
    // A fresh check confirms: only the unrecoverable ones are left.
    let (_, fresh, _) = run(stw(&[
        "check",
        "-q",
        "--verify",
        &dir.path().join("m.ndjson").to_string_lossy(),
    ]));
    let h = health(&objects(&units(&fresh)));
    let bad: Vec<&String> = h
        .iter()
        .filter(|(_, v)| **v != Some(true))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(bad, vec!["a/chk1", "a/chk2", "broken"]);
}

#[test]
fn thresholds_dry_run_and_missing_write_caps() {
    let g = grid();
    let tree = build_tree(g, "repair-thresholds");
    g.drop_shares(&tree.si("a/chk0"), 1).unwrap(); // 4 good shares
    g.drop_shares(&tree.si("a/chk1"), 3).unwrap(); // 2 good shares
    g.drop_shares(&tree.si("b/mdmf"), 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = checked(&tree, dir.path(), false);
    // --repair-below 3 --dry-run: only a/chk1 (2 < 3), nothing touched.
    let shares_before = g.shares(&tree.si("a/chk1")).len();
    let (code, out, _) = run(stw(&[
        "repair",
        "-q",
        "--dry-run",
        "--repair-below",
        "3",
        "--happy",
        "1",
        &c,
    ]));
    assert_eq!(code, 1, "a dry run that finds work exits 1");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), 1, "{:?}", by_path(&objs).keys());
    assert_eq!(action(&objs[0]), "would-repair");
    assert_eq!(objs[0].path, vec!["a", "chk1"]);
    assert_eq!(
        g.shares(&tree.si("a/chk1")).len(),
        shares_before,
        "dry run repairs nothing"
    );
    // --all writes the healthy ones too, with why they were skipped.
    let (_, out, _) = run(stw(&[
        "repair",
        "-q",
        "--dry-run",
        "--all",
        "--happy",
        "1",
        &c,
    ]));
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), tree.caps.len());
    assert_eq!(action(&by_path(&objs)["lit"]), "skipped");
    // A read-cap check list: the mutable file cannot be repaired, and says why.
    let rm = dir.path().join("rm.ndjson");
    let rc = dir.path().join("rc.ndjson");
    run(stw(&[
        "manifest",
        "-q",
        &tree.root,
        "-o",
        rm.to_str().unwrap(),
    ]));
    run(stw(&[
        "check",
        "-q",
        rm.to_str().unwrap(),
        "-o",
        rc.to_str().unwrap(),
    ]));
    let (_, out, _) = run(stw(&["repair", "-q", rc.to_str().unwrap()]));
    let p = by_path(&objects(&units(&out)));
    let m = &p["b/mdmf"];
    assert_eq!(action(m), "not-repairable");
    assert!(m.repair.as_ref().unwrap().reason.contains("--caps write"));
    assert_eq!(
        action(&p["a/chk0"]),
        "repaired",
        "immutable files need only the read cap"
    );
}
