//! Where units go: a file (created mode 0600, made durable on demand, cut
//! back to a checkpoint's length on resume) or standard output; and the
//! rules every file steward writes follows ([`open_private`],
//! [`create_temporary`], [`check_target`]).
//!
//! Units are written whole, one line each, through a buffer; [`Output::sync`]
//! flushes the buffer and (for a file) fsyncs it, and returns the length
//! that a checkpoint may then record. Anything past a recorded length is a
//! partial batch from a run that died, and [`Output::open_file`] cuts it off.
//!
//! # File safety
//!
//! Outputs, checkpoints, lock files and temporary files may hold caps, and
//! steward is run by root from cron in directories others can write to. So
//! every file steward writes is
//!
//! * a regular file or absent: a character device (`/dev/null`), a FIFO, a
//!   socket or a directory is refused before anything is done to it;
//! * never reached through a symlink: the path is checked with `lstat` and
//!   opened with `O_NOFOLLOW`, and what was opened is checked again with
//!   `fstat` (so a file swapped in between is refused too);
//! * created with mode 0600 (`O_CREAT | O_EXCL`), and its directory fsynced
//!   so that the new entry survives a power cut. An existing file is used
//!   only if it is private already (no group or other permission bits),
//!   owned by this user and has no other hard link: steward never changes
//!   the mode of a file it did not create;
//! * for temporary files, created with `O_EXCL`; a stale one left by a run
//!   that died is removed first only when it is a regular file owned by this
//!   user (the run holds the output's lock, so it is no one else's).

use crate::error::{Error, ErrorKind, Result};
use crate::unit::{Unit, UnitSink};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A refusal; the caller's context names the file.
fn refused(why: impl std::fmt::Display) -> io::Error {
    io::Error::other(why.to_string())
}

fn symlink_refused() -> io::Error {
    refused(
        "it is a symlink, and steward never writes through one: remove it, or give the real path",
    )
}

