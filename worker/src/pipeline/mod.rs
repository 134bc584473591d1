//! The task pipeline: [`setup`] → [`execute`] → [`finalize`] (one task at a time, the training
//! lane below), then [`settle`] and [`retention`] in their own loops.
//!
//! Crash safety: every transition is committed before its side effect, and every step is written
//! so that running it again after a crash is safe:
//!
//! | found at start | what happens |
//! |---|---|
//! | `Init`, `SettingUp` | setup runs (again): it only reads and checks |
//! | `SetUp` | training starts |
//! | `SetUp` after a graceful stop | the stop killed the child and requeued the task (the attempt not counted): trained again |
//! | `Training`, stopped (`cancelled` set) | settled by the cancel rule ([`cancel`]), never trained again |
//! | `Training` | the child died with the worker: its sealed file is used if its seal was committed, else trained again up to `limits.training_restarts` times, then failed with the reason |
//! | `Trained` | finalize: a sealed file that matches the committed key is used, else the output directory is sealed, else (output gone) back to `SetUp` |
//! | `Delivering` | the chain is read first: a deliverable already announced is never announced or trained again |
//! | `Delivered`, `UserAcknowledged` | the settle lane reads the chain first: a settled deliverable is never settled again |
//!
//! The model key is generated when training starts and committed only ECIES-wrapped to the
//! customer (safe at rest); the TEE key never leaves this process (the child gets the model key only).
//! How a sealed file reaches the disk so that a crash never leaves one the customer cannot decrypt:
//! [`sealing`].
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealtune_protocol::deliverable;
use tokio_util::sync::CancellationToken;

use crate::app::Worker;
use crate::models::{ModelConfig, Weights};
use crate::store::{StatePredicate, StoreError, Task, TaskState};

pub mod cancel;
pub mod checkpoint;
pub mod evaluate;
pub mod execute;
pub mod finalize;
pub mod publish;
pub mod report;
pub mod retention;
pub mod sealing;
pub mod settle;
pub mod setup;

pub use retention::{retention_period, run_retention_lane};
pub use sealing::sealed_path;
pub use settle::run_settle_lane;

/// A step failed: either the task fails with a reason the customer sees, or the worker retries later.
#[derive(Debug)]
pub enum StepError {
    /// The task cannot succeed: fail it with this reason.
    Fail(String),
    /// Something transient (RPC, database): retry later.
    Retry(String),
}

impl StepError {
    fn fail(msg: impl Into<String>) -> Self {
        StepError::Fail(msg.into())
    }
    fn retry(msg: impl std::fmt::Display) -> Self {
        StepError::Retry(msg.to_string())
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Retry(e.to_string())
    }
}

fn chain_err(what: &str, e: sealtune_contracts::ContractError) -> StepError {
    if crate::chain::is_permanent(&e) {
        StepError::Fail(format!("{what}: {e}"))
    } else {
        StepError::Retry(format!("{what}: {e}"))
    }
}

