//! What is left of an earlier run of a task: an executor that outlived the worker that started it,
//! or processes its script started that outlived the executor.
//!
//! The executor normally dies with the worker (it asks the kernel for `SIGKILL` on the worker's
//! death, `child::die_with_parent`), but what the script started (dataloader workers, a
//! `subprocess`) does not: it stays in the executor's process group, orphaned. This is the second
//! layer, assuming the first failed: at spawn the parent records the executor's pid (the leader of
//! its own process group), session and start time in the task directory ([`PID_FILE`]); before the
//! task runs again, [`kill_leftover`] kills that process group when it is still the task's:
//!
//! * its leader is alive: only if it is the same process (same start time) and still an executor
//!   of this task (`… exec <task dir>` on its command line);
//! * its leader is gone: only if no other process has taken its pid, and every member of the group
//!   is in the recorded session and started after the executor did (a group id is not handed out
//!   again while a member lives, so such members are the executor's descendants).
//!
//! A pid or group id reused by another process is never touched. Not covered: processes the script
//! moved out of the executor's process group (`setsid`, `setpgid`); the per-task uid of the sandbox
//! is the wall that catches those.
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The task-directory file naming the running executor: `<pid> <session> <start time>` (the start
/// time in clock ticks after boot, field 22 of `/proc/<pid>/stat`).
pub const PID_FILE: &str = "exec.pid";

/// How long [`kill_leftover`] waits for the killed processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What `/proc/<pid>/stat` says of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    group: i32,
    session: i32,
    start: u64,
}

/// Records the executor `pid` started for `task_dir` (best effort: a missing record only loses
/// this second layer).
pub(super) fn record(task_dir: &Path, pid: i32) {
    if let Some(s) = stat(pid) {
        let _ = std::fs::write(
            task_dir.join(PID_FILE),
            format!("{pid} {} {}\n", s.session, s.start),
        );
    }
}

/// Forgets the record once the executor was reaped.
pub(super) fn forget(task_dir: &Path) {
    let _ = std::fs::remove_file(task_dir.join(PID_FILE));
}

/// Kills what an earlier run of the task in `task_dir` left running: the executor's process group,
/// when it is still the task's (see the module docs); waits until it is gone. Returns the
/// executor's pid and how many processes were killed, when there were any.
pub fn kill_leftover(task_dir: &Path) -> Option<(i32, usize)> {
    let text = std::fs::read_to_string(task_dir.join(PID_FILE)).ok()?;
    forget(task_dir);
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(session)), Some(Ok(start))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (pid, session) = (i32::try_from(pid).ok()?, i32::try_from(session).ok()?);
    let members = match stat(pid) {
        Some(leader) if leader.start == start && is_executor_of(pid, task_dir) => members(pid),
        Some(_) => return None, // another process has the pid now
        None => {
            let members = members(pid);
            let ours = |m: &Stat| m.session == session && m.start >= start;
            if members.is_empty() || !members.iter().all(ours) {
                return None;
            }
            members
        }
    };
    let group = rustix::process::Pid::from_raw(pid)?;
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let deadline = Instant::now() + KILL_WAIT;
    while !self::members(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((pid, members.len()))
}

/// The live processes of process group `group`.
fn members(group: i32) -> Vec<Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .filter(|s| s.group == group)
        .collect()
}

/// What `/proc/<pid>/stat` says of process `pid`, if it lives (a zombie counts as gone).
fn stat(pid: i32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields 3.. follow the last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    // Fields 5 (process group), 6 (session) and 22 (start time).
    Some(Stat {
        group: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
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

    /// Waits (bounded) until group `pid` has `n` live members.
    fn wait_members(pid: i32, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while members(pid).len() != n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(members(pid).len(), n, "members of group {pid}");
    }

    #[test]
    fn a_leftover_executor_of_the_task_is_killed_with_its_group() {
        let d = tempfile::tempdir().unwrap();
        let mut leftover = fake_executor(d.path(), "sleep 30 & wait");
        let pid = leftover.id() as i32;
        record(d.path(), pid);
        wait_members(pid, 2); // the shell and its `sleep`
        assert_eq!(kill_leftover(d.path()), Some((pid, 2)));
        let status = leftover.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        wait_members(pid, 0);
        assert!(!d.path().join(PID_FILE).exists());
    }

    #[test]
    fn what_the_script_left_after_the_executor_died_is_killed() {
        let d = tempfile::tempdir().unwrap();
        // The "executor" starts a `sleep` in its group and dies at once.
        let mut executor = fake_executor(d.path(), "sleep 30 & sleep 0.3");
        let pid = executor.id() as i32;
        record(d.path(), pid);
        executor.wait().unwrap();
        wait_members(pid, 1); // the orphaned `sleep`
        assert_eq!(kill_leftover(d.path()), Some((pid, 1)));
        wait_members(pid, 0);
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
            let s = stat(pid).unwrap();
            std::fs::write(d.path().join(PID_FILE), format!("{pid} {} 1\n", s.session)).unwrap();
            assert_eq!(kill_leftover(d.path()), None);
        }
        assert!(foreign.try_wait().unwrap().is_none(), "still running");
        assert!(sleeper.try_wait().unwrap().is_none(), "still running");
        for child in [&mut foreign, &mut sleeper] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn orphans_of_another_session_or_older_than_the_executor_are_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let mut executor = fake_executor(d.path(), "sleep 30 & sleep 0.3");
        let pid = executor.id() as i32;
        let s = stat(pid).unwrap();
        executor.wait().unwrap();
        wait_members(pid, 1);
        for record in [
            format!("{pid} {} {}\n", s.session + 1, s.start),
            format!("{pid} {} {}\n", s.session, u64::MAX),
        ] {
            std::fs::write(d.path().join(PID_FILE), record).unwrap();
            assert_eq!(kill_leftover(d.path()), None);
            assert_eq!(members(pid).len(), 1, "the orphan still runs");
        }
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
}
