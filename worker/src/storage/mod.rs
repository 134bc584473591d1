//! Where datasets, models and deliverables live: uploads to the TEE (keccak256 id), a local
//! content-addressed directory keyed by keccak256 and by the 0G root hash (the default), and the
//! 0G Storage network client (node JSON-RPC + Flow submission).
//!
//! The local store (`<data_dir>/store` by default):
//!
//! ```text
//! objects/<keccak256 hex>   the bytes (the one copy)
//! roots/<0G root hex>       alias: the keccak256 hex of the object with that 0G root
//! meta/<keccak256 hex>      the 0G root hex of the object, when known
//! tmp/                      partial uploads and downloads (emptied at open)
//! ```
//!
//! An object is renamed into `objects/` only once complete (and, for the network, verified), and
//! aliases are written after it, so a crash leaves at most a stale file in `tmp/`. Large files
//! stream through bounded buffers; nothing holds a whole file in memory.

mod flow;
mod tree;
mod zgs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Keccak256};
use alloy::providers::Provider;
use sealtune_protocol::storage::{FileTree, RootHasher};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

pub use flow::{SubmitAbi, storage_fee, submission_data, submit, submit_calldata, submit_request};
pub use tree::{SegmentTree, segment_json};
pub use zgs::{FileInfo, FileTx, ZgsClient};

/// Default limit of a file fetched from the 0G network: 64 GiB.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 64 << 30;
/// Block size of the streaming passes.
const BLOCK: usize = 4 << 20;

/// The `[storage]` configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The local content-addressed directory (default `<data_dir>/store`).
    #[serde(default)]
    pub local_dir: Option<PathBuf>,
    /// The 0G Storage network; absent: local only.
    #[serde(default)]
    pub zg: Option<ZgStorageConfig>,
}

/// The `[storage.zg]` configuration: 0G Storage nodes and the Flow contract.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZgStorageConfig {
    /// Storage node JSON-RPC URLs (e.g. `http://node:5678`).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// An indexer URL, asked for trusted nodes (`indexer_getShardedNodes`) when `nodes` is empty.
    #[serde(default)]
    pub indexer: Option<String>,
    /// The Flow contract (needed to upload).
    #[serde(default)]
    pub flow_contract: Option<Address>,
    /// Which `submit` ABI the Flow contract has (default `auto`).
    #[serde(default)]
    pub submit_abi: SubmitAbi,
    /// Largest file fetched from the network (default [`DEFAULT_MAX_DOWNLOAD`], 64 GiB).
    #[serde(default = "default_max_download")]
    pub max_download: u64,
    /// Seconds per node call (default 60).
    #[serde(default = "default_node_timeout")]
    pub timeout_secs: u64,
    /// Seconds to wait for nodes to see a Flow submission and to finalize an upload (default 600).
    #[serde(default = "default_sync_timeout")]
    pub sync_timeout_secs: u64,
}

fn default_max_download() -> u64 {
    DEFAULT_MAX_DOWNLOAD
}
fn default_node_timeout() -> u64 {
    60
}
fn default_sync_timeout() -> u64 {
    600
}

/// Why a storage operation failed. Nothing is kept when one fails.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The input exceeds the limit.
    #[error("{len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes seen (at least).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// An empty file: it has no 0G root and is no dataset or model.
    #[error("empty file")]
    Empty,
    /// The hash is nowhere the store looked.
    #[error("not found: {0}")]
    NotFound(String),
    /// A storage node failed or answered nonsense.
    #[error("0G storage network: {0}")]
    Network(String),
    /// A segment or file did not verify against its root.
    #[error("verification failed: {0}")]
    Verification(String),
    /// The chain (Flow contract) failed.
    #[error("Flow contract: {0}")]
    Chain(String),
    /// The configuration cannot work.
    #[error("storage configuration: {0}")]
    Config(String),
    /// Anything else that is invalid (sizes, layouts).
    #[error("{0}")]
    Invalid(String),
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// keccak256 of the bytes (the id of TEE uploads).
    pub keccak: B256,
    /// The 0G root hash (`B256::ZERO` for uploads, which are only keyed by keccak).
    pub root: B256,
    /// Size in bytes.
    pub len: u64,
    /// Where the bytes are.
    pub path: PathBuf,
}

