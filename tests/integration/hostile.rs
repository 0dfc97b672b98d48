//! Issue 10: steward used as a hostile operator or a careless cron job
//! would use it. Never certify what was not checked (bad caps, inputs cut
//! short, a closed standard output), never write where it should not (a
//! device, a FIFO, a symlink, a file another run is writing), and resume
//! whatever signal stopped a run.

use crate::common::*;
use crate::proxy::Proxy;
use crate::resume::big_tree;
use rand::Rng;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use steward::unit::ObjectUnit;
use steward_cap::{Authority, Cap};

fn code_of(o: &ObjectUnit) -> Option<&str> {
    o.error.as_ref().map(|e| e.code.as_str())
}

fn action(o: &ObjectUnit) -> &str {
    o.repair.as_ref().map(|r| r.action.as_str()).unwrap_or("")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A manifest of `root` (read caps) in `dir/name`; returns its path.
fn manifest_file(root: &str, dir: &Path, name: &str, caps: &str) -> PathBuf {
    let m = dir.join(name);
    let (code, _, err) = run(stw(&["manifest", "-q", "--caps", caps, root, "-o", s(&m)]));
    assert!(code <= 1, "{err}");
    m
}

// ---------------------------------------------------------------------
// Certifying what was never checked
// ---------------------------------------------------------------------

#[test]
fn units_whose_cap_is_not_a_cap_are_bad_cap_never_healthy() {
    let g = grid();
    let tree = build_tree(g, "hostile-badcap");
    let dir = tempfile::tempdir().unwrap();
    let root = tree.cap("");
    // A DIR2 cap with one character cut from its key.
    let colon = root.rfind(':').unwrap();
    let short_dir = format!("{}{}", &root[..colon - 1], &root[colon..]);
    let bad = [
        ("file", "not a cap".to_string()),
        ("file", "URI:CHK:garbage".to_string()),
        ("file", String::new()),
        ("directory", short_dir),
    ];
    let mut text = String::new();
    for (i, (ty, cap)) in bad.iter().enumerate() {
        text.push_str(
            &serde_json::json!({"type": ty, "path": [format!("bad{i}")], "cap": cap}).to_string(),
        );
        text.push('\n');
    }
    // A good cap whose storage-index field names another object.
    let chk = tree.cap("a/chk0");
    text.push_str(
        &serde_json::json!({"type": "file", "path": ["mismatch"], "cap": chk,
            "storage-index": tree.si("a/chk1")})
        .to_string(),
    );
    text.push('\n');
    // And a good LIT unit, which stays healthy.
    text.push_str(
        &serde_json::json!({"type": "file", "path": ["lit"], "cap": tree.cap("lit"),
            "verifycap": "", "repaircap": "", "storage-index": ""})
        .to_string(),
    );
    // The stats unit counts the six objects, as a whole input's does.
    text.push_str(
        "\n{\"type\": \"stats\", \"stats\": {\"count-immutable-files\": 5, \"count-literal-files\": 1}}\n",
    );
    let input = write(dir.path(), "bad.ndjson", &text);
    let (code, out, err) = run(stw(&["check", "-q", &input]));
    assert_eq!(code, 1, "bad caps are findings: {err}");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), bad.len() + 2);
    for o in &objs[..bad.len() + 1] {
        assert_eq!(code_of(o), Some("bad-cap"), "{:?}", o.path);
        assert!(o.check_results.is_none(), "{:?} never healthy", o.path);
    }
    assert_eq!(
        objs[bad.len() + 1].check_results.as_ref().unwrap()["results"]["healthy"],
        true
    );
    assert!(err.contains("could not be checked"), "{err}");

    // Repair: check units that claim a healthy literal object but whose
    // cap is not a cap are reported, not skipped as literal.
    let mut text = String::new();
    for (i, (ty, cap)) in bad.iter().enumerate() {
        text.push_str(
            &serde_json::json!({"type": ty, "path": [format!("bad{i}")], "cap": cap,
                "verifycap": "", "repaircap": "", "storage-index": "",
                "check-results": {"storage-index": "", "results": {"healthy": true}}})
            .to_string(),
        );
        text.push('\n');
    }
    text.push_str(&format!(
        "{{\"type\": \"stats\", \"stats\": {{\"count-immutable-files\": {}}}}}\n",
        bad.len()
    ));
    let input = write(dir.path(), "badcheck.ndjson", &text);
    let (code, out, err) = run(stw(&["repair", "-q", &input]));
    assert_eq!(code, 1, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), bad.len(), "every bad unit is written: {out}");
    for o in &objs {
        assert_eq!(code_of(o), Some("bad-cap"), "{:?}", o.path);
        assert_eq!(action(o), "not-repairable", "{:?}", o.path);
    }
}

