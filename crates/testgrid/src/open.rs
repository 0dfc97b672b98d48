//! Reopening a grid kept in a directory, [`Grid::open`] (see "Reopening"
//! in the crate documentation): ports from each node's `tahoe.cfg`,
//! leftovers of the previous run, storage locations set afresh.

use crate::cfg::{parse_port, write_atomically};
use crate::grid::http_client;
use crate::node::{clear_stale_pidfiles, grid_nodes};
use crate::ports::claim_port;
use crate::shape::{GridShape, OpenOptions, GRID_FILE};
use crate::{tahoe_bin, Grid};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use steward_format::tahoe_cfg;

impl Grid {
    /// True if `base_dir` looks like a grid [`Grid::open`] can restart: it
    /// holds a readable [`GRID_FILE`] and every node directory it names
    /// (each with its `tahoe.cfg`). Cheap: starts nothing, and does not
    /// look at ports (open can still fail if one is taken).
    pub fn is_reusable(base_dir: &Path) -> bool {
        let Ok(shape) = Grid::recorded_shape(base_dir) else {
            return false;
        };
        let (i, s, g) = grid_nodes(base_dir, &shape);
        std::iter::once(&i)
            .chain(&s)
            .chain(&g)
            .all(|n| n.dir.join("tahoe.cfg").is_file())
    }

    /// The shape recorded in `base_dir`/[`GRID_FILE`].
    pub fn recorded_shape(base_dir: &Path) -> Result<GridShape> {
        let path = base_dir.join(GRID_FILE);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        GridShape::from_json(&v).with_context(|| format!("in {}", path.display()))
    }

    /// Restarts the grid that [`Grid::start`] built in `base_dir` (with
    /// `base_dir: Some(..)`) and a previous run stopped, cleanly or not:
    /// same node directories, keys, shares, ports and introducer FURL.
    ///
    /// Reads [`GRID_FILE`] and each node's ports from its `tahoe.cfg`
    /// (`tub.port` of the introducer and the storage nodes, `web.port` of
    /// the gateways); fails, naming the node and the port, if one of them is
    /// now taken by another process, or if a node is still running (its
    /// `running.process` names a live `tahoe run` of that directory).
    /// Removes stale `running.process` files (Tahoe 1.20 refuses to start
    /// while the pid in there is *any* live process, which after a crash
    /// may be an unrelated one that reused the pid) and the nodes'
    /// announcement caches, sets every storage node's `tub.location` from
    /// `opts`, then starts the introducer, checks that every node's
    /// `private/introducers.yaml` holds its FURL (rewriting it if not),
    /// starts the other nodes and waits as [`Grid::start`] does.
    ///
    /// The returned grid keeps `base_dir` when dropped; dropping it stops
    /// the processes as usual. Blocking.
    pub fn open(base_dir: &Path, opts: OpenOptions) -> Result<Grid> {
        let base = base_dir
            .canonicalize()
            .with_context(|| format!("opening grid directory {}", base_dir.display()))?;
        let shape = Grid::recorded_shape(&base)?;
        let (introducer, storage, gateways) = grid_nodes(&base, &shape);
        let mut cfgs: Vec<(PathBuf, String)> = Vec::new();
        for n in std::iter::once(&introducer)
            .chain(&storage)
            .chain(&gateways)
        {
            let path = n.dir.join("tahoe.cfg");
            let text = fs::read_to_string(&path).with_context(|| {
                format!(
                    "{} of {}: not a complete grid, build it again",
                    path.display(),
                    n.name
                )
            })?;
            cfgs.push((path, text));
        }
        let port_of = |idx: usize, name: &str, key: &str| -> Result<u16> {
            let (path, text) = &cfgs[idx];
            let value = tahoe_cfg::get(text, "node", key)
                .ok_or_else(|| anyhow!("{}: no [node] {key} ({name})", path.display()))?;
            parse_port(value).ok_or_else(|| {
                anyhow!(
                    "{}: cannot read the port of {name} from {key} = {value}",
                    path.display()
                )
            })
        };
        let intro_port = port_of(0, &introducer.name, "tub.port")?;
        let storage_ports = storage
            .iter()
            .enumerate()
            .map(|(i, n)| port_of(1 + i, &n.name, "tub.port"))
            .collect::<Result<Vec<u16>>>()?;
        let web_ports = gateways
            .iter()
            .enumerate()
            .map(|(i, n)| port_of(1 + storage.len() + i, &n.name, "web.port"))
            .collect::<Result<Vec<u16>>>()?;

        // Leftovers of a previous run: a live node is an error, a dead one's
        // pid file is removed.
        for n in std::iter::once(&introducer)
            .chain(&storage)
            .chain(&gateways)
        {
            clear_stale_pidfiles(n)?;
        }
        let ports = std::iter::once((&introducer, intro_port))
            .chain(storage.iter().zip(storage_ports.iter().copied()))
            .chain(gateways.iter().zip(web_ports.iter().copied()));
        for (n, port) in ports {
            claim_port(port);
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                bail!(
                    "port {port} of {} (recorded in {}) is not free ({e}): another \
                     process holds it; the grid cannot be reopened, build it again",
                    n.name,
                    n.dir.join("tahoe.cfg").display()
                );
            }
        }
        for (i, n) in storage.iter().enumerate() {
            let port = storage_ports[i];
            let location = match &opts.storage_location_override {
                Some(f) => f(i, port),
                None => format!("tcp:127.0.0.1:{port}"),
            };
            let (path, text) = &cfgs[1 + i];
            if tahoe_cfg::get(text, "node", "tub.location") != Some(location.as_str()) {
                let new =
                    tahoe_cfg::set(text, "node", "tub.location", &location).ok_or_else(|| {
                        anyhow!("{}: no [node] tub.location ({})", path.display(), n.name)
                    })?;
                write_atomically(path, &new)?;
            }
        }
        for n in storage.iter().chain(&gateways) {
            // Announcements of an earlier run may carry locations that are
            // gone (old proxies); only used if the introducer is not
            // reachable at first, but then they would be used.
            let cache = n.dir.join("private").join("introducer_default_cache.yaml");
            match fs::remove_file(&cache) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", cache.display())),
            }
        }

        let grid = Grid {
            base,
            tmp: None,
            tahoe: tahoe_bin()?,
            needed: shape.needed,
            happy: shape.happy,
            total: shape.total,
            introducer,
            storage,
            storage_ports,
            gateways,
            web_ports,
            http: Some(http_client()?),
        };
        let furl_path = grid.introducer.dir.join("private").join("introducer.furl");
        let old_furl = fs::read_to_string(&furl_path)
            .ok()
            .map(|t| t.trim().to_string());
        let old_mtime = fs::metadata(&furl_path).and_then(|m| m.modified()).ok();
        let furl = grid.boot(old_mtime)?;
        if let Some(old) = old_furl.filter(|o| *o != furl) {
            // Not expected: the FURL's tub id comes from private/node.pem
            // and its name from the old introducer.furl.
            eprintln!("steward-testgrid: the introducer FURL changed on reopen: {old} -> {furl}");
        }
        Ok(grid)
    }
}