/// A TEE upload received into `tmp/`, not in the store yet ([`Store::receive_upload`]).
#[derive(Debug)]
pub struct Received {
    tmp: PathBuf,
    /// keccak256 of the bytes.
    pub keccak: B256,
    /// Size in bytes.
    pub len: u64,
}

impl Received {
    /// Where the received bytes are until they are committed or discarded.
    pub fn path(&self) -> &Path {
        &self.tmp
    }
}

/// The storage façade the pipeline uses.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    zg: Option<ZgStorageConfig>,
    zgs: tokio::sync::OnceCell<Arc<ZgsClient>>,
}

fn hex_name(h: &B256) -> String {
    hex::encode(h)
}

impl Store {
    /// Opens (creating) the local store and empties its `tmp/`.
    pub fn open(config: &StorageConfig, data_dir: &Path) -> Result<Store, StorageError> {
        let dir = config
            .local_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("store"));
        for sub in ["objects", "roots", "meta", "tmp"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| StorageError::io(&d, e))?;
        }
        let tmp = dir.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(|e| StorageError::io(&tmp, e))? {
            let p = entry.map_err(|e| StorageError::io(&tmp, e))?.path();
            let _ = std::fs::remove_file(&p);
        }
        if let Some(zg) = &config.zg
            && zg.nodes.is_empty()
            && zg.indexer.is_none()
        {
            return Err(StorageError::Config(
                "[storage.zg] needs `nodes` or an `indexer`".into(),
            ));
        }
        Ok(Store {
            dir,
            zg: config.zg.clone(),
            zgs: tokio::sync::OnceCell::new(),
        })
    }

    /// The local store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tmp_path(&self, tag: &str) -> PathBuf {
        self.dir
            .join("tmp")
            .join(format!("{tag}-{}", uuid::Uuid::new_v4()))
    }

    fn object(&self, keccak: &B256) -> PathBuf {
        self.dir.join("objects").join(hex_name(keccak))
    }

    /// TEE upload in one step: [`Self::receive_upload`] then [`Self::commit_upload`].
    pub async fn put_upload(
        &self,
        body: impl AsyncRead + Unpin,
        limit: u64,
    ) -> Result<Stored, StorageError> {
        let received = self.receive_upload(body, limit).await?;
        self.commit_upload(received)
    }

    /// Receives a TEE upload into `tmp/` (not the store yet): streams `body` to a temporary file,
    /// keccak256 while streaming; more than `limit` bytes is [`StorageError::TooLarge`] and an empty
    /// body [`StorageError::Empty`] (nothing kept either way, and nothing in the store is touched).
    /// The caller checks the upload's signature, then [`Self::commit_upload`]s or
    /// [`Self::discard`]s it.
    pub async fn receive_upload(
        &self,
        mut body: impl AsyncRead + Unpin,
        limit: u64,
    ) -> Result<Received, StorageError> {
        let tmp = self.tmp_path("upload");
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| StorageError::io(&tmp, e))?;
            let mut keccak = Keccak256::new();
            let mut buf = vec![0u8; 256 << 10];
            let mut len = 0u64;
            loop {
                let n = body
                    .read(&mut buf)
                    .await
                    .map_err(|e| StorageError::io(Path::new("<upload body>"), e))?;
                if n == 0 {
                    break;
                }
                len += n as u64;
                if len > limit {
                    return Err(StorageError::TooLarge { len, limit });
                }
                let chunk = buf.get(..n).unwrap_or_default();
                keccak.update(chunk);
                file.write_all(chunk)
                    .await
                    .map_err(|e| StorageError::io(&tmp, e))?;
            }
            if len == 0 {
                return Err(StorageError::Empty);
            }
            file.sync_all()
                .await
                .map_err(|e| StorageError::io(&tmp, e))?;
            Ok((keccak.finalize(), len))
        }
        .await;
        match result {
            Ok((keccak, len)) => Ok(Received { tmp, keccak, len }),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Moves a received upload into the store, keyed by its keccak256 (`root` is zero); an
    /// identical object already stored is kept (and renewed, see [`Self::touched_since`]).
    pub fn commit_upload(&self, received: Received) -> Result<Stored, StorageError> {
        let result = self.place(&received.tmp, received.keccak, None, received.len, false);
        if result.is_err() {
            let _ = std::fs::remove_file(&received.tmp);
        }
        result
    }

    /// Drops a received upload that will not be stored; the store is not touched.
    pub async fn discard(&self, received: Received) {
        let _ = tokio::fs::remove_file(&received.tmp).await;
    }

    /// Imports a finished local file (e.g. the sealed deliverable): one streaming pass computes
    /// keccak256 (on its own thread) and the 0G root hash together, then the file is **moved**
    /// into the store and indexed by both hashes. The source path no longer exists afterwards.
    pub async fn import_file(&self, path: &Path) -> Result<Stored, StorageError> {
        let p = path.to_path_buf();
        let (keccak, tree) = tokio::task::spawn_blocking(move || hash_file(&p))
            .await
            .map_err(|e| StorageError::Invalid(format!("hashing task failed: {e}")))??;
        self.place(path, keccak, Some(tree.root()), tree.size(), true)
    }

    /// Moves `src` into `objects/<keccak>` (or drops it if the object exists) and writes aliases.
    fn place(
        &self,
        src: &Path,
        keccak: B256,
        root: Option<B256>,
        len: u64,
        may_cross_fs: bool,
    ) -> Result<Stored, StorageError> {
        let dst = self.object(&keccak);
        if dst.exists() {
            std::fs::remove_file(src).map_err(|e| StorageError::io(src, e))?;
            // Uploaded again: renew the object's time so retention of an older task that used
            // the same bytes keeps it (see `touched_since`).
            if let Ok(f) = std::fs::File::open(&dst) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
        } else {
            match std::fs::rename(src, &dst) {
                Ok(()) => {}
                Err(e) if may_cross_fs && e.raw_os_error() == Some(18) => {
                    // EXDEV: another filesystem; copy through tmp/ then remove the source.
                    tracing::warn!(src = %src.display(), "import from another filesystem: copying");
                    let tmp = self.tmp_path("import");
                    std::fs::copy(src, &tmp).map_err(|e| StorageError::io(&tmp, e))?;
                    std::fs::rename(&tmp, &dst).map_err(|e| StorageError::io(&dst, e))?;
                    std::fs::remove_file(src).map_err(|e| StorageError::io(src, e))?;
                }
                Err(e) => return Err(StorageError::io(&dst, e)),
            }
        }
        let known_root = root.or_else(|| self.root_of(&keccak));
        if let Some(r) = known_root {
            let meta = self.dir.join("meta").join(hex_name(&keccak));
            std::fs::write(&meta, hex_name(&r)).map_err(|e| StorageError::io(&meta, e))?;
            let alias = self.dir.join("roots").join(hex_name(&r));
            std::fs::write(&alias, hex_name(&keccak)).map_err(|e| StorageError::io(&alias, e))?;
        }
        Ok(Stored {
            keccak,
            root: known_root.unwrap_or_default(),
            len,
            path: dst,
        })
    }

    fn root_of(&self, keccak: &B256) -> Option<B256> {
        let text = std::fs::read_to_string(self.dir.join("meta").join(hex_name(keccak))).ok()?;
        text.trim().parse().ok()
    }

    fn keccak_of_root(&self, root: &B256) -> Option<B256> {
        let text = std::fs::read_to_string(self.dir.join("roots").join(hex_name(root))).ok()?;
        text.trim().parse().ok()
    }

    /// The local file of `hash` (a keccak256 or a 0G root), if the store has it.
    pub fn path_of(&self, hash: &B256) -> Option<PathBuf> {
        let direct = self.object(hash);
        if direct.is_file() {
            return Some(direct);
        }
        let via_root = self.object(&self.keccak_of_root(hash)?);
        via_root.is_file().then_some(via_root)
    }

    /// The stored object of `hash`, with both hashes when known.
    pub fn stat(&self, hash: &B256) -> Option<Stored> {
        let path = self.path_of(hash)?;
        let keccak: B256 = path.file_name()?.to_str()?.parse().ok()?;
        let len = std::fs::metadata(&path).ok()?.len();
        Some(Stored {
            keccak,
            root: self.root_of(&keccak).unwrap_or_default(),
            len,
            path,
        })
    }

    async fn zgs(&self) -> Result<Option<Arc<ZgsClient>>, StorageError> {
        let Some(zg) = &self.zg else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(zg.timeout_secs.max(1));
        let client = self
            .zgs
            .get_or_try_init(|| async {
                let nodes = match (&zg.indexer, zg.nodes.is_empty()) {
                    (Some(indexer), true) => ZgsClient::discover(indexer, timeout).await?,
                    _ => zg.nodes.clone(),
                };
                ZgsClient::new(nodes, timeout).map(Arc::new)
            })
            .await?;
        Ok(Some(client.clone()))
    }

    /// Resolves a dataset/model hash (the keccak256 of an upload, or a 0G root hash) to a local
    /// file: the local store first, then the 0G network when configured (each segment verified
    /// against the root; the file is staged in `dest_dir`, then moved into the store and indexed
    /// by root and keccak256). [`StorageError::NotFound`] names every place it looked.
    pub async fn fetch(&self, hash: &B256, dest_dir: &Path) -> Result<PathBuf, StorageError> {
        if let Some(p) = self.path_of(hash) {
            return Ok(p);
        }
        let local = format!(
            "{hash} is neither an upload (keccak256) nor a 0G root in the local store {}",
            self.dir.display()
        );
        let Some(client) = self.zgs().await? else {
            return Err(StorageError::NotFound(format!(
                "{local}; the 0G storage network is not configured"
            )));
        };
        let max = self
            .zg
            .as_ref()
            .map_or(DEFAULT_MAX_DOWNLOAD, |z| z.max_download);
        tokio::fs::create_dir_all(dest_dir)
            .await
            .map_err(|e| StorageError::io(dest_dir, e))?;
        let staged = dest_dir.join(format!("{}.part-{}", hex_name(hash), uuid::Uuid::new_v4()));
        let (len, keccak) = match client.download(hash, &staged, max).await {
            Ok(r) => r,
            Err(StorageError::NotFound(net)) => {
                return Err(StorageError::NotFound(format!("{local}; {net}")));
            }
            Err(e) => return Err(e),
        };
        let stored = self.place(&staged, keccak, Some(*hash), len, true)?;
        Ok(stored.path)
    }

    /// Whether the object of `hash` was stored or uploaded again after `unix_secs` (its file's
    /// modification time), `None` when the store does not have it.
    pub fn touched_since(&self, hash: &B256, unix_secs: i64) -> Option<bool> {
        let modified = std::fs::metadata(self.path_of(hash)?)
            .ok()?
            .modified()
            .ok()?;
        let secs = modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(i64::try_from(secs).ok()? > unix_secs)
    }

    /// Deletes the object of `hash` (keccak256 or root) and its aliases (retention). Removing
    /// what is not there is not an error.
    pub async fn remove(&self, hash: &B256) -> Result<(), StorageError> {
        let keccak = if self.object(hash).is_file() {
            *hash
        } else if let Some(k) = self.keccak_of_root(hash) {
            k
        } else {
            return Ok(());
        };
        let mut paths = Vec::new();
        if let Some(root) = self.root_of(&keccak) {
            paths.push(self.dir.join("roots").join(hex_name(&root)));
        }
        paths.push(self.dir.join("meta").join(hex_name(&keccak)));
        paths.push(self.object(&keccak));
        for p in paths {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(&p, e)),
            }
        }
        Ok(())
    }

    /// Whether sealed deliverables go to 0G Storage: `[storage.zg]` with a `flow_contract`.
    pub fn uploads_to_0g(&self) -> bool {
        self.zg.as_ref().is_some_and(|z| z.flow_contract.is_some())
    }

    /// Prepares the upload of the stored object `hash` to 0G Storage: its trees (one read of the
    /// file), the node client and the Flow contract. Nothing is sent.
    pub async fn zg_prepare(&self, hash: &B256) -> Result<ZgUpload, StorageError> {
        let zg = self.zg.as_ref().ok_or_else(|| {
            StorageError::Config("the 0G storage network is not configured".into())
        })?;
        let flow = zg.flow_contract.ok_or_else(|| {
            StorageError::Config("[storage.zg] flow_contract is needed to upload".into())
        })?;
        let client = self
            .zgs()
            .await?
            .ok_or_else(|| StorageError::Config("no 0G storage client".into()))?;
        let path = self
            .path_of(hash)
            .ok_or_else(|| StorageError::NotFound(format!("{hash} is not in the local store")))?;
        let p = path.clone();
        let (file_tree, seg_tree) = tokio::task::spawn_blocking(move || {
            let ft = sealtune_protocol::storage::root_hash_file(&p)
                .map_err(|e| StorageError::Invalid(e.to_string()))?;
            let st = SegmentTree::from_file(&p)?;
            Ok::<_, StorageError>((ft, st))
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("hashing task failed: {e}")))??;
        if seg_tree.root() != file_tree.root() {
            return Err(StorageError::Invalid(format!(
                "segment tree root {} != protocol root {}",
                seg_tree.root(),
                file_tree.root()
            )));
        }
        Ok(ZgUpload {
            file_tree,
            seg_tree,
            path,
            flow,
            abi: zg.submit_abi,
            sync: Duration::from_secs(zg.sync_timeout_secs),
            client,
        })
    }

    /// Records locally that the object of `upload` has the 0G root it was uploaded with.
    pub fn index_uploaded(&self, upload: &ZgUpload) -> Result<(), StorageError> {
        self.alias_root(&upload.path, upload.root())
    }

    /// Uploads the stored object `hash` to 0G Storage in one go: Flow `submit` from `submitter`
    /// (signed by `provider`), wait until the nodes see it, send every segment with its proof, wait
    /// until a node reports it finalized. Returns the 0G root (also indexed locally). A file the
    /// network already knows is not submitted again. Not crash-safe (a crash between the submission
    /// and the segments pays again): the pipeline records the submission first
    /// (`pipeline::publish`).
    pub async fn upload_to_0g<P: Provider>(
        &self,
        hash: &B256,
        provider: &P,
        submitter: Address,
    ) -> Result<B256, StorageError> {
        let upload = self.zg_prepare(hash).await?;
        let info = match upload.network_info().await? {
            Some(info) if info.finalized => {
                self.index_uploaded(&upload)?;
                return Ok(upload.root());
            }
            Some(info) => info,
            None => {
                let tx = upload.submit_request(provider, submitter).await?;
                let receipt = provider
                    .send_transaction(tx)
                    .await
                    .map_err(|e| StorageError::Chain(format!("Flow.submit: {e}")))?
                    .get_receipt()
                    .await
                    .map_err(|e| StorageError::Chain(format!("Flow.submit receipt: {e}")))?;
                if !receipt.status() {
                    return Err(StorageError::Chain(format!(
                        "Flow.submit {} reverted",
                        receipt.transaction_hash
                    )));
                }
                upload.wait_seen().await?
            }
        };
        upload.send_segments(info.tx.seq, &mut |_, _| {}).await?;
        upload.wait_finalized().await?;
        self.index_uploaded(&upload)?;
        Ok(upload.root())
    }

    fn alias_root(&self, path: &Path, root: B256) -> Result<(), StorageError> {
        let keccak: B256 = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StorageError::Invalid(format!("{} is no object", path.display())))?;
        let meta = self.dir.join("meta").join(hex_name(&keccak));
        std::fs::write(&meta, hex_name(&root)).map_err(|e| StorageError::io(&meta, e))?;
        let alias = self.dir.join("roots").join(hex_name(&root));
        std::fs::write(&alias, hex_name(&keccak)).map_err(|e| StorageError::io(&alias, e))
    }
}

