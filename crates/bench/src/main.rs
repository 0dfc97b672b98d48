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
//!    measured on loopback and over the slow network as well.
//! 4. **A million objects, synthetic gateway.** [`synth`] serves a
//!    generated tree with instant healthy check answers (and, in one extra
//!    run over 10,000 objects, answers held 20 ms), to measure steward's
//!    own cost at a scale no real grid reaches here; one run is profiled
//!    with `perf record` when `perf` is installed. Tahoe's
//!    `start-deep-check` polling API keeps every check result in the
//!    gateway until the handle expires: its memory growth per object is
//!    measured on the real grid (on a third gateway, untouched by the other
//!    runs, after a warm-up operation) and extrapolated to 1,000,000.
//!
//! The real grid and its tree are built once (uploads from 16 threads
//! spread over two gateways, one request per directory: about 3 minutes
//! for 10,000 objects on 2 cores) in `target/bench-grid` and kept: a later
//! run with the same plan reopens that grid ([`steward_testgrid::Grid::open`])
//! and reuses the tree; `--fresh` builds again. The report says which.
//!
//! Targets are reported as met or not met; nothing here is tuned to them.

mod machine;
mod measure;
mod proxy;
mod report;
mod synth;
mod tree;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use measure::{Out, Procs, Sample};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use steward_testgrid::{Grid, GridConfig};

/// Benchmarks steward against Tahoe-LAFS's own tools and writes BENCHMARKS.md.
#[derive(Parser, Debug, Clone)]
#[command(version)]
struct Args {
    /// Small tree, single runs, 100,000 synthetic objects: a smoke run in
    /// under 3 minutes (the figures are noisier).
    #[arg(long)]
    quick: bool,
    /// Objects in the real grid's tree [default: 10000, --quick 1000].
    #[arg(long)]
    objects: Option<u64>,
    /// Round-trip times to add between gateways and storage servers, in ms.
    #[arg(long = "rtt-ms", value_delimiter = ',', default_value = "20,100")]
    rtt_ms: Vec<u64>,
    /// Runs of each measurement (median reported) [default: 3, --quick 1].
    #[arg(long)]
    runs: Option<usize>,
    /// Objects in the synthetic gateway's big tree [default: 1000000,
    /// --quick 100000]. A 10,000-object synthetic tree is measured as well.
    #[arg(long = "synthetic-objects")]
    synthetic_objects: Option<u64>,
    /// Runs at the big synthetic size [default: 1].
    #[arg(long = "synthetic-runs", default_value_t = 1)]
    synthetic_runs: usize,
    /// Delay of every answer of the synthetic gateway in the extra
    /// "slow answers" run over 10,000 objects, in ms (0: no such run).
    #[arg(long = "synthetic-delay-ms", default_value_t = 20)]
    synthetic_delay_ms: u64,
    /// Where to write the report [default: BENCHMARKS.md at the workspace
    /// root; with --quick, target/BENCHMARKS.quick.md].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use this steward binary instead of building target/release/steward.
    #[arg(long)]
    steward: Option<PathBuf>,
    /// Only these sections (loopback, slow, synthetic); for development.
    /// The report says which were skipped.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only serve a synthetic tree of this many objects (answers delayed
    /// by `--synthetic-delay-ms`), print its URL and root cap, and wait for
    /// end of input: for profiling steward by hand. Measures nothing.
    #[arg(long = "serve-synthetic", value_name = "OBJECTS")]
    serve_synthetic: Option<u64>,
    /// Where the real grid and its tree are kept between runs [default:
    /// target/bench-grid, with --quick target/bench-grid-quick]. A later run with the same tree size reopens the
    /// grid there instead of building the tree again.
    #[arg(long = "grid-dir")]
    grid_dir: Option<PathBuf>,
    /// Build the grid and tree afresh even if a kept one fits.
    #[arg(long)]
    fresh: bool,
}

impl Args {
    fn objects(&self) -> u64 {
        self.objects
            .unwrap_or(if self.quick { 1000 } else { 10_000 })
    }
    fn runs(&self) -> usize {
        self.runs.unwrap_or(if self.quick { 1 } else { 3 }).max(1)
    }
    fn synthetic_objects(&self) -> u64 {
        self.synthetic_objects
            .unwrap_or(if self.quick { 100_000 } else { 1_000_000 })
    }
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// Which tool a measured command is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Tahoe,
    Steward,
}

/// Where a group of measurements ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Loopback,
    Slow { rtt_ms: u64 },
    Synthetic,
}

/// One command measured `runs` times within a group.
#[derive(Debug)]
pub struct Entry {
    pub label: String,
    pub tool: Tool,
    /// Gateways the tool was given.
    pub gateways: usize,
    pub samples: Vec<Sample>,
    pub error: Option<String>,
    /// Objects the tool itself reported (per run), when it says.
    pub seen: Vec<Option<u64>>,
    /// What a post-run check found (last run).
    pub note: Option<String>,
    /// Runs killed because steward stopped making progress.
    pub stalls: Vec<String>,
}

impl Entry {
    pub fn median(&self) -> Option<&Sample> {
        (!self.samples.is_empty()).then(|| measure::median_sample(&self.samples))
    }
    pub fn median_wall(&self) -> Option<f64> {
        (!self.samples.is_empty())
            .then(|| measure::median(&self.samples.iter().map(|s| s.wall).collect::<Vec<_>>()))
    }
}

/// Interleaved runs of several commands over the same objects.
#[derive(Debug)]
pub struct Group {
    pub section: Section,
    pub title: String,
    /// What was walked (part of the tree, synthetic size).
    pub scope: String,
    pub objects: u64,
    pub entries: Vec<Entry>,
}

