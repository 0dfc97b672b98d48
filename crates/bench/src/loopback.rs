//! The real-grid sections: on loopback, steward against Tahoe's own tools
//! over each part of the tree (manifest, deep-check, `--add-lease`,
//! `--verify`, `--repair`), then the same deep-check over a slow network.
//! [`loopback_and_slow`] sets the grid up and runs the parts; each
//! measurement is a method of [`RealGrid`].

use crate::measure::{proc_cpu_secs, proc_status_kb, Procs};
use crate::plan::{damage, grid_and_tree, repaired, BuiltTree, Parts};
use crate::polling::polling_api;
use crate::proxy;
use crate::results::{Group, Results, Section, Tool};
use crate::run::{run_group, steward_cmd, Ctx, Job};
use crate::slow::go_slow;
use crate::tree;
use crate::{workspace_root, Args};
use anyhow::{bail, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use steward_testgrid::Grid;

/// Runs the loopback and slow-network sections that `args` asks for.
pub fn loopback_and_slow(args: &Args, ctx: &Ctx, res: &mut Results) -> Result<()> {
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
    res.tree = Some(built.total);
    res.parts = built
        .parts
        .iter()
        .map(|(n, b)| (n.clone(), b.counts))
        .collect();
    let damaged = damaged_objects(&built)?;

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

    let native = has_native(ctx);
    let fixed_jobs = has_fixed_jobs(ctx);
    res.native = Some(if native {
        "available".into()
    } else {
        "not yet available: `steward check --help` shows no --backend".into()
    });
    let gws = grid.gateway_urls();
    let real = RealGrid {
        ctx,
        grid: &grid,
        procs: &procs,
        built: &built,
        gw0: gws[0].clone(),
        gw01: format!("{},{}", gws[0], gws[1]),
        native,
        auditor: ctx.logs.join("auditor"),
    };

    if args.wants("loopback") {
        res.groups.push(real.manifest());
        res.groups.push(real.deep_check()?);
        if native {
            res.groups.push(real.mixed_deep_check(None));
        }
        res.groups.push(real.add_lease());
        res.groups.push(real.verify());
        if native {
            match big_file(&grid, &dir) {
                Ok(cap) => res.groups.push(real.verify_big_file(&cap)?),
                Err(e) => res.errors.push(format!("the 200 MB file: {e:#}")),
            }
        }
        res.groups.push(real.repair(&damaged));
    } else {
        res.skipped.push("loopback".into());
    }
    if args.wants("serve") {
        match real.through_serve() {
            Ok(g) => res.groups.push(g),
            Err(e) => res.errors.push(format!("through steward serve: {e:#}")),
        }
    } else {
        res.skipped.push("through steward serve".into());
    }

    // The proxies' runtime outlives the grid's processes.
    let mut proxies = None;
    if args.wants("slow") && !parts.rtt.is_empty() {
        proxies = Some(real.slow_network(&parts.rtt, fixed_jobs, res)?);
    } else {
        res.skipped.push("slow network".into());
    }
    grid.stop();
    drop(proxies);
    Ok(())
}

/// The damaged files of `repair/`: every 4th file that has shares, by
/// storage index.
fn damaged_objects(built: &BuiltTree) -> Result<Vec<String>> {
    built
        .part("repair")
        .files
        .iter()
        .filter(|(k, _)| *k != tree::Kind::Lit)
        .step_by(4)
        .map(|(_, cap)| tree::storage_index(cap).map(|s| s.expect("not LIT")))
        .collect()
}

/// The grid, its tree and what the steward under test supports: what
/// every real-grid measurement needs.
struct RealGrid<'a> {
    ctx: &'a Ctx,
    grid: &'a Grid,
    procs: &'a Procs,
    built: &'a BuiltTree,
    /// Gateway 0's URL.
    gw0: String,
    /// Gateways 0 and 1, as `--gateway` takes them.
    gw01: String,
    /// `steward` has `--backend native`.
    native: bool,
    /// A node directory with the storage servers' announcements and no
    /// gateway (no `node.url`), for the native runs.
    auditor: PathBuf,
}

