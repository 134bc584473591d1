//! The executor: the child process `sealtune-worker exec <task dir>` that embeds CPython and runs the
//! model's training script under 0G's argv contract, and the parent-side supervision of that child.
//!
//! Contract with the pipeline (owned by the worker's `pipeline` module):
//! * the parent calls [`spawn`], which writes `<task dir>/exec.json` ([`ExecSpec`], **without** the
//!   model key) and starts the child;
//! * the child streams `sealtune_protocol::events` lines to the parent over a dedicated pipe (never
//!   stdout, which the script prints to: a dataset record printed by the script cannot forge an event);
//!   the parent forwards every parsed event to the pipeline's channel and turns the script's
//!   stdout/stderr lines into `log` events;
//! * [`spawn`] resolves to an [`ExecOutcome`] once the child exits, or to an [`ExecError`] that names the
//!   reason (crash, non-zero exit, timeout, OOM kill, cancel);
//! * the parent records the child's pid and start time in `<task dir>/exec.pid` ([`PID_FILE`]) while
//!   it runs, so that a restarted worker kills an executor that outlived its worker ([`kill_leftover`])
//!   before the task runs again;
//! * the child never receives the TEE key. When the worker seals in the child ([`SealSpec`]), the child
//!   gets the **per-task** model key on its stdin (not in argv, env or the task directory), reports the
//!   tag of every sealed chunk, and the parent signs `keccak256(tags)` ([`ChildSealed::tag_digest`]).
//!
//! How the child finds Python: it embeds the `libpython` the worker was built against (rpath) and adds
//! the site-packages of the venv named by `$VIRTUAL_ENV` (inherited from the parent), so the script sees
//! the project venv's torch/transformers/peft. The `sealtune` module the script imports is the one
//! compiled into the worker ([`sealtune_python::register_embedded`]), connected to the task.
//!
//! Sandbox: every run goes through a [`sandbox::Jail`] (cleared environment, per-task uid, seccomp,
//! ...; see [`sandbox`]): the parent hands the task directory to the task's uid and takes it back,
//! the child drops to that uid before it parses any customer byte, and when the run ends every
//! process of that uid is killed.
//!
//! Limits: [`ExecLimits::timeout`] kills the child's whole process group; [`ExecLimits::memory_limit_bytes`]
//! caps the child's data segment (`RLIMIT_DATA`: private writable memory, which is what tensors and
//! Python objects take; the pipeline's default is [`sandbox::default_memory_limit`], 3/4 of the
//! machine's memory), set by the child on itself before it drops to the task uid
//! ([`sandbox::ChildPlan`]), so a runaway allocation fails with a `MemoryError` the customer can read. `RLIMIT_AS` is not used: the worker built with the `torch`
//! feature crashes at start under an address-space cap (libtorch maps large read-only and reserved
//! ranges; CUDA reserves more). Whether `RLIMIT_DATA` coexists with CUDA was not checked (no GPU here).
//! A child killed by `SIGKILL` that the parent did not send is reported as [`ExecError::OutOfMemory`]
//! (the kernel's OOM killer is the usual sender).

