//! `steward serve` (issue 12): the stock `tahoe` CLI pointed at it through
//! a node directory's `node.url`, against the real grid; Tahoe-style
//! clients that go away or read slowly; refusals.

use crate::common::*;
use crate::proxy::Proxy;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `steward serve`, killed when dropped.
pub struct Serve {
    pub url: String,
    pub addr: String,
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// `steward serve --gateway GATEWAY --listen 127.0.0.1:0 ARGS`.
    pub fn start(gateway: &str, args: &[&str]) -> Serve {
        Self::try_start(gateway, args).unwrap_or_else(|e| panic!("steward serve: {e}"))
    }

    pub fn try_start(gateway: &str, args: &[&str]) -> Result<Serve, String> {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("serve.stderr");
        let mut c = steward();
        c.args(["serve", "--gateway", gateway]);
        if !args.contains(&"--listen") {
            c.args(["--listen", "127.0.0.1:0"]);
        }
        c.args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = c.spawn().expect("spawn steward serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("steward serve: listening on ") else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            return Err(format!(
                "{status}: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ));
        };
        let url = url.to_string();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Ok(Serve {
            url,
            addr,
            child,
            stderr,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// A node directory holding only `node.url`, pointing here.
    pub fn node_dir(&self) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("node.url"), &self.url).unwrap();
        d
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::get(format!("{}{}", self.url, path.trim_start_matches('/'))).unwrap()
    }

    pub fn metrics(&self) -> String {
        self.get("steward/v1/metrics").text().unwrap()
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stock `tahoe` CLI of the test virtualenv, with node directory `nd`.
pub fn tahoe_at(nd: &Path) -> Command {
    let mut c = Command::new(grid().tahoe().get_program());
    c.arg("-d").arg(nd);
    c
}

/// A line of a metric (`name{labels} value`), or 0 when absent.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0)
}

/// Resident memory of a process, in KiB (`VmRSS`, or `VmHWM`, its peak).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A request exactly as the stock CLI sends it (`do_http`), on a raw
/// connection: the caller reads the answer (chunked) at its own pace.
pub fn tahoe_style_request(addr: &str, cap: &str, query: &str) -> TcpStream {
    send_tahoe_style(TcpStream::connect(addr).unwrap(), addr, cap, query)
}

fn send_tahoe_style(mut s: TcpStream, addr: &str, cap: &str, query: &str) -> TcpStream {
    let path = format!("/uri/{}?{query}", steward_testgrid::percent_encode(cap));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nHostname: 127.0.0.1\r\nUser-Agent: tahoe-lafs/1.20.0 (tahoe-client)\r\nAccept: text/plain, application/octet-stream\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    s
}

/// Decode a chunked HTTP/1.1 answer (head and body), leniently: enough to
/// read the lines of a stream.
pub fn dechunk(raw: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, mut rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (head.to_string(), rest.to_string());
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            body.push_str(&after[..after.len().min(n)]);
            break;
        }
        body.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    (head.to_string(), body)
}

#[test]
fn the_stock_cli_walks_the_damaged_tree_to_the_end_through_serve() {
    let g = grid();
    let tree = build_damaged_tree(g, "serve-damaged");
    let serve = Serve::start(&g.gateway_url(), &[]);
    let nd = serve.node_dir();
    // Every object but broken/inner (under the unrecoverable directory).
    let reachable: std::collections::BTreeSet<&str> = tree
        .caps
        .iter()
        .filter(|(p, _)| p.as_str() != "broken/inner")
        .map(|(_, c)| c.as_str())
        .collect();

    // tahoe manifest: every reachable object, and exit 0.
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["manifest", &tree.root]);
        c
    });
    assert_eq!(code, 0, "{out}\n{err}");
    let listed: std::collections::BTreeSet<&str> =
        out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(listed, reachable, "{out}");
    assert_eq!(out.lines().count(), reachable.len(), "each object once");
    // Against the gateway itself it stops at the unrecoverable directory.
    let (tcode, tout, terr) = run({
        let mut c = g.tahoe();
        c.args(["manifest", &tree.root]);
        c
    });
    assert_eq!(tcode, 1, "{tout}\n{terr}");
    assert!(terr.contains("ERROR: UnrecoverableFileError"), "{terr}");
    assert!(tout.lines().count() < reachable.len(), "{tout}");

    // tahoe deep-check: every object, the unrecoverable ones unhealthy.
    let n = reachable.len();
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["deep-check", &tree.root]);
        c
    });
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "done: {n} objects checked, {} healthy, 4 unhealthy",
            n - 4
        )),
        "a/chk0, sdmf, a/chk1 and broken: {out}\n{err}"
    );

    // tahoe deep-check --repair: to the end, repairing what can be.
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["deep-check", "--repair", &tree.root]);
        c
    });
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("done: {n} objects checked\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(" pre-repair: {} healthy, 4 unhealthy", n - 4)),
        "{out}"
    );
    assert!(
        out.contains(" 2 repairs attempted, 2 successful, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains(&format!(" post-repair: {} healthy, 2 unhealthy", n - 2)),
        "{out}"
    );
    for path in ["a/chk0", "sdmf"] {
        let after = g.check(tree.cap(path), false).unwrap();
        assert_eq!(
            after["results"]["healthy"], true,
            "{path} repaired: {after}"
        );
    }
    // Tahoe's own stops at the first unrecoverable object.
    let (_, tout, terr) = run({
        let mut c = g.tahoe();
        c.args(["deep-check", "--repair", &tree.root]);
        c
    });
    assert!(
        terr.contains("ERROR") && !tout.contains("done:"),
        "Tahoe 1.20 aborts: {tout}\n{terr}"
    );

    // What the service counted.
    let m = serve.metrics();
    assert_eq!(
        metric(
            &m,
            "steward_serve_operations_finished_total{kind=\"manifest\",outcome=\"completed\"}"
        ),
        1,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "steward_serve_objects_total{kind=\"deep-check-repair\",result=\"unrecoverable\"}"
        ),
        2,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "steward_serve_repairs_total{result=\"repair-successful\"}"
        ),
        2,
        "{m}"
    );
    // Every request logged, no cap in the log.
    let log = serve.log();
    assert!(log.contains("stream-deep-check"), "{log}");
    for cap in tree.caps.values() {
        let secret = cap.split(':').nth(2).unwrap();
        assert!(!log.contains(secret), "a cap in the log: {log}");
    }
}

