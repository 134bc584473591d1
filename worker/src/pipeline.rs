//! The task pipeline: setup → execute → finalize (one task at a time), then settle and retention
//! in their own loops.
//!
//! Crash safety: every transition is committed before its side effect, and every step is written
//! so that running it again after a crash is safe:
//!
//! | found at start | what happens |
//! |---|---|
//! | `Init`, `SettingUp` | setup runs (again): it only reads and checks |
//! | `SetUp` | training starts |
//! | `Training` | the child died with the worker: trained again up to `limits.training_restarts` times, then failed with the reason |
//! | `Trained` | finalize: a sealed file the child left is used, else the output directory is sealed |
//! | `Delivering` | the chain is read first: a deliverable already announced is never announced or trained again |
//! | `Delivered`, `UserAcknowledged` | the settle loop reads the chain first: a settled deliverable is never settled again |
//!
//! The model key is generated when training starts and committed only ECIES-wrapped to the
//! customer (safe at rest); the TEE key never leaves this process (the child gets the model key only).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use sealtune_protocol::deliverable::{self, DeliverableKey, OsRng};
use sealtune_protocol::events::Event;
use sealtune_protocol::params::LoraParams;
use sealtune_protocol::tokens::{CountRule, TokenCounter};
use tokio_util::sync::CancellationToken;

use crate::app::Worker;
use crate::models::{ModelConfig, ParamsSchema};
use crate::exec::{self, ExecLimits, ExecSpec, SealSpec};
use crate::store::{Task, TaskState};

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
}

