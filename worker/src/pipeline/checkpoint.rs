//! Sealed training checkpoints and resume (docs/provider-guide.md "Checkpoints").
//!
//! A model with `checkpoint_steps = K` (measured: part of the ConfigDocument) gets, for every run of a
//! task, a checkpoint scratch directory in tmpfs, the task uid's and 0700 ([`exec::scratch`]). The
//! script's trainer writes `checkpoint-<step>` there every K steps and says so (`checkpoint` event,
//! `sealtune.CheckpointCallback`); the worker then:
//!
//! 1. moves it out of the task uid's reach and freezes it (root's, 0700, top-down: the script cannot
//!    swap a file for a link while the worker reads it as root),
//! 2. seals it in the deliverable format (zip, AES-256-GCM chunks, PROTOCOL.md §4) with a fresh random
//!    key into `<task dir>/checkpoints/<step>.sealed`, the tag digest signed by the TEE signer,
//! 3. wraps that key with the task's checkpoint key ([`crate::attest::Attestation::checkpoint_key`]:
//!    derived in the TEE, never stored) under AES-256-GCM, the AAD binding the task, the step and the
//!    file's tag digest ([`wrap_aad`]), and records the row (`task_checkpoints`),
//! 4. deletes the plaintext, and the sealed checkpoints older than the last [`KEEP`].
//!
//! Before a run, the task's last recorded checkpoint is opened (key unwrapped, tag digest compared
//! with the row, signature and every chunk checked) and unzipped into the fresh scratch directory,
//! handed to the task uid: `sealtune.checkpointing().resume_from` names it, and the stock script
//! calls `trainer.train(resume_from_checkpoint=...)`. A checkpoint that does not open (tampered,
//! truncated, or sealed under another config's key) is refused: every checkpoint of the task is
//! deleted and training starts from step 0, as the task log says.
//!
//! The checkpoints of a task are deleted when it trained (its model is sealed), failed or was
//! cancelled, and with its files at retention; a graceful stop keeps them (the task resumes).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use alloy::primitives::B256;
use sealtune_protocol::deliverable::{self, OsRng, SealOptions};

use crate::app::Worker;
use crate::exec::{CheckpointSpec, scratch};
use crate::store::Task;
use crate::store::checkpoint::CheckpointRow;

/// Sealed checkpoints kept per task (the older ones are deleted as new ones are sealed).
pub const KEEP: usize = 2;
/// The scratch purpose (`exec::scratch`) of the trainer's checkpoint directory.
const SCRATCH: &str = "checkpoints";
/// Where the worker moves a checkpoint before sealing it, and unpacks one to resume (root's, 0700).
const STAGING: &str = "staging";
/// The sealed files, in the task directory.
const SEALED_DIR: &str = "checkpoints";

/// The task's sealed checkpoint of `step`.
fn sealed_file(task_dir: &Path, step: u64) -> PathBuf {
    task_dir.join(SEALED_DIR).join(format!("{step}.sealed"))
}

/// What the wrap of a checkpoint's key is bound to.
pub fn wrap_aad(task_id: &str, step: u64, tag_digest: &[u8; 32]) -> Vec<u8> {
    let mut aad = b"sealtune/checkpoint/v1\0".to_vec();
    aad.extend_from_slice(task_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&step.to_be_bytes());
    aad.extend_from_slice(tag_digest);
    aad
}

fn cipher(task_key: &[u8; 32]) -> aes_gcm::Aes256Gcm {
    aes_gcm::Aes256Gcm::new(aes_gcm::Key::<aes_gcm::Aes256Gcm>::from_slice(task_key))
}

/// `nonce ‖ ciphertext ‖ tag` of the file key `key`, under the task's checkpoint key.
fn wrap(task_key: &[u8; 32], aad: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut nonce);
    let sealed = cipher(task_key)
        .encrypt(
            aes_gcm::Nonce::from_slice(&nonce),
            Payload { msg: key, aad },
        )
        .map_err(|_| "wrapping the checkpoint key failed".to_owned())?;
    Ok([nonce.as_slice(), &sealed].concat())
}

