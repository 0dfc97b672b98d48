//! The native backend against a real local Tahoe-LAFS grid
//! (steward-testgrid): its check results must be the gateway's, field by
//! field, for every object kind and state; it must work from a verify cap,
//! renew the very leases Tahoe's add-lease renews, survive a stopped or
//! silent server, and refuse a server whose certificate is not the pinned
//! one.
//!
//! Most tests share one grid (started once, killed with this binary); the
//! stopped-node test has its own.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use steward_backend::{Backend, CheckOptions, ErrorCode, Operation};
use steward_cap::{Authority, Cap};
use steward_native::{NativeBackend, NativeOptions};
use steward_testgrid::{Grid, GridConfig};

fn native_for(dir: &Path) -> NativeBackend {
    NativeBackend::from_node_dir(dir, NativeOptions::default(), &sched()).expect("native backend")
}

fn check(
    b: &NativeBackend,
    cap: &str,
    add_lease: bool,
) -> Result<Value, steward_backend::BackendError> {
    let cap = Cap::parse(cap).unwrap();
    rt().block_on(b.check(
        &cap,
        CheckOptions {
            verify: false,
            add_lease,
        },
    ))
    .map(|r| r.into_json())
}

/// Field-by-field equality of two check results, with a message naming the
/// first field that differs.
fn assert_same_results(what: &str, gateway: &Value, native: &Value) {
    let (g, n) = (canonical(gateway), canonical(native));
    for key in ["storage-index", "summary"] {
        assert_eq!(
            g[key], n[key],
            "{what}: {key} differs\ngateway {gateway:#}\nnative {native:#}"
        );
    }
    let gr = g["results"].as_object().expect("gateway results");
    let nr = n["results"].as_object().expect("native results");
    for (k, gv) in gr {
        assert_eq!(
            Some(gv),
            nr.get(k),
            "{what}: results.{k} differs\ngateway {gateway:#}\nnative {native:#}"
        );
    }
    assert_eq!(
        gr.keys().collect::<Vec<_>>(),
        nr.keys().collect::<Vec<_>>(),
        "{what}: result fields differ"
    );
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Chk,
    Sdmf,
    Mdmf,
    MutableDir,
    ImmutableDir,
}

