//! `steward check` on a damaged tree (issue 3).

use crate::common::*;

#[test]
fn check_marks_exactly_the_unhealthy_and_verify_finds_corruption() {
    let g = grid();
    let tree = build_damaged_tree(g, "check-damaged");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.ndjson");
    let (code, _, err) = run(stw(&[
        "manifest",
        "-q",
        "--caps",
        "write",
        &tree.root,
        "-o",
        manifest.to_str().unwrap(),
    ]));
    assert_eq!(
        code, 1,
        "the broken directory makes the manifest exit 1: {err}"
    );
    let (code, out, err) = run(stw(&["check", "-q", manifest.to_str().unwrap()]));
    assert_eq!(code, 1, "unhealthy objects: exit 1 ({err})");
    let us = units(&out);
    let objs = objects(&us);
    stats(&us); // the manifest's stats unit passes through, last
    let h = health(&objs);
    let unhealthy: Vec<&String> = h
        .iter()
        .filter(|(_, v)| **v != Some(true))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        unhealthy,
        vec!["a/chk0", "a/chk1", "broken", "sdmf"],
        "{h:?}"
    );
    let p = by_path(&objs);
    assert_eq!(
        p["a/chk1"].check_results.as_ref().unwrap()["results"]["recoverable"],
        false
    );
    assert_eq!(
        p["broken"].check_results.as_ref().unwrap()["results"]["recoverable"],
        false
    );
    assert_eq!(
        p["broken"].error.as_ref().unwrap().code,
        "unrecoverable",
        "the listing error stays"
    );
    assert_eq!(
        p["a/chk0"].check_results.as_ref().unwrap()["results"]["count-shares-good"],
        3
    );
    assert_eq!(
        p["lit"].check_results.as_ref().unwrap()["results"]["healthy"],
        true,
        "LIT: healthy without a request"
    );
    // Output order is input order.
    let in_paths: Vec<_> = objects(&read_units(&manifest))
        .iter()
        .map(|o| o.path.clone())
        .collect();
    let out_paths: Vec<_> = objs.iter().map(|o| o.path.clone()).collect();
    assert_eq!(in_paths, out_paths);
    // A verify also finds the corrupt share of a/chk2.
    let (_, vout, _) = run(stw(&[
        "check",
        "-q",
        "--verify",
        manifest.to_str().unwrap(),
    ]));
    let vobjs = objects(&units(&vout));
    let vp = by_path(&vobjs);
    let r = &vp["a/chk2"].check_results.as_ref().unwrap()["results"];
    assert_eq!(r["count-corrupt-shares"], 1, "{r}");
    assert_eq!(r["healthy"], false);
    assert_eq!(health(&vobjs)["a/chk2"], Some(false));
}

#[test]
fn inputs_caps_tahoe_manifests_and_bad_lines() {
    let g = grid();
    let tree = build_tree(g, "check-inputs");
    let dir = tempfile::tempdir().unwrap();
    // A plain list of caps, with a blank line, junk, and a truncated unit.
    let list = format!(
        "{}\n\n{}\nthis is not a cap\n{}\n{{\"type\":\"file\",\"pa",
        tree.cap("a/chk0"),
        tree.cap("sdmf"),
        tree.cap("lit")
    );
    let input = write(dir.path(), "caps.txt", &list);
    let (code, out, err) = run(stw(&["check", "-q", &input]));
    assert_eq!(code, 2, "bad lines make the run exit 2 at the end: {err}");
    assert!(
        err.contains("input line 4: neither a JSON unit nor a cap"),
        "{err}"
    );
    assert!(err.contains("input line 6: truncated JSON"), "{err}");
    assert!(
        !err.contains("this is not a cap"),
        "input is not echoed: {err}"
    );
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), 3, "every good line checked, in order");
    assert!(objs
        .iter()
        .all(|o| o.check_results.as_ref().unwrap()["results"]["healthy"] == true));
    assert!(
        objs[1].cap.starts_with("URI:SSK:"),
        "a cap line keeps the cap it was given"
    );
    // Tahoe's own stream-manifest as input, from stdin.
    let (_, body) = g
        .post(&format!("uri/{}?t=stream-manifest", tree.root))
        .unwrap();
    let mut c = stw(&["check", "-q", "-"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let us = units(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(objects(&us).len(), tree.caps.len());
    stats(&us);
    // A verify-cap manifest cannot be checked through a gateway: said per unit.
    let (_, vman) = (
        0,
        run(stw(&["manifest", "--caps", "verify", tree.cap("a")])).1,
    );
    let vin = write(dir.path(), "v.ndjson", &vman);
    let (code, out, _) = run(stw(&["check", "-q", &vin]));
    assert_eq!(code, 1);
    let objs = objects(&units(&out));
    let e = objs[0].error.as_ref().unwrap();
    assert_eq!(e.code, "insufficient-authority");
    assert!(e.message.contains("--caps read"), "{}", e.message);
}

#[test]
fn add_lease_renews_leases() {
    let g = grid();
    let tree = build_tree(g, "check-lease");
    let si = tree.si("a/chk1");
    let share = g.shares(&si).into_iter().next().unwrap();
    let before = std::fs::read(&share.path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) =
        run(stw(&["check", "-q", "--add-lease", "-"]).stdin_text(tree.cap("a/chk1")));
    assert_eq!(code, 0, "{err}");
    assert_eq!(objects(&units(&out)).len(), 1);
    let after = std::fs::read(&share.path).unwrap();
    assert_ne!(
        before, after,
        "the lease (its expiry time) in the share file changed"
    );
}

/// Feed text on stdin.
trait StdinText {
    fn stdin_text(self, text: &str) -> std::process::Command;
}

impl StdinText for std::process::Command {
    fn stdin_text(mut self, text: &str) -> std::process::Command {
        let p = std::env::temp_dir().join(tag("stdin"));
        std::fs::write(&p, text).unwrap();
        self.stdin(std::fs::File::open(p).unwrap());
        self
    }
}

/// Issue 9: `check FILE` read the whole input into memory to count its
/// lines for the progress bar (164 MB of peak memory for a 160 MB input).
/// Memory must not grow with the input: a list of literal caps (checked
/// without a request) ten times longer costs no more memory.
#[test]
fn memory_does_not_grow_with_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: usize| {
        let p = dir.path().join(name);
        let mut text = String::with_capacity(lines * 340);
        for i in 0..lines {
            // A 200-byte literal file: a 330-character line.
            let data = format!("{i:0200}");
            text.push_str("URI:LIT:");
            text.push_str(&steward_cap::base32::encode(data.as_bytes()));
            text.push('\n');
        }
        std::fs::write(&p, text).unwrap();
        p
    };
    let small = write("small.caps", 10_000);
    let large = write("large.caps", 100_000);
    assert!(std::fs::metadata(&large).unwrap().len() > 30_000_000);
    let rss = |input: &std::path::Path| {
        let c = stw(&["check", "-q", input.to_str().unwrap()]);
        let (code, kb) = run_measuring_rss(c);
        assert_eq!(code, 0);
        kb
    };
    let (s, l) = (rss(&small), rss(&large));
    assert!(
        l < s + 8 * 1024,
        "peak memory {s} KiB for 10,000 lines, {l} KiB for 100,000 (a 33 MB input)"
    );
}