/// Whether `meta` is of a file steward may write: a regular file,
/// private, owned by this user, with one link.
fn check_existing(meta: &Metadata) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(symlink_refused());
    }
    if !ft.is_file() {
        return Err(refused(
            "it is not a regular file (a device, FIFO, socket or directory): give the path of a file to write",
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(refused(format_args!(
                "it belongs to another user (uid {}): steward writes only its own files; remove it or give another path",
                meta.uid()
            )));
    }
    if meta.nlink() > 1 {
        return Err(refused(
            "it has other hard links: steward would write into them too; remove it or give another path",
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refused(format_args!(
            "it is readable or writable by others (mode {mode:04o}) and steward keeps caps in it: `chmod 600` it, or remove it"
        )));
    }
    Ok(())
}

/// Check, without changing anything, that steward may write `path`: it is
/// absent, or a regular file it may use ([`open_private`]'s rules).
pub fn check_target(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => check_existing(&meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Fsync the directory holding `path`, so that a file created there (or
/// renamed into it) is still there after a power cut.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some file systems cannot fsync a directory; nothing more to do there.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

fn explain(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        symlink_refused()
    } else {
        e
    }
}

/// Create `path` afresh: mode 0600, `O_EXCL`, not through a symlink; its
/// directory fsynced if `durable` (a temporary file is made durable by the
/// rename that replaces it, and the directory sync after that).
fn create_new(path: &Path, durable: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if durable {
        sync_parent_dir(path)?;
    }
    Ok(f)
}

/// Create (or open) a file that may hold caps, by the rules of this
/// module: a new file is created 0600 and its directory fsynced; an
/// existing one must be a private regular file of this user and is never
/// chmodded. With `truncate`, it is emptied, only after those checks.
pub fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    open_private_as(path, truncate, true)
}

/// [`open_private`], for a file whose loss in a power cut costs nothing (a
/// lock file): its creation is not made durable.
pub fn open_private_volatile(path: &Path) -> io::Result<File> {
    open_private_as(path, false, false)
}

fn open_private_as(path: &Path, truncate: bool, durable: bool) -> io::Result<File> {
    check_target(path)?;
    match create_new(path, durable) {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(explain(e)),
    }
    // O_NONBLOCK: should a FIFO be swapped in after the check above, the
    // open must not wait for a reader; it is refused just below.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(explain)?;
    check_existing(&f.metadata()?)?;
    if truncate {
        f.set_len(0)?;
    }
    Ok(f)
}

/// Create the temporary file `path` with `O_EXCL` (mode 0600, not through
/// a symlink). A stale one is removed first if it is a regular file of
/// this user; anything else there is refused.
pub fn create_temporary(path: &Path) -> io::Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let ft = meta.file_type();
            if ft.is_symlink() {
                return Err(symlink_refused());
            }
            // SAFETY: geteuid has no preconditions.
            if !ft.is_file() || meta.uid() != unsafe { libc::geteuid() } {
                return Err(refused(
                    "it is in the way and is not a temporary file of this user: remove it",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    create_new(path, false).map_err(explain)
}

/// A unit destination.
pub enum Output {
    Stdout(BufWriter<WatchedStdout>),
    File {
        path: PathBuf,
        writer: BufWriter<File>,
        len: u64,
    },
}

impl Output {
    pub fn stdout() -> Self {
        Output::Stdout(BufWriter::with_capacity(
            64 * 1024,
            WatchedStdout {
                inner: io::stdout(),
                closed: false,
            },
        ))
    }

    /// Open `path` for writing units. With `keep = Some(n)` (a resume), the
    /// file must be at least `n` bytes long and is cut back to exactly `n`;
    /// with `None` it starts empty.
    pub fn open_file(path: &Path, keep: Option<u64>) -> Result<Self> {
        let file = open_private(path, keep.is_none())
            .map_err(|e| Error::io(format!("cannot open output {}", path.display()), e))?;
        let len = match keep {
            None => 0,
            Some(n) => {
                let actual = file
                    .metadata()
                    .map_err(|e| Error::io(path.display(), e))?
                    .len();
                if actual < n {
                    return Err(Error::checkpoint(format!(
                        "output {} is {actual} bytes but its checkpoint covers {n}: the file was truncated or replaced; run again with --restart to start over",
                        path.display()
                    )));
                }
                file.set_len(n).map_err(|e| Error::io(path.display(), e))?;
                n
            }
        };
        let mut writer = BufWriter::with_capacity(256 * 1024, file);
        writer
            .seek(SeekFrom::Start(len))
            .map_err(|e| Error::io(path.display(), e))?;
        Ok(Output::File {
            path: path.to_path_buf(),
            writer,
            len,
        })
    }

    /// Write one line (a newline is added).
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        match self {
            Output::Stdout(w) => w
                .write_all(line.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| w.get_ref().error(e)),
            Output::File { path, writer, len } => {
                writer
                    .write_all(line.as_bytes())
                    .and_then(|_| writer.write_all(b"\n"))
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                *len += line.len() as u64 + 1;
                Ok(())
            }
        }
    }

    /// Write one unit as a line, serialized straight into the output's
    /// buffer (the same bytes as `write_line(&unit.to_line())`).
    pub fn write_unit(&mut self, unit: &Unit) -> Result<()> {
        match self {
            Output::Stdout(w) => unit.write_line(w).map_err(|e| w.get_ref().error(e)),
            Output::File { path, writer, len } => {
                let mut counted = Counted {
                    inner: writer,
                    bytes: 0,
                };
                let r = unit.write_line(&mut counted);
                *len += counted.bytes;
                r.map_err(|e| Error::io(format!("writing {}", path.display()), e))
            }
        }
    }

    /// Flush and make durable what was written; returns the output length.
    pub fn sync(&mut self) -> Result<u64> {
        match self {
            Output::Stdout(w) => {
                w.flush().map_err(|e| w.get_ref().error(e))?;
                Ok(0)
            }
            Output::File { path, writer, len } => {
                writer
                    .flush()
                    .and_then(|_| writer.get_ref().sync_data())
                    .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
                Ok(*len)
            }
        }
    }

    /// Flush without fsync (for stdout after each batch, so a pipe sees
    /// units as they come).
    pub fn flush(&mut self) -> Result<()> {
        match self {
            Output::Stdout(w) => w.flush().map_err(|e| w.get_ref().error(e)),
            Output::File { path, writer, .. } => writer
                .flush()
                .map_err(|e| Error::io(format!("writing {}", path.display()), e)),
        }
    }
}

/// Standard output, remembering whether a write found its pipe closed.
/// A unit's check results are transcoded from the gateway's text
/// (`serde_transcode`), and an error raised inside that reaches the caller
/// as the transcoder's message, without its kind: this flag is what still
/// tells a closed pipe (exit 3) from another failure (exit 2).
pub struct WatchedStdout {
    inner: io::Stdout,
    closed: bool,
}

impl WatchedStdout {
    /// The error for a failed write to standard output.
    fn error(&self, e: io::Error) -> Error {
        if self.closed {
            stdout_error(io::Error::from(io::ErrorKind::BrokenPipe))
        } else {
            stdout_error(e)
        }
    }

    fn watch<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) {
            self.closed = true;
        }
        r
    }
}

impl Write for WatchedStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.watch(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.watch(r)
    }
}

/// A writer that counts the bytes it passes on (the output length the
/// checkpoint records).
struct Counted<'a, W> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A closed pipe on stdout ends the run, which then says it is incomplete
/// (exit 3): what was not written was not checked, or not reported.
pub fn stdout_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::new(
            ErrorKind::OutputClosed,
            "standard output was closed before the run ended; it stopped there, and what it did not write was not checked (exit 3)",
        )
    } else {
        Error::io("writing standard output", e)
    }
}

