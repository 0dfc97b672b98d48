//! Kill -9 at a random moment, run again: every object exactly once
//! (issues 2 and 3). A proxy slows the gateway down so that the runs last
//! long enough to be killed in the middle.

use crate::common::*;
use crate::proxy::Proxy;
use rand::Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A tree of `groups` x `dirs` directories with `files` CHK files each,
/// built with one request per directory. Returns the root write cap and
/// every file's cap by path.
pub(crate) fn big_tree(
    name: &str,
    groups: usize,
    dirs: usize,
    files: usize,
) -> (String, BTreeMap<String, String>) {
    let g = grid();
    let t = tag(name);
    let mut all = BTreeMap::new();
    let mut group_caps = serde_json::Map::new();
    for gi in 0..groups {
        let mut dir_caps = serde_json::Map::new();
        for di in 0..dirs {
            let caps: Vec<(String, String)> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..files)
                    .map(|fi| {
                        let t = &t;
                        s.spawn(move || {
                            let data = format!("{t} {gi} {di} {fi} {}", "z".repeat(100 + fi));
                            (format!("f{fi}"), g.upload(data.as_bytes(), "CHK").unwrap())
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut children = serde_json::Map::new();
            for (n, c) in caps {
                all.insert(format!("g{gi}/d{di}/{n}"), c.clone());
                children.insert(n, serde_json::Value::String(c));
            }
            let d = g
                .mkdir_with_children(serde_json::Value::Object(children))
                .unwrap();
            all.insert(format!("g{gi}/d{di}"), d.clone());
            dir_caps.insert(format!("d{di}"), serde_json::Value::String(d));
        }
        let gc = g
            .mkdir_with_children(serde_json::Value::Object(dir_caps))
            .unwrap();
        all.insert(format!("g{gi}"), gc.clone());
        group_caps.insert(format!("g{gi}"), serde_json::Value::String(gc));
    }
    let root = g
        .mkdir_with_children(serde_json::Value::Object(group_caps))
        .unwrap();
    all.insert(String::new(), root.clone());
    (root, all)
}

/// Paths of the object units in an output file, with how often each occurs.
fn path_counts(p: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in objects(&read_units(p)) {
        *m.entry(o.path.join("/")).or_insert(0) += 1;
    }
    m
}

/// Run `args` (through a slow proxy) into `out`, killed with SIGKILL at a
/// random moment, twice, then again to completion. The moment is drawn
/// within `estimate` of a whole run, or of a whole run timed first (into
/// another file). Returns the exit code of the last run.
fn kill_and_resume(args: &[String], out: &Path, proxy: &Proxy, estimate: Option<Duration>) -> i32 {
    let cmd = |extra: &[&str]| {
        let mut c = steward();
        c.args(args).args(extra).arg("--gateway").arg(&proxy.url);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    let full = estimate.unwrap_or_else(|| {
        let timing = out.with_extension("timing");
        let t0 = Instant::now();
        let status = cmd(&["-o", timing.to_str().unwrap()]).status().unwrap();
        assert!(status.code().unwrap() <= 1, "a full run works");
        t0.elapsed()
    });
    let mut rng = rand::thread_rng();
    for _ in 0..2 {
        let at = full.mul_f64(rng.gen_range(0.15..0.7));
        let mut child = cmd(&["-o", out.to_str().unwrap()]).spawn().unwrap();
        std::thread::sleep(at);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let o = cmd(&["-o", out.to_str().unwrap()]).output().unwrap();
    eprintln!(
        "full run {full:?}; resumed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.status.code().unwrap()
}

fn assert_each_once(out: &Path, want: &BTreeMap<String, String>) {
    let got = path_counts(out);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "objects written twice: {twice:?}");
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "objects lost: {missing:?}");
    assert_eq!(got.len(), want.len());
    stats(&read_units(out));
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.ends_with('\n'), "no partial last line");
}

#[test]
fn manifest_check_verify_survive_kill_9() {
    let g = grid();
    let (root, want) = big_tree("resume-read", 3, 6, 5);
    let proxy = Proxy::start(&g.gateway_url());
    proxy.delay(15);
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.ndjson");
    let code = kill_and_resume(
        &[
            "manifest".into(),
            "-q".into(),
            "-j".into(),
            "2".into(),
            root.clone(),
        ],
        &m,
        &proxy,
        None,
    );
    assert_eq!(code, 0);
    assert_each_once(&m, &want);
    for verify in [false, true] {
        let c = dir.path().join(format!("c{verify}.ndjson"));
        let mut args: Vec<String> = vec![
            "check".into(),
            "-q".into(),
            "-j".into(),
            "2".into(),
            m.to_str().unwrap().into(),
        ];
        if verify {
            args.push("--verify".into());
        }
        let code = kill_and_resume(&args, &c, &proxy, None);
        assert_eq!(code, 0);
        assert_each_once(&c, &want);
        // Output order is input order, even across restarts.
        let in_paths: Vec<_> = objects(&read_units(&m))
            .iter()
            .map(|o| o.path.clone())
            .collect();
        let out_paths: Vec<_> = objects(&read_units(&c))
            .iter()
            .map(|o| o.path.clone())
            .collect();
        assert_eq!(in_paths, out_paths);
    }
    // A checkpoint is refused for another input.
    let other = write(dir.path(), "other.txt", "URI:LIT:nfxgs\n");
    let c = dir.path().join("cfalse.ndjson");
    let (code, _, err) = run(stw(&["check", &other, "-o", c.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(err.contains("--restart"), "{err}");
}

#[test]
fn repair_and_deep_check_survive_kill_9() {
    let g = grid();
    let (root, want) = big_tree("resume-repair", 2, 5, 4);
    let mut damaged = 0;
    for (path, cap) in &want {
        if path.ends_with("f1") || path.ends_with("f3") {
            let si = steward_cap::Cap::parse(cap)
                .unwrap()
                .storage_index()
                .unwrap()
                .to_string();
            g.drop_shares(&si, 2).unwrap();
            damaged += 1;
        }
    }
    let proxy = Proxy::start(&g.gateway_url());
    proxy.delay(15);
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.ndjson");
    let c = dir.path().join("c.ndjson");
    run(stw(&[
        "manifest",
        "-q",
        "--caps",
        "write",
        &root,
        "-o",
        m.to_str().unwrap(),
    ]));
    run(stw(&[
        "check",
        "-q",
        m.to_str().unwrap(),
        "-o",
        c.to_str().unwrap(),
    ]));
    // Repair: killed twice, resumed; every damaged object once, repaired.
    let r = dir.path().join("r.ndjson");
    let code = kill_and_resume(
        &[
            "repair".into(),
            "-q".into(),
            "-j".into(),
            "2".into(),
            c.to_str().unwrap().into(),
            "--happy".into(),
            "1".into(),
        ],
        &r,
        &proxy,
        Some(Duration::from_millis(1500)),
    );
    let failed: Vec<_> = objects(&read_units(&r))
        .into_iter()
        .filter(|o| {
            o.check_and_repair_results
                .as_ref()
                .is_none_or(|c| c["repair-successful"] != true)
        })
        .map(|o| (o.path, o.repair, o.check_and_repair_results))
        .collect();
    assert_eq!(code, 0, "{failed:#?}");
    let got = path_counts(&r);
    assert_eq!(got.len(), damaged, "{got:?}");
    assert!(got.values().all(|n| *n == 1));
    for o in objects(&read_units(&r)) {
        let crr = o.check_and_repair_results.as_ref().unwrap();
        assert_eq!(
            crr["post-repair-results"]["results"]["healthy"], true,
            "{:?}",
            o.path
        );
    }
    // Deep-check with -o, killed and resumed: the healthy tree, each object once.
    let d = dir.path().join("dc.ndjson");
    let code = kill_and_resume(
        &[
            "deep-check".into(),
            "-q".into(),
            "--list-jobs".into(),
            "2".into(),
            "-j".into(),
            "2".into(),
            "--raw".into(),
            root.clone(),
        ],
        &d,
        &proxy,
        None,
    );
    assert_eq!(code, 0, "everything was repaired");
    assert_each_once(&d, &want);
    assert!(objects(&read_units(&d))
        .iter()
        .all(|o| o.check_results.as_ref().unwrap()["results"]["healthy"] == true));
}

#[test]
fn a_gateway_lost_mid_run_is_resumed_from_the_checkpoint() {
    let g = grid();
    let (root, want) = big_tree("resume-lost", 2, 4, 3);
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.ndjson");
    let proxy = Proxy::start(&g.gateway_url());
    proxy.delay(40);
    let mut c = steward();
    c.args([
        "manifest",
        "-q",
        "-j",
        "1",
        "--retries",
        "1",
        &root,
        "-o",
        m.to_str().unwrap(),
        "--gateway",
        &proxy.url,
    ]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    drop(proxy); // the gateway goes away: connections refused
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("gateway"), "{err}");
    let (code, _, err) = run(stw(&["manifest", "-q", &root, "-o", m.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert_each_once(&m, &want);
}

#[test]
fn ctrl_c_stops_cleanly_and_the_run_resumes() {
    let g = grid();
    let (root, want) = big_tree("resume-sigint", 2, 4, 3);
    let proxy = Proxy::start(&g.gateway_url());
    proxy.delay(40);
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.ndjson");
    let mut c = steward();
    c.args([
        "manifest",
        "-q",
        "-j",
        "1",
        &root,
        "-o",
        m.to_str().unwrap(),
        "--gateway",
        &proxy.url,
    ]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // Once a listing has been answered (with -j 1 the third request, after
    // the probe and the root's listing, is sent only then), however long
    // that took on a busy grid.
    let t0 = Instant::now();
    while proxy.requests() < 3 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    let partial = path_counts(&m).len();
    assert!(
        partial > 0 && partial < want.len(),
        "stopped in the middle: {partial} of {}",
        want.len()
    );
    let (code, _, err) = run(stw(&["manifest", "-q", &root, "-o", m.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert_each_once(&m, &want);
}
