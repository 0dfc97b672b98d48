//! `steward check [INPUT] [-o FILE]` and `steward repair [INPUT] [-o FILE]`.

use super::common::{stop_signal, BackendArgs, CheckRunArgs, GridArgs};
use clap::Args;
use std::path::{Path, PathBuf};
use steward::error::{Error, Exit};
use steward::pipeline::{run_file_stage, FileStage};
use steward::progress::Meter;
use steward::stage::check::tally_check;
use steward::stage::repair::{tally_repair, RepairPolicy, Repairer};
use steward::stage::{BadLine, Observer};
use steward::unit::Unit;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Manifest (NDJSON units from `steward manifest` or Tahoe's
    /// stream-manifest) or a list of caps, one per line; `-` or nothing
    /// reads standard input.
    pub input: Option<PathBuf>,
    /// Write check units to FILE (mode 0600, resumable through
    /// FILE.steward-ckpt) instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub run: CheckRunArgs,
    /// Checks in flight at most (per gateway, steward finds the best number
    /// below it unless --fixed-jobs).
    #[arg(long, short = 'j', default_value_t = 64)]
    pub jobs: usize,
    #[command(flatten)]
    pub grid: GridArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Check results (units from `steward check`); `-` or nothing reads
    /// standard input.
    pub input: Option<PathBuf>,
    /// Write repair units to FILE (mode 0600, resumable) instead of
    /// standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Repairs in flight at most (per gateway, steward finds the best number
    /// below it unless --fixed-jobs).
    #[arg(long, short = 'j', default_value_t = 16)]
    pub jobs: usize,
    /// Repair only objects with fewer than K2 good shares (default: every
    /// object that is not healthy).
    #[arg(long = "repair-below", value_name = "K2")]
    pub repair_below: Option<u64>,
    /// Also repair objects whose happiness is below N (default: the node's
    /// shares.happy, if its tahoe.cfg is readable).
    #[arg(long, value_name = "N")]
    pub happy: Option<u64>,
    /// Verify shares while repairing (always done when the check found
    /// corrupt shares).
    #[arg(long)]
    pub verify: bool,
    /// Write what would be repaired and why; repair nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Write a unit for every object, healthy ones too.
    #[arg(long)]
    pub all: bool,
    /// Forget any checkpoint and start over.
    #[arg(long)]
    pub restart: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub grid: GridArgs,
}

/// Count the lines of an input file for the progress bar's total.
pub fn count_lines(p: Option<&Path>) -> Option<u64> {
    let p = p.filter(|p| p.as_os_str() != "-")?;
    let data = std::fs::read(p).ok()?;
    Some(data.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// Progress and bad-line reporting for a file stage.
pub struct StageObserver {
    pub meter: Meter,
    pub count: fn(&Unit, &mut std::collections::BTreeMap<String, u64>),
}

impl Observer for StageObserver {
    fn output(&mut self, unit: &Unit, tally: &mut std::collections::BTreeMap<String, u64>) {
        (self.count)(unit, tally);
        self.meter.inc(1);
    }
    fn bad_line(&mut self, bad: &BadLine) {
        self.meter.inc(1);
        self.meter.println(&format!(
            "steward: input line {}: {}; skipped",
            bad.number, bad.message
        ));
    }
}

fn n(t: &std::collections::BTreeMap<String, u64>, k: &str) -> u64 {
    t.get(k).copied().unwrap_or(0)
}

/// The part of `check` and `repair` that is the same: a progress bar over
/// the input's lines, the resumable file stage, and the "already complete"
/// notice.
struct StageRun<'a> {
    stage: &'static str,
    options: String,
    input: Option<&'a Path>,
    output: Option<&'a Path>,
    restart: bool,
    jobs: usize,
    quiet: bool,
    count: fn(&Unit, &mut std::collections::BTreeMap<String, u64>),
}

impl StageRun<'_> {
    async fn run(self, op: Box<steward::stage::Op>) -> Result<steward::stage::StageSummary, Error> {
        let meter = Meter::bar(Meter::wanted(self.quiet), count_lines(self.input), "lines");
        let mut obs = StageObserver {
            meter: meter.clone(),
            count: self.count,
        };
        let fs = FileStage {
            stage: self.stage,
            options: self.options,
            input: self.input,
            follow: None,
            output: self.output,
            restart: self.restart,
            jobs: self.jobs.max(1),
            notify: None,
        };
        let result = run_file_stage(fs, &*op, stop_signal(), &mut obs).await;
        meter.finish();
        let s = result?;
        if s.already_done {
            eprintln!(
                "steward: this {} is already complete; use --restart to run it again",
                self.stage
            );
        }
        Ok(s)
    }
}

