//! The sealed model file on disk, crash-safe: a worker killed at any point between training and
//! delivery never delivers a file the customer cannot decrypt.
//!
//! The rules, in the order the steps run (the executor child seals in the script, or finalize seals
//! the output directory; both follow them):
//!
//! 1. The file is sealed under a temporary name ([`part_path`]) and synced there.
//! 2. The key it was sealed with is committed, ECIES-wrapped to the customer, together with the
//!    file's tag digest (`keccak256(tag₀ ‖ tag₁ ‖ …)`, which only that key, IV and plaintext give),
//!    before the file can be used. (A child-sealed file's key was committed before the child saw it;
//!    its digest is committed once the child reported it and the file's own tags agree.)
//! 3. The file is renamed to [`sealed_path`] and the directory synced.
//!
//! After a crash, a file under either name is used only when its tags give the committed digest
//! ([`recover`]): a partial file, one from an earlier attempt or one sealed with a key never
//! committed is discarded, and sealing is done again (from the training output when it is still
//! there, else by training again). Signing the tags later rewrites only the signature at the front
//! of the file, which the digest does not cover.
use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use sealtune_protocol::deliverable;

use super::StepError;

/// Where the sealed model lies once complete and committed (the tags are signed in place there).
pub fn sealed_path(task_dir: &Path) -> PathBuf {
    task_dir.join("model.sealed")
}

/// The temporary name a sealed model is written under (by the executor child or by finalize).
pub fn part_path(task_dir: &Path) -> PathBuf {
    task_dir.join("model.sealed.part")
}

/// The tag digest of the sealed file at `path`, read from its tags alone (one seek per chunk);
/// `None` when it is missing or no sealed file has its length.
pub(super) async fn file_digest(path: &Path) -> Option<B256> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).ok()?;
        deliverable::tag_digest(&mut f, Default::default()).ok()
    })
    .await
    .ok()
    .flatten()
}

/// Whether the sealed file of the committed seal (`committed`: its tag digest) is in place after a
/// restart: a file at [`sealed_path`] whose tags give `committed`, or one at [`part_path`], then
/// renamed into place. Every other file under either name is deleted. `false`: seal again.
pub(super) async fn recover(dir: &Path, committed: Option<B256>) -> Result<bool, StepError> {
    let (sealed, part) = (sealed_path(dir), part_path(dir));
    for (path, in_place) in [(&sealed, true), (&part, false)] {
        if !tokio::fs::try_exists(path).await.unwrap_or(false) {
            continue;
        }
        let digest = file_digest(path).await;
        if committed.is_some() && digest == committed {
            if !in_place {
                promote(dir).await?;
            }
            return Ok(true);
        }
        tracing::warn!(
            file = %path.display(),
            "discarding a sealed file that does not match the committed key (partial, or from another attempt)"
        );
        remove(path).await?;
    }
    Ok(false)
}

/// Renames the file at [`part_path`] to [`sealed_path`] and syncs the directory (step 3).
pub(super) async fn promote(dir: &Path) -> Result<(), StepError> {
    tokio::fs::rename(part_path(dir), sealed_path(dir))
        .await
        .map_err(|e| StepError::Retry(format!("renaming the sealed model into place: {e}")))?;
    sync_dir(dir).await
}

/// Deletes both sealed files (a new attempt starts clean) and syncs the directory.
pub(super) async fn discard(dir: &Path) -> Result<(), StepError> {
    remove(&sealed_path(dir)).await?;
    remove(&part_path(dir)).await
}

async fn remove(path: &Path) -> Result<(), StepError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StepError::Retry(format!(
                "deleting {}: {e}",
                path.display()
            )));
        }
    }
    sync_dir(path.parent().unwrap_or(Path::new("."))).await
}

/// Makes the renames and deletions in `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), StepError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(StepError::retry)?
        .map_err(|e| StepError::Retry(format!("syncing the task directory: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtune_protocol::deliverable::{OsRng, SealOptions};

    /// A sealed file of `content` at `path`; returns its tag digest.
    fn seal(dir: &Path, path: &Path, content: &[u8]) -> B256 {
        let model = dir.join("model-src");
        let _ = std::fs::remove_dir_all(&model);
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("adapter.safetensors"), content).unwrap();
        deliverable::seal_dir_to_file(&model, path, &mut OsRng, &SealOptions::default())
            .unwrap()
            .tag_digest
    }

    #[tokio::test]
    async fn a_committed_part_file_is_renamed_into_place() {
        let d = tempfile::tempdir().unwrap();
        let digest = seal(d.path(), &part_path(d.path()), b"weights");
        assert!(recover(d.path(), Some(digest)).await.unwrap());
        assert!(sealed_path(d.path()).is_file());
        assert!(!part_path(d.path()).exists());
        assert_eq!(file_digest(&sealed_path(d.path())).await, Some(digest));
    }

    #[tokio::test]
    async fn a_partial_file_is_discarded() {
        let d = tempfile::tempdir().unwrap();
        let sealed = sealed_path(d.path());
        let digest = seal(d.path(), &sealed, &[7u8; 4096]);
        let len = std::fs::metadata(&sealed).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&sealed)
            .unwrap();
        f.set_len(len - 100).unwrap();
        assert!(!recover(d.path(), Some(digest)).await.unwrap());
        assert!(!sealed.exists(), "the partial file is gone");
    }

    #[tokio::test]
    async fn a_file_sealed_with_an_uncommitted_key_is_discarded() {
        let d = tempfile::tempdir().unwrap();
        let committed = seal(d.path(), &d.path().join("other"), b"weights");
        // The same plaintext sealed again: another key and IV, so other tags.
        seal(d.path(), &sealed_path(d.path()), b"weights");
        seal(d.path(), &part_path(d.path()), b"weights");
        assert!(!recover(d.path(), Some(committed)).await.unwrap());
        assert!(!sealed_path(d.path()).exists() && !part_path(d.path()).exists());
        // Nothing committed: nothing on disk is used.
        let digest = seal(d.path(), &sealed_path(d.path()), b"weights");
        assert!(!recover(d.path(), None).await.unwrap());
        assert!(!sealed_path(d.path()).exists());
        assert_ne!(digest, committed);
    }
}
