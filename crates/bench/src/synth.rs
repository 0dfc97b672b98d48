//! A SYNTHETIC gateway: a small HTTP server that imitates the part of a
//! Tahoe-LAFS gateway's web API that steward's `manifest` and `deep-check`
//! use, over a deterministic generated tree of any size (1,000,000 objects
//! by default). It stores nothing and checks nothing: every `t=check`
//! answer is an instant "healthy". It exists to measure *steward's own*
//! cost (peak RSS, CPU per object, objects per second) at a scale where a
//! real grid is out of reach on one machine. Every figure measured against
//! it is labelled "synthetic gateway" in the report.
//!
//! Served:
//!
//! * `GET /?t=json`: a welcome page listing five (fictitious) connected
//!   storage servers, as Tahoe shapes it.
//! * `GET /uri/$CAP?t=json`: a directory listing in Tahoe's format
//!   (`["dirnode", {rw_uri?, ro_uri, verify_uri, mutable, children}]`,
//!   each child `[filenode|dirnode, {rw_uri?, ro_uri, verify_uri, mutable,
//!   format, size?, metadata}]`); `rw_uri` only when the request used a
//!   write cap, as Tahoe does. A file cap gets its `filenode` JSON.
//! * `POST /uri/$CAP?t=check&output=JSON` (any `verify`/`add-lease`):
//!   a healthy check result shaped as Tahoe's (5 of 5 shares, `needed` 2).
//!
//! Optionally every listing and check answer is held for a fixed delay, so
//! that steward's memory and CPU can be seen with many requests waiting at
//! once, as they do on a slow gateway.
//!
//! Caps are *valid* Tahoe caps that steward's parser accepts: keys and
//! hashes are SHA-256 of a label and an index, written as `URI:DIR2:`,
//! `URI:CHK:`, `URI:SSK:`, `URI:MDMF:` and `URI:LIT:` caps; read and verify
//! caps are derived with `steward-cap`, so they agree with the storage
//! indexes steward computes. The shape is the real bench tree's: leaf
//! directories of 24 files, inner directories of 4 files and up to 10
//! subdirectories; files are 12% LIT, 4% SDMF, 4% MDMF, 80% CHK (no
//! immutable directories here).

use anyhow::{anyhow, Context, Result};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use steward_cap::{base32, Authority, Cap};

const LEAF_MAX: u64 = 25;
const FILES_IN_INNER: u64 = 4;
const MAX_SUBDIRS: u64 = 10;

struct SDir {
    first_file: u64,
    files: u32,
    subdirs: Vec<u32>,
}

/// What the synthetic tree holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct SynthCounts {
    pub dirs: u64,
    pub chk: u64,
    pub lit: u64,
    pub sdmf: u64,
    pub mdmf: u64,
}

impl SynthCounts {
    pub fn objects(&self) -> u64 {
        self.dirs + self.chk + self.lit + self.sdmf + self.mdmf
    }
    /// Objects a deep-check sends a `t=check` for (all but LIT).
    pub fn checkable(&self) -> u64 {
        self.objects() - self.lit
    }
}

/// Requests served, for checking that a run covered the whole tree.
#[derive(Default)]
pub struct Served {
    pub listings: AtomicU64,
    pub checks: AtomicU64,
    pub other: AtomicU64,
}

impl Served {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.listings.load(Ordering::Relaxed),
            self.checks.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
        )
    }
}

struct Tree {
    /// How long every answer is held (0: instant).
    delay: std::time::Duration,
    dirs: Vec<SDir>,
    by_si: HashMap<[u8; 16], u32>,
    servers: Vec<String>,
    served: Arc<Served>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Chk,
    Lit,
    Sdmf,
    Mdmf,
}

fn file_kind(i: u64) -> FileKind {
    match i % 25 {
        0..=2 => FileKind::Lit,
        3 => FileKind::Sdmf,
        4 => FileKind::Mdmf,
        _ => FileKind::Chk,
    }
}

fn h(label: &str, i: u64) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(b"steward-bench synthetic ");
    d.update(label.as_bytes());
    d.update(i.to_le_bytes());
    d.finalize().into()
}

fn dir_cap(d: u32) -> String {
    let wk = h("dir writekey", d as u64);
    let fp = h("dir fingerprint", d as u64);
    format!(
        "URI:DIR2:{}:{}",
        base32::encode(&wk[..16]),
        base32::encode(&fp)
    )
}

