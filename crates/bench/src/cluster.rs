//! Several workers on one PostgreSQL (issue 14): what keeping a dispatch's
//! state in a store costs per object, and how fast 1, 2 and 4 worker
//! processes sharing one database get through the accounts of a real grid.
//!
//! **Store overhead** ([`store_overhead`]): one account over the synthetic
//! gateway's tree (`--synthetic-objects`, 1,000,000 by default), run three
//! ways, interleaved: `steward deep-check` (the same manifest and check,
//! nothing kept: the baseline), `steward dispatch --state DIR` (SQLite job
//! table, the stages' files and checkpoints in DIR) and `steward dispatch
//! --store postgres://...` (job table, stage states and units in the
//! database). Dispatch runs with `repair = false`, so all three do the same
//! requests (checked at the synthetic gateway). The database is a
//! throwaway server of this run's own ([`steward_testpg`], with
//! production durability: `fsync` and synchronous commits on), a fresh
//! database per run. Its CPU is read from `/proc`: the postmaster, its
//! live children, and the children it reaped (`cutime`/`cstime`), before
//! and after ([`pg_cpu_secs`]). Overhead per object = (a store's run -
//! the baseline) / objects, in wall time and in CPU (steward's plus the
//! server's); the bytes each store holds afterwards are reported too.
//!
//! **Workers** ([`workers`]): several accounts, each its own tree on a grid
//! of its own (one gateway), dispatched by 1, 2 and 4 `steward dispatch
//! --store` processes started together on a fresh database, interleaved
//! (1, 2, 4, 1, 2, 4, ...). Each worker takes at most its share of the
//! accounts at once (`--accounts-at-once` = accounts / workers, rounded
//! up), so that the first worker to start does not claim them all; a
//! worker that is done claims what is left. Objects per second = the
//! accounts' objects / the time until a worker logged the last account
//! done (the last worker exits up to one claim poll, 2 s, later: shown
//! apart); the job table is checked afterwards (every account done, every
//! object counted).

use crate::measure::{self, Limits, Out, Procs, Sample};
use crate::run::{steward_cmd, Ctx};
use crate::Args;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use steward_bench::synth;
use steward_testpg::TestPg;

/// One way of running the synthetic account, `runs` times.
#[derive(Debug, Default)]
pub struct StoreRun {
    pub label: String,
    pub samples: Vec<Sample>,
    /// The database server's CPU seconds during each run.
    pub db_cpu: Vec<f64>,
    /// Bytes the store held after each run (state directory, or the
    /// database's size); `None` for the baseline.
    pub bytes: Vec<u64>,
    pub error: Option<String>,
}

impl StoreRun {
    /// The run whose wall time is the median, with its database CPU and
    /// bytes.
    pub fn median(&self) -> Option<(&Sample, f64, Option<u64>)> {
        if self.samples.is_empty() {
            return None;
        }
        let m = measure::median_sample(&self.samples);
        let i = self
            .samples
            .iter()
            .position(|s| std::ptr::eq(s, m))
            .unwrap_or(0);
        Some((
            m,
            self.db_cpu.get(i).copied().unwrap_or(0.0),
            self.bytes.get(i).copied(),
        ))
    }
}

/// One run of `workers` processes over all the accounts.
#[derive(Debug, Clone, Default)]
pub struct WorkerSample {
    /// Seconds from the start until the last account was done (a worker
    /// logged it).
    pub wall: f64,
    /// Until the last worker exited: a worker with nothing left to claim
    /// looks again every 2 s (at the default lease) while others still
    /// hold accounts, so it exits up to that long after the last one.
    pub exit_wall: f64,
    /// User + system CPU of all the workers (`wait4`).
    pub steward_cpu: f64,
    pub db_cpu: f64,
    pub gateway_cpu: f64,
    pub storage_cpu: f64,
    /// Busy fraction of all CPUs of the box (0..1).
    pub box_busy: f64,
    /// Accounts each worker started.
    pub taken: Vec<usize>,
}