fn make(g: &Grid, kind: Kind) -> String {
    match kind {
        Kind::Chk => g.upload(&unique_data(20_000), "CHK").unwrap(),
        Kind::Sdmf => g.upload(&unique_data(3_000), "SDMF").unwrap(),
        Kind::Mdmf => g.upload(&unique_data(3_000), "MDMF").unwrap(),
        Kind::MutableDir => {
            let f = g.upload(&unique_data(1_000), "CHK").unwrap();
            g.mkdir_with_children(serde_json::json!({ "f": f }))
                .unwrap()
        }
        Kind::ImmutableDir => {
            let f = g.upload(&unique_data(1_000), "CHK").unwrap();
            g.mkdir_immutable(serde_json::json!({ "f": f })).unwrap()
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    Healthy,
    MissingShares,
    Unrecoverable,
}

#[test]
fn native_results_equal_the_gateways_for_every_kind_and_state() {
    let g = grid();
    let b = native_for(g.gateway_dir());
    assert_eq!(b.servers().len(), 5);
    let kinds = [
        Kind::Chk,
        Kind::Sdmf,
        Kind::Mdmf,
        Kind::MutableDir,
        Kind::ImmutableDir,
    ];
    let states = [State::Healthy, State::MissingShares, State::Unrecoverable];
    let mut cases = Vec::new();
    for kind in kinds {
        for state in states {
            let cap = make(g, kind);
            let si = si_of(&cap);
            match state {
                State::Healthy => {}
                State::MissingShares => {
                    assert_eq!(g.drop_shares(&si, 2).unwrap(), 2);
                }
                State::Unrecoverable => g.make_unrecoverable(&si).unwrap(),
            }
            cases.push((kind, state, cap));
        }
    }
    for (kind, state, cap) in &cases {
        let what = format!("{kind:?}/{state:?}");
        let gateway = g.check(cap, false).unwrap();
        let native = check(&b, cap, false).unwrap();
        assert_same_results(&what, &gateway, &native);
        // A verify cap is enough, and gives the same answer.
        let native_v = check(&b, &verify_cap(cap), false).unwrap();
        assert_same_results(&format!("{what} (verify cap)"), &gateway, &native_v);
        let r = &native["results"];
        match state {
            State::Healthy => assert_eq!(r["healthy"], true, "{what}"),
            State::MissingShares => {
                assert_eq!(r["healthy"], false, "{what}");
                assert_eq!(r["recoverable"], true, "{what}");
                assert_eq!(r["count-shares-good"], 3, "{what}");
            }
            State::Unrecoverable => assert_eq!(r["recoverable"], false, "{what}"),
        }
    }
}

#[test]
fn several_versions_of_a_mutable_file_are_counted_as_tahoe_counts_them() {
    let g = grid();
    let b = native_for(g.gateway_dir());
    for kind in [Kind::Sdmf, Kind::Mdmf] {
        let cap = make(g, kind);
        let si = si_of(&cap);
        // Keep two shares of version 1, publish version 2, put them back:
        // seq2 has 3 shares, seq1 2 (recoverable too).
        let old: Vec<_> = g
            .shares(&si)
            .into_iter()
            .take(2)
            .map(|s| {
                let bytes = std::fs::read(&s.path).unwrap();
                (s.path, bytes)
            })
            .collect();
        let new = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(new.path(), unique_data(2_500)).unwrap();
        let out = g
            .tahoe()
            .arg("put")
            .arg(new.path())
            .arg(&cap)
            .output()
            .unwrap();
        assert!(out.status.success(), "tahoe put: {out:?}");
        for (p, bytes) in &old {
            std::fs::write(p, bytes).unwrap();
        }
        let native = check(&b, &cap, false).unwrap();
        let gateway = g.check(&cap, false).unwrap();
        assert_same_results(&format!("{kind:?} two versions"), &gateway, &native);
        let r = &native["results"];
        assert_eq!(r["count-recoverable-versions"], 2, "{native:#}");
        assert_eq!(r["count-wrong-shares"], 2, "{native:#}");
        assert_eq!(
            native["summary"],
            "Unhealthy: multiple versions are recoverable 3 shares (enc 2-of-5)"
        );
    }
}

#[test]
fn requests_in_flight_are_bounded_and_connections_kept_alive() {
    use futures::stream::{self, StreamExt};
    let g = grid();
    let b = NativeBackend::from_node_dir(
        g.gateway_dir(),
        NativeOptions {
            per_server_in_flight: 3,
            ..Default::default()
        },
        &sched(),
    )
    .unwrap();
    let caps: Vec<Cap> = (0..40)
        .map(|i| {
            Cap::parse(
                &g.upload(
                    format!("small file {i} {}", "z".repeat(60)).as_bytes(),
                    "CHK",
                )
                .unwrap(),
            )
            .unwrap()
        })
        .collect();
    let results: Vec<_> = rt().block_on(
        stream::iter(&caps)
            .map(|c| b.check(c, CheckOptions::default()))
            .buffer_unordered(40)
            .collect(),
    );
    for r in results {
        assert_eq!(r.unwrap().json()["results"]["healthy"], true);
    }
    for ((peak, sent), conns) in b
        .peak_in_flight()
        .into_iter()
        .zip(b.requests_sent())
        .zip(b.connections_made())
    {
        assert!(peak <= 3, "peak {peak} requests in flight to one server");
        assert_eq!(sent, 40);
        assert!(conns <= 10, "{conns} TLS connections for {sent} requests");
    }
}

#[test]
fn least_authority_and_supported_operations() {
    let g = grid();
    let b = native_for(g.gateway_dir());
    assert_eq!(
        b.authority_for(steward_backend::Operation::Check),
        Authority::Verify
    );
    assert_eq!(b.authority_for(Operation::Verify), Authority::Verify);
    // Listing decrypts: it needs a read cap.
    assert_eq!(b.authority_for(Operation::List), Authority::Read);
    assert!(b.supports(Operation::Check));
    assert!(
        b.supports(Operation::AddLease),
        "the gateway dir has private/secret"
    );
    for op in [Operation::List, Operation::Verify] {
        assert!(b.supports(op), "{op:?}");
    }
    assert!(!b.supports(Operation::Repair));
    let cap = Cap::parse(&make(g, Kind::MutableDir)).unwrap();
    let e = rt()
        .block_on(b.repair(&cap, CheckOptions::default()))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotSupported);
    // Literal caps have nothing on the grid: Tahoe's answer for them.
    let lit = g.upload(b"tiny", "CHK").unwrap();
    assert_eq!(
        check(&b, &lit, false).unwrap(),
        g.check(&lit, false).unwrap()
    );
}

#[test]
fn a_wrong_fingerprint_or_bad_signatures_make_mutable_shares_count_for_nothing() {
    let g = grid();
    let b = native_for(g.gateway_dir());
    // A verify cap whose fingerprint names another key: every share's key
    // fails the fingerprint check.
    let cap = make(g, Kind::Sdmf);
    let vc = verify_cap(&cap);
    let (head, fp) = vc.rsplit_once(':').unwrap();
    let other = if fp.starts_with('a') { "b" } else { "a" };
    let forged = format!("{head}:{other}{}", &fp[1..]);
    let v = check(&b, &forged, false).unwrap();
    assert_eq!(v["results"]["count-shares-good"], 0, "{v:#}");
    assert_eq!(v["summary"], "Unhealthy: no versions are recoverable");
    assert_eq!(
        v["results"]["servers-responding"].as_array().unwrap().len(),
        5
    );

    // Every share's signature damaged on disk: no version verifies, for the
    // gateway as for us.
    let cap = make(g, Kind::Mdmf);
    for s in g.shares(&si_of(&cap)) {
        let mut data = std::fs::read(&s.path).unwrap();
        // Mutable container: 468-byte header + leases, then the MDMF share,
        // whose offset table gives the signature at bytes 75..83.
        let base = 468;
        let sig = u64::from_be_bytes(data[base + 75..base + 83].try_into().unwrap()) as usize;
        for byte in &mut data[base + sig..base + sig + 16] {
            *byte ^= 0x55;
        }
        std::fs::write(&s.path, data).unwrap();
    }
    let native = check(&b, &cap, false).unwrap();
    assert_eq!(native["results"]["count-shares-good"], 0, "{native:#}");
    let gateway = g.check(&cap, false).unwrap();
    assert_same_results("bad signatures", &gateway, &native);
}

/// Leases on one share file: `(count, expiry times)`, read from Tahoe's
/// on-disk formats (`storage/immutable.py`: 12-byte header with the lease
/// count at 8, 72-byte `>L32s32sL` leases at the end of the file;
/// `storage/mutable.py`: 4 lease slots of 92-byte `>LL32s32s20s` records
/// at 100, owner 0 meaning empty, extra leases at the offset stored at 92;
/// the magic starts `Tahoe mutable container v1` or `v2`).
fn leases(path: &Path) -> (usize, Vec<u32>) {
    let d = std::fs::read(path).unwrap();
    let be32 = |at: usize| u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
    if d.starts_with(b"Tahoe mutable container v") {
        let mut exp = Vec::new();
        for i in 0..4 {
            let at = 100 + i * 92;
            if be32(at) != 0 {
                exp.push(be32(at + 4));
            }
        }
        let extra_at = u64::from_be_bytes(d[92..100].try_into().unwrap()) as usize;
        if extra_at + 4 <= d.len() {
            let n = be32(extra_at) as usize;
            for i in 0..n {
                let at = extra_at + 4 + i * 92;
                if be32(at) != 0 {
                    exp.push(be32(at + 4));
                }
            }
        }
        (exp.len(), exp)
    } else {
        let n = be32(8) as usize;
        let start = d.len() - n * 72;
        let exp = (0..n).map(|i| be32(start + i * 72 + 68)).collect();
        (n, exp)
    }
}

fn all_leases(g: &Grid, si: &str) -> Vec<(PathBuf, usize, u32)> {
    g.shares(si)
        .into_iter()
        .map(|s| {
            let (n, exp) = leases(&s.path);
            (s.path, n, exp.into_iter().max().unwrap_or(0))
        })
        .collect()
}

/// A servers file with `key_s NURL` lines, built from the gateway's cache.
fn servers_file(g: &Grid, edit: impl Fn(usize, String) -> String) -> tempfile::NamedTempFile {
    let b = native_for(g.gateway_dir());
    let cache = std::fs::read_to_string(
        g.gateway_dir()
            .join("private")
            .join("introducer_default_cache.yaml"),
    )
    .unwrap();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "# servers of the test grid").unwrap();
    for (i, s) in b.servers().iter().enumerate() {
        let nurl = cache
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("- "))
            .find(|l| l.contains(&format!("@{}/", s.nurl.authority())) && l.ends_with("#v=1"))
            .expect("NURL in cache")
            .to_string();
        writeln!(f, "{} {}", s.id, edit(i, nurl)).unwrap();
    }
    f.flush().unwrap();
    f
}