/// `n` bytes that do not repeat (so Tahoe's convergence cannot share them).
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn put_get_ls_check_and_stats_pass_through_unchanged() {
    let g = grid();
    let serve = Serve::start(&g.gateway_url(), &[]);
    let nd = serve.node_dir();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let bytes = data(50 * 1024 * 1024, seed);
    std::fs::write(&src, &bytes).unwrap();
    let base_kib = memory_kib(serve.pid(), "VmRSS:");
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.arg("put").arg(&src);
        c
    });
    assert_eq!(code, 0, "{err}");
    let cap = out.trim().to_string();
    assert!(cap.starts_with("URI:CHK:"), "{out}");
    let back = dir.path().join("back");
    let (code, _, err) = run({
        let mut c = tahoe_at(nd.path());
        c.arg("get").arg(&cap).arg(&back);
        c
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "the same 50 MB back"
    );
    // Streamed, not held: the service's peak memory stayed far below the
    // file's size.
    let peak_kib = memory_kib(serve.pid(), "VmHWM:");
    assert!(
        peak_kib < base_kib + 25 * 1024,
        "peak RSS {peak_kib} KiB from {base_kib} KiB for a 50 MB upload and download"
    );
    let m = serve.metrics();
    assert!(
        metric(
            &m,
            "steward_serve_proxied_bytes_total{direction=\"to-gateway\"}"
        ) >= bytes.len() as u64,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "steward_serve_proxied_bytes_total{direction=\"from-gateway\"}"
        ) >= bytes.len() as u64,
        "{m}"
    );

    // A directory to list, check and count.
    let tree = build_tree(g, "serve-proxy");
    g.link(&tree.root, "big", &cap).unwrap();
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["ls", &tree.root]);
        c
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["a", "b", "big", "broken", "imm", "lit", "mdmf-dir", "sdmf"]
    );
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["check", &cap]);
        c
    });
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Healthy"), "{out}");
    // tahoe stats polls an ophandle (t=start-deep-stats, /operations/...).
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["stats", &tree.root]);
        c
    });
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, tout, _) = run({
        let mut c = g.tahoe();
        c.args(["stats", &tree.root]);
        c
    });
    assert!(out.contains("count-immutable-files:"), "{out}");
    assert_eq!(out, tout, "the same answer as the gateway's");
}

