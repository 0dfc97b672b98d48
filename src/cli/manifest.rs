//! `steward manifest ROOT [-o FILE]`.

use super::common::{stop_signal, window_arg, BackendArgs, CapsArg, GridArgs};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use steward::engine::Runner;
use steward::error::{Error, Exit};
use steward::progress::Meter;
use steward::stage::traverse::TraverseOptions;
use steward::{config, pipeline};
use steward_backend::Tenant;

#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// Root directory: a cap (URI:DIR2:..., optionally /sub/path) or an
    /// alias (tahoe: or tahoe:some/dir).
    pub root: String,
    /// Write units to FILE (created mode 0600, resumable through
    /// FILE.steward-journal) instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Strongest cap written into units: write caps only when asked; read
    /// caps are what a gateway needs to check; verify caps name objects
    /// without being able to read them.
    #[arg(long, value_enum, default_value = "read")]
    pub caps: CapsArg,
    /// Directories listed at once (the scheduler decides how many requests
    /// are in flight: see --per-gateway and --max-requests).
    #[arg(long, short = 'j', default_value_t = 16, value_parser = window_arg)]
    pub jobs: usize,
    /// Forget any checkpoint and start over.
    #[arg(long)]
    pub restart: bool,
    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub grid: GridArgs,
    /// `--backend native`: read the directories straight from the storage
    /// servers, with no gateway.
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub server: super::remote::ServerArgs,
}

pub async fn run(a: ManifestArgs) -> Result<Exit, Error> {
    if a.server.server.is_some() {
        use super::remote::{Dest, Remote};
        return super::remote::run(Remote {
            server: a.server.clone(),
            root: a.root.clone(),
            node_dir: a.grid.node_dir(),
            kind: "manifest",
            options: serde_json::json!({ "caps": super::remote::caps_name(a.caps.into()) }),
            dest: match &a.output {
                Some(p) => Dest::File(p.clone()),
                None => Dest::Stdout,
            },
            restart: a.restart,
            raw: true,
        })
        .await;
    }
    let spec = config::parse_root(&a.root, &a.grid.node_dir())?;
    let sched = a.grid.scheduler();
    // With --backend native the storage servers are read directly, with no
    // gateway.
    let lister: Arc<dyn steward_backend::Backend> = Arc::new(
        a.grid
            .config(a.jobs, Some(&a.backend))
            .routes(&sched, Default::default(), false, &|w| eprintln!("{w}"))
            .await?,
    );
    let root = config::resolve_root(&spec, lister.as_ref()).await?;
    let meter = Meter::new(Meter::wanted(a.quiet));
    let runner = Runner::new(
        Some(stop_signal()),
        Arc::new(meter.clone()),
        Some((sched.clone(), Tenant::default())),
    );
    let ctx = runner.stage("traverse");
    let statuses = runner.statuses();
    let _ticker = meter.track(move || statuses.clone());
    let opts = TraverseOptions {
        jobs: a.jobs,
        caps: a.caps.into(),
        ..Default::default()
    };
    let dest = match a.output.as_deref() {
        Some(path) => pipeline::ManifestDest::File {
            path,
            restart: a.restart,
            notify: None,
        },
        None => pipeline::ManifestDest::Stdout,
    };
    let result = pipeline::manifest(lister, &root, opts, dest, &ctx).await;
    meter.finish();
    let summary = result?;
    let s = &summary.stats;
    if summary.already_done {
        eprintln!("steward: this manifest is already complete; use --restart to run it again");
    }
    if !a.quiet || summary.unlisted > 0 {
        eprintln!(
            "manifest: {} objects ({} files, {} directories{}){}",
            s.objects(),
            s.count_files,
            s.count_directories,
            if s.count_unknown > 0 {
                format!(", {} unknown", s.count_unknown)
            } else {
                String::new()
            },
            if summary.unlisted > 0 {
                format!(
                    "; {} directories could not be listed (see their units' \"error\")",
                    summary.unlisted
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if summary.unlisted > 0 || summary.bad_caps > 0 {
        Exit::Findings
    } else {
        Exit::Ok
    })
}
