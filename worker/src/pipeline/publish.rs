//! Publish (in finalize, before the deliverable is announced): when `[storage.zg]` names a Flow
//! contract, the sealed file goes to 0G Storage and the deliverable is announced with its 0G
//! Storage root (PROTOCOL.md §4.5), so the customer can download it from the network (the TEE keeps
//! serving it too). Without it the deliverable is announced with its keccak256, as before.
//!
//! The upload streams the file from the store (segment by segment, each proof checked before it is
//! sent) and is crash-safe: a worker killed at any point never pays the Flow storage fee twice.
//!
//! 1. The nodes are asked about the root: a file they finalized is not uploaded again.
//! 2. The Flow `submit` (value: the storage fee) is signed, its hash and bytes are recorded in
//!    `zg_uploads`, and only then broadcast (crash point `after-zg-submit-recorded` in between;
//!    `after-zg-submit` once mined).
//! 3. After a restart, a recorded submission is looked up on chain before anything is signed: mined,
//!    it is not sent again; unknown, the same bytes are sent again (same nonce, same hash: paid at
//!    most once); never minable (its nonce went to another transaction) or reverted, nothing was
//!    paid and a new one is signed.
//! 4. Once a node saw the submission, every segment is sent (again after a crash: nodes keep what
//!    they have; crash point `during-zg-upload` after the first of several batches), then the
//!    worker waits until a node reports the file finalized (`after-zg-upload`).
//! 5. The root is indexed locally and committed as the task's root before it is announced.
//!
//! Network trouble is retried (the task stays `Delivering`); a file over the SDK's fragment size
//! (4 GiB: it would need several roots) is delivered through the TEE only, announced by keccak256.
use alloy::primitives::B256;
use sealtune_contracts::ContractError;

use super::{StepError, chain_err};
use crate::app::Worker;
use crate::chain::RecordedSendError;
use crate::storage::{StorageError, ZgUpload};
use crate::store::Task;

/// Largest deliverable uploaded as one 0G Storage file: the SDK's fragment size.
pub const MAX_ZG_FILE: u64 = 4 << 30;

/// The root to announce the sealed file `keccak` of `task` with: its 0G Storage root once uploaded
/// there (when configured), else `keccak`.
pub(super) async fn announced_root(
    worker: &Worker,
    task: &Task,
    keccak: B256,
) -> Result<B256, StepError> {
    if !worker.files.uploads_to_0g() {
        return Ok(keccak);
    }
    let upload = worker
        .files
        .zg_prepare(&keccak)
        .await
        .map_err(storage_err)?;
    if upload.len() > MAX_ZG_FILE {
        worker
            .task_log(
                &task.id,
                format!(
                    "the sealed model ({} bytes) is over 0G Storage's fragment size ({MAX_ZG_FILE} bytes): delivered through the provider only",
                    upload.len()
                ),
            )
            .await;
        return Ok(keccak);
    }
    let root = upload.root();
    let info = match upload.network_info().await.map_err(storage_err)? {
        Some(info) => info,
        None => {
            submit_once(worker, task, &upload).await?;
            upload.wait_seen().await.map_err(storage_err)?
        }
    };
    if !info.finalized {
        let crash = &worker.crash;
        upload
            .send_segments(info.tx.seq, &mut |sent, total| {
                if sent < total {
                    crash.hit("during-zg-upload");
                }
            })
            .await
            .map_err(storage_err)?;
        upload.wait_finalized().await.map_err(storage_err)?;
    }
    worker.crash.hit("after-zg-upload");
    worker.files.index_uploaded(&upload).map_err(storage_err)?;
    worker
        .store
        .set_announced_root(&task.id, root, worker.clock.now())
        .await?;
    worker
        .task_log(
            &task.id,
            format!(
                "the sealed model is on 0G Storage: root {root} (Flow submission {})",
                info.tx.seq
            ),
        )
        .await;
    Ok(root)
}

/// Makes sure the Flow submission of `upload` is on chain, paying for it at most once: a recorded
/// submission is looked up (and sent again when the chain does not know it) before a new one is
/// signed, recorded and sent.
async fn submit_once(worker: &Worker, task: &Task, upload: &ZgUpload) -> Result<(), StepError> {
    let root = upload.root();
    if let Some(recorded) = worker.store.zg_upload(&task.id).await?
        && recorded.root == root
        && let Some((hash, raw)) = recorded.submission
    {
        match worker.chain.rebroadcast(&raw, hash).await {
            Ok(Some(_)) => {
                worker
                    .task_log(
                        &task.id,
                        format!("the Flow submission {hash} recorded before a restart is on chain: not paid again"),
                    )
                    .await;
                return Ok(());
            }
            Ok(None) | Err(ContractError::Failed(_)) => {
                worker
                    .store
                    .zg_clear_submission(&task.id, worker.clock.now())
                    .await?;
                worker
                    .task_log(
                        &task.id,
                        format!("the recorded Flow submission {hash} was never mined (nothing paid): submitting again"),
                    )
                    .await;
            }
            Err(e) => return Err(chain_err("Flow.submit (sending the recorded one again)", e)),
        }
    }
    let tx = upload
        .submit_request(worker.chain.provider(), worker.chain.address)
        .await
        .map_err(storage_err)?;
    let (store, crash, id, now) = (&worker.store, &worker.crash, &task.id, worker.clock.now());
    let receipt = worker
        .chain
        .send_recorded(tx, |hash, raw| async move {
            store
                .zg_record_submission(id, root, hash, &raw, now)
                .await
                .map_err(|e| e.to_string())?;
            crash.hit("after-zg-submit-recorded");
            Ok(())
        })
        .await
        .map_err(|e| match e {
            RecordedSendError::Chain(e) => chain_err("Flow.submit", e),
            RecordedSendError::Record(e) => StepError::Retry(e),
        })?;
    worker.crash.hit("after-zg-submit");
    worker
        .task_log(
            &task.id,
            format!(
                "Flow submission {} mined: the 0G Storage fee is paid",
                receipt.transaction_hash
            ),
        )
        .await;
    Ok(())
}

/// A storage failure: a configuration that cannot work fails the task; the rest is retried.
fn storage_err(e: StorageError) -> StepError {
    match e {
        StorageError::Config(_) => StepError::Fail(format!("0G Storage: {e}")),
        e => StepError::Retry(format!("0G Storage: {e}")),
    }
}