mod child;
mod leftover;
mod prepare;
pub mod ranks;
pub mod sandbox;
pub mod scratch;

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use sealtune_protocol::B256;
use sealtune_protocol::events::{
    Event, LogLevel, MAX_EVENT_LINE, OutputSummary, TagCollector, parse_line,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

pub use child::child_main;
pub use leftover::{PID_FILE, kill_leftover};
pub use ranks::MAX_RANKS;
use ranks::{Rank, RankRole};

/// File name of the spec in the task directory.
pub const SPEC_FILE: &str = "exec.json";
/// Environment variable carrying the number of the child's event-pipe file descriptor.
pub const EVENTS_FD_ENV: &str = "SEALTUNE_EVENTS_FD";

/// Environment variable carrying the worker's pid to the executor child, which asks the kernel to kill
/// it when the worker dies and checks that the worker was still alive when it asked.
pub const PARENT_PID_ENV: &str = "SEALTUNE_EXEC_PARENT";
/// Test-only, named as dangerous: when set in the worker's environment, the executor does not ask
/// to die with the worker, so tests can leave one behind and check that a restarted worker kills it
/// ([`kill_leftover`]). Never set in production; the worker warns at each spawn when it is set.
pub const TEST_SURVIVE_WORKER_ENV: &str = "SEALTUNE_TEST_EXEC_SURVIVES_WORKER";
/// How long the parent waits for the child's streams to end after it exited.
const DRAIN_GRACE: Duration = Duration::from_secs(3);
/// Longest stdout/stderr line forwarded as one log event (longer lines are cut).
const MAX_OUTPUT_LINE: usize = 16 << 10;
/// Lines of stderr kept for error messages.
const STDERR_TAIL_LINES: usize = 20;

/// Written by the parent as `<task dir>/exec.json` (with [`SealSpec::key_hex`] blanked: the key travels
/// on the child's stdin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The model's training script (`.py`).
    pub script: PathBuf,
    /// The raw dataset as fetched: a zip or a single JSONL (or an image-folder zip).
    pub dataset: PathBuf,
    /// Text or image.
    pub data_type: DataType,
    /// Where the child prepares the dataset as 0G does (PROTOCOL.md §3): a zip is unzipped with its top
    /// folder as `data_path`; JSONL records become a Hugging Face `DatasetDict` with a `train` split
    /// saved with `save_to_disk`.
    pub data_path: PathBuf,
    /// The base model directory (Hugging Face layout).
    pub model_path: PathBuf,
    /// The training params JSON, written by the parent.
    pub config_path: PathBuf,
    /// Where the script writes its output when it does not seal it.
    pub output_dir: PathBuf,
    /// When set, `sealtune.seal_model(...)` in the script seals straight into `sealed_path`.
    pub seal: Option<SealSpec>,
    /// How the dataset's rows become records (the task's `datasetType`), as setup counted them.
    #[serde(default)]
    pub dataset_type: Option<sealtune_protocol::dataset_type::DatasetType>,
    /// The venv whose site-packages the script sees (the config's `python_venv`); `None`: the
    /// worker's `$VIRTUAL_ENV`.
    #[serde(default)]
    pub venv: Option<PathBuf>,
    /// Sealed checkpoints: where every rank's trainer writes them and where it resumes from
    /// (`pipeline::checkpoint`); `None`: the model does not checkpoint.
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
}

/// The checkpoint settings a script reads with `sealtune.checkpointing()` (environment variables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSpec {
    /// The task's checkpoint scratch directory (tmpfs, the task uid's, 0700: [`scratch`]).
    pub dir: PathBuf,
    /// Checkpoint every this many steps.
    pub every: u32,
    /// The unsealed checkpoint of an interrupted run to resume from.
    pub resume_from: Option<PathBuf>,
}

impl CheckpointSpec {
    /// `SEALTUNE_CHECKPOINT_DIR`, `SEALTUNE_CHECKPOINT_STEPS` and `SEALTUNE_RESUME_FROM` (empty: none).
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("SEALTUNE_CHECKPOINT_DIR", self.dir.display().to_string()),
            ("SEALTUNE_CHECKPOINT_STEPS", self.every.to_string()),
            (
                "SEALTUNE_RESUME_FROM",
                self.resume_from
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// Sealing in the child: the per-task AES key (never the TEE key) and the sealed file's path.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealSpec {
    /// The per-task model key, 64 hex digits. Never written to `exec.json` (blank there).
    pub key_hex: String,
    /// Where the sealed deliverable goes: a temporary name, which the parent checks against the
    /// reported chunk tags, commits and renames into place before it signs the file.
    pub sealed_path: PathBuf,
}

impl std::fmt::Debug for SealSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealSpec")
            .field("key_hex", &"<redacted>")
            .field("sealed_path", &self.sealed_path)
            .finish()
    }
}

/// The model's data type (`dataType` of the 0G model entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// JSONL records (PROTOCOL.md §3).
    Text,
    /// An image-folder zip.
    Image,
}

/// Limits the parent enforces on the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Wall-clock limit; the child's process group is killed when it passes.
    pub timeout: Duration,
    /// Data-segment limit of the child (`RLIMIT_DATA`: private writable memory), if any.
    pub memory_limit_bytes: Option<u64>,
}

/// What a successful run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The child's `finished` summary.
    pub output: OutputSummary,
    /// Set when the script sealed the model in the child.
    pub sealed: Option<ChildSealed>,
}

/// A model sealed by the child: the parent signs `tag_digest` with the TEE key, then
/// `protocol::deliverable::finish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildSealed {
    /// `keccak256(tag₀ ‖ tag₁ ‖ …)` of the chunk tags the child reported, in order.
    pub tag_digest: B256,
    /// Chunks sealed.
    pub chunks: u64,
    /// Length of the sealed file on disk.
    pub file_len: u64,
}

