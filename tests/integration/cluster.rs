//! `steward dispatch --store postgres://` (issue 14): several worker
//! processes sharing the accounts of one grid through a real PostgreSQL
//! server that each test starts itself (`steward-testpg`), on the real
//! grid, through a proxy that slows the gateway down and logs every
//! request.

use crate::common::*;
use crate::dispatch::{account, checks_by_si};
use crate::proxy::Proxy;
use crate::resume::big_tree;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use steward_testpg::TestPg;

fn own_server() -> TestPg {
    TestPg::start().unwrap_or_else(|e| panic!("{e:#}"))
}

/// `steward dispatch status --store URL --json`, parsed.
fn status(url: &str) -> Value {
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["dispatch", "status", "--json", "--store", url]);
        c
    });
    assert_eq!(code, 0, "status works: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json ({e}): {out}"))
}

/// `steward dispatch export` of one account's stage into `dir`.
fn export(url: &str, dir: &Path, name: &str, stage: &str) -> PathBuf {
    let out = dir.join(format!("{name}.{stage}.ndjson"));
    let (code, _, err) = run({
        let mut c = steward();
        c.args(["dispatch", "export", "--store", url, "--account", name])
            .args(["--stage", stage, "-o"])
            .arg(&out);
        c
    });
    assert_eq!(code, 0, "export {name} {stage}: {err}");
    out
}

/// The paths of an exported stage's objects, each asserted to occur once,
/// the file whole (a stats unit closes it).
fn paths_once(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.ends_with('\n'), "{}: no partial line", file.display());
    let us = units(&text);
    stats(&us);
    let mut counts = BTreeMap::new();
    for o in objects(&us) {
        *counts.entry(o.path.join("/")).or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{}: written twice: {twice:?}",
        file.display()
    );
    counts.into_keys().collect()
}

/// Each account's name and its tree (path -> cap).
type Trees = Vec<(String, BTreeMap<String, String>)>;

/// Accounts over fresh trees of `(groups, dirs, files)`, behind `proxy`.
fn accounts_file(
    dir: &Path,
    proxy: &Proxy,
    prefix: &str,
    n: usize,
    shape: (usize, usize, usize),
) -> (String, Trees) {
    let mut text = format!("gateway = \"{}\"\n", proxy.url);
    let mut trees = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let (root, all) = big_tree(&format!("cluster-{prefix}-{i}"), shape.0, shape.1, shape.2);
        text.push_str(&format!(
            "[[account]]\nname = \"{name}\"\nroot = \"{root}\"\n"
        ));
        trees.push((name, all));
    }
    (write(dir, "ACCOUNTS.toml", &text), trees)
}

/// The root of account `name` in an accounts file.
fn accounts_root(accounts: &str, name: &str) -> String {
    let text = std::fs::read_to_string(accounts).unwrap();
    let at = text.find(&format!("name = \"{name}\"")).unwrap();
    let rest = &text[at..];
    let start = rest.find("root = \"").unwrap() + "root = \"".len();
    rest[start..].split('"').next().unwrap().to_string()
}

/// A repair unit's line as [`answer_order_free`] gives it, and the new
/// version a repair of a mutable file published named without its root
/// hash (`seq2-*-sh0` for `seq2-4qqy-sh0` in the post-repair sharemap):
/// Tahoe's mutable repair publishes the recovered contents again under a
/// new salt, so two repairs of the same damage publish versions of the
/// same sequence number and contents but different root hashes.
fn repair_answer_free(line: &str) -> Value {
    let mut v = answer_order_free(line);
    let post = v.pointer_mut("/check-and-repair-results/post-repair-results/results/sharemap");
    if let Some(Value::Object(share)) = post {
        let entries: Vec<(String, Value)> = std::mem::take(share).into_iter().collect();
        for (key, servers) in entries {
            let key = match key.split('-').collect::<Vec<_>>()[..] {
                [seq, _root, sh] if seq.starts_with("seq") => format!("{seq}-*-{sh}"),
                _ => key,
            };
            share.insert(key, servers);
        }
    }
    v
}

