//! The synthetic-gateway section: steward's own cost per object at sizes
//! no real grid reaches here ([`synthetic`]), a `perf` profile of one run,
//! and `--serve-synthetic` for profiling by hand ([`serve_synthetic`]).

use crate::measure::Procs;
use crate::results::{Profile, Results, Section, Tool};
use crate::run::{run_group, steward_cmd, Ctx, Job};
use crate::synth;
use crate::Args;
use anyhow::{bail, Context, Result};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

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

/// The synthetic-gateway rows: 10,000 objects (with answers at once and
/// held), then the big tree; one 10,000-object run profiled with
/// `perf record`.
pub fn synthetic(args: &Args, ctx: &Ctx, res: &mut Results) -> Result<()> {
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
