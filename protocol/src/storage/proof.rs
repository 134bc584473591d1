//! Segment proofs as served by `zgs_downloadSegmentWithProof`.
//!
//! A proof is `{lemma, path}` (the layout of the storage node's `FileProof`, which the official
//! SDK's `Proof` mirrors): `lemma` is the proven leaf's hash, then the sibling hashes from the
//! bottom up, then the root; `path[i]` is `true` when the node at level `i` on the way up is a
//! *left* child (so its sibling `lemma[i + 1]` goes on the right). A one-leaf tree has an empty
//! path and `lemma = [root]`. The leaves are the segment roots of the flow-padded file.
//!
//! Unlike the SDK, verification here pins everything: the path must be exactly the path of the
//! claimed index in a tree of that many leaves (not just some path ending at that index), and a
//! single-segment proof must still equal the expected root.

use alloy_primitives::B256;
use base64::Engine as _;
use serde::Deserialize;

use super::{CHUNK_SIZE, Layout, SEGMENT_SIZE, tree::chunk_subtrees, tree::hash_pair};

/// Longest accepted proof: a tree of segments has at most 2^54 leaves, so 54 levels; 64 is slack.
const MAX_PROOF_DEPTH: usize = 64;
/// Longest accepted base64 `data`: one segment, padded base64.
const MAX_DATA_BASE64: usize = SEGMENT_SIZE.div_ceil(3) * 4;

/// Why a segment proof (or its JSON) was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The JSON is malformed or lacks a field.
    #[error("invalid segment JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A hash field is not 32 bytes of hex (with or without `0x`).
    #[error("invalid hash in `{field}`: {source}")]
    InvalidHash {
        /// The field: `root` or `lemma`.
        field: &'static str,
        /// The hex error.
        source: hex::FromHexError,
    },
    /// `data` is not valid standard base64.
    #[error("invalid base64 segment data: {0}")]
    InvalidBase64(#[from] base64::DecodeError),
    /// `lemma` and `path` lengths do not fit (`lemma = path + 2`, or `1` for an empty path), or
    /// the proof is deeper than any tree of segments.
    #[error("malformed proof: {lemma} lemma hashes for {path} path flags")]
    Format {
        /// Number of lemma hashes.
        lemma: usize,
        /// Number of path flags.
        path: usize,
    },
    /// The file size is zero or too large for a 0G tree.
    #[error("invalid file size {0}")]
    InvalidFileSize(u64),
    /// The segment index is past the file's data.
    #[error("segment index {index} out of range: the file has {segments} segments")]
    IndexOutOfRange {
        /// The claimed index.
        index: u64,
        /// The file's data segments.
        segments: u64,
    },
    /// The segment data is shorter than the file's bytes in it or longer than the padded segment.
    #[error("segment data of {len} bytes, expected {min}..={max}")]
    DataLength {
        /// The data length.
        len: usize,
        /// The file's bytes in this segment.
        min: u64,
        /// The padded segment length.
        max: u64,
    },
    /// The answer (or the proof's last lemma) names another root than the expected one.
    #[error("root mismatch: expected {expected}, got {got}")]
    RootMismatch {
        /// The root the caller expects.
        expected: B256,
        /// The root in the answer or proof.
        got: B256,
    },
    /// The proof's first lemma is not the root of the segment data.
    #[error("segment content does not match the proof")]
    ContentMismatch,
    /// The path is not the path of the claimed index.
    #[error("proof path does not lead to segment {index} of {leaves}")]
    PositionMismatch {
        /// The claimed index.
        index: u64,
        /// The number of leaves (padded segments).
        leaves: u64,
    },
    /// Hashing the lemma along the path does not give the root.
    #[error("proof hashes do not lead to the root")]
    HashMismatch,
    /// The answer is another segment than the one asked for.
    #[error("served segment {got} when asked for {asked}")]
    WrongSegment {
        /// The index asked for.
        asked: u64,
        /// The index in the answer.
        got: u64,
    },
    /// The answer claims another file size than the file info.
    #[error("the segment claims a file of {got} bytes, the file info says {expected}")]
    WrongFileSize {
        /// The size from the file info.
        expected: u64,
        /// The size in the answer.
        got: u64,
    },
}

/// A Merkle proof `{lemma, path}` of one leaf (see the module docs of `storage::proof`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentProof {
    lemma: Vec<B256>,
    path: Vec<bool>,
}

impl SegmentProof {
    /// A proof from its parts, checking only their shape.
    pub fn new(lemma: Vec<B256>, path: Vec<bool>) -> Result<Self, ProofError> {
        let shape_ok = if path.is_empty() {
            lemma.len() == 1
        } else {
            path.len() <= MAX_PROOF_DEPTH && Some(lemma.len()) == path.len().checked_add(2)
        };
        if !shape_ok {
            return Err(ProofError::Format {
                lemma: lemma.len(),
                path: path.len(),
            });
        }
        Ok(Self { lemma, path })
    }

