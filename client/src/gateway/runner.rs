//! The job runner: one task per job that walks the customer flow of [`crate::flow::Client`] and
//! records each step as the job's stage (so a restarted gateway resumes where it was) and events.
//!
//! | stage | what happens | status |
//! |---|---|---|
//! | `new` | verify the provider (the configured policy, never skipped), upload the dataset, sign, create the task | `validating_files` |
//! | `creating` | in flight; a gateway that stopped here fails the job rather than risk paying twice | `validating_files` |
//! | `following` | poll the task and its log (log lines become events, `step … loss …` lines metrics) | `queued`, `running` |
//! | `delivered` | download, check against the chain, the evaluation gate, acknowledge | `running` |
//! | `acknowledged` | wait for the settlement, decrypt, extract, publish the result file | `running` → `succeeded` |
//!
//! The training file is sealed to the provider's attested dataset key where it publishes one
//! ([`dataset_source`]), and the signed training report is held to the gateway's thresholds before
//! acknowledging ([`evaluation_gate`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::Address;
use sealtune_protocol::report::{TrainingReport, metric};
use sealtune_protocol::task::TaskState;
use serde_json::json;

use super::error::{ErrorObject, client_error_object};
use super::openai;
use super::store::{FileRow, JobRow};
use super::{Gateway, new_id};
use crate::error::ClientError;
use crate::flow::{CreateTaskRequest, DatasetSource, VerifyMode};
use crate::progress::NoProgress;
use crate::report::Thresholds;

/// The stages (see the module docs).
pub mod stage {
    /// Not started.
    pub const NEW: &str = "new";
    /// Creating the provider task.
    pub const CREATING: &str = "creating";
    /// Following the provider task.
    pub const FOLLOWING: &str = "following";
    /// The deliverable is on chain.
    pub const DELIVERED: &str = "delivered";
    /// Acknowledged: waiting for the key.
    pub const ACKNOWLEDGED: &str = "acknowledged";
}

/// The statuses after which a job never changes.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// What one step asks for next.
enum Next {
    /// Run the next step now.
    Now,
    /// Poll again after the interval.
    Later,
}

/// Why a step stopped.
enum StepError {
    /// Transient (the node or the provider unreachable): retried after the interval.
    Retry(ClientError),
    /// The job fails with this error.
    Fail(ErrorObject),
}

impl From<ClientError> for StepError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { .. } | ClientError::Rpc { .. } => StepError::Retry(e),
            e if e.exit_code() == crate::error::exit::UNREACHABLE => StepError::Retry(e),
            e => StepError::Fail(client_error_object(&e)),
        }
    }
}

impl From<super::store::StoreError> for StepError {
    fn from(e: super::store::StoreError) -> Self {
        StepError::Fail(ErrorObject {
            code: "internal_error".into(),
            message: e.to_string(),
            param: None,
        })
    }
}

fn failure(code: &str, message: impl Into<String>) -> StepError {
    StepError::Fail(ErrorObject {
        code: code.into(),
        message: message.into(),
        param: None,
    })
}

/// What is sent to the provider for the training file: the file itself. `create_task` seals it to
/// the provider's attested dataset key when the provider publishes one (a sealtune worker: the
/// worker stores ciphertext, docs/PROTOCOL.md §8) and uploads it as it is otherwise (an official 0G
/// provider: plaintext at the provider's endpoint); the job's events say which ([`upload_note`]).
pub fn dataset_source(file: &FileRow) -> DatasetSource {
    DatasetSource::File(PathBuf::from(&file.path))
}

/// The event line saying how the training file reached the provider.
fn upload_note(encrypted: Option<bool>) -> &'static str {
    match encrypted {
        Some(true) => {
            "the training file was sealed to the provider's attested dataset key before upload (the provider stores ciphertext) and the task request signed as request v2"
        }
        Some(false) => {
            "the training file was uploaded to the provider's TEE as it is (plaintext at the provider's endpoint: the provider publishes no dataset key, as official 0G providers do not)"
        }
        None => "the training file was already at the provider",
    }
}