fn file_size(i: u64) -> u64 {
    let r = u64::from_le_bytes(h("size", i)[..8].try_into().expect("8 bytes"));
    56 + r % 100_000
}

/// The strongest cap of file `i`.
fn file_cap(i: u64) -> String {
    match file_kind(i) {
        FileKind::Lit => format!(
            "URI:LIT:{}",
            base32::encode(format!("synthetic literal file {i}").as_bytes())
        ),
        FileKind::Chk => {
            let k = h("chk key", i);
            let u = h("chk ueb", i);
            format!(
                "URI:CHK:{}:{}:2:5:{}",
                base32::encode(&k[..16]),
                base32::encode(&u),
                file_size(i)
            )
        }
        FileKind::Sdmf | FileKind::Mdmf => {
            let wk = h("mutable writekey", i);
            let fp = h("mutable fingerprint", i);
            let tag = if file_kind(i) == FileKind::Sdmf {
                "SSK"
            } else {
                "MDMF"
            };
            format!(
                "URI:{tag}:{}:{}",
                base32::encode(&wk[..16]),
                base32::encode(&fp)
            )
        }
    }
}

fn parse(cap: &str) -> Result<Cap> {
    Cap::parse(cap).map_err(|e| anyhow!("{e}"))
}

impl Tree {
    fn plan(n: u64, served: Arc<Served>) -> Result<(Tree, SynthCounts)> {
        let mut t = Tree {
            delay: std::time::Duration::ZERO,
            dirs: Vec::new(),
            by_si: HashMap::new(),
            servers: (0..5)
                .map(|i| format!("v0-{}", base32::encode(&h("server", i))))
                .collect(),
            served,
        };
        let mut next_file = 0u64;
        t.dir(n.max(1), &mut next_file);
        let mut c = SynthCounts {
            dirs: t.dirs.len() as u64,
            ..Default::default()
        };
        for i in 0..next_file {
            match file_kind(i) {
                FileKind::Chk => c.chk += 1,
                FileKind::Lit => c.lit += 1,
                FileKind::Sdmf => c.sdmf += 1,
                FileKind::Mdmf => c.mdmf += 1,
            }
        }
        for d in 0..t.dirs.len() as u32 {
            let si = parse(&dir_cap(d))?
                .storage_index()
                .ok_or_else(|| anyhow!("a directory cap without SI"))?;
            t.by_si.insert(si.0, d);
        }
        Ok((t, c))
    }

    fn dir(&mut self, n: u64, next_file: &mut u64) -> u32 {
        let id = self.dirs.len() as u32;
        let files = if n <= LEAF_MAX {
            n - 1
        } else {
            FILES_IN_INNER.min(n - 1)
        };
        self.dirs.push(SDir {
            first_file: *next_file,
            files: files as u32,
            subdirs: Vec::new(),
        });
        *next_file += files;
        if n > LEAF_MAX {
            let rem = n - 1 - files;
            let k = rem.div_ceil(LEAF_MAX).clamp(1, MAX_SUBDIRS);
            let mut subs = Vec::new();
            for j in 0..k {
                let share = rem / k + u64::from(j < rem % k);
                subs.push(self.dir(share, next_file));
            }
            self.dirs[id as usize].subdirs = subs;
        }
        id
    }

    fn file_json(&self, i: u64, write: bool) -> Result<Value> {
        let cap = parse(&file_cap(i))?;
        let mut m = Map::new();
        let kind = file_kind(i);
        m.insert("mutable".into(), json!(cap.is_mutable()));
        m.insert(
            "format".into(),
            json!(match kind {
                FileKind::Chk => "CHK",
                FileKind::Lit => "LIT",
                FileKind::Sdmf => "SDMF",
                FileKind::Mdmf => "MDMF",
            }),
        );
        if let Some(s) = cap.size() {
            m.insert("size".into(), json!(s));
        } else if kind == FileKind::Lit {
            m.insert(
                "size".into(),
                json!(cap.literal_data().map_or(0, <[u8]>::len)),
            );
        }
        m.insert("metadata".into(), json!({}));
        if write && cap.authority() == Authority::Write {
            m.insert("rw_uri".into(), json!(cap.expose()));
        }
        if let Some(r) = cap.to_read_cap() {
            m.insert("ro_uri".into(), json!(r.expose()));
        }
        if let Some(v) = cap.to_verify_cap() {
            m.insert("verify_uri".into(), json!(v.expose()));
        }
        Ok(json!(["filenode", Value::Object(m)]))
    }

