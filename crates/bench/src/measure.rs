//! Running one measured command: wall time, the child's own rusage (from
//! `wait4`), the CPU time each Tahoe node spent meanwhile (from
//! `/proc/<pid>/stat`), the bench process's own CPU (proxies, synthetic
//! gateway) and how busy the whole box was (`/proc/stat`).

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// What a Tahoe process is, found from its command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Introducer,
    Storage(usize),
    Gateway(usize),
}

/// Tahoe processes of a grid with their roles.
#[derive(Clone, Debug, Default)]
pub struct Procs(pub Vec<(Role, u32)>);

impl Procs {
    /// Maps `grid.pids()` to roles through each process's command line
    /// (`tahoe run <base>/storage3`, `.../gateway0`, `.../introducer`).
    pub fn of(grid: &steward_testgrid::Grid) -> Result<Procs> {
        let mut out = Vec::new();
        for pid in grid.pids() {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .with_context(|| format!("reading /proc/{pid}/cmdline"))?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let dir = args
                .iter()
                .rev()
                .find(|a| a.starts_with('/'))
                .cloned()
                .unwrap_or_default();
            let name = Path::new(&dir)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let role = if name == "introducer" {
                Role::Introducer
            } else if let Some(i) = name.strip_prefix("storage") {
                Role::Storage(i.parse()?)
            } else if let Some(i) = name.strip_prefix("gateway") {
                Role::Gateway(i.parse()?)
            } else {
                bail!("pid {pid}: cannot tell the role of {args:?}");
            };
            out.push((role, pid));
        }
        out.sort();
        Ok(Procs(out))
    }

    pub fn gateway(&self, i: usize) -> Option<u32> {
        self.0
            .iter()
            .find(|(r, _)| *r == Role::Gateway(i))
            .map(|(_, p)| *p)
    }

    pub(crate) fn cpu(&self) -> Vec<(Role, f64)> {
        self.0
            .iter()
            .map(|(r, p)| (*r, proc_cpu_secs(*p).unwrap_or(0.0)))
            .collect()
    }
}

pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all its threads), in seconds.
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 (state) is f[0]; utime is field 14.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clk_tck())
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`).
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// (busy, total) jiffies of all CPUs from `/proc/stat`.
pub(crate) fn box_ticks() -> (u64, u64) {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is already counted in user.
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub(crate) fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Waits for our child `pid` with `wait4`: its exit code (128 + the signal
/// that killed it) and its resource usage. The caller must not wait on
/// its `Child` again.
pub(crate) fn wait4(pid: u32) -> Result<(i32, libc::rusage)> {
    let pid = pid as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 on our own child; fills status and rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, ru))
}

/// One measured run of a command.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub wall: f64,
    /// The child's user + system CPU seconds (`wait4` rusage).
    pub cpu: f64,
    /// The child's peak RSS in kB (see `peak_rss_kb`).
    pub maxrss_kb: u64,
    /// Exit code (or 128 + signal).
    pub status: i32,
    /// CPU seconds each Tahoe process spent during the run.
    pub procs: Vec<(Role, f64)>,
    /// CPU seconds of the bench process itself (delaying proxies,
    /// synthetic gateway) during the run.
    pub bench_cpu: f64,
    /// Busy fraction of all CPUs of the box during the run (0..1).
    pub box_busy: f64,
    /// The command's standard output ([`Out::Capture`]), or its last line.
    pub stdout: String,
    /// Non-empty lines of standard output (stats units not counted).
    pub stdout_lines: u64,
    /// The last lines of standard error (up to 4 KB).
    pub stderr_tail: String,
}

impl Sample {
    pub fn gateways_cpu(&self) -> f64 {
        self.sum(|r| matches!(r, Role::Gateway(_)))
    }
    pub fn gateway_cpu(&self, i: usize) -> f64 {
        self.sum(|r| r == Role::Gateway(i))
    }
    pub fn storage_cpu(&self) -> f64 {
        self.sum(|r| matches!(r, Role::Storage(_)))
    }
    fn sum(&self, f: impl Fn(Role) -> bool) -> f64 {
        // + 0.0: an empty float sum is -0.0.
        self.procs
            .iter()
            .filter(|(r, _)| f(*r))
            .map(|(_, c)| c)
            .sum::<f64>()
            + 0.0
    }
}

/// Where a measured command's standard output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// Kept in [`Sample::stdout`] (for small outputs).
    Capture,
    /// Only its line count is kept ([`Sample::stdout_lines`]).
    CountLines,
}

/// Limits on a measured run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Kill the command after this long.
    pub timeout: Duration,
    /// Kill it if its standard output has not grown for this long (for
    /// commands that print progress as they go).
    pub stall: Option<Duration>,
}

/// Runs `cmd` to completion (killed when `limits` say so), stdin closed,
/// stdout to a temporary file, stderr to `stderr_log`. Fails if it exits
/// non-zero and `ok_codes` does not list the code. Commands are shown
/// without their arguments (which hold caps) in errors.
pub fn run(
    cmd: &mut Command,
    procs: &Procs,
    stderr_log: &Path,
    limits: Limits,
    ok_codes: &[i32],
    out: Out,
) -> Result<Sample> {
    let timeout = limits.timeout;
    let desc = format!(
        "{} {}",
        Path::new(cmd.get_program())
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        cmd.get_args()
            .map(|a| steward_cap::redact(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out_file = tempfile::tempfile().context("temporary stdout file")?;
    let err_file = fs::File::create(stderr_log)
        .with_context(|| format!("creating {}", stderr_log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out_file.try_clone()?)
        .stderr(err_file);

    let before = procs.cpu();
    let self_before = self_cpu_secs();
    let self_hwm = proc_status_kb(std::process::id(), "VmHWM").unwrap_or(0);
    let box_before = box_ticks();
    let t0 = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {desc}"))?;
    let pid = child.id() as libc::pid_t;
    // Watchdog: kill the child if it outlives the timeout, or stalls; and
    // sample its VmHWM (see `peak` below).
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watched = out_file.try_clone()?;
    let stall = limits.stall;
    let hwm = Arc::new(AtomicU64::new(0));
    let hwm_w = hwm.clone();
    let watchdog = thread::spawn(move || {
        let start = Instant::now();
        let mut last_len = 0u64;
        let mut last_change = Instant::now();
        loop {
            if let Some(kb) = proc_status_kb(pid as u32, "VmHWM") {
                hwm_w.fetch_max(kb, Ordering::Relaxed);
            }
            match done_rx.recv_timeout(Duration::from_millis(10)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return None,
            }
            let len = watched.metadata().map(|m| m.len()).unwrap_or(0);
            if len != last_len {
                last_len = len;
                last_change = Instant::now();
            }
            let why = if start.elapsed() > timeout {
                Some(format!("did not finish within {timeout:?}"))
            } else {
                stall
                    .filter(|s| last_change.elapsed() > *s)
                    .map(|s| format!("printed nothing for {s:?} (stalled)"))
            };
            if why.is_some() {
                // SAFETY: plain kill(2) of our own, not yet reaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return why;
            }
        }
    });
    let waited = wait4(pid as u32);
    let wall = t0.elapsed().as_secs_f64();
    let _ = done_tx.send(());
    let killed = watchdog.join().unwrap_or(None);
    // The child is reaped; `Child` must not be waited on again.
    std::mem::forget(child);
    let (code, ru) = waited.with_context(|| format!("waiting for {desc}"))?;
    let after = procs.cpu();
    let self_after = self_cpu_secs();
    let box_after = box_ticks();
    let (stdout, stdout_lines) = {
        use std::io::{BufRead, Read, Seek};
        let mut f = out_file;
        f.rewind()?;
        match out {
            Out::Capture => {
                let mut s = Vec::new();
                f.read_to_end(&mut s)?;
                let s = String::from_utf8_lossy(&s).into_owned();
                let n = s.lines().filter(|l| !l.trim().is_empty()).count() as u64;
                (s, n)
            }
            Out::CountLines => {
                let mut n = 0u64;
                let mut last = String::new();
                for line in std::io::BufReader::new(f).lines() {
                    let line = line?;
                    // steward's manifest ends with a stats unit, which
                    // names no object.
                    let stats =
                        line.contains("\"type\":\"stats\"") || line.contains("\"type\": \"stats\"");
                    if !line.trim().is_empty() && !stats {
                        n += 1;
                        last = line;
                    }
                }
                (last, n)
            }
        }
    };
    if let Some(why) = killed {
        bail!(
            "{desc} {why}: killed after {wall:.0} s, stdout ended with {:?}; stderr in {}",
            stdout.lines().last().unwrap_or(""),
            stderr_log.display()
        );
    }
    if code != 0 && !ok_codes.contains(&code) {
        let err = fs::read_to_string(stderr_log).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{desc} exited with {code}\nstdout tail: {}\nstderr tail:\n{}",
            stdout.lines().rev().take(5).collect::<Vec<_>>().join(" | "),
            tail.join("\n")
        );
    }
    // Tahoe's CLI reports a traversal that its node abandoned (for
    // instance `deep-check --repair` stopping at an unrecoverable file)
    // with an `ERROR:` line, not always with an exit code of its own: such
    // a run did not do the work it is compared on.
    let err = fs::read_to_string(stderr_log).unwrap_or_default();
    if let Some(line) = err.lines().find(|l| l.starts_with("ERROR:")) {
        bail!(
            "{desc} stopped early (exit {code}): {}",
            line.chars().take(300).collect::<String>()
        );
    }
    let procs_cpu = before
        .iter()
        .zip(&after)
        .map(|((r, a), (_, b))| (*r, (b - a).max(0.0)))
        .collect();
    let (busy, total) = (
        box_after.0.saturating_sub(box_before.0),
        box_after.1.saturating_sub(box_before.1),
    );
    Ok(Sample {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kb: peak_rss_kb(ru.ru_maxrss as u64, self_hwm, hwm.load(Ordering::Relaxed)),
        status: code,
        procs: procs_cpu,
        bench_cpu: (self_after - self_before).max(0.0),
        box_busy: if total > 0 {
            busy as f64 / total as f64
        } else {
            0.0
        },
        stdout,
        stdout_lines,
        stderr_tail: tail_of(&err, 4096).to_string(),
    })
}

/// The last `max` bytes of `s` or fewer, starting at a line.
fn tail_of(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = s.len() - max;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    match s[at..].find('\n') {
        Some(i) => &s[at + i + 1..],
        None => &s[at..],
    }
}

/// The child's own peak RSS. Linux folds the parent's high-water mark into
/// a child's `ru_maxrss` when the child execs (`exec_mmap` records the
/// forked copy of the parent's memory), so `ru_maxrss` is exact only when
/// it exceeds what this process had at spawn time; otherwise the child's
/// `VmHWM`, sampled every 10 ms while it ran, is used.
fn peak_rss_kb(ru_maxrss: u64, parent_hwm_at_spawn: u64, sampled_hwm: u64) -> u64 {
    if ru_maxrss > parent_hwm_at_spawn {
        ru_maxrss
    } else {
        sampled_hwm
    }
}

/// Median of `xs` (mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The run whose wall time is the median (the lower middle one for an even
/// count), so that all its figures (CPU split, RSS) come from one run.
pub fn median_sample(samples: &[Sample]) -> &Sample {
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    idx.sort_by(|&a, &b| {
        samples[a]
            .wall
            .partial_cmp(&samples[b].wall)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    &samples[idx[(idx.len() - 1) / 2]]
}

/// "N objects checked" (Tahoe's and steward's deep-check summary line).
pub fn objects_checked(stdout: &str) -> Option<u64> {
    stdout.lines().rev().find_map(|l| {
        let l = l.trim();
        let l = l.strip_prefix("done:").unwrap_or(l).trim();
        let (n, rest) = l.split_once(' ')?;
        if rest.starts_with("objects checked") {
            n.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_summaries() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let s = |w: f64| Sample {
            wall: w,
            ..Default::default()
        };
        let v = vec![s(5.0), s(1.0), s(3.0), s(4.0)];
        assert_eq!(median_sample(&v).wall, 3.0);
        assert_eq!(
            objects_checked(
                "1200 objects checked..\ndone: 1234 objects checked, 1234 healthy, 0 unhealthy\n"
            ),
            Some(1234)
        );
        assert_eq!(objects_checked("done: 17 objects checked\n pre-repair: 10 healthy, 7 unhealthy\n 7 repairs attempted, 7 successful, 0 failed\n post-repair: 17 healthy, 0 unhealthy"), Some(17));
        assert_eq!(objects_checked("nothing"), None);
        // ru_maxrss is trusted only above the parent's high-water mark.
        assert_eq!(peak_rss_kb(50_000, 30_000, 45_000), 50_000);
        assert_eq!(peak_rss_kb(30_000, 30_000, 9_000), 9_000);
    }

    #[test]
    fn run_measures_a_child() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("err");
        let s = run(
            // Long enough to be sampled: a child that ends within the
            // first 10 ms sampling period can have no peak of its own
            // known (see peak_rss_kb); every measured tool runs longer.
            Command::new("sh").args(["-c", "echo one; echo two; echo oops >&2; sleep 0.2"]),
            &Procs::default(),
            &log,
            Limits {
                timeout: Duration::from_secs(10),
                stall: None,
            },
            &[],
            Out::Capture,
        )
        .unwrap();
        assert_eq!(s.stdout_lines, 2);
        assert_eq!(s.status, 0);
        assert!(s.maxrss_kb > 0);
        assert_eq!(fs::read_to_string(&log).unwrap().trim(), "oops");
        let err = run(
            Command::new("sh").args(["-c", "sleep 30"]),
            &Procs::default(),
            &log,
            Limits {
                timeout: Duration::from_secs(30),
                stall: Some(Duration::from_millis(300)),
            },
            &[],
            Out::CountLines,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("stalled"), "{err:#}");
        let err = run(
            Command::new("sh").args(["-c", "exit 3"]),
            &Procs::default(),
            &log,
            Limits {
                timeout: Duration::from_secs(10),
                stall: None,
            },
            &[1],
            Out::Capture,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("exited with 3"), "{err:#}");
        // An accepted exit code with Tahoe's `ERROR:` line is a failed run.
        let err = run(
            Command::new("sh").args(["-c", "echo 'ERROR: NotEnoughSharesError(x)' >&2; exit 1"]),
            &Procs::default(),
            &log,
            Limits {
                timeout: Duration::from_secs(10),
                stall: None,
            },
            &[1],
            Out::Capture,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("stopped early"), "{err:#}");
    }
}
