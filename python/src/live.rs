//! The link between the `sealtune` module and the task that runs it.
//!
//! Inside the worker's executor child, [`install_live`] is called once before the script starts: from
//! then on every event goes to the [`LiveSink`] (the pipe to the parent) and `seal_model` seals with the
//! [`LiveSeal`] key. Without it (the pip wheel), events go to the file named by `SEALTUNE_EVENTS_FILE`,
//! appended one JSON line per event, or else to Python's `sys.stdout`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use sealtune_protocol::B256;
use sealtune_protocol::deliverable::DeliverableKey;
use sealtune_protocol::events::{Event, to_line};

use crate::error::NativeError;

/// Environment variable naming the file standalone events are appended to.
pub const EVENTS_FILE_ENV: &str = "SEALTUNE_EVENTS_FILE";

/// Where live events go: called with each event line (no trailing newline), from any thread.
pub type LiveSink = Box<dyn Fn(&str) -> std::io::Result<()> + Send + Sync>;

/// The task's paths (the 0G argv contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPaths {
    /// `--data_path`: the prepared dataset.
    pub data_path: PathBuf,
    /// `--model_path`: the base model directory.
    pub model_path: PathBuf,
    /// `--config_path`: the training parameters JSON.
    pub config_path: PathBuf,
    /// `--output_dir`: where the script writes its model when it does not seal it.
    pub output_dir: PathBuf,
}

/// Sealing inside the worker: the per-task key (never the TEE key) and where the sealed file goes.
#[derive(Debug)]
pub struct LiveSeal {
    /// The per-task AES-256 model key.
    pub key: DeliverableKey,
    /// Where the sealed deliverable is written (the parent checks, commits and renames it, then
    /// signs it).
    pub sealed_path: PathBuf,
}

/// Everything [`install_live`] connects.
pub struct LiveContext {
    /// The task's paths.
    pub task: TaskPaths,
    /// Sealing, when the worker seals in the child.
    pub seal: Option<LiveSeal>,
    /// The event stream to the parent.
    pub sink: LiveSink,
}

impl std::fmt::Debug for LiveContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveContext")
            .field("task", &self.task)
            .field("seal", &self.seal)
            .finish_non_exhaustive()
    }
}

/// What a successful `seal_model` produced, for the executor to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealResult {
    /// `keccak256(tag₀ ‖ tag₁ ‖ …)`.
    pub tag_digest: B256,
    /// Chunks sealed.
    pub chunks: u64,
    /// Length of the sealed file.
    pub file_len: u64,
    /// Bytes of plaintext (the zip).
    pub zip_len: u64,
    /// Files in the sealed zip.
    pub files: u64,
}

static LIVE: OnceLock<LiveContext> = OnceLock::new();
static SEAL_RESULT: Mutex<Option<SealResult>> = Mutex::new(None);
static SEAL_STARTED: Mutex<bool> = Mutex::new(false);

/// Connect the module to a running task (once per process). Returns the context back if one is
/// installed already.
pub fn install_live(ctx: LiveContext) -> Result<(), Box<LiveContext>> {
    LIVE.set(ctx).map_err(Box::new)
}

/// The live context, when running inside a worker.
pub fn context() -> Option<&'static LiveContext> {
    LIVE.get()
}

/// The result of the task's `seal_model`, if the script sealed its model (taken once).
pub fn take_seal_result() -> Option<SealResult> {
    SEAL_RESULT.lock().ok().and_then(|mut r| r.take())
}

/// Record the seal result (called by [`crate::seal`]).
pub(crate) fn set_seal_result(result: SealResult) {
    if let Ok(mut r) = SEAL_RESULT.lock() {
        *r = Some(result);
    }
}

/// Claim the task's one live seal; `false` when a stream was already opened.
pub(crate) fn claim_seal() -> bool {
    match SEAL_STARTED.lock() {
        Ok(mut started) if !*started => {
            *started = true;
            true
        }
        _ => false,
    }
}

/// Emit one event: to the live sink inside a worker, else standalone (file or stdout).
pub fn emit(event: &Event) -> Result<(), NativeError> {
    let line = to_line(event).map_err(|e| NativeError::Event(e.to_string()))?;
    if let Some(ctx) = LIVE.get() {
        return (ctx.sink)(&line).map_err(|e| NativeError::Event(format!("event stream: {e}")));
    }
    if let Some(path) = std::env::var_os(EVENTS_FILE_ENV) {
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        return Ok(());
    }
    Python::attach(|py| {
        py.import("sys")
            .and_then(|sys| sys.getattr("stdout"))
            .and_then(|out| {
                out.call_method1("write", (format!("{line}\n"),))
                    .map(|_| ())
            })
            .map_err(|e| NativeError::Event(format!("writing to sys.stdout: {e}")))
    })
}
