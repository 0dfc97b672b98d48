//! A throwaway PostgreSQL server for tests and benchmarks, as
//! `steward-testgrid` is for Tahoe-LAFS: started by the test itself from the
//! machine's own PostgreSQL server binaries, on a free loopback port, and
//! removed afterwards.
//!
//! This crate owns:
//!
//! * finding the server binaries ([`bin_dir`]): `$STEWARD_PG_BIN`, then
//!   `initdb` on `PATH` (a symlink is followed to its real directory), then
//!   Debian's `/usr/lib/postgresql/VERSION/bin` (newest first) and
//!   `/usr/local/pgsql/bin`. Where there are none, starting fails with one
//!   line naming the package to install (`postgresql`): a test that needs a
//!   database fails, it never passes silently;
//! * the cluster ([`TestPg::start`]): `initdb -A trust -U steward` into a
//!   fresh temporary directory, then the `postgres` server listening on
//!   `127.0.0.1:PORT` only, its Unix socket inside the data directory.
//!   `initdb` refuses to run as root, so when the test runs as root (CI
//!   does) both run as an unprivileged user: `$STEWARD_TESTPG_USER`, else
//!   the `postgres` system user where the distribution made one, else
//!   `nobody`; the directory is given to that user;
//! * databases, one per test ([`TestPg::fresh_database`]), and a `psql`
//!   for tests to look inside ([`TestPg::psql`]);
//! * stopping and starting the server again on the same port and data
//!   ([`TestPg::stop`], [`TestPg::start_again`], [`TestPg::restart`]: a
//!   fast shutdown, as `pg_ctl restart -m fast` does), to test clients
//!   that lose their connection;
//! * tearing down: on drop (also while a test panics) the server gets a
//!   fast shutdown, then `SIGKILL` if it lingers, and the directory is
//!   removed.
//!
//! # Why `postgres` directly, not `pg_ctl start`
//!
//! `pg_ctl start` detaches the server, which would then outlive a test
//! killed with `kill -9` or a [`TestPg`] kept in a `static`. The server is
//! instead a child of this process, forked from `steward-testgrid`'s
//! spawner thread with `PR_SET_PDEATHSIG = SIGKILL`, in its own process
//! group (see [`steward_testgrid::spawn`]): it dies with the test process
//! however that ends, its backends follow it (they watch the postmaster),
//! and directories left by dead processes are swept by the next
//! [`TestPg::start`].
//!
//! Everything here is blocking; from async code call it in
//! `spawn_blocking` (dropping is fine anywhere).

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use steward_testgrid::spawn;

/// The superuser role of every test cluster (trust authentication, no
/// password, loopback only).
pub const SUPERUSER: &str = "steward";

/// How long the server may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

const TEMP_PREFIX: &str = "steward-testpg-";
const OWNER_FILE: &str = "steward-testpg.owner";

/// What to install when there are no server binaries.
pub const MISSING: &str = "no PostgreSQL server binaries (initdb, postgres) in $STEWARD_PG_BIN, on PATH or in /usr/lib/postgresql/*/bin: install the package `postgresql` (apt-get install postgresql), or set STEWARD_PG_BIN to their directory";

/// The directory holding `initdb` and `postgres` (see the module doc).
pub fn bin_dir() -> Result<PathBuf> {
    find_bin_dir(
        std::env::var_os("STEWARD_PG_BIN").map(PathBuf::from),
        std::env::var_os("PATH").unwrap_or_default(),
        Path::new("/usr/lib/postgresql"),
        Path::new("/usr/local/pgsql/bin"),
    )
}

fn find_bin_dir(
    explicit: Option<PathBuf>,
    path: std::ffi::OsString,
    debian: &Path,
    local: &Path,
) -> Result<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = explicit {
        if has_server(&d) {
            return Ok(d);
        }
        bail!("{MISSING} (STEWARD_PG_BIN={} has none)", d.display());
    }
    for dir in std::env::split_paths(&path) {
        if let Ok(real) = dir.join("initdb").canonicalize() {
            if let Some(d) = real.parent().filter(|d| has_server(d)) {
                return Ok(d.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|(_, d)| d)
        .chain([local.to_path_buf()])
        .find(|d| has_server(d))
        .ok_or_else(|| anyhow!(MISSING))
}

/// The unprivileged account the server runs as when we are root.
#[derive(Clone, Debug)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

fn lookup_user(name: &str) -> Option<Account> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we
    // copy the two ids out at once (tests start servers one at a time per
    // thread; the ids are read before any other call could overwrite it).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null pointer from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    (uid != 0).then(|| Account {
        name: name.to_string(),
        uid,
        gid,
    })
}

