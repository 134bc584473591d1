//! Where datasets, models and deliverables live: uploads to the TEE (keccak256 id), a local
//! content-addressed directory keyed by the 0G root hash (the default), and the 0G Storage network
//! client (node JSON-RPC + Flow submission).
//!
//! (Lead's minimal local stand-in so the rest of the worker compiles; replaced by the full module.)
use std::path::{Path, PathBuf};

use alloy::primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Storage settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// I/O.
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Too large.
    #[error("upload larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// Not here.
    #[error("{0} not found in the uploads or the local store")]
    NotFound(B256),
    /// Hashing.
    #[error("root hash: {0}")]
    Root(String),
}

/// A stored file.
#[derive(Debug, Clone)]
pub struct Stored {
    /// keccak256 of the bytes.
    pub keccak: B256,
    /// 0G root hash.
    pub root: B256,
    /// Length.
    pub len: u64,
    /// Where.
    pub path: PathBuf,
}

/// The store.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the store under `data_dir/store`.
    pub fn open(_config: &StorageConfig, data_dir: &Path) -> Result<Store, StorageError> {
        let dir = data_dir.join("store");
        std::fs::create_dir_all(&dir)?;
        Ok(Store { dir })
    }
    /// Streams an upload in.
    pub async fn put_upload(&self, mut body: impl AsyncRead + Unpin, limit: u64) -> Result<Stored, StorageError> {
        let tmp = self.dir.join(format!(".upload-{}", uuid::Uuid::new_v4()));
        let mut f = tokio::fs::File::create(&tmp).await?;
        let mut buf = vec![0u8; 1 << 16];
        let mut all = Vec::new();
        loop {
            let n = body.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if all.len() as u64 > limit {
                drop(f);
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(StorageError::TooLarge(limit));
            }
            f.write_all(&buf[..n]).await?;
        }
        f.flush().await?;
        drop(f);
        let keccak = keccak256(&all);
        let root = sealtune_protocol::storage::root_hash(&all).map_err(|e| StorageError::Root(e.to_string()))?.root();
        let path = self.dir.join(format!("{keccak}"));
        tokio::fs::rename(&tmp, &path).await?;
        Ok(Stored { keccak, root, len: all.len() as u64, path })
    }
    /// Moves a finished file in.
    pub async fn import_file(&self, path: &Path) -> Result<Stored, StorageError> {
        let bytes = tokio::fs::read(path).await?;
        let keccak = keccak256(&bytes);
        let root = sealtune_protocol::storage::root_hash(&bytes).map_err(|e| StorageError::Root(e.to_string()))?.root();
        let dest = self.dir.join(format!("{keccak}"));
        tokio::fs::rename(path, &dest).await?;
        Ok(Stored { keccak, root, len: bytes.len() as u64, path: dest })
    }
    /// Finds a file by hash and returns its path.
    pub async fn fetch(&self, hash: &B256, _dest_dir: &Path) -> Result<PathBuf, StorageError> {
        self.path_of(hash).ok_or(StorageError::NotFound(*hash))
    }
    /// Path of a stored file.
    pub fn path_of(&self, hash: &B256) -> Option<PathBuf> {
        let p = self.dir.join(format!("{hash}"));
        p.exists().then_some(p)
    }
    /// Deletes a stored file.
    pub async fn remove(&self, hash: &B256) -> Result<(), StorageError> {
        if let Some(p) = self.path_of(hash) {
            tokio::fs::remove_file(p).await?;
        }
        Ok(())
    }
}