/// 1, 2 or 4 workers, `runs` times.
#[derive(Debug, Default)]
pub struct WorkerRun {
    pub workers: usize,
    pub samples: Vec<WorkerSample>,
    pub error: Option<String>,
}

impl WorkerRun {
    pub fn median(&self) -> Option<&WorkerSample> {
        let mut v: Vec<&WorkerSample> = self.samples.iter().collect();
        v.sort_by(|a, b| a.wall.total_cmp(&b.wall));
        v.get(v.len().saturating_sub(1) / 2).copied()
    }
}

/// What the section measured.
#[derive(Debug, Default)]
pub struct ClusterBench {
    /// Objects of the synthetic account.
    pub store_objects: u64,
    pub stores: Vec<StoreRun>,
    pub store_error: Option<String>,
    /// Accounts of the real grid and their objects in all.
    pub accounts: usize,
    pub grid_objects: u64,
    pub build_secs: f64,
    pub workers: Vec<WorkerRun>,
    pub workers_error: Option<String>,
}

/// The labels of the store-overhead runs, the baseline first.
pub const BASELINE: &str = "steward deep-check (nothing kept)";
pub const SQLITE: &str = "steward dispatch --state (SQLite)";
pub const POSTGRES: &str = "steward dispatch --store (PostgreSQL)";

/// Worker counts measured on the real grid.
pub const WORKERS: [usize; 3] = [1, 2, 4];

pub fn cluster_bench(args: &Args, ctx: &Ctx) -> Result<ClusterBench> {
    eprintln!("== cluster: a throwaway PostgreSQL server (durable) ==");
    let pg = TestPg::start_with(steward_testpg::Options { durable: true })?;
    let mut res = ClusterBench::default();
    if let Err(e) = store_overhead(args, ctx, &pg, &mut res) {
        eprintln!("  store overhead failed: {e:#}");
        res.store_error = Some(format!("{e:#}"));
    }
    if let Err(e) = workers(args, ctx, &pg, &mut res) {
        eprintln!("  workers failed: {e:#}");
        res.workers_error = Some(format!("{e:#}"));
    }
    Ok(res)
}

/// utime, stime, cutime and cstime of a process, in seconds, and its
/// parent's pid.
fn proc_times(pid: u32) -> Option<(f64, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), f[1] the parent; utime is field 14.
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let ticks: f64 = f[11..15]
        .iter()
        .map(|x| x.parse::<f64>().unwrap_or(0.0))
        .sum();
    Some((ticks / measure::clk_tck(), ppid))
}

/// CPU seconds a PostgreSQL server has used so far: the postmaster, its
/// live children (backends, checkpointer, WAL writer...) and the children
/// it reaped. The difference of two readings is what the server spent in
/// between, backends that came and went included.
pub fn pg_cpu_secs(postmaster: u32) -> f64 {
    let mut total = proc_times(postmaster).map_or(0.0, |t| t.0);
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((cpu, ppid)) = proc_times(pid) {
                if ppid == postmaster {
                    total += cpu;
                }
            }
        }
    }
    total
}

/// The size of a directory's files, in bytes.
fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => n += dir_bytes(&e.path()),
                Ok(m) => n += m.len(),
                Err(_) => {}
            }
        }
    }
    n
}

/// The database of a URL (its last path segment).
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn drop_database(pg: &TestPg, url: &str) {
    if let Err(e) = pg.psql("postgres", &format!("DROP DATABASE {}", db_name(url))) {
        eprintln!("  (could not drop {}: {e:#})", db_name(url));
    }
}

