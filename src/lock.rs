//! The exclusive lock a run holds on its output, so that two runs (a cron
//! job overlapping a manual one) never write the same files.
//!
//! [`RunLock::acquire`] takes `flock(LOCK_EX | LOCK_NB)` on `FILE.steward-lock`
//! beside the output `FILE`, before anything of the run is created or
//! truncated, and the run keeps it until it ends (the lock goes with the
//! process, however it ends, even by `kill -9`). A second run refuses at
//! once with a message naming the file and the process that holds it, whose
//! pid the lock file records.
//!
//! The lock file is a file of its own, not the checkpoint, because a
//! checkpoint is replaced by rename (check and repair) or removed by
//! `--restart`, and a lock on a file that is replaced or removed locks
//! nothing. It is created by the rules of [`crate::output`] (0600, never
//! through a symlink) and never removed: removing a lock file while another
//! process has it open would let two runs each hold a lock on a different
//! file.

use crate::error::{Error, ErrorKind, Result};
use crate::output::{check_target, open_private_volatile};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// An exclusive lock on an output file, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

/// The lock file of an output.
pub fn lock_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".steward-lock");
    PathBuf::from(s)
}

impl RunLock {
    /// Lock `output` for this run, or say which run holds it. The output
    /// itself is checked first ([`check_target`]: a regular file or absent,
    /// not a symlink), so that nothing is created beside a device or a link.
    pub fn acquire(output: &Path) -> Result<RunLock> {
        check_target(output)
            .map_err(|e| Error::io(format!("cannot write {}", output.display()), e))?;
        let path = lock_path(output);
        let mut file = open_private_volatile(&path)
            .map_err(|e| Error::io(format!("cannot lock {}", output.display()), e))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::io(format!("cannot lock {}", path.display()), e));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "a process that is starting".to_string(),
            };
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "{} is being written by another steward run ({holder}, holding {}): wait for it to end, or use another -o FILE",
                    output.display(),
                    path.display()
                ),
            ));
        }
        let ctx = |e| Error::io(format!("writing {}", path.display()), e);
        file.set_len(0).map_err(ctx)?;
        file.seek(SeekFrom::Start(0)).map_err(ctx)?;
        writeln!(file, "{}", std::process::id()).map_err(ctx)?;
        file.flush().map_err(ctx)?;
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Locks on several outputs (a deep check's files), taken in order.
pub fn acquire_all<'a>(outputs: impl IntoIterator<Item = &'a Path>) -> Result<Vec<RunLock>> {
    outputs.into_iter().map(RunLock::acquire).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ndjson");
        let held = RunLock::acquire(&out).unwrap();
        // flock locks belong to an open file description: a second open,
        // even in this process, is another run.
        let err = RunLock::acquire(&out).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Locked);
        assert!(
            err.message.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.message.contains(&out.display().to_string()), "{err}");
        assert!(!out.exists(), "the output itself is not created");
        drop(held);
        let again = RunLock::acquire(&out).unwrap();
        assert_eq!(again.path(), lock_path(&out));
    }

    #[test]
    fn no_lock_beside_a_device_or_through_a_symlink() {
        let err = RunLock::acquire(Path::new("/dev/null")).unwrap_err();
        assert!(err.message.contains("not a regular file"), "{err}");
        assert!(!Path::new("/dev/null.steward-lock").exists());
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "x").unwrap();
        let out = dir.path().join("out");
        std::os::unix::fs::symlink(&victim, lock_path(&out)).unwrap();
        let err = RunLock::acquire(&out).unwrap_err();
        assert!(err.message.contains("symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "x");
    }
}
