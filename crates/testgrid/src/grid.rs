//! The running grid, [`Grid`]: its nodes and ports, waiting until every
//! gateway sees every running storage server, where things are (URLs,
//! node directories, pids), and stopping it all (also on drop). Starting
//! and reopening one are in [`crate::start`] and [`crate::open`].

use crate::cfg::furl_port;
use crate::node::{stop_nodes, Node};
use crate::shape::{GridConfig, OpenOptions};
use crate::spawn;
use crate::start::START_TIMEOUT;
use anyhow::{anyhow, Context, Result};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// A running local grid. See the crate documentation.
pub struct Grid {
    pub(crate) base: PathBuf,
    pub(crate) tmp: Option<tempfile::TempDir>,
    pub(crate) tahoe: PathBuf,
    pub(crate) needed: u8,
    pub(crate) happy: u8,
    pub(crate) total: u8,
    pub(crate) introducer: Node,
    pub(crate) storage: Vec<Node>,
    pub(crate) storage_ports: Vec<u16>,
    pub(crate) gateways: Vec<Node>,
    pub(crate) web_ports: Vec<u16>,
    pub(crate) http: Option<reqwest::blocking::Client>,
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Grid>();
    is::<GridConfig>();
    is::<OpenOptions>();
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grid")
            .field("base", &self.base)
            .field("storage_ports", &self.storage_ports)
            .field("web_ports", &self.web_ports)
            .finish_non_exhaustive()
    }
}

impl Grid {
    /// Starts the introducer, points every other node at its FURL, starts
    /// them and waits for the grid to connect. `old_furl_mtime`: when the
    /// introducer's `private/introducer.furl` was last written before this
    /// start (a reopened grid has one), so that only a rewritten one counts.
    /// Returns the FURL.
    pub(crate) fn boot(&self, old_furl_mtime: Option<std::time::SystemTime>) -> Result<String> {
        self.introducer.start(&self.tahoe)?;
        let furl = self.wait_introducer(old_furl_mtime)?;
        let yaml = format!("introducers:\n  default:\n    furl: '{furl}'\n");
        for n in self.storage.iter().chain(&self.gateways) {
            let path = n.dir.join("private").join("introducers.yaml");
            let holds_furl = fs::read_to_string(&path).is_ok_and(|t| {
                t.lines().any(|l| {
                    l.trim()
                        .trim_start_matches("furl:")
                        .trim()
                        .trim_matches('\'')
                        == furl
                })
            });
            if !holds_furl {
                fs::write(&path, &yaml)
                    .with_context(|| format!("writing introducers.yaml of {}", n.name))?;
            }
        }
        for n in self.storage.iter().chain(&self.gateways) {
            n.start(&self.tahoe)?;
        }
        self.wait_connected(START_TIMEOUT)?;
        Ok(furl)
    }

    fn fail(&self, node: &Node, what: String) -> anyhow::Error {
        let msg = format!("{what}\n{}", node.logs_tail());
        eprintln!("steward-testgrid: {msg}");
        anyhow!(msg)
    }

    fn check_alive(&self) -> Result<()> {
        for n in std::iter::once(&self.introducer)
            .chain(&self.storage)
            .chain(&self.gateways)
        {
            if let Some(st) = n.exited() {
                return Err(self.fail(n, format!("{} exited unexpectedly: {st}", n.name)));
            }
        }
        Ok(())
    }

