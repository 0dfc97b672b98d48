//! A real, local Tahoe-LAFS 1.20.0 grid on loopback, for integration tests,
//! benchmarks and `steward demo`.
//!
//! This crate owns:
//!
//! * the Python virtualenv holding `tahoe-lafs==1.20.0` ([`venv`],
//!   [`tahoe_bin`]): found through `$STEWARD_TAHOE_VENV` or the cargo target
//!   directory, created with `python3 -m venv` + `pip install` when missing
//!   (needs PyPI once; safe against concurrent creators through a `flock`);
//! * bringing a grid up ([`Grid::start`]): one introducer, N storage nodes
//!   and G gateways (web-API nodes that store nothing), all on free
//!   `127.0.0.1` ports, created with `tahoe create-*` in parallel and waited
//!   for until every gateway sees every storage server connected;
//! * tearing it down: every process the harness starts dies with the
//!   [`Grid`] (on drop or [`Grid::stop`]) *and* with the process that
//!   started it, however that process ends (see "Cleanup" below);
//! * reopening a grid kept in a directory of the caller's ([`Grid::open`]),
//!   so a large tree is built once and reused by later runs (see
//!   "Reopening" below);
//! * small web-API helpers to build trees ([`Grid::mkdir`], [`Grid::upload`],
//!   [`Grid::link`], ...), and damage done on purpose by editing share files
//!   on disk ([`Grid::drop_shares`], [`Grid::make_unrecoverable`],
//!   [`Grid::corrupt_share`]) or stopping storage nodes.
//!
//! # Cleanup
//!
//! Each `tahoe run NODEDIR` child is forked from one dedicated spawner thread
//! that never exits, in its own process group, with
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills it when the test
//! process dies, even by `kill -9` or when the `Grid` sits in a `static` and
//! is never dropped. As a second line, each child's stdin is a pipe whose
//! write end the `Grid` holds, and `tahoe run` (started *without*
//! `--allow-stdin-close`) exits when that pipe closes. Dropping the `Grid`
//! sends `SIGTERM` to each process group, then `SIGKILL` to laggards.
//! A fresh temporary base directory is deleted on drop; ones left behind by
//! dead processes (a `Grid` in a `static`, `kill -9`) are swept by the next
//! [`Grid::start`].
//!
//! # Reopening
//!
//! Given `base_dir: Some(dir)`, [`Grid::start`] keeps `dir` and, once every
//! node directory was created, records the grid's [`GridShape`] in
//! `dir/`[`GRID_FILE`] (`testgrid.json`: node counts, encoding, Tahoe
//! version). A later process can restart that grid with
//! [`Grid::open`]`(dir, `[`OpenOptions`]`)` — whether the previous run
//! stopped cleanly or was killed — and find the same node keys, shares,
//! ports, web-API URLs and introducer FURL. [`Grid::is_reusable`] is a
//! cheap check before trying, and [`Grid::recorded_shape`] /
//! [`GridShape::matches`] tell whether the kept grid has the wanted shape.
//!
//! `open` takes each node's ports from its `tahoe.cfg`, and fails, naming
//! the node and the port, if one is now held by another process (the
//! caller then deletes `dir` and builds again). It removes stale
//! `running.process` files: Tahoe 1.20's `tahoe run` deletes one whose pid
//! is dead, but refuses to start while that pid is *any* live process
//! (start time ignored, zombies included), and on a malformed one. It sets
//! each storage node's `tub.location` afresh (from
//! [`OpenOptions::storage_location_override`], e.g. new delaying proxies,
//! else direct) and drops the nodes' cached announcements, so no gateway
//! uses a stale location. The introducer keeps its FURL across restarts
//! (tub id from `private/node.pem`, swissnum from `private/introducer.furl`);
//! `open` still checks every node's `introducers.yaml` against the FURL it
//! actually serves and rewrites stale ones. A grid from `open` never
//! deletes its directory; dropping it stops its processes as usual.
//!
//! # Blocking
//!
//! Everything here is blocking (`std::process`, `reqwest::blocking`).
//! `reqwest::blocking` panics inside a tokio runtime, so async callers must
//! call [`Grid::start`] and the web-API helpers through
//! `tokio::task::spawn_blocking` (or from a plain thread). Dropping a `Grid`
//! is safe anywhere.

mod spawn;
mod venv;

pub use venv::{tahoe_bin, venv, venv_dir, TAHOE_REQUIREMENT};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

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

/// Shape of the grid to start.
pub struct GridConfig {
    /// Number of storage nodes (default 5).
    pub storage_nodes: usize,
    /// Shares needed to recover a file, k (default 2).
    pub needed: u8,
    /// Servers an upload must reach (default 3).
    pub happy: u8,
    /// Shares written per file, N (default 5).
    pub total: u8,
    /// Number of gateways (web-API client nodes, default 1).
    pub gateways: usize,
    /// Where node directories go; `None` means a fresh temporary directory,
    /// deleted when the `Grid` is dropped. A given directory is kept, must
    /// not already hold node directories, and gets a [`GRID_FILE`] once
    /// every node was created, so that [`Grid::open`] can restart the grid
    /// later.
    pub base_dir: Option<PathBuf>,
    /// Given a storage node's index and its real listening port, the
    /// `--location` it advertises (e.g. `tcp:127.0.0.1:<proxy port>` to put a
    /// delaying proxy between gateways and that server). `None`:
    /// `tcp:127.0.0.1:<port>`.
    pub storage_location_override: Option<Box<dyn Fn(usize, u16) -> String + Send + Sync>>,
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            storage_nodes: 5,
            needed: 2,
            happy: 3,
            total: 5,
            gateways: 1,
            base_dir: None,
            storage_location_override: None,
        }
    }
}

