//! The one rule for a task's plaintext scratch space (checkpoints the trainer writes, a merged model
//! a helper builds): in memory (tmpfs, `/dev/shm`), never on persistent disk, and private to the
//! task's uid.
//!
//! Layout, for a worker whose data directory is `D` and a task `T`:
//!
//! ```text
//! /dev/shm/sealtune-<first 8 bytes of sha256(D), hex>/   root, 0711 (one per worker on a host)
//!     T/                                                 root, 0711
//!         <purpose>/                                     the task uid, 0700 (root without one)
//! ```
//!
//! Another task uid can traverse the root-owned levels (it must, to reach its own directory) but
//! cannot list them, and cannot open, list or write another task's `<purpose>` directory (0700,
//! owned by that task's uid). The reaper's clean-up of `/dev/shm` (`uid::reap`) removes only entries
//! directly in `/dev/shm` owned by the uid: the root-owned worker directory is never one of them.
//! The worker deletes a task's scratch when its run ends ([`remove_task`]), and tmpfs is empty after
//! a reboot; after a worker crash the next run of the task starts by deleting it.
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Where scratch lives: the host's tmpfs.
pub const SCRATCH_ROOT: &str = "/dev/shm";
/// `statfs` magic of tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The worker's scratch directory (see the module docs).
pub fn worker_scratch(data_dir: &Path) -> PathBuf {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let tag = hex::encode(digest.get(..8).unwrap_or_default());
    Path::new(SCRATCH_ROOT).join(format!("sealtune-{tag}"))
}

/// The task's scratch directory for `purpose` (a plain name: `checkpoints`, `merged`...).
pub fn task_scratch(data_dir: &Path, task_id: &str, purpose: &str) -> PathBuf {
    worker_scratch(data_dir).join(task_id).join(purpose)
}

/// Creates the task's scratch directory for `purpose` afresh (whatever was there is deleted, never
/// followed): the levels above root's, 0711; the directory itself `uid`'s (root's without one), 0700.
/// Refused when [`SCRATCH_ROOT`] is not a tmpfs (plaintext would reach a disk).
pub fn create(
    data_dir: &Path,
    task_id: &str,
    purpose: &str,
    uid: Option<u32>,
) -> std::io::Result<PathBuf> {
    check_tmpfs(Path::new(SCRATCH_ROOT))?;
    let worker = worker_scratch(data_dir);
    let task = worker.join(task_id);
    for level in [&worker, &task] {
        root_dir(level, 0o711)?;
    }
    let dir = task.join(purpose);
    super::sandbox::uid::remove_any(&dir)?;
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(uid) = uid {
        std::os::unix::fs::lchown(&dir, Some(uid), Some(uid))?;
    }
    Ok(dir)
}

/// A root-owned directory only the worker writes (created when absent, its owner and mode set
/// again when present; a link there is refused).
pub fn root_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(path)?,
        Err(e) => return Err(e),
    }
    std::os::unix::fs::lchown(path, Some(0), Some(0)).or_else(|e| {
        // Not root (unit tests, a dev run): the directory is the worker's own.
        if rustix::process::geteuid().is_root() {
            Err(e)
        } else {
            Ok(())
        }
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Deletes everything of the task in scratch (absent is fine).
pub fn remove_task(data_dir: &Path, task_id: &str) -> std::io::Result<()> {
    super::sandbox::uid::remove_any(&worker_scratch(data_dir).join(task_id))
}

/// Takes `dir` (and everything below it) away from the task uid, top-down and never following a
/// link: each directory becomes root's, 0700, before its entries are visited, so once a level is
/// taken nothing can be added to it or replaced in it (even through a directory descriptor the
/// script kept open). What is left is a tree the worker can read without a script racing it.
pub fn freeze(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    root_dir(dir, 0o700)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            freeze(&entry.path())?;
        }
    }
    Ok(())
}

/// Gives a tree the worker wrote in scratch to `uid` (directories 0700, files 0600), never
/// following a link.
pub fn hand_over(dir: &Path, uid: Option<u32>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    if let Some(uid) = uid {
        std::os::unix::fs::lchown(dir, Some(uid), Some(uid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            hand_over(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

fn check_tmpfs(path: &Path) -> std::io::Result<()> {
    let stat = rustix::fs::statfs(path)?;
    #[allow(clippy::useless_conversion)] // f_type's width differs between targets
    if i64::from(stat.f_type) != TMPFS_MAGIC {
        return Err(std::io::Error::other(format!(
            "{} is not a tmpfs: plaintext scratch would reach a disk",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_per_worker_and_per_task() {
        let a = task_scratch(Path::new("/var/lib/a"), "t1", "checkpoints");
        let b = task_scratch(Path::new("/var/lib/b"), "t1", "checkpoints");
        assert_ne!(a, b);
        assert!(a.starts_with(SCRATCH_ROOT));
        assert!(a.ends_with("t1/checkpoints"));
    }

    #[test]
    fn a_disk_is_not_scratch() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The temporary directory of the tests is on a disk here; /dev/shm is a tmpfs.
        if check_tmpfs(dir.path()).is_ok() {
            return;
        }
        assert!(check_tmpfs(dir.path()).is_err());
        assert!(check_tmpfs(Path::new(SCRATCH_ROOT)).is_ok());
    }
}
