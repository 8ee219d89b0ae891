//! Tests of the Merkle tree: RFC 6962's reference tree, a real certificate-transparency log's
//! published proofs, an independent implementation of RFC 6962 §2.1 written from its text, and
//! every proof of every pair of sizes up to 300 with each way of breaking it.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

fn hex32(text: &str) -> Hash {
    hex::decode(text)
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn sha(parts: &[&[u8]]) -> Hash {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// RFC 6962 §2.1 `MTH`, written from the RFC's text, recursively (the reference for the tree).
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            sha(&[
                &[1],
                &reference_root(&leaves[..k]),
                &reference_root(&leaves[k..]),
            ])
        }
    }
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 §2.1.1 `PATH(m, D[n])`.
fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut path = reference_path(m, &leaves[..k]);
        path.push(reference_root(&leaves[k..]));
        path
    } else {
        let mut path = reference_path(m - k, &leaves[k..]);
        path.push(reference_root(&leaves[..k]));
        path
    }
}

/// RFC 6962 §2.1.2 `SUBPROOF(m, D[n], b)`.
fn reference_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole {
            vec![]
        } else {
            vec![reference_root(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut proof = reference_subproof(m, &leaves[..k], whole);
        proof.push(reference_root(&leaves[k..]));
        proof
    } else {
        let mut proof = reference_subproof(m - k, &leaves[k..], false);
        proof.push(reference_root(&leaves[..k]));
        proof
    }
}

/// The eight leaves of RFC 6962's reference tree (certificate-transparency's test data).
fn rfc_leaves() -> Vec<Hash> {
    let data: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    data.iter().map(|leaf| sha(&[&[0], leaf])).collect()
}

fn tree_of(leaves: &[Hash]) -> MerkleTree {
    let mut tree = MerkleTree::new();
    for leaf in leaves {
        tree.push_leaf(*leaf);
    }
    tree
}

#[test]
fn rfc6962_reference_tree_roots() {
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let leaves = rfc_leaves();
    let tree = tree_of(&leaves);
    assert_eq!(MerkleTree::new().root(), EMPTY_ROOT);
    for (size, root) in roots.iter().enumerate() {
        assert_eq!(
            tree.root_at(size as u64).unwrap(),
            hex32(root),
            "size {size}"
        );
        assert_eq!(tree_of(&leaves[..size]).root(), hex32(root), "size {size}");
    }
}

#[test]
fn rfc6962_reference_tree_proofs() {
    let tree = tree_of(&rfc_leaves());
    let path = |hashes: &[&str]| hashes.iter().map(|hash| hex32(hash)).collect::<Vec<_>>();
    assert_eq!(tree.inclusion_proof(0, 1).unwrap(), path(&[]));
    assert_eq!(
        tree.inclusion_proof(0, 8).unwrap(),
        path(&[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ])
    );
    assert_eq!(
        tree.inclusion_proof(5, 8).unwrap(),
        path(&[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ])
    );
    assert_eq!(tree.consistency_proof(1, 1).unwrap(), path(&[]));
    assert_eq!(
        tree.consistency_proof(1, 8).unwrap(),
        path(&[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ])
    );
    assert_eq!(
        tree.consistency_proof(6, 8).unwrap(),
        path(&[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ])
    );
    assert_eq!(
        tree.consistency_proof(2, 5).unwrap(),
        path(&[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ])
    );
}

#[derive(serde::Deserialize)]
struct Sth {
    tree_size: u64,
    sha256_root_hash: String,
}

/// The vendored answers of the CT log (compiled in: the core reads no files, even in tests).
fn testdata(name: &str) -> &'static str {
    match name {
        "get-sth.json" => include_str!("../testdata/ct-argon2020/get-sth.json"),
        "get-entries-10000.json" => include_str!("../testdata/ct-argon2020/get-entries-10000.json"),
        "get-proof-by-hash-10000.json" => {
            include_str!("../testdata/ct-argon2020/get-proof-by-hash-10000.json")
        }
        "get-sth-consistency-3654490.json" => {
            include_str!("../testdata/ct-argon2020/get-sth-consistency-3654490.json")
        }
        other => panic!("no test data {other}"),
    }
}

fn base64_hash(text: &str) -> Hash {
    BASE64.decode(text).unwrap().try_into().unwrap()
}

fn base64_hashes(value: &serde_json::Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|hash| base64_hash(hash.as_str().unwrap()))
        .collect()
}