/// The file key of [`wrap`]; refused unless the task key and `aad` are the ones it was wrapped with.
fn unwrap(
    task_key: &[u8; 32],
    aad: &[u8],
    wrapped: &[u8],
) -> Result<deliverable::DeliverableKey, String> {
    let refused = || {
        "its key does not unwrap with this TEE's checkpoint key (another config, or an edited record)"
            .to_owned()
    };
    let (nonce, sealed) = wrapped.split_at_checked(12).ok_or_else(refused)?;
    let plain = zeroize::Zeroizing::new(
        cipher(task_key)
            .decrypt(
                aes_gcm::Nonce::from_slice(nonce),
                Payload { msg: sealed, aad },
            )
            .map_err(|_| refused())?,
    );
    let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| refused())?;
    Ok(deliverable::DeliverableKey::from_bytes(bytes))
}

/// Before a run of `task`: a fresh checkpoint scratch directory for `uid`, with the task's last
/// sealed checkpoint unpacked in it when one opens. `None` when the model does not checkpoint (or
/// scratch cannot be made: the task log says why, and the run goes on without checkpoints).
pub(super) async fn prepare(
    worker: &Arc<Worker>,
    task: &Task,
    every: u32,
    uid: Option<u32>,
) -> Option<CheckpointSpec> {
    if every == 0 {
        return None;
    }
    let data_dir = worker.config.data_dir.clone();
    let id = task.id.clone();
    let made = tokio::task::spawn_blocking(move || {
        // What a killed run left (this purpose only: another helper's scratch is its own).
        let staging = scratch::worker_scratch(&data_dir).join(&id).join(STAGING);
        crate::exec::sandbox::uid::remove_any(&staging)?;
        scratch::create(&data_dir, &id, SCRATCH, uid)
    })
    .await;
    let dir = match made {
        Ok(Ok(dir)) => dir,
        Ok(Err(e)) => {
            let line = format!("checkpoints are off for this run: no private tmpfs scratch ({e})");
            worker.task_log(&task.id, line).await;
            return None;
        }
        Err(e) => {
            tracing::error!("checkpoint scratch: {e}");
            return None;
        }
    };
    let resume_from = resume_point(worker, task, &dir, uid).await;
    Some(CheckpointSpec {
        dir,
        every,
        resume_from,
    })
}

/// The task's last sealed checkpoint, unpacked into `dir` for `uid`; `None` (every checkpoint
/// deleted, the log saying why) when it does not open.
async fn resume_point(
    worker: &Arc<Worker>,
    task: &Task,
    dir: &Path,
    uid: Option<u32>,
) -> Option<PathBuf> {
    let rows = match worker.store.checkpoints(&task.id).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(task = task.id, "store: {e}");
            return None;
        }
    };
    let row = rows.last()?.clone();
    let started = std::time::Instant::now();
    let w = worker.clone();
    let (id, dir2) = (task.id.clone(), dir.to_path_buf());
    let step = row.step;
    let opened = tokio::task::spawn_blocking(move || unseal(&w, &id, &row, &dir2, uid))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match opened {
        Ok(path) => {
            let line = format!(
                "resuming from the sealed checkpoint of step {step} (opened in {} ms)",
                started.elapsed().as_millis()
            );
            worker.task_log(&task.id, line).await;
            Some(path)
        }
        Err(why) => {
            let line = format!(
                "the sealed checkpoint of step {step} is refused: {why}; every checkpoint of the task is deleted and training starts from step 0"
            );
            worker.task_log(&task.id, line).await;
            discard_sealed(worker, &task.id).await;
            None
        }
    }
}

