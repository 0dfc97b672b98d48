//! Building a deterministic test tree on a real grid, fast.
//!
//! The tree is planned first (a pure function of the object count), then
//! built bottom-up: every file is uploaded by a pool of threads (LIT caps
//! are made locally: their data is the cap), then each level of
//! directories is created with one `t=mkdir-with-children` (or
//! `t=mkdir-immutable`) request per directory, again from many threads.

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use steward_testgrid::Grid;

/// Requests in flight while building.
const BUILD_THREADS: usize = 16;
/// Files kept directly in a directory that has subdirectories.
const FILES_IN_INNER: u64 = 4;
/// Most subdirectories per directory.
const MAX_SUBDIRS: u64 = 10;

/// What a tree is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Leaf directories of up to 25 objects; 3 files in 25 LIT, 1 SDMF, 1
    /// MDMF, the rest CHK (about 12% of the objects mutable, directories
    /// included).
    Standard,
    /// A quarter of the objects mutable: leaf directories of about ten
    /// entries, and 5 files in 25 SDMF or MDMF (2 LIT, the rest CHK).
    QuarterMutable,
}

impl Shape {
    /// Objects (the directory included) above which a directory gets
    /// subdirectories.
    fn leaf_max(self) -> u64 {
        match self {
            Shape::Standard => 25,
            Shape::QuarterMutable => 11,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Chk,
    Lit,
    Sdmf,
    Mdmf,
}

#[derive(Clone, Debug)]
enum ChildRef {
    File(usize),
    Dir(usize),
}

#[derive(Debug)]
struct DirPlan {
    immutable: bool,
    children: Vec<(String, ChildRef)>,
    height: usize,
}

/// Counts of what a tree holds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub dirs: u64,
    pub immutable_dirs: u64,
    pub chk: u64,
    pub lit: u64,
    pub sdmf: u64,
    pub mdmf: u64,
}

impl Counts {
    pub fn objects(&self) -> u64 {
        self.dirs + self.chk + self.lit + self.sdmf + self.mdmf
    }
    pub fn add(&mut self, o: &Counts) {
        self.dirs += o.dirs;
        self.immutable_dirs += o.immutable_dirs;
        self.chk += o.chk;
        self.lit += o.lit;
        self.sdmf += o.sdmf;
        self.mdmf += o.mdmf;
    }
    pub fn describe(&self) -> String {
        format!(
            "{} objects: {} directories ({} immutable), {} CHK, {} LIT, {} SDMF, {} MDMF",
            self.objects(),
            self.dirs,
            self.immutable_dirs,
            self.chk,
            self.lit,
            self.sdmf,
            self.mdmf
        )
    }
}

/// A planned tree: directories (index 0 is the root) and files.
struct Plan {
    tag: String,
    shape: Shape,
    dirs: Vec<DirPlan>,
    files: Vec<(Kind, u64)>,
    counts: Counts,
}

impl Plan {
    fn new(tag: &str, n: u64, shape: Shape) -> Plan {
        let mut p = Plan {
            tag: tag.to_string(),
            shape,
            dirs: Vec::new(),
            files: Vec::new(),
            counts: Counts::default(),
        };
        p.dir(n.max(1));
        p
    }

    fn next_kind(&self, immutable_dir: bool) -> Kind {
        let i = self.files.len() % 25;
        match (self.shape, i, immutable_dir) {
            (Shape::Standard, 0..=2, _) => Kind::Lit,
            (Shape::Standard, 3, false) => Kind::Sdmf,
            (Shape::Standard, 4, false) => Kind::Mdmf,
            (Shape::QuarterMutable, 0..=1, _) => Kind::Lit,
            (Shape::QuarterMutable, 2..=6, false) if i.is_multiple_of(2) => Kind::Sdmf,
            (Shape::QuarterMutable, 2..=6, false) => Kind::Mdmf,
            _ => Kind::Chk,
        }
    }

    fn file(&mut self, immutable_dir: bool) -> usize {
        let k = self.next_kind(immutable_dir);
        match k {
            Kind::Chk => self.counts.chk += 1,
            Kind::Lit => self.counts.lit += 1,
            Kind::Sdmf => self.counts.sdmf += 1,
            Kind::Mdmf => self.counts.mdmf += 1,
        }
        let i = self.files.len();
        self.files.push((k, i as u64));
        i
    }

