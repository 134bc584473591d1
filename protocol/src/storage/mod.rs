//! 0G Storage root hash, Flow submission nodes and segment proofs (PROTOCOL.md §6).
//!
//! A file is cut into 256-byte **chunks** (the last one zero-padded) grouped into **segments** of
//! 1024 chunks. The chunk count `c` is *flow-padded* with all-zero chunks: when `c` is not a power
//! of two `P`, it is rounded up to a multiple of `P / 16` (or of 1 below 16 chunks). The leaves are
//! `keccak256(chunk)`; parents are `keccak256(left ‖ right)`, paired left to right level by level,
//! an odd last node moving up unchanged. The root of that tree is the file's 0G root hash.
//!
//! The tree has a second reading that this module relies on: its root is the right-to-left fold
//! of the complete subtrees of the binary decomposition of the padded chunk count (largest first),
//! and those subtrees are exactly the **submission nodes** 0G's Flow `submit` takes. So the hasher
//! streams: it reads bounded batches of segments, hashes the segments of a batch in parallel
//! (rayon), and pushes each segment root onto a stack of at most 64 complete subtrees. Memory is
//! the batch (a few MiB) whatever the input size; all-zero padding segments are never materialised.
//!
//! - [`root_hash`], [`root_hash_reader`], [`root_hash_file`]: the root (and submission nodes) of
//!   bytes, of any [`std::io::Read`], of a file;
//! - [`RootHasher`]: the incremental form (also an [`std::io::Write`]);
//! - [`SegmentWithProof`]: a `zgs_downloadSegmentWithProof` answer, parsed from untrusted JSON and
//!   verified against the root the caller expects; [`SegmentProof`] is its `{lemma, path}` proof.
//!
//! # Example
//!
//! ```
//! use sealtune_protocol::storage::{root_hash, StorageError};
//!
//! let tree = root_hash(&[0x61])?;
//! assert_eq!(
//!     tree.root().to_string(),
//!     "0x200e594efa2ab0b924e60f9bb9445f75b8d058f0de13b35a83c71d494b0a15ca"
//! );
//! // One chunk: one submission node of height 0.
//! assert_eq!(tree.submission_nodes().len(), 1);
//! assert_eq!(tree.submission_nodes()[0].height, 0);
//! // Empty input has no root.
//! assert!(matches!(root_hash(&[]), Err(StorageError::EmptyInput)));
//! # Ok::<(), StorageError>(())
//! ```

mod hasher;
mod layout;
mod proof;
mod tree;

pub use hasher::{FileTree, RootHasher, root_hash, root_hash_file, root_hash_reader};
pub use layout::Layout;
pub use proof::{ProofError, SegmentProof, SegmentWithProof};
pub use tree::{SubmissionNode, hash_pair};

/// Bytes per chunk, the leaf of the tree.
pub const CHUNK_SIZE: usize = 256;
/// Chunks per segment, the unit storage nodes serve with a proof.
pub const SEGMENT_CHUNKS: usize = 1024;
/// Bytes per segment (256 KiB).
pub const SEGMENT_SIZE: usize = CHUNK_SIZE * SEGMENT_CHUNKS;
/// Size of the fragments the official SDK splits larger files into, each with its own root (4 GiB).
pub const FRAGMENT_SIZE: u64 = 4 << 30;