impl fmt::Debug for GridConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GridConfig")
            .field("storage_nodes", &self.storage_nodes)
            .field("needed", &self.needed)
            .field("happy", &self.happy)
            .field("total", &self.total)
            .field("gateways", &self.gateways)
            .field("base_dir", &self.base_dir)
            .field(
                "storage_location_override",
                &self.storage_location_override.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

/// The file in a grid's base directory that records its [`GridShape`]
/// (written by [`Grid::start`] when given a `base_dir`, read by
/// [`Grid::open`]).
pub const GRID_FILE: &str = "testgrid.json";

/// The shape of a grid, as recorded in [`GRID_FILE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridShape {
    /// Number of storage nodes (`storage0` .. in the base directory).
    pub storage_nodes: usize,
    /// Number of gateways (`gateway0` ..).
    pub gateways: usize,
    /// Shares needed, k.
    pub needed: u8,
    /// Servers of happiness.
    pub happy: u8,
    /// Shares written, N.
    pub total: u8,
    /// Version of the `tahoe-lafs` package that created the grid, when it
    /// could be told (from the virtualenv's `tahoe_lafs-*.dist-info`).
    pub tahoe_version: Option<String>,
}

impl GridShape {
    /// True if `cfg` asks for this shape (node counts and encoding; the
    /// Tahoe version and everything else are not compared).
    pub fn matches(&self, cfg: &GridConfig) -> bool {
        self.storage_nodes == cfg.storage_nodes
            && self.gateways == cfg.gateways
            && (self.needed, self.happy, self.total) == (cfg.needed, cfg.happy, cfg.total)
    }

    fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "storage_nodes": self.storage_nodes,
            "gateways": self.gateways,
            "needed": self.needed,
            "happy": self.happy,
            "total": self.total,
        });
        if let Some(t) = &self.tahoe_version {
            v["tahoe_version"] = Value::from(t.as_str());
        }
        v
    }

    fn from_json(v: &Value) -> Result<GridShape> {
        let count = |k: &str| -> Result<u64> {
            v[k].as_u64()
                .ok_or_else(|| anyhow!("{GRID_FILE}: {k:?} missing or not a number"))
        };
        let small = |k: &str| -> Result<u8> {
            u8::try_from(count(k)?).map_err(|_| anyhow!("{GRID_FILE}: {k:?} out of range"))
        };
        let shape = GridShape {
            storage_nodes: count("storage_nodes")? as usize,
            gateways: count("gateways")? as usize,
            needed: small("needed")?,
            happy: small("happy")?,
            total: small("total")?,
            tahoe_version: v["tahoe_version"].as_str().map(str::to_string),
        };
        validate_shape(&shape)?;
        Ok(shape)
    }
}

fn validate_shape(s: &GridShape) -> Result<()> {
    if s.storage_nodes == 0 || s.gateways == 0 {
        bail!("a grid needs at least one storage node and one gateway");
    }
    if !(1 <= s.needed && s.needed <= s.happy && s.happy <= s.total) {
        bail!(
            "need 1 <= needed ({}) <= happy ({}) <= total ({})",
            s.needed,
            s.happy,
            s.total
        );
    }
    if s.happy as usize > s.storage_nodes {
        bail!(
            "happy = {} cannot be met by {} storage nodes",
            s.happy,
            s.storage_nodes
        );
    }
    Ok(())
}

/// Options for [`Grid::open`].
#[derive(Default)]
pub struct OpenOptions {
    /// As [`GridConfig::storage_location_override`]: given a storage node's
    /// index and its real listening port, the location it advertises from
    /// now on. `None`: `tcp:127.0.0.1:<port>` (so a location set by an
    /// earlier run does not outlive the proxies it pointed at).
    pub storage_location_override: Option<Box<dyn Fn(usize, u16) -> String + Send + Sync>>,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field(
                "storage_location_override",
                &self.storage_location_override.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

/// One share file on one storage node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareFile {
    /// Index of the storage node holding it.
    pub node: usize,
    /// Share number.
    pub shnum: u32,
    /// `NODEDIR/storage/shares/<si[:2]>/<si>/<shnum>`.
    pub path: PathBuf,
}

static GIVEN_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Keeps [`free_port`] from handing out `port` (in use by a reopened grid).
fn claim_port(port: u16) {
    let mut given = GIVEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    given.get_or_insert_with(HashSet::new).insert(port);
}

/// Binds `127.0.0.1:0` and returns the port the kernel chose. Ports handed
/// out earlier in this process are never returned again, so parallel grids
/// in one test binary do not collide.
pub fn free_port() -> u16 {
    let mut given = GIVEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind 127.0.0.1:0");
        if given.insert(port) {
            return port;
        }
    }
}

struct Proc {
    child: Child,
    /// Held so that `tahoe run` sees EOF (and exits) when we go away.
    stdin: Option<ChildStdin>,
}