    /// Plans a directory holding `n` objects (itself included).
    fn dir(&mut self, n: u64) -> usize {
        let id = self.dirs.len();
        // Every 7th leaf directory is immutable (DIR2-CHK), holding only
        // immutable files.
        let leaf_max = self.shape.leaf_max();
        let leaf = n <= leaf_max;
        let immutable = leaf && id % 7 == 3 && n > 1;
        self.dirs.push(DirPlan {
            immutable,
            children: Vec::new(),
            height: 0,
        });
        self.counts.dirs += 1;
        if immutable {
            self.counts.immutable_dirs += 1;
        }
        let mut children = Vec::new();
        let mut height = 0;
        if leaf {
            for j in 0..n - 1 {
                let f = self.file(immutable);
                children.push((format!("f{j:03}"), ChildRef::File(f)));
            }
        } else {
            let files = FILES_IN_INNER.min(n - 1);
            for j in 0..files {
                let f = self.file(false);
                children.push((format!("f{j:03}"), ChildRef::File(f)));
            }
            let rem = n - 1 - files;
            let k = rem.div_ceil(leaf_max).clamp(1, MAX_SUBDIRS);
            for j in 0..k {
                let share = rem / k + u64::from(j < rem % k);
                let d = self.dir(share);
                height = height.max(self.dirs[d].height + 1);
                children.push((format!("d{j:02}"), ChildRef::Dir(d)));
            }
        }
        self.dirs[id].children = children;
        self.dirs[id].height = height;
        id
    }

    fn content(&self, kind: Kind, idx: u64) -> Vec<u8> {
        let h = Sha256::digest(format!("{}/{idx}", self.tag).as_bytes());
        let r = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let size = match kind {
            Kind::Lit => 10 + (r % 40) as usize,
            Kind::Chk => 56 + (r % 4000) as usize,
            Kind::Sdmf | Kind::Mdmf => 20 + (r % 1000) as usize,
        };
        let head = format!("steward-bench {} file {idx} ", self.tag);
        let mut data = head.into_bytes();
        let mut i = 0u64;
        while data.len() < size {
            data.extend_from_slice(&Sha256::digest([&h[..], &i.to_le_bytes()].concat())[..]);
            i += 1;
        }
        data.truncate(size.max(1));
        data
    }
}

/// A tree built on a grid.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Built {
    /// Write cap of the root directory.
    pub cap: String,
    pub counts: Counts,
    /// Caps of the files, in plan order, with their kind.
    pub files: Vec<(Kind, String)>,
}

