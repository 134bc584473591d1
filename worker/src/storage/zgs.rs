//! 0G Storage node client: JSON-RPC over HTTP (`zgs_getStatus`, `zgs_getFileInfo`,
//! `zgs_downloadSegmentWithProof`, `zgs_uploadSegmentsByTxSeq`), plus the indexer's
//! `indexer_getShardedNodes` to discover nodes.
//!
//! Downloads verify every segment against the requested root with `protocol`'s
//! [`SegmentWithProof::verify`]: a node that serves a tampered segment (or the wrong index, or a
//! different file size) is skipped and the next node is asked; when no node serves a valid
//! segment the download fails and nothing is kept.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::primitives::{B256, Keccak256};
use sealtune_protocol::storage::{SEGMENT_SIZE, SegmentWithProof};
use serde::Deserialize;

use super::StorageError;
use super::tree::SegmentTree;

/// Segments sent per `zgs_uploadSegmentsByTxSeq` call (the SDK's default task size is 10).
const UPLOAD_BATCH: u64 = 10;
/// Largest JSON-RPC answer accepted (one segment in base64 plus its proof is ~350 KiB).
const MAX_RPC_RESPONSE: usize = 4 << 20;

/// The subset of a node's `FileInfo` the client uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// The Flow transaction of the file.
    pub tx: FileTx,
    /// Whether all segments are stored.
    #[serde(default)]
    pub finalized: bool,
    /// Segments the node has received.
    #[serde(default)]
    pub uploaded_seg_num: u64,
}

/// The Flow transaction fields of a `FileInfo`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileTx {
    /// The file's root hash.
    pub data_merkle_root: B256,
    /// File size in bytes.
    pub size: u64,
    /// Submission sequence number.
    pub seq: u64,
    /// First flow entry (chunk) of the file.
    #[serde(default)]
    pub start_entry_index: u64,
}

/// A JSON-RPC client of one or more storage nodes.
#[derive(Debug)]
pub struct ZgsClient {
    nodes: Vec<String>,
    http: reqwest::Client,
    next_id: AtomicU64,
}