/// Opens the sealed checkpoint `row` of `task_id` into `dir/checkpoint-<step>`, the task uid's.
fn unseal(
    worker: &Worker,
    task_id: &str,
    row: &CheckpointRow,
    dir: &Path,
    uid: Option<u32>,
) -> Result<PathBuf, String> {
    let sealed = sealed_file(&worker.task_dir(task_id), row.step);
    let recorded = B256::from(row.tag_digest);
    let found = deliverable::tag_digest(
        &mut std::fs::File::open(&sealed).map_err(|e| format!("{}: {e}", sealed.display()))?,
        deliverable::ChunkLen::WIRE,
    )
    .map_err(|e| e.to_string())?;
    if found != recorded {
        return Err("the sealed file is not the one recorded (its tags differ)".into());
    }
    let key = unwrap(
        &worker.attest.checkpoint_key(task_id),
        &wrap_aad(task_id, row.step, &row.tag_digest),
        &row.wrapped_key,
    )?;
    let staging = staging_dir(worker, task_id)?;
    let zip = staging.join("resume.zip");
    let unpacked = staging.join("resume");
    deliverable::open_file(&sealed, &zip, &key, worker.attest.signer())
        .map_err(|e| e.to_string())?;
    let result =
        deliverable::unzip_safely(&zip, &unpacked, &Default::default()).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&zip);
    result?;
    let target = dir.join(format!("checkpoint-{}", row.step));
    std::fs::rename(unpacked.join(deliverable::ZIP_ROOT), &target)
        .map_err(|e| format!("placing the checkpoint: {e}"))?;
    let _ = crate::exec::sandbox::uid::remove_any(&unpacked);
    scratch::hand_over(&target, uid).map_err(|e| format!("handing it to the task: {e}"))?;
    Ok(target)
}