    fn dir_fields(&self, d: u32, write: bool, m: &mut Map<String, Value>) -> Result<()> {
        let cap = parse(&dir_cap(d))?;
        if write {
            m.insert("rw_uri".into(), json!(cap.expose()));
        }
        let ro = cap.to_read_cap().ok_or_else(|| anyhow!("no read cap"))?;
        let vc = cap
            .to_verify_cap()
            .ok_or_else(|| anyhow!("no verify cap"))?;
        m.insert("ro_uri".into(), json!(ro.expose()));
        m.insert("verify_uri".into(), json!(vc.expose()));
        m.insert("mutable".into(), json!(true));
        Ok(())
    }

    fn listing(&self, d: u32, write: bool) -> Result<String> {
        let dir = &self.dirs[d as usize];
        let mut children = Map::new();
        for j in 0..dir.files as u64 {
            children.insert(
                format!("f{j:03}"),
                self.file_json(dir.first_file + j, write)?,
            );
        }
        for (j, &s) in dir.subdirs.iter().enumerate() {
            let mut m = Map::new();
            m.insert("metadata".into(), json!({}));
            self.dir_fields(s, write, &mut m)?;
            children.insert(format!("d{j:02}"), json!(["dirnode", Value::Object(m)]));
        }
        let mut top = Map::new();
        top.insert("children".into(), Value::Object(children));
        self.dir_fields(d, write, &mut top)?;
        Ok(serde_json::to_string(&json!([
            "dirnode",
            Value::Object(top)
        ]))?)
    }

    fn check(&self, cap: &Cap) -> String {
        let Some(si) = cap.storage_index() else {
            // LIT: Tahoe answers with an empty result.
            return "{}".into();
        };
        let si = si.to_string();
        let mut sharemap = Map::new();
        for (n, s) in self.servers.iter().enumerate() {
            let key = if cap.is_mutable() {
                format!("seq1-{}-sh{n}", &si[..4])
            } else {
                n.to_string()
            };
            sharemap.insert(key, json!([s]));
        }
        json!({
            "storage-index": si,
            "summary": "Healthy",
            "results": {
                "count-happiness": 5,
                "count-shares-good": 5,
                "count-shares-needed": 2,
                "count-shares-expected": 5,
                "count-good-share-hosts": 5,
                "count-corrupt-shares": 0,
                "list-corrupt-shares": [],
                "servers-responding": self.servers,
                "sharemap": sharemap,
                "count-wrong-shares": 0,
                "count-recoverable-versions": 1,
                "count-unrecoverable-versions": 0,
                "healthy": true,
                "recoverable": true
            }
        })
        .to_string()
    }

    fn welcome(&self) -> String {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"nodeid": s, "connection_status": "connected", "nickname": format!("synthetic{i}"),
                       "version": "tahoe-lafs/1.20.0 (synthetic)", "available_space": 1u64 << 40})
            })
            .collect();
        json!({"introducers": {"statuses": []}, "servers": servers}).to_string()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Q = Query<HashMap<String, String>>;

fn json_ok(body: String) -> Response {
    ([("content-type", "application/json")], body).into_response()
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, msg.into()).into_response()
}

async fn welcome(State(t): State<Arc<Tree>>, Query(q): Q) -> Response {
    t.served.other.fetch_add(1, Ordering::Relaxed);
    if q.get("t").map(String::as_str) == Some("json") {
        json_ok(t.welcome())
    } else {
        err(StatusCode::OK, "steward-bench synthetic gateway")
    }
}

async fn hold(t: &Tree) {
    if !t.delay.is_zero() {
        tokio::time::sleep(t.delay).await;
    }
}

