//! Tahoe-LAFS tagged hashes (`allmydata.util.hashutil`).
//!
//! Tahoe hashes everything with SHA-256d (SHA-256 applied twice, to rule
//! out length extension) over a netstring-encoded tag followed by the value.
//! These functions are public so that other steward crates (lease-secret
//! derivation in the native backend, share verification and decryption in
//! `steward-format`) reuse exactly the same construction: this module is the
//! one place that knows Tahoe's tags.
//!
//! The older functions return `Vec<u8>` (their length depends on
//! `truncate_to`); the fixed-size ones added for the share formats
//! ([`block_hash`], [`uri_extension_hash`], …) return arrays.

use sha2::{Digest, Sha256};

/// Tag: CHK encryption key → storage index.
pub const STORAGE_INDEX_TAG: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";
/// Tag: mutable write key → read key.
pub const MUTABLE_READKEY_TAG: &[u8] = b"allmydata_mutable_writekey_to_readkey_v1";
/// Tag: mutable read key → storage index.
pub const MUTABLE_STORAGEINDEX_TAG: &[u8] = b"allmydata_mutable_readkey_to_storage_index_v1";
/// Tag: client lease-renewal secret.
pub const CLIENT_RENEWAL_TAG: &[u8] = b"allmydata_client_renewal_secret_v1";
/// Tag: client lease-cancel secret.
pub const CLIENT_CANCEL_TAG: &[u8] = b"allmydata_client_cancel_secret_v1";
/// Tag: per-file lease-renewal secret.
pub const FILE_RENEWAL_TAG: &[u8] = b"allmydata_file_renewal_secret_v1";
/// Tag: per-file lease-cancel secret.
pub const FILE_CANCEL_TAG: &[u8] = b"allmydata_file_cancel_secret_v1";
/// Tag: per-bucket (file × server) lease-renewal secret.
pub const BUCKET_RENEWAL_TAG: &[u8] = b"allmydata_bucket_renewal_secret_v1";
/// Tag: per-bucket (file × server) lease-cancel secret.
pub const BUCKET_CANCEL_TAG: &[u8] = b"allmydata_bucket_cancel_secret_v1";

/// Tag: an erasure-coded block (`block_hash`).
pub const BLOCK_TAG: &[u8] = b"allmydata_encoded_subshare_v1";
/// Tag: a CHK URI extension block (`uri_extension_hash`).
pub const UEB_TAG: &[u8] = b"allmydata_uri_extension_v1";
/// Tag: a whole CHK ciphertext (`crypttext_hash`).
pub const CIPHERTEXT_TAG: &[u8] = b"allmydata_crypttext_v1";
/// Tag: one CHK ciphertext segment, the leaves of the crypttext hash tree.
pub const CIPHERTEXT_SEGMENT_TAG: &[u8] = b"allmydata_crypttext_segment_v1";
/// Tag: mutable private key → write key (`ssk_writekey_hash`).
pub const MUTABLE_WRITEKEY_TAG: &[u8] = b"allmydata_mutable_privkey_to_writekey_v1";
/// Tag: mutable verification key → fingerprint (`ssk_pubkey_fingerprint_hash`).
pub const MUTABLE_PUBKEY_TAG: &[u8] = b"allmydata_mutable_pubkey_to_fingerprint_v1";
/// Tag: mutable (salt, read key) → data key (`ssk_readkey_data_hash`).
pub const MUTABLE_DATAKEY_TAG: &[u8] = b"allmydata_mutable_readkey_to_datakey_v1";
/// Tag: directory (salt, write key) → key of a child's encrypted write cap.
pub const DIRNODE_CHILD_WRITECAP_TAG: &[u8] =
    b"allmydata_mutable_writekey_and_salt_to_dirnode_child_capkey_v1";
/// Tag: a child's write cap → the salt of its encryption.
pub const DIRNODE_CHILD_SALT_TAG: &[u8] = b"allmydata_dirnode_child_rwcap_to_salt_v1";

