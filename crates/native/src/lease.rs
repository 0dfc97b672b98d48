//! Lease secrets, derived exactly as a Tahoe client derives them
//! (`docs/specifications/lease.rst`, `SecretHolder`,
//! `MutableFileNode.get_renewal_secret`, the immutable `Checker`):
//!
//! ```text
//! client renewal secret = tagged_hash(lease_secret, "allmydata_client_renewal_secret_v1")
//! file renewal secret   = tagged_pair_hash("allmydata_file_renewal_secret_v1", client secret, SI)
//! renewal secret        = tagged_pair_hash("allmydata_bucket_renewal_secret_v1", file secret, lease seed)
//! ```
//!
//! (and the same with `cancel` tags), where `lease_secret` is the node's
//! `private/secret` decoded from base32 and the lease seed is the server's
//! Foolscap tub id (20 bytes). The same account secret thus renews the very
//! leases its own gateway created instead of adding new ones.

use steward_cap::hash;

/// The per-account part of the derivation, computed once.
#[derive(Clone)]
pub struct LeaseSecrets {
    client_renewal: Vec<u8>,
    client_cancel: Vec<u8>,
}

impl std::fmt::Debug for LeaseSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseSecrets(…)")
    }
}

impl LeaseSecrets {
    /// From the account's lease secret (the decoded `private/secret`).
    pub fn new(lease_secret: &[u8]) -> Self {
        LeaseSecrets {
            client_renewal: hash::my_renewal_secret_hash(lease_secret),
            client_cancel: hash::my_cancel_secret_hash(lease_secret),
        }
    }

    /// `(renew secret, cancel secret)` for one storage index on one server.
    pub fn for_bucket(&self, storage_index: &[u8], lease_seed: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let frs = hash::file_renewal_secret_hash(&self.client_renewal, storage_index);
        let fcs = hash::file_cancel_secret_hash(&self.client_cancel, storage_index);
        (
            hash::bucket_renewal_secret_hash(&frs, lease_seed),
            hash::bucket_cancel_secret_hash(&fcs, lease_seed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_32_bytes_and_depend_on_everything() {
        let s = LeaseSecrets::new(b"0123456789abcdef0123456789abcdef");
        let (r, c) = s.for_bucket(&[1; 16], &[2; 20]);
        assert_eq!(r.len(), 32);
        assert_eq!(c.len(), 32);
        assert_ne!(r, c);
        assert_ne!(s.for_bucket(&[1; 16], &[3; 20]).0, r);
        assert_ne!(s.for_bucket(&[4; 16], &[2; 20]).0, r);
        assert_ne!(
            LeaseSecrets::new(b"other").for_bucket(&[1; 16], &[2; 20]).0,
            r
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Printed by tahoe-lafs 1.20.0's allmydata.util.hashutil.
    #[test]
    fn secrets_match_tahoe() {
        let s = LeaseSecrets::new(b"0123456789abcdef0123456789abcdef");
        let (r, c) = s.for_bucket(&[1; 16], &[2; 20]);
        assert_eq!(
            hex(&r),
            "220adf267719de50ed26ac1b80e440c1f98e227db94124ed3b9f055cc7e5ebee"
        );
        assert_eq!(
            hex(&c),
            "f369db84280aa345d96d487aa2a916604b29d47273d42b6cd43e8e26a3921f9c"
        );
    }
}
