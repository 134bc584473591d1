//! Evaluating a delivered model (docs/PROTOCOL.md §10): a task whose `trainingParams` are
//! [`EvaluationParams`] goes through the ordinary pipeline (setup counts and bills its dataset once,
//! finalize seals its output, the settle lane settles it) with three differences, hooked in here:
//!
//! - **create** ([`check_request`]): request v2 only (its signature binds the parameters); the
//!   evaluated task is the customer's own, of the same model, delivered, its sealed file still in
//!   the store, not an evaluation itself; the model offers evaluation; the re-wrapped model key
//!   opens with this worker's dataset key for this customer and task.
//! - **setup** ([`check_model_key`]): the key decrypts the whole sealed deliverable (its tag
//!   signature by the TEE signer that sealed it, every chunk authenticated), before anything is
//!   charged; a key that does not fails the task with the reason.
//! - **execute** ([`run`]): the deliverable is opened into the task directory (plaintext only there
//!   and in this process, removed after the run), [`is_finetune`](sealtune_protocol::evaluation::is_finetune)
//!   is decided from it *before* the script runs (the script's uid owns the directory during the
//!   run), the model's measured `evaluation_script` runs in the sandbox with
//!   `{"evaluate":{"tuned_model_path":…}}` as its config, and the signed [`EvaluationReport`]
//!   becomes the task's only output ([`REPORT_FILE`]): finalize seals it for the customer like a
//!   model, so its key (and the numbers) are released only by the settlement, as for a model. The
//!   script's log and metric lines stay out of the task log for the same reason.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use sealtune_protocol::deliverable::{self, ChunkLen, DeliverableKey};
use sealtune_protocol::evaluation::{
    EVALUATION_VERSION, EvaluationParams, EvaluationReport, REPORT_FILE, SignedEvaluation,
    is_finetune, open_model_key,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::execute::{enter_trained, prepare_inputs, run_child};
use super::report::Observed;
use super::{StepError, model_dir, model_of};
use crate::app::Worker;
use crate::exec::sandbox::uid::remove_any;
use crate::exec::{self, ExecSpec};
use crate::models::{DataType, ModelConfig};
use crate::store::{Task, TaskState};

/// The directory the evaluated model is opened into, inside the task directory.
pub const EVALUATED_DIR: &str = "evaluated";

/// Why an evaluation request is refused at create.
#[derive(Debug)]
pub enum Refused {
    /// The evaluated task is not the customer's (or does not exist): answered like a missing task.
    NotFound(String),
    /// Anything else the customer can fix.
    Bad(String),
}

/// The create-time checks of an evaluation request (module docs). `Ok` for a task that is not an
/// evaluation.
pub async fn check_request(
    worker: &Worker,
    user: Address,
    params: &crate::store::TrainingParams,
    model: &ModelConfig,
    request_version: Option<u32>,
) -> Result<(), Refused> {
    let Some(eval) = params.evaluation() else {
        return Ok(());
    };
    if request_version != Some(2) {
        return Err(Refused::Bad(
            "an evaluation must be sent as request v2 (requestVersion 2: its signature binds the evaluation parameters)".into(),
        ));
    }
    if model.evaluation_script.is_none() {
        return Err(Refused::Bad(format!(
            "this provider does not evaluate models of `{}` (no evaluation_script)",
            model.name
        )));
    }
    let evaluated = evaluated_task(worker, user, eval)
        .await
        .map_err(|e| match e {
            StepError::Fail(m) if m.contains("not found") => Refused::NotFound(m),
            StepError::Fail(m) | StepError::Retry(m) => Refused::Bad(m),
        })?;
    if !evaluated.pre_trained_model_hash.names(model) {
        return Err(Refused::Bad(format!(
            "task {} was trained on {}, not on {}: send its model as preTrainedModelHash",
            evaluated.id, evaluated.pre_trained_model_hash, model.name
        )));
    }
    model_key(worker, user, eval).map_err(|e| match e {
        StepError::Fail(m) | StepError::Retry(m) => Refused::Bad(m),
    })?;
    Ok(())
}

/// The evaluated task: the customer's, delivered (or settled), with its sealed file in the store,
/// not an evaluation. Any failure is a `Fail` naming why.
async fn evaluated_task(
    worker: &Worker,
    user: Address,
    eval: &EvaluationParams,
) -> Result<Task, StepError> {
    let id = &eval.evaluate;
    let task = match worker.store.get(id).await? {
        Some(t) if t.user_address == user => t,
        // Another customer's task looks exactly like a missing one.
        _ => return Err(StepError::fail(format!("task {id} not found for {user}"))),
    };
    if task.training_params.evaluation().is_some() {
        return Err(StepError::fail(format!(
            "task {id} is an evaluation, not a model"
        )));
    }
    let delivered = [
        TaskState::Delivered,
        TaskState::UserAcknowledged,
        TaskState::Finished,
    ];
    if !delivered.contains(&task.progress) {
        return Err(StepError::fail(format!(
            "task {id} has no delivered model (state {})",
            task.progress
        )));
    }
    match task.model_root_hash {
        Some(root) if worker.files.path_of(&root).is_some() => Ok(task),
        _ => Err(StepError::fail(format!(
            "the sealed model of task {id} is no longer kept by this provider"
        ))),
    }
}

/// The model key of the request, opened with the dataset key.
fn model_key(
    worker: &Worker,
    user: Address,
    eval: &EvaluationParams,
) -> Result<DeliverableKey, StepError> {
    let sealed = eval.model_key_bytes().map_err(StepError::Fail)?;
    open_model_key(worker.attest.dataset_key(), &sealed, user, &eval.evaluate)
        .map_err(|e| StepError::fail(e.to_string()))
}

/// The evaluated task, its sealed file, the model key and the TEE signer that sealed it.
async fn inputs(
    worker: &Worker,
    task: &Task,
    eval: &EvaluationParams,
) -> Result<(Task, PathBuf, DeliverableKey, Address), StepError> {
    let evaluated = evaluated_task(worker, task.user_address, eval).await?;
    let key = model_key(worker, task.user_address, eval)?;
    let sealed = evaluated
        .model_root_hash
        .and_then(|r| worker.files.path_of(&r))
        .ok_or_else(|| StepError::fail("the evaluated model's sealed file is gone"))?;
    let signer = evaluated
        .tee_signer
        .ok_or_else(|| StepError::fail("the evaluated model was never signed"))?;
    Ok((evaluated, sealed, key, signer))
}

/// Setup's check: the model key decrypts the whole evaluated deliverable (nothing is written).
pub(super) async fn check_model_key(
    worker: &Worker,
    task: &Task,
    eval: &EvaluationParams,
) -> Result<(), StepError> {
    let (evaluated, sealed, key, signer) = inputs(worker, task, eval).await?;
    tokio::task::spawn_blocking(move || -> Result<(), deliverable::OpenError> {
        let mut src = std::fs::File::open(&sealed)?;
        deliverable::open(&mut src, &mut std::io::sink(), &key, signer, ChunkLen::WIRE)?;
        Ok(())
    })
    .await
    .map_err(StepError::retry)?
    .map_err(|e| {
        StepError::fail(format!(
            "the model key does not open the deliverable of task {}: {e}",
            evaluated.id
        ))
    })?;
    worker
        .task_log(
            &task.id,
            format!(
                "the model key opens the deliverable of task {}",
                evaluated.id
            ),
        )
        .await;
    Ok(())
}

/// Execute for an evaluation (the attempt is committed): open the model, decide `is_finetune`, run
/// the evaluation script, write the signed report as the only output, enter `Trained`.
pub(super) async fn run(
    worker: &Arc<Worker>,
    task: &Task,
    eval: &EvaluationParams,
    shutdown: &CancellationToken,
) -> Result<(), StepError> {
    let model = model_of(worker, task)?;
    let script = model.evaluation_script.clone().ok_or_else(|| {
        StepError::fail(format!("model `{}` has no evaluation_script", model.name))
    })?;
    let dir = worker.task_dir(&task.id);
    let model_path = model_dir(worker, model).await?;
    let inputs_ = prepare_inputs(worker, task, &dir).await?;
    let tuned = dir.join(EVALUATED_DIR);
    let opened = open_model(worker, task, eval, &dir, &tuned).await;
    let (evaluated, finetune) = match opened {
        Ok(o) => o,
        Err(e) => {
            discard(&dir, &tuned, &inputs_.data_path);
            return Err(e);
        }
    };
    // The executor takes an empty output with no seal for a failed training: an evaluation writes
    // no model, so the worker marks its output (replaced by the report after the run).
    let ready = write_config(&inputs_.config_path, &tuned).and_then(|()| {
        std::fs::write(inputs_.output_dir.join("evaluating"), b"").map_err(StepError::retry)
    });
    if let Err(e) = ready {
        discard(&dir, &tuned, &inputs_.data_path);
        return Err(e);
    }
    let spec = ExecSpec {
        script: script.clone(),
        dataset: inputs_.dataset,
        data_type: match model.data_type {
            DataType::Text => exec::DataType::Text,
            DataType::Image => exec::DataType::Image,
        },
        data_path: inputs_.data_path.clone(),
        model_path,
        config_path: inputs_.config_path,
        output_dir: inputs_.output_dir.clone(),
        seal: None,
        venv: worker.config.python_venv.clone(),
        dataset_type: task.dataset_type.clone(),
        checkpoint: None,
    };
    worker
        .task_log(
            &task.id,
            format!(
                "evaluating the model of task {} with {}",
                evaluated.id,
                script.display()
            ),
        )
        .await;
    let (outcome, observed) = run_child(worker, task, &dir, &spec, (1, 0), shutdown).await;
    discard(&dir, &tuned, &inputs_.data_path);
    if let Some(stopped) = worker
        .store
        .get(&task.id)
        .await?
        .filter(|t| t.cancelled.is_some())
    {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        return super::cancel::settle_cancelled(worker, &stopped).await;
    }
    match outcome {
        Ok(_) => {
            let report = build(worker, task, &evaluated, finetune, &observed).await?;
            write_report(worker, &report, &inputs_.output_dir)?;
            worker
                .task_log(
                    &task.id,
                    "evaluation report signed; it is sealed for you and released by the settlement",
                )
                .await;
            enter_trained(worker, task).await
        }
        Err(exec::ExecError::Cancelled) if shutdown.is_cancelled() => {
            if worker.store.requeue(&task.id, worker.clock.now()).await? {
                worker.metrics.state(TaskState::SetUp);
            }
            Ok(())
        }
        Err(e) => Err(StepError::Fail(format!("evaluation failed: {e}"))),
    }
}

/// Opens the evaluated deliverable into `tuned` (the zip removed once unpacked) and decides
/// `is_finetune` from it and the base model's `config.json`.
async fn open_model(
    worker: &Worker,
    task: &Task,
    eval: &EvaluationParams,
    dir: &Path,
    tuned: &Path,
) -> Result<(Task, bool), StepError> {
    let (evaluated, sealed, key, signer) = inputs(worker, task, eval).await?;
    let model_path = model_dir(worker, model_of(worker, task)?).await?;
    let (zip, tuned2) = (dir.join("evaluated.zip"), tuned.to_owned());
    let finetune = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        remove_any(&tuned2).map_err(|e| e.to_string())?;
        deliverable::open_file(&sealed, &zip, &key, signer)
            .map_err(|e| format!("the model key does not open the deliverable: {e}"))?;
        let unzipped = deliverable::unzip_safely(&zip, &tuned2, &Default::default());
        let _ = std::fs::remove_file(&zip);
        unzipped.map_err(|e| format!("the delivered model is not a safe zip: {e}"))?;
        let root = tuned2.join(deliverable::ZIP_ROOT);
        let root = if root.is_dir() { root } else { tuned2.clone() };
        Ok(is_finetune(
            &read_json(&model_path.join("config.json")).unwrap_or(Value::Null),
            read_json(&root.join("config.json")).as_ref(),
            read_json(&root.join("adapter_config.json")).as_ref(),
        ))
    })
    .await
    .map_err(StepError::retry)?
    .map_err(StepError::Fail)?;
    Ok((evaluated, finetune))
}

