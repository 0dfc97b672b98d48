//! The one thread that starts every child process of the harness.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not when the process does. Test threads come and go, so every child is
//! forked from one dedicated thread that lives as long as the process: the
//! children then get `SIGKILL` exactly when the process dies (normal exit,
//! abort, `kill -9`), and not before.
//!
//! Also the temporary directories of a harness: removed at a normal exit
//! ([`register_dir`]), and swept by the next harness start when a dead
//! process left them ([`sweep_stale_tempdirs`]).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

struct Request {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

fn spawner() -> &'static mpsc::Sender<Request> {
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("testgrid-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop never ends and
                // the thread only exits with the process.
                for Request { mut cmd, reply } in rx {
                    let _ = reply.send(spawn_here(&mut cmd));
                }
            })
            .expect("cannot start the testgrid spawner thread");
        tx
    })
}

fn spawn_here(cmd: &mut Command) -> io::Result<Child> {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    cmd.process_group(0);
    // SAFETY: the closure only calls async-signal-safe functions (prctl,
    // getppid, _exit) and allocates nothing on the success path.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then the
            // death signal will never come, so leave now.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd` from the spawner thread, in its own process group, with
/// `PR_SET_PDEATHSIG = SIGKILL`. The returned child may be waited on from
/// any thread.
pub fn spawn(cmd: Command) -> io::Result<Child> {
    let (reply, rx) = mpsc::channel();
    spawner()
        .send(Request { cmd, reply })
        .map_err(|_| io::Error::other("testgrid spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("testgrid spawner thread dropped the request"))?
}

/// What must not outlive a normal process exit even if its `Grid` is never
/// dropped (a `Grid` in a `static`): process groups to kill, then
/// temporary directories to delete, from an `atexit` handler. (Abnormal
/// deaths are covered by PDEATHSIG for processes and by the next
/// `Grid::start` sweeping for directories.)
#[derive(Default)]
struct Registry {
    pids: Vec<libc::pid_t>,
    dirs: Vec<std::path::PathBuf>,
}

static REGISTRY: std::sync::Mutex<Option<Registry>> = std::sync::Mutex::new(None);

fn with_registry(f: impl FnOnce(&mut Registry)) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // SAFETY: registering a plain extern "C" fn.
        unsafe {
            libc::atexit(at_exit);
        }
    });
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Registry::default));
}

pub fn register_pid(pid: u32) {
    with_registry(|r| r.pids.push(pid as libc::pid_t));
}

pub fn unregister_pid(pid: u32) {
    with_registry(|r| r.pids.retain(|&p| p != pid as libc::pid_t));
}

pub fn register_dir(dir: &std::path::Path) {
    with_registry(|r| r.dirs.push(dir.to_path_buf()));
}

pub fn unregister_dir(dir: &std::path::Path) {
    with_registry(|r| r.dirs.retain(|d| d != dir));
}

extern "C" fn at_exit() {
    // Never block or panic at exit: skip if another thread holds the lock.
    let Ok(mut g) = REGISTRY.try_lock() else {
        return;
    };
    let Some(r) = g.as_mut() else { return };
    for &pid in &r.pids {
        // SAFETY: these are our own children, not reaped yet, so their
        // pids (= process group ids) cannot have been reused.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    r.pids.clear();
    for d in r.dirs.drain(..) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Removes the temporary directories (`$TMPDIR/PREFIX*`) whose owning
/// process is gone: each holds a file `owner_file` with its owner's pid.
pub fn sweep_stale_tempdirs(prefix: &str, owner_file: &str) {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let dir = e.path();
        let Ok(owner) = std::fs::read_to_string(dir.join(owner_file)) else {
            continue;
        };
        let Ok(pid) = owner.trim().parse::<libc::pid_t>() else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks for existence.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
