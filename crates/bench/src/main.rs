mod measure;
mod tree;
use anyhow::Result;
use std::time::{Duration, Instant};
fn main() -> Result<()> {
    let n: u64 = std::env::args().nth(1).unwrap_or("1000".into()).parse()?;
    let t = Instant::now();
    let grid = steward_testgrid::Grid::start(steward_testgrid::GridConfig { gateways: 2, ..Default::default() })?;
    eprintln!("grid up {:?}", t.elapsed());
    let procs = measure::Procs::of(&grid)?;
    eprintln!("{:?}", procs);
    let b = tree::build(&grid, "probe", n)?;
    let steward = std::env::current_exe()?.parent().unwrap().join("steward");
    let log = std::path::Path::new("/tmp/bench-probe.err");
    for _ in 0..1 {
        let mut c = grid.tahoe(); c.arg("deep-check").arg(&b.cap);
        let s = measure::run(&mut c, &procs, log, Duration::from_secs(3600), &[1])?;
        eprintln!("tahoe dc: {:.2}s cpu {:.2} rss {} gw {:.2} st {:.2} box {:.2} out {:?}", s.wall, s.cpu, s.maxrss_kb, s.gateways_cpu(), s.storage_cpu(), s.box_busy, measure::objects_checked(&s.stdout));
        let mut c = std::process::Command::new(&steward); c.args(["deep-check", "-q", "--gateway", &grid.gateway_url(), &b.cap]);
        let s = measure::run(&mut c, &procs, log, Duration::from_secs(3600), &[1])?;
        eprintln!("steward dc: {:.2}s cpu {:.2} rss {} gw {:.2} st {:.2} box {:.2} out {:?}", s.wall, s.cpu, s.maxrss_kb, s.gateways_cpu(), s.storage_cpu(), s.box_busy, measure::objects_checked(&s.stdout));
        let mut c = std::process::Command::new(&steward); c.args(["deep-check", "-q", "--gateway", &grid.gateway_urls().join(","), &b.cap]);
        let s = measure::run(&mut c, &procs, log, Duration::from_secs(3600), &[1])?;
        eprintln!("steward dc2: {:.2}s cpu {:.2} rss {} gw {:.2} st {:.2} box {:.2} out {:?} {:?}", s.wall, s.cpu, s.maxrss_kb, s.gateways_cpu(), s.storage_cpu(), s.box_busy, measure::objects_checked(&s.stdout), s.procs);
        let mut c = grid.tahoe(); c.arg("deep-check").arg("--verify").arg(&b.cap);
        let s = measure::run(&mut c, &procs, log, Duration::from_secs(3600), &[1])?;
        eprintln!("tahoe dc verify: {:.2}s cpu {:.2} rss {} gw {:.2} st {:.2} box {:.2} out {:?}", s.wall, s.cpu, s.maxrss_kb, s.gateways_cpu(), s.storage_cpu(), s.box_busy, measure::objects_checked(&s.stdout));
        let mut c = grid.tahoe(); c.arg("manifest").arg(&b.cap);
        let s = measure::run(&mut c, &procs, log, Duration::from_secs(3600), &[1])?;
        eprintln!("tahoe manifest: {:.2}s cpu {:.2} rss {} gw {:.2} st {:.2} box {:.2} lines {}", s.wall, s.cpu, s.maxrss_kb, s.gateways_cpu(), s.storage_cpu(), s.box_busy, s.stdout.lines().count());
    }
    Ok(())
}