impl Group {
    pub fn entry(&self, label: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.label == label)
    }
}

/// Memory that Tahoe's `start-deep-check` result table takes in a gateway.
#[derive(Debug, Default)]
pub struct PollingApi {
    pub warm_objects: u64,
    pub objects: u64,
    pub reported: u64,
    pub wall: f64,
    pub gateway_cpu: f64,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub rss_released_kb: u64,
    pub error: Option<String>,
}

/// Everything the report is made of.
#[derive(Debug, Default)]
pub struct Results {
    pub machine: machine::Machine,
    pub command: String,
    pub quick: bool,
    pub runs: usize,
    pub synthetic_runs: usize,
    /// The measurements (after building steward).
    pub elapsed: Duration,
    /// `cargo build --release -p steward` at the start.
    pub build_steward_secs: f64,
    /// Building the tree on the real grid (this run, or the run that built
    /// a reused tree).
    pub build_secs: f64,
    /// When the tree was reused from an earlier run: when that run built it.
    pub tree_reused_from: Option<String>,
    pub tree: Option<tree::Counts>,
    pub parts: Vec<(String, tree::Counts)>,
    pub groups: Vec<Group>,
    pub polling: Option<PollingApi>,
    pub native: Option<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
    pub slow_verified: Vec<String>,
    pub profile: Option<Profile>,
}

/// A flat `perf` profile of one steward run.
#[derive(Debug, Default)]
pub struct Profile {
    pub what: String,
    /// (percent of samples, shared object)
    pub dso: Vec<(f64, String)>,
    /// (percent of samples, symbol)
    pub symbols: Vec<(f64, String)>,
    pub error: Option<String>,
}

/// Runs `cmd` under `perf record` and summarizes where its CPU went.
fn perf_profile(ctx: &Ctx, what: &str, args: &[&str]) -> Profile {
    let mut p = Profile {
        what: what.to_string(),
        ..Default::default()
    };
    let r = (|| -> Result<()> {
        let data = ctx.logs.join("perf.data");
        let st = Command::new("perf")
            .args(["record", "-F", "2000", "-q", "-o"])
            .arg(&data)
            .arg("--")
            .arg(&ctx.steward)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running perf (not installed?)")?;
        if !st.success() {
            bail!("perf record exited with {st}");
        }
        let report = |sort: &str| -> Result<Vec<(f64, String)>> {
            let out = Command::new("perf")
                .args([
                    "report",
                    "--stdio",
                    "-q",
                    "--no-children",
                    "--sort",
                    sort,
                    "-i",
                ])
                .arg(&data)
                .output()?;
            Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let l = l.trim();
                    let (pct, rest) = l.split_once('%')?;
                    let pct: f64 = pct.trim().parse().ok()?;
                    let name = rest
                        .trim()
                        .trim_end_matches(['-', ' '])
                        .trim_start_matches("[.]")
                        .trim_start_matches("[k]")
                        .trim();
                    let name = if name == "[kernel.kallsyms]" {
                        "kernel"
                    } else {
                        name
                    };
                    Some((pct, name.split_whitespace().collect::<Vec<_>>().join(" ")))
                })
                .collect())
        };
        p.dso = report("dso")?;
        p.symbols = report("symbol")?.into_iter().take(15).collect();
        if p.dso.is_empty() {
            bail!("perf report gave nothing");
        }
        Ok(())
    })();
    if let Err(e) = r {
        p.error = Some(format!("{e:#}"));
    }
    p
}

struct Ctx {
    steward: PathBuf,
    logs: PathBuf,
    runs: usize,
    timeout: Duration,
}

type CmdFn<'a> = Box<dyn Fn() -> Command + 'a>;
type PrepFn<'a> = Box<dyn Fn() -> Result<()> + 'a>;
type PostFn<'a> = Box<dyn Fn(&Sample) -> Result<String> + 'a>;

/// How a job's object count is read back.
#[derive(Clone, Copy)]
enum Seen {
    /// "N objects checked" on standard output.
    Checked,
    /// Lines on standard output (manifests).
    Lines,
}

struct Job<'a> {
    label: String,
    tool: Tool,
    gateways: usize,
    cmd: CmdFn<'a>,
    prep: Option<PrepFn<'a>>,
    post: Option<PostFn<'a>>,
    out: Out,
    seen: Seen,
}

impl<'a> Job<'a> {
    fn new(label: &str, tool: Tool, gateways: usize, cmd: impl Fn() -> Command + 'a) -> Self {
        Job {
            label: label.to_string(),
            tool,
            gateways,
            cmd: Box::new(cmd),
            prep: None,
            post: None,
            out: Out::Capture,
            seen: Seen::Checked,
        }
    }
    fn lines(mut self) -> Self {
        self.out = Out::CountLines;
        self.seen = Seen::Lines;
        self
    }
    fn prep(mut self, f: impl Fn() -> Result<()> + 'a) -> Self {
        self.prep = Some(Box::new(f));
        self
    }
    fn post(mut self, f: impl Fn(&Sample) -> Result<String> + 'a) -> Self {
        self.post = Some(Box::new(f));
        self
    }
}