/// A unit's line with the servers that answered (`servers-responding`,
/// `sharemap`) put in a fixed order.
fn answer_order_free(line: &str) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(a)) = m.get_mut("servers-responding") {
                    a.sort_by_key(|x| x.to_string());
                }
                if let Some(Value::Object(share)) = m.get_mut("sharemap") {
                    let mut entries: Vec<(String, Value)> =
                        std::mem::take(share).into_iter().collect();
                    entries.sort_by(|x, y| x.0.cmp(&y.0));
                    share.extend(entries);
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(line).unwrap();
    walk(&mut v);
    v
}

fn worker(accounts: &str, url: &str, extra: &[&str]) -> Command {
    let mut c = steward();
    c.args(["dispatch", accounts, "-q", "--store", url])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every account done, and each stage's export holds every object of its
/// tree exactly once.
fn all_done_once(url: &str, dir: &Path, trees: &Trees) {
    let s = status(url);
    for (name, want) in trees {
        assert_eq!(account(&s, name)["stage"], "done", "{name}: {s}");
        assert!(account(&s, name)["worker"].is_null(), "released: {s}");
        let want: BTreeSet<String> = want.keys().cloned().collect();
        for stage in ["manifest", "check", "repair"] {
            let got = paths_once(&export(url, dir, name, stage));
            assert_eq!(got, want, "{name} {stage}: every object, none twice");
        }
    }
}

/// Waits until `status` shows an account at work (mid-manifest or
/// mid-check) held by the worker with process id `pid`; returns its name.
fn busy_account_of(url: &str, pid: u32) -> String {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        let s = status(url);
        for a in s["accounts"].as_array().unwrap() {
            let mine = a["worker"]
                .as_str()
                .is_some_and(|w| w.ends_with(&format!(":{pid}")));
            let mid = ["manifest", "check"].contains(&a["stage"].as_str().unwrap())
                && a["position"].as_u64().unwrap_or(0) > 0;
            if mine && mid {
                return a["name"].as_str().unwrap().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("worker {pid} never showed an account at work");
}

/// Every share file of the tree's objects (path and bytes), to put the
/// tree back as it was after a repair changed it ([`restore_shares`]).
type Shares = Vec<(PathBuf, Vec<u8>)>;

fn snapshot_shares(g: &steward_testgrid::Grid, tree: &Tree) -> (Vec<String>, Shares) {
    let sis: Vec<String> = tree
        .caps
        .values()
        .filter_map(|c| steward_cap::Cap::parse(c).ok()?.storage_index())
        .map(|si| si.to_string())
        .collect();
    let files = sis
        .iter()
        .flat_map(|si| g.shares(si))
        .map(|s| {
            let bytes = std::fs::read(&s.path).unwrap();
            (s.path, bytes)
        })
        .collect();
    (sis, files)
}

/// Deletes every share file of `sis` (those a repair added too) and
/// writes back the snapshot's.
fn restore_shares(g: &steward_testgrid::Grid, (sis, files): &(Vec<String>, Shares)) {
    for si in sis {
        for s in g.shares(si) {
            std::fs::remove_file(&s.path).unwrap();
        }
    }
    for (path, bytes) in files {
        std::fs::write(path, bytes).unwrap();
    }
}

/// Three workers over the same six accounts (one damaged, repaired as it
/// goes): every account done, started once, by workers that each took
/// some; each object checked once by one of them (counted at the proxy).
/// Each account's exported manifest, check and repair equal the files a
/// single-machine dispatch (`--state DIR`, SQLite) of the same accounts
/// writes, over the tree as it was before (the repaired shares put back):
/// the manifests byte for byte, the checks and repairs line for line but
/// for the order in which the gateway lists the servers that answered
/// (Tahoe lists them as they answer, so two checks of one object differ
/// there). The export of a stage is also the file the standalone stage
/// writes; the README's operator queries answer on what the workers
/// wrote; a database whose schema a newer steward made is refused in one
/// line.
#[test]
fn three_workers_share_the_accounts_and_exports_match_a_single_machine_dispatch() {
    let g = grid();
    let pg = TestPg::shared();
    let url = pg.fresh_database().unwrap();
    let proxy = Proxy::start(&g.gateway_url());
    let dir = tempfile::tempdir().unwrap();
    let (accounts, trees) = accounts_file(dir.path(), &proxy, "three", 5, (2, 2, 3));
    // And a damaged one, for the operator's queries and the repairs.
    let damaged = build_damaged_tree(g, "cluster-three-damaged");
    let before_repair = snapshot_shares(g, &damaged);
    let mut text = std::fs::read_to_string(&accounts).unwrap();
    text.push_str(&format!(
        "[[account]]\nname = \"threedmg\"\nroot = \"{}\"\n",
        damaged.root
    ));
    std::fs::write(&accounts, text).unwrap();
    // One listing at a time per account, on both sides: the manifests'
    // order is the tree's, whoever runs them.
    let args = [
        "-j",
        "3",
        "--accounts-at-once",
        "1",
        "--list-jobs",
        "1",
        "--lease",
        "5",
    ];
    proxy.delay(20);
    let workers: Vec<Child> = (0..3)
        .map(|_| worker(&accounts, &url, &args).spawn().unwrap())
        .collect();
    let ends: Vec<(i32, String)> = workers.into_iter().map(finish).collect();
    for (i, (_, log)) in ends.iter().enumerate() {
        eprintln!("worker {i}:\n{log}");
    }
    let codes: Vec<i32> = ends.iter().map(|e| e.0).collect();
    assert_eq!(codes, [1, 1, 1], "every worker ends, with findings");
    let started: Vec<usize> = ends
        .iter()
        .map(|e| e.1.matches(": started").count())
        .collect();
    assert!(
        started.iter().all(|&n| n >= 1),
        "every worker took accounts: {started:?}"
    );
    assert_eq!(
        started.iter().sum::<usize>(),
        6,
        "each account started once"
    );
    all_done_once(&url, dir.path(), &trees);
    assert_eq!(account(&status(&url), "threedmg")["stage"], "done");
    let checks = checks_by_si(&proxy.log());
    assert!(!checks.is_empty());
    let twice: Vec<_> = checks.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "checked twice: {twice:?}");

    // The same accounts dispatched by one process on one machine, over the
    // tree as it was before the workers repaired it.
    proxy.delay(0);
    restore_shares(g, &before_repair);
    let state = dir.path().join("state");
    let (code, _, err) = run({
        let mut c = steward();
        c.args(["dispatch", &accounts, "-q", "--state"])
            .arg(&state)
            .args(["-j", "3", "--list-jobs", "1"]);
        c
    });
    assert_eq!(code, 1, "one machine, with findings: {err}");
    let names = trees.iter().map(|(n, _)| n.as_str()).chain(["threedmg"]);
    for name in names {
        for stage in ["manifest", "check", "repair"] {
            let exported = std::fs::read_to_string(export(&url, dir.path(), name, stage)).unwrap();
            let alone =
                std::fs::read_to_string(state.join(name).join(format!("{stage}.ndjson"))).unwrap();
            if stage == "manifest" {
                assert!(
                    exported == alone,
                    "{name}: the exported manifest is the single machine's, byte for byte"
                );
                continue;
            }
            assert_eq!(
                exported.lines().count(),
                alone.lines().count(),
                "{name} {stage}"
            );
            let same = if stage == "check" {
                answer_order_free
            } else {
                repair_answer_free
            };
            for (a, b) in exported.lines().zip(alone.lines()) {
                assert_eq!(same(a), same(b), "{name} {stage}");
            }
        }
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("report.json")).unwrap()).unwrap();
    let cluster = status(&url);
    for name in trees.iter().map(|(n, _)| n.as_str()).chain(["threedmg"]) {
        assert_eq!(
            account(&report, name)["counts"],
            account(&cluster, name)["counts"],
            "{name}: the same counts"
        );
    }

    // The README's queries, on what the workers wrote.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let sql = readme
        .split("```sql\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("README has the operator's queries");
    let queries: Vec<&str> = sql.split(';').filter(|q| !q.trim().is_empty()).collect();
    assert_eq!(queries.len(), 3, "{sql}");
    let db = url.rsplit('/').next().unwrap();
    let unrecoverable = pg.psql(db, queries[0]).unwrap();
    let rows: Vec<&str> = unrecoverable.lines().collect();
    assert_eq!(rows.len(), 2, "a/chk1 and broken: {unrecoverable}");
    assert!(
        rows.iter().all(|r| r.starts_with("threedmg|")),
        "{unrecoverable}"
    );
    assert!(
        unrecoverable.contains(&damaged.si("a/chk1")),
        "{unrecoverable}"
    );
    assert!(
        unrecoverable.contains(&damaged.si("broken")),
        "{unrecoverable}"
    );
    let by_unhealthy = pg.psql(db, queries[1]).unwrap();
    assert_eq!(
        by_unhealthy.trim(),
        "threedmg|4",
        "a/chk0, sdmf, a/chk1, broken"
    );
    let who = pg.psql(db, queries[2]).unwrap();
    assert_eq!(who.lines().count(), 6, "{who}");

    // The export of a stage is the file the standalone stage writes: the
    // manifest (one listing at a time on both sides: the same order) byte
    // for byte.
    proxy.delay(0);
    let manifest = export(&url, dir.path(), "three0", "manifest");
    let standalone = dir.path().join("standalone.manifest.ndjson");
    let root = accounts_root(&accounts, "three0");
    let (code, _, err) = run({
        let mut c = steward();
        c.args([
            "manifest",
            &root,
            "--gateway",
            &proxy.url,
            "--caps",
            "write",
        ])
        .args(["-j", "1", "-q", "-o"])
        .arg(&standalone);
        c
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read(&manifest).unwrap() == std::fs::read(&standalone).unwrap(),
        "the exported manifest is the standalone manifest, byte for byte"
    );
    // The check: the standalone check of the exported manifest gives the
    // same units in the same order, the same lines but for the order in
    // which the gateway lists the servers that answered (Tahoe lists them
    // as they answer, so two checks of one object differ there).
    let exported = export(&url, dir.path(), "three0", "check");
    let standalone = dir.path().join("standalone.check.ndjson");
    let (code, _, err) = run({
        let mut c = steward();
        c.args(["check", "--gateway", &proxy.url])
            .arg(&manifest)
            .arg("-o")
            .arg(&standalone);
        c
    });
    assert_eq!(code, 0, "{err}");
    let (x, y) = (
        std::fs::read_to_string(&exported).unwrap(),
        std::fs::read_to_string(&standalone).unwrap(),
    );
    assert_eq!(x.lines().count(), y.lines().count());
    for (a, b) in x.lines().zip(y.lines()) {
        assert_eq!(answer_order_free(a), answer_order_free(b));
    }

    // A schema from a newer steward: refused, in one line, naming it.
    let db = url.rsplit('/').next().unwrap();
    pg.psql(
        db,
        "UPDATE steward.schema_version SET version = version + 1",
    )
    .unwrap();
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["dispatch", "status", "--store", &url]);
        c
    });
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("newer than this steward's"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A worker killed with kill -9 in the middle of an account: another
/// worker takes the account over once the lease ran out (not before), and
/// the account completes with each object exactly once.
#[test]
fn a_worker_killed_mid_account_is_taken_over_after_its_lease() {
    let g = grid();
    let url = TestPg::shared().fresh_database().unwrap();
    let proxy = Proxy::start(&g.gateway_url());
    let dir = tempfile::tempdir().unwrap();
    let (accounts, trees) = accounts_file(dir.path(), &proxy, "kill", 2, (2, 3, 4));
    proxy.delay(30);
    let lease = 4;
    let args = ["-j", "2", "--lease", "4"];
    let mut a = worker(&accounts, &url, &args).spawn().unwrap();
    let victim = busy_account_of(&url, a.id());
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let killed = Instant::now();
    let b = worker(&accounts, &url, &args).spawn().unwrap();
    // Not before the lease ran out: the dead worker still holds it.
    std::thread::sleep(Duration::from_millis(1500));
    let s = status(&url);
    let held = account(&s, &victim)["worker"].as_str().map(str::to_string);
    assert!(
        held.is_some_and(|w| w.ends_with(&format!(":{}", a.id()))),
        "{victim} still the dead worker's within its lease: {s}"
    );
    let (code, log) = finish(b);
    eprintln!("worker b:\n{log}");
    assert_eq!(code, 0);
    assert!(
        log.contains(&format!("{victim}: ")),
        "b took {victim} over: {log}"
    );
    assert!(killed.elapsed() >= Duration::from_secs(lease - 1));
    all_done_once(&url, dir.path(), &trees);
}

/// A worker paused (SIGSTOP) past its lease, and resumed after another
/// took its account over, writes nothing more: its writes are refused
/// (fencing) and it stops; the account's units are each there once.
#[test]
fn a_zombie_worker_writes_nothing_after_its_claim_was_taken() {
    let g = grid();
    let url = TestPg::shared().fresh_database().unwrap();
    let proxy = Proxy::start(&g.gateway_url());
    let dir = tempfile::tempdir().unwrap();
    let (accounts, trees) = accounts_file(dir.path(), &proxy, "zombie", 1, (2, 3, 4));
    proxy.delay(30);
    let args = ["-j", "2", "--lease", "3"];
    let a = worker(&accounts, &url, &args).spawn().unwrap();
    let pid = a.id() as libc::pid_t;
    let victim = busy_account_of(&url, a.id());
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let b = worker(&accounts, &url, &args).spawn().unwrap();
    let (code, log_b) = finish(b);
    assert_eq!(code, 0, "b finished the account: {log_b}");
    let before: Vec<(String, Vec<u8>)> = ["manifest", "check", "repair"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                std::fs::read(export(&url, dir.path(), &victim, s)).unwrap(),
            )
        })
        .collect();
    let done_at = account(&status(&url), &victim)["last_completed"].clone();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let (code, log_a) = finish(a);
    eprintln!("zombie a:\n{log_a}\nworker b:\n{log_b}");
    assert_ne!(code, 0, "the zombie stops");
    assert!(log_a.contains("taken over"), "{log_a}");
    // Nothing the zombie did after waking changed the account.
    for (stage, bytes) in before {
        let now = std::fs::read(export(&url, dir.path(), &victim, &stage)).unwrap();
        assert!(now == bytes, "{victim} {stage} changed after the takeover");
    }
    assert_eq!(account(&status(&url), &victim)["last_completed"], done_at);
    all_done_once(&url, dir.path(), &trees);
}