impl ZgsClient {
    /// A client of `nodes` (RPC URLs), each call bounded by `timeout`.
    pub fn new(nodes: Vec<String>, timeout: Duration) -> Result<Self, StorageError> {
        if nodes.is_empty() {
            return Err(StorageError::Config("no 0G storage node URL".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        Ok(Self {
            nodes,
            http,
            next_id: AtomicU64::new(1),
        })
    }

    /// Asks an indexer for its trusted nodes (`indexer_getShardedNodes`).
    pub async fn discover(indexer: &str, timeout: Duration) -> Result<Vec<String>, StorageError> {
        #[derive(Deserialize)]
        struct Node {
            url: String,
        }
        #[derive(Deserialize)]
        struct Sharded {
            #[serde(default)]
            trusted: Vec<Node>,
        }
        let probe = Self::new(vec![indexer.to_string()], timeout)?;
        let r: Option<Sharded> = probe
            .call(indexer, "indexer_getShardedNodes", serde_json::json!([]))
            .await?;
        let urls: Vec<String> = r
            .map(|s| s.trusted.into_iter().map(|n| n.url).collect())
            .unwrap_or_default();
        if urls.is_empty() {
            return Err(StorageError::Network(format!(
                "indexer {indexer} returned no trusted storage node"
            )));
        }
        Ok(urls)
    }

    /// The node URLs.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// One JSON-RPC call to `node`; a JSON `null` result is `None`.
    pub async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        node: &str,
        method: &str,
        params: serde_json::Value,
    ) -> Result<Option<T>, StorageError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let net =
            |e: &dyn std::fmt::Display| StorageError::Network(format!("{node} {method}: {e}"));
        let resp = self
            .http
            .post(node)
            .json(&req)
            .send()
            .await
            .map_err(|e| net(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| net(&e))?;
        if bytes.len() > MAX_RPC_RESPONSE {
            return Err(net(&format!(
                "answer of {} bytes is too large",
                bytes.len()
            )));
        }
        if !status.is_success() {
            return Err(net(&format!("HTTP {status}")));
        }
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(default)]
            result: Option<serde_json::Value>,
            #[serde(default)]
            error: Option<serde_json::Value>,
        }
        let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| net(&e))?;
        if let Some(err) = env.error {
            return Err(net(&format!("JSON-RPC error {err}")));
        }
        match env.result {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| net(&format!("unexpected result: {e}"))),
        }
    }

    /// `zgs_getFileInfo(root, needAvailable)` on the first node that knows the file.
    pub async fn file_info(
        &self,
        root: &B256,
        need_available: bool,
    ) -> Result<Option<FileInfo>, StorageError> {
        let mut errors = Vec::new();
        for node in &self.nodes {
            match self
                .call::<FileInfo>(
                    node,
                    "zgs_getFileInfo",
                    serde_json::json!([root.to_string(), need_available]),
                )
                .await
            {
                Ok(Some(info)) => return Ok(Some(info)),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.len() == self.nodes.len() {
            return Err(StorageError::Network(errors.join("; ")));
        }
        Ok(None)
    }

    /// Downloads the file `root` into `dest` (created, must not exist), verifying each segment's
    /// proof; returns its size and keccak256. On any error `dest` is removed.
    pub async fn download(
        &self,
        root: &B256,
        dest: &Path,
        max_size: u64,
    ) -> Result<(u64, B256), StorageError> {
        let result = self.download_inner(root, dest, max_size).await;
        if result.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        result
    }

    async fn download_inner(
        &self,
        root: &B256,
        dest: &Path,
        max_size: u64,
    ) -> Result<(u64, B256), StorageError> {
        let info = self.file_info(root, true).await?.ok_or_else(|| {
            StorageError::NotFound(format!(
                "{root}: no 0G storage node knows it ({})",
                self.nodes.join(", ")
            ))
        })?;
        if info.tx.data_merkle_root != *root {
            return Err(StorageError::Network(format!(
                "node answered file info for {} when asked for {root}",
                info.tx.data_merkle_root
            )));
        }
        let size = info.tx.size;
        if size == 0 || size > max_size {
            return Err(StorageError::TooLarge {
                len: size,
                limit: max_size,
            });
        }
        let segments = size.div_ceil(SEGMENT_SIZE as u64);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| StorageError::io(dest, e))?;
        let mut keccak = Keccak256::new();
        for index in 0..segments {
            let data = self.verified_segment(root, index, size).await?;
            keccak.update(&data);
            file.write_all(&data)
                .map_err(|e| StorageError::io(dest, e))?;
        }
        file.sync_all().map_err(|e| StorageError::io(dest, e))?;
        Ok((size, keccak.finalize()))
    }

    /// Segment `index` of `root` from the first node whose answer verifies.
    async fn verified_segment(
        &self,
        root: &B256,
        index: u64,
        size: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let mut rejected = Vec::new();
        for node in &self.nodes {
            let answer = self
                .call::<serde_json::Value>(
                    node,
                    "zgs_downloadSegmentWithProof",
                    serde_json::json!([root.to_string(), index]),
                )
                .await;
            let value = match answer {
                Ok(Some(v)) => v,
                Ok(None) => {
                    rejected.push(format!("{node}: no such segment"));
                    continue;
                }
                Err(e) => {
                    rejected.push(e.to_string());
                    continue;
                }
            };
            let checked = serde_json::to_vec(&value)
                .map_err(|e| e.to_string())
                .and_then(|json| SegmentWithProof::from_json(&json).map_err(|e| e.to_string()))
                .and_then(|seg| {
                    seg.verify_as(*root, index, size)
                        .map(<[u8]>::to_vec)
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(data) => return Ok(data),
                Err(reason) => {
                    tracing::warn!(%node, %root, index, %reason, "rejected a 0G storage segment");
                    rejected.push(format!("{node}: {reason}"));
                }
            }
        }
        Err(StorageError::Verification(format!(
            "segment {index} of {root}: no node served a valid segment ({})",
            rejected.join("; ")
        )))
    }

    /// Uploads every segment of `path` (whose tree is `tree`) for Flow submission `tx_seq`, to
    /// every node, in batches. Each proof is checked with `protocol` before it is sent.
    pub async fn upload_segments(
        &self,
        tree: &SegmentTree,
        path: &Path,
        tx_seq: u64,
    ) -> Result<(), StorageError> {
        self.upload_segments_with(tree, path, tx_seq, &mut |_, _| {})
            .await
    }

    /// [`Self::upload_segments`], calling `after_batch(sent, total)` after each batch reached
    /// every node (the pipeline's crash point mid-upload).
    pub async fn upload_segments_with(
        &self,
        tree: &SegmentTree,
        path: &Path,
        tx_seq: u64,
        after_batch: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), StorageError> {
        let path_buf: PathBuf = path.to_path_buf();
        let segments = tree.layout().segments();
        let mut file = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
        let mut start = 0;
        while start < segments {
            let end = (start + UPLOAD_BATCH).min(segments);
            let batch = (start..end)
                .map(|i| tree.segment(&mut file, &path_buf, i))
                .collect::<Result<Vec<_>, _>>()?;
            for node in &self.nodes {
                self.call::<serde_json::Value>(
                    node,
                    "zgs_uploadSegmentsByTxSeq",
                    serde_json::json!([batch, tx_seq]),
                )
                .await
                .or_else(|e| {
                    if e.to_string().contains("already uploaded and finalized") {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                })?;
            }
            start = end;
            after_batch(end, segments);
        }
        Ok(())
    }
}