/// A steward run that prints nothing for this long is stuck.
const STALL: Duration = Duration::from_secs(60);

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Runs `jobs` interleaved, `runs` times each.
#[allow(clippy::too_many_arguments)]
fn run_group(
    ctx: &Ctx,
    procs: &Procs,
    section: Section,
    title: &str,
    scope: &str,
    objects: u64,
    runs: usize,
    jobs: Vec<Job>,
) -> Group {
    let tag = match section {
        Section::Loopback => format!("loopback {title}"),
        Section::Slow { rtt_ms } => format!("RTT {rtt_ms} ms {title}"),
        Section::Synthetic => format!("synthetic {title}"),
    };
    eprintln!("== {tag}: {objects} objects ({scope}), {runs} run(s) each ==");
    let mut entries: Vec<Entry> = jobs
        .iter()
        .map(|j| Entry {
            label: j.label.clone(),
            tool: j.tool,
            gateways: j.gateways,
            samples: Vec::new(),
            error: None,
            seen: Vec::new(),
            note: None,
            stalls: Vec::new(),
        })
        .collect();
    for r in 0..runs {
        for (job, e) in jobs.iter().zip(entries.iter_mut()) {
            // A steward run that stalls is killed and tried once more (the
            // stall is reported); any other failure ends this entry.
            for attempt in 0..2 {
                if e.error.is_some() {
                    break;
                }
                if let Some(p) = &job.prep {
                    if let Err(err) = p() {
                        eprintln!("  {}: preparing failed: {err:#}", job.label);
                        e.error = Some(format!("preparing: {err:#}"));
                        break;
                    }
                }
                let log = ctx.logs.join(format!(
                    "{}--{}--{r}{}.stderr",
                    slug(&tag),
                    slug(&job.label),
                    if attempt > 0 { "-retry" } else { "" }
                ));
                // steward prints as it goes (a line per 100 objects checked,
                // a unit per object listed): one that prints nothing for a
                // minute is stuck. Tahoe's CLI prints at the end only.
                let limits = measure::Limits {
                    timeout: match section {
                        Section::Synthetic => {
                            Duration::from_secs(120) + Duration::from_millis(objects / 2)
                        }
                        _ => ctx.timeout,
                    },
                    stall: (job.tool == Tool::Steward).then_some(STALL),
                };
                match measure::run(&mut (job.cmd)(), procs, &log, limits, &[1], job.out) {
                    Ok(s) => {
                        let seen = match job.seen {
                            Seen::Checked => measure::objects_checked(&s.stdout),
                            Seen::Lines => Some(s.stdout_lines),
                        };
                        if let Some(p) = &job.post {
                            match p(&s) {
                                Ok(n) => e.note = Some(n),
                                Err(err) => {
                                    e.note = Some(format!("post-run check failed: {err:#}"))
                                }
                            }
                        }
                        eprintln!(
                            "  run {}/{runs} {}: {:.2} s, {:.1} objects/s, client CPU {:.2} s, peak RSS {:.1} MB, gateways CPU {:.2} s, storage CPU {:.2} s{}{}",
                            r + 1,
                            job.label,
                            s.wall,
                            objects as f64 / s.wall,
                            s.cpu,
                            s.maxrss_kb as f64 / 1024.0,
                            s.gateways_cpu(),
                            s.storage_cpu(),
                            seen.map(|n| format!(", saw {n} objects")).unwrap_or_default(),
                            e.note.as_ref().map(|n| format!(", {n}")).unwrap_or_default(),
                        );
                        e.seen.push(seen);
                        e.samples.push(s);
                        break;
                    }
                    Err(err) => {
                        let msg = format!("{err:#}");
                        eprintln!("  {} failed: {msg}", job.label);
                        if msg.contains("(stalled)") {
                            e.stalls
                                .push(format!("run {}: {}", r + 1, first_line(&msg)));
                            if attempt == 0 {
                                eprintln!("  trying that run once more");
                                continue;
                            }
                        }
                        e.error = Some(msg);
                    }
                }
            }
        }
    }
    Group {
        section,
        title: title.to_string(),
        scope: scope.to_string(),
        objects,
        entries,
    }
}

/// Sizes of the tree's parts.
struct Parts {
    dc: u64,
    verify: u64,
    repair: u64,
    rtt: Vec<(u64, u64)>,
    rest: u64,
}

impl Parts {
    /// Names the plan (and the builder's format): a kept tree is reused
    /// only by a run that would build the same one.
    fn key(&self, n: u64, quick: bool) -> String {
        let rtt: Vec<String> = self
            .rtt
            .iter()
            .map(|(r, s)| format!("rtt{r}={s}"))
            .collect();
        format!(
            "format {TREE_FORMAT}: {n} objects{}, dc={} verify={} repair={} {} rest={}",
            if quick { " (quick)" } else { "" },
            self.dc,
            self.verify,
            self.repair,
            rtt.join(" "),
            self.rest
        )
    }

    fn plan(n: u64, quick: bool, rtts: &[u64]) -> Parts {
        let f = |frac: f64, min: u64| ((n as f64 * frac).round() as u64).max(min);
        let (dc, verify, repair) = if quick {
            (f(0.2, 100), f(0.05, 30), f(0.05, 30))
        } else {
            (f(0.12, 100), f(0.03, 30), f(0.04, 30))
        };
        // Fewer objects at longer RTTs, so that Tahoe's one-at-a-time walk
        // finishes: 5% of the tree at 20 ms (15% with --quick), scaled by
        // sqrt(20 / RTT).
        let base = if quick { 0.15 } else { 0.05 };
        let rtt: Vec<(u64, u64)> = rtts
            .iter()
            .filter(|&&r| r > 0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|&r| {
                let scale = (20.0 / r as f64).sqrt().min(1.0);
                (r, f(base * scale, 30))
            })
            .collect();
        let used = 1 + dc + verify + repair + rtt.iter().map(|(_, s)| s).sum::<u64>();
        Parts {
            dc,
            verify,
            repair,
            rtt,
            rest: n.saturating_sub(used),
        }
    }
}