/// The root-only staging directory of the task's scratch, emptied.
fn staging_dir(worker: &Worker, task_id: &str) -> Result<PathBuf, String> {
    let dir = scratch::worker_scratch(&worker.config.data_dir)
        .join(task_id)
        .join(STAGING);
    scratch::root_dir(&dir, 0o700).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The script's trainer wrote `checkpoint-<step>` (a `checkpoint` event of rank 0): seal it, record
/// it, delete the plaintext and the checkpoints past [`KEEP`]. Failures are logged to the task (the
/// training goes on; the run can resume only from what was sealed).
pub(super) async fn on_saved(worker: &Arc<Worker>, task_id: &str, step: u64, loss: Option<f64>) {
    let started = std::time::Instant::now();
    let w = worker.clone();
    let id = task_id.to_owned();
    let sealed = tokio::task::spawn_blocking(move || seal(&w, &id, step, loss))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let line = match sealed {
        Ok(row) => {
            let line = format!(
                "checkpoint of step {step} sealed ({} bytes in {} ms)",
                row.sealed_bytes,
                started.elapsed().as_millis()
            );
            if let Err(e) = worker.store.add_checkpoint(task_id, &row).await {
                tracing::error!(task = task_id, "store: {e}");
                return;
            }
            worker.crash.hit("after-checkpoint-sealed");
            prune(worker, task_id).await;
            line
        }
        Err(why) => format!("checkpoint of step {step} not sealed: {why}"),
    };
    worker.task_log(task_id, line).await;
}

/// Seals `checkpoint-<step>` of the task's scratch (see the module docs, steps 1 to 3).
fn seal(
    worker: &Worker,
    task_id: &str,
    step: u64,
    loss: Option<f64>,
) -> Result<CheckpointRow, String> {
    let data_dir = &worker.config.data_dir;
    let written =
        scratch::task_scratch(data_dir, task_id, SCRATCH).join(format!("checkpoint-{step}"));
    let staging = staging_dir(worker, task_id)?;
    let frozen = staging.join(format!("checkpoint-{step}"));
    let _ = crate::exec::sandbox::uid::remove_any(&frozen);
    let meta =
        std::fs::symlink_metadata(&written).map_err(|e| format!("{}: {e}", written.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", written.display()));
    }
    std::fs::rename(&written, &frozen).map_err(|e| format!("moving it to staging: {e}"))?;
    let result = seal_frozen(worker, task_id, step, loss, &frozen);
    let _ = crate::exec::sandbox::uid::remove_any(&frozen);
    result
}

fn seal_frozen(
    worker: &Worker,
    task_id: &str,
    step: u64,
    loss: Option<f64>,
    frozen: &Path,
) -> Result<CheckpointRow, String> {
    scratch::freeze(frozen).map_err(|e| format!("taking it from the task: {e}"))?;
    let task_dir = worker.task_dir(task_id);
    let out_dir = task_dir.join(SEALED_DIR);
    scratch::root_dir(&out_dir, 0o700).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let target = sealed_file(&task_dir, step);
    let part = target.with_extension("sealed.part");
    let sealed = deliverable::seal_dir_to_file(frozen, &part, &mut OsRng, &SealOptions::default())
        .map_err(|e| e.to_string())?;
    let signature = deliverable::sign_tags(worker.attest.signing_key(), &sealed.tag_digest);
    deliverable::finish(&part, &signature).map_err(|e| e.to_string())?;
    std::fs::rename(&part, &target).map_err(|e| e.to_string())?;
    let tag_digest = sealed.tag_digest.0;
    let wrapped_key = wrap(
        &worker.attest.checkpoint_key(task_id),
        &wrap_aad(task_id, step, &tag_digest),
        sealed.key.as_bytes(),
    )?;
    Ok(CheckpointRow {
        step,
        created_at: worker.clock.now(),
        sealed_bytes: sealed.file_len,
        loss,
        tag_digest,
        wrapped_key,
    })
}

/// Deletes the sealed checkpoints of the task past the last [`KEEP`].
async fn prune(worker: &Worker, task_id: &str) {
    let Ok(rows) = worker.store.checkpoints(task_id).await else {
        return;
    };
    let old = rows.len().saturating_sub(KEEP);
    for row in rows.iter().take(old) {
        let _ = std::fs::remove_file(sealed_file(&worker.task_dir(task_id), row.step));
        if let Err(e) = worker.store.remove_checkpoint(task_id, row.step).await {
            tracing::error!(task = task_id, "store: {e}");
        }
    }
}

/// After a run, whatever its end: the task's plaintext scratch is deleted.
pub(super) async fn clear_scratch(worker: &Worker, task_id: &str) {
    let (data_dir, id) = (worker.config.data_dir.clone(), task_id.to_owned());
    let removed = tokio::task::spawn_blocking(move || scratch::remove_task(&data_dir, &id)).await;
    if let Ok(Err(e)) = removed {
        tracing::error!(task = task_id, "removing the checkpoint scratch: {e}");
    }
}

/// The task trained, failed or was cancelled: its checkpoints (sealed and scratch) are deleted.
pub async fn discard(worker: &Worker, task_id: &str) {
    clear_scratch(worker, task_id).await;
    discard_sealed(worker, task_id).await;
}

async fn discard_sealed(worker: &Worker, task_id: &str) {
    let _ = crate::exec::sandbox::uid::remove_any(&worker.task_dir(task_id).join(SEALED_DIR));
    if let Err(e) = worker.store.remove_checkpoints(task_id).await {
        tracing::error!(task = task_id, "store: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_for_its_task_step_digest_and_key() {
        let task_key = [7u8; 32];
        let file_key = [9u8; 32];
        let digest = [1u8; 32];
        let aad = wrap_aad("task-a", 4, &digest);
        let wrapped = wrap(&task_key, &aad, &file_key).unwrap();
        let opened = unwrap(&task_key, &aad, &wrapped).unwrap();
        assert_eq!(opened.as_bytes(), &file_key);
        for other in [
            wrap_aad("task-b", 4, &digest),
            wrap_aad("task-a", 2, &digest),
            wrap_aad("task-a", 4, &[2u8; 32]),
        ] {
            assert!(unwrap(&task_key, &other, &wrapped).is_err());
        }
        assert!(
            unwrap(&[8u8; 32], &aad, &wrapped).is_err(),
            "another TEE key"
        );
        let mut edited = wrapped.clone();
        edited[20] ^= 1;
        assert!(unwrap(&task_key, &aad, &edited).is_err());
        assert!(unwrap(&task_key, &aad, &wrapped[..11]).is_err());
    }
}
