//! The Merkle tree of PROTOCOL.md §6 as a stack of complete subtrees.
//!
//! Pairing level by level with the odd last node moving up gives the same root as folding, right
//! to left, the complete subtrees of the binary decomposition of the leaf count (largest first):
//! the root's left child always covers the first `2^(⌈log2 n⌉-1)` leaves. So leaves can be pushed
//! one at a time onto a stack that merges equal heights like a binary counter, in `O(log n)` memory.

use std::sync::LazyLock;

use alloy_primitives::{B256, keccak256};

use super::{CHUNK_SIZE, SEGMENT_CHUNKS};

/// A complete subtree of the flow-padded file: one entry of 0G's Flow `submit`.
///
/// Its root covers `2^height` chunks; the nodes of a file, in order, cover its padded chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubmissionNode {
    /// Root hash of the subtree.
    pub root: B256,
    /// Height of the subtree: it covers `2^height` chunks.
    pub height: u32,
}

/// `keccak256` of one all-zero chunk, the leaf of flow padding.
pub(crate) static EMPTY_CHUNK_HASH: LazyLock<B256> = LazyLock::new(|| keccak256([0u8; CHUNK_SIZE]));

/// Root of a segment of 1024 all-zero chunks.
pub(crate) static ZERO_SEGMENT_ROOT: LazyLock<B256> = LazyLock::new(|| {
    let mut stack = SubtreeStack::default();
    for _ in 0..SEGMENT_CHUNKS {
        stack.push(*EMPTY_CHUNK_HASH, 0);
    }
    stack.root().unwrap_or_default()
});

/// `keccak256(left ‖ right)`: the node rule of 0G Storage's Merkle trees.
#[inline]
pub fn hash_pair(left: &B256, right: &B256) -> B256 {
    let mut buf = [0u8; 64];
    let (l, r) = buf.split_at_mut(32);
    l.copy_from_slice(left.as_slice());
    r.copy_from_slice(right.as_slice());
    keccak256(buf)
}

/// `keccak256` of a chunk of at most 256 bytes, zero-padded to 256.
#[inline]
pub(crate) fn chunk_hash(chunk: &[u8]) -> B256 {
    if chunk.len() == CHUNK_SIZE {
        keccak256(chunk)
    } else {
        let mut buf = [0u8; CHUNK_SIZE];
        for (dst, src) in buf.iter_mut().zip(chunk) {
            *dst = *src;
        }
        keccak256(buf)
    }
}

/// Complete subtrees in leaf order, heights strictly decreasing once the input is done.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubtreeStack {
    nodes: Vec<SubmissionNode>,
}

impl SubtreeStack {
    /// Appends a complete subtree of `2^height` leaves after those already pushed.
    ///
    /// Subtrees must arrive so that the stack stays a binary decomposition: a node is never
    /// taller than the one below it (true for leaves, and for segments followed by the pieces of
    /// a last partial segment).
    pub(crate) fn push(&mut self, root: B256, height: u32) {
        let mut node = SubmissionNode { root, height };
        while let Some(top) = self.nodes.last().copied() {
            if top.height != node.height {
                break;
            }
            self.nodes.pop();
            node = SubmissionNode {
                root: hash_pair(&top.root, &node.root),
                height: node.height.saturating_add(1),
            };
        }
        self.nodes.push(node);
    }

    /// The root of the whole tree: the right-to-left fold of the subtrees.
    pub(crate) fn root(&self) -> Option<B256> {
        self.nodes.iter().rev().fold(None, |acc, node| {
            Some(match acc {
                None => node.root,
                Some(right) => hash_pair(&node.root, &right),
            })
        })
    }

    /// The complete subtrees, largest (leftmost) first.
    pub(crate) fn nodes(&self) -> &[SubmissionNode] {
        &self.nodes
    }

    pub(crate) fn into_nodes(self) -> Vec<SubmissionNode> {
        self.nodes
    }
}

/// Root of one full segment (exactly 1024 chunks of data).
pub(crate) fn full_segment_root(segment: &[u8]) -> B256 {
    debug_assert_eq!(segment.len(), CHUNK_SIZE * SEGMENT_CHUNKS);
    let mut stack = SubtreeStack::default();
    for chunk in segment.chunks(CHUNK_SIZE) {
        stack.push(chunk_hash(chunk), 0);
    }
    stack.root().unwrap_or_default()
}

/// The chunk-level subtrees of `data` (its last chunk zero-padded) followed by all-zero chunks
/// up to `chunks` chunks in all.
pub(crate) fn chunk_subtrees(data: &[u8], chunks: u64) -> SubtreeStack {
    let mut stack = SubtreeStack::default();
    let mut pushed = 0u64;
    for chunk in data.chunks(CHUNK_SIZE) {
        stack.push(chunk_hash(chunk), 0);
        pushed = pushed.saturating_add(1);
    }
    while pushed < chunks {
        stack.push(*EMPTY_CHUNK_HASH, 0);
        pushed = pushed.saturating_add(1);
    }
    stack
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The definition of PROTOCOL.md §6, level by level, as the reference for the stack.
    fn level_by_level(mut level: Vec<B256>) -> B256 {
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| {
                    if p.len() == 2 {
                        hash_pair(&p[0], &p[1])
                    } else {
                        p[0]
                    }
                })
                .collect();
        }
        level[0]
    }

    #[test]
    fn stack_fold_equals_level_by_level_pairing_with_odd_node_moving_up() {
        for n in 1..=70u64 {
            let leaves: Vec<B256> = (0..n).map(|i| keccak256(i.to_be_bytes())).collect();
            let mut stack = SubtreeStack::default();
            for leaf in &leaves {
                stack.push(*leaf, 0);
            }
            assert_eq!(stack.root().unwrap(), level_by_level(leaves), "n = {n}");
            let heights: Vec<u32> = stack.nodes().iter().map(|n| n.height).collect();
            let expected: Vec<u32> = (0..64).rev().filter(|h| n >> h & 1 == 1).collect();
            assert_eq!(heights, expected);
        }
    }

    #[test]
    fn empty_chunk_hash_is_keccak_of_256_zero_bytes() {
        assert_eq!(
            EMPTY_CHUNK_HASH.to_string(),
            "0xd397b3b043d87fcd6fad1291ff0bfd16401c274896d8c63a923727f077b8e0b5"
        );
        assert_eq!(*ZERO_SEGMENT_ROOT, full_segment_root(&[0u8; 262_144]));
    }
}
