//! Tahoe's `start-deep-check` polling API keeps every check result in the
//! gateway until its handle expires: [`polling_api`] measures how much
//! memory that takes per object, on a gateway the other runs leave alone.

use crate::measure::{self, Procs};
use crate::results::PollingApi;
use anyhow::{anyhow, bail, Context, Result};
use std::time::{Duration, Instant};
use steward_testgrid::Grid;

/// Runs `t=start-deep-check` on gateway 2: a warm-up operation on
/// `warm_cap`, then the measured one on `cap`, both retained (as a client
/// that has not collected them yet), and reads the gateway's VmRSS around
/// the second.
pub fn polling_api(
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