/// A tree whose deep check takes a while through a slow gateway.
fn slow_tree(g: &steward_testgrid::Grid) -> (Tree, Proxy) {
    let tree = build_tree(g, "serve-slow");
    let p = Proxy::start(&g.gateway_url());
    (tree, p)
}

#[test]
fn a_client_that_goes_away_stops_its_walk_within_a_second() {
    let g = grid();
    let (tree, p) = slow_tree(g);
    let serve = Serve::start(&p.url, &["--jobs", "1", "--list-jobs", "1", "--fixed-jobs"]);
    // Every gateway answer takes 3 s: after the hang-up nothing is written
    // for that long, so only the cancellation (not a failed write) can
    // stop the walk within the second.
    p.delay(3000);
    let before = p.requests();
    let mut s = tahoe_style_request(&serve.addr, &tree.root, "t=stream-deep-check");
    // Read until the first unit, then hang up.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&got).contains("{\"path\"") {
        assert!(Instant::now() < deadline, "no unit came");
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let at_close = p.requests() - before;
    std::thread::sleep(Duration::from_secs(1));
    let after_1s = p.requests() - before;
    std::thread::sleep(Duration::from_secs(3));
    let after_4s = p.requests() - before;
    assert_eq!(
        after_1s, after_4s,
        "requests to the gateway go on after the client left ({at_close} at close)"
    );
    // The whole walk needs a check per object that is not LIT, and listings.
    assert!(
        after_4s < (tree.caps.len() as u64) - 2,
        "the walk had not finished: {after_4s} requests"
    );
    let m = serve.metrics();
    assert_eq!(
        metric(
            &m,
            "steward_serve_operations_finished_total{kind=\"deep-check\",outcome=\"cancelled\"}"
        ),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "steward_serve_operations_running{kind=\"deep-check\"}"),
        0
    );
}