#[test]
fn an_input_cut_short_or_empty_is_never_all_healthy() {
    let g = grid();
    let tree = build_tree(g, "hostile-partial");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "m.ndjson", "read");
    let full = std::fs::read_to_string(&m).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    // The output of an interrupted manifest: no stats line.
    let cut = write(
        dir.path(),
        "cut.ndjson",
        &format!("{}\n", lines[..5].join("\n")),
    );
    let (code, out, err) = run(stw(&["check", "-q", &cut]));
    assert_eq!(code, 3, "incomplete: {err}");
    assert!(err.contains(&cut) && err.contains("5 objects"), "{err}");
    assert!(err.contains("--allow-partial"), "{err}");
    assert_eq!(objects(&units(&out)).len(), 5, "what it holds is checked");
    let (code, _, err) = run(stw(&["check", "-q", "--allow-partial", &cut]));
    assert_eq!(code, 0, "{err}");
    // Everything but the stats line.
    let nostats = write(
        dir.path(),
        "nostats.ndjson",
        &format!("{}\n", lines[..lines.len() - 1].join("\n")),
    );
    let (code, _, err) = run(stw(&["check", "-q", &nostats]));
    assert_eq!(code, 3, "{err}");
    // With -o too, and a second run says it again.
    let c = dir.path().join("c.ndjson");
    let (code, _, err) = run(stw(&["check", "-q", &cut, "-o", s(&c)]));
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = run(stw(&["check", "-q", &cut, "-o", s(&c)]));
    assert_eq!(code, 3, "already complete, still incomplete input: {err}");
    // Empty inputs are errors: a file, /dev/null, a closed stdin.
    let empty = write(dir.path(), "empty.ndjson", "");
    let (code, _, err) = run(stw(&["check", "-q", &empty]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty"), "{err}");
    let mut c = stw(&["check", "-q"]);
    c.stdin(Stdio::null());
    let (code, _, err) = run(c);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("standard input") && err.contains("empty"),
        "{err}"
    );
    let mut c = stw(&["check", "-q", "-"]);
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            libc::close(0);
            Ok(())
        });
    }
    let (code, _, err) = run(c);
    assert_eq!(code, 2, "closed stdin: {err}");
    // A plain cap list needs no stats line; checked, it gets one, so that
    // repair can tell it complete.
    let caps = write(
        dir.path(),
        "caps.txt",
        &format!("{}\n{}\n", tree.cap("a/chk0"), tree.cap("lit")),
    );
    let cc = dir.path().join("cc.ndjson");
    let (code, _, err) = run(stw(&["check", "-q", &caps, "-o", s(&cc)]));
    assert_eq!(code, 0, "{err}");
    let us = read_units(&cc);
    assert_eq!(stats(&us)["count-immutable-files"], 1);
    assert_eq!(stats(&us)["count-literal-files"], 1);
    let (code, _, err) = run(stw(&["repair", "-q", s(&cc)]));
    assert_eq!(code, 0, "{err}");
    // Repair reads check units: the same rule.
    let c = dir.path().join("full.ndjson");
    run(stw(&["check", "-q", s(&m), "-o", s(&c)]));
    let checked = std::fs::read_to_string(&c).unwrap();
    let cl: Vec<&str> = checked.lines().collect();
    let cutc = write(
        dir.path(),
        "cutc.ndjson",
        &format!("{}\n", cl[..3].join("\n")),
    );
    let (code, _, err) = run(stw(&["repair", "-q", &cutc]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&cutc) && err.contains("3 objects"), "{err}");
    let (code, _, err) = run(stw(&["repair", "-q", "--allow-partial", &cutc]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(stw(&["repair", "-q", s(&c)]));
    assert_eq!(code, 0, "{err}");
    let empty_in = write(dir.path(), "e2", "\n\n");
    let (code, _, err) = run(stw(&["repair", "-q", &empty_in]));
    assert_eq!(code, 2, "{err}");
}

/// The last lines of a manifest (`tail -n 5 m.ndjson`) end with its stats
/// unit, so `check` took them for a whole input and exited 0 having checked
/// 4 of its objects. A stats unit whose counts disagree with the objects
/// read before it makes the input incomplete, as one without it does.
#[test]
fn an_input_cut_at_its_head_is_incomplete() {
    let g = grid();
    let tree = build_tree(g, "hostile-head");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "m.ndjson", "read");
    let full = std::fs::read_to_string(&m).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    let total = lines.len() - 1;
    assert!(total > 10, "{total} objects");
    let tail = |name: &str, n: usize| {
        write(
            dir.path(),
            name,
            &format!("{}\n", lines[lines.len() - n..].join("\n")),
        )
    };
    let cut = tail("tail.ndjson", 5);
    let (code, out, err) = run(stw(&["check", "-q", &cut]));
    assert_eq!(code, 3, "incomplete: {err}");
    assert!(
        err.contains(&cut)
            && err.contains(&format!("counts {total} objects but 4 were read"))
            && err.contains("incomplete")
            && err.contains("--allow-partial"),
        "{err}"
    );
    assert_eq!(objects(&units(&out)).len(), 4, "what it holds is checked");
    let (code, _, err) = run(stw(&["check", "-q", "--allow-partial", &cut]));
    assert_eq!(code, 0, "{err}");
    // The whole manifest, and two one after the other, are whole.
    let (code, _, err) = run(stw(&["check", "-q", s(&m)]));
    assert_eq!(code, 0, "{err}");
    let twice = write(dir.path(), "twice.ndjson", &format!("{full}{full}"));
    let (code, _, err) = run(stw(&["check", "-q", &twice]));
    assert_eq!(code, 0, "{err}");
    // A line added (here, one written twice): not the stream its stats
    // unit closes.
    let added = write(dir.path(), "added.ndjson", &format!("{}\n{full}", lines[1]));
    let (code, _, err) = run(stw(&["check", "-q", &added]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "counts {total} objects but {} were read",
            total + 1
        )) && err.contains("lines added"),
        "{err}"
    );
    // Tahoe's own stream counts the same way (LIT files, a DIR2-LIT
    // directory, a cycle).
    let tahoe = tahoe_stream(&tree.root, "stream-manifest");
    let t = write(
        dir.path(),
        "tahoe.ndjson",
        &format!("{}\n", tahoe.join("\n")),
    );
    let (code, _, err) = run(stw(&["check", "-q", &t]));
    assert_eq!(code, 0, "Tahoe's manifest is whole: {err}");
    let t = write(
        dir.path(),
        "tahoe-tail.ndjson",
        &format!("{}\n", tahoe[tahoe.len() - 3..].join("\n")),
    );
    let (code, _, err) = run(stw(&["check", "-q", &t]));
    assert_eq!(code, 3, "{err}");
    // Only the stats unit: it counts objects that are not there.
    let only = tail("stats.ndjson", 1);
    let (code, out, err) = run(stw(&["check", "-q", &only]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("counts {total} objects but 0 were read")),
        "{err}"
    );
    assert!(objects(&units(&out)).is_empty());
    // A stats unit that counts nothing, alone: nothing to check, said so.
    let zero = write(
        dir.path(),
        "zero.ndjson",
        "{\"type\": \"stats\", \"stats\": {}}\n",
    );
    let (code, _, err) = run(stw(&["check", "-q", &zero]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("holds no objects"), "{err}");
    // With -o, and its resume: the same.
    let c = dir.path().join("c.ndjson");
    let (code, _, err) = run(stw(&["check", "-q", &cut, "-o", s(&c)]));
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = run(stw(&["check", "-q", &cut, "-o", s(&c)]));
    assert_eq!(code, 3, "already complete, still incomplete input: {err}");
    // Check results cut at the head, into repair; and an output made from
    // an incomplete input (--allow-partial) still reads as incomplete.
    let checked = read_units(&c);
    assert_eq!(objects(&checked).len(), 4);
    let (code, _, err) = run(stw(&["repair", "-q", s(&c)]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("counts") && err.contains("but 4 were read"),
        "{err}"
    );
}

/// `repair` writes only the objects it acted on, under the tree's stats
/// unit: its output must read back as whole (the stats unit carries a
/// subset mark saying how many objects it holds), and a cut copy of it as
/// incomplete. `repair --all` writes every object and needs no mark.
#[test]
fn a_repair_output_read_back_is_whole_and_cut_is_not() {
    let g = grid();
    let tree = build_damaged_tree(g, "hostile-subset");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "m.ndjson", "write");
    let c = dir.path().join("c.ndjson");
    let (code, _, err) = run(stw(&["check", "-q", s(&m), "-o", s(&c)]));
    assert_eq!(code, 1, "{err}");
    let total = objects(&read_units(&c)).len() as u64;
    // A dry run writes what it would repair: a subset.
    let d = dir.path().join("dry.ndjson");
    let (code, _, err) = run(stw(&["repair", "-q", "--dry-run", s(&c), "-o", s(&d)]));
    assert_eq!(code, 1, "{err}");
    let r = dir.path().join("r.ndjson");
    let (code, _, err) = run(stw(&["repair", "-q", s(&c), "-o", s(&r)]));
    assert_eq!(code, 1, "unrecoverable objects remain: {err}");
    for out in [&d, &r] {
        let text = std::fs::read_to_string(out).unwrap();
        let us = units(&text);
        let held = objects(&us).len() as u64;
        assert!(held > 0 && held < total, "{held} of {total}");
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["type"], "stats");
        assert_eq!(last["subset"]["objects"], held, "{last}");
        assert_eq!(
            stats(&us),
            stats(&read_units(&c)),
            "the tree's stats are kept, unchanged"
        );
        // Read back by check and by repair: whole (findings, not 3).
        let (code, _, err) = run(stw(&["check", "-q", s(out)]));
        assert_eq!(code, 1, "{}: {err}", out.display());
        assert!(!err.contains("incomplete"), "{err}");
        // Cut at its head, or only its stats unit: incomplete.
        let lines: Vec<&str> = text.lines().collect();
        let cut = write(
            dir.path(),
            "cut.ndjson",
            &format!("{}\n", lines[1..].join("\n")),
        );
        let (code, _, err) = run(stw(&["check", "-q", &cut]));
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains(&format!("counts {held} objects"))
                && err.contains(&format!("but {} were read", held - 1))
                && err.contains("subset"),
            "{err}"
        );
    }
    // repair of the repair output: its own output is marked too, and whole.
    let rr = dir.path().join("rr.ndjson");
    let (code, _, err) = run(stw(&["repair", "-q", s(&r), "-o", s(&rr)]));
    assert!(code <= 1, "{err}");
    assert!(!err.contains("incomplete"), "{err}");
    let (code, _, err) = run(stw(&["check", "-q", s(&rr)]));
    assert!(code <= 1, "{err}");
    assert!(!err.contains("incomplete"), "{err}");
    // --all writes every object: no mark, and whole.
    let a = dir.path().join("all.ndjson");
    let (code, _, err) = run(stw(&[
        "repair",
        "-q",
        "--all",
        "--dry-run",
        s(&c),
        "-o",
        s(&a),
    ]));
    assert_eq!(code, 1, "{err}");
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(objects(&units(&text)).len() as u64, total);
    assert!(!text.lines().last().unwrap().contains("subset"));
    let (code, _, err) = run(stw(&["repair", "-q", "--dry-run", s(&a)]));
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("incomplete"), "{err}");
}