    /// A proof from the hex strings and flags of the JSON answer.
    pub fn from_hex<S: AsRef<str>>(lemma: &[S], path: Vec<bool>) -> Result<Self, ProofError> {
        if lemma.len() > MAX_PROOF_DEPTH.saturating_add(2) {
            return Err(ProofError::Format {
                lemma: lemma.len(),
                path: path.len(),
            });
        }
        let lemma = lemma
            .iter()
            .map(|h| parse_hash("lemma", h.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(lemma, path)
    }

    /// The leaf hash, the siblings bottom-up, then the root.
    pub fn lemma(&self) -> &[B256] {
        &self.lemma
    }

    /// For each level bottom-up, whether the node on the way up is a left child.
    pub fn path(&self) -> &[bool] {
        &self.path
    }

    /// Checks that this proves `leaf` at `index` among `leaves` leaves under `root`.
    pub fn verify(
        &self,
        root: B256,
        leaf: B256,
        index: u64,
        leaves: u64,
    ) -> Result<(), ProofError> {
        let expected_path =
            path_of(index, leaves).ok_or(ProofError::PositionMismatch { index, leaves })?;
        if expected_path != self.path {
            return Err(ProofError::PositionMismatch { index, leaves });
        }
        if self.lemma.first() != Some(&leaf) {
            return Err(ProofError::ContentMismatch);
        }
        let claimed_root = self.lemma.last().copied().unwrap_or_default();
        if claimed_root != root {
            return Err(ProofError::RootMismatch {
                expected: root,
                got: claimed_root,
            });
        }
        let siblings = self
            .lemma
            .get(1..self.lemma.len().saturating_sub(1))
            .unwrap_or_default();
        let computed = self
            .path
            .iter()
            .zip(siblings)
            .fold(leaf, |hash, (&is_left, sibling)| {
                if is_left {
                    hash_pair(&hash, sibling)
                } else {
                    hash_pair(sibling, &hash)
                }
            });
        if computed != root {
            return Err(ProofError::HashMismatch);
        }
        Ok(())
    }
}

/// The bottom-up path flags of leaf `index` in a tree of `leaves` leaves, or `None` if out of range.
fn path_of(mut index: u64, mut leaves: u64) -> Option<Vec<bool>> {
    if index >= leaves {
        return None;
    }
    let mut top_down = Vec::new();
    while leaves > 1 {
        // The left subtree holds 2^(⌈log2 leaves⌉ - 1) leaves.
        let left = leaves.checked_next_power_of_two()? / 2;
        if index < left {
            top_down.push(true);
            leaves = left;
        } else {
            top_down.push(false);
            index = index.checked_sub(left)?;
            leaves = leaves.checked_sub(left)?;
        }
    }
    top_down.reverse();
    Some(top_down)
}

fn parse_hash(field: &'static str, text: &str) -> Result<B256, ProofError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out)
        .map_err(|source| ProofError::InvalidHash { field, source })?;
    Ok(B256::from(out))
}

/// The JSON shape of a `zgs_downloadSegmentWithProof` answer, before validation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSegment {
    root: String,
    data: String,
    index: u64,
    proof: RawProof,
    file_size: u64,
}

#[derive(Debug, Deserialize)]
struct RawProof {
    lemma: Vec<String>,
    path: Vec<bool>,
}

/// A `zgs_downloadSegmentWithProof` answer: `{root, data (base64), index, proof: {lemma, path},
/// fileSize}`. Parsing checks the shapes; [`verify`](Self::verify) checks the data.
///
/// ```
/// use sealtune_protocol::storage::{root_hash, SegmentWithProof};
///
/// // A one-segment file: the proof is just the root.
/// let root = root_hash(b"hello")?.root();
/// let data = "aGVsbG8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
/// let json = format!(
///     r#"{{"root":"{root}","data":"{data}","index":0,"proof":{{"lemma":["{root}"],"path":[]}},"fileSize":5}}"#
/// );
/// let segment = SegmentWithProof::from_json(json.as_bytes())?;
/// assert_eq!(segment.verify(root)?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSegment")]
pub struct SegmentWithProof {
    /// The file root the node says this segment belongs to.
    pub root: B256,
    /// The segment bytes (chunk-aligned; the file's last segment may end with zero padding).
    pub data: Vec<u8>,
    /// The segment index in the file.
    pub index: u64,
    /// The proof of the segment root under the file root.
    pub proof: SegmentProof,
    /// The file size in bytes.
    pub file_size: u64,
}

impl TryFrom<RawSegment> for SegmentWithProof {
    type Error = ProofError;