fn store_overhead(args: &Args, ctx: &Ctx, pg: &TestPg, res: &mut ClusterBench) -> Result<()> {
    let n = args.synthetic_objects();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("synthetic-gateway")
        .enable_all()
        .build()?;
    eprintln!("== cluster: store overhead, synthetic gateway: generating {n} objects ==");
    let syn = synth::start(rt.handle(), n, Duration::ZERO)?;
    let c = syn.counts;
    res.store_objects = c.objects();
    let dir = tempfile::tempdir()?;
    let accounts = dir.path().join("ACCOUNTS.toml");
    fs::write(
        &accounts,
        format!(
            "gateway = \"{}\"\nrepair = false\n[[account]]\nname = \"synthetic\"\nroot = \"{}\"\n",
            syn.url, syn.root_cap
        ),
    )?;
    let accounts = accounts.to_str().context("a UTF-8 temporary path")?;
    let postmaster = pg
        .server_pid()
        .context("the PostgreSQL server is not running")?;
    let mut runs: Vec<StoreRun> = [BASELINE, SQLITE, POSTGRES]
        .iter()
        .map(|l| StoreRun {
            label: l.to_string(),
            ..Default::default()
        })
        .collect();
    let runs_n = args.synthetic_runs.max(1);
    let limits = Limits {
        timeout: ctx.timeout,
        stall: None,
    };
    for r in 0..runs_n {
        for run in runs.iter_mut() {
            if run.error.is_some() {
                continue;
            }
            let state = dir.path().join(format!("state{r}"));
            let url = match run.label.as_str() {
                POSTGRES => Some(pg.fresh_database()?),
                _ => None,
            };
            // An empty database is not 0 bytes (a copy of template1).
            let db_size = |url: &str| -> Result<u64> {
                let out = pg.psql(db_name(url), "SELECT pg_database_size(current_database())")?;
                out.trim()
                    .parse()
                    .with_context(|| format!("pg_database_size: {out:?}"))
            };
            let empty = match &url {
                Some(u) => db_size(u)?,
                None => 0,
            };
            let mut cmd = match run.label.as_str() {
                BASELINE => steward_cmd(ctx, &["deep-check", "-q", "--gateway", &syn.url]),
                SQLITE => {
                    let mut c = steward_cmd(ctx, &["dispatch", accounts, "-q", "--state"]);
                    c.arg(&state);
                    c
                }
                _ => steward_cmd(
                    ctx,
                    &[
                        "dispatch",
                        accounts,
                        "-q",
                        "--store",
                        url.as_deref().unwrap_or(""),
                    ],
                ),
            };
            if run.label == BASELINE {
                cmd.arg(&syn.root_cap);
            }
            let log = ctx.logs.join(format!(
                "cluster-store-{}-{r}.stderr",
                run.label
                    .split_whitespace()
                    .last()
                    .unwrap_or("x")
                    .trim_matches(['(', ')'])
            ));
            let served0 = syn.served.snapshot();
            let db0 = pg_cpu_secs(postmaster);
            let sample = measure::run(&mut cmd, &Procs::default(), &log, limits, &[], Out::Capture);
            let db_cpu = (pg_cpu_secs(postmaster) - db0).max(0.0);
            let served1 = syn.served.snapshot();
            let sample = match sample {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("  {}: {e:#}", run.label);
                    run.error = Some(format!("{e:#}"));
                    continue;
                }
            };
            let (listings, checks) = (served1.0 - served0.0, served1.1 - served0.1);
            if listings != c.dirs || checks != c.checkable() {
                run.error = Some(format!(
                    "served {listings} listings and {checks} checks, expected {} and {}",
                    c.dirs,
                    c.checkable()
                ));
                continue;
            }
            let bytes = match run.label.as_str() {
                SQLITE => Some(dir_bytes(&state)),
                POSTGRES => {
                    let url = url.as_deref().unwrap_or("");
                    let size = db_size(url)?;
                    drop_database(pg, url);
                    Some(size.saturating_sub(empty))
                }
                _ => None,
            };
            let _ = fs::remove_dir_all(&state);
            eprintln!(
                "  run {}/{runs_n} {}: {:.2} s, {:.1} µs/object, steward CPU {:.2} s, PostgreSQL CPU {db_cpu:.2} s, peak RSS {:.1} MB{}",
                r + 1,
                run.label,
                sample.wall,
                sample.wall * 1e6 / res.store_objects as f64,
                sample.cpu,
                sample.maxrss_kb as f64 / 1024.0,
                bytes.map(|b| format!(", {:.0} bytes/object kept", b as f64 / res.store_objects as f64)).unwrap_or_default()
            );
            run.samples.push(sample);
            run.db_cpu.push(db_cpu);
            if let Some(b) = bytes {
                run.bytes.push(b);
            }
        }
    }
    res.stores = runs;
    Ok(())
}