impl From<crate::store::StoreError> for StepError {
    fn from(e: crate::store::StoreError) -> Self {
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

/// The file the executor child seals the model into.
pub fn sealed_path(task_dir: &Path) -> PathBuf {
    task_dir.join("model.sealed")
}

/// Runs the training lane forever: takes the oldest task that is queued or mid-way and drives it
/// to `Delivered` or `Failed`.
pub async fn run_training_lane(worker: Arc<Worker>, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let next = match worker
            .store
            .in_states(&[
                TaskState::Init,
                TaskState::SettingUp,
                TaskState::SetUp,
                TaskState::Training,
                TaskState::Trained,
                TaskState::Delivering,
            ])
            .await
        {
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
                match drive(&worker, task).await {
                    Ok(()) => {}
                    Err(StepError::Fail(reason)) => {
                        if let Ok(true) = worker.store.fail(&id, &reason, worker.clock.now()).await
                        {
                            worker.metrics.state(TaskState::Failed);
                        }
                    }
                    Err(StepError::Retry(reason)) => {
                        worker
                            .task_log(&id, format!("temporary problem, will retry: {reason}"))
                            .await;
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                            _ = shutdown.cancelled() => return,
                        }
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

/// Drives one task as far as the training lane goes.
async fn drive(worker: &Arc<Worker>, task: Task) -> Result<(), StepError> {
    let mut task = task;
    loop {
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
                setup(worker, &task).await?;
                if !enter(worker, &task, &[TaskState::SettingUp], TaskState::SetUp).await? {
                    return Ok(());
                }
                worker.crash.hit("after-setup");
            }
            TaskState::SetUp | TaskState::Training => {
                execute(worker, &task).await?;
                worker.crash.hit("after-training");
            }
            TaskState::Trained | TaskState::Delivering => {
                finalize(worker, &task).await?;
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

fn parse_user(task: &Task) -> Result<Address, StepError> {
    task.user_address.parse().map_err(|_| {
        StepError::fail(format!(
            "stored user address {} is invalid",
            task.user_address
        ))
    })
}

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
    match crate::models::local_weights_dir(model).map_err(|e| StepError::fail(e.to_string()))? {
        Some(dir) => Ok(dir),
        None => {
            let Some(crate::models::Weights::Root(root)) = &model.weights else {
                return Err(StepError::fail(format!(
                    "model `{}` has no weights",
                    model.name
                )));
            };
            let dest = worker
                .config
                .data_dir
                .join("models")
                .join(format!("{root}"));
            if dest.join("config.json").is_file() {
                return Ok(dest);
            }
            let tmp = worker
                .config
                .data_dir
                .join("models")
                .join(format!(".fetch-{root}"));
            tokio::fs::create_dir_all(&tmp)
                .await
                .map_err(|e| StepError::Retry(e.to_string()))?;
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
            .map_err(|e| StepError::Retry(e.to_string()))?
            .map_err(|e| {
                StepError::fail(format!("model weights {root} are not a safe zip: {e}"))
            })?;
            tokio::fs::rename(&unpack, &dest)
                .await
                .map_err(|e| StepError::Retry(e.to_string()))?;
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            Ok(dest)
        }
    }
}

/// Setup: model known, params valid, dataset fetched and counted, fee computed and within the
/// signed ceiling, TEE signer acknowledged, nonce fresh, balance sufficient.
async fn setup(worker: &Arc<Worker>, task: &Task) -> Result<(), StepError> {
    worker
        .task_log(&task.id, "setting up: checking the request")
        .await;
    let model = model_of(worker, task)?;
    let epochs = match model.params {
        ParamsSchema::Lora => {
            LoraParams::parse(&task.training_params)
                .map_err(|e| StepError::fail(e.to_string()))?
                .num_train_epochs
        }
        ParamsSchema::Free => {
            sealtune_protocol::fee::epochs_from_training_params(&task.training_params)
                .map_err(|e| StepError::fail(e.to_string()))?
        }
    };
    let dataset_hash: B256 = task.dataset_hash.parse().map_err(|_| {
        StepError::fail(format!(
            "datasetHash {} is not a 32-byte hex hash",
            task.dataset_hash
        ))
    })?;
    let dir = worker.task_dir(&task.id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| StepError::Retry(format!("cannot create the task directory: {e}")))?;
    let dataset = worker
        .files
        .fetch(&dataset_hash, &dir)
        .await
        .map_err(|e| StepError::fail(format!("dataset {dataset_hash}: {e}")))?;
    worker
        .task_log(&task.id, "dataset found; counting tokens")
        .await;

    let weights = model_dir(worker, model).await?;
    let tokenizer = crate::models::tokenizer_file(model, &weights)
        .map_err(|e| StepError::fail(e.to_string()))?;
    let tokens = match model.data_type {
        crate::models::DataType::Text => {
            let path = dataset.clone();
            let counted = tokio::task::spawn_blocking(move || {
                let counter = TokenCounter::from_file(&tokenizer)?;
                counter.count_dataset(&path, CountRule::Official, &Default::default())
            })
            .await
            .map_err(|e| StepError::Retry(e.to_string()))?
            .map_err(|e| StepError::fail(format!("dataset rejected: {e}")))?;
            if counted.records == 0 {
                return Err(StepError::fail("dataset rejected: it has no records"));
            }
            counted.tokens
        }
        // Image datasets are priced per file: one "token" per image (documented in the provider guide).
        crate::models::DataType::Image => count_zip_entries(&dataset).await?,
    };
    let schedule = model.fee_schedule(worker.config.service.price_per_token);
    let fee = schedule
        .fee(tokens, epochs)
        .map_err(|e| StepError::fail(e.to_string()))?;
    let ceiling = task
        .fee_ceiling
        .as_deref()
        .map(|c| c.parse::<U256>())
        .transpose()
        .map_err(|_| StepError::fail("stored fee ceiling is invalid"))?;
    sealtune_protocol::fee::check_fee_ceiling(fee, ceiling)
        .map_err(|e| StepError::fail(e.to_string()))?;
    worker
        .task_log(
            &task.id,
            format!("{tokens} tokens × {epochs} epochs: fee {fee} neuron"),
        )
        .await;

    // The chain: the account exists, accepted the current TEE signer, has a fresh nonce and funds.
    let user = parse_user(task)?;
    let service = worker
        .chain
        .service()
        .await
        .map_err(|e| chain_err("reading the service", e))?
        .ok_or_else(|| {
            StepError::Retry("this provider's service is not registered on chain yet".into())
        })?;
    if service.teeSignerAddress != worker.attest.signer() {
        return Err(StepError::Retry(format!(
            "the on-chain TEE signer {} is not this worker's {}",
            service.teeSignerAddress,
            worker.attest.signer()
        )));
    }
    let account = worker
        .chain
        .account(user)
        .await
        .map_err(|e| chain_err("reading the account", e))?
        .ok_or_else(|| {
            StepError::fail(format!(
                "no account for {user} with this provider: transfer funds to the provider first (ledger transferFund)"
            ))
        })?;
    if !account.acknowledged {
        return Err(StepError::fail(
            "the account has not acknowledged this provider's TEE signer: acknowledge it (acknowledgeTEESigner) and retry",
        ));
    }
    let nonce: U256 = task
        .nonce
        .parse()
        .map_err(|_| StepError::fail("stored nonce is invalid"))?;
    if nonce <= account.nonce {
        return Err(StepError::fail(format!(
            "nonce {nonce} was already used: it must be greater than the account's nonce {}",
            account.nonce
        )));
    }
    let available = account.balance.saturating_sub(account.pendingRefund);
    if available < fee {
        return Err(StepError::fail(format!(
            "balance too low: the fee is {fee} neuron but the account has {available} available (balance {} minus pending refunds {}); transfer more funds to this provider",
            account.balance, account.pendingRefund
        )));
    }
    worker
        .store
        .set_setup(&task.id, tokens, &fee.to_string(), worker.clock.now())
        .await?;
    worker
        .task_log(
            &task.id,
            "setup done: signature, nonce, balance and fee checked",
        )
        .await;
    Ok(())
}

async fn count_zip_entries(path: &Path) -> Result<u64, StepError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let z =
            zip::ZipArchive::new(f).map_err(|e| format!("an image dataset must be a zip: {e}"))?;
        Ok::<u64, String>(
            (0..z.len())
                .filter(|i| z.name_for_index(*i).is_some_and(|n| !n.ends_with('/')))
                .count() as u64,
        )
    })
    .await
    .map_err(|e| StepError::Retry(e.to_string()))?
    .map_err(|e| StepError::fail(format!("dataset rejected: {e}")))
}

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

/// Execute: commits `Training` (counting the attempt), commits the wrapped model key, runs the child.
async fn execute(worker: &Arc<Worker>, task: &Task) -> Result<(), StepError> {
    let attempts = if task.progress == TaskState::Training {
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
        n
    } else {
        if !enter(worker, task, &[TaskState::SetUp], TaskState::Training).await? {
            return Ok(());
        }
        worker.store.bump_attempts(&task.id).await?
    };
    let model = model_of(worker, task)?;
    let model_path = model_dir(worker, model).await?;
    let dir = worker.task_dir(&task.id);
    let output_dir = dir.join("output");
    let data_path = dir.join("data");
    for d in [&output_dir, &data_path] {
        let _ = tokio::fs::remove_dir_all(d).await;
    }
    let _ = tokio::fs::remove_file(sealed_path(&dir)).await;
    tokio::fs::create_dir_all(&output_dir)
        .await
        .map_err(|e| StepError::Retry(e.to_string()))?;
    let config_path = dir.join("training_params.json");
    tokio::fs::write(&config_path, task.training_params.as_bytes())
        .await
        .map_err(|e| StepError::Retry(e.to_string()))?;
    let dataset_hash: B256 = task
        .dataset_hash
        .parse()
        .map_err(|_| StepError::fail("invalid datasetHash"))?;
    let dataset = worker
        .files
        .fetch(&dataset_hash, &dir)
        .await
        .map_err(|e| StepError::fail(format!("dataset {dataset_hash}: {e}")))?;

    // The model key: wrapped to the customer and committed before the child sees it.
    let key = DeliverableKey::generate(&mut OsRng);
    let secret = wrap_for_customer(task, &key)?;
    worker
        .store
        .set_sealed(&task.id, "", "", &secret, "", worker.clock.now())
        .await?;

    let spec = ExecSpec {
        script: model.training_script.clone(),
        dataset,
        data_type: match model.data_type {
            crate::models::DataType::Text => exec::DataType::Text,
            crate::models::DataType::Image => exec::DataType::Image,
        },
        data_path,
        model_path,
        config_path,
        output_dir,
        seal: Some(SealSpec {
            key_hex: hex::encode(key.as_bytes()),
            sealed_path: sealed_path(&dir),
        }),
    };
    let limits = ExecLimits {
        timeout: worker.config.limits.training_timeout.0,
        memory_limit_bytes: worker.config.limits.executor_memory_bytes,
    };
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
    worker
        .task_log(
            &task.id,
            format!(
                "training (attempt {attempts}) with {}",
                model.training_script.display()
            ),
        )
        .await;
    if worker.crash.armed() == Some("during-training") {
        let crash = worker.crash.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            crash.hit("during-training");
        });
    }
    let _ = worker.chain.set_occupied(true).await;
    let result = exec::spawn(&worker.exe, &dir, &spec, &limits, tx, cancel).await;
    let _ = worker.chain.set_occupied(false).await;
    *worker.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let _ = logger.await;
    match result {
        Ok(_outcome) => {
            enter(worker, task, &[TaskState::Training], TaskState::Trained).await?;
            Ok(())
        }
        Err(e) => Err(StepError::Fail(format!("training failed: {e}"))),
    }
}

fn wrap_for_customer(task: &Task, key: &DeliverableKey) -> Result<String, StepError> {
    let pk_bytes = hex::decode(task.user_public_key.trim_start_matches("0x"))
        .map_err(|_| StepError::fail("stored customer public key is invalid"))?;
    let pk = sealtune_protocol::ecies::parse_public_key(&pk_bytes)
        .map_err(|e| StepError::fail(format!("customer public key: {e}")))?;
    Ok(hex::encode(sealtune_protocol::ecies::wrap_key(
        &mut OsRng, &pk, key,
    )))
}

/// Finalize: seal (or take the child's sealed file), sign the tags with the TEE key, hash, store,
/// announce on chain.
async fn finalize(worker: &Arc<Worker>, task: &Task) -> Result<(), StepError> {
    let user = parse_user(task)?;
    enter(
        worker,
        task,
        &[TaskState::Trained, TaskState::Delivering],
        TaskState::Delivering,
    )
    .await?;
    let dir = worker.task_dir(&task.id);
    let signer = worker.attest.signer();

    // Already sealed and committed? (A restart after the seal.)
    let task = worker
        .store
        .get(&task.id)
        .await?
        .ok_or_else(|| StepError::fail("task vanished"))?;
    let committed_root = task
        .model_root_hash
        .as_deref()
        .filter(|r| !r.is_empty())
        .and_then(|r| r.parse::<B256>().ok());

    let root = match committed_root {
        Some(root) => {
            if task.tee_signer.as_deref() != Some(&signer.to_string()) {
                worker
                    .task_log(
                        &task.id,
                        format!(
                            "note: this model's tag signature is by the previous TEE signer {}; this worker now signs as {signer}",
                            task.tee_signer.as_deref().unwrap_or("?")
                        ),
                    )
                    .await;
            }
            root
        }
        None => {
            // Seal now: the child's file if it sealed in-process, else the output directory.
            let sealed = sealed_path(&dir);
            let secret = if tokio::fs::try_exists(&sealed).await.unwrap_or(false) {
                task.encrypted_secret.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
                    StepError::fail("the sealed model has no committed key; the model must be trained again")
                })?
            } else {
                let output = dir.join("output");
                if !output.is_dir() {
                    return Err(StepError::fail(
                        "the training output is gone; the model must be trained again",
                    ));
                }
                let (out2, sealed2) = (output.clone(), sealed.clone());
                let result = tokio::task::spawn_blocking(move || {
                    deliverable::seal_dir_to_file(&out2, &sealed2, &mut OsRng, &Default::default())
                })
                .await
                .map_err(|e| StepError::Retry(e.to_string()))?
                .map_err(|e| StepError::fail(format!("sealing the model failed: {e}")))?;
                wrap_for_customer(&task, &result.key)?
            };
            // Sign the tag digest with the TEE key and patch the header (deterministic: signing
            // again after a crash writes the same bytes).
            let (sealed2, key) = (sealed.clone(), worker.attest.signing_key().clone());
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                let mut f = std::fs::File::open(&sealed2).map_err(|e| e.to_string())?;
                let digest = deliverable::tag_digest(&mut f, Default::default())
                    .map_err(|e| e.to_string())?;
                deliverable::finish(&sealed2, &deliverable::sign_tags(&key, &digest))
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| StepError::Retry(e.to_string()))?
            .map_err(|e| StepError::fail(format!("signing the sealed model failed: {e}")))?;
            // Into the content-addressed store in one hashing pass (keccak256 + 0G root). A hard
            // link is imported so the sealed file stays until the hashes are committed: a crash in
            // between finds it and imports it again.
            let link = dir.join("model.sealed.import");
            let _ = tokio::fs::remove_file(&link).await;
            tokio::fs::hard_link(&sealed, &link)
                .await
                .map_err(|e| StepError::Retry(format!("linking the sealed model: {e}")))?;
            let stored = worker
                .files
                .import_file(&link)
                .await
                .map_err(|e| StepError::Retry(format!("storing the sealed model: {e}")))?;
            let keccak = stored.keccak;
            worker
                .store
                .set_sealed(
                    &task.id,
                    &stored.path.display().to_string(),
                    &keccak.to_string(),
                    &secret,
                    &signer.to_string(),
                    worker.clock.now(),
                )
                .await?;
            let _ = tokio::fs::remove_file(&sealed).await;
            worker.crash.hit("after-seal");
            worker
                .task_log(
                    &task.id,
                    format!("model sealed for the customer ({} bytes); root hash {keccak} (0G storage root {})", stored.len, stored.root),
                )
                .await;
            keccak
        }
    };

    if worker.files.path_of(&root).is_none() {
        return Err(StepError::fail(
            "the sealed model file is missing from the store; it must be trained again",
        ));
    }

    // Announce, unless the chain already has it.
    if !on_chain(worker, user, &task.id).await? {
        worker
            .chain
            .add_deliverable(user, &task.id, root)
            .await
            .map_err(|e| chain_err("addDeliverable", e))?;
        worker.crash.hit("after-add-deliverable");
    }
    let now = worker.clock.now();
    if worker.store.set_delivered(&task.id, None, now, now).await? {
        worker.metrics.state(TaskState::Delivered);
    }
    worker
        .task_log(
            &task.id,
            "delivered: download the model, then acknowledge it on chain",
        )
        .await;
    Ok(())
}