async fn get_uri(State(t): State<Arc<Tree>>, Path(cap): Path<String>, Query(q): Q) -> Response {
    hold(&t).await;
    if q.get("t").map(String::as_str) != Some("json") {
        t.served.other.fetch_add(1, Ordering::Relaxed);
        return err(StatusCode::BAD_REQUEST, "synthetic gateway: only t=json");
    }
    let cap_text = percent_decode(cap.trim_end_matches('/'));
    let Ok(cap) = Cap::parse(&cap_text) else {
        return err(StatusCode::BAD_REQUEST, "not a cap");
    };
    if !cap.is_directory() {
        t.served.other.fetch_add(1, Ordering::Relaxed);
        // Files: find it by its cap text is not needed by steward; answer
        // with a minimal filenode.
        return json_ok(
            json!(["filenode", {"mutable": cap.is_mutable(), "ro_uri": cap.to_read_cap().map(|c| c.expose().to_string())}])
                .to_string(),
        );
    }
    let Some(si) = cap.storage_index() else {
        return err(StatusCode::NOT_FOUND, "no such directory");
    };
    let Some(&d) = t.by_si.get(&si.0) else {
        return err(StatusCode::NOT_FOUND, "no such directory");
    };
    t.served.listings.fetch_add(1, Ordering::Relaxed);
    match t.listing(d, cap.authority() == Authority::Write) {
        Ok(body) => json_ok(body),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn post_uri(State(t): State<Arc<Tree>>, Path(cap): Path<String>, Query(q): Q) -> Response {
    hold(&t).await;
    if q.get("t").map(String::as_str) != Some("check") {
        t.served.other.fetch_add(1, Ordering::Relaxed);
        return err(StatusCode::BAD_REQUEST, "synthetic gateway: only t=check");
    }
    let Ok(cap) = Cap::parse(&percent_decode(&cap)) else {
        return err(StatusCode::BAD_REQUEST, "not a cap");
    };
    if cap.authority() == Authority::Verify {
        // As the real gateway does.
        return err(
            StatusCode::METHOD_NOT_ALLOWED,
            "verify caps cannot be checked here",
        );
    }
    t.served.checks.fetch_add(1, Ordering::Relaxed);
    json_ok(t.check(&cap))
}

/// A running synthetic gateway.
pub struct Synthetic {
    pub url: String,
    pub root_cap: String,
    pub counts: SynthCounts,
    pub served: Arc<Served>,
}

/// Generates a tree of `n` objects and serves it on a free loopback port
/// from runtime `rt`, holding every listing and check answer for `delay`.
pub fn start(rt: &tokio::runtime::Handle, n: u64, delay: std::time::Duration) -> Result<Synthetic> {
    let served = Arc::new(Served::default());
    let (mut tree, counts) = Tree::plan(n, served.clone())?;
    tree.delay = delay;
    let tree = Arc::new(tree);
    let app = Router::new()
        .route("/", get(welcome))
        .route("/uri/*cap", get(get_uri).post(post_uri))
        .with_state(tree);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        if let Err(e) = axum::serve(l, app).await {
            eprintln!("synthetic gateway stopped: {e}");
        }
    });
    Ok(Synthetic {
        url: format!("http://127.0.0.1:{port}/"),
        root_cap: dir_cap(0),
        counts,
        served,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_valid_and_the_tree_has_the_asked_size() {
        for n in [1u64, 30, 1000, 12_345] {
            let (t, c) = Tree::plan(n, Arc::default()).unwrap();
            assert_eq!(c.objects(), n);
            assert_eq!(t.dirs.len() as u64, c.dirs);
        }
        for i in 0..100 {
            let cap = parse(&file_cap(i)).unwrap();
            assert_eq!(cap.expose(), file_cap(i), "canonical");
        }
        let (t, _) = Tree::plan(1000, Arc::default()).unwrap();
        let l: Value = serde_json::from_str(&t.listing(0, true).unwrap()).unwrap();
        assert_eq!(l[0], "dirnode");
        let kids = l[1]["children"].as_object().unwrap();
        assert_eq!(kids.len(), 4 + 10);
        for (_, k) in kids {
            let ro = k[1]["ro_uri"].as_str().unwrap();
            parse(ro).unwrap();
        }
        assert!(l[1]["rw_uri"].as_str().unwrap().starts_with("URI:DIR2:"));
        let ro: Value = serde_json::from_str(&t.listing(0, false).unwrap()).unwrap();
        assert!(ro[1].get("rw_uri").is_none());
        let chk = parse(&file_cap(5)).unwrap();
        let c: Value = serde_json::from_str(&t.check(&chk)).unwrap();
        assert_eq!(c["results"]["healthy"], true);
        assert_eq!(c["storage-index"], chk.storage_index().unwrap().to_string());
        assert_eq!(percent_decode("URI%3ADIR2%3Aab"), "URI:DIR2:ab");
    }
}