#[test]
fn add_lease_renews_the_lease_tahoe_renews() {
    let g = grid();
    let b = native_for(g.gateway_dir());
    let objects = [
        make(g, Kind::Chk),
        make(g, Kind::Sdmf),
        make(g, Kind::MutableDir),
    ];
    let before: Vec<_> = objects.iter().map(|c| all_leases(g, &si_of(c))).collect();
    for (c, l) in objects.iter().zip(&before) {
        assert_eq!(l.len(), 5, "{c}");
        assert!(
            l.iter().all(|(_, n, _)| *n == 1),
            "one lease per share after upload: {l:?}"
        );
    }
    // Expiry times have a one-second resolution.
    std::thread::sleep(Duration::from_millis(1100));
    for c in &objects {
        let gateway_view = g.check(c, false).unwrap();
        let v = check(&b, c, true).unwrap();
        assert_same_results("add-lease", &gateway_view, &v);
    }
    for (c, l) in objects.iter().zip(&before) {
        let after = all_leases(g, &si_of(c));
        for ((p, n0, e0), (_, n1, e1)) in l.iter().zip(&after) {
            assert_eq!(
                n1,
                n0,
                "{}: the existing lease was renewed, none added",
                p.display()
            );
            assert!(
                e1 > e0,
                "{}: expiry moved forward ({e0} -> {e1})",
                p.display()
            );
        }
    }

    // From a servers file (no FURL: the lease seed comes from the server's
    // certificate), with the secret given explicitly: still the same lease.
    let f = servers_file(g, |_, n| n);
    let secret = steward_native::discovery::read_lease_secret(g.gateway_dir()).unwrap();
    let b2 = NativeBackend::from_servers_file(
        f.path(),
        NativeOptions {
            lease_secret: Some(secret),
            ..Default::default()
        },
        &sched(),
    )
    .unwrap();
    let mid: Vec<_> = objects.iter().map(|c| all_leases(g, &si_of(c))).collect();
    std::thread::sleep(Duration::from_millis(1100));
    for c in &objects {
        check(&b2, c, true).unwrap();
    }
    for (c, l) in objects.iter().zip(&mid) {
        let after = all_leases(g, &si_of(c));
        for ((p, n0, e0), (_, n1, e1)) in l.iter().zip(&after) {
            assert_eq!(
                n1,
                n0,
                "{}: servers-file add-lease added a lease",
                p.display()
            );
            assert!(
                e1 > e0,
                "{}: expiry moved forward ({e0} -> {e1})",
                p.display()
            );
        }
    }
    // And Tahoe's own add-lease afterwards still finds just that one lease.
    let (status, _) = g
        .post(&format!(
            "uri/{}?t=check&add-lease=true&output=JSON",
            objects[0]
        ))
        .unwrap();
    assert_eq!(status, 200);
    assert!(all_leases(g, &si_of(&objects[0]))
        .iter()
        .all(|(_, n, _)| *n == 1));

    // Control: another account's secret adds a second lease, so the counts
    // above do tell renewal from addition.
    let stranger = NativeBackend::from_servers_file(
        f.path(),
        NativeOptions {
            lease_secret: Some(b"not this account's secret".to_vec()),
            ..Default::default()
        },
        &sched(),
    )
    .unwrap();
    let c = make(g, Kind::Mdmf);
    check(&stranger, &c, true).unwrap();
    let l = all_leases(g, &si_of(&c));
    assert_eq!(l.len(), 5);
    assert!(l.iter().all(|(_, n, _)| *n == 2), "{l:?}");
}

