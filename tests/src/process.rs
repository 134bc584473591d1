//! Child processes (anvil, the worker) that never outlive the test binary: killed and reaped on drop,
//! and sent `SIGKILL` by the kernel when the test binary itself dies (a crash, `SIGKILL`, an abort), so
//! no anvil or worker is left behind holding a port.
//!
//! Linux sends the parent-death signal when the *thread* that forked the child ends, not the process.
//! So every tied child is forked by one spawner thread that lives as long as the process: a child
//! started from a test case's thread (a worker restart) is not killed when that thread finishes.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Request = (Command, Sender<io::Result<Child>>);

/// Starts `cmd` with the parent-death signal set (see the module docs), guarded: it is killed when the
/// guard is dropped or when this process dies.
pub fn spawn_tied(cmd: Command) -> io::Result<ChildGuard> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::Builder::new()
            .name("sealtune-e2e-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    die_with_parent(&mut cmd);
                    let _ = reply.send(cmd.spawn());
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the spawner thread: {e}"));
        Mutex::new(tx)
    });
    let (reply, answer) = channel();
    spawner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((cmd, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread did not answer"))?
        .map(ChildGuard)
}

/// Asks the kernel to `SIGKILL` the child when the spawning thread (here: the process-long spawner
/// thread) ends.
// `pre_exec` is unsafe because the closure runs between fork and exec, where only async-signal-safe
// calls are allowed; `prctl(PR_SET_PDEATHSIG)` is one such call (a single syscall, no allocation, no
// lock), so the contract holds.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure makes one async-signal-safe syscall and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(io::Error::from)
        });
    }
}

/// Processes whose command line mentions `needle` (e.g. a task id: the executor child's argv holds
/// its task directory).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Live (not zombie) processes whose real uid is `uid`.
pub fn live_processes_of(uid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_owned())
                .unwrap_or_default()
        };
        let real_uid = field("Uid:")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned();
        if real_uid == uid.to_string() && !field("State:").starts_with('Z') {
            out.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                field("Name:")
            ));
        }
    }
    out
}