/// Length in bytes of keys and storage indexes (`KEYLEN` in Tahoe).
pub const KEY_LEN: usize = 16;
/// Length in bytes of a salt or IV (`IVLEN` in Tahoe).
pub const IV_LEN: usize = 16;

/// `netstring(s) = b"%d:%s," % (len(s), s)`.
pub fn netstring(s: &[u8]) -> Vec<u8> {
    let len = s.len().to_string();
    let mut out = Vec::with_capacity(len.len() + s.len() + 2);
    out.extend_from_slice(len.as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
    out.push(b',');
    out
}

fn sha256d(parts: &[&[u8]], truncate_to: usize) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let inner = h.finalize();
    let outer = Sha256::digest(inner);
    // Python: `if truncate_to: h2 = h2[:truncate_to]` — 0 means "no
    // truncation" and slicing past the end keeps all 32 bytes.
    let n = if truncate_to == 0 {
        outer.len()
    } else {
        truncate_to.min(outer.len())
    };
    outer[..n].to_vec()
}

/// `SHA256(SHA256(netstring(tag) + val))`, truncated to `truncate_to` bytes.
///
/// As in Tahoe, `truncate_to == 0` (Python's `None`) returns the full 32
/// bytes, and values above 32 also return 32 bytes.
pub fn tagged_hash(tag: &[u8], val: &[u8], truncate_to: usize) -> Vec<u8> {
    sha256d(&[&netstring(tag), val], truncate_to)
}

/// `SHA256(SHA256(netstring(tag) + netstring(val1) + netstring(val2)))`,
/// truncated like [`tagged_hash`].
pub fn tagged_pair_hash(tag: &[u8], val1: &[u8], val2: &[u8], truncate_to: usize) -> Vec<u8> {
    sha256d(
        &[&netstring(tag), &netstring(val1), &netstring(val2)],
        truncate_to,
    )
}

fn to16(v: Vec<u8>) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&v[..16]);
    out
}

/// CHK storage index from the 16-byte encryption key
/// (`hashutil.storage_index_hash`).
pub fn storage_index_hash(key: &[u8]) -> [u8; 16] {
    to16(tagged_hash(STORAGE_INDEX_TAG, key, KEY_LEN))
}

/// Mutable (SDMF/MDMF) read key from the write key (`hashutil.ssk_readkey_hash`).
pub fn ssk_readkey_hash(writekey: &[u8]) -> [u8; 16] {
    to16(tagged_hash(MUTABLE_READKEY_TAG, writekey, KEY_LEN))
}

/// Mutable (SDMF/MDMF) storage index from the read key
/// (`hashutil.ssk_storage_index_hash`).
pub fn ssk_storage_index_hash(readkey: &[u8]) -> [u8; 16] {
    to16(tagged_hash(MUTABLE_STORAGEINDEX_TAG, readkey, KEY_LEN))
}

/// A streaming tagged hasher (`hashutil.tagged_hasher`): feed the value in
/// pieces, for example a mutable block's salt and then its data, without
/// joining them first.
#[derive(Clone)]
pub struct TaggedHasher(Sha256);

impl TaggedHasher {
    /// Starts `SHA256(SHA256(netstring(tag) + ...))`.
    pub fn new(tag: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(netstring(tag));
        TaggedHasher(h)
    }

    /// Adds bytes to the value.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The full 32-byte SHA-256d.
    pub fn finalize(self) -> [u8; 32] {
        Sha256::digest(self.0.finalize()).into()
    }
}

/// [`tagged_hash`] without truncation, as an array.
pub fn tagged_hash32(tag: &[u8], val: &[u8]) -> [u8; 32] {
    let mut h = TaggedHasher::new(tag);
    h.update(val);
    h.finalize()
}