#[test]
fn add_lease_without_a_secret_is_refused_before_any_work() {
    let g = grid();
    let f = servers_file(g, |_, n| n);
    let b = NativeBackend::from_servers_file(f.path(), NativeOptions::default(), &sched()).unwrap();
    assert!(!b.can_add_lease());
    assert!(!b.supports(Operation::AddLease));
    let e = b.require_add_lease().unwrap_err();
    assert_eq!(e.code, ErrorCode::NotSupported);
    assert!(e.message.contains("lease secret"), "{}", e.message);
    let cap = make(g, Kind::Chk);
    let e = check(&b, &cap, true).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotSupported);
    assert!(
        b.requests_sent().iter().all(|&n| n == 0),
        "no request was sent"
    );
    // Checking without add-lease works, and names servers as Tahoe does
    // because the file gives their ids.
    let v = check(&b, &cap, false).unwrap();
    assert_same_results("servers file", &g.check(&cap, false).unwrap(), &v);
}

#[test]
fn a_server_whose_certificate_does_not_match_its_nurl_is_refused() {
    let g = grid();
    // Server 2's NURL carries a different SPKI hash (first character changed).
    let f = servers_file(g, |i, n| {
        if i != 2 {
            return n;
        }
        let (scheme_hash, rest) = n.split_once('@').unwrap();
        let hash = &scheme_hash["pb://".len()..];
        let c = if hash.starts_with('A') { 'B' } else { 'A' };
        format!("pb://{c}{}@{rest}", &hash[1..])
    });
    let b = NativeBackend::from_servers_file(f.path(), NativeOptions::default(), &sched()).unwrap();
    let victim = b.servers()[2].clone();
    let cap = make(g, Kind::Chk);
    let e = check(&b, &cap, false).unwrap_err();
    assert_eq!(e.code, ErrorCode::ServerError);
    assert!(
        e.message.contains(&victim.nurl.authority()),
        "{}",
        e.message
    );
    assert!(e.message.contains(&victim.id[..11]), "{}", e.message);
    assert!(e.message.contains("does not match"), "{}", e.message);
    // probe() names it too, and only it.
    let probes = rt().block_on(b.probe());
    for (id, r) in probes {
        assert_eq!(r.is_err(), id == victim.id, "{id}: {r:?}");
    }
}