/// Runs the training lane forever: takes the oldest task that is queued or mid-way and drives it
/// to `Delivered` or `Failed`.
pub async fn run_training_lane(worker: Arc<Worker>, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let next = match tasks_where(&worker, TaskState::is_pending).await {
            Ok(tasks) => tasks.into_iter().next(),
            Err(e) => {
                tracing::error!("store: {e}");
                None
            }
        };
        if let Ok(n) = worker.store.pending_count().await {
            worker.metrics.pending.set(n as i64);
        }
        match next {
            Some(task) => {
                let id = task.id.clone();
                let Err(e) = drive(&worker, task, &shutdown).await else {
                    continue;
                };
                if let Some(reason) = fail_or_retry(&worker, &id, e).await {
                    worker
                        .task_log(&id, format!("temporary problem, will retry: {reason}"))
                        .await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            None => {
                tokio::select! {
                    _ = worker.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// The tasks in a state for which `pred` holds, oldest first. A row this version cannot read
/// fails that task with the reason, so that it does not block its lane at every poll.
async fn tasks_where(worker: &Worker, pred: StatePredicate) -> Result<Vec<Task>, StoreError> {
    let result = worker.store.in_states(pred).await;
    if let Err(e @ StoreError::Corrupt { task: Some(id), .. }) = &result
        && let Ok(true) = worker
            .store
            .fail(id, &e.to_string(), worker.clock.now())
            .await
    {
        worker.metrics.state(TaskState::Failed);
    }
    result
}

/// What a failed step means: `Fail` commits `Failed` with the reason (and returns `None`);
/// `Retry` returns the reason, for the caller to log before it tries again.
async fn fail_or_retry(worker: &Worker, id: &str, e: StepError) -> Option<String> {
    match e {
        StepError::Fail(reason) => {
            checkpoint::discard(worker, id).await;
            if let Ok(true) = worker.store.fail(id, &reason, worker.clock.now()).await {
                worker.metrics.state(TaskState::Failed);
            }
            None
        }
        StepError::Retry(reason) => Some(reason),
    }
}

/// Compare-and-set `task` from one of `from` to `to` (committed before the caller acts on it).
async fn enter(
    worker: &Worker,
    task: &Task,
    from: &[TaskState],
    to: TaskState,
) -> Result<bool, StepError> {
    let moved = worker
        .store
        .transition(&task.id, from, to, worker.clock.now())
        .await?;
    if moved {
        worker.metrics.state(to);
    }
    Ok(moved)
}

/// Drives one task as far as the training lane goes, or until `shutdown` (between steps; a running
/// child is stopped by it, and its task requeued).
async fn drive(
    worker: &Arc<Worker>,
    task: Task,
    shutdown: &CancellationToken,
) -> Result<(), StepError> {
    let mut task = task;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match task.progress {
            TaskState::Init | TaskState::SettingUp => {
                if !enter(
                    worker,
                    &task,
                    &[TaskState::Init, TaskState::SettingUp],
                    TaskState::SettingUp,
                )
                .await?
                {
                    return Ok(()); // cancelled meanwhile
                }
                let limit = worker.config.limits.setup_timeout.0;
                tokio::time::timeout(limit, setup::setup(worker, &task))
                    .await
                    .map_err(|_| {
                        StepError::fail(format!(
                            "setup took longer than this provider's limit of {} s (limits.setup_timeout)",
                            limit.as_secs()
                        ))
                    })??;
                if !enter(worker, &task, &[TaskState::SettingUp], TaskState::SetUp).await? {
                    return Ok(());
                }
                worker.crash.hit("after-setup");
            }
            TaskState::SetUp | TaskState::Training => {
                execute::execute(worker, &task, shutdown).await?;
                worker.crash.hit("after-training");
            }
            TaskState::Trained | TaskState::Delivering => {
                finalize::finalize(worker, &task).await?;
                return Ok(());
            }
            _ => return Ok(()),
        }
        task = match worker.store.get(&task.id).await? {
            Some(t) => t,
            None => return Ok(()),
        };
    }
}

/// The model `task` asked for, as this provider's config offers it now.
fn model_of<'a>(worker: &'a Worker, task: &Task) -> Result<&'a ModelConfig, StepError> {
    worker
        .config
        .model(&task.pre_trained_model_hash)
        .ok_or_else(|| {
            StepError::fail(format!(
                "model {} is not offered by this provider (GET /v1/model lists them)",
                task.pre_trained_model_hash
            ))
        })
}

/// The base model directory of `model`, fetching and unpacking it from storage when needed.
async fn model_dir(worker: &Worker, model: &ModelConfig) -> Result<PathBuf, StepError> {
    if let Some(dir) =
        crate::models::local_weights_dir(model).map_err(|e| StepError::fail(e.to_string()))?
    {
        return Ok(dir);
    }
    let Some(Weights::Root(root)) = &model.weights else {
        return Err(StepError::fail(format!(
            "model `{}` has no weights",
            model.name
        )));
    };
    let models = worker.config.data_dir.join("models");
    let dest = models.join(format!("{root}"));
    if dest.join("config.json").is_file() {
        return Ok(dest);
    }
    let tmp = models.join(format!(".fetch-{root}"));
    tokio::fs::create_dir_all(&tmp)
        .await
        .map_err(StepError::retry)?;
    let zip = worker
        .files
        .fetch(root, &tmp)
        .await
        .map_err(|e| StepError::fail(format!("model weights {root}: {e}")))?;
    let unpack = tmp.join("unpacked");
    let (zip2, unpack2) = (zip.clone(), unpack.clone());
    tokio::task::spawn_blocking(move || {
        deliverable::unzip_safely(&zip2, &unpack2, &Default::default())
    })
    .await
    .map_err(StepError::retry)?
    .map_err(|e| StepError::fail(format!("model weights {root} are not a safe zip: {e}")))?;
    tokio::fs::rename(&unpack, &dest)
        .await
        .map_err(StepError::retry)?;
    let _ = tokio::fs::remove_dir_all(&tmp).await;
    Ok(dest)
}
