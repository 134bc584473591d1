//! Segment proofs for uploading to 0G Storage: the tree over a file's (flow-padded) segment roots,
//! and the `{lemma, path}` proof of each segment.
//!
//! `protocol::storage` computes roots and *verifies* proofs; building them is only needed to
//! upload, so it lives here. Segment roots come from `protocol::storage::root_hash` of each padded
//! segment, and every proof built is checked with `protocol`'s verifier before it is used
//! ([`SegmentTree::segment`]), so this module cannot drift from the protocol's tree.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use alloy::primitives::B256;
use base64::Engine as _;
use rayon::prelude::*;
use sealtune_protocol::storage::{
    CHUNK_SIZE, Layout, SEGMENT_SIZE, SegmentProof, SegmentWithProof, hash_pair, root_hash,
};

use super::StorageError;

/// The tree of segment roots of one file.
#[derive(Debug, Clone)]
pub struct SegmentTree {
    layout: Layout,
    /// `levels[0]` = the padded segments' roots; the last level holds the root.
    levels: Vec<Vec<B256>>,
}

/// Root of segment `index` of `layout` whose file bytes are `data` (empty for a padding segment).
fn segment_root(layout: &Layout, index: u64, data: &[u8]) -> Result<B256, StorageError> {
    let chunks = layout
        .padded_segment_chunks(index)
        .ok_or_else(|| StorageError::Invalid(format!("segment {index} past the padded file")))?;
    let padded_len = usize::try_from(chunks)
        .ok()
        .and_then(|c| c.checked_mul(CHUNK_SIZE))
        .ok_or_else(|| StorageError::Invalid("segment too large".into()))?;
    let mut buf = data.to_vec();
    buf.resize(padded_len, 0);
    // A segment's padded chunk count never needs further flow padding (a multiple of its own
    // padding unit), so the root of the padded bytes is the segment's subtree root.
    Ok(root_hash(&buf)
        .map_err(|e| StorageError::Invalid(e.to_string()))?
        .root())
}

impl SegmentTree {
    /// Reads the file once (16 segments at a time, hashed in parallel) and builds the tree.
    pub fn from_file(path: &Path) -> Result<Self, StorageError> {
        let mut file = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io(path, e))?
            .len();
        let layout = Layout::new(size).map_err(|e| StorageError::Invalid(e.to_string()))?;
        let mut leaves = Vec::with_capacity(usize::try_from(layout.padded_segments()).unwrap_or(0));
        let batch = 16usize;
        let mut buf = vec![0u8; batch * SEGMENT_SIZE];
        let mut index = 0u64;
        while index < layout.segments() {
            let n = read_full(&mut file, &mut buf).map_err(|e| StorageError::io(path, e))?;
            if n == 0 {
                return Err(StorageError::Invalid(format!(
                    "{} shrank while being read",
                    path.display()
                )));
            }
            let data = buf.get(..n).unwrap_or_default();
            let roots: Vec<Result<B256, StorageError>> = data
                .par_chunks(SEGMENT_SIZE)
                .enumerate()
                .map(|(k, seg)| segment_root(&layout, index + k as u64, seg))
                .collect();
            for r in roots {
                leaves.push(r?);
            }
            index += n.div_ceil(SEGMENT_SIZE) as u64;
        }
        while (leaves.len() as u64) < layout.padded_segments() {
            leaves.push(segment_root(&layout, leaves.len() as u64, &[])?);
        }
        Ok(Self::from_leaves(layout, leaves))
    }

    fn from_leaves(layout: Layout, leaves: Vec<B256>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let next: Vec<B256> = levels
                .last()
                .map(|l| {
                    l.chunks(2)
                        .map(|p| match p {
                            [a, b] => hash_pair(a, b),
                            [a] => *a,
                            _ => B256::ZERO,
                        })
                        .collect()
                })
                .unwrap_or_default();
            levels.push(next);
        }
        Self { layout, levels }
    }

    /// The file's root hash.
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The file's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The proof of segment `index`.
    pub fn proof(&self, index: u64) -> Result<SegmentProof, StorageError> {
        let leaf = self
            .levels
            .first()
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or_else(|| StorageError::Invalid(format!("no segment {index}")))?;
        let mut lemma = vec![leaf];
        let mut path = Vec::new();
        let mut i = usize::try_from(index).unwrap_or(usize::MAX);
        for level in self.levels.iter().take(self.levels.len().saturating_sub(1)) {
            if i % 2 == 1 {
                lemma.push(level.get(i - 1).copied().unwrap_or_default());
                path.push(false);
            } else if let Some(sibling) = level.get(i + 1) {
                lemma.push(*sibling);
                path.push(true);
            }
            i /= 2;
        }
        if !path.is_empty() {
            lemma.push(self.root());
        }
        SegmentProof::new(lemma, path).map_err(|e| StorageError::Invalid(e.to_string()))
    }

    /// Segment `index` of the file at `path` with its proof, checked with `protocol`'s verifier,
    /// as the JSON object `zgs_uploadSegmentsByTxSeq` takes.
    pub fn segment(
        &self,
        file: &mut std::fs::File,
        path: &Path,
        index: u64,
    ) -> Result<serde_json::Value, StorageError> {
        let len = self
            .layout
            .segment_data_len(index)
            .ok_or_else(|| StorageError::Invalid(format!("no data segment {index}")))?;
        let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.seek(SeekFrom::Start(index * SEGMENT_SIZE as u64))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(|e| StorageError::io(path, e))?;
        // The SDK sends whole chunks: the last chunk zero-padded.
        data.resize(data.len().div_ceil(CHUNK_SIZE) * CHUNK_SIZE, 0);
        let proof = self.proof(index)?;
        let seg = SegmentWithProof {
            root: self.root(),
            data,
            index,
            proof,
            file_size: self.layout.size(),
        };
        seg.verify(self.root())
            .map_err(|e| StorageError::Invalid(format!("built a bad proof: {e}")))?;
        Ok(segment_json(&seg))
    }
}

/// The JSON form of a segment with proof (the node's `SegmentWithProof`).
pub fn segment_json(seg: &SegmentWithProof) -> serde_json::Value {
    serde_json::json!({
        "root": seg.root.to_string(),
        "data": base64::engine::general_purpose::STANDARD.encode(&seg.data),
        "index": seg.index,
        "proof": {
            "lemma": seg.proof.lemma().iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            "path": seg.proof.path(),
        },
        "fileSize": seg.file_size,
    })
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