#[test]
fn sigterm_ends_running_streams_with_an_error_line_and_exits_soon() {
    let g = grid();
    let (tree, p) = slow_tree(g);
    let mut serve = Serve::start(&p.url, &["--jobs", "1", "--list-jobs", "1", "--fixed-jobs"]);
    p.delay(300);
    let mut s = tahoe_style_request(&serve.addr, &tree.root, "t=stream-deep-check");
    let reader = std::thread::spawn(move || {
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        raw
    });
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    unsafe {
        libc::kill(serve.pid() as i32, libc::SIGTERM);
    }
    let status = serve
        .wait_exit(Duration::from_secs(10))
        .expect("serve exits after SIGTERM");
    let took = start.elapsed();
    assert!(status.success(), "{status}: {}", serve.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let (_, body) = dechunk(&reader.join().unwrap());
    let last = body.lines().last().unwrap_or("");
    assert!(
        last.starts_with("ERROR: steward serve is shutting down"),
        "the stream says it did not finish: {body}"
    );
}

#[test]
fn refusals_are_one_line_and_tahoes_errors_pass_through() {
    let g = grid();
    let tree = build_tree(g, "serve-refusals");
    g.make_unrecoverable(&tree.si("broken")).unwrap();
    let serve = Serve::start(&g.gateway_url(), &["--log-format", "json"]);
    let client = reqwest::blocking::Client::new();
    let root = steward_testgrid::percent_encode(&tree.root);
    let post = |path: &str| client.post(format!("{}{path}", serve.url)).send().unwrap();
    let text_of = |r: reqwest::blocking::Response| {
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), ct, r.text().unwrap())
    };
    // A malformed argument: Tahoe's words, text/plain, one line.
    let (st, ct, body) = text_of(post(&format!(
        "uri/{root}?t=stream-deep-check&verify=maybe"
    )));
    assert_eq!(st, 400);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(body, "invalid boolean argument: b'maybe'\n");
    // A cap that does not parse.
    let (st, _, body) = text_of(post("uri/URI%3ACHK%3Aabc?t=stream-manifest"));
    assert_eq!(st, 400);
    assert_eq!(body.lines().count(), 1, "{body}");
    // A manifest of a file, as Tahoe answers it.
    let (st, _, body) = text_of(post(&format!("uri/{root}/lit?t=stream-manifest")));
    assert_eq!(
        (st, body.as_str()),
        (400, "POST to file: bad t=stream-manifest\n")
    );
    // Paths are the gateway's: no such child (404), an unrecoverable
    // directory on the way (410), as Tahoe's own pages.
    let (st, _, body) = text_of(post(&format!("uri/{root}/nope?t=stream-manifest")));
    assert_eq!(st, 404);
    assert!(body.contains("No such child: nope"), "{body}");
    let (st, _, body) = text_of(post(&format!(
        "uri/{root}/broken/inner?t=stream-deep-check"
    )));
    assert_eq!(st, 410);
    assert!(body.contains("UnrecoverableFileError"), "{body}");
    // A sub-path that exists: its own tree.
    let r = post(&format!("uri/{root}/a?t=stream-manifest"));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers().get("x-frame-options").unwrap(),
        "DENY",
        "Tahoe's headers"
    );
    let objs = objects(&units(&r.text().unwrap()));
    let paths: Vec<String> = objs.iter().map(|o| o.path.join("/")).collect();
    assert_eq!(paths[0], "", "the sub-path is the root of the walk");
    assert!(paths.contains(&"chk0".to_string()), "{paths:?}");
    // The unrecoverable directory itself streams: its unit carries the error.
    let r = post(&format!("uri/{root}/broken?t=stream-manifest"));
    assert_eq!(r.status().as_u16(), 200);
    let us = units(&r.text().unwrap());
    let objs = objects(&us);
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].error.as_ref().unwrap().code, "unrecoverable");
    stats(&us);
    // A body on an endpoint that takes none, headers too large, a target
    // too long.
    let r = client
        .post(format!("{}uri/{root}?t=stream-manifest", serve.url))
        .body(vec![b'x'; 100_000])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = client
        .get(format!("{}steward/v1/healthz", serve.url))
        .header("x-junk", "j".repeat(40_000))
        .send()
        .unwrap();
    let (st, _, body) = text_of(r);
    assert_eq!(st, 431);
    assert!(body.contains("the limit is"), "{body}");
    let r = serve.get(&format!("uri/{root}?t=json&pad={}", "p".repeat(40_000)));
    assert_eq!(r.status().as_u16(), 414);
    // The health check.
    let (st, _, body) = text_of(serve.get("steward/v1/healthz"));
    assert_eq!(st, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["gateway"], "reachable");
    assert_eq!(h["servers-connected"], 5);
    // Errors are counted by code; every log line is JSON, without caps.
    let m = serve.metrics();
    assert!(
        metric(
            &m,
            "steward_serve_responses_total{endpoint=\"stream-deep-check\",code=\"400\"}"
        ) >= 1,
        "{m}"
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = serve.log();
    let requests: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["message"] == "request")
        .collect();
    assert!(requests.len() >= 12, "{log}");
    assert!(requests
        .iter()
        .any(|r| r["status"] == 410 && r["path"].as_str().unwrap().contains("/broken/inner")));
    for cap in tree.caps.values() {
        let secret = cap.split(':').nth(2).unwrap();
        assert!(!log.contains(secret), "a cap in the log: {log}");
    }
}

