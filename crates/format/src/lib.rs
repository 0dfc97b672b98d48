//! Tahoe-LAFS's at-rest formats and cryptography, without any I/O: what a
//! storage server holds, how to check it, and how to turn it back into a
//! file or a directory listing. Everything is tested against vectors that
//! Tahoe-LAFS 1.20's own code produced (`vectors/generate.py`).
//!
//! * [`hashtree`]: Merkle trees with Tahoe's tagged hashes and
//!   `IncompleteHashTree` checking (the tags themselves live in
//!   [`steward_cap::hash`]).
//! * [`chk`] and [`uri_extension`]: immutable shares (layouts v1 and v2) and
//!   the URI extension block, and the parameters they fix.
//! * [`mutable`]: SDMF and MDMF shares, verification keys and signatures.
//! * [`segments`]: how files are cut into segments and blocks.
//! * [`aes`]: AES-128-CTR and the mutable data key.
//! * [`zfec`]: erasure coding with the bytes of zfec 1.6 (our own, MIT).
//! * [`verify`]: sans-IO verifiers of one share, which say which byte ranges
//!   they need, take them, and end with "good" or the corrupt part.
//! * [`read`]: decoding and decrypting a small object from whole shares.
//! * [`dirnode`] and [`directory`]: the directory format, and reading a
//!   directory from its cap and shares.
//! * [`tahoe_cfg`]: a node's `tahoe.cfg`.
//!
//! A driver with network access (the native backend) reads bytes where a
//! verifier asks and hands them over; see [`verify`] for the loop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aes;
pub mod chk;
pub mod directory;
pub mod dirnode;
pub mod hashtree;
pub mod mutable;
pub mod netstring;
pub mod read;
pub mod segments;
pub mod tahoe_cfg;
pub mod uri_extension;
pub mod verify;
pub mod zfec;