/// Why a run failed. `Display` is a human-readable reason for the customer's task log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The child could not be started (or its task directory written).
    #[error("could not start the training process: {0}")]
    Spawn(#[source] std::io::Error),
    /// The child exited with a non-zero status without reporting why.
    #[error("the training process exited with status {code}{}", tail(stderr_tail))]
    ExitCode {
        /// Exit status.
        code: i32,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// The child was killed by a signal the parent did not send.
    #[error(
        "the training process was killed by signal {signal}{}",
        tail(stderr_tail)
    )]
    Signal {
        /// The signal number.
        signal: i32,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// The run took longer than the limit and was killed.
    #[error("training took longer than the limit of {} s and was stopped", .0.as_secs())]
    Timeout(Duration),
    /// The sandbox could not be set up or taken down (the task directory could not be handed to the
    /// task uid, or its processes could not be killed).
    #[error("the training sandbox failed: {0}")]
    Sandbox(String),
    /// The child was killed by `SIGKILL` that the parent did not send: almost always the kernel's
    /// out-of-memory killer.
    #[error(
        "the training process ran out of memory (killed by SIGKILL, most likely by the kernel's out-of-memory killer)"
    )]
    OutOfMemory,
    /// The task was cancelled and the child killed.
    #[error("training was cancelled")]
    Cancelled,
    /// The script failed: an exception (its last traceback line), a non-zero `sys.exit`, a bad dataset,
    /// or no output.
    #[error("the training script failed: {reason}")]
    ScriptFailed {
        /// Why.
        reason: String,
    },
    /// The child broke the event protocol (bad line, chunks out of order, no end event).
    #[error("the training process broke the event protocol: {0}")]
    Protocol(String),
    /// One rank of a multi-rank run failed (the first to fail); the other ranks were stopped.
    #[error("rank {rank} of {world}: {source}")]
    Rank {
        /// The rank that failed first.
        rank: u32,
        /// The number of ranks.
        world: u32,
        /// Why it failed.
        source: Box<ExecError>,
    },
}

fn tail(stderr_tail: &str) -> String {
    let t = stderr_tail.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; last output:\n{t}")
    }
}

/// Serializes the moments when the event pipe's write end is inheritable (see [`spawn`]).
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// What the event-pipe reader saw.
#[derive(Debug, Default)]
struct PipeState {
    tags: TagCollector,
    finished: Option<OutputSummary>,
    failed: Option<String>,
    protocol_error: Option<String>,
}

/// Parent side: spawn `<worker_exe> exec <task_dir>` (the same binary) in `jail`, write nothing secret
/// in argv/env, forward every event to `events`, turn stdout/stderr lines of the script into `log`
/// events, kill the child's whole process group on cancel or timeout (and, with a task uid, every
/// process of that uid when the run ends), and map the exit to [`ExecOutcome`] / [`ExecError`].
///
/// The event pipe's write end is made inheritable only while this function spawns (under a process-wide
/// lock), and the parent never relies on that pipe reaching end-of-file: once the child has exited, its
/// process group is killed and the streams are drained for at most a few seconds.
pub async fn spawn(
    worker_exe: &Path,
    task_dir: &Path,
    spec: &ExecSpec,
    limits: &ExecLimits,
    jail: &sandbox::Jail,
    events: Sender<Event>,
    cancel: CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    let launch = Launch {
        worker_exe,
        task_dir,
        spec,
        limits,
        jail,
    };
    launch.run(1, events, cancel).await
}

/// [`spawn`] as `ranks` processes with torchrun's environment contract (see [`ranks`]): rank 0
/// prepares the dataset, seals and reports the deliverable; the first rank to fail stops the others.
/// `ranks` = 1 is [`spawn`].
pub async fn spawn_ranks(
    launch: Launch<'_>,
    ranks: u32,
    events: Sender<Event>,
    cancel: CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    launch.run(ranks, events, cancel).await
}

/// What one run of a task needs, whatever its number of ranks.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The worker binary (`<worker_exe> exec <task dir>` is the child).
    pub worker_exe: &'a Path,
    /// The task directory.
    pub task_dir: &'a Path,
    /// What the child runs.
    pub spec: &'a ExecSpec,
    /// Timeout and memory.
    pub limits: &'a ExecLimits,
    /// The sandbox every process of the run is in.
    pub jail: &'a sandbox::Jail,
}

/// How the wait for one child ended.
enum Ended {
    Exited(std::io::Result<ExitStatus>),
    Cancelled,
    TimedOut,
    /// Another rank failed and this one was stopped.
    Stopped,
}

impl Ended {
    /// A child that exited with status 0 (it may still have broken the event protocol).
    fn is_clean(&self) -> bool {
        matches!(self, Ended::Exited(Ok(status)) if status.success())
    }
}