/// The gate between a checked download and the on-chain acknowledgement: the provider's signed
/// training report (docs/PROTOCOL.md §9; `None` when the provider serves none, as official 0G
/// providers do not) held to the gateway's thresholds. `Ok` names what was checked, for the job's
/// events; an `Err` fails the job and leaves the deliverable unacknowledged (nothing is paid).
pub fn evaluation_gate(
    report: Option<&TrainingReport>,
    thresholds: &Thresholds,
) -> Result<String, ErrorObject> {
    let refuse = |message: String| ErrorObject {
        code: "below_threshold".into(),
        message,
        param: None,
    };
    let Some(report) = report else {
        if thresholds.any() {
            return Err(refuse(
                "not acknowledged: the provider serves no training report to hold to the gateway's thresholds".into(),
            ));
        }
        return Ok("the provider serves no training report; acknowledged without one".into());
    };
    thresholds
        .check(report)
        .map_err(|why| refuse(format!("not acknowledged: {why}")))?;
    let metric = |name: &str| {
        report
            .metrics
            .get(name)
            .map_or_else(|| "absent".to_owned(), |v| format!("{v:.4}"))
    };
    Ok(format!(
        "the provider's training report is signed by its on-chain TEE signer and names the delivered root: eval loss {} (base {})",
        metric(metric::EVAL_LOSS),
        metric(metric::BASE_EVAL_LOSS)
    ))
}

/// Run job `id` until it ends (or the process stops: the stage is in the database).
pub async fn run(gw: Arc<Gateway>, id: String) {
    let mut last_warning = String::new();
    loop {
        let job = match gw.store.job(&id).await {
            Ok(Some(j)) => j,
            Ok(None) => return,
            Err(e) => {
                eprintln!("sealtune gateway: job {id}: {e}");
                tokio::time::sleep(gw.config.poll_interval).await;
                continue;
            }
        };
        if is_terminal(&job.status) {
            return;
        }
        match step(&gw, &job).await {
            Ok(Next::Now) => {}
            Ok(Next::Later) => tokio::time::sleep(gw.config.poll_interval).await,
            Err(StepError::Retry(e)) => {
                let msg = format!("will retry: {e}");
                if msg != last_warning {
                    gw.event(&id, "warn", &msg, None).await;
                    last_warning = msg;
                }
                tokio::time::sleep(gw.config.poll_interval).await;
            }
            Err(StepError::Fail(err)) => {
                gw.fail(&id, &err).await;
                return;
            }
        }
    }
}

async fn step(gw: &Arc<Gateway>, job: &JobRow) -> Result<Next, StepError> {
    let provider: Address = job
        .provider
        .parse()
        .map_err(|_| failure("internal_error", "the job's provider is not an address"))?;
    match (job.stage.as_str(), job.task_id.as_deref()) {
        (stage::NEW, _) => create(gw, job, provider).await,
        (stage::CREATING, None) => Err(failure(
            "interrupted",
            format!(
                "the gateway stopped while creating the provider task; it does not retry, so that nothing is paid twice: check `sealtune query-progress --provider {provider} --all`"
            ),
        )),
        (stage::FOLLOWING | stage::CREATING, Some(task)) => follow(gw, job, provider, task).await,
        (stage::DELIVERED, Some(task)) => deliver(gw, job, provider, task).await,
        (stage::ACKNOWLEDGED, Some(task)) => decrypt(gw, job, provider, task).await,
        (other, _) => Err(failure(
            "internal_error",
            format!("unknown stage {other:?}"),
        )),
    }
}

fn job_dir(gw: &Gateway, job: &JobRow) -> PathBuf {
    gw.config.state_dir.join("jobs").join(&job.id)
}