/// A stored object on its way to 0G Storage ([`Store::zg_prepare`]): its trees, the node client
/// and the Flow contract. Each step is safe to repeat.
#[derive(Debug)]
pub struct ZgUpload {
    file_tree: FileTree,
    seg_tree: SegmentTree,
    path: PathBuf,
    flow: Address,
    abi: SubmitAbi,
    sync: Duration,
    client: Arc<ZgsClient>,
}

impl ZgUpload {
    /// The file's 0G root.
    pub fn root(&self) -> B256 {
        self.file_tree.root()
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.file_tree.size()
    }

    /// Always false: an empty file has no 0G root and is never prepared.
    pub fn is_empty(&self) -> bool {
        self.file_tree.size() == 0
    }

    /// What the nodes know of the file (its Flow submission, whether finalized), if anything.
    pub async fn network_info(&self) -> Result<Option<FileInfo>, StorageError> {
        self.client.file_info(&self.root(), false).await
    }

    /// The unsigned Flow `submit` transaction (value: the storage fee) from `submitter`.
    pub async fn submit_request<P: Provider>(
        &self,
        provider: &P,
        submitter: Address,
    ) -> Result<alloy::rpc::types::TransactionRequest, StorageError> {
        submit_request(provider, self.flow, &self.file_tree, self.abi, submitter).await
    }

