//! Tests against a real local grid. Most share one grid (started once, held
//! in a static, killed by PDEATHSIG when this binary exits); the stop/start
//! test has its own small grid, the kill -9 test starts a grid in a child
//! process, and the reopen tests each build a grid in a temporary base
//! directory, stop (or kill) it and `Grid::open` it again.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use steward_testgrid::{unique_data, Grid, GridConfig, OpenOptions};

fn grid() -> &'static Grid {
    static GRID: OnceLock<Grid> = OnceLock::new();
    GRID.get_or_init(|| Grid::start(GridConfig::default()).expect("starting the shared grid"))
}

fn results(v: &Value) -> &Value {
    &v["results"]
}

fn good(v: &Value) -> u64 {
    results(v)["count-shares-good"]
        .as_u64()
        .expect("count-shares-good")
}

#[test]
fn uploads_dirs_links_and_listing() {
    let g = grid();
    let chk = g.upload(&unique_data(10_000), "CHK").unwrap();
    let lit = g.upload(b"tiny", "CHK").unwrap();
    let sdmf = g.upload(&unique_data(3_000), "SDMF").unwrap();
    let mdmf = g.upload(&unique_data(3_000), "MDMF").unwrap();
    assert!(chk.starts_with("URI:CHK:"), "{chk}");
    assert!(lit.starts_with("URI:LIT:"), "{lit}");
    assert!(sdmf.starts_with("URI:SSK:"), "{sdmf}");
    assert!(mdmf.starts_with("URI:MDMF:"), "{mdmf}");

    let dir = g.mkdir().unwrap();
    assert!(dir.starts_with("URI:DIR2:"), "{dir}");
    let long = "x".repeat(200);
    let odd = "héllo wörld/✓ ?#%&+";
    g.link(&dir, "chk", &chk).unwrap();
    g.link(&dir, "lit", &lit).unwrap();
    g.link(&dir, "sdmf", &sdmf).unwrap();
    g.link(&dir, "mdmf", &mdmf).unwrap();
    g.link(&dir, &long, &chk).unwrap();
    let sub = g.mkdir().unwrap();
    g.link(&dir, odd, &sub).unwrap();

    let v = g.get_json(&format!("/uri/{dir}?t=json")).unwrap();
    assert_eq!(v[0], "dirnode");
    let kids = v[1]["children"].as_object().unwrap();
    assert_eq!(kids.len(), 6, "{kids:?}");
    assert_eq!(kids["chk"][1]["format"], "CHK");
    assert_eq!(kids["chk"][1]["size"], 10_000);
    assert_eq!(kids["lit"][1]["ro_uri"], lit.as_str());
    assert_eq!(kids["sdmf"][1]["format"], "SDMF");
    assert_eq!(kids["mdmf"][1]["format"], "MDMF");
    assert_eq!(kids[long.as_str()][1]["ro_uri"], chk.as_str());
    assert_eq!(kids[odd][0], "dirnode");

    // Whole directories in one request.
    let imm = g
        .mkdir_immutable(json!({
            "a": lit,
            "b": ["filenode", {"ro_uri": chk}],
        }))
        .unwrap();
    assert!(imm.starts_with("URI:DIR2-CHK:"), "{imm}");
    let v = g.get_json(&format!("uri/{imm}?t=json")).unwrap();
    assert_eq!(v[1]["children"].as_object().unwrap().len(), 2);

    let mutable = g
        .mkdir_with_children(json!({"f": sdmf, "d": sub, "i": imm}))
        .unwrap();
    assert!(mutable.starts_with("URI:DIR2:"), "{mutable}");
    let v = g.get_json(&format!("uri/{mutable}?t=json")).unwrap();
    let kids = v[1]["children"].as_object().unwrap();
    assert_eq!(kids["f"][1]["rw_uri"], sdmf.as_str());
    assert_eq!(kids["d"][0], "dirnode");
    assert_eq!(kids["i"][1]["ro_uri"], imm.as_str());

    // The CLI through the gateway directory, with an alias.
    g.add_alias("tahoe", &dir).unwrap();
    g.add_alias("other", &mutable).unwrap();
    let aliases = std::fs::read_to_string(g.gateway_dir().join("private/aliases")).unwrap();
    assert_eq!(aliases, format!("tahoe: {dir}\nother: {mutable}\n"));
    let out = g.tahoe().args(["ls", "tahoe:"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8(out.stdout).unwrap();
    for name in ["chk", "lit", "sdmf", "mdmf", long.as_str(), odd] {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} not in {listing}"
        );
    }
}