#[test]
fn tokens_and_where_it_listens() {
    let g = grid();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token-0123456789\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let serve = Serve::start(&g.gateway_url(), &["--token-file", token.to_str().unwrap()]);
    let client = reqwest::blocking::Client::new();
    let health = format!("{}steward/v1/healthz", serve.url);
    let r = client.get(&health).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().unwrap().contains("Authorization: Bearer"));
    let r = client
        .get(&health)
        .bearer_auth("s3cret-token-0123456789-not")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .get(&health)
        .bearer_auth("s3cret-token-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Passed through with the token, to a gateway that never sees it.
    let r = client
        .get(format!("{}?t=json", serve.url))
        .bearer_auth("s3cret-token-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The stock CLI sends no token: it is refused.
    let nd = serve.node_dir();
    let (code, _, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["ls", "URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]);
        c
    });
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");

    // Another address needs a token or an explicit choice...
    let err = Serve::try_start(&g.gateway_url(), &["--listen", "0.0.0.0:0"])
        .err()
        .expect("refused");
    assert!(err.contains("--token-file"), "{err}");
    // ...and the choice is warned about.
    let open = Serve::start(
        &g.gateway_url(),
        &["--listen", "0.0.0.0:0", "--insecure-no-token"],
    );
    assert!(open.log().contains("warning"), "{}", open.log());
    let port = open.addr.rsplit(':').next().unwrap();
    let r = reqwest::blocking::get(format!("http://127.0.0.1:{port}/steward/v1/healthz")).unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // A URL password never shows.
    let gw = g
        .gateway_url()
        .replacen("http://", "http://alice:hunter2@", 1);
    let serve = Serve::start(&gw, &[]);
    let _ = serve.get("nope");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!serve.log().contains("hunter2"), "{}", serve.log());
}

#[test]
fn healthz_says_when_the_gateway_is_gone() {
    let g = grid();
    let p = Proxy::start(&g.gateway_url());
    let serve = Serve::start(&p.url, &[]);
    assert_eq!(serve.get("steward/v1/healthz").status().as_u16(), 200);
    p.faults
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = serve.get("steward/v1/healthz");
    assert_eq!(r.status().as_u16(), 503);
    let h: serde_json::Value = r.json().unwrap();
    assert_eq!(h["gateway"], "unreachable");
}