    /// Waits (up to `sync_timeout_secs`) until a node saw the Flow submission of the file.
    pub async fn wait_seen(&self) -> Result<FileInfo, StorageError> {
        let root = self.root();
        wait_for(self.sync, || self.client.file_info(&root, false), |_| true)
            .await?
            .ok_or_else(|| {
                StorageError::Network(format!("no node saw the Flow submission of {root}"))
            })
    }

    /// Sends every segment with its proof for submission `seq`, calling `after_batch(sent, total)`.
    pub async fn send_segments(
        &self,
        seq: u64,
        after_batch: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), StorageError> {
        self.client
            .upload_segments_with(&self.seg_tree, &self.path, seq, after_batch)
            .await
    }

    /// Waits (up to `sync_timeout_secs`) until a node reports the file finalized.
    pub async fn wait_finalized(&self) -> Result<(), StorageError> {
        let root = self.root();
        wait_for(
            self.sync,
            || self.client.file_info(&root, true),
            |i| i.finalized,
        )
        .await?
        .map(|_| ())
        .ok_or_else(|| StorageError::Network(format!("{root} was not finalized in time")))
    }
}

/// Polls `get` once a second until `done` holds for its answer or `timeout` passes.
async fn wait_for<F, Fut>(
    timeout: Duration,
    mut get: F,
    done: impl Fn(&FileInfo) -> bool,
) -> Result<Option<FileInfo>, StorageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<FileInfo>, StorageError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(info) = get().await?
            && done(&info)
        {
            return Ok(Some(info));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// keccak256 and the 0G tree of a file in one read: the reader feeds the root hasher (parallel
/// over segments) and hands each block to a keccak thread; memory is a few blocks.
pub fn hash_file(path: &Path) -> Result<(B256, FileTree), StorageError> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(2);
    let keccak_thread = std::thread::spawn(move || {
        let mut k = Keccak256::new();
        for block in rx {
            k.update(block.as_slice());
        }
        k.finalize()
    });
    let mut hasher = RootHasher::new();
    let read_result = (|| {
        loop {
            let mut buf = vec![0u8; BLOCK];
            let mut n = 0;
            while n < BLOCK {
                match file.read(buf.get_mut(n..).unwrap_or_default()) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StorageError::io(path, e)),
                }
            }
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            let block = Arc::new(buf);
            if tx.send(block.clone()).is_err() {
                return Err(StorageError::Invalid("keccak thread stopped".into()));
            }
            hasher.update(block.as_slice());
        }
    })();
    drop(tx);
    let keccak = keccak_thread
        .join()
        .map_err(|_| StorageError::Invalid("keccak thread panicked".into()))?;
    read_result?;
    if hasher.is_empty() {
        return Err(StorageError::Empty);
    }
    let tree = hasher
        .finalize()
        .map_err(|e| StorageError::Invalid(e.to_string()))?;
    Ok((keccak, tree))
}
