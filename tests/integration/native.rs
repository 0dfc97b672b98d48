//! `--backend native`: checks straight against the storage servers (issue 5),
//! through the command line. The crate's own tests (crates/native/tests)
//! compare every field for every object kind and state; these check the
//! wiring: least authority, no gateway needed, same results as the gateway,
//! lease secret required up front.

use crate::common::*;
use serde_json::Value;

/// A node directory holding only what an auditor has: the introducer's
/// server list (and, when asked, the lease secret). No node.url: no gateway.
fn auditor_dir(with_secret: bool) -> tempfile::TempDir {
    let g = grid();
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("private")).unwrap();
    let cache = "private/introducer_default_cache.yaml";
    std::fs::copy(g.gateway_dir().join(cache), d.path().join(cache)).unwrap();
    if with_secret {
        std::fs::copy(
            g.gateway_dir().join("private/secret"),
            d.path().join("private/secret"),
        )
        .unwrap();
    }
    d
}

/// Results with their server lists sorted, for comparison.
fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(r) = v.get_mut("results").and_then(Value::as_object_mut) {
        if let Some(Value::Array(a)) = r.get_mut("servers-responding") {
            a.sort_by_key(|x| x.to_string());
        }
        if let Some(Value::Object(m)) = r.get_mut("sharemap") {
            let sorted: serde_json::Map<String, Value> = {
                let mut e: Vec<_> = m.clone().into_iter().collect();
                e.sort_by(|a, b| a.0.cmp(&b.0));
                e.into_iter().collect()
            };
            *m = sorted;
        }
    }
    v
}

