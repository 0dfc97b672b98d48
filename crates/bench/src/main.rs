//! `steward-bench`: measures steward against Tahoe-LAFS's own tools and
//! writes `BENCHMARKS.md` at the workspace root.
//!
//! ```text
//! cargo run --release -p steward-bench -- [--quick] [--objects N] [--rtt-ms 20,100] [--runs 3]
//! ```
//!
//! # Method
//!
//! Everything runs on this machine, in one run of this program, so every
//! ratio compares figures taken on the same grid, the same tree and the
//! same box within minutes of each other.
//!
//! 1. **Real grid, loopback.** A real Tahoe-LAFS 1.20 grid
//!    (`steward-testgrid`: an introducer, 5 storage nodes with k=2, happy=3,
//!    N=5, and 3 gateways, all on 127.0.0.1) is started and a tree of
//!    `--objects` objects (default 10,000) is built in it: nested mutable
//!    directories, immutable directories, CHK, LIT, SDMF and MDMF files
//!    ([`tree`]). The tree is split into parts, one per measurement, sized
//!    so that the whole program stays within its time budget: `dc/` for the
//!    plain deep-check, `--add-lease` and two-gateway comparisons, `verify/`
//!    for `--verify` (about 5x slower per object), `repair/` (a quarter of
//!    its non-LIT files have 2 of their 5 shares deleted before *each* run,
//!    so every repair run starts from the same damage), one part per RTT for
//!    the slow network, and `rest/` so that the manifest covers the whole
//!    tree. The report names the part and object count of every row.
//!    Each comparison is run `--runs` times, the tools interleaved (Tahoe,
//!    steward, Tahoe, steward, ...) so that drift in the box's load hits
//!    both alike; the median wall time is reported, and the CPU split and
//!    RSS come from the median run. Per run ([`measure`]): wall time; the
//!    client's CPU seconds from `wait4`'s rusage and its peak RSS (from
//!    `ru_maxrss` when that exceeds this process's own high-water mark,
//!    which Linux folds into a child's `ru_maxrss` at exec, else from the
//!    child's `VmHWM` sampled every 10 ms); the CPU seconds each Tahoe
//!    process spent meanwhile, from `/proc/<pid>/stat` before and after;
//!    the bench process's own CPU (delaying proxies, synthetic gateway);
//!    and how busy the whole box was (`/proc/stat`), so that other load on
//!    the machine shows up as "other" instead of silently skewing a ratio.
//!    Tools run with their default settings (steward from a private copy of
//!    its release binary, built at the start). The objects/s figures
//!    divide the objects of the walked tree (LIT included, as both tools
//!    count them) by the wall time; the ratio is steward's throughput over
//!    Tahoe's on the same objects. The tools' own object counts are
//!    checked against the tree's. A steward run that prints nothing for 60
//!    seconds (it prints a line per 100 objects) is killed as stalled,
//!    reported, and tried once more.
//!    **Through steward serve**: the stock `tahoe deep-check` of `dc/`
//!    against gateway 0 and through a `steward serve` in front of it (its
//!    node directory's `node.url`), interleaved; serve's CPU and peak RSS
//!    from `/proc` (section `serve`).
//! 2. **Two gateways.** The same deep-check with steward given gateway 0
//!    and gateway 1 of the same grid; Tahoe's tool can only use one. The
//!    CPU split of each configuration's median run (gateways, storage
//!    servers, client, everything else on the box) shows where the
//!    ceiling is.
//! 3. **Slow network.** Each storage node is restarted with its
//!    `tub.location` pointing at a delaying TCP proxy in this process
//!    ([`proxy`]; every chunk held RTT/2 in each direction, order kept), so
//!    the gateways reach the storage servers over a slow network while the
//!    clients still reach their gateway on loopback (a tool running next to
//!    its gateway). The switch is verified from the gateways' sockets.
//!    When steward has `--fixed-jobs`, a diagnostic row runs it with a
//!    fixed number of requests in flight, to tell its adaptive limit apart
//!    from the round trips themselves. When it has `--backend native`, the
//!    native check (verify caps, straight to the storage servers) is
//!    measured on loopback and over the slow network as well, and so is
//!    `deep-check --backend native` with no gateway at all (listings read
//!    from the storage servers too), on the benchmark's tree and on a
//!    second tree a quarter of whose objects are mutable (`mixed/`:
//!    directories of about ten entries, SDMF and MDMF files), where a
//!    gateway spends the most CPU per object. On loopback,
//!    `deep-check --verify --backend native` (with the bytes it read per
//!    object against the share sizes) and the peak RSS of verifying one
//!    200 MB file (uploaded once and kept with the grid) are measured too.
//! 4. **A million objects, synthetic gateway.** [`steward_bench::synth`] serves a
//!    generated tree with instant healthy check answers (and, in one extra
//!    run over 10,000 objects, answers held 20 ms), to measure steward's
//!    own cost at a scale no real grid reaches here; one run is profiled
//!    with `perf record` when `perf` is installed. Tahoe's
//!    `start-deep-check` polling API keeps every check result in the
//!    gateway until the handle expires: its memory growth per object is
//!    measured on the real grid (on a third gateway, untouched by the other
//!    runs, after a warm-up operation) and extrapolated to 1,000,000.
//!    Then steward's **instructions per object** for `manifest` and
//!    `deep-check` are counted under valgrind's callgrind (10,000 objects
//!    minus 100, so a run's fixed cost is taken out) and split into
//!    steward's own code, HTTP, JSON, allocation, the async runtime and the
//!    rest ([`steward_bench::cost`], [`steward_bench::callgrind`]);
//!    `perf stat -e instructions:u` counts them too where the host has the
//!    counter. Unlike microseconds, these are the same on any host.
//!
//! The real grid and its tree are built once (uploads from 16 threads
//! spread over two gateways, one request per directory: about 3 minutes
//! for 10,000 objects on 2 cores) in `target/bench-grid` and kept: a later
//! run with the same plan reopens that grid ([`steward_testgrid::Grid::open`])
//! and reuses the tree; `--fresh` builds again. The report says which.
//!
//! 5. **Many accounts.** `steward dispatch` over 20 accounts of 100-500
//!    objects with one budget, against `steward deep-check` per account one
//!    after another, on a grid of its own ([`dispatch`]): the ratio of the
//!    wall times and when the small accounts were done.
//! 6. **Several workers on one PostgreSQL** ([`cluster`]). The store
//!    overhead per object of `steward dispatch` with its SQLite state
//!    directory and with `--store postgres://` (a throwaway durable server
//!    of this run's own), against `steward deep-check` keeping nothing, on
//!    the synthetic gateway at `--synthetic-objects` (CPU of steward and of
//!    the database server, wall time, bytes kept); and the objects per
//!    second of 1, 2 and 4 `steward dispatch --store` workers sharing the
//!    accounts of a real grid.
//!
//! Targets are reported as met or not met; nothing here is tuned to them.