/// One started child and the readers of its streams.
struct Running {
    child: tokio::process::Child,
    pid: Option<rustix::process::Pid>,
    role: RankRole,
    pipe_task: tokio::task::JoinHandle<PipeState>,
    stdout_task: Option<tokio::task::JoinHandle<String>>,
    stderr_task: Option<tokio::task::JoinHandle<String>>,
}

impl Launch<'_> {
    async fn run(
        &self,
        ranks: u32,
        events: Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        std::fs::create_dir_all(self.task_dir).map_err(ExecError::Spawn)?;
        let writable = [self.spec.output_dir.as_path()];
        let result = match self
            .jail
            .before_run(
                self.worker_exe,
                self.task_dir,
                &self.spec.dataset,
                &writable,
            )
            .await
        {
            Ok(dataset) => {
                let staged = ExecSpec {
                    dataset,
                    ..self.spec.clone()
                };
                let staged_launch = Launch {
                    spec: &staged,
                    ..*self
                };
                staged_launch.supervise(ranks, events, cancel).await
            }
            Err(e) => Err(ExecError::Sandbox(e)),
        };
        let after = self.jail.after_run(self.worker_exe, self.task_dir).await;
        match (result, after) {
            (result, Ok(())) => result,
            (Ok(_), Err(e)) => Err(ExecError::Sandbox(e)),
            (Err(first), Err(e)) => {
                tracing::error!("after a failed run: {e}");
                Err(first)
            }
        }
    }

    /// Once the task directory is ready: start the child (or the ranks), stream, wait, map the exit.
    async fn supervise(
        &self,
        ranks: u32,
        events: Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        write_spec(self.task_dir, self.spec).map_err(ExecError::Spawn)?;
        if ranks > 1 {
            return self.run_world(ranks, events, cancel).await;
        }
        let mut running = self
            .start(None, None, self.limits.memory_limit_bytes, &events)
            .await?;
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let ended = running
            .wait(deadline, &cancel, &CancellationToken::new())
            .await;
        self.end_of_run().await;
        running.finish(ended, self.spec, self.limits).await
    }

    /// Whatever happened, nothing of the task may outlive it (dataloader workers, torch launchers...,
    /// and with a task uid also what left the group, e.g. a `setsid` daemon holding the event pipe).
    async fn end_of_run(&self) {
        leftover::forget(self.task_dir);
        if let Err(e) = self.jail.kill_all(self.worker_exe).await {
            tracing::error!("{e}");
        }
    }

    /// Starts one child (one rank of a world, or the only process): the event pipe, the key on
    /// stdin for the process that seals, the readers of its streams.
    /// `rank0` is a pidfd of rank 0 for the other ranks of a world: they join its network
    /// namespace through it (`sandbox::net::join`).
    async fn start(
        &self,
        rank: Option<Rank>,
        rank0: Option<&OwnedFd>,
        memory_limit_bytes: Option<u64>,
        events: &Sender<Event>,
    ) -> Result<Running, ExecError> {
        let (reader, writer) = std::io::pipe().map_err(ExecError::Spawn)?;
        let mut plan = self.jail.plan(memory_limit_bytes);
        if rank.is_some() {
            plan.loopback = true;
            plan.join_network_fd = rank0.map(|fd| fd.as_raw_fd());
        }
        let main = rank.is_none_or(|r| r.is_main());
        let mut env = rank.map_or_else(Vec::new, |r| r.env(ranks::threads_per_rank(r.world)));
        env.extend(self.spec.checkpoint.iter().flat_map(CheckpointSpec::env));
        let seal = self.spec.seal.as_ref().filter(|_| main);
        let mut child = start_child(
            self.worker_exe,
            self.task_dir,
            seal.is_some(),
            &env,
            &plan,
            self.jail,
            Inherited {
                writer,
                rank0: rank0.map(|fd| fd.as_fd()),
            },
        )?;
        let pid = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        if let (Some(pid), true) = (pid, main) {
            leftover::record(self.task_dir, pid.as_raw_nonzero().get());
        }
        if let Some(seal) = seal {
            send_key(&mut child, pid, seal).await?;
        }
        let role = rank.map_or(RankRole::Main, |r| r.role());
        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
            .map_err(ExecError::Spawn)?;
        let pipe_task = tokio::spawn(read_events(pipe, events.clone(), role));
        let stdout_task = child
            .stdout
            .take()
            .map(|out| tokio::spawn(forward_output(out, LogLevel::Info, events.clone(), role)));
        let stderr_task = child
            .stderr
            .take()
            .map(|err| tokio::spawn(forward_output(err, LogLevel::Warn, events.clone(), role)));
        Ok(Running {
            child,
            pid,
            role,
            pipe_task,
            stdout_task,
            stderr_task,
        })
    }

    /// `world` ranks: start them all, wait for all; the first to end other than cleanly stops the
    /// others; then every process of the task uid is killed and the first failure is the run's.
    async fn run_world(
        &self,
        world: u32,
        events: Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, ExecError> {
        let port = ranks::rendezvous_port().map_err(ExecError::Spawn)?;
        ranks::clear_prepared(self.task_dir).map_err(ExecError::Spawn)?;
        let memory = self.limits.memory_limit_bytes.map(|m| m / u64::from(world));
        let mut running: Vec<Running> = Vec::new();
        let mut rank0: Option<OwnedFd> = None;
        for rank in Rank::world(world, port) {
            let started = match self
                .start(Some(rank), rank0.as_ref(), memory, &events)
                .await
            {
                Ok(r) if rank.is_main() => rank0_pidfd(&r).map(|fd| {
                    rank0 = Some(fd);
                    r
                }),
                other => other,
            };
            match started {
                Ok(r) => running.push(r),
                Err(e) => {
                    for r in &running {
                        if let Some(pid) = r.pid {
                            kill_group(pid);
                        }
                    }
                    self.end_of_run().await;
                    return Err(ExecError::Rank {
                        rank: rank.rank,
                        world,
                        source: Box::new(e),
                    });
                }
            }
        }
        let stop = CancellationToken::new();
        let first_failed: Mutex<Option<u32>> = Mutex::new(None);
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let ended =
            futures_util::future::join_all(running.iter_mut().zip(0u32..).map(|(r, rank)| {
                let (stop, first_failed, cancel) = (&stop, &first_failed, &cancel);
                async move {
                    let ended = r.wait(deadline, cancel, stop).await;
                    if !ended.is_clean() && !matches!(ended, Ended::Stopped) {
                        first_failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(rank);
                        stop.cancel();
                    }
                    ended
                }
            }))
            .await;
        self.end_of_run().await;
        let mut results = Vec::new();
        for (r, ended) in running.into_iter().zip(ended) {
            results.push(r.finish(ended, self.spec, self.limits).await);
        }
        let first_failed = *first_failed.lock().unwrap_or_else(|p| p.into_inner());
        world_result(results, first_failed, world)
    }
}