/// [`tagged_pair_hash`] without truncation, as an array.
pub fn tagged_pair_hash32(tag: &[u8], val1: &[u8], val2: &[u8]) -> [u8; 32] {
    let mut h = TaggedHasher::new(tag);
    h.update(&netstring(val1));
    h.update(&netstring(val2));
    h.finalize()
}

/// The hash of an erasure-coded block (`hashutil.block_hash`), the leaves of
/// a share's block hash tree. For MDMF the value is the segment's salt
/// followed by the block.
pub fn block_hash(data: &[u8]) -> [u8; 32] {
    tagged_hash32(BLOCK_TAG, data)
}

/// The hash of a URI extension block, which CHK caps carry
/// (`hashutil.uri_extension_hash`).
pub fn uri_extension_hash(ueb: &[u8]) -> [u8; 32] {
    tagged_hash32(UEB_TAG, ueb)
}

/// The hash of a whole CHK ciphertext (`hashutil.crypttext_hash`), the
/// optional `crypttext_hash` field of a URI extension block.
pub fn crypttext_hash(data: &[u8]) -> [u8; 32] {
    tagged_hash32(CIPHERTEXT_TAG, data)
}

/// The hash of one CHK ciphertext segment (`hashutil.crypttext_segment_hash`).
pub fn crypttext_segment_hash(data: &[u8]) -> [u8; 32] {
    tagged_hash32(CIPHERTEXT_SEGMENT_TAG, data)
}

/// A mutable file's public-key fingerprint from its DER verification key
/// (`hashutil.ssk_pubkey_fingerprint_hash`), which its caps carry.
pub fn ssk_pubkey_fingerprint_hash(pubkey: &[u8]) -> [u8; 32] {
    tagged_hash32(MUTABLE_PUBKEY_TAG, pubkey)
}

/// A mutable file's write key from its serialized private key
/// (`hashutil.ssk_writekey_hash`).
pub fn ssk_writekey_hash(privkey: &[u8]) -> [u8; 16] {
    to16(tagged_hash(MUTABLE_WRITEKEY_TAG, privkey, KEY_LEN))
}

/// The AES key of one mutable segment from its salt (SDMF: the file's IV)
/// and the read key (`hashutil.ssk_readkey_data_hash`).
pub fn ssk_readkey_data_hash(salt: &[u8], readkey: &[u8]) -> [u8; 16] {
    to16(tagged_pair_hash(
        MUTABLE_DATAKEY_TAG,
        salt,
        readkey,
        KEY_LEN,
    ))
}

/// The AES key of a directory child's encrypted write cap
/// (`hashutil.mutable_rwcap_key_hash`).
pub fn mutable_rwcap_key_hash(salt: &[u8], writekey: &[u8]) -> [u8; 16] {
    to16(tagged_pair_hash(
        DIRNODE_CHILD_WRITECAP_TAG,
        salt,
        writekey,
        KEY_LEN,
    ))
}

/// The salt of a directory child's encrypted write cap, from that write cap
/// (`hashutil.mutable_rwcap_salt_hash`; Tahoe's parameter is misnamed
/// `writekey`, `dirnode._encrypt_rw_uri` passes the child's cap).
pub fn mutable_rwcap_salt_hash(rw_uri: &[u8]) -> [u8; 16] {
    to16(tagged_hash(DIRNODE_CHILD_SALT_TAG, rw_uri, IV_LEN))
}

/// Tahoe's own HMAC construction (`hashutil.hmac`): SHA-256 of the key
/// XOR 0x5c followed by SHA-256 of the key XOR 0x36 and the data, with the
/// key used as is (not padded to the block size, unlike RFC 2104). Only the
/// MAC of a directory child's encrypted write cap uses it, and readers since
/// Tahoe 1.3.0 do not check that MAC.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let ikey: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
    let okey: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
    let mut h1 = Sha256::new();
    h1.update(&ikey);
    h1.update(data);
    let inner = h1.finalize();
    let mut h2 = Sha256::new();
    h2.update(&okey);
    h2.update(inner);
    h2.finalize().into()
}

