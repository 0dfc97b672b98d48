//! Where units go: a file (created mode 0600, made durable on demand, cut
//! back to a checkpoint's length on resume) or standard output.
//!
//! Units are written whole, one line each, through a buffer; [`Output::sync`]
//! flushes the buffer and (for a file) fsyncs it, and returns the length
//! that a checkpoint may then record. Anything past a recorded length is a
//! partial batch from a run that died, and [`Output::open_file`] cuts it off.

use crate::error::{Error, ErrorKind, Result};
use crate::unit::{Unit, UnitSink};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Create (or open) a file that may hold caps: mode 0600 from the start, and
/// tightened to 0600 if it already existed with wider permissions.
pub fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)?;
    let perms = f.metadata()?.permissions();
    if perms.mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// A unit destination.
pub enum Output {
    Stdout(BufWriter<io::Stdout>),
    File {
        path: PathBuf,
        writer: BufWriter<File>,
        len: u64,
    },
}

impl Output {
    pub fn stdout() -> Self {
        Output::Stdout(BufWriter::with_capacity(64 * 1024, io::stdout()))
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
            Output::Stdout(w) => {
                w.write_all(line.as_bytes()).map_err(stdout_error)?;
                w.write_all(b"\n").map_err(stdout_error)
            }
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
            Output::Stdout(w) => unit.write_line(w).map_err(stdout_error),
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
                w.flush().map_err(stdout_error)?;
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
            Output::Stdout(w) => w.flush().map_err(stdout_error),
            Output::File { path, writer, .. } => writer
                .flush()
                .map_err(|e| Error::io(format!("writing {}", path.display()), e)),
        }
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

/// A closed pipe on stdout ends the run quietly (exit 0), as `head` expects.
fn stdout_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::new(ErrorKind::Io, "broken pipe")
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
    e.kind == ErrorKind::Io && e.message == "broken pipe"
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
            Unit::Stats(serde_json::json!({"count-files": 1})),
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
}