#[test]
fn a_verify_cap_manifest_is_audited_with_no_gateway_and_matches_it() {
    let g = grid();
    let tree = build_damaged_tree(g, "native-audit");
    let dir = tempfile::tempdir().unwrap();
    let vman = dir.path().join("v.ndjson");
    run(stw(&[
        "manifest",
        "-q",
        "--caps",
        "verify",
        &tree.root,
        "-o",
        vman.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&vman).unwrap();
    assert!(
        !text.contains("URI:CHK:") && !text.contains("-RO:"),
        "only verify caps"
    );
    let auditor = auditor_dir(false);
    let mut c = steward();
    c.args([
        "check",
        "-q",
        "--backend",
        "native",
        "-d",
        auditor.path().to_str().unwrap(),
        vman.to_str().unwrap(),
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 1, "unhealthy objects: {err}");
    let native_units = objects(&units(&out));
    let native = by_object(&native_units);
    // The same objects through the gateway, with read caps.
    let rman = dir.path().join("r.ndjson");
    run(stw(&[
        "manifest",
        "-q",
        &tree.root,
        "-o",
        rman.to_str().unwrap(),
    ]));
    let (_, gout, _) = run(stw(&["check", "-q", rman.to_str().unwrap()]));
    let gateway = by_object(&objects(&units(&gout)));
    assert_eq!(native.len(), gateway.len());
    for (path, n) in &native {
        let gw = gateway
            .get(path)
            .unwrap_or_else(|| panic!("{path} ({:?}) not checked through the gateway", n.path));
        let nr = n
            .check_results
            .as_ref()
            .unwrap_or_else(|| panic!("{path}: {:?}", n.error));
        let gr = gw.check_results.as_ref().unwrap();
        assert_eq!(normalized(nr.json()), normalized(gr.json()), "{path}");
    }
    assert_eq!(
        by_path(&native_units)["a/chk1"]
            .check_results
            .as_ref()
            .unwrap()["results"]["recoverable"],
        false
    );
}

#[test]
fn add_lease_needs_the_lease_secret_before_any_work() {
    let g = grid();
    let tree = build_tree(g, "native-lease");
    let dir = tempfile::tempdir().unwrap();
    let vman = dir.path().join("v.ndjson");
    run(stw(&[
        "manifest",
        "-q",
        "--caps",
        "verify",
        &tree.root,
        "-o",
        vman.to_str().unwrap(),
    ]));
    let out = dir.path().join("out.ndjson");
    let no_secret = auditor_dir(false);
    let mut c = steward();
    c.args([
        "check",
        "-q",
        "--add-lease",
        "--backend",
        "native",
        "-d",
        no_secret.path().to_str().unwrap(),
        vman.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let (code, _, err) = run(c);
    assert_eq!(code, 2);
    assert!(err.contains("lease secret"), "{err}");
    assert!(!out.exists(), "refused before any work");
    // With the secret: renewed, and the results are those of a check.
    let with_secret = auditor_dir(true);
    let mut c = steward();
    c.args([
        "check",
        "-q",
        "--add-lease",
        "--backend",
        "native",
        "-d",
        with_secret.path().to_str().unwrap(),
        vman.to_str().unwrap(),
    ]);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), tree.caps.len());
    assert!(objs
        .iter()
        .all(|o| o.error.is_none() && o.check_results.is_some()));
}

#[test]
fn deep_check_with_native_checks_reports_like_the_gateway() {
    let g = grid();
    let tree = build_damaged_tree(g, "native-deep");
    let (gcode, gout, _) = run(stw(&["deep-check", &tree.root]));
    let mut c = stw(&[
        "deep-check",
        "--backend",
        "native",
        "-d",
        g.gateway_dir().to_str().unwrap(),
        &tree.root,
    ]);
    c.env_remove("STEWARD_GATEWAY");
    let (ncode, nout, err) = run(c);
    assert_eq!(ncode, gcode, "{err}");
    let done = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("done:"))
            .map(str::to_string)
    };
    assert_eq!(done(&nout), done(&gout));
    assert!(nout.contains("a/chk1: unrecoverable"), "{nout}");
}

#[test]
fn a_storage_server_stopped_mid_run_is_not_responding_and_the_run_completes() {
    // Its own grid: stopping a server must not disturb the other tests.
    let g = steward_testgrid::Grid::start(steward_testgrid::GridConfig::default()).unwrap();
    let t = tag("native-stop");
    let caps: Vec<String> = (0..10)
        .map(|i| {
            g.upload(format!("{t} {i} {}", "q".repeat(500)).as_bytes(), "CHK")
                .unwrap()
        })
        .collect();
    // The same caps many times over: a long run on a small grid.
    let list: String = (0..150)
        .flat_map(|_| caps.iter().map(|c| format!("{c}\n")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "caps.txt", &list);
    let mut c = steward();
    c.args([
        "check",
        "-q",
        "--backend",
        "native",
        "-j",
        "1",
        "--per-server",
        "1",
        "-d",
        g.gateway_dir().to_str().unwrap(),
        &input,
    ]);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    g.stop_storage_node(2).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "unhealthy after the stop, but the run completed: {err}"
    );
    let objs = objects(&units(&String::from_utf8_lossy(&o.stdout)));
    assert_eq!(objs.len(), 1500, "every input line has its unit");
    assert!(objs.iter().all(|o| o.error.is_none()), "no unit failed");
    let responding = |o: &steward::unit::ObjectUnit| {
        o.check_results.as_ref().unwrap()["results"]["servers-responding"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(responding(&objs[0]), 5, "before the stop");
    assert_eq!(
        responding(objs.last().unwrap()),
        4,
        "after the stop: counted as not responding"
    );
    let last = &objs.last().unwrap().check_results.as_ref().unwrap()["results"];
    assert_eq!(last["healthy"], false);
}

/// Issue 9: the check checkpoint's identity left out `--backend`, so a run
/// interrupted with one backend and resumed with the other wrote gateway
/// and native results into one output. It is refused now, and the same
/// backend resumes.
#[test]
fn a_check_resumed_with_another_backend_is_refused() {
    let g = grid();
    let tree = build_tree(g, "native-resume-backend");
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("m.ndjson");
    let out = dir.path().join("c.ndjson");
    let (code, _, err) = run(stw(&[
        "manifest",
        "-q",
        &tree.root,
        "-o",
        man.to_str().unwrap(),
    ]));
    assert!(code <= 1, "{err}");
    // A gateway slow enough that the check is stopped part-way.
    let proxy = crate::proxy::Proxy::start(&g.gateway_url());
    proxy.delay(300);
    let mut c = steward();
    c.args(["check", "-q", "-j", "1", man.to_str().unwrap(), "-o"])
        .arg(&out)
        .arg("--gateway")
        .arg(&proxy.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) == 0
        && t0.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(1200));
    child.kill().unwrap();
    child.wait().unwrap();
    let native = stw(&[
        "check",
        "-q",
        "--backend",
        "native",
        "-d",
        g.gateway_dir().to_str().unwrap(),
        man.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let (code, _, err) = run(native);
    assert_eq!(code, 2, "refused: {err}");
    assert!(err.contains("belongs to another run"), "{err}");
    assert!(err.contains("native") && err.contains("gateway"), "{err}");
    let (code, _, err) = run(stw(&[
        "check",
        "-q",
        man.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(code <= 1, "the same backend resumes: {err}");
}

/// Issue 10: with `--backend native`, a storage server stopped mid-run
/// left hundreds of objects "unhealthy" with no word that a server had
/// stopped answering. It is said once, when it happens, and again in the
/// summary, naming the server and since when.
#[test]
fn a_storage_server_that_stops_answering_is_named() {
    // A grid of its own: a stopped server would damage other tests' runs.
    let g = steward_testgrid::Grid::start(steward_testgrid::GridConfig {
        storage_nodes: 4,
        needed: 2,
        happy: 2,
        total: 4,
        gateways: 1,
        ..Default::default()
    })
    .expect("start a grid");
    let t = tag("native-outage");
    let caps: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..40)
            .map(|i| {
                let (t, g) = (&t, &g);
                s.spawn(move || {
                    g.upload(format!("{t} {i} {}", "o".repeat(100)).as_bytes(), "CHK")
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("caps.txt");
    // Each cap many times over, so the run lasts while the server stops.
    let text: String = (0..150)
        .flat_map(|_| caps.iter().map(|c| format!("{c}\n")))
        .collect();
    std::fs::write(&list, text).unwrap();
    let mut c = steward();
    c.args(["check", "-q", "-j", "2", "--backend", "native", "-d"])
        .arg(g.gateway_dir())
        .arg(&list)
        .arg("--gateway")
        .arg(g.gateway_url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    g.stop_storage_node(3).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "unhealthy from then on: {err}");
    let server = |l: &str| l.contains("stopped answering") || l.contains("did not answer from");
    assert!(
        err.lines().any(|l| l.contains("stopped answering")),
        "said when it happens: {err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("did not answer from") && l.contains("to the end of the run")),
        "and in the summary: {err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("stopped answering"))
            .count(),
        1,
        "once: {err}"
    );
    assert!(
        err.lines()
            .filter(|l| server(l))
            .all(|l| l.contains("v0-") || l.contains("spki-")),
        "{err}"
    );
}

// ------------------------------------------------- native reads (issue 13)

/// `steward ARGS --backend native -d AUDITOR`: no gateway configured
/// anywhere (the auditor directory holds only the introducer's server
/// list; `steward()` clears STEWARD_GATEWAY).
fn native_run(auditor: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let mut c = steward();
    c.args(args)
        .args(["--backend", "native", "-d"])
        .arg(auditor.path());
    run(c)
}

#[test]
fn native_manifest_with_no_gateway_is_tahoes_stream_manifest() {
    let g = grid();
    let tree = build_tree(g, "native-manifest");
    let auditor = auditor_dir(false);
    let tahoe = tahoe_stream(&tree.root, "stream-manifest");
    // One listing in flight, write caps: Tahoe's walk, byte for byte.
    let (code, out, err) = native_run(
        &auditor,
        &["manifest", "-q", "-j", "1", "--caps", "write", &tree.root],
    );
    assert_eq!(code, 0, "{err}");
    let ts = assert_tahoe_lines_but_stats(&out, &tahoe);
    // The stats unit: every key of Tahoe's, directory byte sizes included.
    let os = stats(&units(&out));
    assert_eq!(os, ts, "stats");
    assert!(os["size-directories"].as_u64().unwrap() > 0);
    assert_eq!(objects(&units(&out)).len(), tree.caps.len());

    // Parallel, read caps: the units the gateway traversal writes.
    let (code, nout, err) = native_run(&auditor, &["manifest", "-q", &tree.root]);
    assert_eq!(code, 0, "{err}");
    let (code, gout, err) = run(stw(&["manifest", "-q", &tree.root]));
    assert_eq!(code, 0, "{err}");
    // An object reached by two paths (the shared directory and what is
    // under it) is written under whichever the walk took first.
    let sorted = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|u| u["type"] != "stats")
            .map(|mut u| {
                if u["storage-index"] != "" {
                    u.as_object_mut().unwrap().remove("path");
                }
                u.to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&nout), sorted(&gout));
    let (ns, gs) = (stats(&units(&nout)), stats(&units(&gout)));
    for (k, v) in gs.as_object().unwrap() {
        if v.is_null() {
            // What a gateway listing cannot say.
            assert_eq!(ns[k], ts[k], "{k}");
        } else {
            assert_eq!(&ns[k], v, "{k}");
        }
    }
}

/// The server id of storage node `i`, as check results name it.
fn server_id(i: usize) -> String {
    let k = std::fs::read_to_string(grid().storage_dir(i).join("node.pubkey")).unwrap();
    k.trim().trim_start_matches("pub-").to_string()
}

/// Flips a byte of the first block of share `shnum` of `si` (on the first
/// node holding it), as only a verify sees; returns (server id, shnum).
fn corrupt_first_block(si: &str, shnum: u32) -> (String, u64) {
    let s = grid()
        .shares(si)
        .into_iter()
        .find(|s| s.shnum == shnum)
        .expect("the share");
    let mut d = std::fs::read(&s.path).unwrap();
    let (base, at) = if d.starts_with(b"Tahoe mutable container v") {
        let h = steward_format::mutable::MutableHeader::parse(&d[468..]).unwrap();
        (468, h.regions.share_data.start)
    } else {
        let h = steward_format::chk::ChkHeader::parse(&d[12..]).unwrap();
        (12, h.data)
    };
    d[base + at as usize + 20] ^= 0x55;
    std::fs::write(&s.path, d).unwrap();
    (server_id(s.node), u64::from(shnum))
}

type Locators = std::collections::BTreeSet<(String, String, u64)>;

fn locators(check_results: &serde_json::Value) -> Locators {
    check_results["results"]["list-corrupt-shares"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x[0].as_str().unwrap().to_string(),
                        x[1].as_str().unwrap().to_string(),
                        x[2].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn native_reads_on_the_damaged_tree_with_no_gateway() {
    let g = grid();
    let tree = build_damaged_tree(g, "native-damaged");
    // More damage only a verify sees: a block of a directory's share (it
    // must still be listed, from the other shares) and of an MDMF file's.
    let mut want: Locators = Locators::new();
    for path in ["a", "b/mdmf"] {
        let (server, shnum) = corrupt_first_block(&tree.si(path), 0);
        want.insert((server, tree.si(path), shnum));
    }
    let auditor = auditor_dir(false);

    // The manifest: the unrecoverable directory is reported, the walk goes
    // on, the directory with a corrupt share is listed (and the corrupt
    // share named on stderr).
    let dir = tempfile::tempdir().unwrap();
    let vman = dir.path().join("v.ndjson");
    let (code, out, err) = native_run(
        &auditor,
        &[
            "manifest",
            "--caps",
            "verify",
            &tree.root,
            "-o",
            vman.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "a directory could not be listed: {out} {err}");
    assert!(err.contains("1 directories could not be listed"), "{err}");
    assert!(
        err.contains(&format!("share 0 of SI {}", tree.si("a"))) && err.contains("corrupt"),
        "the corrupt directory share is named: {err}"
    );
    let us = read_units(&vman);
    let paths = by_path(&objects(&us));
    assert_eq!(
        paths["broken"].error.as_ref().unwrap().code,
        "unrecoverable"
    );
    assert_eq!(paths.len(), tree.caps.len() - 1, "all but broken/inner");
    // The directory below the one with a corrupt share was listed: its
    // file, and its subdirectory, which is linked from `b` too (as
    // `b/shared-again`) and so is named by whichever path the parallel walk
    // reached first.
    let shared_si = tree.si("a/shared");
    assert!(
        paths.contains_key("a/chk2")
            && paths
                .iter()
                .any(|(p, o)| (p == "a/shared" || p == "b/shared-again")
                    && o.storage_index == shared_si),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );

    // check --verify: exactly the corrupt shares Tahoe's verifier finds.
    let (code, vout, err) = native_run(
        &auditor,
        &["check", "-q", "--verify", vman.to_str().unwrap()],
    );
    assert_eq!(code, 1, "unhealthy objects: {err}");
    let objs = objects(&units(&vout));
    let mut ours = Locators::new();
    for o in &objs {
        if let Some(r) = &o.check_results {
            ours.extend(locators(r.json()));
        }
    }
    want.insert((
        g.shares(&tree.si("a/chk2"))
            .first()
            .map(|s| server_id(s.node))
            .unwrap(),
        tree.si("a/chk2"),
        u64::from(g.shares(&tree.si("a/chk2"))[0].shnum),
    ));
    assert_eq!(ours, want);
    // Tahoe's deep-check --verify (its walk stops at the unrecoverable
    // directory: the objects it reached), then Tahoe's verify of each
    // object it did not reach.
    let mut tahoe = Locators::new();
    let mut reached = std::collections::BTreeSet::new();
    for l in tahoe_stream(&tree.root, "stream-deep-check&verify=true") {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) else {
            continue;
        };
        if let Some(si) = v["storage-index"].as_str() {
            reached.insert(si.to_string());
        }
        tahoe.extend(locators(&v["check-results"]));
    }
    for (path, cap) in &tree.caps {
        let c = steward_cap::Cap::parse(cap).unwrap();
        let Some(si) = c.storage_index() else {
            continue;
        };
        if reached.contains(&si.to_string()) || path.starts_with("broken") {
            continue;
        }
        tahoe.extend(locators(&g.check(cap, true).unwrap()));
    }
    assert_eq!(ours, tahoe, "the corrupt shares Tahoe's verifier finds");
    // Per object: the results of Tahoe's verify. Looked up by storage
    // index: the shared directory and what is below it are named by
    // whichever of its two paths the walk reached first.
    let by_si: std::collections::HashMap<String, &String> = tree
        .caps
        .values()
        .filter_map(|c| {
            let si = steward_cap::Cap::parse(c).ok()?.storage_index()?;
            Some((si.to_string(), c))
        })
        .collect();
    for o in &objs {
        let path = o.path.join("/");
        if path.starts_with("broken") || o.storage_index.is_empty() {
            continue;
        }
        let gw = g.check(by_si[&o.storage_index], true).unwrap();
        let r = o.check_results.as_ref().unwrap().json();
        assert_eq!(r["results"]["healthy"], gw["results"]["healthy"], "{path}");
        assert_eq!(r["summary"], gw["summary"], "{path}");
        assert_eq!(locators(r), locators(&gw), "{path}");
    }

    // deep-check --verify with no gateway: the same findings.
    let (code, dout, err) = native_run(&auditor, &["deep-check", "--verify", "--raw", &tree.root]);
    assert_eq!(code, 1, "{err}");
    let mut deep = Locators::new();
    for o in objects(&units(&dout)) {
        if let Some(r) = &o.check_results {
            deep.extend(locators(r.json()));
        }
    }
    assert_eq!(deep, want);
}
