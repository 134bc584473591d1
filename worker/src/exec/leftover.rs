//! What is left of an earlier run of a task: an executor that outlived the worker that started it.
//!
//! The executor normally dies with the worker (it asks the kernel for `SIGKILL` on the worker's
//! death, `child::die_with_parent`). This is the second layer, assuming that one failed: at spawn
//! the parent records the executor's pid (the leader of its own process group) and start time in
//! the task directory ([`PID_FILE`]); before the task runs again, [`kill_leftover`] kills that
//! process group if its leader is still the same process (same start time) and still an executor
//! of this task (`… exec <task dir>` on its command line), so a pid reused by another process is
//! never touched.
//!
//! Not covered: processes the script started that left the executor's process group, or that
//! outlived the executor itself (the group's leader gone, they cannot be told from a reused pid
//! here). The per-task uid of the sandbox is the wall that catches those.
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The task-directory file naming the running executor: `<pid> <start time>` (the start time in
/// clock ticks after boot, field 22 of `/proc/<pid>/stat`).
pub const PID_FILE: &str = "exec.pid";

/// How long [`kill_leftover`] waits for the killed executor to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Records the executor `pid` started for `task_dir` (best effort: a missing record only loses
/// this second layer).
pub(super) fn record(task_dir: &Path, pid: i32) {
    if let Some((_, start)) = stat(pid) {
        let _ = std::fs::write(task_dir.join(PID_FILE), format!("{pid} {start}\n"));
    }
}

/// Forgets the record once the executor was reaped.
pub(super) fn forget(task_dir: &Path) {
    let _ = std::fs::remove_file(task_dir.join(PID_FILE));
}

/// Kills the executor an earlier run of the task in `task_dir` left running, with its process group
/// (see the module docs), and waits until it is gone. Returns its pid when there was one.
pub fn kill_leftover(task_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(task_dir.join(PID_FILE)).ok()?;
    forget(task_dir);
    let mut parts = text.split_whitespace();
    let pid: i32 = parts.next()?.parse().ok()?;
    let start: u64 = parts.next()?.parse().ok()?;
    let alive = |pid| stat(pid).is_some_and(|(_, s)| s == start);
    if !alive(pid) || !is_executor_of(pid, task_dir) {
        return None;
    }
    let group = rustix::process::Pid::from_raw(pid)?;
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let deadline = Instant::now() + KILL_WAIT;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(pid)
}

/// `(process group, start time)` of a live process (a zombie counts as gone).
fn stat(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields 3.. follow the last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// Whether process `pid` runs `… exec <task_dir>` (the executor's argv: `<worker> exec <task dir>`).
fn is_executor_of(pid: i32, task_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"exec" && Path::new(std::ffi::OsStr::from_bytes(w[1])) == task_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    /// Live processes of process group `pgid`.
    fn members(pgid: i32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| stat(*pid).is_some_and(|(g, _)| g == pgid))
            .count()
    }

    /// `sh -c '<script>' exec <dir>`: a process group led by a shell whose argv holds `exec <dir>`,
    /// as the executor's does.
    fn fake_executor(dir: &Path, script: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .args(["-c", script, "exec"])
            .arg(dir)
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_leftover_executor_of_the_task_is_killed_with_its_group() {
        let d = tempfile::tempdir().unwrap();
        let mut leftover = fake_executor(d.path(), "sleep 30 & wait");
        let pid = leftover.id() as i32;
        record(d.path(), pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while members(pid) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(members(pid), 2, "the shell and its `sleep`");
        assert_eq!(kill_leftover(d.path()), Some(pid));
        let status = leftover.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while members(pid) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(members(pid), 0, "the whole group is gone");
        assert!(!d.path().join(PID_FILE).exists());
    }

    #[test]
    fn a_process_that_is_not_this_tasks_executor_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        // Another task's executor, and a process that is no executor at all.
        let mut foreign = fake_executor(other.path(), "sleep 30");
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        for child in [&foreign, &sleeper] {
            let pid = child.id() as i32;
            record(d.path(), pid);
            assert_eq!(kill_leftover(d.path()), None);
            // A stale record (another start time: the pid was reused) is not acted on either.
            std::fs::write(d.path().join(PID_FILE), format!("{pid} 1\n")).unwrap();
            assert_eq!(kill_leftover(d.path()), None);
        }
        assert!(foreign.try_wait().unwrap().is_none(), "still running");
        assert!(sleeper.try_wait().unwrap().is_none(), "still running");
        for child in [&mut foreign, &mut sleeper] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