#[test]
fn dropped_shares_reduce_good_count() {
    let g = grid();
    let cap = g.upload(&unique_data(20_000), "CHK").unwrap();
    let si = g.storage_index(&cap).unwrap();
    let shares = g.shares(&si);
    assert_eq!(shares.len(), 5, "{shares:?}");
    assert_eq!(good(&g.check(&cap, false).unwrap()), 5);

    assert_eq!(g.drop_shares(&si, 2).unwrap(), 2);
    let left = g.shares(&si);
    assert_eq!(left.len(), 3);
    let nodes: std::collections::BTreeSet<_> = left.iter().map(|s| s.node).collect();
    assert_eq!(
        nodes.len(),
        3,
        "remaining shares on distinct nodes: {left:?}"
    );
    let v = g.check(&cap, false).unwrap();
    assert_eq!(good(&v), 3, "{v}");
    assert_eq!(results(&v)["healthy"], false);
    assert_eq!(results(&v)["recoverable"], true);
}

#[test]
fn share_numbers_are_kept_one_copy_each() {
    // A grid of its own: other tests stop nodes of the shared one, and an
    // upload meanwhile puts two shares on one node, which no choice of
    // copies can spread.
    let g = steward_testgrid::Grid::start(Default::default()).unwrap();
    let cap = g.upload(&unique_data(20_000), "CHK").unwrap();
    let si = g.storage_index(&cap).unwrap();
    let shares = g.shares(&si);
    assert_eq!(shares.len(), 5, "{shares:?}");
    let holders: std::collections::BTreeSet<_> = shares.iter().map(|s| s.node).collect();
    assert_eq!(holders.len(), 5, "one share per node: {shares:?}");
    // A copy of the lowest share number on two more nodes, as Tahoe's
    // repairer leaves them: on the nodes of share numbers 1 and 2, the
    // only places those can be kept.
    let sh0 = shares.iter().find(|s| s.shnum == 0).unwrap();
    for other in shares.iter().filter(|s| s.shnum == 1 || s.shnum == 2) {
        let dest = other.path.with_file_name("0");
        std::fs::copy(&sh0.path, dest).unwrap();
    }
    assert_eq!(g.shares(&si).len(), 7);
    assert_eq!(g.keep_share_numbers(&si, 3).unwrap(), 4);
    let left = g.shares(&si);
    let nums: std::collections::BTreeSet<_> = left.iter().map(|s| s.shnum).collect();
    let nodes: std::collections::BTreeSet<_> = left.iter().map(|s| s.node).collect();
    assert_eq!(nums.into_iter().collect::<Vec<_>>(), [0, 1, 2], "{left:?}");
    assert_eq!(nodes.len(), 3, "on distinct nodes: {left:?}");
    let v = g.check(&cap, false).unwrap();
    assert_eq!(good(&v), 3, "{v}");
    assert_eq!(results(&v)["recoverable"], true);
    assert!(g.keep_share_numbers(&si, 4).is_err(), "only 3 numbers left");
    assert_eq!(g.shares(&si).len(), 3, "a refused call deletes nothing");
}