pub async fn run_check(a: CheckArgs) -> Result<Exit, Error> {
    let checker = a
        .backend
        .checker(&a.grid, a.run.check_options(), None, a.jobs)
        .await?;
    let s = StageRun {
        stage: "check",
        options: checker.checkpoint_key(),
        input: a.input.as_deref(),
        output: a.output.as_deref(),
        restart: a.run.restart,
        jobs: a.jobs,
        quiet: a.run.quiet,
        count: tally_check,
    }
    .run(checker.into_op())
    .await?;
    let t = &s.tally;
    if !a.run.quiet || n(t, "healthy") != n(t, "checked") {
        eprintln!(
            "check: {} objects checked, {} healthy, {} unhealthy ({} unrecoverable), {} could not be checked{}",
            n(t, "checked"),
            n(t, "healthy"),
            n(t, "unhealthy") + n(t, "unrecoverable"),
            n(t, "unrecoverable"),
            n(t, "failed"),
            if s.bad_lines > 0 { format!("; {} input lines skipped", s.bad_lines) } else { String::new() }
        );
    }
    Ok(if s.bad_lines > 0 {
        Exit::Failed
    } else if n(t, "unhealthy") + n(t, "unrecoverable") + n(t, "failed") > 0 {
        Exit::Findings
    } else {
        Exit::Ok
    })
}

/// The grid's happiness target from a node's tahoe.cfg (`[client] shares.happy`).
pub fn happy_from_node(node_dir: &Path) -> Option<u64> {
    let cfg = std::fs::read_to_string(node_dir.join("tahoe.cfg")).ok()?;
    let mut in_client = false;
    for line in cfg.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_client = l == "[client]";
            continue;
        }
        if in_client {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() == "shares.happy" {
                    return v.trim().parse().ok();
                }
            }
        }
    }
    None
}

pub fn policy_from(a: &RepairArgs) -> RepairPolicy {
    RepairPolicy {
        repair_below: a.repair_below,
        happy: a.happy.or_else(|| happy_from_node(&a.grid.node_dir())),
        verify: a.verify,
        dry_run: a.dry_run,
        all: a.all,
    }
}

pub async fn run_repair(a: RepairArgs) -> Result<Exit, Error> {
    let gateway = a.grid.gateway(a.jobs).await?;
    let policy = policy_from(&a);
    let op = Repairer {
        backend: gateway,
        policy: policy.clone(),
    }
    .into_op();
    let s = StageRun {
        stage: "repair",
        options: policy.checkpoint_key(),
        input: a.input.as_deref(),
        output: a.output.as_deref(),
        restart: a.restart,
        jobs: a.jobs,
        quiet: a.quiet,
        count: tally_repair,
    }
    .run(op)
    .await?;
    let t = &s.tally;
    eprintln!(
        "repair: {} repairs attempted, {} successful, {} failed; {} not repairable{}{}",
        n(t, "repair-attempted"),
        n(t, "repair-successful"),
        n(t, "repair-failed"),
        n(t, "not-repairable"),
        if a.dry_run {
            format!("; {} would be repaired (dry run)", n(t, "would-repair"))
        } else {
            String::new()
        },
        if s.bad_lines > 0 {
            format!("; {} input lines skipped", s.bad_lines)
        } else {
            String::new()
        }
    );
    Ok(if s.bad_lines > 0 {
        Exit::Failed
    } else if n(t, "repair-failed") + n(t, "not-repairable") + n(t, "would-repair") > 0 {
        Exit::Findings
    } else {
        Exit::Ok
    })
}
