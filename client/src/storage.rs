//! 0G Storage root hashes of local files (`sealtune root-hash`), with
//! `sealtune_protocol::storage`: the value a deliverable's on-chain `modelRootHash` holds when the
//! provider uploaded it to 0G Storage.

use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use serde::Serialize;

use crate::error::{ClientError, Result};

/// A file's 0G Storage root and the layout it was computed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRoot {
    /// The file.
    pub file: PathBuf,
    /// Its 0G Storage root hash.
    pub root: B256,
    /// Its size in bytes.
    pub size: u64,
    /// 256-byte chunks.
    pub chunks: u64,
    /// Chunks after padding.
    pub padded_chunks: u64,
    /// Segments.
    pub segments: u64,
    /// Sectors.
    pub sectors: u64,
}

/// The 0G Storage root of the file at `path` (a regular file; anything else is bad input).
pub fn root_hash(path: &Path) -> Result<FileRoot> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ClientError::InvalidInput(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ClientError::InvalidInput(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let tree = sealtune_protocol::storage::root_hash_file(path).map_err(|source| {
        ClientError::RootHash {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let layout = tree.layout();
    Ok(FileRoot {
        file: path.to_path_buf(),
        root: tree.root(),
        size: tree.size(),
        chunks: layout.chunks(),
        padded_chunks: layout.padded_chunks(),
        segments: layout.segments(),
        sectors: tree.sectors(),
    })
}
