//! Finding, or creating once, the Python virtualenv that holds Tahoe-LAFS.

use anyhow::{bail, Context, Result};
use std::env;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The Tahoe-LAFS release the harness installs.
pub const TAHOE_REQUIREMENT: &str = "tahoe-lafs==1.20.0";

/// Where the virtualenv lives, without creating it:
///
/// 1. `$STEWARD_TAHOE_VENV` if set;
/// 2. `<target dir>/tahoe-venv`, where the target dir is `$CARGO_TARGET_DIR`
///    if set (relative paths taken from the current directory), else the
///    nearest ancestor of the running executable that is named `target` or
///    holds a `CACHEDIR.TAG`, else `<dir>/target` for the nearest ancestor of
///    this crate's source directory (as compiled) that has a `target` dir;
/// 3. `$XDG_CACHE_HOME/steward/tahoe-venv` (or `~/.cache/steward/tahoe-venv`)
///    for an installed binary far from any cargo target dir.
pub fn venv_dir() -> Result<PathBuf> {
    if let Some(v) = env::var_os("STEWARD_TAHOE_VENV").filter(|v| !v.is_empty()) {
        return Ok(absolute(PathBuf::from(v)));
    }
    if let Some(t) = env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        return Ok(absolute(PathBuf::from(t)).join("tahoe-venv"));
    }
    if let Ok(exe) = env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.file_name().is_some_and(|n| n == "target") || dir.join("CACHEDIR.TAG").is_file()
            {
                return Ok(dir.join("tahoe-venv"));
            }
        }
    }
    for dir in Path::new(env!("CARGO_MANIFEST_DIR")).ancestors() {
        if dir.join("target").is_dir() {
            return Ok(dir.join("target").join("tahoe-venv"));
        }
    }
    let cache = env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("cannot choose a place for the Tahoe virtualenv: set STEWARD_TAHOE_VENV")?;
    Ok(cache.join("steward").join("tahoe-venv"))
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

/// Returns the virtualenv holding `tahoe-lafs==1.20.0`, creating it with
/// `python3 -m venv` and `pip install` (about 15 s, needs PyPI) if its
/// `bin/tahoe` is missing. See [`venv_dir`] for where it lives. The
/// interpreter used to create it is `$STEWARD_PYTHON`, default `python3`.
///
/// Several processes may call this at once: creation happens under an
/// exclusive `flock` on `<venv>.lock`, and the others wait for it.
pub fn venv() -> Result<PathBuf> {
    static DONE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = done.as_ref() {
        return Ok(p.clone());
    }
    let dir = venv_dir()?;
    let tahoe = dir.join("bin").join("tahoe");
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut lock_name = dir.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock_path = PathBuf::from(lock_name);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening lock file {}", lock_path.display()))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("locking {}", lock_path.display()));
    }
    if !tahoe.is_file() {
        create_venv(&dir)?;
    }
    drop(lock);
    *done = Some(dir.clone());
    Ok(dir)
}

fn create_venv(dir: &Path) -> Result<()> {
    if dir.exists() {
        // A half-made venv from an interrupted run: start over.
        fs::remove_dir_all(dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    let python = env::var_os("STEWARD_PYTHON").unwrap_or_else(|| "python3".into());
    run_quiet(
        Command::new(&python).arg("-m").arg("venv").arg(dir),
        "python3 -m venv",
    )?;
    let pip = dir.join("bin").join("pip");
    let res = run_quiet(
        Command::new(&pip).args([
            "install",
            "--disable-pip-version-check",
            "--quiet",
            TAHOE_REQUIREMENT,
        ]),
        "pip install tahoe-lafs",
    );
    if let Err(e) = res {
        let _ = fs::remove_dir_all(dir);
        return Err(e);
    }
    if !dir.join("bin").join("tahoe").is_file() {
        bail!(
            "pip install {TAHOE_REQUIREMENT} left no bin/tahoe in {}",
            dir.display()
        );
    }
    Ok(())
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        let msg = format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("steward-testgrid: {msg}");
        bail!(msg);
    }
    Ok(())
}

/// Path of the `tahoe` executable inside [`venv`] (creating the venv if
/// needed).
pub fn tahoe_bin() -> Result<PathBuf> {
    Ok(venv()?.join("bin").join("tahoe"))
}

/// The version of the `tahoe-lafs` distribution installed next to `tahoe`
/// (`<venv>/bin/tahoe`), from its `tahoe_lafs-VERSION.dist-info` directory;
/// `None` if that cannot be told.
pub(crate) fn installed_tahoe_version(tahoe: &Path) -> Option<String> {
    let venv = tahoe.parent()?.parent()?;
    for lib in fs::read_dir(venv.join("lib")).ok()?.flatten() {
        let Ok(rd) = fs::read_dir(lib.path().join("site-packages")) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(v) = name
                .strip_prefix("tahoe_lafs-")
                .and_then(|r| r.strip_suffix(".dist-info"))
            {
                return Some(v.to_string());
            }
        }
    }
    None
}