async fn on_chain(worker: &Worker, user: Address, id: &str) -> Result<bool, StepError> {
    Ok(worker
        .chain
        .deliverable(user, id)
        .await
        .map_err(|e| chain_err("reading the deliverable", e))?
        .is_some())
}

/// Runs the settle lane forever: for every delivered task, reads the chain; settles with the
/// secret once acknowledged, with the penalty after the acknowledgement timeout.
pub async fn run_settle_lane(worker: Arc<Worker>, shutdown: CancellationToken) {
    let lock_time = match worker.chain.lock_time().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot read lockTime ({e}); assuming 1 day");
            86_400
        }
    };
    let timeout = worker
        .config
        .limits
        .ack_timeout
        .0
        .as_secs()
        .min(lock_time / 2) as i64;
    let mut waiting_for_owner = false;
    loop {
        match worker
            .store
            .in_states(&[TaskState::Delivered, TaskState::UserAcknowledged])
            .await
        {
            Ok(tasks)
                if !tasks.is_empty() && !signer_usable(&worker, &mut waiting_for_owner).await =>
            {
                // Every settlement would revert (and a revert fails the task): wait instead.
            }
            Ok(tasks) => {
                for task in tasks {
                    if let Err(e) = settle_one(&worker, &task, timeout).await {
                        match e {
                            StepError::Retry(r) => {
                                tracing::warn!(task = task.id, "settlement will be retried: {r}")
                            }
                            StepError::Fail(r) => {
                                if let Ok(true) =
                                    worker.store.fail(&task.id, &r, worker.clock.now()).await
                                {
                                    worker.metrics.state(TaskState::Failed);
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::error!("store: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(worker.config.chain.poll()) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Whether the contract would accept this worker's TEE signature now: the service on chain names
/// this signer and the contract owner has acknowledged it (after a signer change the owner must
/// acknowledge the new one first). Logs when waiting starts and ends, not on every poll.
async fn signer_usable(worker: &Worker, waiting: &mut bool) -> bool {
    let signer = worker.attest.signer();
    let why = match worker.chain.service().await {
        Ok(Some(s)) if s.teeSignerAddress == signer && s.teeSignerAcknowledged => None,
        Ok(Some(s)) if s.teeSignerAddress == signer => Some(format!(
            "the contract owner has not acknowledged the TEE signer {signer} yet"
        )),
        Ok(Some(s)) => Some(format!(
            "the service on chain names the TEE signer {}, not this worker's {signer}",
            s.teeSignerAddress
        )),
        Ok(None) => Some("the service is not registered on chain".to_owned()),
        Err(e) => Some(format!("cannot read the service: {e}")),
    };
    match (why, *waiting) {
        (None, true) => {
            tracing::info!("the TEE signer is acknowledged: settlements resume");
            *waiting = false;
            true
        }
        (None, false) => true,
        (Some(why), false) => {
            tracing::warn!("settlements wait: {why}");
            *waiting = true;
            false
        }
        (Some(_), true) => false,
    }
}

async fn settle_one(worker: &Worker, task: &Task, timeout: i64) -> Result<(), StepError> {
    let user = parse_user(task)?;
    let Some(d) = worker
        .chain
        .deliverable(user, &task.id)
        .await
        .map_err(|e| chain_err("reading the deliverable", e))?
    else {
        return Err(StepError::fail("the deliverable is not on chain"));
    };
    let fee: U256 = task
        .task_fee
        .as_deref()
        .unwrap_or("0")
        .parse()
        .map_err(|_| StepError::fail("stored fee is invalid"))?;
    if d.settled {
        // Settled already (e.g. before a crash): record it, never settle twice.
        if worker
            .store
            .set_settled(
                &task.id,
                None,
                &fee.to_string(),
                d.acknowledged,
                worker.clock.now(),
            )
            .await?
        {
            worker.metrics.state(TaskState::Finished);
            worker.task_log(&task.id, "settlement found on chain").await;
        }
        return Ok(());
    }
    let now = worker.clock.now();
    let delivered_at = task.deliver_time.unwrap_or(task.updated_at);
    let acknowledged = d.acknowledged;
    // Sealed under a TEE signer this worker no longer has (a signer change since): the customer's
    // client checks the tag signature against the signer now on chain and cannot accept the
    // model, so waiting for the timeout would only charge a penalty for a model they could not
    // check. Released at once, without charge.
    let current = worker.attest.signer();
    let old_signer = task
        .tee_signer
        .as_deref()
        .and_then(|s| s.parse::<Address>().ok())
        .filter(|s| *s != current);
    let fee = if !acknowledged && old_signer.is_some() {
        U256::ZERO
    } else {
        fee
    };
    if acknowledged {
        if enter(
            worker,
            task,
            &[TaskState::Delivered],
            TaskState::UserAcknowledged,
        )
        .await?
        {
            worker
                .task_log(&task.id, "the customer acknowledged the model; settling")
                .await;
        }
    } else if let Some(old) = old_signer {
        worker
            .task_log(
                &task.id,
                format!(
                    "this model was sealed under the previous TEE signer {old}; the customer cannot check it against the new signer {current}: settling without charge, the key is withheld"
                ),
            )
            .await;
    } else if now - delivered_at < timeout {
        return Ok(());
    } else {
        worker
            .task_log(
                &task.id,
                format!("no acknowledgement within {timeout} s: settling with the penalty; the key is withheld"),
            )
            .await;
    }
    worker.crash.hit("before-settle");
    let secret = if acknowledged {
        Bytes::from(
            hex::decode(task.encrypted_secret.as_deref().unwrap_or(""))
                .map_err(|_| StepError::fail("stored encrypted secret is invalid"))?,
        )
    } else {
        Bytes::new()
    };
    let message = sealtune_protocol::eip712::VerifierMessage {
        id: task.id.clone(),
        encryptedSecret: secret,
        modelRootHash: d.modelRootHash.clone(),
        nonce: task
            .nonce
            .parse()
            .map_err(|_| StepError::fail("stored nonce is invalid"))?,
        taskFee: fee,
        user,
    };
    let domain =
        sealtune_protocol::eip712::domain(worker.chain.chain_id, worker.chain.serving_address());
    let input = sealtune_protocol::eip712::sign_verifier_input(
        worker.attest.signing_key(),
        &domain,
        &message,
    )
    .map_err(|e| StepError::fail(e.to_string()))?;
    let receipt = match worker.chain.settle(&input).await {
        Ok(r) => r,
        Err(e) => {
            // The chain may have settled it after all (a lost response): read before deciding.
            if let Ok(Some(d)) = worker.chain.deliverable(user, &task.id).await
                && d.settled
            {
                return Ok(());
            }
            return Err(chain_err("settleFees", e));
        }
    };
    worker.crash.hit("after-settle");
    let charged = if acknowledged {
        fee
    } else {
        fee * U256::from(worker_penalty(worker).await) / U256::from(100u64)
    };
    if worker
        .store
        .set_settled(
            &task.id,
            Some(&receipt.transaction_hash.to_string()),
            &charged.to_string(),
            acknowledged,
            worker.clock.now(),
        )
        .await?
    {
        worker.metrics.state(TaskState::Finished);
    }
    worker
        .task_log(
            &task.id,
            format!(
                "settled in {}: {} neuron charged{}",
                receipt.transaction_hash,
                charged,
                match (acknowledged, old_signer) {
                    (true, _) => "",
                    (false, Some(_)) => " (sealed under the previous TEE signer: no charge)",
                    (false, None) => " (penalty)",
                }
            ),
        )
        .await;
    Ok(())
}

async fn worker_penalty(worker: &Worker) -> u64 {
    let serving = sealtune_contracts::bindings::FineTuningServing::new(
        worker.chain.serving_address(),
        worker.chain.provider().clone(),
    );
    serving
        .penaltyPercentage()
        .call()
        .await
        .ok()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(30)
}

/// Runs retention forever: deletes the files of tasks that ended more than `limits.retention` ago.
pub async fn run_retention_lane(worker: Arc<Worker>, shutdown: CancellationToken) {
    loop {
        let cutoff = worker.clock.now() - worker.config.limits.retention.0.as_secs() as i64;
        match worker.store.cleanable(cutoff).await {
            Ok(tasks) => {
                for task in tasks {
                    let _ = tokio::fs::remove_dir_all(worker.task_dir(&task.id)).await;
                    if let Some(root) = task
                        .model_root_hash
                        .as_deref()
                        .and_then(|r| r.parse::<B256>().ok())
                    {
                        let _ = worker.files.remove(&root).await;
                    }
                    if let Ok(hash) = task.dataset_hash.parse::<B256>() {
                        let shared = worker
                            .store
                            .dataset_in_use(&task.dataset_hash, &task.id)
                            .await
                            .unwrap_or(true);
                        let renewed = worker
                            .files
                            .touched_since(&hash, task.updated_at)
                            .unwrap_or(false);
                        if !shared && !renewed {
                            let _ = worker.files.remove(&hash).await;
                        }
                    }
                    let _ = worker.store.set_cleaned(&task.id, worker.clock.now()).await;
                    worker
                        .task_log(&task.id, "retention period over: files deleted")
                        .await;
                }
            }
            Err(e) => tracing::error!("store: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retention_period(worker.config.limits.retention.0)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// How often the retention lane looks for expired files: every minute, or as often as the
/// retention period itself when it is shorter (at least once a second), so a short retention
/// (tests, a privacy-minded provider) is honoured within about one period instead of a minute.
pub fn retention_period(retention: Duration) -> Duration {
    retention.clamp(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_lane_period_is_a_minute_or_the_retention_when_shorter() {
        assert_eq!(
            retention_period(Duration::from_secs(3 * 86_400)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retention_period(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retention_period(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(retention_period(Duration::ZERO), Duration::from_secs(1));
    }
}
