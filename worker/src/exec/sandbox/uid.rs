//! The per-task uid: leasing one from the configured range, handing the task directory to it,
//! killing every process it has, and taking the directory back.
//!
//! A lease is an exclusive `flock` on `/run/sealtune/task-uids/<uid>.lock`, held while the task runs:
//! machine-wide, so two workers (or two tests) on one machine never share a uid, and released by the
//! kernel if the worker dies. A uid is killed clean (`kill(-1)` as that uid) when leased, in case a
//! dead worker left processes behind, and again when the task ends.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Where the lease files live (root-only).
pub const LEASE_DIR: &str = "/run/sealtune/task-uids";

/// A uid (and the gid of the same number) held for one task.
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
    _lock: File,
}

impl UidLease {
    /// The leased uid (the gid has the same number).
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

/// Leases the first free uid of `base..base + count`.
pub fn lease(base: u32, count: u32) -> Result<UidLease, String> {
    let dir = Path::new(LEASE_DIR);
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {LEASE_DIR}: {e}"))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for uid in (0..count).filter_map(|n| base.checked_add(n)) {
        let path = dir.join(format!("{uid}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        if file.try_lock().is_ok() {
            return Ok(UidLease { uid, _lock: file });
        }
    }
    Err(format!(
        "every task uid of {base}..{} is in use",
        base.saturating_add(count)
    ))
}

/// The shared writable directories where a task uid can leave files behind.
pub const SHARED_TMP_DIRS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];

/// `sealtune-worker sandbox-reap <uid> [--clean-tmp]` (started by the worker, not by hand): becomes
/// `uid`, sends `SIGKILL` to every process it may signal, i.e. every process of that uid, until none
/// is left; with `clean_tmp` then deletes what the uid left in [`SHARED_TMP_DIRS`] (neither another
/// task nor the next one leased the same uid may find it; call it only while the uid owns no task
/// directory, which could lie there). Runs before any thread exists, so the raw per-thread `setuid`
/// drops the whole process.
///
/// Exit status: 0 done, 1 could not become `uid` or signal.
pub fn reap_main(uid: u32, clean_tmp: bool) -> std::process::ExitCode {
    match reap_as(uid, clean_tmp) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealtune-worker sandbox-reap: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn reap_as(uid: u32, clean_tmp: bool) -> Result<(), String> {
    if uid == 0 {
        return Err("refusing to reap uid 0".into());
    }
    become_uid(uid)?;
    kill_all_of_self_uid(uid)?;
    if clean_tmp {
        for dir in SHARED_TMP_DIRS {
            remove_owned_entries(Path::new(dir), uid);
        }
    }
    Ok(())
}

/// Removes the entries of `dir` owned by `uid` (with their trees); errors are skipped.
fn remove_owned_entries(dir: &Path, uid: u32) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.metadata().is_ok_and(|m| m.uid() == uid) {
            let _ = remove_any(&entry.path());
        }
    }
}

fn kill_all_of_self_uid(uid: u32) -> Result<(), String> {
    for _ in 0..20 {
        // SAFETY: kill(2) with pid -1 takes no pointers; as an unprivileged uid it reaches exactly
        // the processes of that uid (never this one).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(-1, libc::SIGKILL) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(()),
                _ => Err(format!("kill(-1) as uid {uid}: {e}")),
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // What is left are zombies waiting for their reaper: dead already.
    Ok(())
}

/// Drops every group and becomes `uid`/`gid = uid` for good (real, effective and saved ids),
/// checking that the drop cannot be undone. The calling thread must be the only one.
pub fn become_uid(uid: u32) -> Result<(), String> {
    use rustix::process::{Gid, Uid};
    let gid = Gid::from_raw(uid);
    rustix::thread::set_thread_groups(&[]).map_err(|e| format!("setgroups([]): {e}"))?;
    rustix::thread::set_thread_gid(gid).map_err(|e| format!("setgid({uid}): {e}"))?;
    rustix::thread::set_thread_uid(Uid::from_raw(uid))
        .map_err(|e| format!("setuid({uid}): {e}"))?;
    if rustix::process::getuid().as_raw() != uid
        || rustix::process::geteuid().as_raw() != uid
        || rustix::process::getgid().as_raw() != uid
        || rustix::process::getegid().as_raw() != uid
    {
        return Err(format!("the switch to uid {uid} did not take"));
    }
    if rustix::thread::set_thread_uid(Uid::ROOT).is_ok() {
        return Err("uid 0 could be regained after the switch".into());
    }
    Ok(())
}

/// Runs `sealtune-worker sandbox-reap <uid> [--clean-tmp]` and waits for it.
pub async fn reap(worker_exe: &Path, uid: u32, clean_tmp: bool) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(worker_exe);
    cmd.arg("sandbox-reap").arg(uid.to_string());
    if clean_tmp {
        cmd.arg("--clean-tmp");
    }
    let status = cmd
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| format!("starting the reaper for uid {uid}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the reaper for uid {uid} failed ({status})"))
    }
}

/// Hands the task directory to `uid` for the run: the directory itself and `writable` (which must
/// be inside it) become `uid`'s, mode 0700, plus the script's `HOME` and `TMPDIR` inside it. What
/// the worker wrote there stays root's and readable (0644), so the script reads its inputs but
/// cannot replace them.
pub fn hand_over(task_dir: &Path, writable: &[&Path], uid: u32) -> std::io::Result<()> {
    for sub in [super::env::HOME_DIR, super::env::TMP_DIR] {
        let p = task_dir.join(sub);
        remove_any(&p)?;
        std::fs::create_dir(&p)?;
        give(&p, uid)?;
    }
    for p in writable {
        if p.starts_with(task_dir) && p.is_dir() {
            give(p, uid)?;
        }
    }
    give(task_dir, uid)
}

/// Takes the task directory back after the run (its uid's processes are all dead by then): owned
/// by root again, 0700, so nothing the script left can be followed by the worker's later writes
/// (the worker also removes a file before writing it).
pub fn take_back(task_dir: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(task_dir)?
        .file_type()
        .is_symlink()
    {
        return Err(std::io::Error::other(format!(
            "{} is a symbolic link",
            task_dir.display()
        )));
    }
    std::os::unix::fs::lchown(task_dir, Some(0), Some(0))?;
    std::fs::set_permissions(task_dir, std::fs::Permissions::from_mode(0o700))
}

/// `uid:uid`, mode 0700, never following a link.
fn give(path: &Path, uid: u32) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is a symbolic link",
            path.display()
        )));
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Removes a file, link or directory tree at `path` without following links; absent is fine.
pub fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies `src` (which the task uid may not read, e.g. an object of the store) to `dest` inside the
/// task directory, replacing whatever is there without following it; the copy is root's, 0644.
pub fn stage_copy(src: &Path, dest: &Path) -> std::io::Result<PathBuf> {
    remove_any(dest)?;
    let mut from = File::open(src)?;
    let mut to = File::options().write(true).create_new(true).open(dest)?;
    std::io::copy(&mut from, &mut to)?;
    to.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    Ok(dest.to_path_buf())
}