async fn create(gw: &Arc<Gateway>, job: &JobRow, provider: Address) -> Result<Next, StepError> {
    let file = gw
        .store
        .file(&job.training_file)
        .await?
        .ok_or_else(|| failure("invalid_training_file", "the training file is gone"))?;
    gw.store
        .set_stage(&job.id, "validating_files", stage::CREATING)
        .await?;
    let dataset = dataset_source(&file);
    let mut verify = gw.config.verify.clone();
    verify.now = gw.clock.now_ms() / 1000;
    verify.nonce = gw.clock.random();
    let req = CreateTaskRequest {
        provider,
        model: job.provider_model.clone(),
        dataset,
        training_params: job.training_params.clone(),
        dataset_type: None,
        max_fee: None,
        wait: true,
        verify: VerifyMode::Verify(verify),
    };
    let created = gw
        .client
        .create_task(&req, gw.clock.now_ms(), Arc::new(NoProgress))
        .await
        .map_err(|e| StepError::Fail(client_error_object(&e)))?;
    gw.store
        .set_task(&job.id, &created.task_id, stage::FOLLOWING)
        .await?;
    let dev = if created.dev_quote {
        " with the INSECURE dev attestation (allowed by the dev policy: no TEE protects the data)"
    } else {
        ""
    };
    gw.event(
        &job.id,
        "info",
        &format!("provider {provider} verified{dev}"),
        None,
    )
    .await;
    gw.event(
        &job.id,
        "info",
        &format!(
            "{}; dataset hash {}",
            upload_note(created.upload.as_ref().map(|u| u.encrypted)),
            created.dataset_hash
        ),
        None,
    )
    .await;
    gw.event(
        &job.id,
        "info",
        &format!(
            "created task {} (signed: {} form; {} task(s) ahead)",
            created.task_id, created.signature_form, created.queued_behind
        ),
        Some(json!({ "task_id": created.task_id })),
    )
    .await;
    // Cancelled while the task was being created: cancel it at the provider too.
    if let Ok(Some(now)) = gw.store.job(&job.id).await
        && now.status == "cancelled"
    {
        match gw.client.cancel_task(provider, &created.task_id).await {
            Ok(_) => {
                gw.event(&job.id, "info", "the provider task is cancelled too", None)
                    .await
            }
            Err(e) => {
                gw.event(
                    &job.id,
                    "warn",
                    &format!("cancelling the provider task: {e}"),
                    None,
                )
                .await
            }
        }
    }
    Ok(Next::Now)
}

