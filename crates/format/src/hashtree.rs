//! Merkle hash trees exactly as Tahoe builds and checks them
//! (`allmydata/hashtree.py`).
//!
//! A tree over `n` leaves is a complete binary tree with
//! `p = roundup_pow2(n)` leaves, stored as a flat array of `2p - 1` nodes:
//! node 0 is the root, the children of node `i` are `2i + 1` and `2i + 2`,
//! and leaf `j` is node `p - 1 + j`. Leaves `n..p` are padding, each the
//! tagged hash of its *leaf* number ([`empty_leaf_hash`]); an inner node is
//! the tagged pair hash of its children ([`pair_hash`]).
//!
//! [`HashTree`] builds a whole tree from its leaves (what writers store);
//! [`IncompleteHashTree`] is what a reader fills in from an untrusted source
//! and checks against a root it trusts, with Tahoe's `set_hashes` rules:
//! every hash added must be checkable up to a known node, a failed call
//! changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use steward_cap::hash::{tagged_hash32, tagged_pair_hash32};

/// A SHA-256d hash.
pub type Hash = [u8; 32];

/// Bytes in a hash.
pub const HASH_LEN: usize = 32;

/// Tag of the padding leaves.
pub const EMPTY_LEAF_TAG: &[u8] = b"Merkle tree empty leaf";
/// Tag of inner nodes.
pub const INTERNAL_NODE_TAG: &[u8] = b"Merkle tree internal node";

/// The hash of padding leaf number `leaf` (`hashtree.empty_leaf_hash`).
pub fn empty_leaf_hash(leaf: usize) -> Hash {
    tagged_hash32(EMPTY_LEAF_TAG, leaf.to_string().as_bytes())
}

/// An inner node from its two children (`hashtree.pair_hash`).
pub fn pair_hash(left: &Hash, right: &Hash) -> Hash {
    tagged_pair_hash32(INTERNAL_NODE_TAG, left, right)
}

/// The number of leaf slots of a tree over `num_leaves` leaves: the least
/// power of two at least `num_leaves`, and 1 for 0 leaves (as Tahoe's
/// `roundup_pow2`). `None` on overflow.
pub fn leaf_slots(num_leaves: u64) -> Option<u64> {
    num_leaves.max(1).checked_next_power_of_two()
}

/// The number of nodes of a tree over `num_leaves` leaves (`2p - 1`), which
/// is also how many hashes a stored tree holds. `None` on overflow.
pub fn tree_len(num_leaves: u64) -> Option<u64> {
    leaf_slots(num_leaves)?.checked_mul(2).map(|x| x - 1)
}

fn depth_of(i: usize) -> usize {
    (usize::BITS - 1 - (i + 1).leading_zeros()) as usize
}

fn parent(i: usize) -> usize {
    (i - 1) / 2
}

fn sibling(i: usize) -> usize {
    if i % 2 == 1 {
        i + 1
    } else {
        i - 1
    }
}

/// The sibling chain of node `index`: the nodes needed, with `index`, to
/// compute the root (`needed_for`), deepest first.
fn needed_for(index: usize) -> Vec<usize> {
    let mut needed = Vec::new();
    let mut here = index;
    while here != 0 {
        needed.push(sibling(here));
        here = parent(here);
    }
    needed
}

/// A complete tree, built from all its leaves (Tahoe's `HashTree`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTree {
    nodes: Vec<Hash>,
    first_leaf: usize,
}

impl HashTree {
    /// Builds the tree over `leaves`, padding with [`empty_leaf_hash`].
    pub fn new(leaves: &[Hash]) -> HashTree {
        let slots = leaves.len().max(1).next_power_of_two();
        let mut nodes = vec![[0u8; 32]; 2 * slots - 1];
        let first_leaf = slots - 1;
        for j in 0..slots {
            nodes[first_leaf + j] = match leaves.get(j) {
                Some(h) => *h,
                None => empty_leaf_hash(j),
            };
        }
        for i in (0..first_leaf).rev() {
            nodes[i] = pair_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
        }
        HashTree { nodes, first_leaf }
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.nodes[0]
    }

    /// All nodes, root first: what a share stores for a block or crypttext
    /// hash tree.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// The node index of leaf `leaf`.
    pub fn leaf_index(&self, leaf: usize) -> usize {
        self.first_leaf + leaf
    }