/// Runs `f` over `items` from `threads` threads, printing progress as
/// `what`. Results keep the order of `items`.
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    what: &str,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let err: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()).max(1) {
            s.spawn(|| loop {
                if err.lock().expect("lock").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    return;
                }
                match f(&items[i]) {
                    Ok(r) => out.lock().expect("lock")[i] = Some(r),
                    Err(e) => {
                        *err.lock().expect("lock") = Some(e);
                        return;
                    }
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.is_multiple_of(1000) {
                    eprintln!(
                        "  {what}: {d}/{} ({:.0}/s)",
                        items.len(),
                        d as f64 / t0.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    if let Some(e) = err.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(out
        .into_inner()
        .expect("lock")
        .into_iter()
        .map(|r| r.expect("every item done"))
        .collect())
}

/// Web-API calls for building, spread over several gateways of one grid.
pub struct Builder {
    gateways: Vec<String>,
    http: reqwest::blocking::Client,
    next: AtomicUsize,
}

impl Builder {
    pub fn new(grid: &Grid) -> Result<Builder> {
        Ok(Builder {
            gateways: grid.gateway_urls(),
            http: reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(600))
                .pool_max_idle_per_host(64)
                .build()?,
            next: AtomicUsize::new(0),
        })
    }

    fn gateway(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.gateways[i % self.gateways.len()]
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder, what: &str) -> Result<String> {
        let r = req.send().with_context(|| what.to_string())?;
        let status = r.status();
        let body = r.text()?;
        if !status.is_success() {
            anyhow::bail!("{what}: HTTP {status}: {body}");
        }
        Ok(body.trim().to_string())
    }

    /// `PUT /uri?format=F`: the new file's cap.
    pub fn upload(&self, data: &[u8], format: &str) -> Result<String> {
        let url = format!("{}uri?format={format}", self.gateway());
        self.send(self.http.put(url).body(data.to_vec()), "upload")
    }

    /// `POST /uri?t=mkdir-with-children` (or `t=mkdir-immutable`) with
    /// `children` as `name -> cap`.
    pub fn mkdir(&self, children: &[(String, String)], immutable: bool) -> Result<String> {
        let mut m = serde_json::Map::new();
        for (name, cap) in children {
            let kind = if cap.starts_with("URI:DIR2") {
                "dirnode"
            } else {
                "filenode"
            };
            let write = ["URI:DIR2:", "URI:DIR2-MDMF:", "URI:SSK:", "URI:MDMF:"]
                .iter()
                .any(|p| cap.starts_with(p));
            let key = if write { "rw_uri" } else { "ro_uri" };
            m.insert(name.clone(), serde_json::json!([kind, { key: cap }]));
        }
        let t = if immutable {
            "mkdir-immutable"
        } else {
            "mkdir-with-children"
        };
        let url = format!("{}uri?t={t}", self.gateway());
        let body = serde_json::to_vec(&serde_json::Value::Object(m))?;
        self.send(self.http.post(url).body(body), t)
    }
}

/// Plans and builds a tree of about `n` objects (the root directory
/// included) of `shape`. `tag` makes file contents (and so CHK caps)
/// unique to it.
pub fn build(grid: &Grid, tag: &str, n: u64, shape: Shape) -> Result<Built> {
    let b = Builder::new(grid)?;
    let plan = Plan::new(tag, n, shape);
    let t0 = Instant::now();
    let files: Vec<(Kind, String)> = par_map(
        &plan.files,
        BUILD_THREADS,
        &format!("{tag}: files uploaded"),
        |&(kind, idx)| {
            let data = plan.content(kind, idx);
            let cap = match kind {
                Kind::Lit => format!("URI:LIT:{}", steward_cap::base32::encode(&data)),
                Kind::Chk => b.upload(&data, "CHK")?,
                Kind::Sdmf => b.upload(&data, "SDMF")?,
                Kind::Mdmf => b.upload(&data, "MDMF")?,
            };
            Ok((kind, cap))
        },
    )
    .with_context(|| format!("uploading the files of {tag}"))?;
    let t_files = t0.elapsed();
    let max_h = plan.dirs.iter().map(|d| d.height).max().unwrap_or(0);
    let mut dir_caps: HashMap<usize, String> = HashMap::new();
    for h in 0..=max_h {
        let level: Vec<usize> = (0..plan.dirs.len())
            .filter(|&i| plan.dirs[i].height == h)
            .collect();
        let caps = par_map(
            &level,
            BUILD_THREADS,
            &format!("{tag}: directories"),
            |&i| {
                let d = &plan.dirs[i];
                let mut children = Vec::new();
                for (name, c) in &d.children {
                    let cap = match c {
                        ChildRef::File(f) => files[*f].1.clone(),
                        ChildRef::Dir(j) => dir_caps
                            .get(j)
                            .cloned()
                            .ok_or_else(|| anyhow!("directory {j} not built yet"))?,
                    };
                    children.push((name.clone(), cap));
                }
                b.mkdir(&children, d.immutable)
            },
        )
        .with_context(|| format!("creating the directories of {tag}"))?;
        for (i, c) in level.into_iter().zip(caps) {
            dir_caps.insert(i, c);
        }
    }
    eprintln!(
        "  {tag}: {} built in {:.1?} (files {:.1?})",
        plan.counts.describe(),
        t0.elapsed(),
        t_files
    );
    Ok(Built {
        cap: dir_caps.remove(&0).ok_or_else(|| anyhow!("no root"))?,
        counts: plan.counts,
        files,
    })
}

/// Storage index (base32) of a cap, `None` for LIT.
pub fn storage_index(cap: &str) -> Result<Option<String>> {
    let c = steward_cap::Cap::parse(cap).map_err(|e| anyhow!("{e}"))?;
    Ok(c.storage_index().map(|si| si.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_sizes_are_exact_and_nested() {
        for n in [1u64, 2, 25, 26, 300, 1000, 10_000] {
            for shape in [Shape::Standard, Shape::QuarterMutable] {
                let p = Plan::new("t", n, shape);
                assert_eq!(p.counts.objects(), n, "n={n}");
            }
        }
        // A quarter mutable: directories and SDMF/MDMF files.
        let p = Plan::new("t", 1000, Shape::QuarterMutable);
        let c = p.counts;
        let mutable = (c.dirs - c.immutable_dirs + c.sdmf + c.mdmf) as f64 / c.objects() as f64;
        assert!((0.22..0.30).contains(&mutable), "{mutable}: {c:?}");
        let p = Plan::new("t", 10_000, Shape::Standard);
        assert!(p.dirs[0].height >= 3);
        assert!(p.counts.immutable_dirs > 0 && p.counts.sdmf > 0 && p.counts.mdmf > 0);
        assert!(p.counts.lit > 0 && p.counts.chk > p.counts.lit);
    }
}
