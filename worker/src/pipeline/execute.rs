//! Execute (`SetUp` → `Training` → `Trained`): commits `Training` (counting the attempt), commits
//! the model key wrapped to the customer, then runs the training script in the executor child,
//! which seals the output with that key under a temporary name; the file's tag digest is committed
//! and the file renamed into place before `Trained` (the rules of [`super::sealing`]).
//!
//! A task found in `Training` at start was interrupted by a worker restart: its committed sealed
//! file is used when one survived, else it is trained again from the start, up to
//! `limits.training_restarts` times. A graceful stop (`SIGTERM`) during training kills the child
//! and puts the task back in `SetUp`, not counting the stopped attempt: the operator stopped the
//! worker, the task did nothing wrong, and it trains again at the next start.
//!
//! A model with `checkpoint_steps` checkpoints sealed while it trains, and a task trained again
//! after a restart (or a graceful stop) resumes from its last sealed checkpoint
//! ([`super::checkpoint`]).
//!
//! While the child runs, the customer's account is watched and a cancel can stop it: a task stopped
//! during training is settled by [`super::cancel`], never delivered.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Bytes;
use sealtune_protocol::deliverable::{DeliverableKey, OsRng};
use sealtune_protocol::events::Event;
use tokio_util::sync::CancellationToken;

use super::report::Observed;
use super::{StepError, enter, model_dir, model_of, sealing};
use crate::app::Worker;
use crate::exec::{self, ChildSealed, ExecLimits, ExecSpec, SealSpec};
use crate::models::DataType;
use crate::store::{Task, TaskState};

/// Execute: commits `Training` (counting the attempt), commits the wrapped model key, runs the
/// child, commits what it sealed. `shutdown` stops the child and requeues the task.
pub(super) async fn execute(
    worker: &Arc<Worker>,
    task: &Task,
    shutdown: &CancellationToken,
) -> Result<(), StepError> {
    kill_leftover(worker, task).await?;
    if task.cancelled.is_some() {
        // Stopped during training (a cancel, or the funds retrieved) before a restart: settled,
        // never trained again.
        return super::cancel::settle_cancelled(worker, task).await;
    }
    if task.progress == TaskState::Training && sealed_before_restart(worker, task).await? {
        return Ok(());
    }
    let Some(attempts) = start_attempt(worker, task).await? else {
        return Ok(());
    };
    if let Some(eval) = task.training_params.evaluation() {
        return super::evaluate::run(worker, task, eval, shutdown).await;
    }
    let model = model_of(worker, task)?;
    let spec_dir = worker.task_dir(&task.id);
    let model_path = model_dir(worker, model).await?;
    let inputs = prepare_inputs(worker, task, &spec_dir).await?;

    // The model key: wrapped to the customer and committed before the child sees it.
    let key = DeliverableKey::generate(&mut OsRng);
    let secret = wrap_for_customer(task, &key)?;
    worker
        .store
        .set_model_key(&task.id, &secret, None, worker.clock.now())
        .await?;
    worker.crash.hit("after-model-key");

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
            sealed_path: sealing::part_path(&spec_dir),
        }),
        venv: worker.config.python_venv.clone(),
        dataset_type: task.dataset_type.clone(),
        checkpoint: None, // set once the run's uid is known (`run_child`)
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
    let (outcome, observed) = run_child(
        worker,
        task,
        &spec_dir,
        &spec,
        (model.ranks, model.checkpoint_steps),
        shutdown,
    )
    .await;
    crate::confidential::discard_plaintext(&spec_dir, Some(&spec.data_path));
    if let Some(stopped) = worker
        .store
        .get(&task.id)
        .await?
        .filter(|t| t.cancelled.is_some())
    {
        // Stopped during training: nothing is delivered, whatever the child did. A graceful stop
        // of the worker leaves the settlement to the next start (the task stays in `Training`).
        if shutdown.is_cancelled() {
            return Ok(());
        }
        super::checkpoint::discard(worker, &task.id).await;
        return super::cancel::settle_cancelled(worker, &stopped).await;
    }
    match outcome {
        Ok(outcome) => {
            super::report::record_observed(worker, task, &observed).await?;
            if let Some(sealed) = &outcome.sealed {
                commit_child_seal(worker, task, &spec_dir, &secret, sealed).await?;
            }
            enter_trained(worker, task).await?;
            super::checkpoint::discard(worker, &task.id).await;
            Ok(())
        }
        Err(exec::ExecError::Cancelled) if shutdown.is_cancelled() => requeue(worker, task).await,
        Err(e) => Err(StepError::Fail(format!("training failed: {e}"))),
    }
}

