//! Shared fixtures: the grid, the `steward` command, unit parsing, and the
//! sample tree.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use steward::unit::{ObjectUnit, Unit};
use steward_testgrid::{Grid, GridConfig};

/// The grid shared by every test of this binary (two gateways, five
/// storage nodes, 2-of-5, happy 3).
pub fn grid() -> &'static Grid {
    static GRID: OnceLock<Grid> = OnceLock::new();
    GRID.get_or_init(|| {
        Grid::start(GridConfig {
            gateways: 2,
            ..Default::default()
        })
        .expect("start the test grid")
    })
}

/// `steward` with a clean environment, pointed at gateway 0.
pub fn steward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_steward"));
    c.env_remove("STEWARD_GATEWAY").env("HOME", "/nonexistent");
    c
}

/// `steward ARGS --gateway G0`.
pub fn stw(args: &[&str]) -> Command {
    let mut c = steward();
    c.args(args).arg("--gateway").arg(grid().gateway_url());
    c
}

/// Run and return output; stdout/stderr as strings.
pub fn run(mut c: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run steward");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Parse NDJSON units; panics on any bad line.
pub fn units(text: &str) -> Vec<Unit> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Unit::parse(l).unwrap_or_else(|e| panic!("bad unit line ({e}): {l}")))
        .collect()
}

pub fn read_units(p: &Path) -> Vec<Unit> {
    units(&std::fs::read_to_string(p).unwrap())
}

/// Object units only.
pub fn objects(us: &[Unit]) -> Vec<ObjectUnit> {
    us.iter()
        .filter_map(|u| match u {
            Unit::Object(o) => Some((**o).clone()),
            _ => None,
        })
        .collect()
}