/// Why a root hash could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// 0G Storage has no root for an empty file.
    #[error("empty input has no 0G storage root hash")]
    EmptyInput,
    /// The flow-padded chunk count does not fit in 64 bits.
    #[error("input of {size} bytes is too large for a 0G storage tree")]
    TooLarge {
        /// The input size in bytes.
        size: u64,
    },
    /// Reading the input failed.
    #[error("reading the input: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Byte `i` of the PROTOCOL.md "pattern" is `i mod 251`.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn hex_root(data: &[u8]) -> String {
        root_hash(data).unwrap().root().to_string()
    }

    #[test]
    fn one_byte_vector() {
        assert_eq!(
            hex_root(&[0x61]),
            "0x200e594efa2ab0b924e60f9bb9445f75b8d058f0de13b35a83c71d494b0a15ca"
        );
    }

    #[test]
    fn one_zero_chunk_is_the_empty_chunk_hash() {
        assert_eq!(
            hex_root(&[0; 256]),
            "0xd397b3b043d87fcd6fad1291ff0bfd16401c274896d8c63a923727f077b8e0b5"
        );
    }

    #[test]
    fn two_chunks_vector() {
        assert_eq!(
            hex_root(&[1; 257]),
            "0xef9f8272433b95cfd89fe13ea1e4ed1ea8aa61e1a3653a935e8d0fda3de6d857"
        );
    }

    #[test]
    fn one_full_segment_vector() {
        assert_eq!(
            hex_root(&pattern(262_144)),
            "0x4d533607c0f4423a9287d761e7394aa61552adb7d6a080cdb278ddb65b2eacb7"
        );
    }

    #[test]
    fn one_segment_and_one_byte_vector() {
        assert_eq!(
            hex_root(&pattern(262_145)),
            "0x1458412a6ece9f4f9dc83ade0c68037378ef3e10fe484cea5d451cc10c9212d0"
        );
    }

    #[test]
    fn million_bytes_vector() {
        assert_eq!(
            hex_root(&pattern(1_000_000)),
            "0x285b8efcda042d36b5ca0bf41e92e2fbd5d623d160377484559bc8435021e5ff"
        );
    }

    #[test]
    fn five_million_bytes_vector() {
        let data = pattern(5_000_000);
        let expected = "0xba0c9b0f93e8906cbe34d8b59f3f43d62c7312aeaec448d24912a924c1c9680c";
        assert_eq!(hex_root(&data), expected);
        // Streaming with a one-segment batch and odd write sizes gives the same tree.
        let mut hasher = RootHasher::with_batch_segments(1);
        for piece in data.chunks(100_003) {
            hasher.update(piece);
        }
        let streamed = hasher.finalize().unwrap();
        assert_eq!(streamed.root().to_string(), expected);
        assert_eq!(streamed, root_hash(&data).unwrap());
    }

    #[test]
    fn empty_input_is_a_typed_error() {
        assert!(matches!(root_hash(&[]), Err(StorageError::EmptyInput)));
        assert!(matches!(
            RootHasher::new().finalize(),
            Err(StorageError::EmptyInput)
        ));
        assert!(matches!(
            root_hash_reader(std::io::empty()),
            Err(StorageError::EmptyInput)
        ));
    }

    #[test]
    fn submission_nodes_are_the_descending_powers_of_two_of_the_padded_chunks() {
        for chunks in [1u64, 3, 15, 16, 17, 1000, 1025, 3000, 16_385] {
            let tree = root_hash(&vec![7u8; (chunks * 256) as usize]).unwrap();
            let padded = tree.layout().padded_chunks();
            let heights: Vec<u32> = tree.submission_nodes().iter().map(|n| n.height).collect();
            let expected: Vec<u32> = (0..64).rev().filter(|h| padded >> h & 1 == 1).collect();
            assert_eq!(heights, expected, "{chunks} chunks");
            assert_eq!(tree.sectors(), padded);
        }
    }

    #[test]
    fn submission_nodes_are_subtree_roots() {
        // 17 chunks pad to 18: nodes of 16 and 2 chunks.
        let data = pattern(17 * 256);
        let tree = root_hash(&data).unwrap();
        let nodes = tree.submission_nodes();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].root, root_hash(&data[..16 * 256]).unwrap().root());
        let mut last_two = data[16 * 256..].to_vec();
        last_two.resize(2 * 256, 0);
        assert_eq!(nodes[1].root, root_hash(&last_two).unwrap().root());
    }

    #[test]
    fn flow_padding_that_adds_whole_segments_is_not_materialised() {
        // 4 MiB + 1 byte: 16385 chunks pad to 18432 (two zero segments after the data).
        let mut data = pattern(4 * 1024 * 1024 + 1);
        let tree = root_hash(&data).unwrap();
        assert_eq!(tree.layout().padded_segments(), 18);
        data.resize(18 * SEGMENT_SIZE, 0);
        assert_eq!(tree.root(), root_hash(&data).unwrap().root());
    }
}