mod cluster;
mod dispatch;
mod loopback;
mod machine;
mod measure;
mod plan;
mod polling;
mod proxy;
mod report;
mod results;
mod run;
mod slow;
mod synthetic;
mod tree;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use results::Results;
use run::Ctx;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Benchmarks steward against Tahoe-LAFS's own tools and writes BENCHMARKS.md.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Small tree, single runs, 100,000 synthetic objects: a smoke run in
    /// under 3 minutes (the figures are noisier).
    #[arg(long)]
    pub quick: bool,
    /// Objects in the real grid's tree [default: 10000, --quick 1000].
    #[arg(long)]
    pub objects: Option<u64>,
    /// Round-trip times to add between gateways and storage servers, in ms.
    #[arg(long = "rtt-ms", value_delimiter = ',', default_value = "20,100")]
    pub rtt_ms: Vec<u64>,
    /// Runs of each measurement (median reported) [default: 3, --quick 1].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Objects in the synthetic gateway's big tree [default: 1000000,
    /// --quick 100000]. A 10,000-object synthetic tree is measured as well.
    #[arg(long = "synthetic-objects")]
    pub synthetic_objects: Option<u64>,
    /// Runs at the big synthetic size [default: 1].
    #[arg(long = "synthetic-runs", default_value_t = 1)]
    pub synthetic_runs: usize,
    /// Delay of every answer of the synthetic gateway in the extra
    /// "slow answers" run over 10,000 objects, in ms (0: no such run).
    #[arg(long = "synthetic-delay-ms", default_value_t = 20)]
    pub synthetic_delay_ms: u64,
    /// Where to write the report [default: BENCHMARKS.md at the workspace
    /// root; with --quick, target/BENCHMARKS.quick.md].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use this steward binary instead of building target/release/steward.
    #[arg(long)]
    pub steward: Option<PathBuf>,
    /// Only these sections (loopback, serve, slow, synthetic, instructions:
    /// the last is part of synthetic; dispatch; cluster); for development.
    /// The report says which were skipped.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only serve a synthetic tree of this many objects (answers delayed
    /// by `--synthetic-delay-ms`), print its URL and root cap, and wait for
    /// end of input: for profiling steward by hand. Measures nothing.
    #[arg(long = "serve-synthetic", value_name = "OBJECTS")]
    pub serve_synthetic: Option<u64>,
    /// Where the real grid and its tree are kept between runs [default:
    /// target/bench-grid, with --quick target/bench-grid-quick]. A later run with the same tree size reopens the
    /// grid there instead of building the tree again.
    #[arg(long = "grid-dir")]
    pub grid_dir: Option<PathBuf>,
    /// Build the grid and tree afresh even if a kept one fits.
    #[arg(long)]
    pub fresh: bool,
}