/// Kills what an earlier run of the task left running (an executor that outlived its worker, or
/// what its script started: `exec::kill_leftover`) before anything of the task runs again.
async fn kill_leftover(worker: &Worker, task: &Task) -> Result<(), StepError> {
    let dir = worker.task_dir(&task.id);
    let killed = tokio::task::spawn_blocking(move || exec::kill_leftover(&dir))
        .await
        .map_err(StepError::retry)?;
    if let Some((pid, n)) = killed {
        worker
            .task_log(
                &task.id,
                format!(
                    "killed {n} process(es) of the earlier training run (executor pid {pid}) left running when the worker died"
                ),
            )
            .await;
    }
    Ok(())
}

/// A task found in `Training` whose child sealed and whose seal was committed before the worker
/// died: its file is put in place and the task moves on to `Trained` without training again.
async fn sealed_before_restart(worker: &Worker, task: &Task) -> Result<bool, StepError> {
    if task.seal_tag_digest.is_none()
        || !sealing::recover(&worker.task_dir(&task.id), task.seal_tag_digest).await?
    {
        return Ok(false);
    }
    worker
        .task_log(
            &task.id,
            "the worker restarted after the model was sealed and committed: that sealed model is used",
        )
        .await;
    enter_trained(worker, task).await?;
    Ok(true)
}

/// `Training` → `Trained`, unless the task was stopped during training meanwhile (a cancel that
/// came after the child finished): then nothing is delivered and the cancel is settled instead.
pub(super) async fn enter_trained(worker: &Worker, task: &Task) -> Result<(), StepError> {
    if worker.store.trained(&task.id, worker.clock.now()).await? {
        worker.metrics.state(TaskState::Trained);
        return Ok(());
    }
    match worker.store.get(&task.id).await? {
        Some(t) if t.progress == TaskState::Training && t.cancelled.is_some() => {
            super::cancel::settle_cancelled(worker, &t).await
        }
        _ => Ok(()),
    }
}

/// The file the child sealed under the temporary name: its own tags must give the digest the child
/// reported chunk by chunk (else it is discarded and the task fails); the digest is committed with
/// the key, then the file is renamed into place.
async fn commit_child_seal(
    worker: &Worker,
    task: &Task,
    dir: &std::path::Path,
    secret: &Bytes,
    sealed: &ChildSealed,
) -> Result<(), StepError> {
    worker.crash.hit("after-seal-written");
    if sealing::file_digest(&sealing::part_path(dir)).await != Some(sealed.tag_digest) {
        sealing::discard(dir).await?;
        return Err(StepError::fail(
            "training failed: the sealed model file does not match the chunks the training process reported",
        ));
    }
    worker
        .store
        .set_model_key(
            &task.id,
            secret,
            Some(sealed.tag_digest),
            worker.clock.now(),
        )
        .await?;
    worker.crash.hit("after-seal-committed");
    sealing::promote(dir).await?;
    worker.crash.hit("after-seal-renamed");
    Ok(())
}

/// The worker is stopping: the task goes back to `SetUp`, the stopped attempt not counted.
async fn requeue(worker: &Worker, task: &Task) -> Result<(), StepError> {
    if worker.store.requeue(&task.id, worker.clock.now()).await? {
        worker.metrics.state(TaskState::SetUp);
        worker
            .task_log(
                &task.id,
                "the worker is stopping: training stopped; the task is queued again and trains again when the worker is back (from its last sealed checkpoint, if any)",
            )
            .await;
    }
    Ok(())
}

/// Commits the attempt: `SetUp` → `Training`, or one more attempt of a task found in `Training`
/// (failed once the restarts are used up). Returns the attempt number, or `None` when the task
/// left `SetUp` meanwhile (cancelled).
async fn start_attempt(worker: &Worker, task: &Task) -> Result<Option<i64>, StepError> {
    let resumed = task.progress == TaskState::Training;
    if !resumed && !enter(worker, task, &[TaskState::SetUp], TaskState::Training).await? {
        return Ok(None);
    }
    let n = worker.store.bump_attempts(&task.id).await?;
    // Every attempt counts against the limit: a task sent back to training by finalize (its sealed
    // file lost with the training output) is an interrupted training too.
    if n > i64::from(worker.config.limits.training_restarts) + 1 {
        return Err(StepError::fail(format!(
            "training was interrupted {} times by worker restarts; giving up (the customer is not charged)",
            n - 1
        )));
    }
    if resumed {
        worker
            .task_log(
                &task.id,
                "the worker restarted during training: training again (from the last sealed checkpoint, if any, else from the start)",
            )
            .await;
    }
    Ok(Some(n))
}

