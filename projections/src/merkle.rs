//! The Merkle tree over the whole log, exactly as RFC 6962 / RFC 9162 §2.1 define it: leaf `i` is
//! the event at position `i`, and its leaf hash is `SHA-256(0x00 || event hash)` (the event hash is
//! the SHA-256 of the event's canonical payload, so an inclusion proof plus the payload proves
//! every field of the event); interior nodes are `SHA-256(0x01 || left || right)`, split at the
//! largest power of two smaller than the size.
//!
//! The hashing, the proofs and their checks are those of Go's sumdb `tlog` package, through
//! Cloudflare's Rust port (`tlog_tiles`): the same code base that serves Go's checksum database
//! and Cloudflare's certificate-transparency logs. What is ours is the storage: every complete
//! subtree hash in the `tlog` "stored hash" order (about two hashes per leaf, 64 bytes per event),
//! in memory, appended as events arrive. Appending a leaf stores it and the hashes of the subtrees
//! it completes (amortized two hashes); a root or a proof reads O(log n) stored hashes and never
//! rebuilds a subtree. The store is a cache of the log: it is rebuilt from the log on start, and
//! `ledger verify` recomputes it and compares.

use crate::event::Hash;
use tlog_tiles::tlog;

/// The root of the empty tree: SHA-256 of nothing.
pub const EMPTY_ROOT: Hash = tlog::EMPTY_HASH.0;

/// The longest proof a tree of at most 2^64 leaves has: a longer one is refused before it is run.
pub const MAX_PROOF_HASHES: usize = 64;

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const SHA256_INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The SHA-256 of message blocks already padded (FIPS 180-4 §5.1.1): the tree's two fixed-length
/// inputs go straight to the compression function (the CPU's SHA extensions where there are
/// any), without a streaming hasher's buffering. `ledger verify` hashes two or three blocks per
/// event for the tree, on one thread, so this is where its time goes.
fn sha256_padded(blocks: &[[u8; 64]]) -> Hash {
    use sha2::digest::generic_array::GenericArray;
    let mut state = SHA256_INITIAL;
    for block in blocks {
        sha2::compress256(
            &mut state,
            std::slice::from_ref(GenericArray::from_slice(block)),
        );
    }
    let mut hash = [0u8; 32];
    for (bytes, word) in hash.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    hash
}

/// The leaf hash of the event whose event hash is `event_hash`: `SHA-256(0x00 || event_hash)`.
pub fn leaf_hash(event_hash: &Hash) -> Hash {
    // 33 bytes: one block, with the 0x80 pad byte and the length in bits (264) at its end.
    let mut block = [0u8; 64];
    block[1..33].copy_from_slice(event_hash);
    block[33] = 0x80;
    block[62..].copy_from_slice(&(33u16 * 8).to_be_bytes());
    sha256_padded(&[block])
}

/// An interior node's hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // 65 bytes: two blocks, the second holding the last byte, the pad byte and the length (520).
    let mut blocks = [[0u8; 64]; 2];
    blocks[0][0] = 0x01;
    blocks[0][1..33].copy_from_slice(left);
    blocks[0][33..].copy_from_slice(&right[..31]);
    blocks[1][0] = right[31];
    blocks[1][1] = 0x80;
    blocks[1][62..].copy_from_slice(&(65u16 * 8).to_be_bytes());
    sha256_padded(&blocks)
}

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The sizes or the index asked for are not in the tree (or not in order).
    #[error("{0}")]
    OutOfRange(String),
    /// The proof does not prove what it claims.
    #[error("the proof does not verify")]
    Invalid,
}

/// Hashes per chunk of the store: 1 MiB, so that growing never copies the whole store.
const CHUNK: usize = 1 << 15;

/// The Merkle tree of a log of `size()` events (see the module's documentation).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MerkleTree {
    size: u64,
    /// Stored hashes, in `tlog` stored-hash order, `CHUNK` per vector.
    chunks: Vec<Vec<Hash>>,
    stored: u64,
}

impl std::fmt::Debug for MerkleTree {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MerkleTree")
            .field("size", &self.size)
            .field("root", &hex::encode(self.root()))
            .finish()
    }
}

impl MerkleTree {
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    /// The number of leaves (events).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the event whose hash is `event_hash` as the next leaf.
    pub fn push_event(&mut self, event_hash: &Hash) {
        self.push_leaf(leaf_hash(event_hash));
    }

    /// Appends a leaf by its leaf hash: stores it and the hash of every subtree it completes (as
    /// many as `n + 1` has trailing zero bits, for leaf `n`).
    pub fn push_leaf(&mut self, leaf: Hash) {
        let n = self.size;
        let mut hash = leaf;
        self.store(hash);
        for level in 0..(n + 1).trailing_zeros() {
            let left = self.get(tlog::stored_hash_index(level as u8, (n >> level) - 1));
            hash = node_hash(&left.0, &hash);
            self.store(hash);
        }
        self.size += 1;
        debug_assert_eq!(self.stored, tlog::stored_hash_count(self.size));
    }

    fn store(&mut self, hash: Hash) {
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("a chunk").push(hash);
        self.stored += 1;
    }

    fn get(&self, index: u64) -> tlog::Hash {
        tlog::Hash(self.chunks[index as usize / CHUNK][index as usize % CHUNK])
    }