pub fn stats(us: &[Unit]) -> serde_json::Value {
    let s: Vec<_> = us
        .iter()
        .filter_map(|u| match u {
            Unit::Stats(s, _) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(s.len(), 1, "exactly one stats unit");
    assert!(
        matches!(us.last(), Some(Unit::Stats(..))),
        "the stats unit is last"
    );
    s[0].clone()
}

/// Objects by path ("a/b"; "" for the root).
pub fn by_path(os: &[ObjectUnit]) -> BTreeMap<String, ObjectUnit> {
    os.iter().map(|o| (o.path.join("/"), o.clone())).collect()
}

/// Units by object: storage index, or path for literal objects (which have
/// none). For comparing two walks of one tree: an object reached by two
/// paths (a shared directory and what is under it) is reported once, under
/// whichever path the walk took first, so paths can differ between runs.
pub fn by_object(os: &[ObjectUnit]) -> BTreeMap<String, ObjectUnit> {
    os.iter()
        .map(|o| {
            let key = if o.storage_index.is_empty() {
                o.path.join("/")
            } else {
                o.storage_index.clone()
            };
            (key, o.clone())
        })
        .collect()
}

/// A unique tag per call, so that trees never share content.
pub fn tag(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The sample tree of issue 2: nested and shared directories, a cycle,
/// LIT, CHK, SDMF and MDMF files, directories of every kind (`DIR2`,
/// `DIR2-MDMF`, `DIR2-CHK`, `DIR2-LIT`), non-ASCII and long names, and a
/// directory (`broken`) that tests may make unrecoverable.
pub struct Tree {
    /// Root write cap.
    pub root: String,
    /// Write (or, for immutable objects, read) cap by path.
    pub caps: HashMap<String, String>,
}

pub const LONG_NAME: &str = "é ünïcödé 文件 ";

impl Tree {
    pub fn cap(&self, path: &str) -> &str {
        self.caps
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in tree"))
    }
    pub fn si(&self, path: &str) -> String {
        steward_cap::Cap::parse(self.cap(path))
            .unwrap()
            .storage_index()
            .unwrap()
            .to_string()
    }
}

pub fn build_tree(g: &Grid, name: &str) -> Tree {
    let t = tag(name);
    let mut caps = HashMap::new();
    let up = |data: String, fmt: &str| g.upload(data.as_bytes(), fmt).unwrap();
    let root = g.mkdir().unwrap();
    caps.insert(String::new(), root.clone());
    let a = g.mkdir().unwrap();
    let b = g.mkdir().unwrap();
    let shared = g.mkdir().unwrap();
    let broken = g.mkdir().unwrap();
    g.link(&root, "a", &a).unwrap();
    g.link(&root, "b", &b).unwrap();
    g.link(&root, "broken", &broken).unwrap();
    g.link(&a, "shared", &shared).unwrap();
    g.link(&b, "shared-again", &shared).unwrap();
    g.link(&b, "up", &root).unwrap(); // a cycle
    caps.insert("a".into(), a.clone());
    caps.insert("b".into(), b.clone());
    caps.insert("broken".into(), broken.clone());
    caps.insert("a/shared".into(), shared.clone());
    for (i, size) in [(0, 1000usize), (1, 5000), (2, 20_000)] {
        let c = up(format!("{t} chk {i} {}", "x".repeat(size)), "CHK");
        g.link(&a, &format!("chk{i}"), &c).unwrap();
        caps.insert(format!("a/chk{i}"), c);
    }
    let lit = up("lit".to_string(), "CHK");
    assert!(lit.starts_with("URI:LIT:"));
    g.link(&root, "lit", &lit).unwrap();
    caps.insert("lit".into(), lit);
    let sdmf = up(format!("{t} sdmf {}", "s".repeat(3000)), "SDMF");
    g.link(&root, "sdmf", &sdmf).unwrap();
    caps.insert("sdmf".into(), sdmf);
    let mdmf = up(format!("{t} mdmf {}", "m".repeat(3000)), "MDMF");
    g.link(&b, "mdmf", &mdmf).unwrap();
    caps.insert("b/mdmf".into(), mdmf);
    let long = format!("{LONG_NAME}{}", "L".repeat(200));
    let nonascii = up(format!("{t} unicode {}", "u".repeat(2000)), "CHK");
    g.link(&shared, &long, &nonascii).unwrap();
    caps.insert(format!("a/shared/{long}"), nonascii);
    let inner = up(format!("{t} inner {}", "i".repeat(2000)), "CHK");
    g.link(&broken, "inner", &inner).unwrap();
    caps.insert("broken/inner".into(), inner);
    let tiny = up("tiny".to_string(), "CHK");
    let imm_child = up(format!("{t} imm child {}", "c".repeat(1500)), "CHK");
    let imm = g
        .mkdir_immutable(serde_json::json!({"child": imm_child.clone(), "tiny": tiny.clone()}))
        .unwrap();
    g.link(&root, "imm", &imm).unwrap();
    caps.insert("imm".into(), imm);
    caps.insert("imm/child".into(), imm_child);
    caps.insert("imm/tiny".into(), tiny);
    // A DIR2-MDMF directory, and a DIR2-LIT one (small enough to live in
    // its cap) inside it.
    let mdmf_dir = g.mkdir_format("MDMF").unwrap();
    g.link(&root, "mdmf-dir", &mdmf_dir).unwrap();
    let in_mdmf = up(format!("{t} in mdmf dir {}", "d".repeat(1200)), "CHK");
    g.link(&mdmf_dir, "f", &in_mdmf).unwrap();
    let tt = up("tt".to_string(), "CHK");
    let lit_dir = g
        .mkdir_immutable(serde_json::json!({ "t": tt.clone() }))
        .unwrap();
    assert!(lit_dir.starts_with("URI:DIR2-LIT:"), "{lit_dir}");
    g.link(&mdmf_dir, "lit-dir", &lit_dir).unwrap();
    caps.insert("mdmf-dir".into(), mdmf_dir);
    caps.insert("mdmf-dir/f".into(), in_mdmf);
    caps.insert("mdmf-dir/lit-dir".into(), lit_dir);
    caps.insert("mdmf-dir/lit-dir/t".into(), tt);
    Tree { root, caps }
}

/// The sample tree, damaged: `a/chk0` and `sdmf` lose two shares
/// (unhealthy, recoverable), `a/chk1` keeps fewer than k (unrecoverable),
/// `a/chk2` has one corrupt share (only a verify sees it) and the `broken`
/// directory is unrecoverable.
pub fn build_damaged_tree(g: &Grid, name: &str) -> Tree {
    let tree = build_tree(g, name);
    assert_eq!(g.drop_shares(&tree.si("a/chk0"), 2).unwrap(), 2);
    assert_eq!(g.drop_shares(&tree.si("sdmf"), 2).unwrap(), 2);
    g.make_unrecoverable(&tree.si("a/chk1")).unwrap();
    g.corrupt_share(&tree.si("a/chk2")).unwrap();
    g.make_unrecoverable(&tree.si("broken")).unwrap();
    tree
}

/// Healthy (by check results) per path.
pub fn health(objs: &[ObjectUnit]) -> BTreeMap<String, Option<bool>> {
    objs.iter()
        .map(|o| {
            (
                o.path.join("/"),
                o.check_results
                    .as_ref()
                    .and_then(|c| c.pointer("/results/healthy"))
                    .and_then(|v| v.as_bool()),
            )
        })
        .collect()
}

/// Write a file and return its path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Run `c` with its stdout thrown away, and return its exit code and its
/// peak resident memory in KiB (VmHWM, sampled from /proc while it runs:
/// monotonic, so the last sample before it exits is its peak).
pub fn run_measuring_rss(mut c: Command) -> (i32, u64) {
    use std::process::Stdio;
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn steward");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st.code().unwrap_or(-1), peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Tahoe's `POST uri/$CAP?t=WHAT` stream (`stream-manifest`,
/// `stream-deep-check&verify=true`, ...), as lines.
pub fn tahoe_stream(cap: &str, what: &str) -> Vec<String> {
    let (status, body) = grid().post(&format!("uri/{cap}?t={what}")).unwrap();
    assert_eq!(status, 200, "{body}");
    body.lines().map(str::to_string).collect()
}

/// Asserts that steward's manifest output `out` has Tahoe's lines, byte
/// for byte, but the last (the stats unit); returns Tahoe's stats.
pub fn assert_tahoe_lines_but_stats(out: &str, tahoe: &[String]) -> serde_json::Value {
    let ours: Vec<&str> = out.lines().collect();
    assert_eq!(ours.len(), tahoe.len());
    for (a, b) in ours.iter().zip(tahoe).take(tahoe.len() - 1) {
        assert_eq!(a, b);
    }
    let last: serde_json::Value = serde_json::from_str(tahoe.last().unwrap()).unwrap();
    last["stats"].clone()
}
