//! Confidential datasets in the worker (docs/PROTOCOL.md §8): where an envelope
//! (`sealtune_protocol::envelope`) is checked and where its plaintext may exist.
//!
//! - **Upload** (`POST /v1/user/:addr/dataset`): an envelope is stored as received, ciphertext, once
//!   its header checks out: sealed to this worker's dataset key, named and signed by the uploader.
//!   Nothing is decrypted; a plaintext upload (the official CLI's) is stored as before.
//! - **Setup and execute**: the stored (or 0G-fetched) envelope is opened for the task's user into
//!   [`PLAINTEXT_FILE`] in the task directory (root-only outside the run, the task uid's during it),
//!   counted or trained on, and removed with the prepared data once setup or the run ends
//!   ([`discard_plaintext`]). Every chunk must authenticate before the file is renamed into place.
//!
//! So at rest in the store and on 0G Storage a confidential dataset is ciphertext; its plaintext lives
//! only in the worker process and, during its task's run, in that task's sandbox.
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use sealtune_protocol::envelope::{self, EnvelopeError};

/// The plaintext of an opened envelope, in the task directory.
pub const PLAINTEXT_FILE: &str = "dataset.plain";

/// Whether the received upload at `path` is an envelope; an envelope must be sealed to
/// `dataset_key` by `uploader`, or it is refused.
pub fn check_upload(
    path: &Path,
    uploader: Address,
    dataset_key: &k256::PublicKey,
) -> Result<bool, EnvelopeError> {
    if !envelope::is_envelope_file(path)? {
        return Ok(false);
    }
    let mut file = std::fs::File::open(path)?;
    envelope::read_header(&mut file)?.check(uploader, dataset_key)?;
    Ok(true)
}

/// The plaintext dataset of `user`'s task: an envelope at `fetched` is opened into
/// `task_dir/`[`PLAINTEXT_FILE`] (readable by the task uid once the directory is handed over); a
/// plaintext dataset is `fetched` itself.
pub fn plaintext(
    fetched: &Path,
    task_dir: &Path,
    user: Address,
    secret: &k256::SecretKey,
) -> Result<PathBuf, EnvelopeError> {
    if !envelope::is_envelope_file(fetched)? {
        return Ok(fetched.to_path_buf());
    }
    let dst = task_dir.join(PLAINTEXT_FILE);
    crate::exec::sandbox::uid::remove_any(&dst)?;
    envelope::open_file(fetched, &dst, secret, user)?;
    use std::os::unix::fs::PermissionsExt as _;
    // The task directory is 0700 (root outside the run, the task uid during it): 0644 lets the
    // task uid read the file and nobody else reach it.
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644))?;
    Ok(dst)
}

/// Removes the plaintext of an opened envelope and the dataset the executor prepared from it
/// (`data_path`), when setup or a run is over.
pub fn discard_plaintext(task_dir: &Path, data_path: Option<&Path>) {
    use crate::exec::sandbox::uid::remove_any;
    for p in std::iter::once(task_dir.join(PLAINTEXT_FILE)).chain(data_path.map(Path::to_path_buf))
    {
        if let Err(e) = remove_any(&p) {
            tracing::error!(path = %p.display(), "cannot remove a dataset's plaintext: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use k256::ecdsa::SigningKey;
    use sealtune_protocol::sig::address_of;

    use super::*;

    #[test]
    fn an_upload_must_be_sealed_by_its_uploader_to_this_worker() {
        let dir = tempfile::tempdir().unwrap();
        let owner = SigningKey::from_slice(&[1; 32]).unwrap();
        let worker = k256::SecretKey::from_slice(&[2; 32]).unwrap();
        let other_worker = k256::SecretKey::from_slice(&[3; 32]).unwrap();
        let path = dir.path().join("up");
        let mut sealed = Vec::new();
        envelope::seal(
            &mut &b"{\"text\":\"x\"}\n"[..],
            &mut sealed,
            &owner,
            &worker.public_key(),
            &mut rand_core::OsRng,
        )
        .unwrap();
        std::fs::write(&path, &sealed).unwrap();
        let me = address_of(owner.verifying_key());
        assert!(check_upload(&path, me, &worker.public_key()).unwrap());
        assert!(matches!(
            check_upload(&path, Address::repeat_byte(9), &worker.public_key()),
            Err(EnvelopeError::NotOwner { .. })
        ));
        assert!(matches!(
            check_upload(&path, me, &other_worker.public_key()),
            Err(EnvelopeError::WrongRecipient { .. })
        ));
        std::fs::write(&path, b"{\"text\":\"plain\"}\n").unwrap();
        assert!(!check_upload(&path, me, &worker.public_key()).unwrap());
    }
}
