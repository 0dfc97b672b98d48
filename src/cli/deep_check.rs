//! `steward deep-check ROOT [--verify] [--add-lease] [--repair] [--raw] [-o FILE]`.

use super::common::{
    report_outages, stop_signal, watch_outages, window_arg, BackendArgs, CapsArg, CheckRunArgs,
    GridArgs,
};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use steward::config;
use steward::engine::Runner;
use steward::error::{Error, Exit};
use steward::input::{parse_line, LineSource};
use steward::output::{stdout_error, Output};
use steward::pipeline::{deep_check, DeepCheck, DeepCheckOutput};
use steward::progress::Meter;
use steward::report::Report;
use steward::stage::check::Checker;
use steward::stage::repair::{RepairPolicy, Repairer};
use steward::stage::traverse::TraverseOptions;
use steward::stage::MappedOptions;
use steward::unit::{Unit, UnitSink};
use steward_backend::Tenant;
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
    /// Objects checked (and repaired) at once (the scheduler decides how
    /// many requests are in flight: see --per-gateway and --max-requests).
    #[arg(long, short = 'j', default_value_t = 64, value_parser = window_arg)]
    pub jobs: usize,
    /// Directories listed at once.
    #[arg(long = "list-jobs", default_value_t = 8, value_parser = window_arg)]
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
    #[command(flatten)]
    pub server: super::remote::ServerArgs,
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
                        // A closed stdout ends the run (exit 3), never a panic.
                        std::io::stdout()
                            .write_all(text.as_bytes())
                            .map_err(stdout_error)?;
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
                std::io::stdout().flush().map_err(stdout_error)?;
                Ok(0)
            }
        }
    }
}

/// The report of the final units in `out`: made from the whole file, which
/// a resumed run only partly produced. With `raw` it only counts (for the
/// exit code): the units are the output.
pub(super) async fn report_of_file(out: &Path, repair: bool, raw: bool) -> Result<Report, Error> {
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
    if a.server.server.is_some() {
        return run_remote(a).await;
    }
    let spec = config::parse_root(&a.root, &a.grid.node_dir())?;
    let sched = a.grid.scheduler();
    let grid = a.grid.config(a.jobs, Some(&a.backend));
    // With --backend native the storage servers list, check and verify; a
    // gateway is needed (and asked for) only to repair.
    let opts = a.run.check_options();
    let routes = grid
        .routes(&sched, opts, a.repair, &|w| eprintln!("{w}"))
        .await?;
    let repair_backend = routes.repair.clone();
    let routes: Arc<dyn steward_backend::Backend> = Arc::new(routes);
    let root = config::resolve_root(&spec, routes.as_ref()).await?;
    let caps: Authority = a.caps.map(Into::into).unwrap_or(if a.repair {
        Authority::Write
    } else {
        Authority::Read
    });
    let enabled = Meter::wanted(a.run.quiet);
    let meter = Meter::new(enabled);
    let plan = DeepCheck {
        lister: routes.clone(),
        traverse: TraverseOptions {
            jobs: a.list_jobs,
            caps,
            ..Default::default()
        },
        checker: Checker {
            backend: routes,
            opts,
        },
        mapped: MappedOptions::new(a.jobs),
        repairer: repair_backend.filter(|_| a.repair).map(|backend| Repairer {
            backend,
            policy: RepairPolicy {
                repair_below: a.repair_below,
                happy: a
                    .happy
                    .or_else(|| config::happy_from_node(&a.grid.node_dir())),
                verify: a.run.verify,
                dry_run: false,
                all: true,
            },
        }),
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
            notify: None,
        },
        None => DeepCheckOutput::Sink(&mut sink),
    };
    let runner = Arc::new(Runner::new(
        Some(stop_signal()),
        Arc::new(meter.clone()),
        Some((sched.clone(), Tenant::default())),
    ));
    let ticker = {
        let r = runner.clone();
        meter.track(move || r.statuses())
    };
    let _outages = watch_outages(&sched, &meter);
    let result = deep_check(plan, &root, output, &runner).await;
    drop(ticker);
    meter.finish();
    report_outages(&sched);
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

/// `--server URL`: the operation runs on a `steward serve`.
async fn run_remote(a: DeepCheckArgs) -> Result<Exit, Error> {
    use super::remote::{caps_name, Dest, Remote};
    if a.repair_below.is_some() || a.happy.is_some() {
        return Err(Error::input(
            "--repair-below and --happy are the server's settings with --server (steward serve --happy N)",
        ));
    }
    let mut options = serde_json::json!({
        "verify": a.run.verify,
        "add-lease": a.run.add_lease,
        "repair": a.repair,
    });
    if let Some(c) = a.caps {
        options["caps"] = caps_name(c.into()).into();
    }
    super::remote::run(Remote {
        server: a.server.clone(),
        root: a.root.clone(),
        node_dir: a.grid.node_dir(),
        kind: "deep-check",
        options,
        dest: match (&a.output, a.raw) {
            (Some(p), _) => Dest::File(p.clone()),
            (None, true) => Dest::Stdout,
            (None, false) => Dest::Report { repair: a.repair },
        },
        restart: a.run.restart,
        raw: a.raw,
    })
    .await
}
