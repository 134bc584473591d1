//! Execute (`SetUp` → `Training` → `Trained`): commits `Training` (counting the attempt), commits
//! the model key wrapped to the customer, then runs the training script in the executor child,
//! which seals the output with that key. A task found in `Training` at start was interrupted by a
//! worker restart: it is trained again from the start, up to `limits.training_restarts` times.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Bytes;
use sealtune_protocol::deliverable::{DeliverableKey, OsRng};
use sealtune_protocol::events::Event;
use tokio_util::sync::CancellationToken;

use super::{StepError, enter, model_dir, model_of, sealed_path};
use crate::app::Worker;
use crate::exec::{self, ExecLimits, ExecSpec, SealSpec};
use crate::models::DataType;
use crate::store::{Task, TaskState};

/// Execute: commits `Training` (counting the attempt), commits the wrapped model key, runs the child.
pub(super) async fn execute(worker: &Arc<Worker>, task: &Task) -> Result<(), StepError> {
    let Some(attempts) = start_attempt(worker, task).await? else {
        return Ok(());
    };
    let model = model_of(worker, task)?;
    let spec_dir = worker.task_dir(&task.id);
    let model_path = model_dir(worker, model).await?;
    let inputs = prepare_inputs(worker, task, &spec_dir).await?;

    // The model key: wrapped to the customer and committed before the child sees it.
    let key = DeliverableKey::generate(&mut OsRng);
    let secret = wrap_for_customer(task, &key)?;
    worker
        .store
        .set_model_key(&task.id, &secret, worker.clock.now())
        .await?;

    let spec = ExecSpec {
        script: model.training_script.clone(),
        dataset: inputs.dataset,
        data_type: match model.data_type {
            DataType::Text => exec::DataType::Text,
            DataType::Image => exec::DataType::Image,
        },
        data_path: inputs.data_path,
        model_path,
        config_path: inputs.config_path,
        output_dir: inputs.output_dir,
        seal: Some(SealSpec {
            key_hex: hex::encode(key.as_bytes()),
            sealed_path: sealed_path(&spec_dir),
        }),
    };
    worker
        .task_log(
            &task.id,
            format!(
                "training (attempt {attempts}) with {}",
                model.training_script.display()
            ),
        )
        .await;
    match run_child(worker, task, &spec_dir, &spec).await {
        Ok(()) => {
            enter(worker, task, &[TaskState::Training], TaskState::Trained).await?;
            Ok(())
        }
        Err(e) => Err(StepError::Fail(format!("training failed: {e}"))),
    }
}

/// Commits the attempt: `SetUp` → `Training`, or one more attempt of a task found in `Training`
/// (failed once the restarts are used up). Returns the attempt number, or `None` when the task
/// left `SetUp` meanwhile (cancelled).
async fn start_attempt(worker: &Worker, task: &Task) -> Result<Option<i64>, StepError> {
    if task.progress != TaskState::Training {
        if !enter(worker, task, &[TaskState::SetUp], TaskState::Training).await? {
            return Ok(None);
        }
        return Ok(Some(worker.store.bump_attempts(&task.id).await?));
    }
    let n = worker.store.bump_attempts(&task.id).await?;
    if n > i64::from(worker.config.limits.training_restarts) + 1 {
        return Err(StepError::fail(format!(
            "training was interrupted {} times by worker restarts; giving up (the customer is not charged)",
            n - 1
        )));
    }
    worker
        .task_log(
            &task.id,
            "the worker restarted during training: training again from the start",
        )
        .await;
    Ok(Some(n))
}

/// What the child reads and writes, laid out afresh in the task directory.
struct Inputs {
    dataset: PathBuf,
    data_path: PathBuf,
    config_path: PathBuf,
    output_dir: PathBuf,
}