    /// The nodes someone needs to check leaf `leaf` against the root (never
    /// the root itself; the leaf only when asked), sorted. Writers store
    /// `needed_hashes(shnum, true)` as a CHK share's hash chain and
    /// `needed_hashes(shnum, false)` as a mutable one's.
    pub fn needed_hashes(&self, leaf: usize, include_leaf: bool) -> Vec<usize> {
        let index = self.first_leaf + leaf;
        let mut v: BTreeSet<usize> = needed_for(index).into_iter().collect();
        if include_leaf {
            v.insert(index);
        }
        v.into_iter().collect()
    }
}

/// Why a set of hashes does not fit a tree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashTreeError {
    /// A node index beyond the tree (Tahoe: `IndexError`).
    #[error("hash index {index} is outside a tree of {len} nodes")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// Nodes in the tree.
        len: usize,
    },
    /// A hash disagrees with one already known or computed (Tahoe:
    /// `BadHashError`).
    #[error("hash of node {index} does not match")]
    BadHash {
        /// The node whose value conflicts.
        index: usize,
    },
    /// A hash cannot be checked: its sibling is unknown (Tahoe:
    /// `NotEnoughHashesError`).
    #[error("not enough hashes to check node {index}")]
    NotEnoughHashes {
        /// The node that could not be checked.
        index: usize,
    },
}

/// A tree being filled in from an untrusted source (Tahoe's
/// `IncompleteHashTree`). Start with the root from a trusted place, then
/// add hashes and leaves with [`IncompleteHashTree::set_hashes`].
#[derive(Clone, Debug)]
pub struct IncompleteHashTree {
    nodes: Vec<Option<Hash>>,
    first_leaf: usize,
    num_leaves: usize,
}

impl IncompleteHashTree {
    /// An empty tree over `num_leaves` leaves. `None` if the tree would not
    /// fit in memory addresses (callers bound `num_leaves` first).
    pub fn new(num_leaves: usize) -> Option<IncompleteHashTree> {
        let len = usize::try_from(tree_len(num_leaves as u64)?).ok()?;
        Some(IncompleteHashTree {
            nodes: vec![None; len],
            first_leaf: len / 2,
            num_leaves,
        })
    }

    /// Nodes in the tree (`2p - 1`).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: a tree has at least its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The number of real (unpadded) leaves it was made for.
    pub fn num_leaves(&self) -> usize {
        self.num_leaves
    }

    /// Node `index`, if known.
    pub fn get(&self, index: usize) -> Option<&Hash> {
        self.nodes.get(index).and_then(Option::as_ref)
    }

    /// Leaf `leaf`, if known.
    pub fn leaf(&self, leaf: usize) -> Option<&Hash> {
        self.get(self.first_leaf.checked_add(leaf)?)
    }

    /// The node index of leaf `leaf`.
    pub fn leaf_index(&self, leaf: usize) -> usize {
        self.first_leaf + leaf
    }

    /// The nodes still unknown that checking leaf `leaf` needs, sorted
    /// (Tahoe's `needed_hashes`). Empty for a leaf outside the tree.
    pub fn needed_hashes(&self, leaf: usize, include_leaf: bool) -> Vec<usize> {
        let Some(index) = self.first_leaf.checked_add(leaf) else {
            return Vec::new();
        };
        if index >= self.nodes.len() {
            return Vec::new();
        }
        let mut v: BTreeSet<usize> = needed_for(index).into_iter().collect();
        if include_leaf {
            v.insert(index);
        }
        v.into_iter().filter(|&i| self.nodes[i].is_none()).collect()
    }

    /// Adds `hashes` (by node index) and `leaves` (by leaf number), checking
    /// each against what is known: a new hash must equal a known one at its
    /// place, and every new hash must combine with its sibling into parents
    /// up to a node already known, all equal. On any error nothing is kept.
    ///
    /// This is Tahoe's `set_hashes`, so a whole stored tree (all its nodes,
    /// root included) checks its own consistency even before the root is
    /// known from elsewhere.
    pub fn set_hashes(
        &mut self,
        hashes: &BTreeMap<usize, Hash>,
        leaves: &BTreeMap<usize, Hash>,
    ) -> Result<(), HashTreeError> {
        let len = self.nodes.len();
        let mut new_hashes = hashes.clone();
        for (&leaf, h) in leaves {
            let index =
                self.first_leaf
                    .checked_add(leaf)
                    .ok_or(HashTreeError::IndexOutOfRange {
                        index: usize::MAX,
                        len,
                    })?;
            if let Some(old) = new_hashes.get(&index) {
                if old != h {
                    return Err(HashTreeError::BadHash { index });
                }
            }
            new_hashes.insert(index, *h);
        }
        let mut added: Vec<usize> = Vec::new();
        let result = self.add_and_check(&new_hashes, &mut added);
        if result.is_err() {
            for i in added {
                self.nodes[i] = None;
            }
        }
        result
    }