fn server_account() -> Result<Option<Account>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    if let Ok(name) = std::env::var("STEWARD_TESTPG_USER") {
        return lookup_user(&name).map(Some).ok_or_else(|| {
            anyhow!("STEWARD_TESTPG_USER={name} is not an unprivileged user of this machine: name another, or unset it")
        });
    }
    ["postgres", "nobody"]
        .into_iter()
        .find_map(lookup_user)
        .map(Some)
        .ok_or_else(|| anyhow!("running as root and neither a `postgres` nor a `nobody` user exists for initdb (which refuses root): create an unprivileged user and set STEWARD_TESTPG_USER to it"))
}

/// How to start a [`TestPg`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Keep PostgreSQL's durability (`fsync`, full page writes, synchronous
    /// commits), as a production server has it: for benchmarks. Tests run
    /// without, which is faster and loses nothing unless the machine
    /// crashes.
    pub durable: bool,
}

/// A running throwaway PostgreSQL server (see the module doc).
pub struct TestPg {
    bin: PathBuf,
    base: PathBuf,
    data: PathBuf,
    port: u16,
    account: Option<Account>,
    options: Options,
    server: Mutex<Option<Child>>,
    next_db: AtomicU32,
    _tmp: tempfile::TempDir,
}

impl TestPg {
    /// Starts a server for tests (see [`Options`]).
    pub fn start() -> Result<TestPg> {
        Self::start_with(Options::default())
    }