fn workers(args: &Args, ctx: &Ctx, pg: &TestPg, res: &mut ClusterBench) -> Result<()> {
    let (n, lo, hi) = if args.quick {
        (4, 50, 100)
    } else {
        (8, 100, 300)
    };
    let dir = tempfile::tempdir()?;
    eprintln!("== cluster: a grid of its own, {n} accounts of {lo}-{hi} objects ==");
    let (grid, built, build_secs) =
        crate::dispatch::grid_of_accounts(dir.path(), "cluster-bench", n, lo, hi)?;
    let procs = Procs::of(&grid)?;
    let objects: u64 = built.iter().map(|a| a.objects).sum();
    res.build_secs = build_secs;
    res.accounts = n;
    res.grid_objects = objects;
    let toml = crate::dispatch::accounts_toml(&grid.gateway_url(), &built);
    let file = dir.path().join("ACCOUNTS.toml");
    fs::write(&file, toml)?;
    let file = file.to_str().context("a UTF-8 temporary path")?;
    let postmaster = pg
        .server_pid()
        .context("the PostgreSQL server is not running")?;
    res.workers = WORKERS
        .iter()
        .map(|&w| WorkerRun {
            workers: w,
            ..Default::default()
        })
        .collect();
    for r in 0..ctx.runs {
        for run in res.workers.iter_mut() {
            if run.error.is_some() {
                continue;
            }
            let w = run.workers;
            match workers_once(ctx, pg, postmaster, &procs, file, n, objects, w, r) {
                Ok(s) => {
                    eprintln!(
                        "  run {}/{} {w} worker(s): {:.2} s (last exit {:.2} s), {:.1} objects/s, workers' CPU {:.2} s, PostgreSQL CPU {:.2} s, gateway CPU {:.2} s, storage CPU {:.2} s, box {:.0}% busy, accounts started per worker {:?}",
                        r + 1,
                        ctx.runs,
                        s.wall,
                        s.exit_wall,
                        objects as f64 / s.wall,
                        s.steward_cpu,
                        s.db_cpu,
                        s.gateway_cpu,
                        s.storage_cpu,
                        s.box_busy * 100.0,
                        s.taken
                    );
                    run.samples.push(s);
                }
                Err(e) => {
                    eprintln!("  {w} worker(s): {e:#}");
                    run.error = Some(format!("{e:#}"));
                }
            }
        }
    }
    Ok(())
}

/// Copies a worker's standard error to `log` as it comes: the accounts it
/// started, and when it last logged one done.
fn read_worker_log(stderr: impl std::io::Read, log: &mut fs::File) -> (usize, Option<Instant>) {
    use std::io::{BufRead, Write};
    let mut started = 0;
    let mut done = None;
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(|l| l.ok())
    {
        let _ = writeln!(log, "{line}");
        let Some(rest) = line.strip_prefix("steward: dispatch: ") else {
            continue;
        };
        if rest.ends_with(": started") {
            started += 1;
        }
        if rest
            .split_once(": ")
            .is_some_and(|(_, what)| what.starts_with("done"))
        {
            done = Some(Instant::now());
        }
    }
    (started, done)
}

