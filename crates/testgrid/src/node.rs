//! One node's `tahoe run` process: starting it (through the spawner thread,
//! see [`crate::spawn`]), stopping it gently then by force, its log tail for
//! error messages, and what a previous run left in its directory (pid
//! files of dead or live processes). Also `tahoe create-*`, and the node
//! directories a grid of a given shape has.

use crate::shape::GridShape;
use crate::spawn;
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    /// Held so that `tahoe run` sees EOF (and exits) when we go away.
    stdin: Option<ChildStdin>,
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    proc: Mutex<Option<Proc>>,
}

impl Node {
    pub(crate) fn new(name: String, dir: PathBuf) -> Node {
        Node {
            name,
            dir,
            proc: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Proc>> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn start(&self, tahoe: &Path) -> Result<()> {
        let mut g = self.lock();
        if g.is_some() {
            return Ok(());
        }
        // Our own previous instance is dead (we reaped it); a stale pid file
        // could only confuse `tahoe run` if its pid got reused.
        let _ = fs::remove_file(self.dir.join("running.process"));
        let logs = self.dir.join("logs");
        fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(logs.join("run.log"))
            .context("opening run.log")?;
        let mut cmd = Command::new(tahoe);
        cmd.arg("run")
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = spawn::spawn(cmd)
            .with_context(|| format!("starting {} ({})", self.name, tahoe.display()))?;
        spawn::register_pid(child.id());
        let stdin = child.stdin.take();
        *g = Some(Proc { child, stdin });
        Ok(())
    }

    /// Asks the node to stop (closes its stdin, SIGTERM to its group).
    fn request_stop(&self) {
        let mut g = self.lock();
        if let Some(p) = g.as_mut() {
            p.stdin.take();
            // The child is not reaped yet, so its pid (= pgid) is still ours.
            // SAFETY: plain kill(2).
            unsafe {
                libc::kill(-(p.child.id() as libc::pid_t), libc::SIGTERM);
            }
        }
    }

    /// True once the node is stopped (reaps it if it exited).
    fn try_reap(&self) -> bool {
        let mut g = self.lock();
        match g.as_mut() {
            None => true,
            Some(p) => match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    spawn::unregister_pid(p.child.id());
                    *g = None;
                    true
                }
                Ok(None) => false,
            },
        }
    }

    fn kill_now(&self) {
        let mut g = self.lock();
        if let Some(mut p) = g.take() {
            // SAFETY: plain kill(2) on our own, not yet reaped, child's group.
            unsafe {
                libc::kill(-(p.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = p.child.wait();
            spawn::unregister_pid(p.child.id());
        }
    }

    /// `Some(status)` if the node was started and has exited on its own.
    pub(crate) fn exited(&self) -> Option<String> {
        let mut g = self.lock();
        let p = g.as_mut()?;
        match p.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|p| p.child.id())
    }

    pub(crate) fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    pub(crate) fn logs_tail(&self) -> String {
        let mut out = String::new();
        for f in ["logs/twistd.log", "logs/run.log"] {
            let path = self.dir.join(f);
            if let Ok(text) = fs::read_to_string(&path) {
                // Skip the access-log noise of our own readiness polling.
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("GET /?t=json"))
                    .collect();
                let tail = &lines[lines.len().saturating_sub(30)..];
                out.push_str(&format!(
                    "--- {} (last {} lines)\n",
                    path.display(),
                    tail.len()
                ));
                for l in tail {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        if out.is_empty() {
            out.push_str(&format!("(no logs in {}/logs)\n", self.dir.display()));
        }
        out
    }
}

/// Stops all `nodes`: stdin closed + SIGTERM, up to 5 s grace, then SIGKILL.
pub(crate) fn stop_nodes(nodes: &[&Node]) {
    for n in nodes {
        n.request_stop();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut all = true;
        for n in nodes {
            all &= n.try_reap();
        }
        if all {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    for n in nodes {
        n.kill_now();
    }
}

/// Starts `tahoe ARGS` (a `create-*` command) with its output captured.
pub(crate) fn run_create(tahoe: &Path, args: Vec<String>) -> Result<Child> {
    let mut cmd = Command::new(tahoe);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn::spawn(cmd).with_context(|| format!("running tahoe {}", args.join(" ")))
}

/// The node list of a grid of `shape` in `base` (nothing started).
pub(crate) fn grid_nodes(base: &Path, shape: &GridShape) -> (Node, Vec<Node>, Vec<Node>) {
    let introducer = Node::new("introducer".into(), base.join("introducer"));
    let storage = (0..shape.storage_nodes)
        .map(|i| {
            Node::new(
                format!("storage node {i}"),
                base.join(format!("storage{i}")),
            )
        })
        .collect();
    let gateways = (0..shape.gateways)
        .map(|i| Node::new(format!("gateway {i}"), base.join(format!("gateway{i}"))))
        .collect();
    (introducer, storage, gateways)
}

/// Deals with the pid file of `node` left by an earlier run: an error if
/// that `tahoe run` of this very directory is still alive, else removed
/// (Tahoe 1.20 would refuse to start over it if its pid now belongs to any
/// live process, zombies included, or if it is malformed).
pub(crate) fn clear_stale_pidfiles(node: &Node) -> Result<()> {
    let path = node.dir.join("running.process");
    if let Ok(text) = fs::read_to_string(&path) {
        let pid = text
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid.filter(|&p| p > 0 && process_runs_node(p, &node.dir)) {
            bail!(
                "{} ({}) is still running as pid {pid}: is this grid open elsewhere?",
                node.name,
                node.dir.display()
            );
        }
        fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    // Not written by `tahoe run` (it passes `--pidfile ''` to twistd), but
    // harmless to drop if some other way of running the node left one.
    let _ = fs::remove_file(node.dir.join("twistd.pid"));
    Ok(())
}

/// True if `pid` is a live (not zombie) process whose command line names
/// `dir` (i.e. `tahoe run DIR`).
fn process_runs_node(pid: u32, dir: &Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    if state.starts_with('Z') || state.starts_with('X') {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = dir.as_os_str().as_encoded_bytes();
    cmdline.split(|&b| b == 0).any(|arg| {
        let arg = arg.strip_suffix(b"/").unwrap_or(arg);
        arg == dir
    })
}