#[test]
fn a_real_certificate_transparency_logs_proofs_verify() {
    let sth: Sth = serde_json::from_str(testdata("get-sth.json")).unwrap();
    let root = base64_hash(&sth.sha256_root_hash);
    let entries: serde_json::Value =
        serde_json::from_str(testdata("get-entries-10000.json")).unwrap();
    let leaf_input = BASE64
        .decode(entries["entries"][0]["leaf_input"].as_str().unwrap())
        .unwrap();
    let leaf = sha(&[&[0], &leaf_input]);
    let proof: serde_json::Value =
        serde_json::from_str(testdata("get-proof-by-hash-10000.json")).unwrap();
    let path = base64_hashes(&proof["audit_path"]);
    verify_inclusion(&leaf, 10_000, sth.tree_size, &path, &root).unwrap();
    assert_eq!(
        verify_inclusion(&leaf, 10_001, sth.tree_size, &path, &root),
        Err(ProofError::Invalid)
    );

    let consistency: serde_json::Value =
        serde_json::from_str(testdata("get-sth-consistency-3654490.json")).unwrap();
    let proof = base64_hashes(&consistency["consistency"]);
    let old_root = base64_hash("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=");
    verify_consistency(3_654_490, sth.tree_size, &old_root, &root, &proof).unwrap();
    let mut other_root = old_root;
    other_root[31] ^= 1;
    assert_eq!(
        verify_consistency(3_654_490, sth.tree_size, &other_root, &root, &proof),
        Err(ProofError::Invalid)
    );
}

/// Leaves that are not a pattern: the SHA-256 of their index.
fn leaves(count: usize) -> Vec<Hash> {
    (0..count as u64)
        .map(|index| leaf_hash(&sha(&[&index.to_be_bytes()])))
        .collect()
}

/// Every way this test breaks a proof: each byte of each hash flipped in turn (one bit of
/// `(hash + byte) % 8`, so that every bit position is covered across hashes), one hash dropped
/// from either end, one hash added at either end.
fn broken(proof: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for hash in 0..proof.len() {
        for byte in 0..32 {
            let mut bad = proof.to_vec();
            bad[hash][byte] ^= 1 << ((hash + byte) % 8);
            out.push(bad);
        }
    }
    if !proof.is_empty() {
        out.push(proof[1..].to_vec());
        out.push(proof[..proof.len() - 1].to_vec());
    }
    let extra = sha(&[b"extra"]);
    out.push([proof, &[extra]].concat());
    out.push([&[extra], proof].concat());
    out
}

#[test]
fn every_proof_up_to_300_leaves_matches_the_rfc_and_verifies_and_no_broken_one_does() {
    const N: usize = 300;
    let leaves = leaves(N);
    let tree = tree_of(&leaves);
    let roots: Vec<Hash> = (0..=N as u64).map(|n| tree.root_at(n).unwrap()).collect();
    // Roots against the RFC's definition (every size), and proofs against it for the sizes where
    // the recursive reference is cheap enough.
    for n in 0..=N {
        assert_eq!(roots[n], reference_root(&leaves[..n]), "root of {n}");
    }
    for n in 1..=N as u64 {
        for m in 1..=n {
            // Inclusion of leaf m - 1 in the tree of n.
            let index = m - 1;
            let path = tree.inclusion_proof(index, n).unwrap();
            let leaf = leaves[index as usize];
            let root = roots[n as usize];
            if n <= 64 {
                assert_eq!(path, reference_path(index as usize, &leaves[..n as usize]));
            }
            verify_inclusion(&leaf, index, n, &path, &root).unwrap();
            // The flips of every byte are checked for a sample (all of them for small trees);
            // the shape changes (too long, too short, wrong index, wrong leaf, wrong root) always.
            let thorough = n <= 40 || (n * 7 + m) % 97 == 0;
            for bad in broken(&path)
                .into_iter()
                .filter(|bad| thorough || bad.len() != path.len())
            {
                assert!(verify_inclusion(&leaf, index, n, &bad, &root).is_err());
            }
            let mut other = leaf;
            other[0] ^= 0x80;
            assert!(verify_inclusion(&other, index, n, &path, &root).is_err());
            let mut other_root = root;
            other_root[31] ^= 1;
            assert!(verify_inclusion(&leaf, index, n, &path, &other_root).is_err());
            if n > 1 {
                let wrong_index = (index + 1) % n;
                assert!(verify_inclusion(&leaf, wrong_index, n, &path, &root).is_err());
            }

            // Consistency of the tree of m with the tree of n.
            let proof = tree.consistency_proof(m, n).unwrap();
            if n <= 64 {
                assert_eq!(
                    proof,
                    reference_subproof(m as usize, &leaves[..n as usize], true)
                );
            }
            let (first_root, second_root) = (&roots[m as usize], &roots[n as usize]);
            verify_consistency(m, n, first_root, second_root, &proof).unwrap();
            for bad in broken(&proof)
                .into_iter()
                .filter(|bad| thorough || bad.len() != proof.len())
            {
                assert!(verify_consistency(m, n, first_root, second_root, &bad).is_err());
            }
            if m < n {
                // The wrong first size. (A wrong second size can verify: for m = 1, n = 4 the
                // proof's hashes also fit a tree of 3 whose last leaf is the subtree of leaves
                // 2 and 3; RFC 6962 binds sizes in the signed checkpoint, not in the hashes.)
                assert!(verify_consistency(m + 1, n, first_root, second_root, &proof).is_err());
                let mut other = *first_root;
                other[5] ^= 4;
                assert!(verify_consistency(m, n, &other, second_root, &proof).is_err());
            }
        }
    }
}

