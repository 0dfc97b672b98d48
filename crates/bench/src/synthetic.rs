//! The synthetic-gateway section: steward's own cost per object at sizes
//! no real grid reaches here ([`synthetic`]), a `perf` profile of one run,
//! and `--serve-synthetic` for profiling by hand ([`serve_synthetic`]).

use crate::measure::Procs;
use crate::results::{InstructionRow, Instructions, Profile, Results, Section, Tool};
use crate::run::{run_group, steward_cmd, Ctx, Job};
use crate::Args;
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use steward_bench::{cost, synth};

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

/// `--serve-synthetic`: the synthetic gateway alone, until stdin closes.
pub fn serve_synthetic(n: u64, delay_ms: u64) -> Result<()> {
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

/// The synthetic-gateway rows (unless only `instructions` is asked for),
/// then the instructions per object ([`instructions`]).
pub fn synthetic(args: &Args, ctx: &Ctx, res: &mut Results) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("synthetic-gateway")
        .enable_all()
        .build()?;
    if args.wants("synthetic") {
        timed_rows(args, ctx, rt.handle(), res)?;
    } else {
        res.skipped.push("synthetic gateway timings".into());
    }
    res.instructions = Some(instructions(ctx, rt.handle()));
    Ok(())
}

/// Objects of the tree whose instructions per object are counted, and of
/// the small tree whose run is subtracted (the fixed cost of a run).
pub const INSTRUCTION_OBJECTS: (u64, u64) = (10_000, 100);

/// steward's instructions per object for `manifest` and `deep-check` over
/// a 10,000-object synthetic tree, under callgrind and (where the host
/// counts them) `perf stat`; see [`steward_bench::cost`].
fn instructions(ctx: &Ctx, rt: &tokio::runtime::Handle) -> Instructions {
    let (n, base) = INSTRUCTION_OBJECTS;
    let mut ins = Instructions::default();
    eprintln!("== instructions per object under callgrind ({n} vs {base} synthetic objects) ==");
    let r = (|| -> Result<()> {
        let big = synth::start(rt, n, Duration::ZERO)?;
        let small = synth::start(rt, base, Duration::ZERO)?;
        ins.objects = big.counts.objects();
        ins.base_objects = small.counts.objects();
        let perf = cost::perf_instructions_supported();
        if let Err(e) = &perf {
            ins.perf_missing = Some(format!("{e:#}"));
        }
        for sub in ["manifest", "deep-check"] {
            let c = cost::per_object(&ctx.steward, sub, &big, &small, &ctx.logs)?;
            eprintln!(
                "  steward {sub}: {:.0} instructions per object, {:.1} M fixed ({:.0} s under callgrind)",
                c.per_object.total,
                c.fixed / 1e6,
                c.secs
            );
            let perf = match perf {
                Ok(()) => match cost::perf_per_object(&ctx.steward, sub, &big, &small) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        ins.perf_missing = Some(format!("{e:#}"));
                        None
                    }
                },
                Err(_) => None,
            };
            ins.rows.push(InstructionRow {
                label: format!("steward {sub}"),
                callgrind: c,
                perf,
            });
        }
        Ok(())
    })();
    if let Err(e) = r {
        eprintln!("  failed: {e:#}");
        ins.error = Some(format!("{e:#}"));
    }
    ins
}

/// The timed rows: 10,000 objects (with answers at once and held), then
/// the big tree; one 10,000-object run profiled with `perf record`.
fn timed_rows(
    args: &Args,
    ctx: &Ctx,
    rt: &tokio::runtime::Handle,
    res: &mut Results,
) -> Result<()> {
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
        let syn = synth::start(rt, n, Duration::from_millis(delay_ms))?;
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
