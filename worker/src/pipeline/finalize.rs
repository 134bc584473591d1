//! Finalize (`Trained` → `Delivering` → `Delivered`): seal the output (or take the file the child
//! sealed), sign its tags with the TEE key, hash and store it, commit the seal, upload it to 0G
//! Storage when configured ([`super::publish`]), then announce it on chain. After a crash the committed seal is reused, and the chain is read before announcing: a
//! deliverable already on chain is never announced or trained again.
//!
//! A sealed file is used only when it matches the committed key ([`super::sealing`]); one that does
//! not (partial, or sealed with a key never committed) is discarded and the output sealed again, or,
//! when the output is gone too (the child sealed it), the task goes back to `SetUp` to train again.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes};
use sealtune_protocol::deliverable::{self, OsRng};

use super::execute::wrap_for_customer;
use super::{StepError, chain_err, enter, sealing};
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
        None => match seal_and_store(worker, &task).await? {
            Some(root) => root,
            None => return train_again(worker, &task).await,
        },
    };
    if worker.files.path_of(&root).is_none() {
        return Err(StepError::fail(
            "the sealed model file is missing from the store; it must be trained again",
        ));
    }

    // Announce, unless the chain already has it: with its 0G Storage root once uploaded there,
    // after the signed training report names that root (docs/PROTOCOL.md §9).
    if !on_chain(worker, user, &task.id).await? {
        let root = super::publish::announced_root(worker, &task, root).await?;
        if task.training_params.evaluation().is_none() {
            super::report::ensure_signed(worker, &task, root).await?;
        }
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

/// Seals now, unless the committed seal's file survived (the child's, or one finalize sealed before a
/// crash): then signs the tags, imports the file into the content-addressed store and commits the
/// seal. Returns the root hash (the sealed file's keccak256), or `None` when there is nothing left
/// to seal (train again).
async fn seal_and_store(worker: &Worker, task: &Task) -> Result<Option<B256>, StepError> {
    let dir = worker.task_dir(&task.id);
    let sealed = sealing::sealed_path(&dir);
    let recovered = sealing::recover(&dir, task.seal_tag_digest).await?;
    let secret = match (&task.encrypted_secret, recovered) {
        (Some(secret), true) => secret.clone(),
        _ => {
            if task.seal_tag_digest.is_some() {
                worker
                    .task_log(
                        &task.id,
                        "no sealed file matching the committed key survived the restart (what did not match was deleted): sealing again",
                    )
                    .await;
            }
            match seal_output(worker, task, &dir).await? {
                Some(secret) => secret,
                None => return Ok(None),
            }
        }
    };
    sign_sealed(worker.attest.signing_key().clone(), &sealed).await?;
    worker.crash.hit("after-sign");
    let stored = import_sealed(&worker.files, &dir, &sealed).await?;
    worker.crash.hit("after-import");
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
    Ok(Some(keccak))
}

/// Seals the training output directory with a new key, following the rules of [`sealing`]: under
/// the temporary name, then the key (wrapped to the customer) and the tag digest committed, then
/// renamed into place. Returns the wrapped key, or `None` when the output is gone or empty (the
/// child sealed it, and that file did not survive).
async fn seal_output(worker: &Worker, task: &Task, dir: &Path) -> Result<Option<Bytes>, StepError> {
    let output = dir.join("output");
    if !has_files(&output).await {
        return Ok(None);
    }
    let part = sealing::part_path(dir);
    let sealed = seal_dir(output, &part).await?;
    worker.crash.hit("after-seal-written");
    let secret = wrap_for_customer(task, &sealed.key)?;
    worker
        .store
        .set_model_key(
            &task.id,
            &secret,
            Some(sealed.tag_digest),
            worker.clock.now(),
        )
        .await?;
    worker.crash.hit("after-seal-committed");
    sealing::promote(dir).await?;
    worker.crash.hit("after-seal-renamed");
    Ok(Some(secret))
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

/// Whether `dir` is a directory with at least one entry.
async fn has_files(dir: &Path) -> bool {
    match tokio::fs::read_dir(dir).await {
        Ok(mut entries) => matches!(entries.next_entry().await, Ok(Some(_))),
        Err(_) => false,
    }
}

/// Nothing sealed survived and nothing is left to seal: back to `SetUp` to train again (nothing
/// was announced: the chain sees a deliverable only after its seal is committed).
async fn train_again(worker: &Worker, task: &Task) -> Result<(), StepError> {
    if enter(
        worker,
        task,
        &[TaskState::Trained, TaskState::Delivering],
        TaskState::SetUp,
    )
    .await?
    {
        worker
            .task_log(
                &task.id,
                "the sealed model did not survive a worker restart and the training output is gone: training again",
            )
            .await;
    }
    Ok(())
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