#[test]
fn out_of_range_requests_are_refused_not_panics() {
    let tree = tree_of(&leaves(10));
    assert!(matches!(
        tree.inclusion_proof(10, 10),
        Err(ProofError::OutOfRange(_))
    ));
    assert!(matches!(
        tree.inclusion_proof(0, 11),
        Err(ProofError::OutOfRange(_))
    ));
    assert!(matches!(
        tree.inclusion_proof(u64::MAX, u64::MAX),
        Err(ProofError::OutOfRange(_))
    ));
    for (first, second) in [(0, 5), (6, 5), (1, 11), (u64::MAX, u64::MAX), (0, 0)] {
        assert!(matches!(
            tree.consistency_proof(first, second),
            Err(ProofError::OutOfRange(_))
        ));
    }
    assert!(tree.root_at(11).is_err());
    let root = tree.root();
    assert!(verify_inclusion(&root, 3, 3, &[], &root).is_err());
    assert!(verify_consistency(0, 3, &root, &root, &[]).is_err());
    assert!(verify_consistency(4, 3, &root, &root, &[]).is_err());
    let huge = vec![root; MAX_PROOF_HASHES + 1];
    assert!(verify_inclusion(&root, 0, u64::MAX, &huge, &root).is_err());
    assert!(verify_consistency(1, u64::MAX, &root, &root, &huge).is_err());
    // The largest sizes do not overflow.
    assert!(verify_inclusion(&root, u64::MAX - 1, u64::MAX, &[root; 64], &root).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &root, &root, &[root; 64]).is_err());
}

#[test]
fn stored_hashes_are_those_of_go_tlog() {
    // Our append stores, for each leaf, exactly what `tlog::stored_hashes_for_record_hash` says.
    let leaves = leaves(200);
    let mut tree = MerkleTree::new();
    let mut reference: Vec<tlog::Hash> = Vec::new();
    for (n, leaf) in leaves.iter().enumerate() {
        struct Reader<'a>(&'a [tlog::Hash]);
        impl tlog::HashReader for Reader<'_> {
            fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
                Ok(indexes
                    .iter()
                    .map(|&index| self.0[index as usize])
                    .collect())
            }
        }
        let new =
            tlog::stored_hashes_for_record_hash(n as u64, tlog::Hash(*leaf), &Reader(&reference))
                .unwrap();
        reference.extend(new);
        tree.push_leaf(*leaf);
        let indexes: Vec<u64> = (0..reference.len() as u64).collect();
        assert!(
            tlog::HashReader::read_hashes(&tree, &indexes).unwrap() == reference,
            "after leaf {n}"
        );
        assert!(tlog::HashReader::read_hashes(&tree, &[reference.len() as u64]).is_err());
    }
    assert_eq!(
        leaf_hash(&[7; 32]),
        sha(&[&[0], &[7; 32]]),
        "leaf hash = SHA-256(0x00 || event hash)"
    );
    assert_eq!(
        node_hash(&[1; 32], &[2; 32]),
        sha(&[&[1], &[1; 32], &[2; 32]])
    );
}

#[test]
fn a_tree_given_by_levels_answers_as_the_stored_tree() {
    for count in [0usize, 1, 2, 3, 5, 8, 13, 64, 100, 257] {
        let leaves = leaves(count);
        let stored = tree_of(&leaves);
        let mut levels = vec![leaves.clone()];
        while levels.last().unwrap().len() > 1 {
            let below = levels.last().unwrap();
            let above = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(above);
        }
        let by_levels = LevelTree::from_levels(levels).unwrap();
        assert_eq!(Tree::size(&by_levels), count as u64);
        for size in 0..=count as u64 {
            assert_eq!(
                Tree::root_at(&by_levels, size),
                stored.root_at(size),
                "{count} {size}"
            );
            for first in 1..=size {
                assert_eq!(
                    Tree::consistency_proof(&by_levels, first, size),
                    stored.consistency_proof(first, size)
                );
            }
        }
        assert!(Tree::root_at(&by_levels, count as u64 + 1).is_err());
    }
    assert!(LevelTree::from_levels(vec![leaves(4), leaves(1)]).is_err());
}