#[async_trait::async_trait]
impl UnitSink for Output {
    async fn emit(&mut self, unit: Unit) -> Result<()> {
        self.write_unit(&unit)
    }
    async fn sync(&mut self) -> Result<u64> {
        Output::sync(self)
    }
}

/// Whether an error is a closed stdout pipe.
pub fn is_broken_pipe(e: &Error) -> bool {
    e.kind == ErrorKind::OutputClosed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_resume_cuts_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.ndjson");
        let mut o = Output::open_file(&p, None).unwrap();
        o.write_line("{\"a\":1}").unwrap();
        let n = o.sync().unwrap();
        o.write_line("{\"partial\"").unwrap();
        o.flush().unwrap();
        drop(o);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut o = Output::open_file(&p, Some(n)).unwrap();
        o.write_line("{\"b\":2}").unwrap();
        o.sync().unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        let err = Output::open_file(&p, Some(10_000)).err().unwrap();
        assert!(err.message.contains("--restart"));
    }

    #[test]
    fn a_unit_is_written_as_its_line_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("units.ndjson");
        let line = r#"{"path": ["\u00e9"], "cap": "URI:LIT:aa", "type": "file", "verifycap": "", "repaircap": "", "storage-index": ""}"#;
        let units = [
            Unit::parse(line).unwrap(),
            Unit::Stats(serde_json::json!({"count-files": 1}), None),
        ];
        let mut o = Output::open_file(&p, None).unwrap();
        for u in &units {
            o.write_unit(u).unwrap();
        }
        let n = o.sync().unwrap();
        let want: String = units.iter().map(|u| u.to_line() + "\n").collect();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), want);
        assert_eq!(n, want.len() as u64);
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o644)).unwrap();
        // (/dev/null itself is only looked at: were this code wrong, a
        // test run as root must not be what breaks it.)
        let e = check_target(Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        for p in [fifo.as_path(), dir.path()] {
            for truncate in [false, true] {
                let e = open_private(p, truncate).unwrap_err();
                assert!(e.to_string().contains("not a regular file"), "{p:?}: {e}");
            }
            assert!(check_target(p).is_err());
            assert!(Output::open_file(p, None).is_err());
        }
        assert_eq!(mode(&fifo), 0o644, "not chmodded");
    }

    #[test]
    fn symlinks_are_never_followed_and_nothing_is_chmodded() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
        for p in [&link, &dangling] {
            for truncate in [false, true] {
                let e = open_private(p, truncate).unwrap_err();
                assert!(e.to_string().contains("symlink"), "{e}");
            }
            let e = create_temporary(p).unwrap_err();
            assert!(e.to_string().contains("symlink"), "{e}");
        }
        assert!(!dir.path().join("nothing").exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(mode(&victim), 0o644);
        // A regular file others can read: refused, not chmodded, not cut.
        let e = open_private(&victim, true).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert_eq!(mode(&victim), 0o644);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A hard link to it, made private: still refused.
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let e = open_private(&hard, true).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // What steward creates is 0600, and can be opened again.
        let mine = dir.path().join("mine");
        drop(open_private(&mine, false).unwrap());
        assert_eq!(mode(&mine), 0o600);
        drop(open_private(&mine, true).unwrap());
    }

    #[test]
    fn temporary_files_are_exclusive_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("ckpt.tmp");
        std::fs::write(&tmp, "stale").unwrap();
        let mut f = create_temporary(&tmp).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "new");
        assert_eq!(mode(&tmp), 0o600);
        std::fs::remove_file(&tmp).unwrap();
        std::fs::create_dir(&tmp).unwrap();
        assert!(
            create_temporary(&tmp).is_err(),
            "a directory is not removed"
        );
        assert!(tmp.is_dir());
    }
}