    /// The leaf hash of leaf `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        (index < self.size).then(|| self.get(tlog::stored_hash_index(0, index)).0)
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size).expect("the tree's own size")
    }

    /// The root of the tree of the first `size` leaves (a tree this one extends).
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size {
            return Err(ProofError::OutOfRange(format!(
                "tree size {size} is beyond the tree ({} leaves)",
                self.size
            )));
        }
        tlog::tree_hash(size, self)
            .map(|hash| hash.0)
            .map_err(|error| ProofError::OutOfRange(error.to_string()))
    }

    /// The audit path proving leaf `index` is in the tree of the first `tree_size` leaves
    /// (RFC 6962 §2.1.1 `PATH`), from the leaf's sibling up.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, ProofError> {
        if tree_size > self.size {
            return Err(ProofError::OutOfRange(format!(
                "tree size {tree_size} is beyond the tree ({} leaves)",
                self.size
            )));
        }
        if index >= tree_size {
            return Err(ProofError::OutOfRange(format!(
                "position {index} is not in a tree of {tree_size} leaves"
            )));
        }
        tlog::prove_record(tree_size, index, self)
            .map(unwrap_hashes)
            .map_err(|error| ProofError::OutOfRange(error.to_string()))
    }

    /// The proof that the tree of the first `second` leaves extends the tree of the first
    /// `first` (RFC 6962 §2.1.2 `PROOF`), for `0 < first <= second <= size`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        if first == 0 || first > second || second > self.size {
            return Err(ProofError::OutOfRange(format!(
                "a consistency proof needs 0 < first <= second <= {} (the tree's size); got first {first}, second {second}",
                self.size
            )));
        }
        tlog::prove_tree(second, first, self)
            .map(unwrap_hashes)
            .map_err(|error| ProofError::OutOfRange(error.to_string()))
    }
}

/// What checking checkpoints needs of a tree: its size, roots of its prefixes, and consistency
/// proofs between them.
pub trait Tree {
    /// The number of leaves.
    fn size(&self) -> u64;
    /// The root of the tree of the first `size` leaves.
    fn root_at(&self, size: u64) -> Result<Hash, ProofError>;
    /// The proof that the tree of `second` leaves extends the tree of `first`.
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError>;
}

impl Tree for MerkleTree {
    fn size(&self) -> u64 {
        self.size
    }
    fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        MerkleTree::root_at(self, size)
    }
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        MerkleTree::consistency_proof(self, first, second)
    }
}

/// A tree given level by level, for a whole log built at once (`ledger verify` computes each
/// level's hashes on every core): level 0 holds the leaf hashes, level `k + 1` the hash of each
/// complete pair of level `k`. Roots and proofs read it as they read a [`MerkleTree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelTree {
    levels: Vec<Vec<Hash>>,
}

impl LevelTree {
    /// The tree whose levels are `levels`; each must hold exactly the pairs of the one below.
    pub fn from_levels(levels: Vec<Vec<Hash>>) -> Result<LevelTree, ProofError> {
        for pair in levels.windows(2) {
            if pair[1].len() != pair[0].len() / 2 {
                return Err(ProofError::OutOfRange(
                    "a level does not hold the pairs of the one below".into(),
                ));
            }
        }
        Ok(LevelTree { levels })
    }

    fn check(&self, size: u64) -> Result<(), ProofError> {
        if size > Tree::size(self) {
            return Err(ProofError::OutOfRange(format!(
                "tree size {size} is beyond the tree ({} leaves)",
                Tree::size(self)
            )));
        }
        Ok(())
    }
}

impl Tree for LevelTree {
    fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }
    fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check(size)?;
        tlog::tree_hash(size, self)
            .map(|hash| hash.0)
            .map_err(|error| ProofError::OutOfRange(error.to_string()))
    }
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.check(second)?;
        if first == 0 || first > second {
            return Err(ProofError::OutOfRange(format!(
                "a consistency proof needs 0 < first <= second; got first {first}, second {second}"
            )));
        }
        tlog::prove_tree(second, first, self)
            .map(unwrap_hashes)
            .map_err(|error| ProofError::OutOfRange(error.to_string()))
    }
}

impl tlog::HashReader for LevelTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&index| {
                let (level, n) = tlog::split_stored_hash_index(index);
                self.levels
                    .get(usize::from(level))
                    .and_then(|hashes| hashes.get(n as usize))
                    .map(|hash| tlog::Hash(*hash))
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl tlog::HashReader for MerkleTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&index| {
                if index < self.stored {
                    Ok(self.get(index))
                } else {
                    Err(tlog::Error::IndexesNotInTree)
                }
            })
            .collect()
    }
}

fn unwrap_hashes(hashes: Vec<tlog::Hash>) -> Vec<Hash> {
    hashes.into_iter().map(|hash| hash.0).collect()
}

fn wrap_hashes(hashes: &[Hash]) -> Vec<tlog::Hash> {
    hashes.iter().copied().map(tlog::Hash).collect()
}

/// Checks that `proof` proves the leaf with hash `leaf` is leaf `index` of the tree of
/// `tree_size` leaves whose root is `root`. Every step of the path is recomputed: a proof one hash
/// too long or too short, a wrong index or any changed byte fails.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::OutOfRange(format!(
            "position {index} is not in a tree of {tree_size} leaves"
        )));
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Invalid);
    }
    tlog::check_record(
        &wrap_hashes(proof),
        tree_size,
        tlog::Hash(*root),
        index,
        tlog::Hash(*leaf),
    )
    .map_err(|_| ProofError::Invalid)
}

/// Checks that `proof` proves the tree of `second` leaves with root `second_root` extends the
/// tree of `first` leaves with root `first_root`, for `0 < first <= second`. Both roots are
/// recomputed from the proof and compared.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::OutOfRange(format!(
            "a consistency proof needs 0 < first <= second; got first {first}, second {second}"
        )));
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Invalid);
    }
    tlog::check_tree(
        &wrap_hashes(proof),
        second,
        tlog::Hash(*second_root),
        first,
        tlog::Hash(*first_root),
    )
    .map_err(|_| ProofError::Invalid)
}

#[cfg(test)]
#[path = "merkle_tests.rs"]
mod tests;