/// PostgreSQL restarted in the middle of a run: the worker pauses while it
/// is down and goes on; no unit lost, none twice.
#[test]
fn a_database_restart_mid_run_costs_no_units() {
    let g = grid();
    let pg = own_server();
    let url = pg.fresh_database().unwrap();
    let proxy = Proxy::start(&g.gateway_url());
    let dir = tempfile::tempdir().unwrap();
    let (accounts, trees) = accounts_file(dir.path(), &proxy, "restart", 2, (2, 3, 4));
    // Slow enough that the accounts outlast a renewal of their claims
    // (every 5 s at this lease), which is when `status` first shows them
    // mid-stage.
    proxy.delay(100);
    let a = worker(&accounts, &url, &["-j", "1", "--lease", "30"])
        .spawn()
        .unwrap();
    busy_account_of(&url, a.id());
    pg.stop().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again().unwrap();
    let (code, log) = finish(a);
    eprintln!("{log}");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("unreachable") && log.contains("is back"),
        "the worker paused while the database was down: {log}"
    );
    all_done_once(&url, dir.path(), &trees);
}

/// `--cluster-per-gateway 2` with two workers of 8 requests in flight
/// each: the gateway never sees more than 2 grid operations at once
/// (counted at the proxy; each account's one probe of the welcome page,
/// outside the scheduler, is not a grid operation), and everything
/// completes.
#[test]
fn a_cluster_wide_gateway_cap_holds_across_workers() {
    let g = grid();
    let url = TestPg::shared().fresh_database().unwrap();
    let proxy = Proxy::start(&g.gateway_url());
    let dir = tempfile::tempdir().unwrap();
    let (accounts, trees) = accounts_file(dir.path(), &proxy, "capped", 4, (2, 2, 4));
    proxy.delay(40);
    proxy.reset_peak();
    let args = [
        "-j",
        "8",
        "--per-gateway",
        "8",
        "--accounts-at-once",
        "2",
        // Long enough that no slot's lease runs out under a loaded
        // machine while its request is in flight (the cap holds while
        // workers renew; see pg_gateways).
        "--lease",
        "30",
        "--cluster-per-gateway",
        "2",
    ];
    let a = worker(&accounts, &url, &args).spawn().unwrap();
    let b = worker(&accounts, &url, &args).spawn().unwrap();
    let (ca, ea) = finish(a);
    let (cb, eb) = finish(b);
    assert_eq!((ca, cb), (0, 0), "{ea}\n{eb}");
    let peak = proxy.peak_grid_ops();
    eprintln!(
        "peak grid operations in flight at the gateway: {peak} (all requests: {})",
        proxy.peak_in_flight()
    );
    assert!(peak <= 2, "the cluster's cap held: {peak} at once");
    assert!(peak >= 1);
    all_done_once(&url, dir.path(), &trees);
}

