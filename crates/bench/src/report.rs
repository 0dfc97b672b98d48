//! Rendering [`Results`] as BENCHMARKS.md.

use crate::measure::{Role, Sample};
use crate::results::{Entry, Group, Instructions, Results, Section, Tool};
use std::fmt::Write;
use steward_bench::callgrind::GROUPS;

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn secs(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn rate(objects: u64, wall: f64) -> String {
    let r = objects as f64 / wall;
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn pct(cpu: f64, wall: f64) -> String {
    format!("{:.0}%", 100.0 * cpu / wall)
}

/// CPU seconds of the whole box during a run, minus what is accounted for.
fn other_cpu(s: &Sample, nproc: usize) -> f64 {
    let busy = s.box_busy * s.wall * nproc as f64;
    let known: f64 = s.procs.iter().map(|(_, c)| c).sum::<f64>() + s.cpu + s.bench_cpu;
    (busy - known).max(0.0)
}

/// The Tahoe entry of a group (the baseline of its ratios).
fn baseline(g: &Group) -> Option<&Entry> {
    g.entries.iter().find(|e| e.tool == Tool::Tahoe)
}

/// steward throughput / Tahoe throughput, on the same objects.
fn ratio(g: &Group, e: &Entry) -> Option<f64> {
    let b = baseline(g)?.median_wall()?;
    Some(b / e.median_wall()?)
}

fn ratio_text(r: Option<f64>) -> String {
    r.map(|r| format!("**{r:.2}x**"))
        .unwrap_or_else(|| "n/a".into())
}

fn wall_text(e: Option<&Entry>) -> String {
    match e {
        None => "n/a".into(),
        Some(e) => match (e.median_wall(), &e.error) {
            (Some(w), None) => secs(w),
            (Some(w), Some(err)) => format!("{} ({} in a later run)", secs(w), short_err(err)),
            (None, Some(err)) => short_err(err).into(),
            (None, None) => "n/a".into(),
        },
    }
}

/// A failure as a table cell; the whole message is in the Notes.
fn short_err(err: &str) -> &'static str {
    if err.contains("(stalled)") {
        "**stalled** (see Notes)"
    } else {
        "**failed** (see Notes)"
    }
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.len() > 160 {
        format!("{}...", &l[..160])
    } else {
        l.to_string()
    }
}

fn rate_text(objects: u64, e: Option<&Entry>) -> String {
    e.and_then(Entry::median_wall)
        .map(|w| rate(objects, w))
        .unwrap_or_else(|| "n/a".into())
}

fn groups(res: &Results, f: impl Fn(&Group) -> bool) -> Vec<&Group> {
    res.groups.iter().filter(|g| f(g)).collect()
}

fn loopback<'a>(res: &'a Results, title: &str) -> Option<&'a Group> {
    res.groups
        .iter()
        .find(|g| g.section == Section::Loopback && g.title == title)
}

/// A target line: what, measured value text, met or not.
struct Target {
    what: String,
    measured: String,
    met: Option<bool>,
}

fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The ratios of the same walk spread over more connection pools (two
/// gateways, or the storage servers directly), as "`label` 1.23x".
fn other_configurations(g: &Group) -> Vec<String> {
    [
        "steward deep-check, 2 gateways",
        "steward deep-check --backend native",
    ]
    .iter()
    .filter_map(|l| {
        g.entry(l)
            .and_then(|e| ratio(g, e))
            .map(|r| format!("`{l}` {r:.2}x"))
    })
    .collect()
}

fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let dc = loopback(res, "deep-check");
    let r1 = dc.and_then(|g| g.entry("steward deep-check").and_then(|e| ratio(g, e)));
    t.push(Target {
        what: "Loopback, one gateway: deep-check >= 0.9x Tahoe's throughput".into(),
        measured: r1.map(|r| format!("{r:.2}x")).unwrap_or("n/a".into()),
        met: r1.map(|r| r >= 0.9),
    });
    let r2 = dc.and_then(|g| {
        g.entry("steward deep-check, 2 gateways")
            .and_then(|e| ratio(g, e))
    });
    t.push(Target {
        what: "Loopback, two gateways: deep-check >= 1.4x Tahoe's throughput".into(),
        measured: r2.map(|r| format!("{r:.2}x")).unwrap_or("n/a".into()),
        met: r2.map(|r| r >= 1.4),
    });
    for g in groups(res, |g| {
        matches!(g.section, Section::Slow { .. }) && g.title == "deep-check"
    }) {
        let Section::Slow { rtt_ms } = g.section else {
            continue;
        };
        let want = match rtt_ms {
            20 => 3.0,
            100 => 10.0,
            _ => continue,
        };
        let r = g.entry("steward deep-check").and_then(|e| ratio(g, e));
        // The same walk in the other configurations, for the record: the
        // target is judged on one gateway's deep-check.
        let others = other_configurations(g);
        t.push(Target {
            what: format!("RTT {rtt_ms} ms: deep-check >= {want:.0}x Tahoe's throughput"),
            measured: r
                .map(|r| {
                    if others.is_empty() {
                        format!("{r:.2}x")
                    } else {
                        format!("{r:.2}x (one gateway; {})", others.join(", "))
                    }
                })
                .unwrap_or("n/a".into()),
            met: r.map(|r| r >= want),
        });
    }
    native_targets(res, &mut t);
    // Peak RSS at about 10,000 objects: the synthetic 10k runs and the
    // manifest of the real tree if it has about that many objects.
    let mut rss10k: Vec<(String, u64)> = Vec::new();
    for g in groups(res, |g| {
        g.section == Section::Synthetic && g.objects <= 10_000
    }) {
        for e in &g.entries {
            if let Some(s) = e.median() {
                rss10k.push((format!("{}, synthetic {}", e.label, g.title), s.maxrss_kb));
            }
        }
    }
    for g in groups(res, |g| g.section == Section::Loopback) {
        if g.objects >= 9_000 && g.objects <= 11_000 {
            for e in g.entries.iter().filter(|e| e.tool == Tool::Steward) {
                if let Some(s) = e.median() {
                    rss10k.push((
                        format!("{} (real grid, {})", e.label, g.objects),
                        s.maxrss_kb,
                    ));
                }
            }
        }
    }
    let worst = rss10k.iter().max_by_key(|x| x.1);
    t.push(Target {
        what: "steward peak RSS < 40 MB at 10,000 objects".into(),
        measured: worst
            .map(|(w, kb)| format!("{} MB (largest: {w})", mb(*kb)))
            .unwrap_or("n/a".into()),
        met: worst.map(|(_, kb)| *kb < 40 * 1024),
    });
    let big = res
        .groups
        .iter()
        .filter(|g| g.section == Section::Synthetic)
        .max_by_key(|g| g.objects)
        .filter(|g| g.objects > 10_000);
    let worst_big = big.and_then(|g| {
        g.entries
            .iter()
            .filter_map(|e| e.median().map(|s| (e.label.clone(), s.maxrss_kb)))
            .max_by_key(|x| x.1)
    });
    let at_million = big.is_some_and(|g| g.objects >= 1_000_000);
    t.push(Target {
        what: "steward peak RSS < 100 MB at 1,000,000 objects (synthetic gateway)".into(),
        measured: match (big, &worst_big) {
            (Some(g), Some((l, kb))) => format!(
                "{} MB at {} objects ({l}){}",
                mb(*kb),
                g.objects,
                if at_million { "" } else { "; not 1,000,000" }
            ),
            _ => "n/a".into(),
        },
        met: worst_big
            .as_ref()
            .filter(|_| at_million)
            .map(|(_, kb)| *kb < 100 * 1024),
    });
    // CPU per object: the synthetic runs (steward's own cost, no grid).
    let mut us: Vec<(String, f64)> = Vec::new();
    for g in groups(res, |g| g.section == Section::Synthetic) {
        for e in &g.entries {
            if let Some(s) = e.median() {
                us.push((
                    format!("{}, synthetic {}", e.label, g.title),
                    s.cpu * 1e6 / g.objects as f64,
                ));
            }
        }
    }
    let worst = us
        .iter()
        .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
    t.push(Target {
        what: "steward CPU < 50 µs per object (synthetic gateway)".into(),
        measured: worst
            .map(|(w, x)| format!("{x:.1} µs (largest: {w})"))
            .unwrap_or("n/a".into()),
        met: worst.map(|(_, x)| *x < 50.0),
    });
    t
}