/// `w` workers started together over every account, on a fresh database.
#[allow(clippy::too_many_arguments)]
fn workers_once(
    ctx: &Ctx,
    pg: &TestPg,
    postmaster: u32,
    procs: &Procs,
    accounts: &str,
    n: usize,
    objects: u64,
    w: usize,
    r: usize,
) -> Result<WorkerSample> {
    let url = pg.fresh_database()?;
    let at_once = n.div_ceil(w).to_string();
    let logs: Vec<_> = (0..w)
        .map(|i| ctx.logs.join(format!("cluster-workers{w}-{r}-{i}.stderr")))
        .collect();
    let procs0 = procs.cpu();
    let db0 = pg_cpu_secs(postmaster);
    let box0 = measure::box_ticks();
    let t0 = Instant::now();
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for log in &logs {
        let mut child = steward_cmd(
            ctx,
            &[
                "dispatch",
                accounts,
                "-q",
                "--store",
                &url,
                "--accounts-at-once",
                &at_once,
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a worker")?;
        let stderr = child.stderr.take().context("a worker's stderr")?;
        let mut file = fs::File::create(log)?;
        readers.push(std::thread::spawn(move || {
            read_worker_log(stderr, &mut file)
        }));
        children.push(child);
    }
    let mut cpu = 0.0;
    let mut codes = Vec::new();
    for c in children {
        let pid = c.id();
        let (code, ru) = measure::wait4(pid)?;
        // Reaped: `Child` must not be waited on again.
        std::mem::forget(c);
        let secs = measure::tv(ru.ru_utime) + measure::tv(ru.ru_stime);
        codes.push(code);
        cpu += secs;
    }
    let exit_wall = t0.elapsed().as_secs_f64();
    let mut taken = Vec::new();
    let mut last_done: Option<Instant> = None;
    for r in readers {
        let (started, done) = r.join().unwrap_or_default();
        taken.push(started);
        last_done = last_done.max(done);
    }
    let wall = last_done.map_or(exit_wall, |t| t.duration_since(t0).as_secs_f64());
    let db_cpu = (pg_cpu_secs(postmaster) - db0).max(0.0);
    let box1 = measure::box_ticks();
    let procs1 = procs.cpu();
    let delta = |f: &dyn Fn(measure::Role) -> bool| -> f64 {
        procs0
            .iter()
            .zip(&procs1)
            .filter(|((role, _), _)| f(*role))
            .map(|((_, a), (_, b))| (b - a).max(0.0))
            .sum::<f64>()
            + 0.0
    };
    if codes.iter().any(|&c| c != 0) {
        bail!(
            "workers exited {codes:?} (logs: {})",
            logs[0]
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    // Every account done once, every object counted.
    let out = steward_cmd(ctx, &["dispatch", "status", "--json", "--store", &url])
        .stdin(Stdio::null())
        .output()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("dispatch status: {}", String::from_utf8_lossy(&out.stderr)))?;
    let rows = status["accounts"].as_array().cloned().unwrap_or_default();
    let done = rows.iter().filter(|a| a["stage"] == "done").count();
    let counted: u64 = rows
        .iter()
        .filter_map(|a| a["counts"]["objects"].as_u64())
        .sum();
    if done != n || counted != objects {
        bail!("{done} of {n} accounts done, {counted} of {objects} objects counted");
    }
    drop_database(pg, &url);
    let (busy, total) = (box1.0.saturating_sub(box0.0), box1.1.saturating_sub(box0.1));
    Ok(WorkerSample {
        wall,
        exit_wall,
        steward_cpu: cpu,
        db_cpu,
        gateway_cpu: delta(&|r| matches!(r, measure::Role::Gateway(_))),
        storage_cpu: delta(&|r| matches!(r, measure::Role::Storage(_))),
        box_busy: if total > 0 {
            busy as f64 / total as f64
        } else {
            0.0
        },
        taken,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_cpu_counts_live_and_reaped_children() {
        // This process: its own CPU, at least.
        let me = std::process::id();
        let before = pg_cpu_secs(me);
        // A child that burns CPU and is reaped: it shows in cutime.
        std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        let after = pg_cpu_secs(me);
        assert!(after > before, "{before} -> {after}");
        assert_eq!(db_name("postgres://u@h:1/test3"), "test3");
    }
}
