//! `steward check [INPUT] [-o FILE]` and `steward repair [INPUT] [-o FILE]`.

use super::common::{
    report_outages, stop_signal, watch_outages, window_arg, BackendArgs, CheckRunArgs, GridArgs,
};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use steward::config;
use steward::engine::Runner;
use steward::error::{Error, Exit};
use steward::input::Completeness;
use steward::pipeline::{run_file_stage, FileStage};
use steward::progress::Meter;
use steward::stage::check::Checker;
use steward::stage::repair::{RepairPolicy, Repairer};
use steward::stage::tally::{CheckTally, RepairTally, Tally};
use steward::stage::{MappedOptions, StageSummary};
use steward::store::StageName;
use steward_backend::{Scheduler, Tenant};

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
    /// Accept an input of units that does not end with its stats unit, or
    /// whose stats unit counts other objects than it holds (a manifest cut
    /// short at either end): check what it holds and exit as if it were
    /// whole, instead of with 3.
    #[arg(long = "allow-partial")]
    pub allow_partial: bool,
    /// Objects worked on at once (the scheduler decides how many requests
    /// are in flight: see --per-gateway and --max-requests).
    #[arg(long, short = 'j', default_value_t = 64, value_parser = window_arg)]
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
    /// Objects worked on at once (the scheduler decides how many requests
    /// are in flight: see --per-gateway and --max-requests).
    #[arg(long, short = 'j', default_value_t = 16, value_parser = window_arg)]
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
    /// Accept an input of units that does not end with its stats unit, or
    /// whose stats unit counts other objects than it holds (check results
    /// cut short at either end): repair what it holds and exit as if it
    /// were whole, instead of with 3.
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

/// The part of `check` and `repair` that is the same: a progress bar over
/// the input's bytes, the resumable file stage, the "already complete"
/// notice and the judgement of the input.
struct StageRun<'a> {
    stage: StageName,
    options: String,
    input: Option<&'a Path>,
    output: Option<&'a Path>,
    restart: bool,
    jobs: usize,
    quiet: bool,
    allow_partial: bool,
}

/// What a finished stage's input says about the run: an empty input is an
/// error; one cut short is incomplete (a warning naming it and what it
/// held), unless the user accepts that.
pub struct Verdict {
    pub incomplete: bool,
}