/// Issue 13's targets: `deep-check --backend native` with no gateway
/// (3x, 15x and 30x Tahoe's deep-check on loopback, at 20 ms and at 100 ms,
/// on both trees), `deep-check --verify --backend native` (3x on
/// loopback), and the peak RSS of verifying a 200 MB file (< 50 MB).
fn native_targets(res: &Results, t: &mut Vec<Target>) {
    let native = "steward deep-check --backend native";
    for g in groups(res, |g| {
        g.title == "deep-check" || g.title == crate::loopback::MIXED_TITLE
    }) {
        let (want, place) = match g.section {
            Section::Loopback => (3.0, "Loopback".to_string()),
            Section::Slow { rtt_ms: 20 } => (15.0, "RTT 20 ms".into()),
            Section::Slow { rtt_ms: 100 } => (30.0, "RTT 100 ms".into()),
            _ => continue,
        };
        let Some(e) = g.entry(native) else { continue };
        let r = ratio(g, e);
        t.push(Target {
            what: format!(
                "{place}, {}: `{native}` (no gateway) >= {want:.0}x Tahoe's throughput",
                if g.title == "deep-check" {
                    "the benchmark's tree"
                } else {
                    "a quarter mutable"
                }
            ),
            measured: r.map(|r| format!("{r:.2}x")).unwrap_or("n/a".into()),
            met: r.map(|r| r >= want),
        });
    }
    if let Some(g) = loopback(res, "deep-check --verify") {
        if let Some(e) = g.entry("steward deep-check --verify --backend native") {
            let r = ratio(g, e);
            t.push(Target {
                what: "Loopback: `deep-check --verify --backend native` >= 3x Tahoe's".into(),
                measured: r
                    .map(|r| {
                        format!(
                            "{r:.2}x{}",
                            e.note
                                .as_ref()
                                .map(|n| format!(" ({n})"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or("n/a".into()),
                met: r.map(|r| r >= 3.0),
            });
        }
    }
    if let Some(g) = loopback(res, crate::loopback::BIG_VERIFY_TITLE) {
        let s = g
            .entry("steward check --verify --backend native")
            .and_then(|e| e.median());
        t.push(Target {
            what: "steward peak RSS < 50 MB verifying a 200 MB file (native)".into(),
            measured: s
                .map(|s| format!("{} MB", mb(s.maxrss_kb)))
                .unwrap_or("n/a".into()),
            met: s.map(|s| s.maxrss_kb < 50 * 1024),
        });
    }
}

/// A short summary for the terminal.
pub fn headline(res: &Results) -> String {
    let mut s = String::new();
    for g in &res.groups {
        for e in &g.entries {
            if e.tool == Tool::Steward {
                if let Some(r) = ratio(g, e) {
                    let _ = writeln!(
                        s,
                        "  {:<10} {:<24} {:<46} {:>6} objects: {r:.2}x Tahoe",
                        section_name(g.section),
                        g.title,
                        e.label,
                        g.objects
                    );
                }
            }
        }
    }
    for t in targets(res) {
        let _ = writeln!(
            s,
            "  target: {}: {} -> {}",
            t.what,
            t.measured,
            met_text(t.met)
        );
    }
    s
}

fn section_name(s: Section) -> String {
    match s {
        Section::Loopback => "loopback".into(),
        Section::Slow { rtt_ms } => format!("RTT {rtt_ms} ms"),
        Section::Synthetic => "synthetic".into(),
        Section::Serve => "through steward serve".into(),
    }
}

pub fn render(res: &Results) -> String {
    let mut o = String::new();
    let m = &res.machine;
    let w = &mut o;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by `steward-bench` (crates/bench), which starts its own Tahoe-LAFS grid, builds its own tree (kept in target/bench-grid and reused by later runs of the same size) and measures everything below in one run. \
         Regenerate with `cargo run --release -p steward-bench` (under 20 minutes from a fresh clone; `-- --quick` for a smoke run in under 3). \
         The method is described in the crate documentation of crates/bench/src/main.rs and summarized at the end of this file.\n"
    );
    if res.quick {
        let _ = writeln!(
            w,
            "> **This is a `--quick` run**: a small tree and single runs; the figures are indicative only. Run without `--quick` for the real table.\n"
        );
    }
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| Date | {} |", m.date);
    let _ = writeln!(
        w,
        "| Command | `cargo run --release -p steward-bench --{}{}` |",
        if res.command.is_empty() { "" } else { " " },
        res.command
    );
    let _ = writeln!(
        w,
        "| Machine | {} CPUs ({}), {:.1} GiB RAM, Linux {} |",
        m.nproc, m.cpu, m.ram_gib, m.kernel
    );
    let _ = writeln!(w, "| Load average when it started | {} |", m.loadavg);
    let _ = writeln!(w, "| Tahoe-LAFS | {} |", m.tahoe);
    let _ = writeln!(w, "| steward | {} (release build) |", m.steward_rev);
    let tree = match &res.tree_reused_from {
        Some(when) => format!(
            "the tree was reused from the kept grid (built {when} in {:.0} s)",
            res.build_secs
        ),
        None => format!("of which building the tree {:.0} s", res.build_secs),
    };
    let _ = writeln!(
        w,
        "| Duration | {:.1} min, {tree} (before that, `cargo build --release -p steward`: {:.0} s) |",
        res.elapsed.as_secs_f64() / 60.0,
        res.build_steward_secs
    );
    let _ = writeln!(
        w,
        "| Runs | median of {} interleaved run(s) per figure{} |",
        res.runs,
        if res.synthetic_runs != res.runs {
            format!(" ({} at the largest synthetic size)", res.synthetic_runs)
        } else {
            String::new()
        }
    );
    if let Some(t) = &res.tree {
        let _ = writeln!(
            w,
            "| Real grid | 5 storage nodes (k=2, happy=3, N=5) and 3 gateways on 127.0.0.1; Tahoe's CLI uses gateway 0 |"
        );
        let parts: Vec<String> = res
            .parts
            .iter()
            .map(|(n, c)| format!("`{n}/` {}", c.objects()))
            .collect();
        let _ = writeln!(
            w,
            "| Tree | {} under one root; parts: {} |",
            t.describe(),
            parts.join(", ")
        );
    }
    if !res.skipped.is_empty() {
        let _ = writeln!(w, "| Skipped sections | {} |", res.skipped.join(", "));
    }
    let _ = writeln!(w);

    // Headline.
    let _ = writeln!(w, "## Headline\n");
    let _ = writeln!(
        w,
        "Ratio = steward's throughput / Tahoe's on the same objects in the same run (= Tahoe's median wall time / steward's).\n"
    );
    let _ = writeln!(
        w,
        "| Comparison | Objects | Tahoe | steward | steward / Tahoe |\n|---|---:|---:|---:|---:|"
    );
    for g in &res.groups {
        if g.section == Section::Synthetic {
            continue;
        }
        let b = baseline(g);
        for e in g.entries.iter().filter(|e| e.tool == Tool::Steward) {
            let _ = writeln!(
                w,
                "| {}: `{}` vs `{}` | {} | {} s | {} s | {} |",
                section_name(g.section),
                e.label,
                b.map(|b| b.label.as_str()).unwrap_or("-"),
                g.objects,
                wall_text(b),
                wall_text(Some(e)),
                ratio_text(ratio(g, e))
            );
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "### Targets\n");
    let _ = writeln!(w, "| Target | Measured | |\n|---|---|---|");
    for t in targets(res) {
        let _ = writeln!(w, "| {} | {} | {} |", t.what, t.measured, met_text(t.met));
    }
    let _ = writeln!(w);

    // 1. Loopback.
    let lb = groups(res, |g| g.section == Section::Loopback);
    if !lb.is_empty() {
        let _ = writeln!(w, "## 1. Real grid, loopback, one gateway\n");
        let _ = writeln!(
            w,
            "Gateway CPU = CPU time of gateway 0's process during the run, and as a share of the run's wall time (100% = one core, the most a Python gateway can use). \
             Client = the `tahoe` CLI process or steward (`wait4` rusage).\n"
        );
        let _ = writeln!(
            w,
            "| Operation | Objects (part) | Tahoe s | Tahoe obj/s | steward s | steward obj/s | steward / Tahoe | steward peak RSS MB | steward CPU s | Gateway CPU, steward run | Gateway CPU, Tahoe run | Tahoe CLI peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for g in &lb {
            let b = baseline(g);
            let Some(e) = g
                .entries
                .iter()
                .find(|e| e.tool == Tool::Steward && e.gateways == 1)
            else {
                continue;
            };
            let gw = |e: Option<&Entry>| {
                e.and_then(Entry::median)
                    .map(|s| {
                        format!(
                            "{} s ({})",
                            secs(s.gateway_cpu(0)),
                            pct(s.gateway_cpu(0), s.wall)
                        )
                    })
                    .unwrap_or("n/a".into())
            };
            let sm = e.median();
            let _ = writeln!(
                w,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                g.title,
                g.objects,
                g.scope,
                wall_text(b),
                rate_text(g.objects, b),
                wall_text(Some(e)),
                rate_text(g.objects, Some(e)),
                ratio_text(ratio(g, e)),
                sm.map(|s| mb(s.maxrss_kb)).unwrap_or("n/a".into()),
                sm.map(|s| secs(s.cpu)).unwrap_or("n/a".into()),
                gw(Some(e)),
                gw(b),
                b.and_then(Entry::median)
                    .map(|s| mb(s.maxrss_kb))
                    .unwrap_or("n/a".into()),
            );
        }
        let _ = writeln!(w);
        for g in &lb {
            for e in &g.entries {
                if let Some(n) = &e.note {
                    let _ = writeln!(w, "- {} / `{}`: {n}.", g.title, e.label);
                }
                let seen: Vec<u64> = e.seen.iter().flatten().copied().collect();
                if !seen.is_empty() && seen.iter().any(|&s| s != g.objects) {
                    let _ = writeln!(
                        w,
                        "- {} / `{}` reported {:?} objects per run (the part has {}).",
                        g.title, e.label, seen, g.objects
                    );
                }
            }
        }
        if let Some(p) = &res.polling {
            let _ = writeln!(
                w,
                "\n### Tahoe's `start-deep-check` polling API: gateway memory\n"
            );
            match &p.error {
                Some(e) => {
                    let _ = writeln!(w, "Measurement failed: {}\n", first_line(e));
                }
                None => {
                    let per = (p.rss_after_kb as f64 - p.rss_before_kb as f64) * 1024.0
                        / p.objects as f64;
                    let est_gb = (per * 1e6 + p.rss_before_kb as f64 * 1024.0) / 1e9;
                    let _ = writeln!(
                        w,
                        "`POST /uri/$DIRCAP?t=start-deep-check&ophandle=..&output=JSON` keeps every object's check results in the gateway until the handle is collected. \
                         Measured on gateway 2 (used by nothing else), after a warm-up operation over `verify/` ({} objects), both handles retained:\n",
                        p.warm_objects
                    );
                    let _ = writeln!(
                        w,
                        "| Objects (`dc/`) | Wall s | obj/s | Gateway CPU s | Gateway VmRSS before | after | Growth per object | Estimated VmRSS at 1,000,000 objects |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
                    );
                    let _ = writeln!(
                        w,
                        "| {} ({} checked; LIT files have nothing to check) | {} | {} | {} | {} MB | {} MB | {:.1} KB | **{:.1} GB** |\n",
                        p.objects,
                        p.reported,
                        secs(p.wall),
                        rate(p.objects, p.wall),
                        secs(p.gateway_cpu),
                        mb(p.rss_before_kb),
                        mb(p.rss_after_kb),
                        per / 1024.0,
                        est_gb
                    );
                    let _ = writeln!(
                        w,
                        "Growth per object = VmRSS growth / objects in `dc/`; the estimate is linear, for a tree of the same mix: VmRSS before + growth per object x 1,000,000. After both handles were released (`retain-for=0`) the gateway's VmRSS was {} MB (Python rarely returns freed memory to the system).\n",
                        mb(p.rss_released_kb)
                    );
                }
            }
        }
    }

    // 1b. The stock CLI through steward serve.
    for g in groups(res, |g| g.section == Section::Serve) {
        let _ = writeln!(
            w,
            "## 1b. The stock `tahoe` CLI through `steward serve`\n\n\
             The same `tahoe deep-check` (Tahoe-LAFS 1.20's CLI, unchanged) of `{}` ({} objects), once with its node directory pointing at gateway 0, once at a `steward serve --gateway <gateway 0>` (its `node.url`), runs interleaved. \
             Through serve, the walk and the checks are steward's (parallel) and the CLI only reads the stream. \
             Client CPU is the `tahoe` CLI's; steward serve's own CPU and peak RSS during the run are in the last column.\n",
            g.scope, g.objects
        );
        let _ = writeln!(
            w,
            "| Run | Wall s | obj/s | vs gateway | Gateway 0 CPU | Storage CPU | CLI CPU | steward serve (last run) |\n|---|---:|---:|---:|---:|---:|---:|---|"
        );
        for e in &g.entries {
            let s = e.median();
            let _ = writeln!(
                w,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
                e.label,
                wall_text(Some(e)),
                rate_text(g.objects, Some(e)),
                ratio_text(ratio(g, e)),
                s.map(|s| format!(
                    "{} s ({})",
                    secs(s.gateway_cpu(0)),
                    pct(s.gateway_cpu(0), s.wall)
                ))
                .unwrap_or_default(),
                s.map(|s| format!("{} s", secs(s.storage_cpu())))
                    .unwrap_or_default(),
                s.map(|s| format!("{} s", secs(s.cpu))).unwrap_or_default(),
                e.note.clone().unwrap_or_default()
            );
        }
        let _ = writeln!(w);
    }

    // 2. Two gateways.
    if let Some(g) = loopback(res, "deep-check") {
        let _ = writeln!(w, "## 2. Two gateways: where the CPU goes\n");
        let _ = writeln!(
            w,
            "The deep-check group of section 1 (`dc/`, {} objects), all runs interleaved; the CPU split is that of each configuration's median run. \
             Percentages are of the run's wall time (100% = one core; the box has {} cores = {}%). \
             \"Other\" is CPU used on the box by processes outside the benchmark (the machine is shared), from `/proc/stat`.\n",
            g.objects,
            m.nproc,
            100 * m.nproc
        );
        let _ = writeln!(
            w,
            "| Run | Wall s | obj/s | vs Tahoe | Gateway 0 CPU | Gateway 1 CPU | 5 storage servers CPU | Client CPU | Other | Box busy | Gateways + servers ms/object |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for e in &g.entries {
            let Some(s) = e.median() else {
                let _ = writeln!(
                    w,
                    "| `{}` | {} | | | | | | | | | |",
                    e.label,
                    wall_text(Some(e))
                );
                continue;
            };
            let grid_ms = (s.gateways_cpu() + s.storage_cpu()) * 1000.0 / g.objects as f64;
            let _ = writeln!(
                w,
                "| `{}` | {} | {} | {} | {} s ({}) | {} s ({}) | {} s ({}) | {} s | {} s | {:.0}% | {:.1} |",
                e.label,
                secs(s.wall),
                rate(g.objects, s.wall),
                ratio_text(ratio(g, e)),
                secs(s.gateway_cpu(0)),
                pct(s.gateway_cpu(0), s.wall),
                secs(s.gateway_cpu(1)),
                pct(s.gateway_cpu(1), s.wall),
                secs(s.storage_cpu()),
                pct(s.storage_cpu(), s.wall),
                secs(s.cpu),
                secs(other_cpu(s, m.nproc)),
                100.0 * s.box_busy,
                grid_ms
            );
        }
        let _ = writeln!(w);
        if let (Some(b), Some(e2)) = (
            baseline(g).and_then(Entry::median),
            g.entry("steward deep-check, 2 gateways")
                .and_then(Entry::median),
        ) {
            let per = (e2.gateways_cpu() + e2.storage_cpu() + e2.cpu) / g.objects as f64;
            let ceiling = m.nproc as f64 / per;
            let tahoe_rate = g.objects as f64 / b.wall;
            let _ = writeln!(
                w,
                "**Ceiling.** With two gateways, a check costs {:.1} ms of CPU in the gateways, the storage servers and steward together. \
                 {} cores can therefore do at most {:.0} checks per second if nothing else ran, {:.2}x Tahoe's measured {:.0} objects/s; \
                 steward reached {:.0} objects/s ({:.0}% of that ceiling) with the box {:.0}% busy.\n",
                per * 1000.0,
                m.nproc,
                ceiling,
                ceiling / tahoe_rate,
                tahoe_rate,
                g.objects as f64 / e2.wall,
                100.0 * (g.objects as f64 / e2.wall) / ceiling,
                100.0 * e2.box_busy
            );
        }
    }

    // 3. Slow network.
    let slow = groups(res, |g| matches!(g.section, Section::Slow { .. }));
    if !slow.is_empty() {
        let _ = writeln!(w, "## 3. Slow network\n");
        let _ = writeln!(
            w,
            "Round-trip time added between the gateways and the storage servers by a delaying TCP proxy (RTT/2 per chunk in each direction, order kept); the tools reach gateway 0 on loopback, as when run next to it. \
             Fewer objects at longer RTTs, so that Tahoe's walk finishes in time.\n"
        );
        for v in &res.slow_verified {
            let _ = writeln!(w, "Verified: {v}.\n");
        }
        let _ = writeln!(
            w,
            "| RTT | Objects (part) | Tool | Wall s | obj/s | vs Tahoe | Gateways CPU | Storage CPU | Client CPU | Connections to the storage servers (last run) |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"
        );
        for g in &slow {
            let Section::Slow { rtt_ms } = g.section else {
                continue;
            };
            for e in &g.entries {
                let s = e.median();
                let _ = writeln!(
                    w,
                    "| {rtt_ms} ms | {} ({}) | `{}` | {} | {} | {} | {} | {} | {} | {} |",
                    g.objects,
                    g.scope,
                    e.label,
                    wall_text(Some(e)),
                    rate_text(g.objects, Some(e)),
                    if e.tool == Tool::Tahoe {
                        "1x".into()
                    } else {
                        ratio_text(ratio(g, e))
                    },
                    s.map(|s| format!(
                        "{} s ({})",
                        secs(s.gateways_cpu()),
                        pct(s.gateways_cpu(), s.wall)
                    ))
                    .unwrap_or_default(),
                    s.map(|s| format!("{} s", secs(s.storage_cpu())))
                        .unwrap_or_default(),
                    s.map(|s| format!("{} s", secs(s.cpu))).unwrap_or_default(),
                    e.note
                        .as_deref()
                        .map(|n| n.trim_end_matches(" connections opened to the storage servers"))
                        .unwrap_or_default(),
                );
            }
        }
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "Connections: TCP connections the proxies accepted during the run (each is a new HTTPS connection: TCP and TLS handshakes, about three round trips before its first request). \
             Tahoe's gateway keeps at most 10 idle connections per storage server (`maxPersistentPerHost = 10` in allmydata/storage/http_client.py) and closes the others after their answer, so with more than 10 requests in flight to a server it opens new connections over and over; \
             the native backend keeps one connection per request in flight and reuses them.\n"
        );
    }
    match &res.native {
        Some(n) if n == "available" => {}
        Some(n) => {
            let _ = writeln!(
                w,
                "**Native backend (`steward check --backend native`, issue 5): {n}**; its rows (loopback and 20 ms, against the gateway backend and `tahoe deep-check`) appear in sections 2 and 3 once it is.\n"
            );
        }
        None => {}
    }

    // 4. Synthetic.
    let syn = groups(res, |g| g.section == Section::Synthetic);
    if !syn.is_empty() {
        let _ = writeln!(
            w,
            "## 4. Synthetic gateway: steward's own cost up to a million objects\n"
        );
        let _ = writeln!(
            w,
            "**Synthetic gateway**: an HTTP server in the bench process (crates/bench/src/synth.rs) that serves a generated tree in Tahoe's `t=json` format, with valid caps, and answers every `t=check` at once with a healthy result. \
             No Tahoe-LAFS code runs here: these rows measure steward alone (its CPU, memory and request rate), not a grid. \
             The synthetic gateway's own CPU is shown separately; it shares the {} cores with steward.\n",
            m.nproc
        );
        let _ = writeln!(
            w,
            "| Tree | Operation | Wall s | obj/s | steward CPU s | steward µs/object | steward peak RSS MB | Synthetic gateway CPU s | Requests served |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
        );
        for g in &syn {
            for e in &g.entries {
                let s = e.median();
                let _ = writeln!(
                    w,
                    "| {} | `{}` (synthetic gateway) | {} | {} | {} | {} | {} | {} | {} |",
                    g.title,
                    e.label,
                    wall_text(Some(e)),
                    rate_text(g.objects, Some(e)),
                    s.map(|s| secs(s.cpu)).unwrap_or_default(),
                    s.map(|s| format!("{:.1}", s.cpu * 1e6 / g.objects as f64))
                        .unwrap_or_default(),
                    s.map(|s| mb(s.maxrss_kb)).unwrap_or_default(),
                    s.map(|s| secs(s.bench_cpu)).unwrap_or_default(),
                    e.note.clone().unwrap_or_default()
                );
            }
        }
        let _ = writeln!(w);
        for g in &syn {
            let _ = writeln!(w, "- {}: {}.", g.title, g.scope);
        }
        let _ = writeln!(w);
    }

    if let Some(ins) = &res.instructions {
        instructions(w, ins, &syn);
    }

    if let Some(d) = &res.dispatch {
        dispatch_section(w, d);
    }

    if let Some(c) = &res.cluster {
        cluster_section(w, c, res.machine.nproc);
    }

    // CPU split of every median run.
    let _ = writeln!(w, "## CPU split of every median run\n");
    let _ = writeln!(
        w,
        "CPU seconds during the run. Gateways: 0, 1 (2 is only used for the polling-API measurement). Bench = this program's own process (delaying proxies, synthetic gateway).\n"
    );
    let _ = writeln!(
        w,
        "| Section | Operation | Run | Wall s | Client CPU | Client peak RSS MB | Gateway 0 | Gateway 1 | Storage (5) | Introducer | Bench | Other | Box busy |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for g in &res.groups {
        for e in &g.entries {
            let Some(s) = e.median() else { continue };
            let intro: f64 = s
                .procs
                .iter()
                .filter(|(r, _)| *r == Role::Introducer)
                .map(|(_, c)| c)
                .sum();
            let grid = |x: f64| {
                if s.procs.is_empty() {
                    "-".to_string()
                } else {
                    secs(x)
                }
            };
            let _ = writeln!(
                w,
                "| {} | {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
                section_name(g.section),
                g.title,
                e.label,
                secs(s.wall),
                secs(s.cpu),
                mb(s.maxrss_kb),
                grid(s.gateway_cpu(0)),
                grid(s.gateway_cpu(1)),
                grid(s.storage_cpu()),
                grid(intro),
                secs(s.bench_cpu),
                secs(other_cpu(s, m.nproc)),
                100.0 * s.box_busy
            );
        }
    }
    let _ = writeln!(w);

    // Notes.
    let _ = writeln!(w, "## Notes\n");
    for n in notes(res) {
        let _ = writeln!(w, "- {n}");
    }
    let _ = writeln!(w);

    // Raw runs.
    let _ = writeln!(w, "## Raw wall times (s), in run order\n");
    for g in &res.groups {
        for e in &g.entries {
            let walls: Vec<String> = e.samples.iter().map(|s| format!("{:.2}", s.wall)).collect();
            let _ = writeln!(
                w,
                "- {} {} / `{}`: {}{}",
                section_name(g.section),
                g.title,
                e.label,
                if walls.is_empty() {
                    "-".into()
                } else {
                    walls.join(", ")
                },
                e.error
                    .as_ref()
                    .map(|x| format!(" ({})", short_err(x)))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "- One program run, one grid, one tree: every ratio compares runs taken minutes apart on the same objects. Tools are interleaved (Tahoe, steward, Tahoe, steward, ...) and run with their default settings (`steward deep-check --help` shows steward's).\n\
         - Wall time from spawn to exit; client CPU and peak RSS from `wait4`; every Tahoe node's CPU from `/proc/<pid>/stat` before and after; the box's busy time from `/proc/stat`.\n\
         - objects/s = objects in the walked part (LIT included, as both tools count them) / median wall time. Each tool's own object count is checked against the part's.\n\
         - `--repair`: before every run, a quarter of the non-LIT files of `repair/` are put back to 3 of 5 shares; after the run the share files on disk are counted.\n\
         - Slow network: the storage nodes are restarted with `tub.location` pointing at a delaying proxy; the gateways' sockets are checked to go through the proxies only.\n\
         - Synthetic gateway: see section 4; nothing of Tahoe runs there.\n\
         - Several workers (section 6): PostgreSQL is a throwaway server the benchmark starts itself (`crates/testpg`, durable settings), its CPU read from `/proc`.\n\
         - Logs of every run (standard error) are in target/bench-logs/."
    );
    o
}

/// steward's CPU time per object in the 10,000-object synthetic row of
/// `label` (answers at once), in microseconds.
fn synthetic_us(syn: &[&Group], objects: u64, label: &str) -> Option<f64> {
    let g = syn
        .iter()
        .find(|g| g.objects == objects && !g.title.contains("delayed"))?;
    let s = g.entry(label)?.median()?;
    Some(s.cpu * 1e6 / g.objects as f64)
}

/// Thousands separated by commas.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// Section 4's instructions per object, beside the microseconds.
fn instructions(w: &mut String, ins: &Instructions, syn: &[&Group]) {
    let _ = writeln!(
        w,
        "### Instructions per object: steward's own cost, the same on any host\n"
    );
    let _ = writeln!(
        w,
        "Counted by valgrind's callgrind over the synthetic gateway (crates/bench/src/cost.rs): a run over {} objects minus a run over {}, divided by the difference, so that the fixed cost of a run (loading, start-up, exit) is taken out and shown apart. \
         Split by where the instructions go (crates/bench/src/callgrind.rs says how functions are grouped: by the crate their name names; the standard library's generic code counts for its caller; *allocation* is the allocator itself, whoever calls it). \
         The µs column is the 10,000-object row of the table above, on this host. \
         Under valgrind `sha2` runs its portable code (valgrind's CPU has no SHA extensions), so steward's cap hashing counts several times what it executes natively on a CPU with SHA-NI.\n",
        thousands(ins.objects as f64),
        thousands(ins.base_objects as f64)
    );
    if let Some(e) = &ins.error {
        let _ = writeln!(w, "Not measured: {}\n", first_line(e));
    }
    if !ins.rows.is_empty() {
        let mut head = "| Operation | Instructions/object |".to_string();
        let mut rule = "|---|---:|".to_string();
        for g in GROUPS {
            let _ = write!(head, " {g} |");
            rule.push_str("---:|");
        }
        head.push_str(" Fixed per run | `perf stat` instructions/object | CPU µs/object | Instructions per µs |");
        rule.push_str("---:|---:|---:|---:|");
        let _ = writeln!(w, "{head}\n{rule}");
        for r in &ins.rows {
            let c = &r.callgrind.per_object;
            let mut row = format!("| `{}` | **{}** |", r.label, thousands(c.total));
            for g in GROUPS {
                let v = c.group(g);
                let _ = write!(row, " {} ({:.0}%) |", thousands(v), 100.0 * v / c.total);
            }
            let us = synthetic_us(syn, 10_000, &r.label);
            let _ = writeln!(
                w,
                "{row} {:.1} M | {} | {} | {} |",
                r.callgrind.fixed / 1e6,
                r.perf.map(thousands).unwrap_or_else(|| "n/a".into()),
                us.map(|u| format!("{u:.1}")).unwrap_or_else(|| "-".into()),
                us.map(|u| thousands(c.total / u))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        let _ = writeln!(w);
        if let Some(p) = &ins.perf_missing {
            let _ = writeln!(w, "`perf stat -e instructions:u`: {}.\n", first_line(p));
        }
        for r in &ins.rows {
            let top: Vec<String> = r
                .callgrind
                .per_object
                .top(12)
                .into_iter()
                .map(|(v, f)| format!("`{}` {}", short_fn(f), thousands(v)))
                .collect();
            let _ = writeln!(
                w,
                "- `{}`, the functions with the most own instructions per object: {}.",
                r.label,
                top.join(", ")
            );
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "**How hosts differ.** Microseconds per object vary several-fold between hosts of the same kind: the same binaries measured 26-36 µs of CPU per `deep-check` object on one 2-core VM and 99-155 µs on another (issue 15). \
         A virtual CPU's speed depends on its model and clock, turbo and power states, what the host's other tenants run on the same physical cores and caches (steal time is not always visible in the guest), and memory latency; the allocator's cost in particular follows cache misses. \
         Instructions depend only on the binary, its libraries (glibc's allocator included) and its input, so they are the figure to compare between hosts and commits; the instructions-per-µs column shows how fast this host ran them (the µs include system time, the kernel's side of every request, which callgrind does not count: hence fewer instructions per µs for `deep-check`, with a request per object, than for `manifest`). \
         The guard `tests/integration/instructions.rs` (run by `cargo test --workspace`) holds them: it fails when `deep-check`'s instructions per object, in all or in the allocator, move more than 20% from the figures recorded there (counted on the unoptimized test build over 500 synthetic objects minus 100, to stay within seconds).\n"
    );
}

/// Where the time of `steward deep-check --backend native` goes behind a
/// delaying proxy: the storage servers' CPU (every check asks every
/// server, a TLS request each, answered by Python) sets a floor no walk on
/// this box can go under, whatever it keeps in flight: their CPU seconds
/// spread over all the box's cores. The rest of the wall time is waiting
/// on round trips (connections, then one listing per level of the tree).
fn native_notes(res: &Results, n: &mut Vec<String>) {
    let native = "steward deep-check --backend native";
    let nproc = res.machine.nproc.max(1) as f64;
    for g in groups(res, |g| {
        matches!(g.section, Section::Slow { .. })
            && (g.title == "deep-check" || g.title == crate::loopback::MIXED_TITLE)
    }) {
        let Section::Slow { rtt_ms } = g.section else {
            continue;
        };
        let (Some(b), Some(s)) = (
            baseline(g).and_then(Entry::median),
            g.entry(native).and_then(Entry::median),
        ) else {
            continue;
        };
        let o = g.objects as f64;
        let floor = s.storage_cpu() / nproc;
        n.push(format!(
            "{} {}: `{native}` took {} s for {} objects ({:.2}x Tahoe's {} s). The storage servers used {:.2} s of CPU ({:.1} ms per object; steward itself {:.2} s): \
             spread over the box's {} cores that alone takes {:.2} s, so no walk sending these requests could beat {:.1}x Tahoe's on this box; \
             the rest, {:.2} s, is waiting on round trips (the time of {:.0} of {rtt_ms} ms: connections, then a listing per level of the tree before its children are known).",
            section_name(g.section),
            g.title,
            secs(s.wall),
            g.objects,
            b.wall / s.wall,
            secs(b.wall),
            s.storage_cpu(),
            s.storage_cpu() * 1000.0 / o,
            s.cpu,
            nproc,
            floor,
            b.wall / floor.max(1e-9),
            (s.wall - floor).max(0.0),
            (s.wall - floor).max(0.0) * 1000.0 / rtt_ms as f64,
        ));
    }
}

/// A function name without its generic arguments' noise, for the notes.
fn short_fn(f: &str) -> String {
    let f = f.replace("core::future::future::Future", "Future");
    if f.chars().count() > 90 {
        let s: String = f.chars().take(87).collect();
        format!("{s}...")
    } else {
        f
    }
}

/// Observations computed from the figures: where the time goes, and why
/// a target is missed.
fn notes(res: &Results) -> Vec<String> {
    let nproc = res.machine.nproc;
    let mut n = Vec::new();
    if let Some(g) = loopback(res, "deep-check") {
        if let (Some(b), Some(s)) = (
            baseline(g).and_then(Entry::median),
            g.entry("steward deep-check").and_then(Entry::median),
        ) {
            let o = g.objects as f64;
            n.push(format!(
                "Loopback deep-check, per object: Tahoe's own traversal (`t=stream-deep-check`) cost gateway 0 {:.1} ms and the storage servers {:.1} ms; \
                 steward's per-object `t=check` requests cost gateway 0 {:.1} ms and the storage servers {:.1} ms. \
                 steward drove gateway 0 to {} of one core (Tahoe's own walk: {}). steward itself used {:.0} µs of CPU per object.",
                b.gateway_cpu(0) * 1000.0 / o,
                b.storage_cpu() * 1000.0 / o,
                s.gateway_cpu(0) * 1000.0 / o,
                s.storage_cpu() * 1000.0 / o,
                pct(s.gateway_cpu(0), s.wall),
                pct(b.gateway_cpu(0), b.wall),
                s.cpu * 1e6 / o
            ));
        }
    }
    for t in targets(res) {
        if t.met == Some(false) {
            n.push(format!(
                "Target not met: {} (measured {}).",
                t.what, t.measured
            ));
        }
    }
    for g in groups(res, |g| matches!(g.section, Section::Slow { .. })) {
        let (Some(b), Some(s)) = (
            baseline(g).and_then(Entry::median),
            g.entry("steward deep-check").and_then(Entry::median),
        ) else {
            continue;
        };
        let gw = 100.0 * s.gateway_cpu(0) / s.wall;
        let cap = s.wall * nproc as f64;
        let own = (s.gateways_cpu() + s.storage_cpu() + s.cpu + s.bench_cpu) / cap;
        let other = other_cpu(s, nproc) / cap;
        let bound = if gw >= 80.0 {
            "gateway 0 was near its one-core limit: bound by the gateway's CPU".to_string()
        } else if own >= 0.8 {
            "the grid and steward kept the box busy: bound by CPU".to_string()
        } else {
            format!(
                "neither the gateway nor the box was CPU-bound by the benchmark's own processes ({:.0}% of the box; other processes took {:.0}%): bound by round trips, i.e. by how many requests steward kept in flight and by the depth of the tree (each directory must be listed before its children are known)",
                100.0 * own,
                100.0 * other
            )
        };
        let fixed = g
            .entries
            .iter()
            .find(|e| e.label.contains("--fixed-jobs"))
            .and_then(|e| ratio(g, e).map(|r| (e.label.clone(), r)));
        let connections = |label: &str| {
            g.entry(label)
                .and_then(|e| e.note.as_deref())
                .and_then(|n| n.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let churn = match (connections("steward deep-check"), connections("tahoe deep-check")) {
            (Some(c), Some(t)) if c > 5 * (t + 1) => format!(
                " Its last run made the gateway open {c} new connections to the storage servers (Tahoe's own walk: {t}): Tahoe's HTTP storage client keeps 10 idle connections per server and reconnects (TCP and TLS, about three round trips) for each request beyond those, so checks through one gateway cost more round trips once more than about 10 are in flight, and steward's pace backs off there."
            ),
            _ => String::new(),
        };
        let alternatives = other_configurations(g);
        let alternatives = if alternatives.is_empty() {
            String::new()
        } else {
            format!(
                " Spreading the same walk over more connection pools: {}.",
                alternatives.join(", ")
            )
        };
        n.push(format!(
            "{}: steward's deep-check took {} s for {} objects ({:.2}x Tahoe's {} s); gateway 0 used {:.0}% of one core, the storage servers {:.0}%, the whole box was {:.0}% busy: {}.{}{churn}{alternatives}",
            section_name(g.section),
            secs(s.wall),
            g.objects,
            b.wall / s.wall,
            secs(b.wall),
            gw,
            100.0 * s.storage_cpu() / s.wall,
            100.0 * s.box_busy,
            bound,
            fixed
                .map(|(l, r)| format!(" With a fixed number of requests in flight (`{l}`) the ratio was {r:.2}x."))
                .unwrap_or_default()
        ));
    }
    native_notes(res, &mut n);
    let mut noisy = Vec::new();
    for g in &res.groups {
        for e in &g.entries {
            if let Some(s) = e.median() {
                let other = other_cpu(s, nproc);
                if other > 0.15 * s.wall * nproc as f64 {
                    noisy.push(format!(
                        "{} {} / `{}` ({:.0}% of the box)",
                        section_name(g.section),
                        g.title,
                        e.label,
                        100.0 * other / (s.wall * nproc as f64)
                    ));
                }
            }
        }
    }
    if !noisy.is_empty() {
        n.push(format!(
            "Other processes used more than 15% of the box's CPU during these median runs, so their figures are pessimistic for whichever tool ran then: {}.",
            noisy.join("; ")
        ));
    }
    for g in &res.groups {
        for e in &g.entries {
            if !e.stalls.is_empty() {
                n.push(format!(
                    "**steward stalled**: {} {} / `{}`: {} run(s) printed nothing for 60 s and were killed (each tried once more): {}.",
                    section_name(g.section),
                    g.title,
                    e.label,
                    e.stalls.len(),
                    e.stalls.join("; ")
                ));
            }
        }
    }
    if let Some(p) = &res.profile {
        match &p.error {
            Some(e) => n.push(format!("No CPU profile of steward: {}", first_line(e))),
            None => {
                let dso: Vec<String> = p
                    .dso
                    .iter()
                    .take(4)
                    .map(|(x, d)| format!("{d} {x:.0}%"))
                    .collect();
                let sym: Vec<String> = p
                    .symbols
                    .iter()
                    .take(12)
                    .map(|(x, s)| format!("`{s}` {x:.1}%"))
                    .collect();
                n.push(format!(
                    "Where steward's CPU goes (`perf record -F 2000` of {}): by object: {}. Top symbols: {}.",
                    p.what,
                    dso.join(", "),
                    sym.join(", ")
                ));
            }
        }
    }
    for g in &res.groups {
        for e in &g.entries {
            if let Some(err) = &e.error {
                n.push(format!(
                    "{} {} / `{}` failed: {}",
                    section_name(g.section),
                    g.title,
                    e.label,
                    first_line(err)
                ));
            }
        }
    }
    for e in &res.errors {
        n.push(format!("Error: {}", first_line(e)));
    }
    if n.is_empty() {
        n.push("Nothing to report.".into());
    }
    n
}

/// Section 5: many accounts, one budget.
fn dispatch_section(w: &mut String, d: &crate::dispatch::DispatchBench) {
    use crate::measure::median;
    let _ = writeln!(w, "## 5. Many accounts: `steward dispatch`\n");
    let objects: u64 = d.accounts.iter().map(|a| a.objects).sum();
    let _ = writeln!(
        w,
        "{} accounts, {objects} objects in all, each its own tree on a grid of its own (one gateway; trees built in {:.0} s). \
         `steward dispatch` runs them all at once under one budget (`-j 64`, no repair); the baseline runs `steward deep-check` \
         for each account one after another, in the accounts file's order. Median of {} run(s).\n",
        d.accounts.len(),
        d.build_secs,
        d.dispatch_wall.len()
    );
    if let Some(e) = &d.error {
        let _ = writeln!(w, "Failed: {e}\n");
    }
    let seq = median(&d.sequential_wall);
    let disp = median(&d.dispatch_wall);
    let _ = writeln!(
        w,
        "| | wall | objects/s |\n|---|---:|---:|\n| deep-check per account, sequentially | {seq:.1} s | {:.0} |\n| dispatch, one budget | {disp:.1} s | {:.0} |\n| **ratio** (sequential / dispatch) | **{:.2}x** | |\n",
        objects as f64 / seq.max(1e-9),
        objects as f64 / disp.max(1e-9),
        seq / disp.max(1e-9)
    );
    let mut by_size: Vec<_> = d.accounts.iter().collect();
    by_size.sort_by_key(|a| a.objects);
    let _ = writeln!(
        w,
        "When each account was done, seconds from the start (smallest accounts first; `alone` is the account's own deep-check):\n"
    );
    let _ = writeln!(
        w,
        "| account | objects | dispatch | sequential | alone |\n|---|---:|---:|---:|---:|"
    );
    for a in &by_size {
        let _ = writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            a.name,
            a.objects,
            median(&a.dispatch_done),
            median(&a.sequential_done),
            median(&a.alone)
        );
    }
    let _ = writeln!(w);
}

/// Section 6: several workers on one PostgreSQL.
fn cluster_section(w: &mut String, c: &crate::cluster::ClusterBench, nproc: usize) {
    use crate::cluster::{BASELINE, POSTGRES, SQLITE};
    let _ = writeln!(
        w,
        "## 6. Several workers on one PostgreSQL: `steward dispatch --store`\n"
    );
    let n = c.store_objects.max(1) as f64;
    let _ = writeln!(
        w,
        "### Store overhead per object ({} objects, synthetic gateway)\n\n\
         One account over the synthetic gateway's tree, run three ways: `steward deep-check` keeping nothing (the baseline: the same listings and checks, counted at the gateway), \
         `steward dispatch --state DIR` (SQLite job table; the stages' files and checkpoints in DIR) and `steward dispatch --store postgres://` \
         (job table, stage states and every unit in the database; a throwaway server of the benchmark's own, with `fsync` and synchronous commits on, a fresh database per run). \
         Dispatch runs with `repair = false`. PostgreSQL CPU = its postmaster, live and reaped children, from `/proc`. \
         Overhead = the run minus the baseline, per object. Kept = the state directory's bytes, or the database's growth, after the run. \
         Each run's fixed cost (start, schema creation) is spread over its objects. Median of {} run(s).\n",
        c.store_objects,
        c.stores.first().map_or(0, |s| s.samples.len())
    );
    if let Some(e) = &c.store_error {
        let _ = writeln!(w, "Failed: {}\n", first_line(e));
    }
    let base = c
        .stores
        .iter()
        .find(|s| s.label == BASELINE)
        .and_then(|s| s.median());
    let _ = writeln!(
        w,
        "| Run | Wall s | µs/object | steward CPU µs/object | PostgreSQL CPU µs/object | CPU µs/object in all | Overhead: wall µs/object | Overhead: CPU µs/object | Kept, bytes/object | steward peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &c.stores {
        let Some((m, db, bytes)) = s.median() else {
            let _ = writeln!(
                w,
                "| `{}` | failed: {} | | | | | | | | |",
                s.label,
                first_line(s.error.as_deref().unwrap_or("no run")).replace('|', "/")
            );
            continue;
        };
        let cpu = m.cpu + db;
        let (over_wall, over_cpu) = match base {
            Some((b, bdb, _)) if s.label != BASELINE => (
                format!("{:.1}", (m.wall - b.wall) * 1e6 / n),
                format!("**{:.1}**", (cpu - b.cpu - bdb) * 1e6 / n),
            ),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            w,
            "| `{}` | {} | {:.1} | {:.1} | {} | {:.1} | {over_wall} | {over_cpu} | {} | {} |",
            s.label,
            secs(m.wall),
            m.wall * 1e6 / n,
            m.cpu * 1e6 / n,
            if s.label == POSTGRES {
                format!("{:.1}", db * 1e6 / n)
            } else {
                "-".into()
            },
            cpu * 1e6 / n,
            bytes
                .map(|b| format!("{:.0}", b as f64 / n))
                .unwrap_or_else(|| "-".into()),
            mb(m.maxrss_kb)
        );
    }
    if let (Some(sq), Some(pg)) = (
        c.stores
            .iter()
            .find(|s| s.label == SQLITE)
            .and_then(|s| s.median()),
        c.stores
            .iter()
            .find(|s| s.label == POSTGRES)
            .and_then(|s| s.median()),
    ) {
        let _ = writeln!(
            w,
            "\nPostgreSQL against SQLite: {:.2}x the wall time, {:.2}x the CPU (steward's and the server's). The box has {nproc} CPUs: steward, the synthetic gateway (in the bench process) and the database server share them, so the wall times include waiting for each other.",
            pg.0.wall / sq.0.wall.max(1e-9),
            (pg.0.cpu + pg.1) / sq.0.cpu.max(1e-9)
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(
        w,
        "### Throughput with 1, 2 and 4 workers ({} accounts, {} objects, real grid)\n\n\
         Each account its own tree on a grid of its own (5 storage nodes, one gateway; built in {:.0} s). \
         N `steward dispatch --store` processes started together on a fresh database (of the same server), each taking at most accounts / N accounts at once and then what is left; \
         `-j 64` per worker, no repair. Wall = from the start until a worker logged the last account done; objects/s = all the accounts' objects / that wall time. \
         A worker with nothing left to claim looks again every 2 s while others hold accounts, so the last one exits up to 2 s later (shown apart). \
         The job table is checked afterwards (every account done, every object counted). Runs interleaved (1, 2, 4, 1, ...), median of {} run(s).\n",
        c.accounts,
        c.grid_objects,
        c.build_secs,
        c.workers.first().map_or(0, |r| r.samples.len())
    );
    if let Some(e) = &c.workers_error {
        let _ = writeln!(w, "Failed: {}\n", first_line(e));
    }
    let one = c
        .workers
        .iter()
        .find(|r| r.workers == 1)
        .and_then(|r| r.median())
        .map(|s| s.wall);
    let _ = writeln!(
        w,
        "| Workers | Wall s | objects/s | vs 1 worker | Last worker exited, s | Workers' CPU | PostgreSQL CPU | Gateway CPU | Storage CPU (5) | Box busy (until the last exit) | Accounts started per worker |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut busy_max: f64 = 0.0;
    for r in &c.workers {
        let Some(m) = r.median() else {
            let _ = writeln!(
                w,
                "| {} | failed: {} | | | | | | | | | |",
                r.workers,
                first_line(r.error.as_deref().unwrap_or("no run")).replace('|', "/")
            );
            continue;
        };
        busy_max = busy_max.max(m.box_busy);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} s | {} s | {} s ({}) | {} s | {:.0}% | {:?} |",
            r.workers,
            secs(m.wall),
            rate(c.grid_objects, m.wall),
            one.map(|o| format!("{:.2}x", o / m.wall))
                .unwrap_or_else(|| "n/a".into()),
            secs(m.exit_wall),
            secs(m.steward_cpu),
            secs(m.db_cpu),
            secs(m.gateway_cpu),
            pct(m.gateway_cpu, m.wall),
            secs(m.storage_cpu),
            m.box_busy * 100.0,
            m.taken
        );
    }
    let gateway_max = c
        .workers
        .iter()
        .filter_map(|r| r.median())
        .map(|m| m.gateway_cpu / m.wall.max(1e-9))
        .fold(0.0, f64::max);
    let verdict = if gateway_max >= 0.85 {
        "the gateway sets the pace (one Python process cannot use more than a core); on several machines, each worker with a gateway of its own, throughput would grow with the gateways"
    } else if busy_max >= 0.85 {
        "the box's CPUs set the pace"
    } else {
        "neither was saturated: round trips and the requests each worker keeps in flight set the pace"
    };
    let _ = writeln!(
        w,
        "\n**What these numbers mean here.** The box has {nproc} CPUs, shared by the Tahoe gateway (one Python process), the 5 storage servers, PostgreSQL and every worker, so more workers add no CPU: \
         with 4 workers on {nproc} cores these rows measure what sharing the accounts through one database costs (claims, renewals, units written by several processes at once), not how a cluster of machines scales. \
         Here the gateway used up to {:.0}% of a core and the box was up to {:.0}% busy: {verdict}.\n",
        gateway_max * 100.0,
        busy_max * 100.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Sample;

    fn entry(label: &str, tool: Tool, walls: &[f64], error: Option<&str>) -> Entry {
        Entry {
            label: label.into(),
            tool,
            gateways: 1,
            samples: walls
                .iter()
                .map(|&w| Sample {
                    wall: w,
                    cpu: 0.5,
                    maxrss_kb: 10_240,
                    procs: vec![(Role::Gateway(0), w * 0.6), (Role::Storage(0), w * 0.5)],
                    box_busy: 0.8,
                    ..Default::default()
                })
                .collect(),
            error: error.map(str::to_string),
            seen: vec![],
            note: None,
            stalls: vec![],
        }
    }

    #[test]
    fn renders_the_cluster_section_with_overheads_and_failures() {
        use crate::cluster::{
            ClusterBench, StoreRun, WorkerRun, WorkerSample, BASELINE, POSTGRES, SQLITE,
        };
        let sample = |wall: f64, cpu: f64| Sample {
            wall,
            cpu,
            maxrss_kb: 10_240,
            ..Default::default()
        };
        let c = ClusterBench {
            store_objects: 1000,
            stores: vec![
                StoreRun {
                    label: BASELINE.into(),
                    samples: vec![sample(1.0, 0.5)],
                    db_cpu: vec![0.0],
                    ..Default::default()
                },
                StoreRun {
                    label: SQLITE.into(),
                    samples: vec![sample(2.0, 1.0)],
                    db_cpu: vec![0.0],
                    bytes: vec![2_000_000],
                    ..Default::default()
                },
                StoreRun {
                    label: POSTGRES.into(),
                    error: Some("postgres exited | badly".into()),
                    ..Default::default()
                },
            ],
            accounts: 2,
            grid_objects: 100,
            workers: vec![
                WorkerRun {
                    workers: 1,
                    samples: vec![WorkerSample {
                        wall: 2.0,
                        exit_wall: 2.1,
                        gateway_cpu: 1.9,
                        box_busy: 0.5,
                        taken: vec![2],
                        ..Default::default()
                    }],
                    error: None,
                },
                WorkerRun {
                    workers: 2,
                    samples: vec![],
                    error: Some("workers exited [1, 0]".into()),
                },
            ],
            ..Default::default()
        };
        let mut w = String::new();
        cluster_section(&mut w, &c, 2);
        // SQLite: (2.0 - 1.0) s and (1.0 - 0.5) s over 1000 objects.
        assert!(w.contains("| 1000.0 | **500.0** | 2000 | 10.0 |"), "{w}");
        assert!(w.contains("failed: postgres exited / badly"), "{w}");
        assert!(w.contains("| 1 | 2.00 | 50 | 1.00x | 2.10 |"), "{w}");
        assert!(w.contains("| 2 | failed: workers exited [1, 0]"), "{w}");
        assert!(w.contains("the gateway sets the pace"), "{w}");
    }

    #[test]
    fn renders_ratios_targets_and_failures() {
        let res = Results {
            machine: crate::machine::Machine {
                nproc: 2,
                ..Default::default()
            },
            runs: 3,
            synthetic_runs: 1,
            groups: vec![
                Group {
                    section: Section::Loopback,
                    title: "deep-check".into(),
                    scope: "dc/".into(),
                    objects: 1000,
                    entries: vec![
                        entry("tahoe deep-check", Tool::Tahoe, &[10.0, 12.0, 11.0], None),
                        entry("steward deep-check", Tool::Steward, &[10.0, 9.0, 8.0], None),
                        Entry {
                            gateways: 2,
                            ..entry(
                                "steward deep-check, 2 gateways",
                                Tool::Steward,
                                &[],
                                Some("x printed nothing for 60s (stalled): killed"),
                            )
                        },
                    ],
                },
                Group {
                    section: Section::Slow { rtt_ms: 20 },
                    title: "deep-check".into(),
                    scope: "rtt20/".into(),
                    objects: 500,
                    entries: vec![
                        entry("tahoe deep-check", Tool::Tahoe, &[30.0], None),
                        entry("steward deep-check", Tool::Steward, &[6.0], None),
                    ],
                },
            ],
            ..Default::default()
        };
        let md = render(&res);
        // 11 s / 9 s.
        assert!(md.contains("**1.22x**"), "{md}");
        assert!(md.contains("**5.00x**"), "{md}");
        assert!(md.contains("**stalled** (see Notes)"), "{md}");
        assert!(md.contains("| RTT 20 ms: deep-check >= 3x Tahoe's throughput | 5.00x | met |"));
        assert!(md.contains(
            "Loopback, two gateways: deep-check >= 1.4x Tahoe's throughput | n/a | not measured"
        ));
        assert!(headline(&res).contains("1.22x Tahoe"));
    }
}
