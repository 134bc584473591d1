//! Downloading a deliverable from 0G Storage (the customer's `--download-method auto|0g-storage`):
//! the storage nodes' JSON-RPC (`zgs_getFileInfo`, `zgs_downloadSegmentWithProof`), nodes given or
//! found through an indexer (`indexer_getShardedNodes`). Nodes are not trusted: every segment is
//! checked against the on-chain root with `protocol`'s rule (`SegmentWithProof::verify_as`), a node
//! that serves a bad one is skipped for the next, and the file is kept only when every segment
//! verified (the caller checks the whole file against the chain again, as for a TEE download).
//!
//! The worker has its own node client (it uploads too, and neither crate depends on the other);
//! both apply the same segment rule from `protocol`.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use alloy::primitives::{B256, Keccak256};
use sealtune_protocol::storage::{SEGMENT_SIZE, SegmentWithProof};
use serde::Deserialize;

use crate::error::{ClientError, Result};
use crate::progress::Progress;

/// Largest JSON-RPC answer read (one segment in base64 and its proof are about 350 KiB).
const MAX_ANSWER: usize = 4 << 20;

/// Where `download-model` fetches the encrypted model from (the official CLI's
/// `--download-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DownloadMethod {
    /// 0G Storage first (when nodes or an indexer are configured), then the provider's TEE.
    #[default]
    Auto,
    /// The provider's TEE only.
    Tee,
    /// 0G Storage only.
    #[value(name = "0g-storage")]
    ZgStorage,
}

/// Where a downloaded model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DownloadSource {
    /// The provider's `POST /v1/user/:addr/task/:id/lora`.
    #[serde(rename = "tee")]
    Tee,
    /// 0G Storage nodes, every segment verified against the on-chain root.
    #[serde(rename = "0g-storage")]
    ZgStorage,
}

/// Where the customer looks for 0G Storage nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageNodes {
    /// Storage node JSON-RPC URLs.
    pub nodes: Vec<String>,
    /// An indexer asked for its trusted nodes when `nodes` is empty.
    pub indexer: Option<String>,
}

impl StorageNodes {
    /// Whether nothing is configured (then `auto` downloads through the provider only).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.indexer.is_none()
    }
}

fn storage_err(message: impl Into<String>) -> ClientError {
    ClientError::Storage {
        message: message.into(),
        tampered: false,
    }
}

/// One JSON-RPC call; a `null` result is `None`.
async fn call<T: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<Option<T>> {
    let fail = |e: &dyn std::fmt::Display| storage_err(format!("{url} {method}: {e}"));
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp = http
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| fail(&e))?;
    if !resp.status().is_success() {
        return Err(fail(&format!("HTTP {}", resp.status())));
    }
    let bytes = resp.bytes().await.map_err(|e| fail(&e))?;
    if bytes.len() > MAX_ANSWER {
        return Err(fail(&"answer too large"));
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| fail(&e))?;
    if let Some(err) = v.get("error") {
        return Err(fail(&format!("JSON-RPC error {err}")));
    }
    match v.get("result") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(r) => serde_json::from_value(r.clone())
            .map(Some)
            .map_err(|e| fail(&e)),
    }
}

/// The node URLs: the configured ones, or the indexer's trusted nodes.
async fn node_urls(http: &reqwest::Client, where_: &StorageNodes) -> Result<Vec<String>> {
    if !where_.nodes.is_empty() {
        return Ok(where_.nodes.clone());
    }
    let Some(indexer) = &where_.indexer else {
        return Err(ClientError::Config(
            "no 0G Storage node or indexer given (--storage-node / --storage-indexer)".into(),
        ));
    };
    #[derive(Deserialize)]
    struct Node {
        url: String,
    }
    #[derive(Deserialize)]
    struct Sharded {
        #[serde(default)]
        trusted: Vec<Node>,
    }
    let sharded: Option<Sharded> = call(
        http,
        indexer,
        "indexer_getShardedNodes",
        serde_json::json!([]),
    )
    .await?;
    let urls: Vec<String> = sharded
        .map(|s| s.trusted.into_iter().map(|n| n.url).collect())
        .unwrap_or_default();
    if urls.is_empty() {
        return Err(storage_err(format!(
            "indexer {indexer} named no storage node"
        )));
    }
    Ok(urls)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileInfo {
    tx: FileTx,
    #[serde(default)]
    finalized: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileTx {
    data_merkle_root: B256,
    size: u64,
}

/// Downloads the file with 0G root `root` into `dest` (created; removed on any failure), each
/// segment verified; returns its size and keccak256.
pub async fn download(
    http: &reqwest::Client,
    where_: &StorageNodes,
    root: B256,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(u64, B256)> {
    let result = download_inner(http, where_, root, dest, progress).await;
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

async fn download_inner(
    http: &reqwest::Client,
    where_: &StorageNodes,
    root: B256,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(u64, B256)> {
    let nodes = node_urls(http, where_).await?;
    let mut size = None;
    for node in &nodes {
        let info: Option<FileInfo> = call(
            http,
            node,
            "zgs_getFileInfo",
            serde_json::json!([root.to_string(), true]),
        )
        .await
        .unwrap_or(None);
        if let Some(info) = info.filter(|i| i.finalized && i.tx.data_merkle_root == root) {
            size = Some(info.tx.size);
            break;
        }
    }
    let size = size.ok_or_else(|| {
        storage_err(format!(
            "no storage node has the finalized file {root} ({})",
            nodes.join(", ")
        ))
    })?;
    progress.set_total(size);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| ClientError::io(dest, e))?;
    let mut keccak = Keccak256::new();
    for index in 0..size.div_ceil(SEGMENT_SIZE as u64) {
        let data = verified_segment(http, &nodes, root, index, size).await?;
        keccak.update(&data);
        file.write_all(&data)
            .map_err(|e| ClientError::io(dest, e))?;
        progress.advance(data.len() as u64);
    }
    file.sync_all().map_err(|e| ClientError::io(dest, e))?;
    progress.finish();
    Ok((size, keccak.finalize()))
}

/// Segment `index` from the first node whose answer verifies.
async fn verified_segment(
    http: &reqwest::Client,
    nodes: &[String],
    root: B256,
    index: u64,
    size: u64,
) -> Result<Vec<u8>> {
    let mut rejected = Vec::new();
    let mut tampered = false;
    for node in nodes {
        let answer: Option<serde_json::Value> = match call(
            http,
            node,
            "zgs_downloadSegmentWithProof",
            serde_json::json!([root.to_string(), index]),
        )
        .await
        {
            Ok(a) => a,
            Err(e) => {
                rejected.push(e.to_string());
                continue;
            }
        };
        let Some(answer) = answer else {
            rejected.push(format!("{node}: no such segment"));
            continue;
        };
        let checked = serde_json::to_vec(&answer)
            .map_err(|e| e.to_string())
            .and_then(|json| SegmentWithProof::from_json(&json).map_err(|e| e.to_string()))
            .and_then(|seg| {
                seg.verify_as(root, index, size)
                    .map(<[u8]>::to_vec)
                    .map_err(|e| e.to_string())
            });
        match checked {
            Ok(data) => return Ok(data),
            Err(reason) => {
                tampered = true;
                rejected.push(format!("{node}: {reason}"));
            }
        }
    }
    Err(ClientError::Storage {
        message: format!(
            "segment {index} of {root}: no node served a valid segment ({})",
            rejected.join("; ")
        ),
        tampered,
    })
}
