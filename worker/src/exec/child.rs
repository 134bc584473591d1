//! The child side: `sealtune-worker exec <task dir>`.

use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyModule;
use sealtune_protocol::deliverable::DeliverableKey;
use sealtune_protocol::events::{Event, OutputSummary, to_line};
use sealtune_python::{LiveContext, LiveSeal, TaskPaths};

use super::prepare::{self, Prepared};
use super::{EVENTS_FD_ENV, ExecSpec, PARENT_PID_ENV, SPEC_FILE};

const CHILD_PY: &std::ffi::CStr = {
    const SRC: &str = concat!(include_str!("child.py"), "\0");
    match std::ffi::CStr::from_bytes_with_nul(SRC.as_bytes()) {
        Ok(s) => s,
        Err(_) => panic!("child.py holds a NUL byte"),
    }
};

/// The write end of the event pipe, shared by the executor and the `sealtune` module.
#[derive(Clone)]
struct EventPipe(Arc<Mutex<File>>);

impl EventPipe {
    fn from_env() -> Result<Self, String> {
        let raw = std::env::var(EVENTS_FD_ENV)
            .map_err(|_| format!("{EVENTS_FD_ENV} is not set: `exec` is started by the worker"))?;
        let fd: i32 = raw
            .parse()
            .ok()
            .filter(|fd| *fd > 2)
            .ok_or_else(|| format!("{EVENTS_FD_ENV}={raw} is not a file descriptor number"))?;
        // Refuse a number that is not an open pipe before taking ownership of it.
        let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .map_err(|e| format!("{EVENTS_FD_ENV}={fd} is not open: {e}"))?;
        if !std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
            return Err(format!("{EVENTS_FD_ENV}={fd} is not a pipe"));
        }
        // SAFETY: the parent passed this inherited descriptor for our exclusive use (checked open and a
        // pipe above); nothing else in this process owns it, so taking ownership once here is sound.
        #[allow(unsafe_code)]
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Not inherited by the script's own subprocesses.
        let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
        Ok(EventPipe(Arc::new(Mutex::new(File::from(owned)))))
    }

    fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        f.write_all(&buf)
    }

    fn send(&self, event: &Event) {
        match to_line(event) {
            Ok(line) => {
                if let Err(e) = self.write_line(&line) {
                    eprintln!("sealtune-worker exec: event stream: {e}");
                }
            }
            Err(e) => eprintln!("sealtune-worker exec: cannot write event: {e}"),
        }
    }
}

/// Child side, called by the worker's `main` for `sealtune-worker exec <task dir>`: embeds CPython
/// (pyo3), puts the project venv's site-packages on `sys.path` (from `$VIRTUAL_ENV`), registers the
/// `sealtune` module in-process (live mode: `report()` etc. reach the parent's event stream directly),
/// prepares the dataset, runs the script as `__main__` with `sys.argv = [script, --data_path, ..,
/// --model_path, .., --config_path, .., --output_dir, ..]`, and emits `started`, then `finished` or
/// `failed` (with the Python traceback's last line as the reason).
///
/// Before it parses any customer byte (the dataset, the script), the child enters the sandbox its
/// parent planned ([`super::sandbox::enter`]): it reads its spec and the model key as root, then drops
/// to the task uid under `no_new_privs` and seccomp, and sets its parent-death signal again (a uid
/// change clears it).
///
/// Exit status: 0 finished, 1 failed (reported), 2 could not even report (no event pipe).
pub fn child_main(task_dir: &Path) -> ExitCode {
    if let Err(e) = die_with_parent() {
        eprintln!("sealtune-worker exec: {e}");
        return ExitCode::from(2);
    }
    let pipe = match EventPipe::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sealtune-worker exec: {e}");
            return ExitCode::from(2);
        }
    };
    match run(task_dir, &pipe) {
        Ok(output) => {
            pipe.send(&Event::Finished { output });
            ExitCode::SUCCESS
        }
        Err(reason) => {
            pipe.send(&Event::Failed { reason });
            ExitCode::from(1)
        }
    }
}

/// The executor never outlives the worker that started it: a restarted worker trains the task again
/// in the same directory, and an orphan of the last run would write into it (or delete its files).
/// The kernel sends `SIGKILL` when the worker dies, whatever kills it (set here in the child, so the
/// parent needs no pre-exec hook); a worker that died before this call is caught by comparing the
/// parent pid with the one the worker passed in [`PARENT_PID_ENV`].
fn die_with_parent() -> Result<(), String> {
    if std::env::var_os(super::TEST_SURVIVE_WORKER_ENV).is_some() {
        return Ok(()); // tests of the second layer (`exec::kill_leftover`) only
    }
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("setting the parent-death signal: {e}"))?;
    let expected = std::env::var(PARENT_PID_ENV)
        .map_err(|_| format!("{PARENT_PID_ENV} is not set: `exec` is started by the worker"))?;
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().to_string());
    if parent.as_deref() != Some(expected.as_str()) {
        return Err(format!(
            "the worker that started this executor (pid {expected}) is gone"
        ));
    }
    Ok(())
}

fn read_spec(task_dir: &Path) -> Result<ExecSpec, String> {
    let path = task_dir.join(SPEC_FILE);
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid {}: {e}", path.display()))
}

/// The per-task key, one hex line on stdin.
fn read_key() -> Result<DeliverableKey, String> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(256)
        .read_line(&mut line)
        .map_err(|e| format!("reading the model key: {e}"))?;
    DeliverableKey::from_hex(&line)
        .ok_or_else(|| "the model key on stdin is not 64 hex digits".into())
}