/// A directory given as input said only "Is a directory (os error 21)".
#[test]
fn a_directory_as_input_is_named_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["check", "repair"] {
        let out = dir.path().join(format!("{cmd}.ndjson"));
        for args in [
            vec![cmd, "-q", s(dir.path())],
            vec![cmd, "-q", s(dir.path()), "-o", s(&out)],
        ] {
            let (code, _, err) = run(stw(&args));
            assert_eq!(code, 2, "{err}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(
                err.contains(s(dir.path()))
                    && err.contains("is a directory")
                    && err.contains("give"),
                "{err}"
            );
            assert!(!err.contains("os error"), "{err}");
        }
        assert!(!out.exists(), "nothing created for a run that cannot start");
    }
    // The other files steward reads: the same.
    let d = s(dir.path());
    let state = tempfile::tempdir().unwrap();
    for args in [
        vec!["dispatch", d, "--state", s(state.path())],
        vec!["check", "--backend", "native", "--servers", d, "-"],
        vec![
            "check",
            "--backend",
            "native",
            "--add-lease",
            "--lease-secret",
            d,
            "-d",
            d,
            "-",
        ],
    ] {
        let mut c = if args[0] == "dispatch" {
            let mut c = steward();
            c.args(&args);
            c
        } else {
            stw(&args)
        };
        c.stdin(Stdio::null());
        let (code, _, err) = run(c);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(d) && err.contains("is a directory") && err.contains("give"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("os error"), "{err}");
    }
}