impl StageRun<'_> {
    async fn run<T: Tally>(
        self,
        op: Box<steward::stage::Op>,
        sched: &Arc<Scheduler>,
    ) -> Result<(StageSummary<T>, Verdict), Error> {
        let meter = Meter::new(Meter::wanted(self.quiet));
        let runner = Runner::new(
            Some(stop_signal()),
            Arc::new(meter.clone()),
            Some((sched.clone(), Tenant::default())),
        );
        let ctx = runner.stage(self.stage.as_str());
        let statuses = runner.statuses();
        let _ticker = meter.track(move || statuses.clone());
        let _outages = watch_outages(sched, &meter);
        let fs = FileStage {
            stage: self.stage,
            options: self.options.clone(),
            input: self.input,
            follow: None,
            output: self.output,
            restart: self.restart,
            mapped: MappedOptions::new(self.jobs),
            notify: None,
        };
        let result = run_file_stage::<T>(fs, &*op, &ctx).await;
        meter.finish();
        report_outages(sched);
        let s = result?;
        if s.already_done {
            eprintln!(
                "steward: this {} is already complete; use --restart to run it again",
                self.stage.as_str()
            );
        }
        let verdict = self.judge(&s)?;
        Ok((s, verdict))
    }

    /// Judge the input the stage read to its end.
    fn judge<T: Tally>(&self, s: &StageSummary<T>) -> Result<Verdict, Error> {
        let name = match self.input {
            Some(p) if p.as_os_str() != "-" => p.display().to_string(),
            _ => "standard input".to_string(),
        };
        let stage = self.stage.as_str();
        let (tag, exit_note) = if self.allow_partial {
            ("note", "")
        } else {
            (
                "warning",
                "; exit 3. Pass --allow-partial to accept a partial input",
            )
        };
        match s.shape.completeness() {
            Completeness::Complete => Ok(Verdict { incomplete: false }),
            Completeness::Empty if s.tally.bad_lines() == 0 => Err(Error::input(format!(
                "{name} is empty: nothing to {stage}; give a manifest, check results, or a list of caps"
            ))),
            Completeness::Empty => Ok(Verdict { incomplete: false }),
            Completeness::NoObjects => {
                eprintln!(
                    "steward: note: {name} holds no objects, only a stats unit that counts none: nothing to {stage}"
                );
                Ok(Verdict { incomplete: false })
            }
            Completeness::Partial { objects } => {
                eprintln!(
                    "steward: {tag}: {name} ends without the stats unit that closes every steward or Tahoe manifest: it is incomplete ({objects} objects), so the objects after them were never {stage}ed (was the run that wrote it interrupted?){exit_note}"
                );
                Ok(Verdict {
                    incomplete: !self.allow_partial,
                })
            }
            Completeness::Disagrees(d) => {
                let why = if d.read < d.counted {
                    format!("was its head cut, or were lines lost?), so the objects missing from it were never {stage}ed")
                } else {
                    "were lines added, or streams joined without their stats units?), so it is not the stream its stats unit closes".to_string()
                };
                eprintln!(
                    "steward: {tag}: {name}: its stats unit counts {} objects{} but {} were read before it; the input is incomplete ({why}{exit_note}",
                    d.counted,
                    if d.subset {
                        " (its subset mark: the objects the stage that wrote it kept)"
                    } else {
                        ""
                    },
                    d.read,
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
    let sched = a.grid.scheduler();
    let grid = a.grid.config(a.jobs, Some(&a.backend));
    let opts = a.run.check_options();
    let routes = grid
        .routes(&sched, opts, false, &|w| eprintln!("{w}"))
        .await?;
    let checker = Checker {
        backend: Arc::new(routes),
        opts,
    };
    let (s, verdict) = StageRun {
        stage: StageName::Check,
        options: checker.checkpoint_key(),
        input: a.input.as_deref(),
        output: a.output.as_deref(),
        restart: a.run.restart,
        jobs: a.jobs,
        quiet: a.run.quiet,
        allow_partial: a.allow_partial,
    }
    .run::<CheckTally>(checker.into_op(), &sched)
    .await?;
    let t = &s.tally;
    if !a.run.quiet || t.healthy != t.checked || t.unlisted > 0 {
        eprintln!(
            "check: {} objects checked, {} healthy, {} unhealthy ({} unrecoverable), {} could not be checked{}",
            t.checked,
            t.healthy,
            t.unhealthy + t.unrecoverable,
            t.unrecoverable,
            t.failed,
            if t.unlisted > 0 { format!("; {} directories were never listed (see their error): what is below them was not checked", t.unlisted) } else { String::new() }
                + &if t.bad_lines > 0 { format!("; {} input lines skipped", t.bad_lines) } else { String::new() }
        );
    }
    Ok(exit_code(t.bad_lines, &verdict, t.findings()))
}

pub fn policy_from(a: &RepairArgs) -> RepairPolicy {
    RepairPolicy {
        repair_below: a.repair_below,
        happy: a
            .happy
            .or_else(|| config::happy_from_node(&a.grid.node_dir())),
        verify: a.verify,
        dry_run: a.dry_run,
        all: a.all,
    }
}

pub async fn run_repair(a: RepairArgs) -> Result<Exit, Error> {
    let sched = a.grid.scheduler();
    let gateway = a.grid.gateway(a.jobs).await?;
    let policy = policy_from(&a);
    let op = Repairer {
        backend: gateway,
        policy: policy.clone(),
    }
    .into_op();
    let (s, verdict) = StageRun {
        stage: StageName::Repair,
        options: policy.checkpoint_key(),
        input: a.input.as_deref(),
        output: a.output.as_deref(),
        restart: a.restart,
        jobs: a.jobs,
        quiet: a.quiet,
        allow_partial: a.allow_partial,
    }
    .run::<RepairTally>(op, &sched)
    .await?;
    let t = &s.tally;
    eprintln!(
        "repair: {} repairs attempted, {} successful, {} failed; {} not repairable{}{}{}",
        t.repair_attempted,
        t.repair_successful,
        t.repair_failed,
        t.not_repairable,
        if t.not_checked > 0 {
            format!(
                "; {} not checked (their check failed: check them again)",
                t.not_checked
            )
        } else {
            String::new()
        },
        if a.dry_run {
            format!("; {} would be repaired (dry run)", t.would_repair)
        } else {
            String::new()
        },
        if t.bad_lines > 0 {
            format!("; {} input lines skipped", t.bad_lines)
        } else {
            String::new()
        }
    );
    Ok(exit_code(t.bad_lines, &verdict, t.findings()))
}
