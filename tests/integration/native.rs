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