/// The result of a world of ranks: the failure of the first rank that failed (a cancel or timeout
/// as such), else the first failure any rank's stream shows, else rank 0's outcome.
fn world_result(
    results: Vec<Result<ExecOutcome, ExecError>>,
    first_failed: Option<u32>,
    world: u32,
) -> Result<ExecOutcome, ExecError> {
    let blame = first_failed
        .map(|k| k as usize)
        .or_else(|| results.iter().position(Result::is_err));
    let mut results = results.into_iter();
    let Some(k) = blame else {
        return results
            .next()
            .unwrap_or(Err(ExecError::Protocol("a world without ranks".into())));
    };
    match results.nth(k) {
        Some(Err(e @ (ExecError::Cancelled | ExecError::Timeout(_)))) => Err(e),
        Some(Err(e)) => Err(ExecError::Rank {
            rank: k as u32,
            world,
            source: Box::new(e),
        }),
        _ => Err(ExecError::Protocol(format!(
            "rank {k} of {world} ended without a result"
        ))),
    }
}

impl Running {
    /// Waits for the child until it exits, `cancel` or `stop` fires, or `deadline` passes; then
    /// kills its process group.
    async fn wait(
        &mut self,
        deadline: tokio::time::Instant,
        cancel: &CancellationToken,
        stop: &CancellationToken,
    ) -> Ended {
        let ended = tokio::select! {
            status = self.child.wait() => Ended::Exited(status),
            _ = cancel.cancelled() => Ended::Cancelled,
            _ = tokio::time::sleep_until(deadline) => Ended::TimedOut,
            _ = stop.cancelled() => Ended::Stopped,
        };
        if let Some(pid) = self.pid {
            kill_group(pid);
        }
        ended
    }

    /// After the wait (and the task uid's processes were killed): drain the streams and map the
    /// exit to the result.
    async fn finish(
        mut self,
        ended: Ended,
        spec: &ExecSpec,
        limits: &ExecLimits,
    ) -> Result<ExecOutcome, ExecError> {
        let status = match ended {
            Ended::Exited(status) => status,
            Ended::Cancelled | Ended::TimedOut | Ended::Stopped => {
                let _ = self.child.wait().await;
                // Drop the readers: their results no longer matter.
                self.pipe_task.abort();
                return Err(if matches!(ended, Ended::TimedOut) {
                    ExecError::Timeout(limits.timeout)
                } else {
                    ExecError::Cancelled
                });
            }
        };
        let (state, stderr_tail) = drain(self.pipe_task, self.stdout_task, self.stderr_task).await;
        let status = status.map_err(ExecError::Spawn)?;
        let seal = spec.seal.as_ref().filter(|_| self.role == RankRole::Main);
        outcome(status, state, seal, stderr_tail)
    }
}

