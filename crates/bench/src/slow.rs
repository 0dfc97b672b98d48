//! The slow network: every storage node restarted behind a delaying
//! proxy ([`go_slow`]), checked from the gateways' own sockets
//! ([`remote_ports`]).

use crate::measure::Procs;
use crate::proxy;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};
use steward_testgrid::Grid;

/// Restarts every storage node advertising a delaying proxy as its
/// location, and waits until every gateway reaches every server through
/// its proxy only.
pub fn go_slow(
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
