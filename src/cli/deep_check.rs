//! `steward deep-check ROOT [--verify] [--add-lease] [--repair] [--raw] [-o FILE]`.

use super::check::happy_from_node;
use super::common::{stop_signal, BackendArgs, CapsArg, CheckRunArgs, GridArgs};
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use steward::config;
use steward::error::{Error, Exit};
use steward::input::{parse_line, LineSource};
use steward::output::Output;
use steward::pipeline::{deep_check, DeepCheck, DeepCheckOutput};
use steward::progress::Meter;
use steward::report::Report;
use steward::stage::repair::{tally_repair, RepairPolicy, Repairer};
use steward::stage::traverse::{TraverseCounts, TraverseOptions};
use steward::stage::{check::tally_check, BadLine, Observer};
use steward::unit::{Unit, UnitSink};
use steward_cap::Authority;

#[derive(Args, Debug)]
pub struct DeepCheckArgs {
    /// Root directory: a cap or an alias (tahoe: or tahoe:some/dir).
    pub root: String,
    #[command(flatten)]
    pub run: CheckRunArgs,
    /// Repair what is not healthy.
    #[arg(long)]
    pub repair: bool,
    /// Write the units instead of the report.
    #[arg(long)]
    pub raw: bool,
    /// Keep the units in FILE (mode 0600; FILE.manifest and FILE.check
    /// beside it) and resume from there after an interruption.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Strongest cap kept in units (default: write with --repair, since
    /// mutable objects are repaired with their write cap; else read).
    #[arg(long, value_enum)]
    pub caps: Option<CapsArg>,
    /// Checks (and repairs) in flight at most (per gateway, steward finds
    /// the best number below it unless --fixed-jobs).
    #[arg(long, short = 'j', default_value_t = 64)]
    pub jobs: usize,
    /// Directory listings in flight.
    #[arg(long = "list-jobs", default_value_t = 8)]
    pub list_jobs: usize,
    /// With --repair: repair only objects with fewer than K2 good shares.
    #[arg(long = "repair-below", value_name = "K2")]
    pub repair_below: Option<u64>,
    /// With --repair: also repair objects whose happiness is below N
    /// (default: the node's shares.happy).
    #[arg(long, value_name = "N")]
    pub happy: Option<u64>,
    #[command(flatten)]
    pub grid: GridArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Hands the final units to the report (or to stdout with --raw), when
/// they are not kept in a file.
struct FinalSink {
    raw: Option<Output>,
    report: Report,
    meter: Meter,
}

#[async_trait::async_trait]
impl UnitSink for FinalSink {
    async fn emit(&mut self, unit: Unit) -> steward::Result<()> {
        // The report always counts; it prints only when the units do not
        // go to standard output themselves.
        let mut buf = Vec::new();
        self.report.add(&unit, &mut buf);
        match &mut self.raw {
            Some(out) => out.write_unit(&unit),
            None => {
                if !buf.is_empty() {
                    let text = String::from_utf8_lossy(&buf);
                    if self.meter.is_hidden() {
                        print!("{text}");
                    } else {
                        for l in text.lines() {
                            self.meter.println(l);
                        }
                    }
                }
                Ok(())
            }
        }
    }
    async fn sync(&mut self) -> steward::Result<u64> {
        match &mut self.raw {
            Some(out) => out.flush().map(|_| 0),
            None => {
                let _ = std::io::stdout().flush();
                Ok(0)
            }
        }
    }
}

struct Progressing {
    meter: Meter,
    count: fn(&Unit, &mut BTreeMap<String, u64>),
}

impl Observer for Progressing {
    fn output(&mut self, unit: &Unit, tally: &mut BTreeMap<String, u64>) {
        (self.count)(unit, tally);
        if matches!(unit, Unit::Object(_)) {
            self.meter.inc(1);
        }
    }
    fn bad_line(&mut self, _bad: &BadLine) {}
}

/// The report of the final units in `out`: made from the whole file, which
/// a resumed run only partly produced. With `raw` it only counts (for the
/// exit code): the units are the output.
async fn report_of_file(out: &Path, repair: bool, raw: bool) -> Result<Report, Error> {
    let mut src = LineSource::open(Some(out)).await?;
    let mut rep = Report::new(repair, true);
    let mut print: Box<dyn Write> = if raw {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout())
    };
    while let Some(line) = src.next_line().await? {
        if let Ok(Some(u)) = parse_line(&line) {
            rep.add(&u, &mut print);
        }
    }
    Ok(rep)
}

pub async fn run(a: DeepCheckArgs) -> Result<Exit, Error> {
    let spec = config::parse_root(&a.root, &a.grid.node_dir())?;
    // With --backend native the storage servers list, check and verify;
    // a gateway is needed (and asked for) only to repair.
    let native = a.backend.is_native();
    let gateway = if !native || a.repair {
        Some(a.grid.gateway(a.jobs).await?)
    } else {
        None
    };
    let checker = a
        .backend
        .checker(&a.grid, a.run.check_options(), gateway.clone(), a.jobs)
        .await?;
    let lister: std::sync::Arc<dyn steward_backend::Backend> = match &gateway {
        Some(g) if !native => g.clone(),
        _ => checker.backend.clone(),
    };
    let root = config::resolve_root(&spec, lister.as_ref()).await?;
    let caps: Authority = a.caps.map(Into::into).unwrap_or(if a.repair {
        Authority::Write
    } else {
        Authority::Read
    });
    let enabled = Meter::wanted(a.run.quiet);
    let meter = Meter::bar(enabled, Some(1), "objects");
    let m2 = meter.clone();
    let on_progress = move |c: TraverseCounts| m2.set_length(c.objects.max(1));
    let plan = DeepCheck {
        lister,
        traverse: TraverseOptions {
            jobs: a.list_jobs.max(1),
            caps,
            ..Default::default()
        },
        checker,
        check_jobs: a.jobs.max(1),
        repairer: match (a.repair, gateway) {
            (true, Some(g)) => Some(Repairer {
                backend: g,
                policy: RepairPolicy {
                    repair_below: a.repair_below,
                    happy: a.happy.or_else(|| happy_from_node(&a.grid.node_dir())),
                    verify: a.run.verify,
                    dry_run: false,
                    all: true,
                },
            }),
            _ => None,
        },
    };
    let mut sink = FinalSink {
        raw: (a.raw && a.output.is_none()).then(Output::stdout),
        report: Report::new(a.repair, !enabled),
        meter: meter.clone(),
    };
    let output = match &a.output {
        Some(path) => DeepCheckOutput::File {
            path,
            restart: a.run.restart,
        },
        None => DeepCheckOutput::Sink(&mut sink),
    };
    let mut obs = Progressing {
        meter: meter.clone(),
        count: if a.repair { tally_repair } else { tally_check },
    };
    let result = deep_check(plan, &root, output, stop_signal(), &mut obs, &on_progress).await;
    meter.finish();
    let summary = result?;
    let rep = match &a.output {
        Some(out) => report_of_file(out, a.repair, a.raw).await?,
        None => sink.report,
    };
    if !a.raw {
        rep.finish(&mut std::io::stdout());
    }
    let unlisted = summary.traverse.unlisted;
    if unlisted > 0 {
        eprintln!(
            "steward: {unlisted} directories could not be listed; their contents were not checked"
        );
    }
    let healthy = rep.all_healthy();
    Ok(if healthy && unlisted == 0 {
        Exit::Ok
    } else {
        Exit::Findings
    })
}
