//! `steward check [INPUT] [-o FILE]` and `steward repair [INPUT] [-o FILE]`.

use super::common::{stop_signal, BackendArgs, CheckRunArgs, GridArgs};
use clap::Args;
use std::path::{Path, PathBuf};
use steward::error::{Error, Exit};
use steward::input::Completeness;
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
    /// Accept an input of units that does not end with its stats unit (a
    /// manifest cut short): check what it holds and exit as if it were
    /// whole, instead of with 3.
    #[arg(long = "allow-partial")]
    pub allow_partial: bool,
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
    /// Accept an input of units that does not end with its stats unit (check
    /// results cut short): repair what it holds and exit as if it were
    /// whole, instead of with 3.
    #[arg(long = "allow-partial")]
    pub allow_partial: bool,
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
    allow_partial: bool,
    count: fn(&Unit, &mut std::collections::BTreeMap<String, u64>),
}

/// What a finished stage's input says about the run: an empty input is an
/// error; one cut short is incomplete (a warning naming it and what it
/// held), unless the user accepts that.
pub struct Verdict {
    pub incomplete: bool,
}

impl StageRun<'_> {
    async fn run(
        self,
        op: Box<steward::stage::Op>,
    ) -> Result<(steward::stage::StageSummary, Verdict), Error> {
        let meter = Meter::bar(Meter::wanted(self.quiet), count_lines(self.input), "lines");
        let mut obs = StageObserver {
            meter: meter.clone(),
            count: self.count,
        };
        let fs = FileStage {
            stage: self.stage,
            options: self.options.clone(),
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
        let verdict = self.judge(&s)?;
        Ok((s, verdict))
    }

    /// Judge the input the stage read to its end.
    fn judge(&self, s: &steward::stage::StageSummary) -> Result<Verdict, Error> {
        let name = match self.input {
            Some(p) if p.as_os_str() != "-" => p.display().to_string(),
            _ => "standard input".to_string(),
        };
        match s.shape.completeness() {
            Completeness::Complete => Ok(Verdict { incomplete: false }),
            Completeness::Empty if s.bad_lines == 0 => Err(Error::input(format!(
                "{name} is empty: nothing to {}; give a manifest, check results, or a list of caps",
                self.stage
            ))),
            Completeness::Empty => Ok(Verdict { incomplete: false }),
            Completeness::Partial { objects } => {
                eprintln!(
                    "steward: {}: {name} ends without the stats unit that closes every steward or Tahoe manifest: it is incomplete ({objects} objects), so the objects after them were never {}ed (was the run that wrote it interrupted?){}",
                    if self.allow_partial { "note" } else { "warning" },
                    self.stage,
                    if self.allow_partial {
                        ""
                    } else {
                        "; exit 3. Pass --allow-partial to accept a partial input"
                    }
                );
                Ok(Verdict {
                    incomplete: !self.allow_partial,
                })
            }
        }
    }
}

/// The exit code of a check or repair: failed (bad input lines) before
/// incomplete before findings.
fn exit_code(bad_lines: u64, verdict: &Verdict, findings: u64) -> Exit {
    if bad_lines > 0 {
        Exit::Failed
    } else if verdict.incomplete {
        Exit::Incomplete
    } else if findings > 0 {
        Exit::Findings
    } else {
        Exit::Ok
    }
}

pub async fn run_check(a: CheckArgs) -> Result<Exit, Error> {
    let checker = a
        .backend
        .checker(&a.grid, a.run.check_options(), None, a.jobs)
        .await?;
    let (s, verdict) = StageRun {
        stage: "check",
        options: checker.checkpoint_key(),
        input: a.input.as_deref(),
        output: a.output.as_deref(),
        restart: a.run.restart,
        jobs: a.jobs,
        quiet: a.run.quiet,
        allow_partial: a.allow_partial,
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
    let findings = n(t, "unhealthy") + n(t, "unrecoverable") + n(t, "failed");
    Ok(exit_code(s.bad_lines, &verdict, findings))
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
    let (s, verdict) = StageRun {
        stage: "repair",
        options: policy.checkpoint_key(),
        input: a.input.as_deref(),
        output: a.output.as_deref(),
        restart: a.restart,
        jobs: a.jobs,
        quiet: a.quiet,
        allow_partial: a.allow_partial,
        count: tally_repair,
    }
    .run(op)
    .await?;
    let t = &s.tally;
    eprintln!(
        "repair: {} repairs attempted, {} successful, {} failed; {} not repairable{}{}{}",
        n(t, "repair-attempted"),
        n(t, "repair-successful"),
        n(t, "repair-failed"),
        n(t, "not-repairable"),
        if n(t, "not-checked") > 0 {
            format!(
                "; {} not checked (their check failed: check them again)",
                n(t, "not-checked")
            )
        } else {
            String::new()
        },
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
    let findings =
        n(t, "repair-failed") + n(t, "not-repairable") + n(t, "would-repair") + n(t, "not-checked");
    Ok(exit_code(s.bad_lines, &verdict, findings))
}
