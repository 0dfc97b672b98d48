//! AES-128 in CTR mode, as Tahoe uses it (`allmydata/crypto/aes.py`): a
//! 128-bit big-endian counter starting at the IV, which is 16 zero bytes
//! unless given. Encryption and decryption are the same operation.
//!
//! Where the keys come from:
//! * CHK files: the 16-byte key in the read cap; one keystream over the
//!   whole file, so segment `i` starts at byte `i * segment_size` of it
//!   ([`apply_keystream`] with that offset).
//! * SDMF and MDMF: each segment has its own key, [`mutable_data_key`] of
//!   the segment's salt and the read key, and starts its keystream at 0.
//!   SDMF files have one segment whose salt is the IV in the share header;
//!   MDMF stores a salt before each block.
//! * Directory children's write caps: [`steward_cap::hash::mutable_rwcap_key_hash`]
//!   of a salt and the directory's write key ([`crate::dirnode`]).
//!
//! Built on the RustCrypto `aes` and `ctr` crates (MIT OR Apache-2.0).

use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// An AES-128 key.
pub type Key = [u8; 16];

/// The all-zero IV Tahoe uses by default.
pub const ZERO_IV: [u8; 16] = [0; 16];

/// XORs `data` with the AES-CTR keystream of `key` and `iv`, starting
/// `offset` bytes into the keystream (so a file can be decrypted piece by
/// piece: the piece starting at byte `offset` of the file uses `offset`).
pub fn apply_keystream(key: &Key, iv: &[u8; 16], offset: u64, data: &mut [u8]) {
    let mut c = Aes128Ctr::new(key.into(), iv.into());
    c.seek(offset);
    c.apply_keystream(data);
}

/// The AES key of one SDMF or MDMF segment: Tahoe's
/// `ssk_readkey_data_hash(salt, readkey)`.
pub fn mutable_data_key(salt: &[u8; 16], readkey: &Key) -> Key {
    steward_cap::hash::ssk_readkey_data_hash(salt, readkey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_continue_the_keystream() {
        let key = [9u8; 16];
        let mut whole = vec![0u8; 100];
        apply_keystream(&key, &ZERO_IV, 0, &mut whole);
        for split in [1, 15, 16, 17, 33, 99] {
            let mut a = vec![0u8; split];
            let mut b = vec![0u8; 100 - split];
            apply_keystream(&key, &ZERO_IV, 0, &mut a);
            apply_keystream(&key, &ZERO_IV, split as u64, &mut b);
            a.extend(b);
            assert_eq!(a, whole, "split at {split}");
        }
    }
}