/// `steward manifest ROOT >&-`: Rust's runtime reopens a closed standard
/// output on /dev/null, and the units were dropped with exit 0. A closed
/// standard output is refused at once; `>/dev/null` is a choice, and works.
#[test]
fn a_closed_standard_output_is_refused_but_dev_null_is_not() {
    let g = grid();
    let tree = build_tree(g, "hostile-closed-stdout");
    let closed = |args: &[&str]| {
        let mut c = stw(args);
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                libc::close(1);
                Ok(())
            });
        }
        run(c)
    };
    let caps = format!("{}\n", tree.cap("a/chk0"));
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "caps.txt", &caps);
    for args in [
        vec!["manifest", "-q", tree.root.as_str()],
        vec!["check", "-q", input.as_str()],
        vec!["deep-check", "-q", "--raw", tree.root.as_str()],
        vec!["deep-check", "-q", tree.root.as_str()],
    ] {
        let (code, _, err) = closed(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("standard output is closed") && err.contains("-o FILE"),
            "{err}"
        );
        let mut c = stw(&args);
        c.stdout(Stdio::null());
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            ">/dev/null: {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // With -o the units do not go to standard output: nothing to refuse.
    let out = dir.path().join("m.ndjson");
    let (code, _, err) = closed(&["manifest", "-q", &tree.root, "-o", s(&out)]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}

/// A manifest whose directory could not be listed (a gateway timeout: its
/// unit carries the error, and nothing below it is in the manifest) is
/// whole, stats unit and all, but never covered what is below that
/// directory. Checking it must not say healthy because the directory
/// itself checks healthy: `check` exited 0 with "all healthy" before.
#[test]
fn a_directory_that_was_never_listed_is_never_all_healthy() {
    let g = grid();
    let tree = build_tree(g, "hostile-unlisted");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "m.ndjson", "read");
    let mut lines = Vec::new();
    let mut dropped: Vec<&str> = Vec::new();
    for line in std::fs::read_to_string(&m).unwrap().lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "stats" {
            // The stats of a manifest that never listed `a` count only
            // what it emitted (a reader compares them with the units).
            for key in &dropped {
                let n = v["stats"][*key].as_u64().unwrap();
                v["stats"][*key] = (n - 1).into();
            }
            lines.push(v.to_string());
            continue;
        }
        let path: Vec<String> = match v.get("path") {
            Some(p) => serde_json::from_value(p.clone()).unwrap(),
            None => vec![],
        };
        if path.len() > 1 && path[0] == "a" {
            // Never listed.
            let cap = v["cap"].as_str().unwrap();
            dropped.push(if v["type"] == "directory" {
                "count-directories"
            } else if cap.starts_with("URI:LIT:") {
                "count-literal-files"
            } else if cap.starts_with("URI:CHK:") {
                "count-immutable-files"
            } else {
                "count-mutable-files"
            });
            continue;
        }
        if path == ["a"] {
            v["error"] = serde_json::json!({
                "code": "gateway-timeout",
                "message": "listing the directory timed out"
            });
        }
        lines.push(v.to_string());
    }
    let cut = write(dir.path(), "unlisted.ndjson", &(lines.join("\n") + "\n"));
    let nd = g.gateway_dir();
    for backend in ["gateway", "native"] {
        let (code, _, err) = run(stw(&[
            "check",
            "-q",
            &cut,
            "--backend",
            backend,
            "-d",
            s(nd),
        ]));
        assert_eq!(code, 1, "{backend}: {err}");
        assert!(err.contains("never listed"), "{backend}: {err}");
    }
}

/// Standard output is a pipe whose reader has already gone (`| head -0`).
fn closed_stdout(c: &mut Command) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { libc::close(fds[0]) };
    use std::os::unix::io::FromRawFd;
    c.stdout(Stdio::from(unsafe { std::fs::File::from_raw_fd(fds[1]) }));
}

