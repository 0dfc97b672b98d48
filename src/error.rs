//! The errors that end a run, and the exit codes.
//!
//! A problem with one object (unhealthy, unrecoverable, a listing that
//! failed) is a *finding*: it is written into that object's unit and the run
//! goes on. An [`Error`] is for what stops the run itself: bad input, a
//! gateway that cannot be reached, an unusable checkpoint, an I/O failure.
//! Its message is one line, names the input (never a whole cap) and says
//! what to do.
//!
//! Exit codes ([`Exit`]), as `tahoe deep-check` and ripgrep use them, and
//! never 0 unless everything the run was meant to cover was covered and
//! healthy:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | everything checked, all healthy (or repaired) |
//! | 1 | findings: unhealthy, unrecoverable, unlisted or unchecked objects remain, or caps that are not caps (they are in the output) |
//! | 2 | the run failed: bad input lines, an empty input, an input that is a directory, an unusable gateway, checkpoint or output file, another run holding the output's lock, a standard output closed before the start (`>&-`) where the units would go |
//! | 3 | incomplete: the input ended without the stats unit that closes a manifest, or its stats unit counts other objects than it holds (cut short at its end or its head; `--allow-partial` accepts it), or standard output was closed before the run ended. What was written is right, but it is not everything |
//! | 130 | interrupted by Ctrl-C or SIGTERM (the checkpoint allows a resume) |
//!
//! When more than one applies, the first in the order 2, 3, 1 wins (the
//! summary on standard error says everything).

use std::fmt;

/// The exit status of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Findings = 1,
    Failed = 2,
    Incomplete = 3,
    Interrupted = 130,
}

/// What went wrong, broadly; decides nothing but how the message is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A malformed cap, alias, or input line the run cannot go past.
    Input,
    /// No usable gateway or configuration.
    Config,
    /// The grid could not be reached.
    Gateway,
    /// A checkpoint that does not fit its output or input.
    Checkpoint,
    /// Reading or writing local files.
    Io,
    /// Ctrl-C or SIGTERM: stopped cleanly, resumable.
    Interrupted,
    /// Standard output was closed by its reader (`| head`): the run stopped
    /// short of its end.
    OutputClosed,
    /// Another run holds the lock on the output.
    Locked,
    /// A write about a dispatch account whose claim another worker took
    /// over (its lease ran out): refused, so that a worker paused past its
    /// lease cannot overwrite the one that took over.
    ClaimLost,
}

/// A run-ending error with a one-line, cap-free message.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn input(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, m)
    }
    pub fn config(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, m)
    }
    pub fn checkpoint(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Checkpoint, m)
    }
    /// An I/O error in `context` (which names the file). A directory where a
    /// file was wanted says so and what to do, never only "Is a directory
    /// (os error 21)".
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::IsADirectory {
            return Self::new(
                ErrorKind::Io,
                format!("{context}: it is a directory; give a file"),
            );
        }
        Self::new(ErrorKind::Io, format!("{context}: {e}"))
    }
    pub fn interrupted() -> Self {
        Self::new(
            ErrorKind::Interrupted,
            "interrupted; run the same command again to resume",
        )
    }

    /// The exit code for this error.
    pub fn exit(&self) -> Exit {
        match self.kind {
            ErrorKind::Interrupted => Exit::Interrupted,
            ErrorKind::OutputClosed => Exit::Incomplete,
            _ => Exit::Failed,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<steward_backend::BackendError> for Error {
    fn from(e: steward_backend::BackendError) -> Self {
        Error::new(ErrorKind::Gateway, e.to_string())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::checkpoint(format!("checkpoint database: {e}"))
    }
}