#[test]
fn a_silent_server_is_not_responding_and_the_check_completes() {
    let g = grid();
    // A TCP listener that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let f = servers_file(g, |_, n| n);
    let mut text = std::fs::read_to_string(f.path()).unwrap();
    text.push_str(&format!(
        "v0-silentsilentsilentsilentsilentsilentsilentsilentsile pb://Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg@127.0.0.1:{port}/swiss#v=1\n"
    ));
    std::fs::write(f.path(), text).unwrap();
    let b = NativeBackend::from_servers_file(
        f.path(),
        NativeOptions {
            timeout: Duration::from_millis(700),
            retries: 1,
            backoff: Duration::from_millis(50),
            set_aside: Duration::from_secs(30),
            ..Default::default()
        },
        &sched(),
    )
    .unwrap();
    let cap = make(g, Kind::Sdmf);
    let gateway = g.check(&cap, false).unwrap();
    let t = Instant::now();
    let v = check(&b, &cap, false).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_same_results("with a silent server", &gateway, &v);
    // Set aside: the next check does not wait for it.
    let t = Instant::now();
    let v = check(&b, &cap, false).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    assert_same_results("silent server set aside", &gateway, &v);
    drop(silent);
}

#[test]
fn a_stopped_storage_node_is_not_responding_and_the_check_completes() {
    let g = Grid::start(GridConfig::default()).expect("second grid");
    let objects = [
        make(&g, Kind::Chk),
        make(&g, Kind::Sdmf),
        make(&g, Kind::Mdmf),
    ];
    let b = native_for(g.gateway_dir());
    let s0 = b
        .servers()
        .into_iter()
        .find(|s| s.nickname.as_deref() == Some("s0"))
        .expect("server s0")
        .id
        .clone();
    g.stop_storage_node(0).unwrap();
    for c in &objects {
        let v = check(&b, c, false).unwrap();
        let responding: Vec<&str> = v["results"]["servers-responding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(responding.len(), 4, "{v:#}");
        assert!(!responding.contains(&s0.as_str()));
        assert_eq!(v["results"]["healthy"], false);
        assert_eq!(v["results"]["count-shares-good"], 4);
        assert_same_results("stopped node", &g.check(c, false).unwrap(), &v);
    }
}
