//! Bringing a new grid up, [`Grid::start`]: `tahoe create-*` for every
//! node at once on free loopback ports, the shape file of a kept base
//! directory, tries again on new ports when one was taken meanwhile, and
//! sweeping temporary grid directories that dead processes left.

use crate::cfg::write_atomically;
use crate::grid::http_client;
use crate::node::{grid_nodes, run_create, Node};
use crate::ports::{free_port, loopback};
use crate::shape::{validate_shape, GridConfig, GridShape, GRID_FILE};
use crate::{spawn, tahoe_bin, venv, Grid};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// Tries of [`Grid::start`] when a chosen port is taken before a node binds it.
pub const START_ATTEMPTS: u32 = 3;

/// Whether a failed start failed because a node could not bind its port.
fn is_port_taken(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("Address already in use") || text.contains("CannotListenError")
}

/// Removes the node directories (and the shape file) a failed
/// [`Grid::start`] left in a caller's `base_dir`, nothing else.
fn remove_grid_dirs(base: &Path, storage_nodes: usize, gateways: usize) -> Result<()> {
    let mut names = vec!["introducer".to_string(), GRID_FILE.to_string()];
    names.extend((0..storage_nodes).map(|i| format!("storage{i}")));
    names.extend((0..gateways).map(|i| format!("gateway{i}")));
    for n in names {
        let p = base.join(n);
        if p.is_dir() {
            fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        } else if p.exists() {
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// How long a node may take to come up before [`Grid::start`] gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

const TEMP_PREFIX: &str = "steward-testgrid-";
const OWNER_FILE: &str = "steward-testgrid.owner";

impl Grid {
    /// Starts a grid shaped by `cfg` and waits until every gateway sees every
    /// storage server connected. Fails (with the failing node's log tail) if
    /// a node does not come up within [`START_TIMEOUT`].
    ///
    /// Blocking: from async code, call it inside `spawn_blocking`.
    ///
    /// Ports are picked free, then bound by the nodes a moment later; in
    /// between, another process (or one of the grid's own outgoing
    /// connections, which take ports from the same ephemeral range) may
    /// take one. A node that fails with "Address already in use" makes the
    /// whole start be tried again on new ports, up to [`START_ATTEMPTS`]
    /// times.
    pub fn start(cfg: GridConfig) -> Result<Grid> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&cfg) {
                Ok(g) => return Ok(g),
                Err(e) if attempt < START_ATTEMPTS && is_port_taken(&e) => {
                    eprintln!(
                        "steward-testgrid: a port was taken before its node bound it; starting the grid again on new ports"
                    );
                    if let Some(b) = &cfg.base_dir {
                        remove_grid_dirs(b, cfg.storage_nodes, cfg.gateways)?;
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn start_once(cfg: &GridConfig) -> Result<Grid> {
        let shape = GridShape {
            storage_nodes: cfg.storage_nodes,
            gateways: cfg.gateways,
            needed: cfg.needed,
            happy: cfg.happy,
            total: cfg.total,
            tahoe_version: None,
        };
        validate_shape(&shape)?;
        let tahoe = tahoe_bin()?;
        let (tmp, base) = match &cfg.base_dir {
            Some(b) => {
                fs::create_dir_all(b).with_context(|| format!("creating {}", b.display()))?;
                (None, b.canonicalize()?)
            }
            None => {
                spawn::sweep_stale_tempdirs(TEMP_PREFIX, OWNER_FILE);
                let t = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempdir()
                    .context("creating a temporary grid directory")?;
                fs::write(t.path().join(OWNER_FILE), std::process::id().to_string())?;
                spawn::register_dir(t.path());
                let p = t.path().canonicalize()?;
                (Some(t), p)
            }
        };

        let intro_port = free_port();
        let storage_ports: Vec<u16> = (0..cfg.storage_nodes).map(|_| free_port()).collect();
        let web_ports: Vec<u16> = (0..cfg.gateways).map(|_| free_port()).collect();
        let (introducer, storage, gateways) = grid_nodes(&base, &shape);
        for n in std::iter::once(&introducer)
            .chain(&storage)
            .chain(&gateways)
        {
            if n.dir.exists() {
                bail!(
                    "{} already exists: base_dir must not hold a grid \
                     (Grid::open restarts one)",
                    n.dir.display()
                );
            }
        }

        // Create every node directory at once; introducers are filled in
        // later, once the introducer has a FURL.
        let enc = |v: &mut Vec<String>| {
            v.push(format!("--shares-needed={}", cfg.needed));
            v.push(format!("--shares-happy={}", cfg.happy));
            v.push(format!("--shares-total={}", cfg.total));
        };
        let mut jobs: Vec<(&Node, Child)> = Vec::new();
        let mut spawn_err = None;
        let mut specs: Vec<(&Node, Vec<String>)> = Vec::new();
        specs.push((
            &introducer,
            vec![
                "create-introducer".into(),
                format!("--port={}", loopback(intro_port)),
                format!("--location=tcp:127.0.0.1:{intro_port}"),
                introducer.dir.display().to_string(),
            ],
        ));
        for (i, n) in storage.iter().enumerate() {
            let port = storage_ports[i];
            let location = match &cfg.storage_location_override {
                Some(f) => f(i, port),
                None => format!("tcp:127.0.0.1:{port}"),
            };
            let mut a = vec![
                "create-node".into(),
                format!("--nickname=s{i}"),
                format!("--port={}", loopback(port)),
                format!("--location={location}"),
                "--webport=none".into(),
            ];
            enc(&mut a);
            a.push(n.dir.display().to_string());
            specs.push((n, a));
        }
        for (i, n) in gateways.iter().enumerate() {
            let mut a = vec![
                "create-client".into(),
                format!("--nickname=gw{i}"),
                format!("--webport={}", loopback(web_ports[i])),
            ];
            enc(&mut a);
            a.push(n.dir.display().to_string());
            specs.push((n, a));
        }
        for (n, args) in specs {
            match run_create(&tahoe, args) {
                Ok(c) => jobs.push((n, c)),
                Err(e) => {
                    spawn_err = Some(e);
                    break;
                }
            }
        }
        let mut create_err = Vec::new();
        for (n, c) in jobs {
            match c.wait_with_output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => create_err.push(format!(
                    "creating {} failed ({}):\n{}{}",
                    n.name,
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )),
                Err(e) => create_err.push(format!("waiting for tahoe create ({}): {e}", n.name)),
            }
        }
        if let Some(e) = spawn_err {
            return Err(e);
        }
        if !create_err.is_empty() {
            let msg = create_err.join("\n");
            eprintln!("steward-testgrid: {msg}");
            bail!(msg);
        }
        for n in &storage {
            // Default is 1G: a nearly full disk would make every server
            // refuse shares.
            let cfg_path = n.dir.join("tahoe.cfg");
            let text = fs::read_to_string(&cfg_path)?;
            fs::write(
                &cfg_path,
                text.replace("reserved_space = 1G", "reserved_space = 0"),
            )?;
        }
        if cfg.base_dir.is_some() {
            // Only now: a directory without this file is no grid to reopen.
            let shape = GridShape {
                tahoe_version: venv::installed_tahoe_version(&tahoe),
                ..shape
            };
            write_atomically(&base.join(GRID_FILE), &shape.to_json().to_string())?;
        }

        let grid = Grid {
            base,
            tmp,
            tahoe,
            needed: cfg.needed,
            happy: cfg.happy,
            total: cfg.total,
            introducer,
            storage,
            storage_ports,
            gateways,
            web_ports,
            http: Some(http_client()?),
        };
        // From here on, dropping `grid` on error stops what was started.
        grid.boot(None)?;
        Ok(grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn a_taken_port_is_told_apart_and_only_grid_dirs_are_removed() {
        assert!(is_port_taken(&anyhow!(
            "gateway 1 exited unexpectedly\ntwisted.internet.error.CannotListenError: Couldn't listen on 127.0.0.1:33383: [Errno 98] Address already in use."
        )));
        assert!(!is_port_taken(&anyhow!("introducer wrote no FURL")));
        let d = tempfile::tempdir().unwrap();
        for n in ["introducer", "storage0", "gateway0", "keep"] {
            fs::create_dir_all(d.path().join(n).join("private")).unwrap();
        }
        fs::write(d.path().join(GRID_FILE), "{}").unwrap();
        fs::write(d.path().join("bench-tree.json"), "{}").unwrap();
        remove_grid_dirs(d.path(), 1, 1).unwrap();
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["bench-tree.json", "keep"]);
    }
}