/// `steward ARGS` with a closed standard output exits 3 and says why.
fn assert_cut_short_by_closed_stdout(args: &[&str]) {
    let mut cmd = stw(args);
    closed_stdout(&mut cmd);
    cmd.stderr(Stdio::piped());
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
    assert!(
        err.contains("standard output was closed"),
        "{args:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn a_closed_standard_output_never_says_healthy() {
    let g = grid();
    let tree = build_damaged_tree(g, "hostile-pipe");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "m.ndjson", "write");
    let c = dir.path().join("c.ndjson");
    run(stw(&["check", "-q", s(&m), "-o", s(&c)]));
    let runs: Vec<Vec<&str>> = vec![
        vec!["check", "-q", s(&m)],
        vec!["deep-check", "-q", "--raw", &tree.root],
        vec!["repair", "-q", "--dry-run", "--all", s(&c)],
        vec!["manifest", "-q", &tree.root],
    ];
    for args in runs {
        assert_cut_short_by_closed_stdout(&args);
    }
    // The report of a small tree is printed at the end of a run that
    // checked everything: its exit code says what was found.
    let mut cmd = stw(&["deep-check", "-q", &tree.root]);
    closed_stdout(&mut cmd);
    let (code, _, err) = run(cmd);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Check results are written by transcoding the gateway's text: a pipe
/// that closes while a unit is half written (its 64 KiB buffer filled in
/// the middle of one, as with `steward check caps | head -1` on a long
/// list) must still end the run with exit 3, not exit 2 with the
/// transcoder's "Broken pipe at line 21 column 61" (it did before).
#[test]
fn a_pipe_closed_in_the_middle_of_a_unit_is_exit_3() {
    let g = grid();
    let tree = build_damaged_tree(g, "hostile-midunit");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "m.ndjson", "read");
    let caps: Vec<String> = objects(&read_units(&m))
        .into_iter()
        .map(|o| o.cap)
        .filter(|c| !c.starts_with("URI:LIT:"))
        .collect();
    // Enough lines that the output passes 64 KiB within one batch.
    let list: String = (0..60)
        .flat_map(|_| caps.iter())
        .map(|c| format!("{c}\n"))
        .collect();
    let input = write(dir.path(), "caps.txt", &list);
    for backend in ["gateway", "native"] {
        let mut args = vec!["check", "-q", input.as_str()];
        let nd = g.gateway_dir();
        if backend == "native" {
            args.extend(["--backend", "native", "-d", s(nd)]);
        }
        assert_cut_short_by_closed_stdout(&args);
    }
}

#[test]
fn a_verify_cap_root_is_insufficient_authority() {
    let g = grid();
    let tree = build_tree(g, "hostile-vroot");
    let vroot = Cap::parse(&tree.root)
        .unwrap()
        .weaken_to(Authority::Verify)
        .unwrap();
    let vroot = vroot.expose();
    let (code, out, err) = run(stw(&["manifest", "-q", vroot]));
    assert_eq!(code, 1, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), 1);
    assert_eq!(code_of(&objs[0]), Some("insufficient-authority"), "{out}");
    let (code, out, err) = run(stw(&["deep-check", "-q", "--raw", vroot]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        code_of(&objects(&units(&out))[0]),
        Some("insufficient-authority"),
        "{out}"
    );
    for cmd in ["manifest", "deep-check"] {
        let (code, _, err) = run(stw(&[cmd, "-q", &format!("{vroot}/a")]));
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(err.contains("insufficient-authority"), "{cmd}: {err}");
        assert!(!err.contains(vroot), "no whole cap: {err}");
    }
}