    fn add_and_check(
        &mut self,
        new_hashes: &BTreeMap<usize, Hash>,
        added: &mut Vec<usize>,
    ) -> Result<(), HashTreeError> {
        let len = self.nodes.len();
        let levels = depth_of(len - 1) + 1;
        let mut to_check: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); levels];
        for (&i, h) in new_hashes {
            let slot = self
                .nodes
                .get_mut(i)
                .ok_or(HashTreeError::IndexOutOfRange { index: i, len })?;
            match slot {
                Some(old) if old != h => return Err(HashTreeError::BadHash { index: i }),
                Some(_) => {}
                None => {
                    *slot = Some(*h);
                    added.push(i);
                    to_check[depth_of(i)].insert(i);
                }
            }
        }
        for level in (0..levels).rev() {
            while let Some(i) = to_check[level].pop_first() {
                if i == 0 {
                    continue;
                }
                let sib = sibling(i);
                let Some(sib_hash) = self.nodes[sib] else {
                    return Err(HashTreeError::NotEnoughHashes { index: i });
                };
                let here = self.nodes[i].expect("node being checked is set");
                let (l, r) = if i < sib {
                    (here, sib_hash)
                } else {
                    (sib_hash, here)
                };
                let computed = pair_hash(&l, &r);
                let p = parent(i);
                match self.nodes[p] {
                    Some(known) if known != computed => {
                        return Err(HashTreeError::BadHash { index: p })
                    }
                    Some(_) => {}
                    None => {
                        self.nodes[p] = Some(computed);
                        added.push(p);
                        to_check[level - 1].insert(p);
                    }
                }
                to_check[level].remove(&sib);
            }
        }
        Ok(())
    }
}

/// Checks a whole stored tree, all its nodes root first (as a share stores
/// a block or crypttext hash tree): every inner node must be the pair hash
/// of its children, and the root must be `root` when given. This is what
/// Tahoe's `set_hashes` with every node of a tree checks, without holding a
/// second copy of the tree. The caller checks that `nodes` has the length
/// the tree must have.
pub fn check_complete(nodes: &[Hash], root: Option<&Hash>) -> Result<(), HashTreeError> {
    if let (Some(r), Some(first)) = (root, nodes.first()) {
        if r != first {
            return Err(HashTreeError::BadHash { index: 0 });
        }
    }
    // Deepest first, as Tahoe checks, so the error names the lowest bad node.
    for i in (0..nodes.len() / 2).rev() {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        if r >= nodes.len() {
            return Err(HashTreeError::NotEnoughHashes { index: l });
        }
        if pair_hash(&nodes[l], &nodes[r]) != nodes[i] {
            return Err(HashTreeError::BadHash { index: i });
        }
    }
    Ok(())
}

/// Reads a stored list of hashes (32 bytes each), as a share stores a block
/// or crypttext hash tree. `None` if the length is not a multiple of 32.
pub fn split_hashes(data: &[u8]) -> Option<Vec<Hash>> {
    if !data.len().is_multiple_of(HASH_LEN) {
        return None;
    }
    Some(
        data.chunks_exact(HASH_LEN)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect(),
    )
}

/// Reads a stored share hash chain: entries of a 2-byte big-endian node
/// index and a 32-byte hash. A later entry for the same index replaces an
/// earlier one (as Tahoe's `dict(...)` does). `None` if the length is not a
/// multiple of 34.
pub fn parse_share_hash_chain(data: &[u8]) -> Option<BTreeMap<usize, Hash>> {
    if !data.len().is_multiple_of(2 + HASH_LEN) {
        return None;
    }
    Some(
        data.chunks_exact(2 + HASH_LEN)
            .map(|c| {
                let index = u16::from_be_bytes([c[0], c[1]]) as usize;
                (index, c[2..].try_into().expect("32-byte hash"))
            })
            .collect(),
    )
}

