//! The executor: the child process `sealtune-worker exec <task dir>` that embeds CPython and runs the
//! model's training script under 0G's argv contract, and the parent-side supervision of that child.
//!
//! Contract with the pipeline (owned by the worker's `pipeline` module):
//! * the parent writes `<task dir>/exec.json` ([`ExecSpec`]) and calls [`spawn`];
//! * the child streams `sealtune_protocol::events` lines to the parent; the parent forwards every
//!   parsed event to the pipeline's channel and turns the script's stdout/stderr into `log` events;
//! * [`spawn`] resolves to an [`ExecOutcome`] once the child exits, or to an [`ExecError`] that names the
//!   reason (crash, non-zero exit, timeout, OOM kill, cancel);
//! * the child never receives the TEE key.
//!
//! (Lead's stand-in with the agreed interface so the pipeline compiles; replaced by the full module.)
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::B256;
use sealtune_protocol::events::{Event, OutputSummary};
use serde::{Deserialize, Serialize};

/// Written by the parent as `<task dir>/exec.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The training script.
    pub script: PathBuf,
    /// The raw dataset file.
    pub dataset: PathBuf,
    /// Text or image.
    pub data_type: DataType,
    /// Prepared dataset directory.
    pub data_path: PathBuf,
    /// Base model directory.
    pub model_path: PathBuf,
    /// Training params JSON file.
    pub config_path: PathBuf,
    /// Output directory.
    pub output_dir: PathBuf,
    /// In-process sealing.
    pub seal: Option<SealSpec>,
}

/// In-process sealing settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealSpec {
    /// Per-task AES key, hex.
    pub key_hex: String,
    /// Where the sealed file goes.
    pub sealed_path: PathBuf,
}

/// Dataset kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Text.
    Text,
    /// Image.
    Image,
}

/// Limits of one run.
#[derive(Debug, Clone)]
pub struct ExecLimits {
    /// Wall clock.
    pub timeout: Duration,
    /// Memory.
    pub memory_limit_bytes: Option<u64>,
}

/// What a successful run produced.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    /// Output summary.
    pub output: OutputSummary,
    /// Sealed by the child.
    pub sealed: Option<ChildSealed>,
}

/// The child's sealing result.
#[derive(Debug, Clone)]
pub struct ChildSealed {
    /// keccak256 of the tags.
    pub tag_digest: B256,
    /// Chunks.
    pub chunks: u64,
    /// File length.
    pub file_len: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Not available.
    #[error("the executor is not available in this build")]
    Unavailable,
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// Parent side.
pub async fn spawn(
    _worker_exe: &Path,
    _task_dir: &Path,
    _spec: &ExecSpec,
    _limits: &ExecLimits,
    _events: tokio::sync::mpsc::Sender<Event>,
    _cancel: tokio_util::sync::CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    Err(ExecError::Unavailable)
}

/// Child side.
pub fn child_main(_task_dir: &Path) -> std::process::ExitCode {
    std::process::ExitCode::from(2)
}