impl RealGrid<'_> {
    /// Refreshes [`RealGrid::auditor`] from gateway 0's introducer cache
    /// (it changes when the storage servers move behind the proxies).
    fn refresh_auditor(&self) -> Result<()> {
        let cache = "private/introducer_default_cache.yaml";
        fs::create_dir_all(self.auditor.join("private"))?;
        fs::copy(
            self.grid.gateway_dir().join(cache),
            self.auditor.join(cache),
        )?;
        Ok(())
    }

    /// `steward deep-check --backend native` of `cap` with no gateway.
    fn native_deep_check<'b>(&'b self, cap: &'b str, extra: &'b [&'b str]) -> Job<'b> {
        let label = if extra.is_empty() {
            "steward deep-check --backend native".to_string()
        } else {
            format!("steward deep-check {} --backend native", extra.join(" "))
        };
        Job::new(&label, Tool::Steward, 0, move || {
            // Here, not in a prep step (which a group may replace with its
            // own): the servers' addresses change when they move behind
            // the proxies.
            if let Err(e) = self.refresh_auditor() {
                eprintln!("  refreshing {}: {e:#}", self.auditor.display());
            }
            let mut c = steward_cmd(self.ctx, &["deep-check", "-q"]);
            c.args(extra)
                .args(["--backend", "native", "-d"])
                .arg(&self.auditor)
                .arg(cap)
                .env("STEWARD_LOG", format!("warn,{READS}=info"))
                .env_remove("STEWARD_GATEWAY");
            c
        })
    }

    /// `deep-check` of the quarter-mutable tree (`mixed/` on loopback,
    /// `mixed-rtt<RTT>/` with `rtt`): Tahoe, steward through gateway 0,
    /// steward native with no gateway.
    fn mixed_deep_check(&self, rtt: Option<(u64, &Procs)>) -> Group {
        let ctx = self.ctx;
        let name = match rtt {
            Some((r, _)) => format!("mixed-rtt{r}"),
            None => "mixed".to_string(),
        };
        let p = self.built.part(&name);
        let jobs = vec![
            Job::new("tahoe deep-check", Tool::Tahoe, 1, || {
                self.tahoe(&["deep-check"], &p.cap)
            }),
            Job::new("steward deep-check", Tool::Steward, 1, || {
                steward_cmd(ctx, &["deep-check", "-q", "--gateway", &self.gw0, &p.cap])
            }),
            self.native_deep_check(&p.cap, &[]),
        ];
        let (section, procs) = match rtt {
            Some((r, procs)) => (Section::Slow { rtt_ms: r }, procs),
            None => (Section::Loopback, self.procs),
        };
        run_group(
            ctx,
            procs,
            section,
            MIXED_TITLE,
            &format!("{name}/ ({})", p.counts.describe()),
            p.counts.objects(),
            ctx.runs,
            jobs,
        )
    }

    /// `check --verify` of one 200 MB CHK file: Tahoe's, and steward's
    /// native verify (its peak RSS is the point).
    fn verify_big_file(&self, cap: &str) -> Result<Group> {
        let ctx = self.ctx;
        let caps = ctx.logs.join("big-file.caps");
        let vc = steward_cap::Cap::parse(cap)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_verify_cap()
            .expect("a CHK cap has a verify cap");
        fs::write(&caps, format!("{}\n", vc.expose()))?;
        let caps = &caps;
        Ok(run_group(
            ctx,
            self.procs,
            Section::Loopback,
            BIG_VERIFY_TITLE,
            &format!("one CHK file of {} MB", BIG_FILE_BYTES >> 20),
            1,
            ctx.runs,
            vec![
                Job::new("tahoe check --verify", Tool::Tahoe, 1, || {
                    self.tahoe(&["check", "--verify"], cap)
                }),
                Job::new(
                    "steward check --verify --backend native",
                    Tool::Steward,
                    0,
                    move || {
                        if let Err(e) = self.refresh_auditor() {
                            eprintln!("  refreshing {}: {e:#}", self.auditor.display());
                        }
                        let mut c = steward_cmd(
                            ctx,
                            &["check", "-q", "--verify", "--backend", "native", "-d"],
                        );
                        c.arg(&self.auditor)
                            .arg(caps)
                            .env("STEWARD_LOG", format!("warn,{READS}=info"))
                            .env_remove("STEWARD_GATEWAY");
                        c
                    },
                )
                .lines()
                .post(|s| Ok(bytes_read_note(s, 1))),
            ],
        ))
    }
    /// `tahoe -d <gateway 0> ARGS CAP`.
    fn tahoe(&self, a: &[&str], cap: &str) -> Command {
        let mut c = self.grid.tahoe();
        c.args(a).arg(cap);
        c
    }

    /// `manifest` of the whole tree.
    fn manifest(&self) -> Group {
        let ctx = self.ctx;
        let root = &self.built.root;
        run_group(
            ctx,
            self.procs,
            Section::Loopback,
            "manifest",
            "whole tree",
            self.built.total.objects(),
            ctx.runs,
            vec![
                Job::new("tahoe manifest", Tool::Tahoe, 1, || {
                    self.tahoe(&["manifest"], root)
                })
                .lines(),
                Job::new("steward manifest", Tool::Steward, 1, || {
                    steward_cmd(ctx, &["manifest", "-q", "--gateway", &self.gw0, root])
                })
                .lines(),
            ],
        )
    }

    /// `deep-check` of `dc/`: Tahoe, steward on one and two gateways, and
    /// (when steward has it) the check of a manifest through the gateway
    /// and the native backend.
    fn deep_check(&self) -> Result<Group> {
        let ctx = self.ctx;
        let (gw0, gw01) = (&self.gw0, &self.gw01);
        let dc = self.built.part("dc");
        let read_manifest = ctx.logs.join("dc.read.manifest");
        let verify_manifest = ctx.logs.join("dc.verify.manifest");
        let mut jobs = vec![
            Job::new("tahoe deep-check", Tool::Tahoe, 1, || {
                self.tahoe(&["deep-check"], &dc.cap)
            }),
            Job::new("steward deep-check", Tool::Steward, 1, || {
                steward_cmd(ctx, &["deep-check", "-q", "--gateway", gw0, &dc.cap])
            }),
            Job::new("steward deep-check, 2 gateways", Tool::Steward, 2, || {
                steward_cmd(ctx, &["deep-check", "-q", "--gateway", gw01, &dc.cap])
            }),
        ];
        if self.native {
            make_manifest(ctx, gw0, &dc.cap, "read", &read_manifest)?;
            make_manifest(ctx, gw0, &dc.cap, "verify", &verify_manifest)?;
            let gwdir = self.grid.gateway_dir().to_path_buf();
            jobs.push(
                Job::new("steward check (gateway backend)", Tool::Steward, 1, || {
                    let mut c = steward_cmd(ctx, &["check", "-q", "--gateway", gw0]);
                    c.arg(&read_manifest);
                    c
                })
                .lines(),
            );
            jobs.push(self.native_deep_check(&dc.cap, &[]));
            jobs.push(native_check(ctx, gwdir, verify_manifest.clone()));
        }
        Ok(run_group(
            ctx,
            self.procs,
            Section::Loopback,
            "deep-check",
            "dc/",
            dc.counts.objects(),
            ctx.runs,
            jobs,
        ))
    }

    /// The stock `tahoe deep-check` of `dc/` against gateway 0 and through
    /// a `steward serve` in front of it.
    fn through_serve(&self) -> Result<Group> {
        let ctx = self.ctx;
        let dc = self.built.part("dc");
        let serve = ServeProcess::start(ctx, &self.gw0)?;
        let nd = ctx.logs.join("serve-node");
        fs::create_dir_all(&nd)?;
        fs::write(nd.join("node.url"), &serve.url)?;
        let tahoe = self.grid.tahoe().get_program().to_owned();
        let pid = serve.child.id();
        let before = std::cell::Cell::new(0.0);
        let jobs = vec![
            Job::new("tahoe deep-check", Tool::Tahoe, 1, || {
                self.tahoe(&["deep-check"], &dc.cap)
            }),
            Job::new(
                "tahoe deep-check through steward serve",
                Tool::Tahoe,
                1,
                || {
                    let mut c = Command::new(&tahoe);
                    c.arg("-d").arg(&nd).args(["deep-check", &dc.cap]);
                    c
                },
            )
            .prep(|| {
                before.set(proc_cpu_secs(pid).unwrap_or(0.0));
                Ok(())
            })
            .post(|_| {
                let cpu = proc_cpu_secs(pid).unwrap_or(0.0) - before.get();
                let hwm = proc_status_kb(pid, "VmHWM").unwrap_or(0);
                Ok(format!(
                    "CPU {cpu:.2} s, peak RSS {:.1} MB",
                    hwm as f64 / 1024.0
                ))
            }),
        ];
        Ok(run_group(
            ctx,
            self.procs,
            Section::Serve,
            "tahoe deep-check",
            "dc/",
            dc.counts.objects(),
            ctx.runs,
            jobs,
        ))
    }

    /// `deep-check --add-lease` of `dc/`.
    fn add_lease(&self) -> Group {
        let ctx = self.ctx;
        let dc = self.built.part("dc");
        run_group(
            ctx,
            self.procs,
            Section::Loopback,
            "deep-check --add-lease",
            "dc/",
            dc.counts.objects(),
            ctx.runs,
            vec![
                Job::new("tahoe deep-check --add-lease", Tool::Tahoe, 1, || {
                    self.tahoe(&["deep-check", "--add-lease"], &dc.cap)
                }),
                Job::new("steward deep-check --add-lease", Tool::Steward, 1, || {
                    steward_cmd(
                        ctx,
                        &[
                            "deep-check",
                            "-q",
                            "--add-lease",
                            "--gateway",
                            &self.gw0,
                            &dc.cap,
                        ],
                    )
                }),
            ],
        )
    }

    /// `deep-check --verify` of `verify/`.
    fn verify(&self) -> Group {
        let ctx = self.ctx;
        let v = self.built.part("verify");
        let objects = v.counts.objects();
        let mut jobs = vec![
            Job::new("tahoe deep-check --verify", Tool::Tahoe, 1, || {
                self.tahoe(&["deep-check", "--verify"], &v.cap)
            }),
            Job::new("steward deep-check --verify", Tool::Steward, 1, || {
                steward_cmd(
                    ctx,
                    &[
                        "deep-check",
                        "-q",
                        "--verify",
                        "--gateway",
                        &self.gw0,
                        &v.cap,
                    ],
                )
            }),
        ];
        if self.native {
            jobs.push(
                self.native_deep_check(&v.cap, &["--verify"])
                    .post(move |s| Ok(bytes_read_note(s, objects))),
            );
        }
        run_group(
            ctx,
            self.procs,
            Section::Loopback,
            "deep-check --verify",
            "verify/",
            objects,
            ctx.runs,
            jobs,
        )
    }

    /// `deep-check --repair` of `repair/`, each run starting from the same
    /// damage to `damaged` (storage indexes).
    fn repair(&self, damaged: &[String]) -> Group {
        let ctx = self.ctx;
        let grid = self.grid;
        let rp = self.built.part("repair");
        let scope = format!(
            "repair/, {} of its {} objects damaged (left with 3 of their 5 share numbers, one copy each) before each run",
            damaged.len(),
            rp.counts.objects()
        );
        run_group(
            ctx,
            self.procs,
            Section::Loopback,
            "deep-check --repair",
            &scope,
            rp.counts.objects(),
            ctx.runs,
            vec![
                Job::new("tahoe deep-check --repair", Tool::Tahoe, 1, || {
                    self.tahoe(&["deep-check", "--repair"], &rp.cap)
                })
                .prep(|| damage(grid, damaged))
                .post(|_| Ok(repaired(grid, damaged))),
                Job::new("steward deep-check --repair", Tool::Steward, 1, || {
                    steward_cmd(
                        ctx,
                        &[
                            "deep-check",
                            "-q",
                            "--repair",
                            "--gateway",
                            &self.gw0,
                            &rp.cap,
                        ],
                    )
                })
                .prep(|| damage(grid, damaged))
                .post(|_| Ok(repaired(grid, damaged))),
            ],
        )
    }

    /// Puts the delaying proxies in front of the storage servers and runs
    /// [`RealGrid::slow_deep_check`] at each `(rtt, objects)` of `rtts`.
    /// Returns the proxies' runtime, to be dropped once the grid stopped.
    fn slow_network(
        &self,
        rtts: &[(u64, u64)],
        fixed_jobs: bool,
        res: &mut Results,
    ) -> Result<tokio::runtime::Runtime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("delay-proxy")
            .enable_all()
            .build()?;
        let delay = proxy::Delay::default();
        let proxy_ports = go_slow(self.grid, self.procs, rt.handle(), &delay)?;
        // The storage nodes were restarted: new pids.
        let procs = Procs::of(self.grid)?;
        res.slow_verified.push(format!(
            "all {} gateways' connections to the {} storage servers go through the proxies (checked from /proc/<pid>/net/tcp): {}",
            self.grid.gateway_urls().len(),
            self.grid.storage_nodes(),
            proxy_ports
        ));
        for &(rtt, _) in rtts {
            delay.set_rtt(Duration::from_millis(rtt));
            res.groups
                .push(self.slow_deep_check(&procs, &delay, rtt, fixed_jobs)?);
            if self.native {
                res.groups.push(self.mixed_deep_check(Some((rtt, &procs))));
            }
        }
        Ok(rt)
    }

    /// `deep-check` of `rtt<RTT>/` with every storage server `rtt` ms away:
    /// Tahoe, steward on one and two gateways, `--fixed-jobs` and the
    /// native backend when steward has them; each run's note counts the
    /// connections it opened to the storage servers.
    fn slow_deep_check(
        &self,
        procs: &Procs,
        delay: &proxy::Delay,
        rtt: u64,
        fixed_jobs: bool,
    ) -> Result<Group> {
        let ctx = self.ctx;
        let (gw0, gw01) = (&self.gw0, &self.gw01);
        let p = self.built.part(&format!("rtt{rtt}"));
        let mut jobs = vec![
            Job::new("tahoe deep-check", Tool::Tahoe, 1, || {
                self.tahoe(&["deep-check"], &p.cap)
            }),
            Job::new("steward deep-check", Tool::Steward, 1, || {
                steward_cmd(ctx, &["deep-check", "-q", "--gateway", gw0, &p.cap])
            }),
            Job::new("steward deep-check, 2 gateways", Tool::Steward, 2, || {
                steward_cmd(ctx, &["deep-check", "-q", "--gateway", gw01, &p.cap])
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
                        &["deep-check", "-q", "--fixed-jobs", "--gateway", gw0, &p.cap],
                    )
                },
            ));
        }
        if self.native {
            let vm = ctx.logs.join(format!("rtt{rtt}.verify.manifest"));
            make_manifest(ctx, gw0, &p.cap, "verify", &vm)?;
            let gwdir = self.grid.gateway_dir().to_path_buf();
            jobs.push(self.native_deep_check(&p.cap, &[]));
            jobs.push(native_check(ctx, gwdir, vm));
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
        Ok(run_group(
            ctx,
            procs,
            Section::Slow { rtt_ms: rtt },
            "deep-check",
            &format!("rtt{rtt}/"),
            p.counts.objects(),
            ctx.runs,
            jobs,
        ))
    }
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

