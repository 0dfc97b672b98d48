//! `steward manifest ROOT [-o FILE]`.

use super::common::{stop_signal, BackendArgs, CapsArg, GridArgs};
use clap::Args;
use std::path::PathBuf;
use steward::error::{Error, Exit};
use steward::progress::Meter;
use steward::stage::traverse::TraverseOptions;
use steward::{config, pipeline};

#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// Root directory: a cap (URI:DIR2:..., optionally /sub/path) or an
    /// alias (tahoe: or tahoe:some/dir).
    pub root: String,
    /// Write units to FILE (created mode 0600, resumable through
    /// FILE.steward-ckpt) instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Strongest cap written into units: write caps only when asked; read
    /// caps are what a gateway needs to check; verify caps name objects
    /// without being able to read them.
    #[arg(long, value_enum, default_value = "read")]
    pub caps: CapsArg,
    /// Directory listings in flight.
    #[arg(long, short = 'j', default_value_t = 16)]
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
}

pub async fn run(a: ManifestArgs) -> Result<Exit, Error> {
    let spec = config::parse_root(&a.root, &a.grid.node_dir())?;
    let lister: std::sync::Arc<dyn steward_backend::Backend> = if a.backend.is_native() {
        a.backend.native(&a.grid, false).await?
    } else {
        a.grid.gateway(a.jobs).await?
    };
    let root = config::resolve_root(&spec, lister.as_ref()).await?;
    if !root.is_directory() && !spec.path.is_empty() {
        // A file named by a path is fine: its manifest is one unit.
    }
    let meter = Meter::counter(
        Meter::wanted(a.quiet),
        "{spinner} [{elapsed_precise}] {msg}",
    );
    let started = std::time::Instant::now();
    let m2 = meter.clone();
    let on_progress = move |c: steward::stage::traverse::TraverseCounts| {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        m2.set_message(format!(
            "{} objects, {} directories listed, {} queued, {:.0} objects/s",
            c.objects,
            c.directories_listed,
            c.pending,
            c.objects as f64 / secs
        ));
    };
    let opts = TraverseOptions {
        jobs: a.jobs.max(1),
        caps: a.caps.into(),
        ..Default::default()
    };
    let result = pipeline::manifest(
        lister,
        &root,
        opts,
        pipeline::ManifestDest {
            path: a.output.as_deref(),
            restart: a.restart,
            notify: None,
        },
        stop_signal(),
        &on_progress,
    )
    .await;
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
