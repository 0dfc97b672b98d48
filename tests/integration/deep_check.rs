//! `steward deep-check` (issue 3), beside `tahoe deep-check`.

use crate::common::*;

fn tahoe_deep_check(args: &[&str]) -> (i32, String, String) {
    let mut c = grid().tahoe();
    c.arg("deep-check").args(args);
    run(c)
}

#[test]
fn report_matches_tahoe_on_a_healthy_tree() {
    let g = grid();
    let tree = build_tree(g, "dc-healthy");
    let (tcode, tout, _) = tahoe_deep_check(&[&tree.root]);
    assert_eq!(tcode, 0);
    let (code, out, err) = run(stw(&["deep-check", &tree.root]));
    assert_eq!(code, 0, "{err}");
    let done = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("done:"))
            .map(str::to_string)
    };
    assert_eq!(done(&out), done(&tout), "the same closing line as Tahoe's");
    assert_eq!(
        done(&out).unwrap(),
        format!(
            "done: {n} objects checked, {n} healthy, 0 unhealthy",
            n = tree.caps.len()
        )
    );
}

#[test]
fn repair_goes_on_past_unrecoverable_objects() {
    let g = grid();
    let tree = build_damaged_tree(g, "dc-repair");
    let (code, out, err) = run(stw(&["deep-check", "--repair", "--verify", &tree.root]));
    assert_eq!(code, 1, "unrecoverable objects remain: {out} {err}");
    let n = tree.caps.len() - 1; // broken/inner cannot be reached
    assert!(
        out.contains(&format!("done: {n} objects checked\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(" pre-repair: {} healthy, 5 unhealthy", n - 5)),
        "{out}"
    );
    // a/chk2's corrupt share is found by the verify, but Tahoe's repairer
    // cannot replace it: that repair fails and is reported.
    assert!(
        out.contains(" 3 repairs attempted, 2 successful, 1 failed"),
        "{out}"
    );
    assert!(
        out.contains(&format!(" post-repair: {} healthy, 3 unhealthy", n - 3)),
        "{out}"
    );
    assert!(
        out.contains("3 objects are not healthy after repair:"),
        "{out}"
    );
    assert!(
        out.contains("  a/chk1: unrecoverable") && out.contains("  broken: unrecoverable"),
        "{out}"
    );
    assert!(out.contains("  a/chk2: Not Healthy"), "{out}");
    assert!(err.contains("1 directories could not be listed"), "{err}");
    // Tahoe's own deep-check --repair stops at the first unrecoverable object.
    let (_, tout, terr) = tahoe_deep_check(&["--repair", &tree.root]);
    assert!(
        terr.contains("ERROR") && !tout.contains("done:"),
        "Tahoe 1.20 aborts: {tout} {terr}"
    );
    // Afterwards a plain deep-check (no verify) sees only the unrecoverable two.
    let (code, out, _) = run(stw(&["deep-check", &tree.root]));
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "done: {n} objects checked, {} healthy, 2 unhealthy",
            n - 2
        )),
        "{out}"
    );
}

#[test]
fn raw_units_and_output_files() {
    let g = grid();
    let tree = build_tree(g, "dc-raw");
    g.drop_shares(&tree.si("a/chk2"), 1).unwrap();
    let (code, out, _) = run(stw(&["deep-check", "--raw", &tree.root]));
    assert_eq!(code, 1);
    let us = units(&out);
    stats(&us);
    let objs = objects(&us);
    assert_eq!(objs.len(), tree.caps.len());
    assert!(objs.iter().all(|o| o.check_results.is_some()));
    assert_eq!(health(&objs)["a/chk2"], Some(false));
    // With -o: units in the file (0600), the report on stdout.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dc.ndjson");
    let (code, out, err) = run(stw(&["deep-check", &tree.root, "-o", f.to_str().unwrap()]));
    assert_eq!(code, 1, "{err}");
    let n = tree.caps.len();
    assert!(
        out.contains(&format!(
            "done: {n} objects checked, {} healthy, 1 unhealthy",
            n - 1
        )),
        "{out}"
    );
    let fobjs = objects(&read_units(&f));
    assert_eq!(fobjs.len(), tree.caps.len());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Run again: complete, nothing redone, same report.
    let (code2, out2, _) = run(stw(&["deep-check", &tree.root, "-o", f.to_str().unwrap()]));
    assert_eq!(code2, 1);
    assert_eq!(out2, out);
    assert_eq!(objects(&read_units(&f)).len(), tree.caps.len());
}
