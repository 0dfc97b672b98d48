//! Reading a directory from its cap and its shares: decode and decrypt the
//! backing file ([`crate::read`]) and parse it ([`crate::dirnode`]), for
//! every kind of directory cap Tahoe has: `DIR2` (SDMF), `DIR2-MDMF`,
//! `DIR2-CHK` and `DIR2-LIT` (the contents are in the cap, no shares), each
//! as a write or read cap. With a write cap, children's write caps are
//! decrypted too.

use crate::chk::ChkCap;
use crate::dirnode::{self, ChildCaps, DirEntry, DirError};
use crate::hashtree::Hash;
use crate::mutable::{MutableCap, MutableHeader};
use crate::read::{read_chk, read_mutable, ReadError};
use crate::verify::Verdict;
use steward_cap::{Cap, Format};

/// A directory as read.
#[derive(Clone, Debug)]
pub struct Directory {
    /// The children as stored, in stored order (sorted by name when Tahoe
    /// wrote them); [`Directory::children`] gives what a listing shows.
    pub entries: Vec<DirEntry>,
    /// Whether the directory is mutable (its children may be).
    pub mutable: bool,
    /// Bytes of the serialized contents (the backing file's size).
    pub size: u64,
    /// Share numbers decoded from (none for `DIR2-LIT`).
    pub used: Vec<usize>,
    /// Shares that failed verification, with why.
    pub rejected: Vec<(usize, Verdict)>,
    /// Mutable directories: the version read.
    pub version: Option<MutableHeader>,
}

impl Directory {
    /// The children a Tahoe listing shows, with the caps it shows
    /// ([`dirnode::child_caps`]); children Tahoe drops are left out.
    pub fn children(&self) -> impl Iterator<Item = (&DirEntry, ChildCaps)> {
        self.entries
            .iter()
            .filter_map(|e| dirnode::child_caps(e, self.mutable).map(|c| (e, c)))
    }
}

/// Why a directory could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The cap is not a directory read or write cap.
    #[error("{0} is not a directory read or write cap")]
    NotADirectoryCap(String),
    /// The backing file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The contents are not a directory.
    #[error(transparent)]
    Contents(#[from] DirError),
}

/// Reads the directory `cap` names from its shares `(share number, whole
/// share bytes)`; for mutable directories, the best recoverable version
/// among them, or `want` = (seqnum, root hash). `DIR2-LIT` needs no shares.
pub fn read_directory(
    cap: &Cap,
    shares: &[(usize, &[u8])],
    want: Option<(u64, Hash)>,
) -> Result<Directory, DirectoryError> {
    let not_dir = || DirectoryError::NotADirectoryCap(cap.redacted());
    if !cap.is_directory() || cap.to_read_cap().is_none() {
        return Err(not_dir());
    }
    match cap.format() {
        Format::Lit => {
            let data = cap.literal_data().ok_or_else(not_dir)?;
            Ok(Directory {
                entries: dirnode::unpack(data, false, None)?,
                mutable: false,
                size: data.len() as u64,
                used: Vec::new(),
                rejected: Vec::new(),
                version: None,
            })
        }
        Format::Chk => {
            let chk = ChkCap::from_cap(cap).map_err(|e| ReadError::Cap(e.to_string()))?;
            let r = read_chk(&chk, shares)?;
            Ok(Directory {
                entries: dirnode::unpack(&r.plaintext, false, None)?,
                mutable: false,
                size: r.plaintext.len() as u64,
                used: r.used,
                rejected: r.rejected,
                version: None,
            })
        }
        Format::Sdmf | Format::Mdmf => {
            let m = MutableCap::from_cap(cap).ok_or_else(not_dir)?;
            let r = read_mutable(&m, shares, want)?;
            Ok(Directory {
                entries: dirnode::unpack(&r.plaintext, true, m.writekey.as_ref())?,
                mutable: true,
                size: r.plaintext.len() as u64,
                used: r.used,
                rejected: r.rejected,
                version: r.version,
            })
        }
    }
}