/// What the child reads and writes, laid out afresh in the task directory.
pub(super) struct Inputs {
    pub(super) dataset: PathBuf,
    pub(super) data_path: PathBuf,
    pub(super) config_path: PathBuf,
    pub(super) output_dir: PathBuf,
}

/// Clears what an earlier attempt left (output, unpacked data, sealed files), writes the training
/// parameters and fetches the dataset. An earlier attempt's script owned the directory: it is taken
/// back first, and every file is removed (never followed) before it is written.
pub(super) async fn prepare_inputs(
    worker: &Arc<Worker>,
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
    for p in [
        &output_dir,
        &data_path,
        &sealing::sealed_path(dir),
        &sealing::part_path(dir),
        &config_path,
    ] {
        remove_any(p).map_err(StepError::retry)?;
    }
    sealing::discard(dir).await?;
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
    let dataset = super::setup::open_dataset(worker, task, dataset, dir).await?;
    Ok(Inputs {
        dataset,
        data_path,
        config_path,
        output_dir,
    })
}

/// Runs the executor child for `spec`, with the task's events written to its log (and observed for
/// the report), the provider marked occupied on chain meanwhile, and its cancel token (a child of
/// `shutdown`) published.
pub(super) async fn run_child(
    worker: &Arc<Worker>,
    task: &Task,
    dir: &std::path::Path,
    spec: &ExecSpec,
    (ranks, checkpoint_steps): (u32, u32),
    shutdown: &CancellationToken,
) -> (Result<exec::ExecOutcome, exec::ExecError>, Observed) {
    let limits = ExecLimits {
        timeout: worker.config.limits.training_timeout.0,
        memory_limit_bytes: exec::sandbox::memory_limit(&worker.config.limits),
    };
    let jail = match worker.sandbox.jail() {
        Ok(jail) => jail,
        Err(e) => return (Err(exec::ExecError::Sandbox(e)), Observed::default()),
    };
    worker
        .task_log(
            &task.id,
            match jail.uid() {
                Some(uid) if ranks > 1 => {
                    format!("training as {ranks} ranks in the sandbox as uid {uid}")
                }
                Some(uid) => format!("training in the sandbox as uid {uid}"),
                None => "training in the sandbox without a task uid (see the worker's start log)"
                    .to_owned(),
            },
        )
        .await;
    let spec = &ExecSpec {
        checkpoint: super::checkpoint::prepare(worker, task, checkpoint_steps, jail.uid()).await,
        ..spec.clone()
    };
    let checkpointing = spec.checkpoint.is_some();
    // Cancelled by the worker's shutdown (the child is killed, the task requeued).
    let cancel = shutdown.child_token();
    *worker.running.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((task.id.clone(), cancel.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(256);
    let log_worker = worker.clone();
    let log_id = task.id.clone();
    // An evaluation's numbers are released by its settlement (pipeline::evaluate): not logged.
    let quiet = task.training_params.evaluation().is_some();
    let started = std::time::Instant::now();
    let mut observed = Observed::starting(worker.clock.now());
    let logger = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            observed.see(&event);
            if let (Event::Checkpoint { step }, true) = (&event, checkpointing) {
                let loss = observed.curve.last().map(|p| p.loss);
                super::checkpoint::on_saved(&log_worker, &log_id, *step, loss).await;
            }
            if matches!(event, Event::Progress { .. }) {
                log_worker.metrics.training_steps.inc();
            }
            if quiet && matches!(event, Event::Log { .. } | Event::Metric { .. }) {
                continue;
            }
            if let Some(line) = event_line(&event) {
                log_worker.task_log(&log_id, line).await;
            }
        }
        observed
    });
    if worker.crash.armed() == Some("during-training") {
        let crash = worker.crash.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            crash.hit("during-training");
        });
    }
    // A cancel committed before the token was published stops the child at once.
    if let Ok(Some(t)) = worker.store.get(&task.id).await
        && t.cancelled.is_some()
    {
        cancel.cancel();
    }
    let watcher = tokio::spawn(super::cancel::watch_funds(worker.clone(), task.clone()));
    let _ = worker.chain.set_occupied(true).await;
    let launch = exec::Launch {
        worker_exe: &worker.exe,
        task_dir: dir,
        spec,
        limits: &limits,
        jail: &jail,
    };
    let result = exec::spawn_ranks(launch, ranks, tx, cancel).await;
    watcher.abort();
    let mut observed = logger.await.unwrap_or_default();
    super::checkpoint::clear_scratch(worker, &task.id).await;
    let _ = worker.chain.set_occupied(false).await;
    *worker.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    observed.wall_time_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    (result, observed)
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