    /// One server for the whole test process, started on first use; it
    /// dies with the process. Panics with the one-line reason when no
    /// server can be started.
    pub fn shared() -> &'static TestPg {
        static SHARED: OnceLock<TestPg> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("{e:#}")))
    }

    pub fn start_with(options: Options) -> Result<TestPg> {
        let bin = bin_dir()?;
        let account = server_account()?;
        spawn::sweep_stale_tempdirs(TEMP_PREFIX, OWNER_FILE);
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir()
            .context("creating a temporary PostgreSQL directory")?;
        fs::write(tmp.path().join(OWNER_FILE), std::process::id().to_string())?;
        spawn::register_dir(tmp.path());
        let base = tmp.path().canonicalize()?;
        if let Some(a) = &account {
            chown(&base, a)?;
        }
        let data = base.join("data");
        let mut pg = TestPg {
            bin,
            base,
            data,
            port: 0,
            account,
            options,
            server: Mutex::new(None),
            next_db: AtomicU32::new(0),
            _tmp: tmp,
        };
        pg.initdb()?;
        // A free port may be taken by another process before the server
        // binds it: then try again on another.
        let mut attempt = 1;
        loop {
            pg.port = steward_testgrid::free_port();
            match pg.start_again() {
                Ok(()) => return Ok(pg),
                Err(e) if attempt < 3 && format!("{e:#}").contains("already in use") => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A command run as the server's account, in the base directory, with
    /// no `PG*` variables of ours leaking in.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.base)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        if let Some(a) = &self.account {
            cmd.uid(a.uid).gid(a.gid);
        }
        cmd
    }

    fn initdb(&self) -> Result<()> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.data).args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if !self.options.durable {
            cmd.arg("--no-sync");
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", self.bin.join("initdb").display()))?;
        if !out.status.success() {
            bail!(
                "initdb{} failed: {}",
                self.account
                    .as_ref()
                    .map(|a| format!(" (as {})", a.name))
                    .unwrap_or_default(),
                last_line(&String::from_utf8_lossy(&out.stderr))
            );
        }
        Ok(())
    }

    /// The server's log (startup errors, shutdowns).
    pub fn log_path(&self) -> PathBuf {
        self.base.join("postgres.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The process id of the running server (the postmaster; its backends
    /// and helpers are its children), for measuring its CPU from `/proc`.
    pub fn server_pid(&self) -> Option<u32> {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.id())
    }

    /// The URL of database `db` (`postgres://steward@127.0.0.1:PORT/db`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database of a new name and returns its URL.
    pub fn fresh_database(&self) -> Result<String> {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("test{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs `sql` in database `db` with `psql` and returns what it printed
    /// (unaligned, tuples only: one row a line, columns split by `|`).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let psql = [self.bin.join("psql"), PathBuf::from("psql")]
            .into_iter()
            .find(|p| p.is_file() || p.as_os_str() == "psql")
            .expect("a psql candidate");
        let out = Command::new(&psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", db, "-c", sql])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", psql.display()))?;
        if !out.status.success() {
            bail!(
                "psql {sql:?} failed: {}",
                last_line(&String::from_utf8_lossy(&out.stderr))
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the server (again) on the same port and data, and waits until
    /// it accepts connections. Does nothing if it runs.
    pub fn start_again(&self) -> Result<()> {
        let mut g = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_some() {
            return Ok(());
        }
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the PostgreSQL log")?;
        let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(&self.data);
        cmd.args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.data);
        cmd.args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=100",
        ]);
        cmd.args(["-c", "shared_buffers=32MB", "-c", "logging_collector=off"]);
        if !self.options.durable {
            cmd.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
            cmd.args(["-c", "synchronous_commit=off"]);
        }
        cmd.stdout(log.try_clone()?).stderr(log);
        let mut child = spawn::spawn(cmd)
            .with_context(|| format!("starting {}", self.bin.join("postgres").display()))?;
        spawn::register_pid(child.id());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                spawn::unregister_pid(child.id());
                let text = fs::read_to_string(self.log_path()).unwrap_or_default();
                let tail = text.get(log_len as usize..).unwrap_or(&text);
                bail!(
                    "postgres on port {} exited ({status}): {}",
                    self.port,
                    last_line(tail)
                );
            }
            if self.accepts_connections() {
                *g = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                bail!(
                    "postgres on port {} did not accept connections within {START_TIMEOUT:?} (log: {})",
                    self.port,
                    self.log_path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn accepts_connections(&self) -> bool {
        // postmaster.pid's 8th line is the server's state; "ready" once it
        // accepts connections (what `pg_ctl -w` waits for).
        let ready = fs::read_to_string(self.data.join("postmaster.pid"))
            .map(|t| t.lines().nth(7).map(str::trim) == Some("ready"))
            .unwrap_or(false);
        ready && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Stops the server (a fast shutdown: clients are disconnected, what
    /// was committed stays). Does nothing if it is stopped.
    pub fn stop(&self) -> Result<()> {
        let mut g = self.server.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = g.take() else {
            return Ok(());
        };
        // SAFETY: our child, not reaped yet: its pid is still ours.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                kill_group(&mut child);
                bail!("postgres did not shut down within 30 s: killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its backends and helpers exited before it did.
        spawn::unregister_pid(child.id());
        Ok(())
    }

    /// A fast shutdown and a start on the same port and data, as
    /// `pg_ctl restart -m fast`.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("steward-testpg: {e:#}");
        }
        spawn::unregister_dir(self._tmp.path());
        // The TempDir removes the directory as root or as its owner.
    }
}

/// Kills a child that was not reaped yet, with its process group.
fn kill_group(child: &mut Child) {
    // SAFETY: plain kill(2) on our unreaped child's process group (= its
    // pid, still ours).
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.wait();
    spawn::unregister_pid(child.id());
}

fn chown(path: &Path, a: &Account) -> Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: chown(2) on a path we created.
    if unsafe { libc::chown(c.as_ptr(), a.uid, a.gid) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("giving {} to {}", path.display(), a.name));
    }
    Ok(())
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_binaries_fail_with_one_line_naming_the_package() {
        let nowhere = tempfile::tempdir().unwrap();
        let e = find_bin_dir(
            None,
            nowhere.path().as_os_str().to_owned(),
            nowhere.path(),
            nowhere.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("install the package `postgresql`"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = find_bin_dir(
            Some(nowhere.path().to_path_buf()),
            Default::default(),
            Path::new("/usr/lib/postgresql"),
            nowhere.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("STEWARD_PG_BIN="), "{e}");
    }

    #[test]
    fn finds_debian_versions_newest_first() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9", "15", "13", "notaversion"] {
            let bin = root.path().join(v).join("bin");
            fs::create_dir_all(&bin).unwrap();
            fs::write(bin.join("initdb"), "").unwrap();
            fs::write(bin.join("postgres"), "").unwrap();
        }
        let found = find_bin_dir(None, Default::default(), root.path(), root.path()).unwrap();
        assert_eq!(found, root.path().join("15").join("bin"));
    }
}