/// Clears what an earlier attempt left (output, unpacked data, sealed file), writes the training
/// parameters and fetches the dataset. An earlier attempt's script owned the directory: it is taken
/// back first, and every file is removed (never followed) before it is written.
async fn prepare_inputs(
    worker: &Worker,
    task: &Task,
    dir: &std::path::Path,
) -> Result<Inputs, StepError> {
    use crate::exec::sandbox::uid::{remove_any, take_back};
    let output_dir = dir.join("output");
    let data_path = dir.join("data");
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(StepError::retry)?;
    take_back(dir).map_err(StepError::retry)?;
    let config_path = dir.join("training_params.json");
    for p in [&output_dir, &data_path, &sealed_path(dir), &config_path] {
        remove_any(p).map_err(StepError::retry)?;
    }
    tokio::fs::create_dir_all(&output_dir)
        .await
        .map_err(StepError::retry)?;
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&config_path)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, task.training_params.as_str().as_bytes())
        })
        .map_err(StepError::retry)?;
    let dataset_hash = task.dataset_hash.hash();
    let dataset = worker
        .files
        .fetch(&dataset_hash, dir)
        .await
        .map_err(|e| StepError::fail(format!("dataset {dataset_hash}: {e}")))?;
    Ok(Inputs {
        dataset,
        data_path,
        config_path,
        output_dir,
    })
}

/// Runs the executor child for `spec`, with the task's events written to its log, the provider
/// marked occupied on chain meanwhile, and its cancel token published for a cancel request.
async fn run_child(
    worker: &Arc<Worker>,
    task: &Task,
    dir: &std::path::Path,
    spec: &ExecSpec,
) -> Result<(), exec::ExecError> {
    let limits = ExecLimits {
        timeout: worker.config.limits.training_timeout.0,
        memory_limit_bytes: exec::sandbox::memory_limit(&worker.config.limits),
    };
    let jail = worker.sandbox.jail().map_err(exec::ExecError::Sandbox)?;
    worker
        .task_log(
            &task.id,
            match jail.uid() {
                Some(uid) => format!("training in the sandbox as uid {uid}"),
                None => "training in the sandbox without a task uid (see the worker's start log)"
                    .to_owned(),
            },
        )
        .await;
    let cancel = CancellationToken::new();
    *worker.running.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((task.id.clone(), cancel.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(256);
    let log_worker = worker.clone();
    let log_id = task.id.clone();
    let logger = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if matches!(event, Event::Progress { .. }) {
                log_worker.metrics.training_steps.inc();
            }
            if let Some(line) = event_line(&event) {
                log_worker.task_log(&log_id, line).await;
            }
        }
    });
    if worker.crash.armed() == Some("during-training") {
        let crash = worker.crash.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            crash.hit("during-training");
        });
    }
    let _ = worker.chain.set_occupied(true).await;
    let result = exec::spawn(&worker.exe, dir, spec, &limits, &jail, tx, cancel).await;
    let _ = worker.chain.set_occupied(false).await;
    *worker.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let _ = logger.await;
    result.map(|_outcome| ())
}

/// The task-log line of a child event (none for the chunk-by-chunk seal events).
fn event_line(event: &Event) -> Option<String> {
    match event {
        Event::Started { .. } => Some("training started".into()),
        Event::Progress {
            step,
            total,
            loss,
            learning_rate,
            epoch,
            ..
        } => {
            let mut s = match total {
                Some(t) => format!("step {step}/{t}"),
                None => format!("step {step}"),
            };
            if let Some(e) = epoch {
                s.push_str(&format!(" epoch {e:.2}"));
            }
            if let Some(l) = loss {
                s.push_str(&format!(" loss {l:.4}"));
            }
            if let Some(lr) = learning_rate {
                s.push_str(&format!(" lr {lr:.2e}"));
            }
            Some(s)
        }
        Event::Log { message, .. } => Some(message.clone()),
        Event::Metric { name, value, step } => Some(match step {
            Some(s) => format!("{name} = {value} (step {s})"),
            None => format!("{name} = {value}"),
        }),
        Event::ChunkSealed { .. } => None,
        Event::Finished { output } => Some(format!(
            "training finished: {} files, {} bytes",
            output.files, output.bytes
        )),
        Event::Failed { reason } => Some(format!("training failed: {reason}")),
        _ => None,
    }
}

/// The model key, ECIES-wrapped to the customer's public key (what is committed and settled).
pub(super) fn wrap_for_customer(task: &Task, key: &DeliverableKey) -> Result<Bytes, StepError> {
    Ok(Bytes::from(sealtune_protocol::ecies::wrap_key(
        &mut OsRng,
        &task.user_public_key,
        key,
    )))
}
