//! Wiring stages to files and checkpoints: what `steward manifest -o FILE`
//! (and later `check`, `repair`, `deep-check`) does before and after the
//! stage runs: decide between a fresh run, a resume and a refusal, open the
//! output at the right length, and run the stage.

use crate::error::{Error, Result};
use crate::journal::{checkpoint_path, remove_checkpoint, ManifestJournal, Progress, RunIdentity};
use crate::output::Output;
use crate::stage::traverse::{
    listing_cap, root_identity, Traversal, TraverseCounts, TraverseOptions, TraverseSummary,
};
use crate::unit::UnitSink;
use std::path::Path;
use std::sync::Arc;
use steward_backend::Backend;
use steward_cap::{Authority, Cap};
use tokio::sync::watch;

fn authority_name(a: Authority) -> &'static str {
    match a {
        Authority::Write => "write",
        Authority::Read => "read",
        Authority::Verify => "verify",
    }
}

/// Run a manifest of `root`, writing units to `output` (a file, resumable
/// through its checkpoint) or to standard output.
pub async fn manifest(
    backend: Arc<dyn Backend>,
    root: &Cap,
    opts: TraverseOptions,
    output: Option<&Path>,
    restart: bool,
    stop: watch::Receiver<bool>,
    on_progress: &(dyn Fn(TraverseCounts) + Send + Sync),
) -> Result<TraverseSummary> {
    let Some(path) = output else {
        let mut out = Output::stdout();
        let t = Traversal::new(backend, root, opts, None, None)?;
        return t.run(&mut out, stop, on_progress).await;
    };
    let identity = RunIdentity {
        root: root_identity(root),
        caps: authority_name(opts.caps).to_string(),
    };
    let ckpt = checkpoint_path(path);
    if restart {
        remove_checkpoint(&ckpt)?;
    }
    let had_checkpoint = ckpt.exists();
    let mut journal = ManifestJournal::open(&ckpt)?;
    let loaded = if had_checkpoint {
        journal.load()?
    } else {
        None
    };
    match loaded {
        Some((id, progress)) => {
            if id != identity {
                return Err(Error::checkpoint(format!(
                    "{} belongs to another run (root {}, --caps {}), not this one (root {}, --caps {}): use another -o FILE, or --restart to overwrite it",
                    ckpt.display(), id.root, id.caps, identity.root, identity.caps
                )));
            }
            if progress.done {
                // Nothing to do: the output is complete. Make sure it is
                // still whole before saying so.
                Output::open_file(path, Some(progress.output_len))?;
                return Ok(TraverseSummary {
                    stats: progress.stats,
                    unlisted: progress.unlisted,
                    bad_caps: 0,
                    already_done: true,
                });
            }
            let mut out = Output::open_file(path, Some(progress.output_len))?;
            let t = Traversal::new(backend, root, opts, Some(journal), Some(progress))?;
            t.run(&mut out, stop, on_progress).await
        }
        None => {
            if !restart
                && path.exists()
                && std::fs::metadata(path)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
            {
                return Err(Error::checkpoint(format!(
                    "{} already exists and has no checkpoint beside it: use --restart to overwrite it, or another -o FILE",
                    path.display()
                )));
            }
            let mut out = Output::open_file(path, None)?;
            let root_task = crate::journal::DirTask {
                id: 0,
                cap: listing_cap(root, opts.caps),
                path: vec![],
            };
            journal.start(
                &identity,
                Some(&root_task),
                root.storage_index().map(|s| s.0),
            )?;
            let progress = Progress {
                next_id: 1,
                ..Default::default()
            };
            let t = Traversal::new(backend, root, opts, Some(journal), Some(progress))?;
            t.run(&mut out as &mut dyn UnitSink, stop, on_progress)
                .await
        }
    }
}
