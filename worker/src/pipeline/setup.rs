//! Setup (`Init`/`SettingUp` → `SetUp`): the model is offered, the parameters fit its schema, the
//! dataset is fetched and counted, the fee is computed and within the signed ceiling, and the chain
//! says the account acknowledged this TEE signer, has a fresh nonce and enough funds. It only reads
//! and checks, so running it again after a crash is safe.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::U256;
use sealtune_protocol::tokens::{CountRule, TokenCounter};

use super::{StepError, chain_err, model_dir, model_of};
use crate::app::Worker;
use crate::models::{DataType, ModelConfig};
use crate::store::Task;

/// Setup: model known, params valid, dataset fetched and counted, fee computed and within the
/// signed ceiling, TEE signer acknowledged, nonce fresh, balance sufficient. Records the token
/// count and the fee.
pub(super) async fn setup(worker: &Arc<Worker>, task: &Task) -> Result<(), StepError> {
    worker
        .task_log(&task.id, "setting up: checking the request")
        .await;
    let model = model_of(worker, task)?;
    let epochs = task
        .training_params
        .epochs(model.params)
        .map_err(StepError::Fail)?;
    let dir = worker.task_dir(&task.id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| StepError::Retry(format!("cannot create the task directory: {e}")))?;
    let dataset_hash = task.dataset_hash.hash();
    let dataset = worker
        .files
        .fetch(&dataset_hash, &dir)
        .await
        .map_err(|e| StepError::fail(format!("dataset {dataset_hash}: {e}")))?;
    worker
        .task_log(&task.id, "dataset found; counting tokens")
        .await;
    let tokens = count_tokens(worker, model, dataset).await?;
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
    check_chain(worker, task, fee).await?;
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

/// The dataset's size for the fee: its tokens (text), or its files (image datasets are priced per
/// file: one "token" per image, as the provider guide documents).
async fn count_tokens(
    worker: &Worker,
    model: &ModelConfig,
    dataset: PathBuf,
) -> Result<u64, StepError> {
    let weights = model_dir(worker, model).await?;
    let tokenizer = crate::models::tokenizer_file(model, &weights)
        .map_err(|e| StepError::fail(e.to_string()))?;
    match model.data_type {
        DataType::Text => {
            let counted = tokio::task::spawn_blocking(move || {
                let counter = TokenCounter::from_file(&tokenizer)?;
                counter.count_dataset(&dataset, CountRule::Official, &Default::default())
            })
            .await
            .map_err(StepError::retry)?
            .map_err(|e| StepError::fail(format!("dataset rejected: {e}")))?;
            if counted.records == 0 {
                return Err(StepError::fail("dataset rejected: it has no records"));
            }
            Ok(counted.tokens)
        }
        DataType::Image => count_zip_entries(&dataset).await,
    }
}

/// The chain: the service names this worker's TEE signer, the account exists, acknowledged it, has
/// a fresh nonce and `fee` available.
async fn check_chain(worker: &Worker, task: &Task, fee: U256) -> Result<(), StepError> {
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
    if available < fee {
        return Err(StepError::fail(format!(
            "balance too low: the fee is {fee} neuron but the account has {available} available (balance {} minus pending refunds {}); transfer more funds to this provider",
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