/// `steward check --backend native` of the verify caps in `manifest`,
/// with the storage servers found in gateway directory `node_dir`.
fn native_check<'a>(ctx: &'a Ctx, node_dir: PathBuf, manifest: PathBuf) -> Job<'a> {
    Job::new(
        "steward check --backend native (verify caps)",
        Tool::Steward,
        0,
        move || {
            let mut c = steward_cmd(ctx, &["check", "-q", "--backend", "native", "-d"]);
            c.arg(&node_dir).arg(&manifest);
            c
        },
    )
    .lines()
}

/// The log target of steward's line on what its verifies read.
const READS: &str = "steward_native::reads";
/// The title of the quarter-mutable tree's deep-check groups.
pub const MIXED_TITLE: &str = "deep-check (quarter mutable)";
/// The title of the 200 MB file's verify group.
pub const BIG_VERIFY_TITLE: &str = "check --verify (200 MB file)";
/// The size of that file.
const BIG_FILE_BYTES: u64 = 200 << 20;

/// "N bytes read per object for M bytes of shares (P%)", from the line a
/// native steward logs at `info` ([`READS`]) when it exits.
fn bytes_read_note(s: &crate::measure::Sample, objects: u64) -> String {
    let line = s
        .stderr_tail
        .lines()
        .rev()
        .find(|l| l.contains("verified") && l.contains("reading"));
    let nums: Vec<u64> = line
        .map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // "verified S shares of B bytes in all, reading R bytes": the last
    // three numbers.
    match nums.as_slice() {
        [.., shares, share_bytes, read] if *share_bytes > 0 => {
            let per = |x: u64| x as f64 / objects.max(1) as f64;
            format!(
                "{shares} shares verified; {:.0} bytes read per object for {:.0} bytes of shares per object ({:.1}% of the share sizes)",
                per(*read),
                per(*share_bytes),
                100.0 * *read as f64 / *share_bytes as f64
            )
        }
        _ => "no verify statistics in the log".to_string(),
    }
}