    fn try_from(raw: RawSegment) -> Result<Self, ProofError> {
        let root = parse_hash("root", &raw.root)?;
        let proof = SegmentProof::from_hex(&raw.proof.lemma, raw.proof.path)?;
        if raw.data.len() > MAX_DATA_BASE64 {
            return Err(ProofError::DataLength {
                len: raw.data.len().saturating_mul(3) / 4,
                min: 0,
                max: SEGMENT_SIZE as u64,
            });
        }
        let data = base64::engine::general_purpose::STANDARD.decode(raw.data.as_bytes())?;
        Ok(Self {
            root,
            data,
            index: raw.index,
            proof,
            file_size: raw.file_size,
        })
    }
}

impl SegmentWithProof {
    /// Parses the JSON `result` of `zgs_downloadSegmentWithProof` (untrusted: typed errors, no panic).
    pub fn from_json(json: &[u8]) -> Result<Self, ProofError> {
        let raw: RawSegment = serde_json::from_slice(json)?;
        raw.try_into()
    }

    /// Verifies the segment as the answer to "segment `index` of the file `root`, `file_size`
    /// bytes" (what a downloader asked a node for) and returns the file's bytes in it: the one rule
    /// every 0G Storage download of sealtune (the worker's and the customer's) applies.
    pub fn verify_as(&self, root: B256, index: u64, file_size: u64) -> Result<&[u8], ProofError> {
        if self.index != index {
            return Err(ProofError::WrongSegment {
                asked: index,
                got: self.index,
            });
        }
        if self.file_size != file_size {
            return Err(ProofError::WrongFileSize {
                expected: file_size,
                got: self.file_size,
            });
        }
        self.verify(root)
    }

    /// Verifies the segment against the root the caller expects and returns the file's bytes in
    /// it (the data without the zero padding past the end of the file).
    pub fn verify(&self, expected_root: B256) -> Result<&[u8], ProofError> {
        if self.root != expected_root {
            return Err(ProofError::RootMismatch {
                expected: expected_root,
                got: self.root,
            });
        }
        let layout =
            Layout::new(self.file_size).map_err(|_| ProofError::InvalidFileSize(self.file_size))?;
        let out_of_range = ProofError::IndexOutOfRange {
            index: self.index,
            segments: layout.segments(),
        };
        let file_bytes = layout.segment_data_len(self.index).ok_or(out_of_range)?;
        let chunks = layout.padded_segment_chunks(self.index).unwrap_or(0);
        let max = chunks.saturating_mul(CHUNK_SIZE as u64);
        let len = self.data.len() as u64;
        if len < file_bytes || len > max {
            return Err(ProofError::DataLength {
                len: self.data.len(),
                min: file_bytes,
                max,
            });
        }
        let segment_root = chunk_subtrees(&self.data, chunks)
            .root()
            .ok_or(ProofError::ContentMismatch)?;
        self.proof.verify(
            expected_root,
            segment_root,
            self.index,
            layout.padded_segments(),
        )?;
        let file_bytes = usize::try_from(file_bytes).unwrap_or(usize::MAX);
        Ok(self.data.get(..file_bytes).unwrap_or_default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn path_of_small_trees() {
        assert_eq!(path_of(0, 1), Some(vec![]));
        assert_eq!(path_of(2, 3), Some(vec![false]));
        assert_eq!(path_of(0, 3), Some(vec![true, true]));
        assert_eq!(path_of(1, 3), Some(vec![false, true]));
        assert_eq!(path_of(4, 5), Some(vec![false]));
        assert_eq!(path_of(5, 5), None);
        assert_eq!(path_of((1 << 62) - 1, 1 << 62).map(|p| p.len()), Some(62));
        assert_eq!(path_of(0, u64::MAX), None);
    }

    #[test]
    fn malformed_shapes_are_rejected() {
        assert!(matches!(
            SegmentProof::new(vec![], vec![]),
            Err(ProofError::Format { .. })
        ));
        assert!(matches!(
            SegmentProof::new(vec![B256::ZERO; 2], vec![true]),
            Err(ProofError::Format { .. })
        ));
        assert!(SegmentProof::new(vec![B256::ZERO; 3], vec![true]).is_ok());
    }

    #[test]
    fn bad_hex_and_base64_are_typed_errors() {
        let ok_root = format!("0x{}", "ab".repeat(32));
        let json = |root: &str, data: &str| {
            format!(
                r#"{{"root":"{root}","data":"{data}","index":0,"proof":{{"lemma":["{ok_root}"],"path":[]}},"fileSize":1}}"#
            )
        };
        assert!(matches!(
            SegmentWithProof::from_json(json("0x12", "AA==").as_bytes()),
            Err(ProofError::InvalidHash { field: "root", .. })
        ));
        assert!(matches!(
            SegmentWithProof::from_json(json(&ok_root, "!!").as_bytes()),
            Err(ProofError::InvalidBase64(_))
        ));
        assert!(matches!(
            SegmentWithProof::from_json(b"{"),
            Err(ProofError::Json(_))
        ));
    }
}