/// The descriptors a child inherits: the write end of its event pipe, and for a rank other than 0
/// the pidfd of rank 0 (`sandbox::net::join`).
struct Inherited<'a> {
    writer: std::io::PipeWriter,
    rank0: Option<BorrowedFd<'a>>,
}

/// Spawns `<worker_exe> exec <task_dir>` in its own process group, with the event pipe's write end
/// `writer` inherited (made inheritable only under the process-wide spawn lock, then closed here), a
/// cleared environment refilled from `jail`'s allowlist, and `jail`'s plan for the child.
///
/// The child sets its parent-death signal itself (`exec::child`), and Linux sends it when the
/// *thread* that forked the child ends: call this from async code on a runtime worker thread (they
/// live as long as the worker), never from `spawn_blocking` or `block_in_place`, whose threads retire
/// when idle.
fn start_child(
    worker_exe: &Path,
    task_dir: &Path,
    key_on_stdin: bool,
    rank_env: &[(&str, String)],
    plan: &sandbox::ChildPlan,
    jail: &sandbox::Jail,
    fds: Inherited<'_>,
) -> Result<tokio::process::Child, ExecError> {
    let Inherited { writer, rank0 } = fds;
    let plan = serde_json::to_string(plan).map_err(|e| ExecError::Sandbox(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(worker_exe);
    cmd.arg("exec")
        .arg(task_dir)
        .env_clear()
        .envs(jail.child_env(task_dir))
        .env(sandbox::PLAN_ENV, plan)
        .env(EVENTS_FD_ENV, writer.as_raw_fd().to_string())
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .env("PYTHONUNBUFFERED", "1")
        .envs(rank_env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(if key_on_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(v) = std::env::var_os(TEST_SURVIVE_WORKER_ENV) {
        tracing::warn!(
            "TEST SWITCH {TEST_SURVIVE_WORKER_ENV} SET: this executor will outlive the worker; never set it in production"
        );
        cmd.env(TEST_SURVIVE_WORKER_ENV, v);
    }
    let spawned = {
        let _guard = SPAWN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        rustix::io::fcntl_setfd(&writer, rustix::io::FdFlags::empty())
            .map_err(|e| ExecError::Spawn(e.into()))?;
        if let Some(fd) = rank0 {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
                .map_err(|e| ExecError::Spawn(e.into()))?;
        }
        let spawned = cmd.spawn();
        drop(writer);
        if let Some(fd) = rank0 {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
                .map_err(|e| ExecError::Spawn(e.into()))?;
        }
        spawned
    };
    spawned.map_err(ExecError::Spawn)
}

/// A pidfd of rank 0, opened right after its spawn: the child is not reaped before it is awaited,
/// so its pid still names it here, and from then on the descriptor names it even if the pid is
/// reused (the other ranks join its network namespace through it).
fn rank0_pidfd(running: &Running) -> Result<OwnedFd, ExecError> {
    let pid = running
        .pid
        .ok_or_else(|| ExecError::Sandbox("rank 0 has no process id".into()))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| ExecError::Sandbox(format!("opening a pidfd of rank 0: {e}")))
}

/// Writes the model key to the child's stdin (one hex line, zeroized after) and closes it; kills
/// the child if that fails.
async fn send_key(
    child: &mut tokio::process::Child,
    pid: Option<rustix::process::Pid>,
    seal: &SealSpec,
) -> Result<(), ExecError> {
    let Some(mut stdin) = child.stdin.take() else {
        return Ok(());
    };
    let mut line = zeroize::Zeroizing::new(format!("{}\n", seal.key_hex));
    let written = stdin.write_all(line.as_bytes()).await;
    zeroize::Zeroize::zeroize(&mut *line);
    drop(stdin);
    if let Err(e) = written {
        if let Some(pid) = pid {
            kill_group(pid);
        }
        let _ = child.wait().await;
        return Err(ExecError::Spawn(e));
    }
    Ok(())
}

/// After the child exited (and its group was killed): what the event pipe reported, and the tail
/// of stderr, each waited for at most [`DRAIN_GRACE`] (a grandchild may still hold a pipe open).
async fn drain(
    pipe_task: tokio::task::JoinHandle<PipeState>,
    stdout_task: Option<tokio::task::JoinHandle<String>>,
    stderr_task: Option<tokio::task::JoinHandle<String>>,
) -> (PipeState, String) {
    let state = match tokio::time::timeout(DRAIN_GRACE, pipe_task).await {
        Ok(Ok(state)) => state,
        _ => PipeState {
            protocol_error: Some("the event stream did not end".into()),
            ..PipeState::default()
        },
    };
    if let Some(t) = stdout_task {
        let _ = tokio::time::timeout(DRAIN_GRACE, t).await;
    }
    let stderr_tail = match stderr_task {
        Some(t) => match tokio::time::timeout(DRAIN_GRACE, t).await {
            Ok(Ok(tail)) => tail,
            _ => String::new(),
        },
        None => String::new(),
    };
    (state, stderr_tail)
}

/// Map the child's exit and what it reported to the result.
fn outcome(
    status: ExitStatus,
    state: PipeState,
    seal: Option<&SealSpec>,
    stderr_tail: String,
) -> Result<ExecOutcome, ExecError> {
    if let Some(signal) = status.signal() {
        return Err(if signal == rustix::process::Signal::KILL.as_raw() {
            ExecError::OutOfMemory
        } else {
            ExecError::Signal {
                signal,
                stderr_tail,
            }
        });
    }
    if let Some(e) = state.protocol_error {
        return Err(ExecError::Protocol(e));
    }
    if let Some(reason) = state.failed {
        return Err(ExecError::ScriptFailed { reason });
    }
    let code = status.code().unwrap_or(-1);
    if code != 0 {
        return Err(ExecError::ExitCode { code, stderr_tail });
    }
    let Some(output) = state.finished else {
        return Err(ExecError::Protocol(
            "the process exited without reporting `finished` or `failed`".into(),
        ));
    };
    if output.chunks == 0 {
        return Ok(ExecOutcome {
            output,
            sealed: None,
        });
    }
    let Some(seal) = seal else {
        return Err(ExecError::Protocol(
            "chunks were sealed but sealing was not requested".into(),
        ));
    };
    let tag_digest = state
        .tags
        .finish(output.chunks)
        .map_err(|e| ExecError::Protocol(e.to_string()))?;
    // Not following a link: the script could have left one in place of the sealed file.
    let meta = std::fs::symlink_metadata(&seal.sealed_path).map_err(|e| {
        ExecError::Protocol(format!(
            "the sealed file {} is missing: {e}",
            seal.sealed_path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(ExecError::Protocol(format!(
            "the sealed file {} is not a regular file",
            seal.sealed_path.display()
        )));
    }
    let file_len = meta.len();
    Ok(ExecOutcome {
        output,
        sealed: Some(ChildSealed {
            tag_digest,
            chunks: output.chunks,
            file_len,
        }),
    })
}

/// Write `exec.json` (key blanked) atomically into the task directory, never through a link an
/// earlier run of the script left there (the temporary file is created anew, 0644).
fn write_spec(task_dir: &Path, spec: &ExecSpec) -> std::io::Result<()> {
    let mut on_disk = spec.clone();
    if let Some(seal) = on_disk.seal.as_mut() {
        seal.key_hex.clear();
    }
    std::fs::create_dir_all(task_dir)?;
    let json = serde_json::to_vec_pretty(&on_disk).map_err(std::io::Error::other)?;
    let tmp = task_dir.join(format!("{SPEC_FILE}.tmp"));
    sandbox::uid::remove_any(&tmp)?;
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    std::fs::rename(&tmp, task_dir.join(SPEC_FILE))
}

/// SIGKILL the child's process group (it leads its own group); a group already gone is fine.
fn kill_group(pid: rustix::process::Pid) {
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Splits a byte stream into lines (`\n`, and `\r` when `cr_splits`); lines over `max` bytes come cut
/// to `max` (flagged) and the rest of the line is skipped.
struct LineReader<R> {
    reader: R,
    max: usize,
    cr_splits: bool,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    skipping: bool,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(reader: R, max: usize, cr_splits: bool) -> Self {
        LineReader {
            reader,
            max,
            cr_splits,
            buf: vec![0u8; 64 << 10],
            pos: 0,
            filled: 0,
            skipping: false,
            eof: false,
        }
    }

    /// The next line and whether it was cut; `None` at the end of the stream (or on a read error).
    async fn next_line(&mut self) -> Option<(Vec<u8>, bool)> {
        let mut line = Vec::new();
        loop {
            if self.pos == self.filled {
                if self.eof {
                    return (!line.is_empty() && !self.skipping).then_some((line, false));
                }
                match self.reader.read(&mut self.buf).await {
                    Ok(0) | Err(_) => {
                        self.eof = true;
                        continue;
                    }
                    Ok(n) => {
                        self.pos = 0;
                        self.filled = n;
                    }
                }
            }
            while self.pos < self.filled {
                let b = self.buf[self.pos];
                self.pos += 1;
                if b == b'\n' || (self.cr_splits && b == b'\r') {
                    if self.skipping {
                        self.skipping = false;
                        line.clear();
                        continue;
                    }
                    return Some((line, false));
                }
                if self.skipping {
                    continue;
                }
                line.push(b);
                if line.len() >= self.max {
                    self.skipping = true;
                    return Some((line, true));
                }
            }
        }
    }
}

/// Read the child's event pipe: forward every event, collect chunk tags and the end event. Another
/// rank's events are not the task's: they reach it as log lines naming the rank ([`other_rank`]).
async fn read_events(
    pipe: tokio::net::unix::pipe::Receiver,
    events: Sender<Event>,
    role: RankRole,
) -> PipeState {
    let mut state = PipeState::default();
    let mut lines = LineReader::new(pipe, MAX_EVENT_LINE + 2, false);
    while let Some((line, cut)) = lines.next_line().await {
        if cut {
            state.protocol_error = Some(format!(
                "an event line is longer than {MAX_EVENT_LINE} bytes"
            ));
            break;
        }
        if line.is_empty() {
            continue;
        }
        let event = match parse_line(&line) {
            Ok(event) => event,
            Err(e) => {
                state.protocol_error = Some(e.to_string());
                break;
            }
        };
        let forward = match role {
            RankRole::Main => main_event(&mut state, event),
            RankRole::Other(rank) => other_rank(&mut state, rank, event),
        };
        if state.protocol_error.is_some() {
            break;
        }
        if let Some(event) = forward {
            let _ = events.send(event).await;
        }
    }
    state
}

/// An event of the task's own stream: recorded, and forwarded as it is.
fn main_event(state: &mut PipeState, event: Event) -> Option<Event> {
    match &event {
        Event::ChunkSealed { index, tag, .. } => {
            if let Err(e) = state.tags.push(*index, *tag) {
                state.protocol_error = Some(e.to_string());
            }
        }
        Event::Finished { output } => state.finished = Some(*output),
        Event::Failed { reason } => state.failed = Some(reason.clone()),
        _ => {}
    }
    Some(event)
}

/// An event of rank `rank` (not 0): its end is recorded, a sealed chunk is refused (only rank 0
/// seals), and the rest becomes a log line naming the rank.
fn other_rank(state: &mut PipeState, rank: u32, event: Event) -> Option<Event> {
    let line = match event {
        Event::ChunkSealed { .. } => {
            state.protocol_error = Some(format!("rank {rank} sealed a chunk: only rank 0 seals"));
            return None;
        }
        Event::Finished { output } if output.chunks > 0 => {
            state.protocol_error = Some(format!(
                "rank {rank} reported a sealed model: only rank 0 seals"
            ));
            return None;
        }
        Event::Finished { output } => {
            state.finished = Some(output);
            return None;
        }
        Event::Started { .. } => return None,
        Event::Failed { reason } => {
            state.failed = Some(reason.clone());
            return Some(Event::log(
                LogLevel::Error,
                format!("rank {rank} failed: {reason}"),
            ));
        }
        Event::Log { level, message } => {
            return Some(Event::log(level, format!("rank {rank}: {message}")));
        }
        Event::Progress {
            step, total, loss, ..
        } => {
            let total = total.map_or_else(String::new, |t| format!("/{t}"));
            let loss = loss.map_or_else(String::new, |l| format!(", loss {l:.4}"));
            format!("rank {rank}: step {step}{total}{loss}")
        }
        Event::Metric { name, value, step } => {
            let step = step.map_or_else(String::new, |s| format!(" at step {s}"));
            format!("rank {rank}: {name} = {value}{step}")
        }
        other => format!("rank {rank}: {other:?}"),
    };
    Some(Event::log(LogLevel::Info, line))
}

/// Forward the script's output lines as `log` events; returns the last lines (for error messages).
async fn forward_output<R: AsyncRead + Unpin>(
    reader: R,
    level: LogLevel,
    events: Sender<Event>,
    role: RankRole,
) -> String {
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut lines = LineReader::new(reader, MAX_OUTPUT_LINE, true);
    while let Some((line, cut)) = lines.next_line().await {
        let mut text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            continue;
        }
        if cut {
            text.push_str(" [line cut]");
        }
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text.clone());
        let line = match role {
            RankRole::Main => text,
            RankRole::Other(rank) => format!("rank {rank}: {text}"),
        };
        let _ = events.send(Event::log(level, line)).await;
    }
    Vec::from(tail).join("\n")
}