#[test]
fn a_path_that_is_not_utf8_is_a_bad_line() {
    let g = grid();
    let tree = build_tree(g, "hostile-utf8");
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"type\": \"file\", \"path\": [\"a\xffb\"], \"cap\": \"".to_vec();
    bytes.extend_from_slice(tree.cap("a/chk0").as_bytes());
    bytes.extend_from_slice(b"\"}\n{\"type\": \"stats\", \"stats\": {}}\n");
    let p = dir.path().join("bad.ndjson");
    std::fs::write(&p, bytes).unwrap();
    let (code, out, err) = run(stw(&["check", "-q", s(&p)]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("input line 1") && err.contains("UTF-8"),
        "{err}"
    );
    assert!(objects(&units(&out)).is_empty(), "{out}");
    assert!(!out.contains('\u{fffd}'));
}

// ---------------------------------------------------------------------
// Writing where it should not
// ---------------------------------------------------------------------

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn outputs_are_regular_files_never_devices_fifos_or_symlinks() {
    let g = grid();
    let tree = build_tree(g, "hostile-files");
    let dir = tempfile::tempdir().unwrap();
    let caps = write(dir.path(), "caps.txt", &format!("{}\n", tree.cap("a/chk0")));
    // A FIFO (as a character device would be): refused, its mode unchanged.
    let fifo = dir.path().join("fifo");
    let cpath = std::ffi::CString::new(s(&fifo)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o644) }, 0);
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        vec!["check", "-q", &caps, "-o", s(&fifo)],
        vec!["manifest", "-q", &tree.root, "-o", s(&fifo)],
        vec!["deep-check", "-q", &tree.root, "-o", s(&fifo)],
    ] {
        let (code, _, err) = run(stw(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{err}");
        assert_eq!(mode(&fifo), 0o644, "{args:?}: not chmodded");
    }
    assert!(!dir.path().join("fifo.steward-ckpt").exists());
    assert!(!dir.path().join("fifo.steward-journal").exists());
    assert!(!dir.path().join("fifo.steward-lock").exists());
    // -o a symlink to another file: refused, the target untouched, with
    // --restart too, whether the target is empty or not.
    for content in ["", "precious\n"] {
        let victim = dir.path().join("victim");
        std::fs::write(&victim, content).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link.ndjson");
        let _ = std::fs::remove_file(&link);
        symlink(&victim, &link).unwrap();
        for restart in [false, true] {
            let mut args = vec!["check", "-q", &caps, "-o", s(&link)];
            if restart {
                args.push("--restart");
            }
            let (code, _, err) = run(stw(&args));
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("symlink"), "{err}");
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), content);
            assert_eq!(mode(&victim), 0o644, "the target is not chmodded");
        }
    }
    // A file steward did not create, readable by others: refused, not
    // chmodded.
    let open = dir.path().join("open.ndjson");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(stw(&["check", "-q", &caps, "-o", s(&open)]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(mode(&open), 0o644);
    assert!(err.contains("chmod 600"), "{err}");
    // The input as the output: refused, the input untouched.
    std::fs::set_permissions(&caps, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = std::fs::read_to_string(&caps).unwrap();
    for restart in [false, true] {
        let mut args = vec!["check", "-q", &caps, "-o", &caps];
        if restart {
            args.push("--restart");
        }
        let (code, _, err) = run(stw(&args));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("both the input and the output"), "{err}");
        assert_eq!(std::fs::read_to_string(&caps).unwrap(), before);
    }
}

/// A symlink is refused in the place of a file steward writes, not in the
/// directories above it (`/home` a link to `/data/home` is common): every
/// command wrote nothing but "checkpoint database: unable to open database
/// file" there before (SQLite's `NOFOLLOW` refuses a link anywhere in the
/// path), and left a lock and an empty checkpoint behind.
#[test]
fn an_output_below_a_symlinked_directory_is_written() {
    let g = grid();
    let tree = build_tree(g, "hostile-parentlink");
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let via = dir.path().join("via");
    symlink(&real, &via).unwrap();
    let caps = write(dir.path(), "caps.txt", &format!("{}\n", tree.cap("a/chk0")));
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("m.ndjson", vec!["manifest", "-q", &tree.root]),
        ("c.ndjson", vec!["check", "-q", &caps]),
        ("d.ndjson", vec!["deep-check", "-q", "--raw", &tree.root]),
    ];
    for (name, mut args) in runs {
        let out = via.join(name);
        args.extend(["-o", s(&out)]);
        let (code, _, err) = run(stw(&args));
        assert!(code <= 1, "{args:?}: {err}");
        let written = real.join(name);
        assert_eq!(mode(&written), 0o600, "{args:?}");
        assert!(
            !objects(&read_units(&written)).is_empty(),
            "{args:?}: units written"
        );
        // And it resumes there: a second run finds its checkpoint.
        let (code, _, err) = run(stw(&args));
        assert!(code <= 1, "{args:?} again: {err}");
    }
}

#[test]
fn checkpoints_and_temporary_files_are_never_written_through_symlinks() {
    let g = grid();
    let tree = build_tree(g, "hostile-links");
    let dir = tempfile::tempdir().unwrap();
    let caps = write(dir.path(), "caps.txt", &format!("{}\n", tree.cap("a/chk0")));
    let victim = dir.path().join("victim");
    let fresh_victim = || {
        std::fs::write(&victim, "precious\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let untouched = |what: &str| {
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious\n",
            "{what}"
        );
        assert_eq!(mode(&victim), 0o644, "{what}");
    };
    // check / repair: the SQLite checkpoint and its side files.
    for suffix in [".steward-ckpt", ".steward-ckpt-wal", ".steward-ckpt-shm"] {
        fresh_victim();
        let out = dir.path().join(format!("c{suffix}.ndjson"));
        let planted = PathBuf::from(format!("{}{suffix}", s(&out)));
        symlink(&victim, &planted).unwrap();
        let (code, _, err) = run(stw(&["check", "-q", &caps, "-o", s(&out)]));
        assert_eq!(code, 2, "{suffix}: {err}");
        assert!(err.contains("symlink"), "{suffix}: {err}");
        untouched(suffix);
        assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    }
    // manifest: the SQLite journal and its side files.
    for suffix in [
        ".steward-journal",
        ".steward-journal-wal",
        ".steward-journal-shm",
    ] {
        fresh_victim();
        let out = dir.path().join(format!("m{suffix}.ndjson"));
        symlink(&victim, format!("{}{suffix}", s(&out))).unwrap();
        let (code, _, err) = run(stw(&["manifest", "-q", &tree.root, "-o", s(&out)]));
        assert_eq!(code, 2, "{suffix}: {err}");
        assert!(err.contains("symlink"), "{suffix}: {err}");
        untouched(suffix);
    }
    // deep-check -o: the files beside FILE.
    for suffix in [".manifest", ".check", ".manifest.steward-journal"] {
        fresh_victim();
        let out = dir.path().join(format!("d{suffix}.ndjson"));
        symlink(&victim, format!("{}{suffix}", s(&out))).unwrap();
        let (code, _, err) = run(stw(&[
            "deep-check",
            "-q",
            "--repair",
            &tree.root,
            "-o",
            s(&out),
        ]));
        assert_eq!(code, 2, "{suffix}: {err}");
        assert!(err.contains("symlink"), "{suffix}: {err}");
        untouched(suffix);
    }
}