/// The cap of a 200 MB CHK file on `grid`, uploaded once and kept in
/// `dir` (next to the kept grid) for later runs.
fn big_file(grid: &Grid, dir: &Path) -> Result<String> {
    let saved = dir.join("bench-big-file.cap");
    if let Ok(cap) = fs::read_to_string(&saved) {
        return Ok(cap.trim().to_string());
    }
    eprintln!("== uploading a {} MB file ==", BIG_FILE_BYTES >> 20);
    let t = std::time::Instant::now();
    // Generated as it is sent: the bench's own memory stays small.
    struct Gen {
        left: u64,
        x: u64,
    }
    impl std::io::Read for Gen {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.left) as usize;
            for b in &mut buf[..n] {
                self.x ^= self.x << 13;
                self.x ^= self.x >> 7;
                self.x ^= self.x << 17;
                *b = self.x as u8;
            }
            self.left -= n as u64;
            Ok(n)
        }
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let body = reqwest::blocking::Body::sized(
        Gen {
            left: BIG_FILE_BYTES,
            x: seed,
        },
        BIG_FILE_BYTES,
    );
    let r = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1800))
        .build()?
        .put(format!("{}uri?format=CHK", grid.gateway_url()))
        .body(body)
        .send()?;
    let status = r.status();
    let cap = r.text()?.trim().to_string();
    if !status.is_success() || !cap.starts_with("URI:CHK:") {
        bail!("upload: HTTP {status}: {}", steward_cap::redact(&cap));
    }
    eprintln!("  uploaded in {:.0?}", t.elapsed());
    fs::write(&saved, &cap)?;
    Ok(cap)
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

/// A `steward serve` in front of a gateway, killed when dropped.
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl ServeProcess {
    fn start(ctx: &Ctx, gateway: &str) -> Result<ServeProcess> {
        use std::io::BufRead;
        let log = fs::File::create(ctx.logs.join("serve.stderr"))?;
        let mut child = steward_cmd(
            ctx,
            &["serve", "--gateway", gateway, "--listen", "127.0.0.1:0"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("steward serve: listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("steward serve did not start (see serve.stderr): {line:?}");
        };
        Ok(ServeProcess {
            url: url.to_string(),
            child,
        })
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