#[test]
fn a_storage_node_can_be_relocated() {
    let g = steward_testgrid::Grid::start(Default::default()).unwrap();
    let port = g.storage_port(1);
    let location = format!("tcp:localhost:{port}");
    g.relocate_storage_node(1, &location).unwrap();
    let cfg = std::fs::read_to_string(g.storage_dir(1).join("tahoe.cfg")).unwrap();
    assert!(
        cfg.lines()
            .any(|l| l == format!("tub.location = {location}")),
        "{cfg}"
    );
    // relocate waited until the gateway saw it again: an upload reaches
    // all five servers.
    let cap = g.upload(&unique_data(20_000), "CHK").unwrap();
    let si = g.storage_index(&cap).unwrap();
    let nodes: std::collections::BTreeSet<_> = g.shares(&si).iter().map(|s| s.node).collect();
    assert!(nodes.contains(&1), "{nodes:?}");
}

#[test]
fn mutable_shares_can_be_dropped_too() {
    let g = grid();
    let cap = g.upload(&unique_data(2_000), "SDMF").unwrap();
    let si = g.storage_index(&cap).unwrap();
    assert_eq!(g.shares(&si).len(), 5);
    assert_eq!(g.drop_shares(&si, 1).unwrap(), 1);
    assert_eq!(good(&g.check(&cap, false).unwrap()), 4);
}

#[test]
fn unrecoverable_file() {
    let g = grid();
    let cap = g.upload(&unique_data(20_000), "CHK").unwrap();
    let si = g.storage_index(&cap).unwrap();
    g.make_unrecoverable(&si).unwrap();
    assert_eq!(g.shares(&si).len(), 1);
    let v = g.check(&cap, false).unwrap();
    assert_eq!(results(&v)["recoverable"], false, "{v}");
    assert_eq!(good(&v), 1);
}

#[test]
fn unrecoverable_directory() {
    let g = grid();
    let dir = g.mkdir().unwrap();
    let si = g.storage_index(&dir).unwrap();
    g.make_unrecoverable(&si).unwrap();
    let v = g.check(&dir, false).unwrap();
    assert_eq!(results(&v)["recoverable"], false, "{v}");
}

#[test]
fn corruption_is_seen_only_by_verify() {
    let g = grid();
    let cap = g.upload(&unique_data(50_000), "CHK").unwrap();
    let si = g.storage_index(&cap).unwrap();
    let hit = g.corrupt_share(&si).unwrap();
    assert!(hit.path.exists());
    let plain = g.check(&cap, false).unwrap();
    assert_eq!(good(&plain), 5, "{plain}");
    assert_eq!(results(&plain)["count-corrupt-shares"], 0, "{plain}");
    let verified = g.check(&cap, true).unwrap();
    assert_eq!(results(&verified)["count-corrupt-shares"], 1, "{verified}");
    assert_eq!(good(&verified), 4, "{verified}");
}