/// Start `args` through `proxy`, with stderr piped.
fn spawn_via(proxy: &Proxy, args: &[&str]) -> Child {
    let mut c = steward();
    c.args(args).arg("--gateway").arg(&proxy.url);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn wait_for(p: &Path) {
    let t0 = Instant::now();
    while !p.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{p:?} never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The run `first` ends well, with `objects` objects in `out`.
fn completes_each_object_once(first: Child, out: &Path, objects_wanted: usize) {
    let o = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let objs = objects(&read_units(out));
    assert_eq!(objs.len(), objects_wanted, "each object once");
}

#[test]
fn a_second_run_on_the_same_output_is_refused_at_once() {
    let g = grid();
    let (root, want) = big_tree("hostile-lock", 1, 3, 4);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&root, dir.path(), "m.ndjson", "read");
    let proxy = Proxy::start(&g.gateway_url());
    proxy.delay(150);
    // check -o, twice.
    let c = dir.path().join("c.ndjson");
    let first = spawn_via(&proxy, &["check", "-q", "-j", "1", s(&m), "-o", s(&c)]);
    wait_for(&c);
    let t0 = Instant::now();
    let (code, _, err) = run(stw(&["check", "-q", s(&m), "-o", s(&c)]));
    assert!(t0.elapsed() < Duration::from_secs(5), "at once");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(s(&c)), "names the file: {err}");
    assert!(
        err.contains(&format!("pid {}", first.id())),
        "names the run: {err}"
    );
    completes_each_object_once(first, &c, want.len());
    // deep-check -o locks its files beside FILE too.
    let d = dir.path().join("d.ndjson");
    let first = spawn_via(
        &proxy,
        &[
            "deep-check",
            "-q",
            "--raw",
            "--list-jobs",
            "1",
            "-j",
            "1",
            &root,
            "-o",
            s(&d),
        ],
    );
    wait_for(&dir.path().join("d.ndjson.manifest"));
    let dm = dir.path().join("d.ndjson.manifest");
    for args in [
        vec!["deep-check", "-q", "--raw", &root, "-o", s(&d)],
        vec!["manifest", "-q", &root, "-o", s(&dm)],
    ] {
        let (code, _, err) = run(stw(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!("pid {}", first.id())),
            "{args:?}: {err}"
        );
    }
    completes_each_object_once(first, &d, want.len());
}

// ---------------------------------------------------------------------
// Resume that does not resume
// ---------------------------------------------------------------------

/// Every output file of a deep check that holds anything has a checkpoint.
fn every_output_has_its_checkpoint(out: &Path, when: &str) {
    for suffix in ["", ".manifest", ".check"] {
        let p = PathBuf::from(format!("{}{suffix}", s(out)));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        // The manifest's state is a journal, the others' a checkpoint.
        let ckpt = if suffix == ".manifest" {
            PathBuf::from(format!("{}.steward-journal", s(&p)))
        } else {
            PathBuf::from(format!("{}.steward-ckpt", s(&p)))
        };
        assert!(
            len == 0 || ckpt.exists(),
            "{when}: {p:?} holds {len} bytes and has no checkpoint"
        );
    }
}

#[test]
fn deep_check_repair_stopped_by_a_signal_at_any_moment_resumes() {
    let g = grid();
    let (root, want) = big_tree("hostile-sigterm", 2, 5, 5);
    for (path, cap) in &want {
        if path.ends_with("f1") {
            let si = Cap::parse(cap)
                .unwrap()
                .storage_index()
                .unwrap()
                .to_string();
            g.drop_shares(&si, 2).unwrap();
        }
    }
    let proxy = Proxy::start(&g.gateway_url());
    proxy.delay(15);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dc.ndjson");
    let args = |restart: bool| {
        let mut a = vec![
            "deep-check",
            "-q",
            "--repair",
            "--raw",
            "--happy",
            "1",
            "--list-jobs",
            "2",
            "-j",
            "2",
            &root,
            "-o",
            s(&out),
        ];
        if restart {
            a.push("--restart");
        }
        a
    };
    let mut rng = rand::thread_rng();
    for (i, signal) in [libc::SIGINT, libc::SIGTERM, libc::SIGINT, libc::SIGTERM]
        .into_iter()
        .enumerate()
    {
        // From the start (--restart), so that the moment falls in the
        // repair stage's first second (before its first periodic
        // checkpoint) as often as not.
        let child = spawn_via(&proxy, &args(true));
        let at = Duration::from_millis(rng.gen_range(600..3000));
        std::thread::sleep(at);
        unsafe { libc::kill(child.id() as i32, signal) };
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let when = format!("try {i}, signal {signal} at {at:?}");
        assert!(
            matches!(o.status.code(), Some(130) | Some(0) | Some(1)),
            "{when}: {err}"
        );
        every_output_has_its_checkpoint(&out, &when);
        // The same command resumes.
        let o = spawn_via(&proxy, &args(false)).wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{when}: resumed: {err}");
        let got = objects(&read_units(&out));
        assert_eq!(got.len(), want.len(), "{when}: each object once");
        let mut paths: Vec<_> = got.iter().map(|o| o.path.join("/")).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), want.len(), "{when}: none twice");
    }
}

#[test]
fn an_object_already_healthy_when_repaired_again_is_skipped_not_failed() {
    let g = grid();
    let tree = build_damaged_tree(g, "hostile-again");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "m.ndjson", "write");
    let c = dir.path().join("c.ndjson");
    run(stw(&["check", "-q", s(&m), "-o", s(&c)]));
    // The first repair (as the run killed after repairing, before its
    // checkpoint).
    let (code, _, err) = run(stw(&["repair", "-q", "--happy", "1", s(&c)]));
    assert_eq!(code, 1, "unrecoverable ones remain: {err}");
    // The same check units again: a/chk0 and sdmf are healthy by now.
    let (_, out, err) = run(stw(&["repair", "-q", "--happy", "1", s(&c)]));
    let p = by_path(&objects(&units(&out)));
    for path in ["a/chk0", "sdmf"] {
        let o = &p[path];
        assert_eq!(action(o), "skipped", "{path}: {:?}", o.repair);
        let reason = o.repair.as_ref().unwrap().reason.as_str();
        assert!(reason.contains("already healthy"), "{reason}");
    }
    assert!(err.contains("0 repairs attempted"), "{err}");
}