/// A small JSON file, if it is one.
fn read_json(path: &Path) -> Option<Value> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The script's config: where the tuned model is (replacing the request's parameters, which hold
/// the wrapped key).
fn write_config(config_path: &Path, tuned: &Path) -> Result<(), StepError> {
    let root = tuned.join(deliverable::ZIP_ROOT);
    let root = if root.is_dir() {
        root
    } else {
        tuned.to_owned()
    };
    let text = serde_json::json!({ "evaluate": { "tuned_model_path": root } }).to_string();
    remove_any(config_path).map_err(StepError::retry)?;
    std::fs::write(config_path, text).map_err(StepError::retry)
}

/// Removes the opened model and the plaintext dataset (after the run, or a failed opening).
fn discard(dir: &Path, tuned: &Path, data_path: &Path) {
    let _ = remove_any(tuned);
    let _ = remove_any(&dir.join("evaluated.zip"));
    crate::confidential::discard_plaintext(dir, Some(data_path));
}

/// The report of the evaluation `task` of `evaluated`.
async fn build(
    worker: &Worker,
    task: &Task,
    evaluated: &Task,
    is_finetune: bool,
    observed: &Observed,
) -> Result<EvaluationReport, StepError> {
    let model = model_of(worker, task)?;
    let script_sha256 = worker
        .measured
        .document
        .models
        .iter()
        .find(|m| m.hash == model.hash)
        .and_then(|m| m.evaluation_script)
        .map(|d| d.sha256)
        .unwrap_or_default();
    let root = match worker
        .chain
        .deliverable(task.user_address, &evaluated.id)
        .await
    {
        Ok(Some(d)) => B256::try_from(d.modelRootHash.as_ref()).unwrap_or_default(),
        Ok(None) => evaluated.model_root_hash.unwrap_or_default(),
        Err(e) => {
            return Err(StepError::retry(format!(
                "reading the evaluated deliverable: {e}"
            )));
        }
    };
    let metrics: BTreeMap<String, f64> = observed.metrics.clone();
    Ok(EvaluationReport {
        version: EVALUATION_VERSION,
        task_id: task.id.clone(),
        evaluated_task_id: evaluated.id.clone(),
        user: task.user_address,
        provider: worker.chain.address,
        tee_signer: worker.attest.signer(),
        serving_contract: worker.chain.serving_address(),
        chain_id: worker.chain.chain_id,
        base_model: model.name.clone(),
        base_model_hash: model.hash,
        evaluated_root_hash: root,
        dataset_hash: task.dataset_hash.hash(),
        script_sha256,
        config_hash: worker.measured.hash,
        tokens_billed: task.token_count.unwrap_or(0),
        fee: task.task_fee.unwrap_or(task.fee).to_string(),
        started_at: observed.started_at,
        wall_time_ms: observed.wall_time_ms,
        is_finetune,
        metrics,
    })
}

/// Signs `report` and writes it as the only file of the (emptied) output directory.
fn write_report(
    worker: &Worker,
    report: &EvaluationReport,
    output_dir: &Path,
) -> Result<(), StepError> {
    let domain =
        sealtune_protocol::eip712::domain(worker.chain.chain_id, worker.chain.serving_address());
    let signed = SignedEvaluation::sign(report, worker.attest.signing_key(), &domain);
    remove_any(output_dir).map_err(StepError::retry)?;
    std::fs::create_dir_all(output_dir).map_err(StepError::retry)?;
    let body = serde_json::to_vec_pretty(&signed).map_err(StepError::retry)?;
    std::fs::write(output_dir.join(REPORT_FILE), body).map_err(StepError::retry)
}
