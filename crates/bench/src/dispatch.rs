//! Many accounts (issue 11): `steward dispatch` over 20 accounts of 100 to
//! 500 objects with one budget, against `steward deep-check` run for each
//! account one after another, on the same grid and the same trees.
//!
//! A grid of its own (5 storage nodes, k=2, one gateway) is started in a
//! temporary directory and one tree per account is built in it
//! ([`crate::tree`], unique contents). The accounts' sizes are spread
//! evenly and listed in a shuffled (fixed) order, as an accounts file has
//! no reason to be sorted. Both tools run with their defaults (`-j 64`);
//! the runs alternate (sequential, dispatch, ...) `--runs` times and the
//! medians are reported. An account's completion time is when its
//! `steward deep-check` ended (counted from the start of the whole
//! sequence) or when dispatch logged it done (a line per account on
//! standard error, timestamped as it arrives).

use crate::run::{steward_cmd, Ctx};
use crate::tree;
use crate::Args;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;
use steward_testgrid::{Grid, GridConfig};

/// One account of the benchmark.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub objects: u64,
    /// Seconds from the start to its completion, per run.
    pub dispatch_done: Vec<f64>,
    pub sequential_done: Vec<f64>,
    /// Its own deep-check's wall time (in the sequence), per run.
    pub alone: Vec<f64>,
}

/// What the section measured.
#[derive(Debug, Default)]
pub struct DispatchBench {
    pub accounts: Vec<Account>,
    pub dispatch_wall: Vec<f64>,
    pub sequential_wall: Vec<f64>,
    pub build_secs: f64,
    pub error: Option<String>,
}

/// The account sizes: `n` accounts spread evenly over `lo..=hi` objects,
/// in a fixed shuffled order.
pub fn sizes(n: usize, lo: u64, hi: u64) -> Vec<u64> {
    let even: Vec<u64> = (0..n)
        .map(|i| lo + (hi - lo) * i as u64 / (n.max(2) - 1) as u64)
        .collect();
    // A fixed permutation (7 is prime to every n used here).
    (0..n).map(|i| even[(i * 7 + 3) % n]).collect()
}

/// An account of a grid built for a benchmark.
pub struct BuiltAccount {
    pub name: String,
    pub objects: u64,
    /// Write cap of its root.
    pub root: String,
}

/// A grid of its own (5 storage nodes, one gateway) under `dir`, with one
/// tree per account: `n` accounts of `lo..=hi` objects ([`sizes`]), named
/// `acct00`, `acct01`, ...; and the seconds the trees took to build.
pub fn grid_of_accounts(
    dir: &Path,
    tag: &str,
    n: usize,
    lo: u64,
    hi: u64,
) -> Result<(Grid, Vec<BuiltAccount>, f64)> {
    let grid = Grid::start(GridConfig {
        gateways: 1,
        base_dir: Some(dir.join("grid")),
        ..Default::default()
    })?;
    let t0 = Instant::now();
    let mut accounts = vec![];
    for (i, size) in sizes(n, lo, hi).into_iter().enumerate() {
        let built = tree::build(&grid, &format!("{tag}-{i}"), size, tree::Shape::Standard)?;
        accounts.push(BuiltAccount {
            name: format!("acct{i:02}"),
            objects: built.counts.objects(),
            root: built.cap,
        });
    }
    Ok((grid, accounts, t0.elapsed().as_secs_f64()))
}

/// The accounts file of `accounts` on `gateway`, without repair.
pub fn accounts_toml(gateway: &str, accounts: &[BuiltAccount]) -> String {
    let mut toml = format!("gateway = \"{gateway}\"\nrepair = false\n");
    for a in accounts {
        toml.push_str(&format!(
            "[[account]]\nname = \"{}\"\nroot = \"{}\"\n",
            a.name, a.root
        ));
    }
    toml
}

pub fn dispatch_bench(args: &Args, ctx: &Ctx) -> Result<DispatchBench> {
    let (n, lo, hi) = if args.quick {
        (8, 50, 150)
    } else {
        (20, 100, 500)
    };
    let dir = tempfile::tempdir()?;
    eprintln!("== dispatch: a grid of its own, {n} accounts of {lo}-{hi} objects ==");
    let (grid, built, build_secs) = grid_of_accounts(dir.path(), "dispatch-bench", n, lo, hi)?;
    let mut accounts: Vec<Account> = built
        .iter()
        .map(|b| Account {
            name: b.name.clone(),
            objects: b.objects,
            dispatch_done: vec![],
            sequential_done: vec![],
            alone: vec![],
        })
        .collect();
    let roots: Vec<String> = built.iter().map(|b| b.root.clone()).collect();
    let mut res = DispatchBench {
        build_secs,
        ..Default::default()
    };
    let gw = grid.gateway_url();
    let toml = accounts_toml(&gw, &built);
    let file = dir.path().join("ACCOUNTS.toml");
    std::fs::write(&file, toml)?;
    for run in 0..ctx.runs {
        // One after another.
        eprintln!("  run {}: deep-check per account, sequentially", run + 1);
        let start = Instant::now();
        for (a, root) in accounts.iter_mut().zip(&roots) {
            let t = Instant::now();
            let st = steward_cmd(ctx, &["deep-check", root, "-q", "--gateway", &gw])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if st.code() != Some(0) {
                bail!("steward deep-check of {} exited {st}", a.name);
            }
            a.alone.push(t.elapsed().as_secs_f64());
            a.sequential_done.push(start.elapsed().as_secs_f64());
        }
        res.sequential_wall.push(start.elapsed().as_secs_f64());
        // All at once.
        eprintln!("  run {}: dispatch", run + 1);
        let state = dir.path().join(format!("state{run}"));
        let start = Instant::now();
        let mut child = steward_cmd(ctx, &["dispatch", file.to_str().unwrap(), "-q"])
            .arg("--state")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("dispatch's stderr")?;
        let mut done = std::collections::HashMap::new();
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            if let Some(rest) = line.strip_prefix("steward: dispatch: ") {
                if let Some((name, what)) = rest.split_once(": ") {
                    if what.starts_with("done") {
                        done.insert(name.to_string(), start.elapsed().as_secs_f64());
                    }
                }
            }
        }
        let st = child.wait()?;
        res.dispatch_wall.push(start.elapsed().as_secs_f64());
        if st.code() != Some(0) {
            bail!("steward dispatch exited {st}");
        }
        for a in accounts.iter_mut() {
            let t = done
                .get(&a.name)
                .with_context(|| format!("dispatch never said {} was done", a.name))?;
            a.dispatch_done.push(*t);
        }
    }
    res.accounts = accounts;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cover_the_range_once_each_shuffled() {
        let s = sizes(20, 100, 500);
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(sorted.first(), Some(&100));
        assert_eq!(sorted.last(), Some(&500));
        sorted.dedup();
        assert_eq!(sorted.len(), 20);
        assert_ne!(s, sorted, "not in size order");
    }
}
