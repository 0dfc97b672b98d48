//! The real grid's tree: how it is split into parts, one per measurement
//! ([`Parts`]), building it or reopening a kept one ([`grid_and_tree`]),
//! and the damage the repair measurement starts from.

use crate::machine;
use crate::tree;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Instant;
use steward_testgrid::{Grid, GridConfig};

/// Sizes of the tree's parts. `mixed` and `rtt_mixed` are built with a
/// quarter of their objects mutable ([`tree::Shape::QuarterMutable`]).
pub struct Parts {
    pub dc: u64,
    pub verify: u64,
    pub repair: u64,
    pub rtt: Vec<(u64, u64)>,
    pub mixed: u64,
    pub rtt_mixed: Vec<(u64, u64)>,
    pub rest: u64,
}

impl Parts {
    /// Names the plan (and the builder's format): a kept tree is reused
    /// only by a run that would build the same one.
    pub fn key(&self, n: u64, quick: bool) -> String {
        let rtt: Vec<String> = self
            .rtt
            .iter()
            .map(|(r, s)| format!("rtt{r}={s}"))
            .collect();
        let rtt_mixed: Vec<String> = self
            .rtt_mixed
            .iter()
            .map(|(r, s)| format!("mixed-rtt{r}={s}"))
            .collect();
        format!(
            "format {TREE_FORMAT}: {n} objects{}, dc={} verify={} repair={} {} mixed={} {} rest={}",
            if quick { " (quick)" } else { "" },
            self.dc,
            self.verify,
            self.repair,
            rtt.join(" "),
            self.mixed,
            rtt_mixed.join(" "),
            self.rest
        )
    }

    pub fn plan(n: u64, quick: bool, rtts: &[u64]) -> Parts {
        let f = |frac: f64, min: u64| ((n as f64 * frac).round() as u64).max(min);
        let (dc, verify, repair) = if quick {
            (f(0.2, 100), f(0.05, 30), f(0.05, 30))
        } else {
            (f(0.12, 100), f(0.03, 30), f(0.04, 30))
        };
        // Fewer objects at longer RTTs, so that Tahoe's one-at-a-time walk
        // finishes: 5% of the tree at 20 ms (15% with --quick), scaled by
        // sqrt(20 / RTT).
        let base = if quick { 0.15 } else { 0.05 };
        let rtt: Vec<(u64, u64)> = rtts
            .iter()
            .filter(|&&r| r > 0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|&r| {
                let scale = (20.0 / r as f64).sqrt().min(1.0);
                (r, f(base * scale, 30))
            })
            .collect();
        // The quarter-mutable tree: as large as dc/ on loopback, as the
        // other tree's part at each RTT.
        let mixed = dc;
        let rtt_mixed = rtt.clone();
        let used = 1
            + dc
            + verify
            + repair
            + mixed
            + rtt.iter().chain(&rtt_mixed).map(|(_, s)| s).sum::<u64>();
        Parts {
            dc,
            verify,
            repair,
            rtt,
            mixed,
            rtt_mixed,
            rest: n.saturating_sub(used),
        }
    }
}

/// The loopback grid's tree: root write cap and its parts. Saved next to
/// the grid ([`TREE_FILE`]) so that a later run can reuse both.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct BuiltTree {
    /// [`Parts::key`] of the plan it was built to.
    pub plan: String,
    /// When and how fast it was built.
    pub built_at: String,
    pub build_secs: f64,
    /// Set when read back by a later run (not saved).
    #[serde(skip)]
    pub reused_from: Option<String>,
    pub root: String,
    pub parts: NamedParts,
    pub total: tree::Counts,
}

/// The parts of a built tree, by name.
pub type NamedParts = Vec<(String, tree::Built)>;

/// The saved [`BuiltTree`], in the grid directory.
const TREE_FILE: &str = "bench-tree.json";
/// Bump when the tree builder changes what a plan produces.
const TREE_FORMAT: u32 = 2;