/// The loopback grid's tree: root write cap and its parts. Saved next to
/// the grid ([`TREE_FILE`]) so that a later run can reuse both.
#[derive(serde::Serialize, serde::Deserialize)]
struct BuiltTree {
    /// [`Parts::key`] of the plan it was built to.
    plan: String,
    /// When and how fast it was built.
    built_at: String,
    build_secs: f64,
    /// Set when read back by a later run (not saved).
    #[serde(skip)]
    reused_from: Option<String>,
    root: String,
    parts: NamedParts,
    total: tree::Counts,
}

/// The parts of a built tree, by name.
type NamedParts = Vec<(String, tree::Built)>;

/// The saved [`BuiltTree`], in the grid directory.
const TREE_FILE: &str = "bench-tree.json";
/// Bump when the tree builder changes what a plan produces.
const TREE_FORMAT: u32 = 1;

/// The grid and its built tree: reopened from `dir` when a kept grid there
/// holds a tree of the same plan, else built afresh in `dir` (a few
/// minutes) and saved for the next run.
///
/// A reused tree is in the state the last run left it: the `repair/`
/// damage is redone before each repair run anyway, leases only get renewed,
/// and nothing else writes to the tree.
fn grid_and_tree(dir: &Path, parts: &Parts, plan: &str, fresh: bool) -> Result<(Grid, BuiltTree)> {
    let config = || GridConfig {
        gateways: 3,
        base_dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    if !fresh && Grid::is_reusable(dir) {
        let reuse = (|| -> Result<(Grid, BuiltTree)> {
            if !Grid::recorded_shape(dir)?.matches(&config()) {
                bail!("its grid has another shape");
            }
            let text = fs::read_to_string(dir.join(TREE_FILE))
                .with_context(|| format!("no finished tree ({TREE_FILE})"))?;
            let mut tree: BuiltTree = serde_json::from_str(&text)?;
            if tree.plan != plan {
                bail!("its tree was built to another plan ({})", tree.plan);
            }
            eprintln!("== reopening the kept grid in {} ==", dir.display());
            let t = Instant::now();
            let grid = Grid::open(dir, Default::default())?;
            eprintln!(
                "  grid up in {:.1?}; reusing its tree, built {} in {:.0} s",
                t.elapsed(),
                tree.built_at,
                tree.build_secs
            );
            tree.reused_from = Some(tree.built_at.clone());
            Ok((grid, tree))
        })();
        match reuse {
            Ok(r) => return Ok(r),
            Err(e) => eprintln!("  not reusing {}: {e:#}; building afresh", dir.display()),
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    eprintln!(
        "== starting a grid in {}: 5 storage nodes, 3 gateways ==",
        dir.display()
    );
    let t = Instant::now();
    let grid = Grid::start(config())?;
    eprintln!("  grid up in {:.1?}", t.elapsed());
    eprintln!("== building the tree ({plan}) ==");
    let t = Instant::now();
    let (root, built, total) = build_tree(&grid, parts)?;
    let tree = BuiltTree {
        plan: plan.to_string(),
        built_at: machine::utc_now(),
        build_secs: t.elapsed().as_secs_f64(),
        reused_from: None,
        root,
        parts: built,
        total,
    };
    eprintln!("  {} in {:.0} s", total.describe(), tree.build_secs);
    let tmp = dir.join(format!("{TREE_FILE}.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(&tree)?)?;
    fs::rename(&tmp, dir.join(TREE_FILE))?;
    Ok((grid, tree))
}

impl BuiltTree {
    fn part(&self, name: &str) -> &tree::Built {
        &self
            .parts
            .iter()
            .find(|(n, _)| n == name)
            .expect("part exists")
            .1
    }
}

fn build_tree(grid: &Grid, parts: &Parts) -> Result<(String, NamedParts, tree::Counts)> {
    let mut specs: Vec<(String, u64)> = vec![
        ("dc".into(), parts.dc),
        ("verify".into(), parts.verify),
        ("repair".into(), parts.repair),
    ];
    for (r, s) in &parts.rtt {
        specs.push((format!("rtt{r}"), *s));
    }
    if parts.rest > 0 {
        specs.push(("rest".into(), parts.rest));
    }
    let mut built = Vec::new();
    let mut total = tree::Counts {
        dirs: 1,
        ..Default::default()
    };
    for (name, n) in specs {
        let b = tree::build(grid, &name, n)?;
        total.add(&b.counts);
        built.push((name, b));
    }
    let children: Vec<(String, String)> = built
        .iter()
        .map(|(n, b)| (n.clone(), b.cap.clone()))
        .collect();
    let root = tree::Builder::new(grid)?.mkdir(&children, false)?;
    Ok((root, built, total))
}

/// Share numbers each damaged object keeps: fewer than N (unhealthy), at
/// least k (recoverable).
const KEEP_SHARES: usize = 3;

/// Leaves [`KEEP_SHARES`] distinct share numbers of each damaged object,
/// one file each ([`Grid::keep_share_numbers`]: counting files instead
/// could keep copies of one number that Tahoe's repairer spread, and leave
/// the object unrecoverable), so each run starts from the same damage.
fn damage(grid: &Grid, sis: &[String]) -> Result<()> {
    for si in sis {
        grid.keep_share_numbers(si, KEEP_SHARES)
            .with_context(|| format!("damaging {si}: the tree is already damaged"))?;
    }
    Ok(())
}

/// How many damaged objects have all 5 share numbers again.
fn repaired(grid: &Grid, sis: &[String]) -> String {
    let whole = sis
        .iter()
        .filter(|si| {
            grid.shares(si)
                .iter()
                .map(|s| s.shnum)
                .collect::<BTreeSet<_>>()
                .len()
                >= grid.encoding().2 as usize
        })
        .count();
    format!("{whole}/{} damaged objects back to 5 shares", sis.len())
}

fn steward_cmd(ctx: &Ctx, args: &[&str]) -> Command {
    let mut c = Command::new(&ctx.steward);
    c.args(args);
    c
}

fn has_fixed_jobs(ctx: &Ctx) -> bool {
    Command::new(&ctx.steward)
        .args(["deep-check", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--fixed-jobs"))
        .unwrap_or(false)
}

fn has_native(ctx: &Ctx) -> bool {
    Command::new(&ctx.steward)
        .args(["check", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--backend"))
        .unwrap_or(false)
}

/// `steward deep-check --backend native`: listings through `gateway`,
/// checks straight to the storage servers found in `node_dir`.
fn native_deep_check<'a>(
    ctx: &'a Ctx,
    gateway: &'a str,
    node_dir: PathBuf,
    cap: &'a str,
) -> Job<'a> {
    Job::new(
        "steward deep-check --backend native",
        Tool::Steward,
        1,
        move || {
            let mut c = steward_cmd(
                ctx,
                &[
                    "deep-check",
                    "-q",
                    "--backend",
                    "native",
                    "--gateway",
                    gateway,
                    "-d",
                ],
            );
            c.arg(&node_dir).arg(cap);
            c
        },
    )
}

/// Writes a manifest of `cap` with `caps` (read|verify) caps to `path`.
fn make_manifest(ctx: &Ctx, gateway: &str, cap: &str, caps: &str, path: &Path) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut ck = path.as_os_str().to_owned();
    ck.push(".steward-ckpt");
    let _ = fs::remove_file(PathBuf::from(ck));
    let out = steward_cmd(
        ctx,
        &["manifest", "-q", "--caps", caps, "--gateway", gateway, "-o"],
    )
    .arg(path)
    .arg(cap)
    .output()?;
    if !out.status.success() {
        bail!(
            "steward manifest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn loopback_and_slow(args: &Args, ctx: &Ctx, res: &mut Results) -> Result<()> {
    let n = args.objects();
    let parts = Parts::plan(n, args.quick, &args.rtt_ms);
    let dir = args.grid_dir.clone().unwrap_or_else(|| {
        workspace_root().join("target").join(if args.quick {
            "bench-grid-quick"
        } else {
            "bench-grid"
        })
    });
    let (mut grid, built) = grid_and_tree(&dir, &parts, &parts.key(n, args.quick), args.fresh)?;
    res.build_secs = built.build_secs;
    res.tree_reused_from = built.reused_from.clone();
    let procs = Procs::of(&grid)?;
    let gws = grid.gateway_urls();
    let gw0 = gws[0].clone();
    let gw01 = format!("{},{}", gws[0], gws[1]);
    res.tree = Some(built.total);
    res.parts = built
        .parts
        .iter()
        .map(|(n, b)| (n.clone(), b.counts))
        .collect();

    // The damaged files of repair/: every 4th file that has shares.
    let damaged: Vec<String> = built
        .part("repair")
        .files
        .iter()
        .filter(|(k, _)| *k != tree::Kind::Lit)
        .step_by(4)
        .map(|(_, cap)| tree::storage_index(cap).map(|s| s.expect("not LIT")))
        .collect::<Result<_>>()?;

    // The polling API's memory, on the untouched gateway 2.
    if args.wants("loopback") {
        let p = polling_api(
            &grid,
            &procs,
            &built.part("verify").cap,
            built.part("verify").counts.objects(),
            &built.part("dc").cap,
            built.part("dc").counts.objects(),
        );
        if let Some(e) = &p.error {
            res.errors
                .push(format!("start-deep-check measurement: {e}"));
        }
        res.polling = Some(p);
    }

    let runs = ctx.runs;
    let tahoe = |a: &[&str], cap: &str| {
        let mut c = grid.tahoe();
        c.args(a).arg(cap);
        c
    };
    let native = has_native(ctx);
    let fixed_jobs = has_fixed_jobs(ctx);
    res.native = Some(if native {
        "available".into()
    } else {
        "not yet available: `steward check --help` shows no --backend".into()
    });

    if args.wants("loopback") {
        let root = &built.root;
        let all = built.total.objects();
        res.groups.push(run_group(
            ctx,
            &procs,
            Section::Loopback,
            "manifest",
            "whole tree",
            all,
            runs,
            vec![
                Job::new("tahoe manifest", Tool::Tahoe, 1, || {
                    tahoe(&["manifest"], root)
                })
                .lines(),
                Job::new("steward manifest", Tool::Steward, 1, || {
                    steward_cmd(ctx, &["manifest", "-q", "--gateway", &gw0, root])
                })
                .lines(),
            ],
        ));

        let dc = built.part("dc");
        let dcn = dc.counts.objects();
        let read_manifest = ctx.logs.join("dc.read.manifest");
        let verify_manifest = ctx.logs.join("dc.verify.manifest");
        let mut jobs = vec![
            Job::new("tahoe deep-check", Tool::Tahoe, 1, || {
                tahoe(&["deep-check"], &dc.cap)
            }),
            Job::new("steward deep-check", Tool::Steward, 1, || {
                steward_cmd(ctx, &["deep-check", "-q", "--gateway", &gw0, &dc.cap])
            }),
            Job::new("steward deep-check, 2 gateways", Tool::Steward, 2, || {
                steward_cmd(ctx, &["deep-check", "-q", "--gateway", &gw01, &dc.cap])
            }),
        ];
        if native {
            make_manifest(ctx, &gw0, &dc.cap, "read", &read_manifest)?;
            make_manifest(ctx, &gw0, &dc.cap, "verify", &verify_manifest)?;
            let gwdir = grid.gateway_dir().to_path_buf();
            jobs.push(
                Job::new("steward check (gateway backend)", Tool::Steward, 1, || {
                    let mut c = steward_cmd(ctx, &["check", "-q", "--gateway", &gw0]);
                    c.arg(&read_manifest);
                    c
                })
                .lines(),
            );
            jobs.push(native_deep_check(ctx, &gw0, gwdir.clone(), &dc.cap));
            jobs.push(
                Job::new(
                    "steward check --backend native (verify caps)",
                    Tool::Steward,
                    0,
                    move || {
                        let mut c = steward_cmd(ctx, &["check", "-q", "--backend", "native", "-d"]);
                        c.arg(&gwdir).arg(&verify_manifest);
                        c
                    },
                )
                .lines(),
            );
        }
        res.groups.push(run_group(
            ctx,
            &procs,
            Section::Loopback,
            "deep-check",
            "dc/",
            dcn,
            runs,
            jobs,
        ));

        res.groups.push(run_group(
            ctx,
            &procs,
            Section::Loopback,
            "deep-check --add-lease",
            "dc/",
            dcn,
            runs,
            vec![
                Job::new("tahoe deep-check --add-lease", Tool::Tahoe, 1, || {
                    tahoe(&["deep-check", "--add-lease"], &dc.cap)
                }),
                Job::new("steward deep-check --add-lease", Tool::Steward, 1, || {
                    steward_cmd(
                        ctx,
                        &[
                            "deep-check",
                            "-q",
                            "--add-lease",
                            "--gateway",
                            &gw0,
                            &dc.cap,
                        ],
                    )
                }),
            ],
        ));

        let v = built.part("verify");
        res.groups.push(run_group(
            ctx,
            &procs,
            Section::Loopback,
            "deep-check --verify",
            "verify/",
            v.counts.objects(),
            runs,
            vec![
                Job::new("tahoe deep-check --verify", Tool::Tahoe, 1, || {
                    tahoe(&["deep-check", "--verify"], &v.cap)
                }),
                Job::new("steward deep-check --verify", Tool::Steward, 1, || {
                    steward_cmd(
                        ctx,
                        &["deep-check", "-q", "--verify", "--gateway", &gw0, &v.cap],
                    )
                }),
            ],
        ));

        let rp = built.part("repair");
        let scope = format!(
            "repair/, {} of its {} objects damaged (left with 3 of their 5 share numbers, one copy each) before each run",
            damaged.len(),
            rp.counts.objects()
        );
        res.groups.push(run_group(
            ctx,
            &procs,
            Section::Loopback,
            "deep-check --repair",
            &scope,
            rp.counts.objects(),
            runs,
            vec![
                Job::new("tahoe deep-check --repair", Tool::Tahoe, 1, || {
                    tahoe(&["deep-check", "--repair"], &rp.cap)
                })
                .prep(|| damage(&grid, &damaged))
                .post(|_| Ok(repaired(&grid, &damaged))),
                Job::new("steward deep-check --repair", Tool::Steward, 1, || {
                    steward_cmd(
                        ctx,
                        &["deep-check", "-q", "--repair", "--gateway", &gw0, &rp.cap],
                    )
                })
                .prep(|| damage(&grid, &damaged))
                .post(|_| Ok(repaired(&grid, &damaged))),
            ],
        ));
    } else {
        res.skipped.push("loopback".into());
    }

    if args.wants("slow") && !parts.rtt.is_empty() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("delay-proxy")
            .enable_all()
            .build()?;
        let delay = proxy::Delay::default();
        let proxy_ports = go_slow(&grid, &procs, rt.handle(), &delay)?;
        // The storage nodes were restarted: new pids.
        let procs = Procs::of(&grid)?;
        res.slow_verified.push(format!(
            "all {} gateways' connections to the {} storage servers go through the proxies (checked from /proc/<pid>/net/tcp): {}",
            grid.gateway_urls().len(),
            grid.storage_nodes(),
            proxy_ports
        ));
        for &(rtt, _) in &parts.rtt {
            delay.set_rtt(Duration::from_millis(rtt));
            let p = built.part(&format!("rtt{rtt}"));
            let mut jobs = vec![
                Job::new("tahoe deep-check", Tool::Tahoe, 1, || {
                    tahoe(&["deep-check"], &p.cap)
                }),
                Job::new("steward deep-check", Tool::Steward, 1, || {
                    steward_cmd(ctx, &["deep-check", "-q", "--gateway", &gw0, &p.cap])
                }),
                Job::new("steward deep-check, 2 gateways", Tool::Steward, 2, || {
                    steward_cmd(ctx, &["deep-check", "-q", "--gateway", &gw01, &p.cap])
                }),
            ];
            if fixed_jobs {
                // Diagnostic: is the adaptive number of requests in flight
                // what limits steward here?
                jobs.push(Job::new(
                    "steward deep-check --fixed-jobs (diagnostic)",
                    Tool::Steward,
                    1,
                    || {
                        steward_cmd(
                            ctx,
                            &[
                                "deep-check",
                                "-q",
                                "--fixed-jobs",
                                "--gateway",
                                &gw0,
                                &p.cap,
                            ],
                        )
                    },
                ));
            }
            if native {
                let vm = ctx.logs.join(format!("rtt{rtt}.verify.manifest"));
                make_manifest(ctx, &gw0, &p.cap, "verify", &vm)?;
                let gwdir = grid.gateway_dir().to_path_buf();
                let vm = vm.clone();
                jobs.push(native_deep_check(ctx, &gw0, gwdir.clone(), &p.cap));
                jobs.push(
                    Job::new(
                        "steward check --backend native (verify caps)",
                        Tool::Steward,
                        0,
                        move || {
                            let mut c =
                                steward_cmd(ctx, &["check", "-q", "--backend", "native", "-d"]);
                            c.arg(&gwdir).arg(&vm);
                            c
                        },
                    )
                    .lines(),
                );
            }
            // How many connections each run opened to the storage servers
            // (through the proxies): Tahoe's gateway keeps 10 idle HTTPS
            // connections per server and opens a new one (TCP + TLS, about
            // three round trips) for every request beyond those in flight.
            let seen = std::cell::Cell::new(0usize);
            let jobs = jobs
                .into_iter()
                .map(|j| {
                    let seen = &seen;
                    let delay = &delay;
                    j.prep(move || {
                        seen.set(delay.accepted());
                        Ok(())
                    })
                    .post(move |_| {
                        let made = delay.accepted() - seen.get();
                        Ok(format!("{made} connections opened to the storage servers"))
                    })
                })
                .collect();
            res.groups.push(run_group(
                ctx,
                &procs,
                Section::Slow { rtt_ms: rtt },
                "deep-check",
                &format!("rtt{rtt}/"),
                p.counts.objects(),
                runs,
                jobs,
            ));
        }
        grid.stop();
        drop(rt);
    } else {
        res.skipped.push("slow network".into());
    }
    grid.stop();
    Ok(())
}

/// Restarts every storage node advertising a delaying proxy as its
/// location, and waits until every gateway reaches every server through
/// its proxy only.
fn go_slow(
    grid: &Grid,
    procs: &Procs,
    rt: &tokio::runtime::Handle,
    delay: &proxy::Delay,
) -> Result<String> {
    eprintln!("== slow network: restarting the storage nodes behind delaying proxies ==");
    let mut pairs = Vec::new();
    for i in 0..grid.storage_nodes() {
        let real = grid.storage_port(i);
        let pport = proxy::start(rt, real, delay.clone())?;
        pairs.push((real, pport));
        grid.relocate_storage_node(i, &format!("tcp:127.0.0.1:{pport}"))?;
    }
    // The gateways learn the new locations from the introducer; wait until
    // none of their sockets goes straight to a storage server.
    let real: BTreeSet<u16> = pairs.iter().map(|p| p.0).collect();
    let proxied: BTreeSet<u16> = pairs.iter().map(|p| p.1).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut ok = true;
        let mut why = String::new();
        for g in 0..grid.gateway_urls().len() {
            let pid = procs.gateway(g).ok_or_else(|| anyhow!("no gateway {g}"))?;
            let remote = remote_ports(pid);
            let direct = remote.iter().filter(|p| real.contains(p)).count();
            let via: BTreeSet<u16> = remote
                .iter()
                .filter(|p| proxied.contains(p))
                .copied()
                .collect();
            if direct > 0 || via.len() < proxied.len() {
                ok = false;
                why = format!(
                    "gateway {g}: {direct} direct connections, {} of {} proxies used",
                    via.len(),
                    proxied.len()
                );
            }
        }
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("gateways did not switch to the proxies: {why}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    grid.wait_connected(Duration::from_secs(60))?;
    Ok(format!(
        "proxy port -> server port {}; {} connections accepted by the proxies so far",
        pairs
            .iter()
            .map(|(r, p)| format!("{p}->{r}"))
            .collect::<Vec<_>>()
            .join(", "),
        delay.accepted()
    ))
}

/// Remote ports of the established TCP connections of process `pid`.
fn remote_ports(pid: u32) -> Vec<u16> {
    let mut inodes = BTreeSet::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                let t = t.to_string_lossy();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local rem st ... inode is field 9.
            if f.len() > 9 && f[3] == "01" && inodes.contains(f[9]) {
                if let Some(port) = f[2]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    out.push(port);
                }
            }
        }
    }
    out
}

/// Runs `t=start-deep-check` on gateway 2: a warm-up operation on
/// `warm_cap`, then the measured one on `cap`, both retained (as a client
/// that has not collected them yet), and reads the gateway's VmRSS around
/// the second.
fn polling_api(
    grid: &Grid,
    procs: &Procs,
    warm_cap: &str,
    warm_objects: u64,
    cap: &str,
    objects: u64,
) -> PollingApi {
    let mut p = PollingApi {
        warm_objects,
        objects,
        ..Default::default()
    };
    eprintln!("== Tahoe's start-deep-check polling API on gateway 2: memory per object ==");
    let r = (|| -> Result<()> {
        let gw = grid
            .gateway_urls()
            .get(2)
            .cloned()
            .ok_or_else(|| anyhow!("no gateway 2"))?;
        let pid = procs
            .gateway(2)
            .ok_or_else(|| anyhow!("no gateway 2 pid"))?;
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        let op = |handle: &str, cap: &str| -> Result<u64> {
            let r = http
                .post(format!(
                    "{gw}uri/{cap}?t=start-deep-check&ophandle={handle}&output=JSON"
                ))
                .send()?;
            if !(r.status().is_success() || r.status().is_redirection()) {
                bail!("start-deep-check: HTTP {}", r.status());
            }
            let deadline = Instant::now() + Duration::from_secs(3600);
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let v: serde_json::Value = http
                    .get(format!("{gw}operations/{handle}?output=JSON"))
                    .send()?
                    .error_for_status()?
                    .json()?;
                if v["finished"].as_bool() == Some(true) {
                    return v["count-objects-checked"]
                        .as_u64()
                        .context("no count-objects-checked");
                }
                if Instant::now() > deadline {
                    bail!("start-deep-check did not finish");
                }
            }
        };
        op("bench-warm", warm_cap)?;
        std::thread::sleep(Duration::from_secs(1));
        p.rss_before_kb = measure::proc_status_kb(pid, "VmRSS").unwrap_or(0);
        let cpu0 = measure::proc_cpu_secs(pid).unwrap_or(0.0);
        let t = Instant::now();
        p.reported = op("bench-main", cap)?;
        p.wall = t.elapsed().as_secs_f64();
        p.gateway_cpu = measure::proc_cpu_secs(pid).unwrap_or(0.0) - cpu0;
        std::thread::sleep(Duration::from_secs(1));
        p.rss_after_kb = measure::proc_status_kb(pid, "VmRSS").unwrap_or(0);
        for h in ["bench-warm", "bench-main"] {
            let _ = http
                .get(format!("{gw}operations/{h}?output=JSON&retain-for=0"))
                .send();
        }
        std::thread::sleep(Duration::from_secs(2));
        p.rss_released_kb = measure::proc_status_kb(pid, "VmRSS").unwrap_or(0);
        eprintln!(
            "  {} objects in {:.1} s; gateway VmRSS {:.1} -> {:.1} MB ({:.2} KB per object)",
            p.reported,
            p.wall,
            p.rss_before_kb as f64 / 1024.0,
            p.rss_after_kb as f64 / 1024.0,
            (p.rss_after_kb as f64 - p.rss_before_kb as f64) / objects as f64
        );
        Ok(())
    })();
    if let Err(e) = r {
        eprintln!("  failed: {e:#}");
        p.error = Some(format!("{e:#}"));
    }
    p
}

/// `--serve-synthetic`: the synthetic gateway alone, until stdin closes.
fn serve_synthetic(n: u64, delay_ms: u64) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("synthetic-gateway")
        .enable_all()
        .build()?;
    let syn = synth::start(rt.handle(), n, Duration::from_millis(delay_ms))?;
    println!("{} {}", syn.url, syn.root_cap);
    eprintln!(
        "synthetic gateway (no Tahoe code): {} objects, answers delayed {delay_ms} ms; end of input stops it",
        syn.counts.objects()
    );
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}

fn synthetic(args: &Args, ctx: &Ctx, res: &mut Results) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("synthetic-gateway")
        .enable_all()
        .build()?;
    let procs = Procs::default();
    let mut sizes = vec![(10_000u64, ctx.runs, 0u64)];
    if args.synthetic_delay_ms > 0 {
        sizes.push((10_000, ctx.runs, args.synthetic_delay_ms));
    }
    let big = args.synthetic_objects();
    if big != 10_000 {
        sizes.push((big, args.synthetic_runs.max(1), 0));
    }
    for (n, runs, delay_ms) in sizes {
        eprintln!("== synthetic gateway: generating {n} objects ==");
        let syn = synth::start(rt.handle(), n, Duration::from_millis(delay_ms))?;
        let c = syn.counts;
        let before = Mutex::new((0u64, 0u64, 0u64));
        let snap = || {
            *before.lock().expect("lock") = syn.served.snapshot();
            Ok(())
        };
        let check_served = |listings_only: bool| {
            let (l0, c0, _) = *before.lock().expect("lock");
            let (l1, c1, _) = syn.served.snapshot();
            let (l, ch) = (l1 - l0, c1 - c0);
            let want_checks = if listings_only { 0 } else { c.checkable() };
            let ok = l == c.dirs && ch == want_checks;
            format!(
                "served {l} listings and {ch} checks{}",
                if ok {
                    " (one per directory / checkable object)".to_string()
                } else {
                    format!(" (expected {} and {want_checks})", c.dirs)
                }
            )
        };
        let url = syn.url.clone();
        let root = syn.root_cap.clone();
        let g = run_group(
            ctx,
            &procs,
            Section::Synthetic,
            &if delay_ms > 0 {
                format!("{n} objects, answers delayed {delay_ms} ms")
            } else {
                format!("{n} objects")
            },
            &format!(
                "synthetic gateway: {} directories, {} CHK, {} LIT, {} SDMF, {} MDMF{}",
                c.dirs,
                c.chk,
                c.lit,
                c.sdmf,
                c.mdmf,
                if delay_ms > 0 {
                    format!("; every answer held {delay_ms} ms, so that many requests wait at once, as on a slow gateway")
                } else {
                    String::new()
                }
            ),
            c.objects(),
            runs,
            vec![
                Job::new("steward manifest", Tool::Steward, 1, || {
                    steward_cmd(ctx, &["manifest", "-q", "--gateway", &url, &root])
                })
                .lines()
                .prep(snap)
                .post(|_| Ok(check_served(true))),
                Job::new("steward deep-check", Tool::Steward, 1, || {
                    steward_cmd(ctx, &["deep-check", "-q", "--gateway", &url, &root])
                })
                .prep(snap)
                .post(|_| Ok(check_served(false))),
            ],
        );
        res.groups.push(g);
        if n == 10_000 && delay_ms == 0 {
            eprintln!("== perf profile of steward deep-check over the synthetic tree ==");
            res.profile = Some(perf_profile(
                ctx,
                &format!("`steward deep-check` over the {n}-object synthetic tree"),
                &["deep-check", "-q", "--gateway", &url, &root],
            ));
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
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
        return serve_synthetic(n, args.synthetic_delay_ms);
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
    if args.wants("loopback") || args.wants("slow") {
        if let Err(e) = loopback_and_slow(&args, &ctx, &mut res) {
            eprintln!("real-grid benchmarks failed: {e:#}");
            res.errors.push(format!("real grid: {e:#}"));
        }
    } else {
        res.skipped.push("loopback".into());
        res.skipped.push("slow network".into());
    }
    if args.wants("synthetic") {
        if let Err(e) = synthetic(&args, &ctx, &mut res) {
            eprintln!("synthetic benchmarks failed: {e:#}");
            res.errors.push(format!("synthetic gateway: {e:#}"));
        }
    } else {
        res.skipped.push("synthetic gateway".into());
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