#[test]
fn a_verify_cap_manifest_leaves_no_read_cap_in_its_checkpoint() {
    let g = grid();
    let tree = build_tree(g, "hostile-secure");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(&tree.root, dir.path(), "v.ndjson", "verify");
    let mut secrets = vec![];
    for (path, cap) in &tree.caps {
        let cap = Cap::parse(cap).unwrap();
        if cap.is_directory() {
            if let Some(r) = cap.to_read_cap() {
                secrets.push((path.clone(), r.expose().to_string()));
            }
        }
    }
    assert!(secrets.len() >= 5);
    let mut files = 0;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = format!("{}.steward-journal{suffix}", s(&m));
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        files += 1;
        for (path, secret) in &secrets {
            // The whole cap, and its key alone (the third field).
            let key = secret.split(':').nth(2).unwrap();
            for needle in [secret.as_str(), key] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{p} holds the read cap of {path:?}"
                );
            }
        }
    }
    assert!(files > 0);
}

/// Issue 9: a new file's directory entry is made durable (the directory
/// fsynced) before the file holds anything, so that after a power cut a
/// checkpoint cannot outlive the output it covers. Seen with strace.
#[test]
fn a_new_output_is_in_its_directory_before_it_holds_anything() {
    let g = grid();
    let tree = build_tree(g, "hostile-dirsync");
    let dir = tempfile::tempdir().unwrap();
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let caps = write(&dir_path, "caps.txt", &format!("{}\n", tree.cap("a/chk0")));
    for (name, args) in [
        ("c.ndjson", vec!["check", "-q", caps.as_str()]),
        ("m.ndjson", vec!["manifest", "-q", tree.root.as_str()]),
    ] {
        let out = dir_path.join(name);
        let trace = dir_path.join(format!("{name}.strace"));
        let mut c = Command::new("strace");
        c.args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=openat,write,fsync,fdatasync",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_steward"))
        .args(&args)
        .args(["-o", s(&out), "--gateway", &g.gateway_url()])
        .env_remove("STEWARD_GATEWAY")
        .env("HOME", "/nonexistent");
        let (code, _, err) = run(c);
        assert_eq!(code, 0, "{name} (this test needs strace): {err}");
        let text = std::fs::read_to_string(&trace).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let quoted = format!("\"{}\"", s(&out));
        let created = lines
            .iter()
            .position(|l| l.contains("openat(") && l.contains(&quoted) && l.contains("O_CREAT"))
            .unwrap_or_else(|| panic!("{name}: no creation in\n{text}"));
        let fd_path = format!("<{}>", s(&out));
        let first_write = lines[created..]
            .iter()
            .position(|l| l.contains("write(") && l.contains(&fd_path))
            .map(|i| i + created)
            .unwrap_or_else(|| panic!("{name}: never written\n{text}"));
        let dir_fd = format!("<{}>)", dir_path.display());
        assert!(
            lines[created..first_write]
                .iter()
                .any(|l| l.contains("fsync(") && l.contains(&dir_fd)),
            "{name}: the directory is not fsynced between the creation and the first write:\n{}",
            lines[created..=first_write].join("\n")
        );
    }
}

/// A repair racing another repair of the same object (the one a killed run
/// left in flight at the gateway, which goes on without it): the object
/// ends healthy, and the unit must not call that a failed repair.
#[test]
fn a_repair_racing_another_repair_of_the_same_object_is_not_a_failure() {
    let g = grid();
    let t = tag("hostile-race");
    let caps: Vec<String> = (0..8)
        .map(|i| {
            let data = format!("{t} {i} {}", "r".repeat(300_000));
            g.upload(data.as_bytes(), "CHK").unwrap()
        })
        .collect();
    for c in &caps {
        let si = Cap::parse(c).unwrap().storage_index().unwrap().to_string();
        g.drop_shares(&si, 2).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "caps.txt", &(caps.join("\n") + "\n"));
    let c = dir.path().join("c.ndjson");
    let (code, _, err) = run(stw(&["check", "-q", &list, "-o", s(&c)]));
    assert_eq!(code, 1, "{err}");
    // All of it through the second gateway, which the other tests leave
    // alone: these repairs keep a gateway busy.
    let gateway = g.gateway_urls()[1].clone();
    // The other repairs, started just before.
    let base = gateway.clone();
    let other = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        std::thread::scope(|sc| {
            for cap in &caps {
                let (client, base) = (&client, &base);
                sc.spawn(move || {
                    let url = format!("{base}uri/{cap}?t=check&repair=true&output=JSON");
                    let _ = client.post(url).send().and_then(|r| r.text());
                });
            }
        });
    });
    std::thread::sleep(Duration::from_millis(50));
    let mut cmd = steward();
    cmd.args(["repair", "-q", "--happy", "1", "-j", "8", s(&c)])
        .args(["--gateway", &gateway]);
    let (code, out, err) = run(cmd);
    other.join().unwrap();
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), 8, "{out}");
    for o in &objs {
        let now = g.check(&o.cap, false).unwrap();
        assert_eq!(now["results"]["healthy"], true, "healthy in the end");
    }
    assert_eq!(code, 0, "{err}\n{out}");
}