/// `--store` given a URL that does not parse, one of another database, or
/// one where no server answers: `dispatch`, `status` and `export` each
/// refuse it before any work, in one line naming the URL without its
/// password (after the user name or as a parameter) and saying why, and
/// exit 2.
#[test]
fn a_bad_or_unreachable_store_url_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = write(
        dir.path(),
        "ACCOUNTS.toml",
        "gateway = \"http://127.0.0.1:1\"\n[[account]]\nname = \"a\"\nroot = \"URI:DIR2:aaaa:bbbb\"\n",
    );
    // A port nobody listens on (bound, then let go).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.path().join("out.ndjson");
    for (url, says) in [
        (
            "postgres://u:s3cret@127.0.0.1:notaport/db".to_string(),
            "not a PostgreSQL URL (invalid connection string: invalid value for option `port`)",
        ),
        (
            "postgres://u@127.0.0.1/db?password=s3cret&bogus=1".to_string(),
            "not a PostgreSQL URL (invalid connection string: unknown option `bogus`)",
        ),
        (
            "mysql://u:s3cret@127.0.0.1/db?password=s3cret".to_string(),
            "not a PostgreSQL URL",
        ),
        (
            format!("postgres://u:s3cret@127.0.0.1:{port}/db"),
            "cannot connect (error connecting to server: Connection refused",
        ),
    ] {
        for args in [
            vec!["dispatch", &accounts, "-q", "--store", &url],
            vec!["dispatch", "status", "--store", &url],
            vec![
                "dispatch",
                "export",
                "--store",
                &url,
                "--account",
                "a",
                "--stage",
                "check",
                "-o",
                out.to_str().unwrap(),
            ],
        ] {
            let (code, stdout, err) = run({
                let mut c = steward();
                c.args(&args);
                c
            });
            assert_eq!(code, 2, "{args:?}: {stdout}{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
            assert!(err.contains("--store "), "{args:?}: {err}");
            assert!(!err.contains("s3cret"), "{args:?}: {err}");
        }
        assert!(!out.exists(), "nothing written");
    }
}