/// `my_renewal_secret_hash`: note Tahoe passes the secret as the *tag*.
pub fn my_renewal_secret_hash(my_secret: &[u8]) -> Vec<u8> {
    tagged_hash(my_secret, CLIENT_RENEWAL_TAG, 0)
}

/// `my_cancel_secret_hash`: note Tahoe passes the secret as the *tag*.
pub fn my_cancel_secret_hash(my_secret: &[u8]) -> Vec<u8> {
    tagged_hash(my_secret, CLIENT_CANCEL_TAG, 0)
}

/// `file_renewal_secret_hash(client_renewal_secret, storage_index)`.
pub fn file_renewal_secret_hash(client_renewal_secret: &[u8], storage_index: &[u8]) -> Vec<u8> {
    tagged_pair_hash(FILE_RENEWAL_TAG, client_renewal_secret, storage_index, 0)
}

/// `file_cancel_secret_hash(client_cancel_secret, storage_index)`.
pub fn file_cancel_secret_hash(client_cancel_secret: &[u8], storage_index: &[u8]) -> Vec<u8> {
    tagged_pair_hash(FILE_CANCEL_TAG, client_cancel_secret, storage_index, 0)
}

/// `bucket_renewal_secret_hash(file_renewal_secret, peerid)`.
pub fn bucket_renewal_secret_hash(file_renewal_secret: &[u8], peerid: &[u8]) -> Vec<u8> {
    tagged_pair_hash(BUCKET_RENEWAL_TAG, file_renewal_secret, peerid, 0)
}

/// `bucket_cancel_secret_hash(file_cancel_secret, peerid)`.
pub fn bucket_cancel_secret_hash(file_cancel_secret: &[u8], peerid: &[u8]) -> Vec<u8> {
    tagged_pair_hash(BUCKET_CANCEL_TAG, file_cancel_secret, peerid, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn netstring_format() {
        assert_eq!(netstring(b""), b"0:,");
        assert_eq!(netstring(b"abc"), b"3:abc,");
        assert_eq!(netstring(&[b'x'; 12]), b"12:xxxxxxxxxxxx,");
    }

    // Vectors printed by tahoe-lafs 1.20.0 `allmydata.util.hashutil`.
    #[test]
    fn tagged_hash_matches_tahoe() {
        assert_eq!(
            hex(&tagged_hash(b"tag", b"value", 0)),
            "64b0cafcfe5f99653ae63b644191c890600965073ef48bf9b24f9e623c940229"
        );
        assert_eq!(
            hex(&tagged_hash(b"tag", b"value", 16)),
            "64b0cafcfe5f99653ae63b644191c890"
        );
        assert_eq!(tagged_hash(b"tag", b"value", 99).len(), 32);
        assert_eq!(
            hex(&tagged_pair_hash(b"tag", b"a", b"bc", 0)),
            "92b1124db2ae3b8a037cda7413fbd25ee637a8dbf960b49bacc9e328a3e12e6c"
        );
        assert_eq!(
            hex(&tagged_pair_hash(b"tag", b"a", b"bc", 16)),
            "92b1124db2ae3b8a037cda7413fbd25e"
        );
        // pair hash must netstring each value: ("a","bc") != ("ab","c")
        assert_ne!(
            tagged_pair_hash(b"tag", b"a", b"bc", 0),
            tagged_pair_hash(b"tag", b"ab", b"c", 0)
        );
    }

    #[test]
    fn key_derivations_match_tahoe() {
        let key: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            hex(&storage_index_hash(&key)),
            "38d12ea01522a9e5b560408581e103fc"
        );
        let wk: Vec<u8> = (0x40u8..0x50).collect();
        let rk = ssk_readkey_hash(&wk);
        assert_eq!(hex(&rk), "8ea58bd0119b499d09926ed17590ccf2");
        assert_eq!(
            hex(&ssk_storage_index_hash(&rk)),
            "603d980a60e0976ce28102e4904596b6"
        );
    }
}