async fn follow(
    gw: &Arc<Gateway>,
    job: &JobRow,
    provider: Address,
    task: &str,
) -> Result<Next, StepError> {
    let t = gw.client.task(provider, Some(task)).await?;
    let state = t.progress.clone().unwrap_or_default();
    let (_, log) = gw.client.log(provider, Some(task)).await?;
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = usize::try_from(job.log_lines).unwrap_or(usize::MAX);
    for line in lines.iter().skip(skip) {
        let message = openai::log_message(line);
        match openai::metrics_of(message) {
            Some(data) => {
                gw.event_kind(&job.id, "info", message, "metrics", Some(data))
                    .await
            }
            None => gw.event(&job.id, "info", message, None).await,
        }
    }
    let changed = job.last_state.as_deref() != Some(state.as_str());
    // OpenAI's trained_tokens: the dataset's tokens (the provider's count) × the epochs.
    let epochs =
        sealtune_protocol::fee::epochs_from_training_params(&job.training_params).unwrap_or(1);
    let trained_tokens = t
        .extra
        .get("tokens")
        .and_then(serde_json::Value::as_u64)
        .map(|n| n.saturating_mul(epochs));
    gw.store
        .set_progress(&job.id, lines.len() as u64, Some(&state), trained_tokens)
        .await?;
    if changed {
        gw.event(
            &job.id,
            "info",
            &format!("provider task state: {state}"),
            None,
        )
        .await;
    }
    let parsed = state.parse::<TaskState>().ok();
    match parsed {
        Some(TaskState::Failed) => {
            let why = t
                .extra
                .get("failReason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .or_else(|| lines.last().map(|l| openai::log_message(l).to_owned()))
                .unwrap_or_else(|| "no reason logged".into());
            Err(failure(
                "training_failed",
                format!("the provider's task {task} failed: {why}"),
            ))
        }
        Some(s) if s.is_delivered() => {
            gw.store
                .set_stage(&job.id, "running", stage::DELIVERED)
                .await?;
            Ok(Next::Now)
        }
        _ => {
            let status = openai::status_of(&state);
            if status != job.status {
                gw.store
                    .set_stage(&job.id, status, stage::FOLLOWING)
                    .await?;
            }
            Ok(Next::Later)
        }
    }
}

async fn deliver(
    gw: &Arc<Gateway>,
    job: &JobRow,
    provider: Address,
    task: &str,
) -> Result<Next, StepError> {
    let dir = job_dir(gw, job);
    std::fs::create_dir_all(&dir).map_err(|e| ClientError::io(&dir, e))?;
    let enc = dir.join("model.enc");
    let downloaded = gw
        .client
        .download_model(provider, task, &enc, false, gw.clock.now_ms(), &NoProgress)
        .await?;
    gw.event(
        &job.id,
        "info",
        &format!(
            "downloaded the sealed model ({} bytes): its hash is the on-chain modelRootHash and its tags are signed by the provider's TEE signer",
            downloaded.bytes
        ),
        None,
    )
    .await;
    let report = match gw.client.report(provider, task).await {
        Ok(checked) => Some(checked.report),
        Err(ClientError::Http { status: 404, .. }) => None,
        Err(e) => return Err(StepError::Fail(client_error_object(&e))),
    };
    let checked =
        evaluation_gate(report.as_ref(), &gw.config.thresholds).map_err(StepError::Fail)?;
    gw.event(&job.id, "info", &checked, None).await;
    let (_, tx) = gw
        .client
        .acknowledge_model(provider, task, Some(&enc))
        .await?;
    let how = match tx {
        Some(tx) => format!("acknowledged on chain (transaction {})", tx.tx_hash),
        None => "already acknowledged on chain".into(),
    };
    gw.event(
        &job.id,
        "info",
        &format!("{how}; waiting for the provider's settlement, which releases the key"),
        None,
    )
    .await;
    gw.store
        .set_stage(&job.id, "running", stage::ACKNOWLEDGED)
        .await?;
    Ok(Next::Now)
}

async fn decrypt(
    gw: &Arc<Gateway>,
    job: &JobRow,
    provider: Address,
    task: &str,
) -> Result<Next, StepError> {
    let d = gw.client.deliverable(provider, task).await?;
    if !d.settled || d.encrypted_secret.is_empty() {
        return Ok(Next::Later);
    }
    let dir = job_dir(gw, job);
    let enc = dir.join("model.enc");
    let zip = dir.join("model.zip");
    let model_dir = gw.config.state_dir.join("models").join(&job.id);
    remove_dir_if_present(&model_dir)?;
    let out = gw
        .client
        .decrypt_model(provider, task, &enc, &zip, Some(&model_dir), &NoProgress)
        .await?;
    let result = FileRow {
        id: new_id("file"),
        filename: format!("{}-adapter.zip", job.id),
        purpose: "fine-tune-results".into(),
        bytes: out.zip_bytes,
        created_at: gw.clock.now_ms() / 1000,
        path: zip.display().to_string(),
        status_details: Some(format!("the decrypted adapter of task {task}")),
    };
    gw.store.insert_file(&result).await?;
    let model = model_dir.display().to_string();
    gw.event(
        &job.id,
        "info",
        &format!(
            "decrypted the adapter ({} files) into {model}; the zip is result file {}",
            out.files.unwrap_or(0),
            result.id
        ),
        None,
    )
    .await;
    gw.store
        .finish(
            &job.id,
            "succeeded",
            None,
            Some(&model),
            Some(&result.id),
            gw.clock.now_ms() / 1000,
        )
        .await?;
    gw.event(&job.id, "info", "The job has successfully completed", None)
        .await;
    Ok(Next::Now)
}

fn remove_dir_if_present(dir: &Path) -> Result<(), ClientError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ClientError::io(dir, e)),
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    fn report(metrics: &[(&str, f64)]) -> TrainingReport {
        let mut r = TrainingReport::example();
        r.metrics = metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        r
    }

    #[test]
    fn the_gate_holds_the_report_to_the_thresholds() {
        let none = Thresholds::default();
        let improve = Thresholds {
            require_improvement: true,
            ..Thresholds::default()
        };
        let better = report(&[(metric::EVAL_LOSS, 4.0), (metric::BASE_EVAL_LOSS, 4.3)]);
        let worse = report(&[(metric::EVAL_LOSS, 4.5), (metric::BASE_EVAL_LOSS, 4.3)]);
        let silent = report(&[]);
        assert!(
            evaluation_gate(Some(&better), &improve)
                .unwrap()
                .contains("eval loss 4.0000 (base 4.3000)")
        );
        assert!(
            evaluation_gate(Some(&silent), &none)
                .unwrap()
                .contains("eval loss absent")
        );
        assert!(
            evaluation_gate(None, &none)
                .unwrap()
                .contains("serves no training report")
        );
        for (r, why) in [
            (Some(&worse), "is not below the base model's 4.3"),
            (
                Some(&silent),
                "the report lacks base_eval_loss or eval_loss",
            ),
            (None, "serves no training report"),
        ] {
            let e = evaluation_gate(r, &improve).unwrap_err();
            assert_eq!(e.code, "below_threshold");
            assert!(
                e.message.starts_with("not acknowledged: ") && e.message.contains(why),
                "{}",
                e.message
            );
        }
    }
}