/// The grid and its built tree: reopened from `dir` when a kept grid there
/// holds a tree of the same plan, else built afresh in `dir` (a few
/// minutes) and saved for the next run.
///
/// A reused tree is in the state the last run left it: the `repair/`
/// damage is redone before each repair run anyway, leases only get renewed,
/// and nothing else writes to the tree.
pub fn grid_and_tree(
    dir: &Path,
    parts: &Parts,
    plan: &str,
    fresh: bool,
) -> Result<(Grid, BuiltTree)> {
    let config = || GridConfig {
        gateways: 3,
        base_dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    if !fresh && Grid::is_reusable(dir) {
        let reuse = (|| -> Result<(Grid, BuiltTree)> {
            if !Grid::recorded_shape(dir)?.matches(&config()) {
                bail!("its grid has another shape");
            }
            let text = fs::read_to_string(dir.join(TREE_FILE))
                .with_context(|| format!("no finished tree ({TREE_FILE})"))?;
            let mut tree: BuiltTree = serde_json::from_str(&text)?;
            if tree.plan != plan {
                bail!("its tree was built to another plan ({})", tree.plan);
            }
            eprintln!("== reopening the kept grid in {} ==", dir.display());
            let t = Instant::now();
            let grid = Grid::open(dir, Default::default())?;
            eprintln!(
                "  grid up in {:.1?}; reusing its tree, built {} in {:.0} s",
                t.elapsed(),
                tree.built_at,
                tree.build_secs
            );
            tree.reused_from = Some(tree.built_at.clone());
            Ok((grid, tree))
        })();
        match reuse {
            Ok(r) => return Ok(r),
            Err(e) => eprintln!("  not reusing {}: {e:#}; building afresh", dir.display()),
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    eprintln!(
        "== starting a grid in {}: 5 storage nodes, 3 gateways ==",
        dir.display()
    );
    let t = Instant::now();
    let grid = Grid::start(config())?;
    eprintln!("  grid up in {:.1?}", t.elapsed());
    eprintln!("== building the tree ({plan}) ==");
    let t = Instant::now();
    let (root, built, total) = build_tree(&grid, parts)?;
    let tree = BuiltTree {
        plan: plan.to_string(),
        built_at: machine::utc_now(),
        build_secs: t.elapsed().as_secs_f64(),
        reused_from: None,
        root,
        parts: built,
        total,
    };
    eprintln!("  {} in {:.0} s", total.describe(), tree.build_secs);
    let tmp = dir.join(format!("{TREE_FILE}.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(&tree)?)?;
    fs::rename(&tmp, dir.join(TREE_FILE))?;
    Ok((grid, tree))
}

impl BuiltTree {
    pub fn part(&self, name: &str) -> &tree::Built {
        &self
            .parts
            .iter()
            .find(|(n, _)| n == name)
            .expect("part exists")
            .1
    }
}

fn build_tree(grid: &Grid, parts: &Parts) -> Result<(String, NamedParts, tree::Counts)> {
    use tree::Shape::{QuarterMutable, Standard};
    let mut specs: Vec<(String, u64, tree::Shape)> = vec![
        ("dc".into(), parts.dc, Standard),
        ("verify".into(), parts.verify, Standard),
        ("repair".into(), parts.repair, Standard),
    ];
    for (r, s) in &parts.rtt {
        specs.push((format!("rtt{r}"), *s, Standard));
    }
    if parts.mixed > 0 {
        specs.push(("mixed".into(), parts.mixed, QuarterMutable));
    }
    for (r, s) in &parts.rtt_mixed {
        specs.push((format!("mixed-rtt{r}"), *s, QuarterMutable));
    }
    if parts.rest > 0 {
        specs.push(("rest".into(), parts.rest, Standard));
    }
    let mut built = Vec::new();
    let mut total = tree::Counts {
        dirs: 1,
        ..Default::default()
    };
    for (name, n, shape) in specs {
        let b = tree::build(grid, &name, n, shape)?;
        total.add(&b.counts);
        built.push((name, b));
    }
    let children: Vec<(String, String)> = built
        .iter()
        .map(|(n, b)| (n.clone(), b.cap.clone()))
        .collect();
    let root = tree::Builder::new(grid)?.mkdir(&children, false)?;
    Ok((root, built, total))
}

/// Share numbers each damaged object keeps: fewer than N (unhealthy), at
/// least k (recoverable).
const KEEP_SHARES: usize = 3;

/// Leaves [`KEEP_SHARES`] distinct share numbers of each damaged object,
/// one file each ([`Grid::keep_share_numbers`]: counting files instead
/// could keep copies of one number that Tahoe's repairer spread, and leave
/// the object unrecoverable), so each run starts from the same damage.
pub fn damage(grid: &Grid, sis: &[String]) -> Result<()> {
    for si in sis {
        grid.keep_share_numbers(si, KEEP_SHARES)
            .with_context(|| format!("damaging {si}: the tree is already damaged"))?;
    }
    Ok(())
}

/// How many damaged objects have all 5 share numbers again.
pub fn repaired(grid: &Grid, sis: &[String]) -> String {
    let whole = sis
        .iter()
        .filter(|si| {
            grid.shares(si)
                .iter()
                .map(|s| s.shnum)
                .collect::<BTreeSet<_>>()
                .len()
                >= grid.encoding().2 as usize
        })
        .count();
    format!("{whole}/{} damaged objects back to 5 shares", sis.len())
}