/// Writes a share hash chain (sorted by index), as Tahoe's writers do.
pub fn pack_share_hash_chain(chain: &BTreeMap<usize, Hash>) -> Vec<u8> {
    let mut out = Vec::with_capacity(chain.len() * (2 + HASH_LEN));
    for (&i, h) in chain {
        out.extend_from_slice(&(i as u16).to_be_bytes());
        out.extend_from_slice(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| steward_cap::hash::block_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn sizes() {
        assert_eq!(tree_len(0), Some(1));
        assert_eq!(tree_len(1), Some(1));
        assert_eq!(tree_len(2), Some(3));
        assert_eq!(tree_len(3), Some(7));
        assert_eq!(tree_len(17), Some(63));
        assert_eq!(tree_len(u64::MAX), None);
        assert_eq!(depth_of(0), 0);
        assert_eq!(depth_of(2), 1);
        assert_eq!(depth_of(3), 2);
        assert_eq!(depth_of(14), 3);
    }

    #[test]
    fn complete_tree_checks_in_incomplete_tree() {
        for n in 1..20 {
            let t = HashTree::new(&leaves(n));
            for leaf in 0..n {
                let mut it = IncompleteHashTree::new(n).unwrap();
                it.set_hashes(&BTreeMap::from([(0, t.root())]), &BTreeMap::new())
                    .unwrap();
                let needed = it.needed_hashes(leaf, false);
                assert_eq!(needed, t.needed_hashes(leaf, false));
                let chain: BTreeMap<usize, Hash> =
                    needed.iter().map(|&i| (i, t.nodes()[i])).collect();
                let good = BTreeMap::from([(leaf, t.nodes()[t.leaf_index(leaf)])]);
                // a wrong leaf fails and leaves nothing behind
                let bad = BTreeMap::from([(leaf, [7u8; 32])]);
                let before = it.clone().nodes;
                if n > 1 {
                    assert!(matches!(
                        it.set_hashes(&chain, &bad),
                        Err(HashTreeError::BadHash { .. })
                    ));
                } else {
                    assert!(it.set_hashes(&chain, &bad).is_err());
                }
                assert_eq!(it.nodes, before);
                it.set_hashes(&chain, &good).unwrap();
                assert!(it.needed_hashes(leaf, true).is_empty());
            }
        }
    }

    #[test]
    fn missing_sibling_is_not_enough() {
        let t = HashTree::new(&leaves(4));
        let mut it = IncompleteHashTree::new(4).unwrap();
        it.set_hashes(&BTreeMap::from([(0, t.root())]), &BTreeMap::new())
            .unwrap();
        let r = it.set_hashes(&BTreeMap::new(), &BTreeMap::from([(1, t.nodes()[4])]));
        assert_eq!(r, Err(HashTreeError::NotEnoughHashes { index: 4 }));
        assert_eq!(
            it.set_hashes(&BTreeMap::from([(7, [0; 32])]), &BTreeMap::new()),
            Err(HashTreeError::IndexOutOfRange { index: 7, len: 7 })
        );
    }

    #[test]
    fn whole_stored_tree_checks_itself() {
        for n in [1, 2, 5, 8] {
            let t = HashTree::new(&leaves(n));
            let all: BTreeMap<usize, Hash> = t.nodes().iter().copied().enumerate().collect();
            let mut it = IncompleteHashTree::new(n).unwrap();
            it.set_hashes(&all, &BTreeMap::new()).unwrap();
            assert_eq!(check_complete(t.nodes(), Some(&t.root())), Ok(()));
            for i in 0..all.len() {
                // check_complete agrees with set_hashes on every damaged node
                let mut bad = all.clone();
                bad.get_mut(&i).unwrap()[3] ^= 1;
                let nodes: Vec<Hash> = bad.values().copied().collect();
                let mut it = IncompleteHashTree::new(n).unwrap();
                let tahoe = it.set_hashes(&bad, &BTreeMap::new()).is_err();
                assert_eq!(
                    check_complete(&nodes, None).is_err(),
                    tahoe,
                    "{n} leaves, node {i}"
                );
                assert!(check_complete(&nodes, Some(&t.root())).is_err(), "node {i}");
            }
        }
    }

    #[test]
    fn share_hash_chain_round_trip() {
        let chain = BTreeMap::from([(3usize, [1u8; 32]), (9, [2u8; 32])]);
        let packed = pack_share_hash_chain(&chain);
        assert_eq!(packed.len(), 68);
        assert_eq!(parse_share_hash_chain(&packed).unwrap(), chain);
        assert!(parse_share_hash_chain(&packed[1..]).is_none());
        assert!(split_hashes(&[0u8; 33]).is_none());
    }
}
