//! Setup (`Init`/`SettingUp` → `SetUp`): the model is offered, the parameters fit its schema, the
//! dataset is the customer's, and the chain says the account exists, acknowledged this TEE signer,
//! has a fresh nonce and at least the signed fee ceiling (or the provider's minimum deposit)
//! available — all **before** anything is downloaded or counted, so an account that cannot pay gets
//! no free work. Then the dataset is fetched, checked (a zip holds only what is counted, within the
//! unpacking caps), counted, `max_steps` kept within the billed epochs, the fee computed and within
//! the ceiling, and the balance checked against it. It only reads and checks, so running it again
//! after a crash is safe; `limits.setup_timeout` bounds it (see `pipeline::drive`).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::U256;
use sealtune_protocol::dataset_type::DatasetType;
use sealtune_protocol::tokens::TokenCounter;

use super::{StepError, chain_err, model_dir, model_of};
use crate::app::Worker;
use crate::intake::{self, IntakeError};
use crate::models::{DataType, ModelConfig};
use crate::store::Task;

/// Setup: model known, params valid, dataset owned, account able to pay; then dataset fetched,
/// checked and counted, `max_steps` within the epochs, fee computed and within the signed ceiling,
/// balance sufficient. Records the token count and the fee.
pub(super) async fn setup(worker: &Arc<Worker>, task: &Task) -> Result<(), StepError> {
    worker
        .task_log(&task.id, "setting up: checking the request")
        .await;
    let model = model_of(worker, task)?;
    let epochs = task
        .training_params
        .epochs(model)
        .map_err(StepError::Fail)?;
    let dataset_hash = task.dataset_hash.hash();
    intake::check_dataset_owner(
        &worker.store,
        &worker.files,
        task.user_address,
        dataset_hash,
    )
    .await
    .map_err(|e| match e {
        IntakeError::NotYours { .. } => StepError::fail(e.to_string()),
        IntakeError::Store(e) => StepError::from(e),
    })?;
    let upfront = match task.fee_ceiling {
        Some(ceiling) => Need::Ceiling(ceiling),
        None => Need::Deposit(worker.config.limits.min_deposit),
    };
    check_chain(worker, task, upfront).await?;
    if let Some(eval) = task.training_params.evaluation() {
        super::evaluate::check_model_key(worker, task, eval).await?;
    }
    worker
        .task_log(&task.id, "account checked; fetching the dataset")
        .await;
    let dir = worker.task_dir(&task.id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| StepError::Retry(format!("cannot create the task directory: {e}")))?;
    let dataset = worker
        .files
        .fetch(&dataset_hash, &dir)
        .await
        .map_err(|e| StepError::fail(format!("dataset {dataset_hash}: {e}")))?;
    let dataset = open_dataset(worker, task, dataset, &dir).await?;
    let counted = check_and_count(worker, task, model, dataset).await;
    crate::confidential::discard_plaintext(&dir, None);
    let (records, tokens) = counted?;
    sealtune_protocol::fee::check_max_steps(task.training_params.as_str(), epochs, records)
        .map_err(|e| StepError::fail(e.to_string()))?;
    let fee = model
        .fee_schedule(worker.config.service.price_per_token)
        .fee(tokens, epochs)
        .map_err(|e| StepError::fail(e.to_string()))?;
    sealtune_protocol::fee::check_fee_ceiling(fee, task.fee_ceiling)
        .map_err(|e| StepError::fail(e.to_string()))?;
    worker
        .task_log(
            &task.id,
            format!("{tokens} tokens × {epochs} epochs: fee {fee} neuron"),
        )
        .await;
    check_chain(worker, task, Need::Fee(fee)).await?;
    worker
        .store
        .set_setup(&task.id, tokens, fee, worker.clock.now())
        .await?;
    worker
        .task_log(
            &task.id,
            "setup done: signature, nonce, balance and fee checked",
        )
        .await;
    Ok(())
}