impl Args {
    pub fn objects(&self) -> u64 {
        self.objects
            .unwrap_or(if self.quick { 1000 } else { 10_000 })
    }
    pub fn runs(&self) -> usize {
        self.runs.unwrap_or(if self.quick { 1 } else { 3 }).max(1)
    }
    pub fn synthetic_objects(&self) -> u64 {
        self.synthetic_objects
            .unwrap_or(if self.quick { 100_000 } else { 1_000_000 })
    }
    pub fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/bench is two levels down")
        .to_path_buf()
}

fn build_steward(ws: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow!("no exe dir"))?;
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    eprintln!("== building steward (cargo build --release -p steward) ==");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(ws)
        .args(["build", "--release", "-p", "steward"])
        .status()
        .context("running cargo")?;
    if !st.success() {
        bail!("cargo build --release -p steward failed");
    }
    let target = if profile == "release" {
        dir.to_path_buf()
    } else {
        ws.join("target").join("release")
    };
    let bin = target.join("steward");
    if !bin.is_file() {
        bail!("{} missing after the build", bin.display());
    }
    Ok(bin)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.serve_synthetic {
        return synthetic::serve_synthetic(n, args.synthetic_delay_ms);
    }
    let ws = workspace_root();
    let t_build = Instant::now();
    let steward = match &args.steward {
        Some(p) => p.clone(),
        None => build_steward(&ws)?,
    };
    let build_steward_secs = t_build.elapsed().as_secs_f64();
    let t0 = Instant::now();
    eprintln!("== the Tahoe-LAFS virtualenv ==");
    let tahoe = steward_testgrid::tahoe_bin()?;
    let logs = ws.join("target").join("bench-logs");
    let _ = fs::remove_dir_all(&logs);
    fs::create_dir_all(&logs)?;
    // A private copy, so that a rebuild of target/release/steward during
    // the run (the workspace is shared) cannot mix two versions.
    let steward_copy = logs.join("steward");
    fs::copy(&steward, &steward_copy).with_context(|| format!("copying {}", steward.display()))?;
    let steward = steward_copy;
    let ctx = Ctx {
        steward,
        logs,
        runs: args.runs(),
        timeout: Duration::from_secs(1800),
    };
    let mut res = Results {
        machine: machine::Machine::probe(Some(&tahoe), &ws),
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        quick: args.quick,
        runs: ctx.runs,
        synthetic_runs: args.synthetic_runs.max(1),
        build_steward_secs,
        ..Default::default()
    };
    eprintln!(
        "machine: {} x {}, {:.1} GiB, kernel {}, load average {}",
        res.machine.nproc,
        res.machine.cpu,
        res.machine.ram_gib,
        res.machine.kernel,
        res.machine.loadavg
    );
    if args.wants("loopback") || args.wants("slow") || args.wants("serve") {
        if let Err(e) = loopback::loopback_and_slow(&args, &ctx, &mut res) {
            eprintln!("real-grid benchmarks failed: {e:#}");
            res.errors.push(format!("real grid: {e:#}"));
        }
    } else {
        res.skipped.push("loopback".into());
        res.skipped.push("slow network".into());
    }
    if args.wants("synthetic") || args.wants("instructions") {
        if let Err(e) = synthetic::synthetic(&args, &ctx, &mut res) {
            eprintln!("synthetic benchmarks failed: {e:#}");
            res.errors.push(format!("synthetic gateway: {e:#}"));
        }
    } else {
        res.skipped.push("synthetic gateway".into());
    }
    if args.wants("dispatch") {
        match dispatch::dispatch_bench(&args, &ctx) {
            Ok(d) => res.dispatch = Some(d),
            Err(e) => {
                eprintln!("dispatch benchmark failed: {e:#}");
                res.errors.push(format!("dispatch: {e:#}"));
            }
        }
    } else {
        res.skipped.push("dispatch".into());
    }
    if args.wants("cluster") {
        match cluster::cluster_bench(&args, &ctx) {
            Ok(c) => res.cluster = Some(c),
            Err(e) => {
                eprintln!("cluster benchmark failed: {e:#}");
                res.errors.push(format!("cluster: {e:#}"));
            }
        }
    } else {
        res.skipped.push("cluster".into());
    }
    res.elapsed = t0.elapsed();
    // A smoke run never replaces the real table.
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            ws.join("target").join("BENCHMARKS.quick.md")
        } else {
            ws.join("BENCHMARKS.md")
        }
    });
    let md = report::render(&res);
    fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "== wrote {} in {:.1} min ==",
        out.display(),
        res.elapsed.as_secs_f64() / 60.0
    );
    eprint!("{}", report::headline(&res));
    Ok(())
}