#[test]
fn a_slow_reader_slows_the_walk_and_memory_stays_flat() {
    // A SYNTHETIC gateway (crates/bench/src/synth.rs: generated listings,
    // no Tahoe code): 20,000 objects is beyond what a test can upload to
    // the real grid. A manifest, whose walk is fast: left alone it lists
    // the whole tree in a few seconds.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let syn = crate::synth::start(rt.handle(), 20_000, Duration::ZERO).unwrap();
    let total = syn.counts.objects();
    let dirs = syn.counts.dirs;
    let serve = Serve::start(&syn.url, &[]);
    // First the whole walk read at full speed, so that what the service
    // allocates for any walk (threads' arenas, pools, buffers grown to
    // their working size) is in its RSS before the baseline is taken:
    // under load, that alone grew RSS by 4 MB during the slow read, the
    // same whether the reader was slow or not.
    let mut warm = Vec::new();
    tahoe_style_request(&serve.addr, &syn.root_cap, "t=stream-manifest")
        .read_to_end(&mut warm)
        .unwrap();
    assert_eq!(
        objects(&units(&dechunk(&warm).1)).len() as u64,
        total,
        "the warm-up walk read every object"
    );
    let baseline = memory_kib(serve.pid(), "VmRSS:");
    let (listed_before, _, _) = syn.served.snapshot();
    let mut s = tahoe_style_request(&serve.addr, &syn.root_cap, "t=stream-manifest");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Read 8 KiB four times a second (about 80 units a second), sampling
    // each time, until the walk has stopped for 3 seconds (or 60 seconds
    // passed); then the rest at full speed.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8 * 1024];
    let mut samples: Vec<(usize, u64, u64)> = Vec::new(); // (units read, listings served, RSS KiB)
    let give_up = Instant::now() + Duration::from_secs(60);
    const STILL: usize = 12;
    while Instant::now() < give_up {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended while read slowly: {samples:?}");
        raw.extend_from_slice(&buf[..n]);
        let read = raw.iter().filter(|b| **b == b'\n').count();
        let listings = syn.served.snapshot().0 - listed_before;
        samples.push((read, listings, memory_kib(serve.pid(), "VmRSS:")));
        let k = samples.len();
        if k > STILL && samples[k - 1 - STILL].1 == listings {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    s.read_to_end(&mut raw).unwrap();
    let (_, body) = dechunk(&raw);
    let us = units(&body);
    let objs = objects(&us);
    assert_eq!(objs.len() as u64, total, "every object once");
    let mut seen = std::collections::HashSet::new();
    for o in &objs {
        assert!(seen.insert(o.path.clone()), "{:?} twice", o.path);
    }
    stats(&us);
    // Back-pressure: the walk stopped a bounded distance ahead of the slow
    // reader (the channel to the response, hyper's write queue, the
    // kernel's socket buffers, a few MB on loopback, and the listings in
    // flight), far from the end of the tree; it was not stopped by the
    // end of the tree (left alone, it lists every directory in about
    // ten seconds here, and the reader sees the same).
    let (read, listed, _) = *samples.last().unwrap();
    assert!(
        listed < dirs * 3 / 4 && (read as u64) < total / 4,
        "the walk went on to {listed} of {dirs} directories while the reader had {read} of {total} units: {samples:?}"
    );
    // Memory flat while the walk got ahead and then waited: what the slow
    // reader left unread is not held beyond the bounded queues.
    let peak = samples.iter().map(|s| s.2).max().unwrap();
    assert!(
        peak < baseline + 4 * 1024,
        "RSS grew from {baseline} KiB (after a walk read at full speed) to {peak} KiB while read slowly: {samples:?}"
    );
    eprintln!(
        "slow reader: {total} units; walk stopped at {listed} of {dirs} directories with {read} units read, after {} samples; RSS {baseline} KiB after a fast walk, peak {peak} KiB while slow",
        samples.len()
    );
    drop(rt);
}

#[test]
fn units_longer_than_the_stock_cli_reads_are_trimmed() {
    // A path of 14 directories named with 200 CJK characters each: its
    // units are about 17 KB as Tahoe writes them (each character escaped
    // as \uXXXX), past the stock CLI's 16,384-byte line limit.
    let g = grid();
    let root = g.mkdir().unwrap();
    let name = |i: usize| format!("{i}{}", "文".repeat(200));
    let mut parent = root.clone();
    for i in 0..14 {
        let d = g.mkdir().unwrap();
        g.link(&parent, &name(i), &d).unwrap();
        parent = d;
    }
    let file = g
        .upload(tag("serve-long").repeat(20).as_bytes(), "CHK")
        .unwrap();
    g.link(&parent, "leaf", &file).unwrap();
    let serve = Serve::start(&g.gateway_url(), &[]);
    let nd = serve.node_dir();
    let (code, out, err) = run({
        let mut c = tahoe_at(nd.path());
        c.args(["deep-check", &root]);
        c
    });
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("done: 16 objects checked, 16 healthy, 0 unhealthy"),
        "{out}\n{err}"
    );
    // The gateway's own lines are too long for the CLI.
    let (tcode, tout, terr) = run({
        let mut c = g.tahoe();
        c.args(["deep-check", &root]);
        c
    });
    // (Twisted's line reader calls loseConnection on the CLI's fake
    // transport, which has none: a traceback, exit 1.)
    assert!(
        tcode != 0 && terr.contains("lineLengthExceeded") && !tout.contains("done:"),
        "the stock CLI cannot read Tahoe's longest lines: {tout}\n{terr}"
    );
    // The trimmed unit says what was cut.
    let r = reqwest::blocking::Client::new()
        .post(format!(
            "{}uri/{}?t=stream-manifest",
            serve.url,
            steward_testgrid::percent_encode(&root)
        ))
        .send()
        .unwrap();
    let text = r.text().unwrap();
    assert!(text.lines().all(|l| l.len() < 16_384));
    let leaf: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["cap"] == file.as_str())
        .expect("the leaf's unit");
    assert_eq!(leaf["steward-trimmed"], serde_json::json!(["path-names"]));
    assert_eq!(leaf["path"].as_array().unwrap().len(), 15);
}