/// The plaintext of the fetched dataset: an envelope opened for the task's user
/// (`crate::confidential`), else the file itself.
pub(super) async fn open_dataset(
    worker: &Arc<Worker>,
    task: &Task,
    fetched: PathBuf,
    dir: &Path,
) -> Result<PathBuf, StepError> {
    let (worker2, dir, user) = (worker.clone(), dir.to_owned(), task.user_address);
    tokio::task::spawn_blocking(move || {
        crate::confidential::plaintext(&fetched, &dir, user, worker2.attest.dataset_key())
    })
    .await
    .map_err(StepError::retry)?
    .map_err(|e| StepError::fail(format!("dataset rejected: {e}")))
}

/// The intake checks of the (plaintext) dataset file, then its count.
async fn check_and_count(
    worker: &Worker,
    task: &Task,
    model: &ModelConfig,
    dataset: PathBuf,
) -> Result<(u64, u64), StepError> {
    let (path, data_type, limits) = (
        dataset.clone(),
        model.data_type,
        worker.config.limits.clone(),
    );
    tokio::task::spawn_blocking(move || intake::check_dataset_file(&path, data_type, &limits))
        .await
        .map_err(StepError::retry)?
        .map_err(|e| StepError::fail(format!("dataset rejected: {e}")))?;
    worker
        .task_log(&task.id, "dataset found; counting tokens")
        .await;
    count_tokens(worker, model, task, dataset).await
}

/// The dataset's records and its size for the fee: its tokens (text), or its files (image datasets
/// are priced per file: one "token" per image, as the provider guide documents).
async fn count_tokens(
    worker: &Worker,
    model: &ModelConfig,
    task: &Task,
    dataset: PathBuf,
) -> Result<(u64, u64), StepError> {
    let weights = model_dir(worker, model).await?;
    let tokenizer = crate::models::tokenizer_file(model, &weights)
        .map_err(|e| StepError::fail(e.to_string()))?;
    match model.data_type {
        DataType::Text => {
            let ty = task.dataset_type.clone();
            let spill = worker.task_dir(&task.id);
            let counted = tokio::task::spawn_blocking(move || {
                let counter = TokenCounter::from_file(&tokenizer)?;
                let rule = DatasetType::count_rule(ty.as_ref());
                counter.count_with(rule, |f| {
                    crate::formats::read_dataset(
                        &dataset,
                        ty.as_ref(),
                        &Default::default(),
                        &spill,
                        f,
                    )
                })
            })
            .await
            .map_err(StepError::retry)?
            .map_err(|e| StepError::fail(format!("dataset rejected: {e}")))?;
            if counted.records == 0 {
                return Err(StepError::fail("dataset rejected: it has no records"));
            }
            Ok((counted.records, counted.tokens))
        }
        DataType::Image => count_zip_entries(&dataset).await.map(|n| (n, n)),
    }
}

/// What the account must have available.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Before the download: the fee ceiling the customer signed.
    Ceiling(U256),
    /// Before the download, no ceiling signed: the provider's minimum deposit.
    Deposit(U256),
    /// After counting: the fee.
    Fee(U256),
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Ceiling(a) => write!(f, "the signed fee ceiling is {a} neuron"),
            Need::Deposit(a) => write!(
                f,
                "this provider needs {a} neuron deposited before it starts a task"
            ),
            Need::Fee(a) => write!(f, "the fee is {a} neuron"),
        }
    }
}

impl Need {
    fn amount(self) -> U256 {
        match self {
            Need::Ceiling(a) | Need::Deposit(a) | Need::Fee(a) => a,
        }
    }
}

/// The chain: the service names this worker's TEE signer, the account exists, acknowledged it, has
/// a fresh nonce and `need` available.
async fn check_chain(worker: &Worker, task: &Task, need: Need) -> Result<(), StepError> {
    let user = task.user_address;
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
    if task.nonce <= account.nonce {
        return Err(StepError::fail(format!(
            "nonce {} was already used: it must be greater than the account's nonce {}",
            task.nonce, account.nonce
        )));
    }
    let available = account.balance.saturating_sub(account.pendingRefund);
    if available < need.amount() {
        return Err(StepError::fail(format!(
            "balance too low: {need} but the account has {available} available (balance {} minus pending refunds {}); transfer more funds to this provider",
            account.balance, account.pendingRefund
        )));
    }
    Ok(())
}

/// The files of an image dataset (a zip; directories not counted).
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
    .map_err(StepError::retry)?
    .map_err(|e| StepError::fail(format!("dataset rejected: {e}")))
}