struct Node {
    name: String,
    dir: PathBuf,
    proc: Mutex<Option<Proc>>,
}

impl Node {
    fn new(name: String, dir: PathBuf) -> Node {
        Node {
            name,
            dir,
            proc: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Proc>> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, tahoe: &Path) -> Result<()> {
        let mut g = self.lock();
        if g.is_some() {
            return Ok(());
        }
        // Our own previous instance is dead (we reaped it); a stale pid file
        // could only confuse `tahoe run` if its pid got reused.
        let _ = fs::remove_file(self.dir.join("running.process"));
        let logs = self.dir.join("logs");
        fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(logs.join("run.log"))
            .context("opening run.log")?;
        let mut cmd = Command::new(tahoe);
        cmd.arg("run")
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = spawn::spawn(cmd)
            .with_context(|| format!("starting {} ({})", self.name, tahoe.display()))?;
        spawn::register_pid(child.id());
        let stdin = child.stdin.take();
        *g = Some(Proc { child, stdin });
        Ok(())
    }

    /// Asks the node to stop (closes its stdin, SIGTERM to its group).
    fn request_stop(&self) {
        let mut g = self.lock();
        if let Some(p) = g.as_mut() {
            p.stdin.take();
            // The child is not reaped yet, so its pid (= pgid) is still ours.
            // SAFETY: plain kill(2).
            unsafe {
                libc::kill(-(p.child.id() as libc::pid_t), libc::SIGTERM);
            }
        }
    }

    /// True once the node is stopped (reaps it if it exited).
    fn try_reap(&self) -> bool {
        let mut g = self.lock();
        match g.as_mut() {
            None => true,
            Some(p) => match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    spawn::unregister_pid(p.child.id());
                    *g = None;
                    true
                }
                Ok(None) => false,
            },
        }
    }

    fn kill_now(&self) {
        let mut g = self.lock();
        if let Some(mut p) = g.take() {
            // SAFETY: plain kill(2) on our own, not yet reaped, child's group.
            unsafe {
                libc::kill(-(p.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = p.child.wait();
            spawn::unregister_pid(p.child.id());
        }
    }

    /// `Some(status)` if the node was started and has exited on its own.
    fn exited(&self) -> Option<String> {
        let mut g = self.lock();
        let p = g.as_mut()?;
        match p.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|p| p.child.id())
    }

    fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    fn logs_tail(&self) -> String {
        let mut out = String::new();
        for f in ["logs/twistd.log", "logs/run.log"] {
            let path = self.dir.join(f);
            if let Ok(text) = fs::read_to_string(&path) {
                // Skip the access-log noise of our own readiness polling.
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("GET /?t=json"))
                    .collect();
                let tail = &lines[lines.len().saturating_sub(30)..];
                out.push_str(&format!(
                    "--- {} (last {} lines)\n",
                    path.display(),
                    tail.len()
                ));
                for l in tail {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        if out.is_empty() {
            out.push_str(&format!("(no logs in {}/logs)\n", self.dir.display()));
        }
        out
    }
}

/// Stops all `nodes`: stdin closed + SIGTERM, up to 5 s grace, then SIGKILL.
fn stop_nodes(nodes: &[&Node]) {
    for n in nodes {
        n.request_stop();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut all = true;
        for n in nodes {
            all &= n.try_reap();
        }
        if all {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    for n in nodes {
        n.kill_now();
    }
}

/// A running local grid. See the crate documentation.
pub struct Grid {
    base: PathBuf,
    tmp: Option<tempfile::TempDir>,
    tahoe: PathBuf,
    needed: u8,
    happy: u8,
    total: u8,
    introducer: Node,
    storage: Vec<Node>,
    storage_ports: Vec<u16>,
    gateways: Vec<Node>,
    web_ports: Vec<u16>,
    http: Option<reqwest::blocking::Client>,
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Grid>();
    is::<GridConfig>();
    is::<OpenOptions>();
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grid")
            .field("base", &self.base)
            .field("storage_ports", &self.storage_ports)
            .field("web_ports", &self.web_ports)
            .finish_non_exhaustive()
    }
}

fn run_create(tahoe: &Path, args: Vec<String>) -> Result<Child> {
    let mut cmd = Command::new(tahoe);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn::spawn(cmd).with_context(|| format!("running tahoe {}", args.join(" ")))
}

/// Removes temporary grid directories whose owning process is gone.
fn sweep_stale_tempdirs() {
    let Ok(rd) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let dir = e.path();
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let Ok(pid) = owner.trim().parse::<libc::pid_t>() else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks for existence.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

fn loopback(port: u16) -> String {
    format!("tcp:{port}:interface=127.0.0.1")
}

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
                sweep_stale_tempdirs();
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
            let value = cfg_get(text, "node", key)
                .ok_or_else(|| anyhow!("{}: no [node] {key} ({name})", path.display()))?;
            parse_port(&value).ok_or_else(|| {
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
            if cfg_get(text, "node", "tub.location").as_deref() != Some(location.as_str()) {
                let new = cfg_set(text, "node", "tub.location", &location).ok_or_else(|| {
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

    /// Starts the introducer, points every other node at its FURL, starts
    /// them and waits for the grid to connect. `old_furl_mtime`: when the
    /// introducer's `private/introducer.furl` was last written before this
    /// start (a reopened grid has one), so that only a rewritten one counts.
    /// Returns the FURL.
    fn boot(&self, old_furl_mtime: Option<std::time::SystemTime>) -> Result<String> {
        self.introducer.start(&self.tahoe)?;
        let furl = self.wait_introducer(old_furl_mtime)?;
        let yaml = format!("introducers:\n  default:\n    furl: '{furl}'\n");
        for n in self.storage.iter().chain(&self.gateways) {
            let path = n.dir.join("private").join("introducers.yaml");
            let holds_furl = fs::read_to_string(&path).is_ok_and(|t| {
                t.lines().any(|l| {
                    l.trim()
                        .trim_start_matches("furl:")
                        .trim()
                        .trim_matches('\'')
                        == furl
                })
            });
            if !holds_furl {
                fs::write(&path, &yaml)
                    .with_context(|| format!("writing introducers.yaml of {}", n.name))?;
            }
        }
        for n in self.storage.iter().chain(&self.gateways) {
            n.start(&self.tahoe)?;
        }
        self.wait_connected(START_TIMEOUT)?;
        Ok(furl)
    }

    fn fail(&self, node: &Node, what: String) -> anyhow::Error {
        let msg = format!("{what}\n{}", node.logs_tail());
        eprintln!("steward-testgrid: {msg}");
        anyhow!(msg)
    }

    fn check_alive(&self) -> Result<()> {
        for n in std::iter::once(&self.introducer)
            .chain(&self.storage)
            .chain(&self.gateways)
        {
            if let Some(st) = n.exited() {
                return Err(self.fail(n, format!("{} exited unexpectedly: {st}", n.name)));
            }
        }
        Ok(())
    }

    /// Waits until the introducer has (re)written its FURL file (a write
    /// newer than `old_mtime`, if given) and accepts connections on its
    /// port; returns the FURL.
    fn wait_introducer(&self, old_mtime: Option<std::time::SystemTime>) -> Result<String> {
        let path = self.introducer.dir.join("private").join("introducer.furl");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut furl = None;
        loop {
            if furl.is_none() {
                let fresh = match old_mtime {
                    None => true,
                    Some(old) => fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| m != old),
                };
                if let Some(text) = fresh.then(|| fs::read_to_string(&path).ok()).flatten() {
                    let f = text.trim();
                    if text.ends_with('\n') && f.starts_with("pb://") && f.contains('@') {
                        furl = Some(f.to_string());
                    }
                }
            }
            if let Some(f) = &furl {
                if let Some(port) = furl_port(f) {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                        return Ok(f.clone());
                    }
                } else {
                    // Not a plain loopback hint: nothing to poll.
                    return Ok(f.clone());
                }
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(self.fail(
                    &self.introducer,
                    format!(
                        "introducer wrote no fresh {} or did not listen within {START_TIMEOUT:?}",
                        path.display()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until every gateway sees every *running* storage node
    /// connected, and none of the stopped ones.
    pub fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let mut pending: Option<(usize, String)> = None;
            for (g, url) in self.gateway_urls().iter().enumerate() {
                match self.server_status(url) {
                    Ok(st) => {
                        for (i, n) in self.storage.iter().enumerate() {
                            let running = n.is_running();
                            let connected = st
                                .get(&format!("s{i}"))
                                .map(|s| s.to_ascii_lowercase().starts_with("connected"));
                            let ok = if running {
                                connected == Some(true)
                            } else {
                                connected != Some(true)
                            };
                            if !ok && pending.is_none() {
                                pending = Some((
                                    g,
                                    format!(
                                        "gateway {g} sees storage node {i} ({}) as {:?}",
                                        if running { "running" } else { "stopped" },
                                        st.get(&format!("s{i}"))
                                    ),
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        if pending.is_none() {
                            pending =
                                Some((g, format!("gateway {g} web API not answering: {e:#}")));
                        }
                    }
                }
            }
            let Some((g, why)) = pending else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(self.fail(
                    &self.gateways[g],
                    format!("grid not ready after {timeout:?}: {why}"),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// nickname -> connection_status summary, from `GET /?t=json`.
    fn server_status(&self, gateway_url: &str) -> Result<BTreeMap<String, String>> {
        let v: Value = self
            .client()
            .get(format!("{gateway_url}?t=json"))
            .timeout(Duration::from_secs(5))
            .send()?
            .error_for_status()?
            .json()?;
        let mut out = BTreeMap::new();
        for s in v["servers"].as_array().into_iter().flatten() {
            if let (Some(n), Some(c)) = (s["nickname"].as_str(), s["connection_status"].as_str()) {
                out.insert(n.to_string(), c.to_string());
            }
        }
        Ok(out)
    }

    fn client(&self) -> &reqwest::blocking::Client {
        self.http.as_ref().expect("HTTP client present until drop")
    }

    /// `http://127.0.0.1:PORT/` of gateway 0.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.web_ports[0])
    }

    /// Web-API URLs of all gateways, each ending in `/`.
    pub fn gateway_urls(&self) -> Vec<String> {
        self.web_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/"))
            .collect()
    }

    /// Node directory of gateway 0 (`node.url`, `private/aliases`,
    /// `private/secret`, `private/introducer_default_cache.yaml`).
    pub fn gateway_dir(&self) -> &Path {
        &self.gateways[0].dir
    }

    /// Node directory of gateway `i`.
    pub fn gateway_dir_at(&self, i: usize) -> &Path {
        &self.gateways[i].dir
    }

    /// Node directory of storage node `i`.
    pub fn storage_dir(&self, i: usize) -> PathBuf {
        self.storage[i].dir.clone()
    }

    /// Real (listening) port of storage node `i`.
    pub fn storage_port(&self, i: usize) -> u16 {
        self.storage_ports[i]
    }

    /// Number of storage nodes.
    pub fn storage_nodes(&self) -> usize {
        self.storage.len()
    }

    /// Encoding parameters `(needed, happy, total)`.
    pub fn encoding(&self) -> (u8, u8, u8) {
        (self.needed, self.happy, self.total)
    }

    /// Directory holding all node directories.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// Pids of the `tahoe run` processes currently running.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(&self.introducer)
            .chain(&self.storage)
            .chain(&self.gateways)
            .filter_map(Node::pid)
            .collect()
    }

    /// `tahoe -d <gateway 0 dir>`, ready for more args.
    pub fn tahoe(&self) -> Command {
        let mut c = Command::new(&self.tahoe);
        c.arg("-d").arg(self.gateway_dir());
        c
    }

    /// Adds (or replaces) alias `name` for `cap` in `private/aliases` of
    /// every gateway, as `tahoe add-alias` writes it (`name: cap` lines).
    pub fn add_alias(&self, name: &str, cap: &str) -> Result<()> {
        if name.contains(':') || name.contains('\n') || cap.contains('\n') {
            bail!("bad alias {name:?}");
        }
        for g in &self.gateways {
            let path = g.dir.join("private").join("aliases");
            let old = fs::read_to_string(&path).unwrap_or_default();
            let mut text = String::new();
            for line in old.lines() {
                let t = line.trim();
                if !t.starts_with('#') && t.split(':').next().map(str::trim) == Some(name) {
                    continue;
                }
                text.push_str(line);
                text.push('\n');
            }
            text.push_str(&format!("{name}: {cap}\n"));
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn url(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.gateway_url(),
            path_and_query.trim_start_matches('/')
        )
    }

    fn text_response(resp: reqwest::blocking::Response, what: &str) -> Result<String> {
        let status = resp.status();
        let body = resp.text()?;
        if !status.is_success() {
            bail!("{what}: HTTP {status}: {body}");
        }
        Ok(body.trim().to_string())
    }

    /// `POST /uri?t=mkdir`: a new empty mutable directory's write cap.
    pub fn mkdir(&self) -> Result<String> {
        let r = self.client().post(self.url("uri?t=mkdir")).send()?;
        Self::text_response(r, "mkdir")
    }

    /// `POST /uri?t=mkdir-immutable` with `children` (see
    /// [`Grid::mkdir_with_children`] for the accepted forms). Every child
    /// must be immutable.
    pub fn mkdir_immutable(&self, children: Value) -> Result<String> {
        let body = serde_json::to_vec(&normalize_children(children)?)?;
        let r = self
            .client()
            .post(self.url("uri?t=mkdir-immutable"))
            .body(body)
            .send()?;
        Self::text_response(r, "mkdir-immutable")
    }

    /// `POST /uri?t=mkdir-with-children`: a new mutable directory holding
    /// `children`, an object `{name: [nodetype, {rw_uri?, ro_uri, metadata?}]}`
    /// as in webapi.rst; as a shorthand a value may be just a cap string
    /// (node type and rw/ro are then inferred from the cap's prefix).
    pub fn mkdir_with_children(&self, children: Value) -> Result<String> {
        let body = serde_json::to_vec(&normalize_children(children)?)?;
        let r = self
            .client()
            .post(self.url("uri?t=mkdir-with-children"))
            .body(body)
            .send()?;
        Self::text_response(r, "mkdir-with-children")
    }

    /// `PUT /uri?format=FORMAT` (`CHK`, `SDMF`, `MDMF`): the new file's cap.
    /// CHK data of 55 bytes or less gives a `URI:LIT:` cap.
    pub fn upload(&self, data: &[u8], format: &str) -> Result<String> {
        let r = self
            .client()
            .put(self.url(&format!("uri?format={format}")))
            .body(data.to_vec())
            .send()?;
        Self::text_response(r, "upload")
    }

    /// `PUT /uri/$DIRCAP/NAME?t=uri`: links `childcap` as `name` (any
    /// Unicode, percent-encoded here) in directory `dircap`.
    pub fn link(&self, dircap: &str, name: &str, childcap: &str) -> Result<()> {
        let r = self
            .client()
            .put(self.url(&format!("uri/{}/{}?t=uri", dircap, percent_encode(name))))
            .body(childcap.to_string())
            .send()?;
        Self::text_response(r, "link").map(|_| ())
    }

    /// `GET` gateway + `path_and_query` (leading `/` optional), as JSON.
    pub fn get_json(&self, path_and_query: &str) -> Result<Value> {
        let r = self.client().get(self.url(path_and_query)).send()?;
        let body = Self::text_response(r, &format!("GET {path_and_query}"))?;
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path_and_query}: not JSON: {body}"))
    }

    /// `POST` gateway + `path_and_query` with an empty body: status and body.
    pub fn post(&self, path_and_query: &str) -> Result<(u16, String)> {
        let r = self.client().post(self.url(path_and_query)).send()?;
        let status = r.status().as_u16();
        Ok((status, r.text()?))
    }

    /// `POST /uri/$CAP?t=check&output=JSON` (plus `&verify=true` if asked):
    /// the parsed check results.
    pub fn check(&self, cap: &str, verify: bool) -> Result<Value> {
        let q = format!(
            "uri/{cap}?t=check&output=JSON{}",
            if verify { "&verify=true" } else { "" }
        );
        let (status, body) = self.post(&q)?;
        if !(200..300).contains(&status) {
            bail!("check {cap}: HTTP {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// The base32 storage index of `cap` (from its verify cap, via
    /// `GET /uri/$CAP?t=json`). LIT caps have none: error.
    pub fn storage_index(&self, cap: &str) -> Result<String> {
        let v = self.get_json(&format!("uri/{cap}?t=json"))?;
        let vc = v[1]["verify_uri"]
            .as_str()
            .ok_or_else(|| anyhow!("{cap} has no verify cap (LIT?)"))?;
        vc.split(':')
            .nth(2)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("odd verify cap {vc}"))
    }

    /// All share files of storage index `si` on all storage nodes (running or
    /// not), ordered by node then share number.
    pub fn shares(&self, si: &str) -> Vec<ShareFile> {
        let mut out = Vec::new();
        if si.len() < 2 || si.contains('/') {
            return out;
        }
        for (i, n) in self.storage.iter().enumerate() {
            let dir = n.dir.join("storage").join("shares").join(&si[..2]).join(si);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                if let Some(shnum) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                    out.push(ShareFile {
                        node: i,
                        shnum,
                        path: e.path(),
                    });
                }
            }
        }
        out.sort();
        out
    }

    /// Deletes `count` share files of `si` (or all there are), returning how
    /// many were deleted. Deterministic: each time the node holding the most
    /// shares of `si` loses its highest-numbered one (ties: higher node
    /// index first), so the shares left stay on distinct nodes where
    /// possible.
    pub fn drop_shares(&self, si: &str, count: usize) -> Result<usize> {
        let mut shares = self.shares(si);
        let mut dropped = 0;
        while dropped < count && !shares.is_empty() {
            let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
            for s in &shares {
                *per_node.entry(s.node).or_default() += 1;
            }
            let (&node, _) = per_node
                .iter()
                .max_by_key(|(&n, &c)| (c, n))
                .expect("non-empty");
            let idx = shares
                .iter()
                .enumerate()
                .filter(|(_, s)| s.node == node)
                .max_by_key(|(_, s)| s.shnum)
                .map(|(i, _)| i)
                .expect("node has a share");
            let s = shares.remove(idx);
            remove_share(&s.path)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Leaves exactly `keep` distinct share numbers of `si`, one file each:
    /// the lowest numbers, each kept on a node not yet keeping one where
    /// possible (numbers with fewer copies choose first); every other share
    /// file is deleted. Returns how many
    /// files were deleted.
    ///
    /// Counting share *numbers*, not files, matters after a repair: Tahoe's
    /// repairer may place copies of one share number on several servers
    /// (seen in 1.20: `sh0` on three servers), so "keep three files" could
    /// keep one number and leave the object unrecoverable. Fails, deleting
    /// nothing, if `si` has fewer than `keep` distinct share numbers.
    pub fn keep_share_numbers(&self, si: &str, keep: usize) -> Result<usize> {
        let mut by_num: BTreeMap<u32, Vec<ShareFile>> = BTreeMap::new();
        for s in self.shares(si) {
            by_num.entry(s.shnum).or_default().push(s);
        }
        if by_num.len() < keep {
            bail!(
                "{si} has {} distinct share numbers, fewer than the {keep} to keep",
                by_num.len()
            );
        }
        // Which copy of each kept number stays: numbers with fewer copies
        // choose first, so a number found on several nodes does not take
        // the only node of another.
        let mut kept_nums: Vec<u32> = by_num.keys().take(keep).copied().collect();
        kept_nums.sort_by_key(|n| by_num[n].len());
        let mut nodes_keeping = BTreeSet::new();
        let mut kept: BTreeMap<u32, usize> = BTreeMap::new();
        for n in kept_nums {
            let copies = &by_num[&n];
            let k = copies
                .iter()
                .position(|c| !nodes_keeping.contains(&c.node))
                .unwrap_or(0);
            nodes_keeping.insert(copies[k].node);
            kept.insert(n, k);
        }
        let mut deleted = 0;
        for (n, copies) in &by_num {
            for (j, c) in copies.iter().enumerate() {
                if kept.get(n) != Some(&j) {
                    remove_share(&c.path)?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Leaves fewer than k (`needed`) distinct share numbers of `si`: keeps
    /// the lowest `needed - 1` share numbers, deletes every other share file.
    pub fn make_unrecoverable(&self, si: &str) -> Result<()> {
        let shares = self.shares(si);
        if shares.is_empty() {
            bail!("no shares of {si} on this grid");
        }
        let keep: BTreeSet<u32> = shares
            .iter()
            .map(|s| s.shnum)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(self.needed.saturating_sub(1) as usize)
            .collect();
        for s in shares.iter().filter(|s| !keep.contains(&s.shnum)) {
            remove_share(&s.path)?;
        }
        Ok(())
    }

    /// Flips 16 bytes in the middle of the first share of `si` (lowest
    /// node, then share number). On an immutable file of more than a few
    /// hundred bytes this hits block data: a plain check still counts the
    /// share good, only `verify=true` reports it corrupt.
    pub fn corrupt_share(&self, si: &str) -> Result<ShareFile> {
        let s = self
            .shares(si)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no shares of {si} on this grid"))?;
        let mut f = File::options()
            .read(true)
            .write(true)
            .open(&s.path)
            .with_context(|| format!("opening {}", s.path.display()))?;
        let len = f.metadata()?.len();
        let n = len.min(16);
        let at = (len / 2).saturating_sub(n / 2);
        let mut buf = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut buf)?;
        for b in &mut buf {
            *b ^= 0xff;
        }
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&buf)?;
        f.sync_all()?;
        Ok(s)
    }

    /// Stops storage node `i` and waits until every gateway sees it
    /// disconnected. Its shares stay on disk.
    pub fn stop_storage_node(&self, i: usize) -> Result<()> {
        let n = self
            .storage
            .get(i)
            .ok_or_else(|| anyhow!("no storage node {i}"))?;
        stop_nodes(&[n]);
        self.wait_connected(START_TIMEOUT)
    }

    /// (Re)starts storage node `i` on the same ports and waits until every
    /// gateway sees it connected.
    pub fn start_storage_node(&self, i: usize) -> Result<()> {
        let n = self
            .storage
            .get(i)
            .ok_or_else(|| anyhow!("no storage node {i}"))?;
        n.start(&self.tahoe)?;
        self.wait_connected(START_TIMEOUT)
    }

    /// Restarts storage node `i` advertising `location` (its `tub.location`,
    /// e.g. `tcp:127.0.0.1:<proxy port>` to put a proxy in front of it),
    /// and waits until every gateway sees it connected again. Its listening
    /// port stays the same.
    pub fn relocate_storage_node(&self, i: usize, location: &str) -> Result<()> {
        self.stop_storage_node(i)?;
        let path = self.storage_dir(i).join("tahoe.cfg");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let new = cfg_set(&text, "node", "tub.location", location)
            .ok_or_else(|| anyhow!("{}: no [node] tub.location", path.display()))?;
        write_atomically(&path, &new)?;
        self.start_storage_node(i)
    }

    /// Stops every process of this grid (idempotent). The temporary base
    /// directory, if any, is removed on drop.
    pub fn stop(&mut self) {
        let nodes: Vec<&Node> = self
            .gateways
            .iter()
            .chain(&self.storage)
            .chain(std::iter::once(&self.introducer))
            .collect();
        stop_nodes(&nodes);
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        self.stop();
        // reqwest::blocking::Client panics when dropped inside an async
        // runtime; drop it on a plain thread instead.
        if let Some(c) = self.http.take() {
            let _ = thread::spawn(move || drop(c)).join();
        }
        if let Some(t) = self.tmp.take() {
            spawn::unregister_dir(t.path());
            let _ = t.close();
        }
    }
}

fn http_client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .context("building the HTTP client")
}

/// The node list of a grid of `shape` in `base` (nothing started).
fn grid_nodes(base: &Path, shape: &GridShape) -> (Node, Vec<Node>, Vec<Node>) {
    let introducer = Node::new("introducer".into(), base.join("introducer"));
    let storage = (0..shape.storage_nodes)
        .map(|i| {
            Node::new(
                format!("storage node {i}"),
                base.join(format!("storage{i}")),
            )
        })
        .collect();
    let gateways = (0..shape.gateways)
        .map(|i| Node::new(format!("gateway {i}"), base.join(format!("gateway{i}"))))
        .collect();
    (introducer, storage, gateways)
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Value of `key` in `[section]` of an INI text as Python's configparser
/// reads the simple files `tahoe create-*` writes (`key = value`, `#`
/// comments).
fn cfg_get(text: &str, section: &str, key: &str) -> Option<String> {
    cfg_find(text, section, key).map(|(_, v)| v.to_string())
}

/// `text` with `key` in `[section]` set to `value`; `None` if it has no
/// such key.
fn cfg_set(text: &str, section: &str, key: &str, value: &str) -> Option<String> {
    let (line_no, _) = cfg_find(text, section, key)?;
    let mut out = String::with_capacity(text.len() + value.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i == line_no {
            out.push_str(&format!("{key} = {value}\n"));
        } else {
            out.push_str(line);
        }
    }
    Some(out)
}

fn cfg_find<'a>(text: &'a str, section: &str, key: &str) -> Option<(usize, &'a str)> {
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('#') || t.starts_with(';') || t.is_empty() {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim();
            continue;
        }
        if current != section {
            continue;
        }
        let Some(at) = t.find(['=', ':']) else {
            continue;
        };
        if t[..at].trim().eq_ignore_ascii_case(key) {
            return Some((i, t[at + 1..].trim()));
        }
    }
    None
}

/// The port of a Twisted endpoint as `tahoe create-*` writes it
/// (`tcp:PORT:interface=127.0.0.1`), or of a bare `PORT` / `tcp:PORT`.
fn parse_port(endpoint: &str) -> Option<u16> {
    let mut parts = endpoint.trim().split(':');
    let first = parts.next()?;
    let port = if first.eq_ignore_ascii_case("tcp") {
        parts.next()?
    } else {
        first
    };
    port.parse::<u16>().ok().filter(|&p| p != 0)
}

/// The port of a FURL's first `tcp:127.0.0.1:PORT` location hint.
fn furl_port(furl: &str) -> Option<u16> {
    let hints = furl.split('@').nth(1)?.split('/').next()?;
    let first = hints.split(',').next()?;
    let rest = first.strip_prefix("tcp:").unwrap_or(first);
    let (host, port) = rest.rsplit_once(':')?;
    if host != "127.0.0.1" && host != "localhost" {
        return None;
    }
    port.parse().ok()
}

/// Deals with the pid file of `node` left by an earlier run: an error if
/// that `tahoe run` of this very directory is still alive, else removed
/// (Tahoe 1.20 would refuse to start over it if its pid now belongs to any
/// live process, zombies included, or if it is malformed).
fn clear_stale_pidfiles(node: &Node) -> Result<()> {
    let path = node.dir.join("running.process");
    if let Ok(text) = fs::read_to_string(&path) {
        let pid = text
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid.filter(|&p| p > 0 && process_runs_node(p, &node.dir)) {
            bail!(
                "{} ({}) is still running as pid {pid}: is this grid open elsewhere?",
                node.name,
                node.dir.display()
            );
        }
        fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    // Not written by `tahoe run` (it passes `--pidfile ''` to twistd), but
    // harmless to drop if some other way of running the node left one.
    let _ = fs::remove_file(node.dir.join("twistd.pid"));
    Ok(())
}

/// True if `pid` is a live (not zombie) process whose command line names
/// `dir` (i.e. `tahoe run DIR`).
fn process_runs_node(pid: u32, dir: &Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    if state.starts_with('Z') || state.starts_with('X') {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = dir.as_os_str().as_encoded_bytes();
    cmdline.split(|&b| b == 0).any(|arg| {
        let arg = arg.strip_suffix(b"/").unwrap_or(arg);
        arg == dir
    })
}

fn remove_share(path: &Path) -> Result<()> {
    fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    // Tahoe removes empty bucket directories itself; leave none behind.
    if let Some(parent) = path.parent() {
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_write_cap(cap: &str) -> bool {
    ["URI:DIR2:", "URI:DIR2-MDMF:", "URI:SSK:", "URI:MDMF:"]
        .iter()
        .any(|p| cap.starts_with(p))
}

/// Expands `{name: "cap"}` shorthand into `{name: [type, {rw_uri|ro_uri}]}`.
fn normalize_children(children: Value) -> Result<Value> {
    let Value::Object(map) = children else {
        bail!("children must be a JSON object");
    };
    let mut out = serde_json::Map::new();
    for (name, v) in map {
        let v = match v {
            Value::String(cap) => {
                let kind = if cap.starts_with("URI:DIR2") {
                    "dirnode"
                } else {
                    "filenode"
                };
                let key = if is_write_cap(&cap) {
                    "rw_uri"
                } else {
                    "ro_uri"
                };
                serde_json::json!([kind, { key: cap }])
            }
            other => other,
        };
        out.insert(name, v);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const CFG: &str = "# comment\n[node]\nnickname = s0\nweb.port = \n\
        tub.port = tcp:4567:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:4567\n\
        \n[client]\n#tub.port = 1\nshares.needed = 2\n";

    #[test]
    fn ini_get_and_set() {
        assert_eq!(
            cfg_get(CFG, "node", "tub.port").as_deref(),
            Some("tcp:4567:interface=127.0.0.1")
        );
        assert_eq!(cfg_get(CFG, "node", "web.port").as_deref(), Some(""));
        assert_eq!(cfg_get(CFG, "client", "tub.port"), None);
        assert_eq!(
            cfg_get(CFG, "client", "shares.needed").as_deref(),
            Some("2")
        );
        let new = cfg_set(CFG, "node", "tub.location", "tcp:localhost:9").unwrap();
        assert_eq!(
            new,
            CFG.replace("tcp:127.0.0.1:4567\n", "tcp:localhost:9\n")
        );
        assert_eq!(cfg_set(CFG, "client", "tub.location", "x"), None);
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("tcp:4567:interface=127.0.0.1"), Some(4567));
        assert_eq!(parse_port("tcp:4567"), Some(4567));
        assert_eq!(parse_port("4567"), Some(4567));
        assert_eq!(parse_port("disabled"), None);
        assert_eq!(parse_port("tcp:0"), None);
        assert_eq!(parse_port(""), None);
        assert_eq!(furl_port("pb://abc@tcp:127.0.0.1:4000/swiss"), Some(4000));
        assert_eq!(furl_port("pb://abc@tcp:example.org:4000/swiss"), None);
    }

    #[test]
    fn shape_round_trip() {
        let s = GridShape {
            storage_nodes: 5,
            gateways: 2,
            needed: 2,
            happy: 3,
            total: 5,
            tahoe_version: Some("1.20.0".into()),
        };
        assert_eq!(GridShape::from_json(&s.to_json()).unwrap(), s);
        let s = GridShape {
            tahoe_version: None,
            ..s
        };
        assert_eq!(GridShape::from_json(&s.to_json()).unwrap(), s);
        assert!(GridShape::from_json(&serde_json::json!({"storage_nodes": 1})).is_err());
        let bad = GridShape { happy: 9, ..s };
        assert!(GridShape::from_json(&bad.to_json()).is_err());
    }
}
