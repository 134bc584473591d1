//! Finalize (`Trained` → `Delivering` → `Delivered`): seal the output (or take the file the child
//! sealed), sign its tags with the TEE key, hash and store it, commit the seal, then announce it on
//! chain. After a crash the committed seal is reused, and the chain is read before announcing: a
//! deliverable already on chain is never announced or trained again.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes};
use sealtune_protocol::deliverable::{self, OsRng};

use super::execute::wrap_for_customer;
use super::{StepError, chain_err, enter, sealed_path};
use crate::app::Worker;
use crate::store::{Task, TaskState};

/// Finalize: seal (or take the child's sealed file), sign the tags with the TEE key, hash, store,
/// announce on chain.
pub(super) async fn finalize(worker: &Arc<Worker>, task: &Task) -> Result<(), StepError> {
    let user = task.user_address;
    enter(
        worker,
        task,
        &[TaskState::Trained, TaskState::Delivering],
        TaskState::Delivering,
    )
    .await?;
    // Already sealed and committed? (A restart after the seal.)
    let task = worker
        .store
        .get(&task.id)
        .await?
        .ok_or_else(|| StepError::fail("task vanished"))?;
    let root = match task.model_root_hash {
        Some(root) => {
            note_signer_change(worker, &task).await;
            root
        }
        None => seal_and_store(worker, &task).await?,
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

/// Logs when the committed seal's tags were signed by a TEE signer this worker no longer has.
async fn note_signer_change(worker: &Worker, task: &Task) {
    let signer = worker.attest.signer();
    if task.tee_signer != Some(signer) {
        let old = task
            .tee_signer
            .map_or_else(|| "?".to_owned(), |s| s.to_string());
        worker
            .task_log(
                &task.id,
                format!(
                    "note: this model's tag signature is by the previous TEE signer {old}; this worker now signs as {signer}"
                ),
            )
            .await;
    }
}

/// Seals now: the child's file if it sealed in-process (with the committed key), else the output
/// directory (with a new key). Then signs the tags, imports the file into the content-addressed
/// store and commits the seal. Returns the root hash (the sealed file's keccak256).
async fn seal_and_store(worker: &Worker, task: &Task) -> Result<B256, StepError> {
    let dir = worker.task_dir(&task.id);
    let sealed = sealed_path(&dir);
    let secret = if tokio::fs::try_exists(&sealed).await.unwrap_or(false) {
        task.encrypted_secret.clone().ok_or_else(|| {
            StepError::fail(
                "the sealed model has no committed key; the model must be trained again",
            )
        })?
    } else {
        seal_output(task, &dir, &sealed).await?
    };
    sign_sealed(worker.attest.signing_key().clone(), &sealed).await?;
    let stored = import_sealed(&worker.files, &dir, &sealed).await?;
    let keccak = stored.keccak;
    worker
        .store
        .set_sealed(
            &task.id,
            &stored.path,
            keccak,
            &secret,
            worker.attest.signer(),
            worker.clock.now(),
        )
        .await?;
    let _ = tokio::fs::remove_file(&sealed).await;
    worker.crash.hit("after-seal");
    worker
        .task_log(
            &task.id,
            format!(
                "model sealed for the customer ({} bytes); root hash {keccak} (0G storage root {})",
                stored.len, stored.root
            ),
        )
        .await;
    Ok(keccak)
}

/// Seals the training output directory into `sealed` with a new key; returns the key wrapped to
/// the customer.
async fn seal_output(task: &Task, dir: &Path, sealed: &Path) -> Result<Bytes, StepError> {
    let output = dir.join("output");
    if !output.is_dir() {
        return Err(StepError::fail(
            "the training output is gone; the model must be trained again",
        ));
    }
    let result = seal_dir(output, sealed).await?;
    wrap_for_customer(task, &result.key)
}

/// Seals the directory `output` into the file `sealed` with a new model key (zip `Stored`,
/// AES-256-GCM chunks, fsync), on a blocking thread. Public for `benches/finalize.rs`.
pub async fn seal_dir(output: PathBuf, sealed: &Path) -> Result<deliverable::Sealed, StepError> {
    let sealed = sealed.to_owned();
    tokio::task::spawn_blocking(move || {
        deliverable::seal_dir_to_file(&output, &sealed, &mut OsRng, &Default::default())
    })
    .await
    .map_err(StepError::retry)?
    .map_err(|e| StepError::fail(format!("sealing the model failed: {e}")))
}

/// Imports the sealed file into the content-addressed store in one hashing pass (keccak256 + 0G
/// root). A hard link in `dir` is imported so the sealed file stays until the hashes are committed:
/// a crash in between finds it and imports it again. Public for `benches/finalize.rs`.
pub async fn import_sealed(
    files: &crate::storage::Store,
    dir: &Path,
    sealed: &Path,
) -> Result<crate::storage::Stored, StepError> {
    let link = dir.join("model.sealed.import");
    let _ = tokio::fs::remove_file(&link).await;
    tokio::fs::hard_link(sealed, &link)
        .await
        .map_err(|e| StepError::Retry(format!("linking the sealed model: {e}")))?;
    files
        .import_file(&link)
        .await
        .map_err(|e| StepError::Retry(format!("storing the sealed model: {e}")))
}

/// Signs the tag digest of `sealed` (read back from the file: the child may have sealed it) with
/// the TEE key and patches the header (deterministic: signing again after a crash writes the same
/// bytes). Public for `benches/finalize.rs`.
pub async fn sign_sealed(key: deliverable::TeeSigningKey, sealed: &Path) -> Result<(), StepError> {
    let sealed = sealed.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut f = std::fs::File::open(&sealed).map_err(|e| e.to_string())?;
        let digest =
            deliverable::tag_digest(&mut f, Default::default()).map_err(|e| e.to_string())?;
        deliverable::finish(&sealed, &deliverable::sign_tags(&key, &digest))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(StepError::retry)?
    .map_err(|e| StepError::fail(format!("signing the sealed model failed: {e}")))
}

/// Whether the chain already has the deliverable of task `id`.
async fn on_chain(worker: &Worker, user: Address, id: &str) -> Result<bool, StepError> {
    Ok(worker
        .chain
        .deliverable(user, id)
        .await
        .map_err(|e| chain_err("reading the deliverable", e))?
        .is_some())
}
