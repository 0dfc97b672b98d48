//! steward's own cost per object on the synthetic gateway, in
//! instructions: what section 4 of BENCHMARKS.md reports and what the
//! guard test `tests/integration/instructions.rs` holds.
//!
//! A run of `steward manifest` or `steward deep-check` costs a fixed part
//! (loading, start-up, the first requests, exit: a few million
//! instructions) plus a part per object. [`per_object`] counts a run over
//! a big tree and one over a small tree and divides the difference by the
//! difference in objects, so the fixed part is taken out instead of being
//! spread over the objects of one size.

use crate::callgrind::{self, Count};
use crate::synth::Synthetic;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// What [`per_object`] measured.
#[derive(Debug, Clone, Default)]
pub struct PerObject {
    /// Instructions per object, beyond the fixed part, split by
    /// [`callgrind::GROUPS`].
    pub per_object: Count,
    /// Instructions of a run that do not depend on its objects.
    pub fixed: f64,
    /// Wall seconds of the two runs under callgrind.
    pub secs: f64,
}

/// The arguments of `steward SUBCOMMAND -q --gateway URL ROOT` against
/// `tree`.
pub fn steward_args<'a>(subcommand: &'a str, tree: &'a Synthetic) -> [&'a str; 5] {
    [subcommand, "-q", "--gateway", &tree.url, &tree.root_cap]
}

/// Counts `steward SUBCOMMAND` over `big` and over `small` under callgrind
/// (profiles kept in `dir`) and returns the instructions per object.
pub fn per_object(
    steward: &Path,
    subcommand: &str,
    big: &Synthetic,
    small: &Synthetic,
    dir: &Path,
) -> Result<PerObject> {
    let (nb, ns) = (big.counts.objects(), small.counts.objects());
    if nb <= ns {
        bail!("the big tree ({nb} objects) must hold more objects than the small one ({ns})");
    }
    let t = Instant::now();
    let run = |tree: &Synthetic, size: &str| -> Result<Count> {
        let out = dir.join(format!("callgrind.{subcommand}.{size}.out"));
        callgrind::run(steward, &steward_args(subcommand, tree), &out).with_context(|| {
            format!(
                "steward {subcommand} over {} objects",
                tree.counts.objects()
            )
        })
    };
    let small_count = run(small, "small")?;
    let big_count = run(big, "big")?;
    let per_object = big_count.minus(&small_count).per((nb - ns) as f64);
    Ok(PerObject {
        fixed: small_count.total - per_object.total * ns as f64,
        per_object,
        secs: t.elapsed().as_secs_f64(),
    })
}

/// Whether this host counts user-space instructions for `perf stat`
/// (`Ok(())`), or why not (no `perf`, no hardware counters in a VM,
/// `perf_event_paranoid`).
pub fn perf_instructions_supported() -> Result<()> {
    perf_stat(&mut Command::new("true")).map(|_| ())
}

/// Instructions per object by `perf stat -e instructions:u`, from a run
/// over `big` and one over `small` as [`per_object`] does; fails where the
/// host has no such counter.
pub fn perf_per_object(
    steward: &Path,
    subcommand: &str,
    big: &Synthetic,
    small: &Synthetic,
) -> Result<f64> {
    let count = |tree: &Synthetic| -> Result<u64> {
        let mut c = Command::new(steward);
        c.args(steward_args(subcommand, tree));
        perf_stat(&mut c)
    };
    let (s, b) = (count(small)?, count(big)?);
    let n = big.counts.objects() as f64 - small.counts.objects() as f64;
    Ok((b as f64 - s as f64) / n)
}

/// `perf stat -x, -e instructions:u -- CMD`: the count.
fn perf_stat(cmd: &mut Command) -> Result<u64> {
    let mut perf = Command::new("perf");
    perf.args(["stat", "-x,", "-e", "instructions:u", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let o = perf
        .output()
        .context("running perf (Debian: apt-get install linux-perf)")?;
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        bail!(
            "perf stat failed ({}): {}",
            o.status,
            err.lines().last().unwrap_or("")
        );
    }
    // CSV: value,unit,event,...; "<not supported>" or "<not counted>"
    // where the counter is missing.
    let line = err
        .lines()
        .find(|l| l.contains("instructions"))
        .with_context(|| format!("perf stat printed no instructions line: {err}"))?;
    let value = line.split(',').next().unwrap_or("");
    value.trim().parse::<u64>().map_err(|_| {
        anyhow::anyhow!(
            "this host does not count instructions for perf stat ({}; common in virtual machines)",
            value.trim()
        )
    })
}