    /// Waits until the introducer has (re)written its FURL file (a write
    /// newer than `old_mtime`, if given) and accepts connections on its
    /// port; returns the FURL.
    fn wait_introducer(&self, old_mtime: Option<std::time::SystemTime>) -> Result<String> {
        let path = self.introducer.dir.join("private").join("introducer.furl");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut furl = None;
        loop {
            if furl.is_none() {
                let fresh = match old_mtime {
                    None => true,
                    Some(old) => fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| m != old),
                };
                if let Some(text) = fresh.then(|| fs::read_to_string(&path).ok()).flatten() {
                    let f = text.trim();
                    if text.ends_with('\n') && f.starts_with("pb://") && f.contains('@') {
                        furl = Some(f.to_string());
                    }
                }
            }
            if let Some(f) = &furl {
                if let Some(port) = furl_port(f) {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                        return Ok(f.clone());
                    }
                } else {
                    // Not a plain loopback hint: nothing to poll.
                    return Ok(f.clone());
                }
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(self.fail(
                    &self.introducer,
                    format!(
                        "introducer wrote no fresh {} or did not listen within {START_TIMEOUT:?}",
                        path.display()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until every gateway sees every *running* storage node
    /// connected, and none of the stopped ones.
    pub fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let mut pending: Option<(usize, String)> = None;
            for (g, url) in self.gateway_urls().iter().enumerate() {
                match self.server_status(url) {
                    Ok(st) => {
                        for (i, n) in self.storage.iter().enumerate() {
                            let running = n.is_running();
                            let connected = st
                                .get(&format!("s{i}"))
                                .map(|s| s.to_ascii_lowercase().starts_with("connected"));
                            let ok = if running {
                                connected == Some(true)
                            } else {
                                connected != Some(true)
                            };
                            if !ok && pending.is_none() {
                                pending = Some((
                                    g,
                                    format!(
                                        "gateway {g} sees storage node {i} ({}) as {:?}",
                                        if running { "running" } else { "stopped" },
                                        st.get(&format!("s{i}"))
                                    ),
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        if pending.is_none() {
                            pending =
                                Some((g, format!("gateway {g} web API not answering: {e:#}")));
                        }
                    }
                }
            }
            let Some((g, why)) = pending else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(self.fail(
                    &self.gateways[g],
                    format!("grid not ready after {timeout:?}: {why}"),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn client(&self) -> &reqwest::blocking::Client {
        self.http.as_ref().expect("HTTP client present until drop")
    }

    /// `http://127.0.0.1:PORT/` of gateway 0.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.web_ports[0])
    }

    /// Web-API URLs of all gateways, each ending in `/`.
    pub fn gateway_urls(&self) -> Vec<String> {
        self.web_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/"))
            .collect()
    }

    /// Node directory of gateway 0 (`node.url`, `private/aliases`,
    /// `private/secret`, `private/introducer_default_cache.yaml`).
    pub fn gateway_dir(&self) -> &Path {
        &self.gateways[0].dir
    }

    /// Node directory of gateway `i`.
    pub fn gateway_dir_at(&self, i: usize) -> &Path {
        &self.gateways[i].dir
    }

    /// Node directory of storage node `i`.
    pub fn storage_dir(&self, i: usize) -> PathBuf {
        self.storage[i].dir.clone()
    }

    /// Real (listening) port of storage node `i`.
    pub fn storage_port(&self, i: usize) -> u16 {
        self.storage_ports[i]
    }

    /// Number of storage nodes.
    pub fn storage_nodes(&self) -> usize {
        self.storage.len()
    }

    /// Encoding parameters `(needed, happy, total)`.
    pub fn encoding(&self) -> (u8, u8, u8) {
        (self.needed, self.happy, self.total)
    }

    /// Directory holding all node directories.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// Pids of the `tahoe run` processes currently running.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(&self.introducer)
            .chain(&self.storage)
            .chain(&self.gateways)
            .filter_map(Node::pid)
            .collect()
    }

    /// Stops every process of this grid (idempotent). The temporary base
    /// directory, if any, is removed on drop.
    pub fn stop(&mut self) {
        let nodes: Vec<&Node> = self
            .gateways
            .iter()
            .chain(&self.storage)
            .chain(std::iter::once(&self.introducer))
            .collect();
        stop_nodes(&nodes);
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        self.stop();
        // reqwest::blocking::Client panics when dropped inside an async
        // runtime; drop it on a plain thread instead.
        if let Some(c) = self.http.take() {
            let _ = thread::spawn(move || drop(c)).join();
        }
        if let Some(t) = self.tmp.take() {
            spawn::unregister_dir(t.path());
            let _ = t.close();
        }
    }
}

pub(crate) fn http_client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .context("building the HTTP client")
}