#[test]
fn post_and_errors() {
    let g = grid();
    let cap = g.upload(&unique_data(1_000), "CHK").unwrap();
    let (status, body) = g.post(&format!("uri/{cap}?t=check&output=JSON")).unwrap();
    assert_eq!(status, 200, "{body}");
    let verify = g.get_json(&format!("uri/{cap}?t=json")).unwrap()[1]["verify_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = g
        .post(&format!("uri/{verify}?t=check&output=JSON"))
        .unwrap();
    assert_eq!(status, 405);
    assert!(g.storage_index(&g.upload(b"lit", "CHK").unwrap()).is_err());
    let dir = g.mkdir().unwrap();
    assert!(g.get_json(&format!("uri/{dir}/missing?t=json")).is_err());
}

#[test]
fn gateway_is_not_a_storage_server() {
    let g = grid();
    assert!(!g.gateway_dir().join("storage").exists());
    let cfg = std::fs::read_to_string(g.gateway_dir().join("tahoe.cfg")).unwrap();
    assert!(cfg.contains("[storage]\n# Shall this node provide storage service?\nenabled = false"));
    assert!(g.gateway_dir().join("node.url").exists());
    assert!(g.gateway_dir().join("private/secret").exists());
    let v = g.get_json("?t=json").unwrap();
    assert_eq!(v["servers"].as_array().unwrap().len(), g.storage_nodes());
}

#[test]
fn stop_and_restart_a_storage_node() {
    let g = Grid::start(GridConfig {
        storage_nodes: 3,
        needed: 1,
        happy: 2,
        total: 3,
        ..GridConfig::default()
    })
    .unwrap();
    let cap = g.upload(&unique_data(5_000), "CHK").unwrap();
    assert_eq!(good(&g.check(&cap, false).unwrap()), 3);
    let port = g.storage_port(1);
    g.stop_storage_node(1).unwrap();
    let v = g.check(&cap, false).unwrap();
    assert_eq!(good(&v), 2, "{v}");
    g.start_storage_node(1).unwrap();
    assert_eq!(g.storage_port(1), port);
    assert_eq!(good(&g.check(&cap, false).unwrap()), 3);
}

fn alive(pid: u32) -> bool {
    // A zombie (not reaped yet by whoever inherited it) counts as dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

const CHILD_ENV: &str = "STEWARD_TESTGRID_KILL9_CHILD";

/// In the child: start a grid from a short-lived thread (which must not
/// matter), report pids, then wait to be killed.
#[test]
fn kill9_child_grid() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let grid = std::thread::spawn(|| {
        Grid::start(GridConfig {
            storage_nodes: 2,
            needed: 1,
            happy: 1,
            total: 2,
            ..GridConfig::default()
        })
        .unwrap()
    })
    .join()
    .unwrap();
    let pids: Vec<String> = grid.pids().iter().map(u32::to_string).collect();
    println!("STEWARD_PIDS {}", pids.join(" "));
    println!("STEWARD_BASE {}", grid.base_dir().display());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn kill9_of_the_test_process_stops_the_grid() {
    let exe = std::env::current_exe().unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "kill9_child_grid",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut pids: Vec<u32> = Vec::new();
    let mut base = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // libtest may print "test name ... " on the same line first.
        if let Some((_, rest)) = line.split_once("STEWARD_PIDS ") {
            pids = rest.split(' ').map(|p| p.parse().unwrap()).collect();
        }
        if let Some((_, rest)) = line.split_once("STEWARD_BASE ") {
            base = Some(std::path::PathBuf::from(rest));
            break;
        }
    }
    assert_eq!(pids.len(), 4, "introducer, 2 storage nodes, 1 gateway");
    assert!(pids.iter().all(|&p| alive(p)));
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGKILL) };
    child.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "tahoe processes outlived the killed test process: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(base) = base {
        let _ = std::fs::remove_dir_all(base);
    }
}

// ---- Reopening a grid kept in a base directory ----

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `GET uri/$CAP` through the gateway at `url`.
fn read_via(url: &str, cap: &str) -> Vec<u8> {
    let r = http().get(format!("{url}uri/{cap}")).send().unwrap();
    assert!(
        r.status().is_success(),
        "GET {cap} via {url}: {}",
        r.status()
    );
    r.bytes().unwrap().to_vec()
}

/// Check results of `cap` through the gateway at `url`.
fn check_via(url: &str, cap: &str) -> Value {
    let r = http()
        .post(format!("{url}uri/{cap}?t=check&output=JSON"))
        .send()
        .unwrap();
    assert!(
        r.status().is_success(),
        "check {cap} via {url}: {}",
        r.status()
    );
    r.json().unwrap()
}

fn small_config(base: &std::path::Path) -> GridConfig {
    GridConfig {
        storage_nodes: 2,
        needed: 1,
        happy: 2,
        total: 2,
        gateways: 1,
        base_dir: Some(base.to_path_buf()),
        ..GridConfig::default()
    }
}

