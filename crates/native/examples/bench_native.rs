//! Checks per second on a loopback test grid: the native backend against
//! the gateway's `t=check` (both through the `Backend` trait).
//!
//! `cargo run --release -p steward-native --example bench_native -- [CHK] [SDMF]`
//! (default 300 CHK files and 40 SDMF files).
use futures::stream::{self, StreamExt};
use std::time::Instant;
use steward_backend::{Backend, CheckOptions};
use steward_cap::Cap;
use steward_gateway::{Gateway, GatewayOptions};
use steward_native::{NativeBackend, NativeOptions};
use steward_testgrid::{Grid, GridConfig};

fn rate(b: &dyn Backend, rt: &tokio::runtime::Runtime, caps: &[Cap], in_flight: usize) -> f64 {
    let t = Instant::now();
    let ok = rt.block_on(async {
        stream::iter(caps)
            .map(|c| b.check(c, CheckOptions::default()))
            .buffer_unordered(in_flight)
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await
    });
    assert_eq!(ok, caps.len(), "every check succeeded");
    caps.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (n_chk, n_sdmf) = (
        args.first().copied().unwrap_or(300),
        args.get(1).copied().unwrap_or(40),
    );
    let grid = Grid::start(GridConfig::default())?;
    let t = Instant::now();
    let mut caps = Vec::new();
    for i in 0..n_chk {
        let data = format!("bench object {i} {}", "x".repeat(100 + i)).into_bytes();
        caps.push(Cap::parse(&grid.upload(&data, "CHK")?)?);
    }
    let mut mutable = Vec::new();
    for i in 0..n_sdmf {
        let data = format!("bench mutable {i} {}", "y".repeat(100 + i)).into_bytes();
        mutable.push(Cap::parse(&grid.upload(&data, "SDMF")?)?);
    }
    println!(
        "uploaded {n_chk} CHK + {n_sdmf} SDMF in {:.1?}",
        t.elapsed()
    );
    let rt = tokio::runtime::Runtime::new()?;
    let gateway = Gateway::new(
        GatewayOptions {
            urls: vec![grid.gateway_url()],
            ..Default::default()
        },
        sched(),
    )?;
    let native =
        NativeBackend::from_node_dir(grid.gateway_dir(), NativeOptions::default(), &sched())?;
    // Warm up connections.
    rate(&native, &rt, &caps[..5.min(caps.len())], 4);
    rate(&gateway, &rt, &caps[..5.min(caps.len())], 4);
    for (name, set) in [("CHK", &caps), ("SDMF", &mutable)] {
        if set.is_empty() {
            continue;
        }
        for n in [1, 8, 32] {
            println!(
                "{name}: gateway t=check, {n:>2} in flight: {:7.1} checks/s",
                rate(&gateway, &rt, set, n)
            );
        }
        for n in [1, 8, 32, 128] {
            println!(
                "{name}: native,          {n:>3} in flight: {:7.1} checks/s",
                rate(&native, &rt, set, n)
            );
        }
    }
    println!(
        "native: {:?} requests over {:?} TLS connections per server",
        native.requests_sent(),
        native.connections_made()
    );
    Ok(())
}

/// A scheduler of its own for each backend a test makes.
fn sched() -> std::sync::Arc<steward_backend::Scheduler> {
    steward_backend::Scheduler::new(4096)
}