/// Files and bytes under `dir` (regular files, not following links).
fn summarize(dir: &Path) -> (u64, u64) {
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files += 1;
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (files, bytes)
}

/// Connects the embedded `sealtune` module to this task: its paths, the model key to seal with,
/// and the event pipe.
fn connect_live(
    spec: &ExecSpec,
    key: Option<DeliverableKey>,
    pipe: &EventPipe,
) -> Result<(), String> {
    let sink_pipe = pipe.clone();
    let live = LiveContext {
        task: TaskPaths {
            data_path: spec.data_path.clone(),
            model_path: spec.model_path.clone(),
            config_path: spec.config_path.clone(),
            output_dir: spec.output_dir.clone(),
        },
        seal: match (&spec.seal, key) {
            (Some(seal), Some(key)) => Some(LiveSeal {
                key,
                sealed_path: seal.sealed_path.clone(),
            }),
            _ => None,
        },
        sink: Box::new(move |line: &str| sink_pipe.write_line(line)),
    };
    sealtune_python::install_live(live)
        .map_err(|_| "the sealtune module is already connected to a task".to_owned())
}

/// In the embedded interpreter: sets up the venv, prepares a JSONL dataset into `data_path`, then
/// runs the script with the four path flags. Returns the script's failure reason, if any. With
/// `mark_prepared` (rank 0 of several), the other ranks are told once the dataset is ready.
fn run_python(
    spec: &ExecSpec,
    prepared: &Prepared,
    work: &Path,
    mark_prepared: Option<&Path>,
) -> Result<Option<String>, String> {
    let venv: Option<PathBuf> = spec
        .venv
        .clone()
        .or_else(|| std::env::var_os("VIRTUAL_ENV").map(PathBuf::from));
    let argv: Vec<String> = [
        ("--data_path", &spec.data_path),
        ("--model_path", &spec.model_path),
        ("--config_path", &spec.config_path),
        ("--output_dir", &spec.output_dir),
    ]
    .iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
    .collect();

    Python::attach(|py| -> Result<Option<String>, String> {
        let helper =
            PyModule::from_code(py, CHILD_PY, c"<sealtune-exec>/child.py", c"_sealtune_exec")
                .map_err(|e| format!("starting Python: {e}"))?;
        helper
            .call_method1("setup", (venv.as_ref().map(|v| v.display().to_string()),))
            .map_err(|e| format!("setting up the venv: {e}"))?;
        sealtune_python::register_embedded(py)
            .map_err(|e| format!("loading the sealtune module: {e}"))?;
        if let Prepared::Jsonl(jsonl) = prepared {
            helper
                .call_method1(
                    "prepare_jsonl",
                    (
                        jsonl.display().to_string(),
                        spec.data_path.display().to_string(),
                        work.join("hf-cache").display().to_string(),
                    ),
                )
                .map_err(|e| format!("preparing the dataset: {e}"))?;
        }
        let _ = std::fs::remove_dir_all(work);
        if let Some(task_dir) = mark_prepared {
            super::ranks::mark_prepared(task_dir)?;
        }
        let result = helper
            .call_method1("run", (spec.script.display().to_string(), argv))
            .map_err(|e| format!("running the script: {e}"))?;
        result
            .extract::<Option<String>>()
            .map_err(|e| e.to_string())
    })
}

fn run(task_dir: &Path, pipe: &EventPipe) -> Result<OutputSummary, String> {
    let spec = read_spec(task_dir)?;
    // Another rank of a multi-rank run (`exec::ranks`) gets no key, prepares nothing and delivers
    // nothing: rank 0 does.
    let (rank, world) = super::ranks::rank_of_env()?;
    let key = match &spec.seal {
        Some(_) if rank == 0 => Some(read_key()?),
        _ => None,
    };
    if let Some(plan) = super::sandbox::ChildPlan::from_env()? {
        super::sandbox::enter(&plan).map_err(|e| format!("entering the sandbox: {e}"))?;
        die_with_parent()?;
    }
    pipe.send(&Event::Started {
        script: Some(spec.script.display().to_string()),
    });
    if !spec.script.is_file() {
        return Err(format!(
            "the training script {} does not exist",
            spec.script.display()
        ));
    }
    std::fs::create_dir_all(&spec.output_dir)
        .map_err(|e| format!("creating {}: {e}", spec.output_dir.display()))?;
    let work = task_dir.join("exec-work");
    let prepared = if rank == 0 {
        prepare::prepare(&spec, &work)?
    } else {
        super::ranks::wait_prepared(task_dir);
        Prepared::Ready
    };

    connect_live(&spec, key, pipe)?;
    let mark = (rank == 0 && world > 1).then_some(task_dir);
    let failure = run_python(&spec, &prepared, &work, mark)?;
    if let Some(reason) = failure {
        return Err(reason);
    }
    if rank != 0 {
        return Ok(OutputSummary::default());
    }

    if let Some(sealed) = sealtune_python::take_seal_result() {
        return Ok(OutputSummary {
            files: sealed.files,
            bytes: sealed.zip_len,
            chunks: sealed.chunks,
        });
    }
    let (files, bytes) = summarize(&spec.output_dir);
    if files == 0 {
        return Err(format!(
            "the script wrote nothing to the output directory {} and sealed no model",
            spec.output_dir.display()
        ));
    }
    Ok(OutputSummary {
        files,
        bytes,
        chunks: 0,
    })
}