fn node_dirs(base: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("tahoe.cfg").is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn reopen_keeps_files_shares_and_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("grid");
    let g = Grid::start(GridConfig {
        storage_nodes: 5,
        gateways: 2,
        base_dir: Some(base.clone()),
        ..GridConfig::default()
    })
    .unwrap();
    let shape = Grid::recorded_shape(&base).unwrap();
    assert_eq!(
        (
            shape.storage_nodes,
            shape.gateways,
            shape.needed,
            shape.happy,
            shape.total
        ),
        (5, 2, 2, 3, 5)
    );
    assert_eq!(shape.tahoe_version.as_deref(), Some("1.20.0"));
    assert!(shape.matches(&GridConfig {
        gateways: 2,
        ..GridConfig::default()
    }));

    let data = unique_data(30_000);
    let cap = g.upload(&data, "CHK").unwrap();
    let dir = g.mkdir().unwrap();
    g.link(&dir, "file", &cap).unwrap();
    let si = g.storage_index(&cap).unwrap();
    let shares = g.shares(&si);
    assert_eq!(shares.len(), 5);
    let sharemap = results(&g.check(&cap, false).unwrap())["sharemap"].clone();
    assert!(
        sharemap.as_object().is_some_and(|m| m.len() == 5),
        "{sharemap}"
    );
    let urls = g.gateway_urls();
    let ports: Vec<u16> = (0..5).map(|i| g.storage_port(i)).collect();
    let furl_path = base.join("introducer/private/introducer.furl");
    let furl = std::fs::read_to_string(&furl_path).unwrap();
    drop(g);

    assert!(base.is_dir(), "a given base_dir survives the grid");
    assert!(Grid::is_reusable(&base));
    // A start over it is refused; open is the way.
    let err = Grid::start(GridConfig {
        base_dir: Some(base.clone()),
        ..GridConfig::default()
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("Grid::open"), "{err:#}");

    let g = Grid::open(&base, OpenOptions::default()).unwrap();
    assert_eq!(g.gateway_urls(), urls);
    assert_eq!((0..5).map(|i| g.storage_port(i)).collect::<Vec<_>>(), ports);
    assert_eq!(g.encoding(), (2, 3, 5));
    assert_eq!(std::fs::read_to_string(&furl_path).unwrap(), furl);
    for url in &urls {
        assert_eq!(read_via(url, &format!("{dir}/file")), data, "via {url}");
        let v = check_via(url, &cap);
        assert_eq!(results(&v)["healthy"], true, "{v}");
        assert_eq!(good(&v), 5, "{v}");
        assert_eq!(results(&v)["sharemap"], sharemap, "same servers hold them");
        let v = check_via(url, &dir);
        assert_eq!(results(&v)["healthy"], true, "{v}");
    }
    assert_eq!(g.shares(&si), shares);
    drop(g);
    assert!(base.join("testgrid.json").is_file());
}

/// A plain TCP forwarder on a fresh port in front of `target`; counts the
/// connections it accepted.
fn forwarder(target: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for inbound in l.incoming().flatten() {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            };
            pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            pipe(outbound, inbound);
        }
    });
    (port, count)
}

