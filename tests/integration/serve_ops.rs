//! `steward serve`'s operations that survive the connection (issue 12,
//! phase 2): `/steward/v1/operations` on the real grid, its client
//! (`steward deep-check|manifest --server URL`), connections cut under it,
//! and the service killed with kill -9 under a running operation.

use crate::common::*;
use crate::proxy::{Cutter, Proxy};
use crate::serve::{metric, Serve};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `POST /steward/v1/operations` with `body`: (status, text).
fn post(url: &str, body: &str) -> (u16, String) {
    let r = client()
        .post(format!("{url}steward/v1/operations"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Start an operation; its id.
fn start(url: &str, body: Value) -> String {
    let (st, text) = post(url, &body.to_string());
    assert_eq!(st, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// `GET /steward/v1/operations/{rest}`, which must answer 200.
fn get_ok(url: &str, rest: &str) -> reqwest::blocking::Response {
    let r = client()
        .get(format!("{url}steward/v1/operations{rest}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{rest}");
    r
}

fn status(url: &str, id: &str) -> Value {
    get_ok(url, &format!("/{id}")).json().unwrap()
}

/// Wait until the operation's state is not `running`; its status.
fn wait_end(url: &str, id: &str, limit: Duration) -> Value {
    let t = Instant::now();
    loop {
        let s = status(url, id);
        if s["state"] != "running" {
            return s;
        }
        assert!(t.elapsed() < limit, "still running: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The units of an operation from line `from`, to the end of the stream.
fn units_from(url: &str, id: &str, from: u64) -> String {
    get_ok(url, &format!("/{id}/units?from={from}"))
        .text()
        .unwrap()
}

/// Every object exactly once (by storage index, or path for LIT), the
/// stats unit last; the objects by key.
fn once(text: &str) -> BTreeMap<String, steward::unit::ObjectUnit> {
    let us = units(text);
    stats(&us);
    let objs = objects(&us);
    let keyed = by_object(&objs);
    assert_eq!(keyed.len(), objs.len(), "an object twice: {text}");
    keyed
}

/// The same objects with the same health as a standalone run's.
fn same_as(served: &str, standalone: &str) {
    let (a, b) = (once(served), once(standalone));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the objects of the standalone run"
    );
    let h = |t: &str| {
        by_object(&objects(&units(t)))
            .into_iter()
            .map(|(k, o)| (k, o.check_results.map(|c| c.summary().healthy)))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(h(served), h(standalone), "the same health");
}

fn standalone(args: &[&str]) -> String {
    let (code, out, err) = run(stw(args));
    assert!(code == 0 || code == 1, "{err}");
    out
}

/// A gateway that answers slowly, so that operations take seconds.
fn slow_gateway(ms: u64) -> Proxy {
    let p = Proxy::start(&grid().gateway_url());
    p.delay(ms);
    p
}

const SLOW: &[&str] = &["--jobs", "1", "--list-jobs", "1", "--fixed-jobs"];

fn args<'a>(state: &'a Path, more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--state", state.to_str().unwrap()];
    v.extend_from_slice(more);
    v
}

/// A damaged tree, a gateway answering after `ms`, and a serve with a
/// state directory in front of it.
fn slow_setup(name: &str, ms: u64) -> (Tree, Proxy, tempfile::TempDir, Serve) {
    let tree = build_damaged_tree(grid(), name);
    let p = slow_gateway(ms);
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(&p.url, &args(state.path(), SLOW));
    (tree, p, state, serve)
}

#[test]
fn two_operations_at_once_give_every_unit_once() {
    let (tree, _p, state, serve) = slow_setup("ops-two", 150);
    let m = start(&serve.url, json!({"root": tree.root, "kind": "manifest"}));
    let d = start(
        &serve.url,
        json!({"root": tree.root, "kind": "deep-check", "options": {"verify": true}}),
    );
    assert_ne!(m, d);
    // Both run at once: each has its stages and its own requests.
    let (sm, sd) = (status(&serve.url, &m), status(&serve.url, &d));
    assert_eq!(
        (sm["state"].as_str(), sd["state"].as_str()),
        (Some("running"), Some("running")),
        "{sm}\n{sd}"
    );
    assert_eq!(sm["kind"], "manifest");
    assert_eq!(sd["options"]["verify"], true);
    assert!(
        !sd["root"].as_str().unwrap().contains(&tree.root[12..]),
        "the root is redacted"
    );
    // Read both as they run (the deep check from its start, following).
    let reader = {
        let (url, d) = (serve.url.clone(), d.clone());
        std::thread::spawn(move || units_from(&url, &d, 0))
    };
    let manifest = units_from(&serve.url, &m, 0);
    let deep = reader.join().unwrap();
    let (sm, sd) = (
        wait_end(&serve.url, &m, Duration::from_secs(60)),
        wait_end(&serve.url, &d, Duration::from_secs(60)),
    );
    assert_eq!(sm["state"], "completed", "{sm}");
    assert_eq!(sd["state"], "completed", "{sd}");
    let sa_manifest = standalone(&["manifest", &tree.root]);
    let sa_deep = standalone(&["deep-check", &tree.root, "--verify", "--raw"]);
    same_as(&manifest, &sa_manifest);
    same_as(&deep, &sa_deep);
    // Status: units and counts by result, the stages' reports.
    assert_eq!(sd["units"].as_u64().unwrap() as usize, deep.lines().count());
    assert_eq!(sd["counts"]["unrecoverable"].as_u64(), Some(2), "{sd}");
    assert!(sd["counts"]["healthy"].as_u64().unwrap() > 0, "{sd}");
    let stages: Vec<&str> = sd["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["traverse", "check"]);
    assert!(sd["stages"][1]["objects"].as_u64().unwrap() > 0);
    assert!(sd["stages"][1]["rate"].as_f64().is_some());
    // From the middle: exactly the rest.
    let all: Vec<&str> = deep.lines().collect();
    let rest = units_from(&serve.url, &d, 5);
    assert_eq!(rest.lines().collect::<Vec<_>>(), all[5..]);
    // Metrics: operations by kind and outcome, objects by result.
    let text = serve.metrics();
    for kind in ["manifest", "deep-check"] {
        assert_eq!(
            metric(&text, &format!("steward_serve_operations_finished_total{{kind=\"{kind}\",outcome=\"completed\"}}")),
            1,
            "{text}"
        );
        assert_eq!(
            metric(
                &text,
                &format!("steward_serve_operations_running{{kind=\"{kind}\"}}")
            ),
            0
        );
    }
    assert_eq!(
        metric(
            &text,
            "steward_serve_objects_total{kind=\"deep-check\",result=\"unrecoverable\"}"
        ),
        2,
        "{text}"
    );
    // The units are in the state directory, private.
    let f = state
        .path()
        .join("operations")
        .join(&d)
        .join("units.ndjson");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No cap whole in the log.
    let log = serve.log();
    for cap in tree.caps.values().filter(|c| !c.starts_with("URI:LIT:")) {
        assert!(!log.contains(cap.as_str()), "a cap in the log: {log}");
    }
}

#[test]
fn a_client_cut_three_times_reconnects_and_writes_every_unit_once() {
    let (tree, p, _state, serve) = slow_setup("ops-cut", 400);
    let cutter = Cutter::start(&serve.addr);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("dc.ndjson");
    let mut c = steward();
    c.args([
        "deep-check",
        "--server",
        &cutter.url(),
        &tree.root,
        "--raw",
        "-o",
    ])
    .arg(&file)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // Cut three times, each time once the client reconnected and more
    // units reached it (the output comes in committed batches).
    let t = Instant::now();
    let accepted = || cutter.accepted.load(std::sync::atomic::Ordering::SeqCst);
    let mut cuts = vec![];
    let (mut lines, mut conns) = (1, 0);
    for _ in 0..3 {
        while cutter.lines() <= lines || accepted() <= conns {
            assert!(t.elapsed() < Duration::from_secs(120), "no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        cutter.cut();
        (lines, conns) = (cutter.lines(), accepted());
        cuts.push(lines);
    }
    // The walk was not over at the last cut.
    let requests_at_last_cut = p.requests();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "findings (the tree is damaged): {err}"
    );
    let served = std::fs::read_to_string(&file).unwrap();
    same_as(&served, &standalone(&["deep-check", &tree.root, "--raw"]));
    assert!(
        p.requests() > requests_at_last_cut,
        "cut after the end: {cuts:?}"
    );
    // It reconnected (at least three times) from where it stopped.
    assert!(accepted() >= 4, "{cuts:?}");
    let resumed = serve
        .log()
        .lines()
        .filter(|l| l.contains("/units?from=") && !l.contains("/units?from=0"))
        .count();
    assert!(resumed >= 3, "{}", serve.log());
    // Run again: the file is complete, nothing is added.
    let (code, _, err) = run({
        let mut c = steward();
        c.args([
            "deep-check",
            "--server",
            &serve.url,
            &tree.root,
            "--raw",
            "-o",
        ])
        .arg(&file);
        c
    });
    assert_eq!(code, 1, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), served);
    // Another root into the same file is refused.
    let (code, _, err) = run({
        let mut c = steward();
        c.args([
            "deep-check",
            "--server",
            &serve.url,
            tree.cap("a"),
            "--raw",
            "-o",
        ])
        .arg(&file);
        c
    });
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("belongs to another operation"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains(&tree.root), "{err}");
}

#[test]
fn serve_killed_mid_operation_resumes_after_restart_with_every_unit_once() {
    let (tree, p, state, serve) = slow_setup("ops-kill", 400);
    let addr = serve.addr.clone();
    let url = serve.url.clone();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("m.ndjson");
    let mut c = steward();
    c.args(["deep-check", "--server", &url, &tree.root, "--raw", "-o"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // Wait for a few committed units, then kill -9.
    let t = Instant::now();
    let id = loop {
        assert!(t.elapsed() < Duration::from_secs(60), "no units");
        let list: Value = get_ok(&url, "").json().unwrap();
        if let Some(op) = list.as_array().and_then(|a| a.first()) {
            if op["units"].as_u64().unwrap_or(0) >= 3 {
                assert_eq!(op["state"], "running", "{op}");
                break op["id"].as_str().unwrap().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    unsafe {
        libc::kill(serve.pid() as i32, libc::SIGKILL);
    }
    drop(serve);
    std::thread::sleep(Duration::from_secs(1));
    // The same address and state: the client reconnects by itself.
    let mut more = args(state.path(), SLOW);
    more.extend_from_slice(&["--listen", &addr]);
    let serve = Serve::start(&p.url, &more);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "findings (the tree is damaged): {err}\n{}",
        serve.log()
    );
    let s = status(&serve.url, &id);
    assert_eq!(s["state"], "completed", "{s}");
    assert!(serve.log().contains("resuming"), "{}", serve.log());
    let served = std::fs::read_to_string(&file).unwrap();
    let sa = standalone(&["deep-check", &tree.root, "--raw"]);
    same_as(&served, &sa);
    // The server's own copy is whole too.
    same_as(&units_from(&serve.url, &id, 0), &sa);
}

#[test]
fn delete_cancels_an_operation_and_finished_ones_expire() {
    let g = grid();
    let tree = build_tree(g, "ops-cancel");
    let p = slow_gateway(1000);
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &p.url,
        &args(
            state.path(),
            &[
                "--keep-finished",
                "3s",
                "--jobs",
                "1",
                "--list-jobs",
                "1",
                "--fixed-jobs",
            ],
        ),
    );
    let id = start(&serve.url, json!({"root": tree.root, "kind": "deep-check"}));
    let reader = {
        let (url, id) = (serve.url.clone(), id.clone());
        std::thread::spawn(move || units_from(&url, &id, 0))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let r = client()
        .delete(format!("{}steward/v1/operations/{id}", serve.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let t = Instant::now();
    let s = wait_end(&serve.url, &id, Duration::from_secs(10));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(s["state"], "cancelled", "{s}");
    // Its units stream ends, and the walk stopped.
    let partial = reader.join().unwrap();
    assert!(partial.lines().count() < tree.caps.len(), "{partial}");
    let before = p.requests();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(p.requests(), before, "requests after the cancel");
    let text = serve.metrics();
    assert_eq!(
        metric(
            &text,
            "steward_serve_operations_finished_total{kind=\"deep-check\",outcome=\"cancelled\"}"
        ),
        1,
        "{text}"
    );
    // Kept for --keep-finished, then removed with its files.
    let dir = state.path().join("operations").join(&id);
    let t = Instant::now();
    loop {
        let r = client()
            .get(format!("{}steward/v1/operations/{id}", serve.url))
            .send()
            .unwrap();
        if r.status().as_u16() == 404 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "not removed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!dir.exists(), "its files are removed");
    // A finished operation is removed at once by DELETE.
    p.delay(0);
    let id = start(
        &serve.url,
        json!({"root": tree.cap("a"), "kind": "manifest"}),
    );
    wait_end(&serve.url, &id, Duration::from_secs(60));
    let r = client()
        .delete(format!("{}steward/v1/operations/{id}", serve.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(!state.path().join("operations").join(&id).exists());
}

#[test]
fn malformed_operation_requests_get_400_one_line_and_unknown_ids_404() {
    let g = grid();
    let tree = build_tree(g, "ops-refuse");
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(&g.gateway_url(), &args(state.path(), &[]));
    let one_line = |st: u16, text: &str, want: u16, has: &str| {
        assert_eq!(st, want, "{text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
        assert!(text.contains(has), "{text}");
        assert!(!text.contains(&tree.root[12..]), "a cap echoed: {text}");
    };
    let root = &tree.root;
    for (body, has) in [
        ("not json".to_string(), "not JSON"),
        ("[1]".into(), "JSON object"),
        (
            json!({"kind": "manifest"}).to_string(),
            "\"root\" is missing",
        ),
        (json!({"root": root}).to_string(), "\"kind\" is missing"),
        (
            json!({"root": root, "kind": "walk"}).to_string(),
            "\"manifest\" or \"deep-check\"",
        ),
        (
            json!({"root": root, "kind": "manifest", "options": {"repair": true}}).to_string(),
            "not of a manifest",
        ),
        (
            json!({"root": root, "kind": "deep-check", "options": {"verify": "yes"}}).to_string(),
            "options.verify must be true or false",
        ),
        (
            json!({"root": root, "kind": "deep-check", "options": {"fast": true}}).to_string(),
            "unknown option",
        ),
        (
            json!({"root": root, "kind": "manifest", "extra": root}).to_string(),
            "unknown field",
        ),
        (
            json!({"root": "tahoe:", "kind": "manifest"}).to_string(),
            "must be a cap",
        ),
        (
            json!({"root": format!("{root}/no-such-child"), "kind": "manifest"}).to_string(),
            "no-such-child",
        ),
    ] {
        let (st, text) = post(&serve.url, &body);
        one_line(st, &text, 400, has);
    }
    // A body over the limit.
    let (st, text) = post(
        &serve.url,
        &format!("{{\"root\": \"{}\"}}", "x".repeat(100_000)),
    );
    one_line(st, &text, 413, "at most");
    // Unknown ids, and a bad from=.
    let get = |path: &str| {
        let r = client()
            .get(format!("{}steward/v1/operations/{path}", serve.url))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    for path in ["0123456789abcdef", "0123456789abcdef/units", "no-such-id"] {
        let (st, text) = get(path);
        one_line(st, &text, 404, "steward serve: no ");
    }
    let id = start(&serve.url, json!({"root": tree.root, "kind": "manifest"}));
    let (st, text) = get(&format!("{id}/units?from=x"));
    one_line(st, &text, 400, "from must be a line number");
    wait_end(&serve.url, &id, Duration::from_secs(60));
    let (st, text) = get(&format!("{id}/units?from=100000"));
    one_line(st, &text, 416, "past the end");
    // Without --state: 503, saying what to do.
    let plain = Serve::start(&g.gateway_url(), &[]);
    let (st, text) = post(
        &plain.url,
        &json!({"root": root, "kind": "manifest"}).to_string(),
    );
    one_line(st, &text, 503, "--state DIR");
    // A second serve on the same state is refused.
    let e = Serve::try_start(&g.gateway_url(), &args(state.path(), &[]))
        .err()
        .unwrap();
    assert!(e.contains("in use by another steward serve"), "{e}");
}

#[test]
fn the_client_needs_the_token_of_a_protected_serve() {
    let g = grid();
    let tree = build_tree(g, "ops-token");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &g.gateway_url(),
        &args(state.path(), &["--token-file", token.to_str().unwrap()]),
    );
    let (code, _, err) = run({
        let mut c = steward();
        c.args(["manifest", "--server", &serve.url, &tree.root]);
        c
    });
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("401") && err.contains("Bearer"), "{err}");
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["manifest", "--server", &serve.url, "--token-file"])
            .arg(&token)
            .arg(&tree.root);
        c
    });
    assert_eq!(code, 0, "{err}");
    same_as(&out, &standalone(&["manifest", &tree.root]));
}

#[test]
fn sigterm_stops_operations_at_a_checkpoint_and_the_next_start_resumes_them() {
    let (tree, p, state, mut serve) = slow_setup("ops-term", 300);
    let id = start(&serve.url, json!({"root": tree.root, "kind": "deep-check"}));
    let t = Instant::now();
    while status(&serve.url, &id)["units"].as_u64().unwrap() < 2 {
        assert!(t.elapsed() < Duration::from_secs(60), "no units");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = units_from_now(&serve.url, &id);
    let t = Instant::now();
    unsafe {
        libc::kill(serve.pid() as i32, libc::SIGTERM);
    }
    let st = serve
        .wait_exit(Duration::from_secs(10))
        .expect("serve exits after SIGTERM");
    assert!(st.success(), "{st}: {}", serve.log());
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t.elapsed()
    );
    // Not finished: the next start resumes it; what was served stays.
    let serve = Serve::start(&p.url, &args(state.path(), SLOW));
    let s = wait_end(&serve.url, &id, Duration::from_secs(120));
    assert_eq!(s["state"], "completed", "{s}\n{}", serve.log());
    let all = units_from(&serve.url, &id, 0);
    assert!(
        all.starts_with(&before),
        "lines served before the stop changed"
    );
    same_as(&all, &standalone(&["deep-check", &tree.root, "--raw"]));
}

/// The committed units of a running operation, without following it: the
/// lines its status counts now.
fn units_from_now(url: &str, id: &str) -> String {
    let n = status(url, id)["units"].as_u64().unwrap() as usize;
    let mut r = get_ok(url, &format!("/{id}/units?from=0"));
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    use std::io::Read;
    while text.lines().count() < n || !text.ends_with('\n') {
        let k = r.read(&mut buf).unwrap();
        assert!(k > 0);
        text.push_str(&String::from_utf8_lossy(&buf[..k]));
    }
    text.lines().take(n).map(|l| format!("{l}\n")).collect()
}