#[test]
fn reopen_with_a_location_override() {
    use std::sync::atomic::Ordering;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("grid");
    let g = Grid::start(small_config(&base)).unwrap();
    let data = unique_data(10_000);
    let cap = g.upload(&data, "CHK").unwrap();
    let ports: Vec<u16> = (0..2).map(|i| g.storage_port(i)).collect();
    drop(g);

    let proxies: Vec<_> = ports.iter().map(|&p| forwarder(p)).collect();
    let proxy_ports: Vec<u16> = proxies.iter().map(|p| p.0).collect();
    let pp = proxy_ports.clone();
    let g = Grid::open(
        &base,
        OpenOptions {
            storage_location_override: Some(Box::new(move |i, _| {
                format!("tcp:127.0.0.1:{}", pp[i])
            })),
        },
    )
    .unwrap();
    for i in 0..2 {
        let cfg = std::fs::read_to_string(g.storage_dir(i).join("tahoe.cfg")).unwrap();
        assert!(
            cfg.contains(&format!(
                "\ntub.location = tcp:127.0.0.1:{}\n",
                proxy_ports[i]
            )),
            "{cfg}"
        );
        assert!(
            cfg.contains(&format!(
                "\ntub.port = tcp:{}:interface=127.0.0.1\n",
                ports[i]
            )),
            "{cfg}"
        );
        assert_eq!(g.storage_port(i), ports[i]);
    }
    assert_eq!(download_check(&g, &cap, &data), 2);
    for (i, (_, count)) in proxies.iter().enumerate() {
        assert!(
            count.load(Ordering::SeqCst) > 0,
            "the gateway reached storage node {i} through its proxy"
        );
    }
}

/// Reads `cap` through gateway 0, compares it with `data`, returns the good
/// share count of a check.
fn download_check(g: &Grid, cap: &str, data: &[u8]) -> u64 {
    assert_eq!(read_via(&g.gateway_url(), cap), data);
    good(&g.check(cap, false).unwrap())
}

#[test]
fn reopen_after_the_previous_run_was_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("grid");
    // An equivalent location in another spelling, which open (given no
    // override) puts back to the direct one.
    let g = Grid::start(GridConfig {
        storage_location_override: Some(Box::new(|_, port| format!("tcp:localhost:{port}"))),
        ..small_config(&base)
    })
    .unwrap();
    let data = unique_data(10_000);
    let cap = g.upload(&data, "CHK").unwrap();
    let storage_port = g.storage_port(0);
    let web_port = g
        .gateway_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse::<u16>()
        .unwrap();
    let pids = g.pids();
    assert_eq!(pids.len(), 4);
    for &pid in &pids {
        // SAFETY: plain kill(2) of a child of this process (not reaped yet).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    drop(g); // reaps them

    // Killed nodes leave their pid files behind.
    let dirs = node_dirs(&base);
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    for d in &dirs {
        assert!(d.join("running.process").is_file(), "{}", d.display());
    }
    // And after a crash a pid may belong to another process by now, which
    // makes `tahoe run` refuse to start: simulate with our own pid.
    std::fs::write(
        dirs[0].join("running.process"),
        format!("{} 1700000000.0\n", std::process::id()),
    )
    .unwrap();

    // A recorded port taken by someone else: a clear error.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", web_port)).unwrap();
    let err = Grid::open(&base, OpenOptions::default()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("gateway 0") && msg.contains(&web_port.to_string()),
        "{msg}"
    );
    drop(squatter);

    // Without its old FURL file the introducer makes up a new FURL (new
    // swissnum, same tub id); open then points every node at it.
    let furl_path = base.join("introducer/private/introducer.furl");
    let old_furl = std::fs::read_to_string(&furl_path).unwrap();
    std::fs::remove_file(&furl_path).unwrap();

    let g = Grid::open(&base, OpenOptions::default()).unwrap();
    assert_eq!(download_check(&g, &cap, &data), 2);
    assert_eq!(g.pids().len(), 4);
    let new_furl = std::fs::read_to_string(&furl_path).unwrap();
    assert_ne!(new_furl, old_furl);
    assert_eq!(
        new_furl.split('/').nth(2),
        old_furl.split('/').nth(2),
        "same tub id and location"
    );
    let yaml = std::fs::read_to_string(g.gateway_dir().join("private/introducers.yaml")).unwrap();
    assert!(yaml.contains(new_furl.trim()), "{yaml}");
    let cfg = std::fs::read_to_string(g.storage_dir(0).join("tahoe.cfg")).unwrap();
    assert!(
        cfg.contains(&format!("\ntub.location = tcp:127.0.0.1:{storage_port}\n")),
        "{cfg}"
    );
}
