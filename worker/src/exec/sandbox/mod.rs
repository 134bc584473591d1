//! The training sandbox: the walls between a customer's training script and everything else on
//! the machine (the worker's keys and environment, the database, the store, other tasks, the
//! guest agent's socket), in layers, each assuming the others failed.
//!
//! **Core layers** (must stand everywhere, a default Docker container in a dstack CVM included; a
//! missing one is a start-up error in production attestation modes, a loud warning with `dev`):
//! * a cleared environment refilled from an allowlist ([`env`]);
//! * a per-task unprivileged uid, `gid = uid`, no supplementary groups ([`uid`]): the worker runs as
//!   root, so the key socket, the data directory's private entries (0700/0600), the database and
//!   other tasks' directories are out of reach by plain permissions;
//! * `no_new_privs`, then a seccomp filter against ptrace, mounts, namespaces, keyrings and other
//!   escapes ([`seccomp`]);
//! * the worker itself non-dumpable (`/proc/<worker>/{environ,mem}` closed even to its own uid);
//! * every process of the task's uid killed when the task ends (`kill(-1)` as that uid);
//! * a memory limit (`RLIMIT_DATA`, see [`crate::exec`]): by default 3/4 of the machine's memory.
//!
//! **Extra layers** (where the kernel and the container allow): a network namespace with only a
//! loopback. User, mount and PID namespaces and Landlock are detected and reported, not used.
//!
//! Which walls stand is detected once at start ([`Sandbox::detect`]) into a [`SandboxReport`] that
//! the worker logs, prints in `config check`, and puts in its measured config, so a quote says
//! which walls stand.
//!
//! **Where each step runs.** The parent (`spawn`) clears the environment, leases the uid, copies
//! the dataset out of the store, hands the task directory to the uid, and after the run kills the
//! uid's processes (`sealtune-worker sandbox-reap <uid>`) and takes the directory back. The child
//! (`sealtune-worker exec`) starts as root and, after reading its spec and key and before any
//! customer byte is parsed, calls [`enter`]: network namespace, `setgroups`/`setgid`/`setuid`,
//! `no_new_privs`, seccomp, parent-death signal again (a uid change clears it). Doing this in the
//! child rather than in a `pre_exec` hook keeps it ordinary code: `pre_exec` runs after `fork` in the
//! multi-threaded worker, where only async-signal-safe calls are allowed; the exec'd child is
//! single-threaded until Python starts, so a per-thread `setuid` drops the whole process. It also
//! means the dynamic loader maps `libpython` and `libtorch` as root; what Python opens after the
//! drop (its standard library, the venv, the models) must be readable by the task uid, which the
//! worker checks at start ([`RuntimeNeeds`]).

pub mod access;
pub mod env;
pub mod layers;
pub mod net;
pub mod seccomp;
pub mod uid;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use layers::{HostFacts, Layer, LayerStatus, MissingCore, SandboxReport};
pub use uid::reap_main;

/// Environment variable carrying the child's [`ChildPlan`] (JSON).
pub const PLAN_ENV: &str = "SEALTUNE_EXEC_SANDBOX";

/// The `[sandbox]` section of the worker's config.
///
/// ```toml
/// [sandbox]
/// uid_base = 61000        # first per-task uid (and gid)
/// uid_count = 1000        # size of the range
/// env_allow = ["WANDB_MODE"]   # extra variables the script may see (never SEALTUNE_*)
/// network = false         # true: the script shares the worker's network
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// First uid of the per-task range; the gid of a task is its uid (default 61000). Pick a range
    /// no user or service of the machine uses: every process of a leased uid is killed.
    #[serde(default = "d_uid_base")]
    pub uid_base: u32,
    /// How many uids the range holds (default 1000; one per running task).
    #[serde(default = "d_uid_count")]
    pub uid_count: u32,
    /// Names of extra environment variables passed from the worker to the script (default none;
    /// `SEALTUNE_*` is refused). The defaults are [`env::DEFAULT_ALLOWED`].
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Let the script use the worker's network (default false: where the kernel allows, each task
    /// gets a network namespace with only a loopback).
    #[serde(default)]
    pub network: bool,
}

fn d_uid_base() -> u32 {
    61000
}
fn d_uid_count() -> u32 {
    1000
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            uid_base: d_uid_base(),
            uid_count: d_uid_count(),
            env_allow: Vec::new(),
            network: false,
        }
    }
}

impl SandboxConfig {
    /// Problems with the section, by key.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .env_allow
            .iter()
            .filter_map(|n| env::allowable(n).err())
            .map(|e| format!("config key `sandbox.env_allow`: {e}"))
            .collect();
        if self.uid_base < 1000 || self.uid_base.checked_add(self.uid_count).is_none() {
            out.push(format!(
                "config key `sandbox.uid_base`: {} is a system uid or the range overflows",
                self.uid_base
            ));
        }
        out
    }
}

/// The default memory limit of a training run: 3/4 of the machine's memory (`MemTotal`), so a
/// runaway script fails with `MemoryError` before the kernel's OOM killer picks a victim.
pub fn default_memory_limit() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    total_kib.saturating_mul(1024) / 4 * 3
}

/// The memory limit of every training run: `limits.executor_memory_bytes`, else
/// [`default_memory_limit`]; `None` when that is 0.
pub fn memory_limit(limits: &crate::config::Limits) -> Option<u64> {
    Some(
        limits
            .executor_memory_bytes
            .unwrap_or_else(default_memory_limit),
    )
    .filter(|b| *b > 0)
}

/// What a training child must read as its task uid: the interpreter's standard library, the venv,
/// each model's script and weights; and the data directory it must traverse.
#[derive(Debug, Clone, Default)]
pub struct RuntimeNeeds {
    /// `(what, path)`: files and directories the task uid must read.
    pub read: Vec<(String, PathBuf)>,
    /// The data directory a task uid must traverse to its task directory.
    pub data_dir: Option<PathBuf>,
    /// Lay the data directory out for task uids ([`access::secure_data_dir`], as root) rather than
    /// only check its ancestors: `serve` does, `config check` does not (it changes nothing).
    pub lay_out_data_dir: bool,
    /// The memory limit every run gets (0: none).
    pub memory_limit_bytes: u64,
}

impl RuntimeNeeds {
    /// From the worker's config: the embedded Python's standard library, the venv
    /// (`python_venv` or `$VIRTUAL_ENV`), every model's training script and local weights, the data
    /// directory, and the memory limit (`limits.executor_memory_bytes`, else
    /// [`default_memory_limit`]).
    pub fn from_config(config: &crate::config::Config) -> RuntimeNeeds {
        let mut read = Vec::new();
        if let Some(stdlib) = python_stdlib() {
            read.push(("the Python standard library".to_owned(), stdlib));
        }
        let venv = config
            .python_venv
            .clone()
            .or_else(|| std::env::var_os("VIRTUAL_ENV").map(PathBuf::from));
        if let Some(venv) = venv {
            read.push(("the Python venv".to_owned(), venv));
        }
        for m in &config.service.models {
            read.push((
                format!("model `{}`'s training script", m.name),
                m.training_script.clone(),
            ));
            if let Some(p) = &m.evaluation_script {
                read.push((format!("model `{}`'s evaluation script", m.name), p.clone()));
            }
            if let Ok(Some(dir)) = crate::models::local_weights_dir(m) {
                read.push((format!("model `{}`'s weights", m.name), dir));
            }
        }
        RuntimeNeeds {
            read,
            data_dir: Some(config.data_dir.clone()),
            lay_out_data_dir: false,
            memory_limit_bytes: memory_limit(&config.limits).unwrap_or(0),
        }
    }
}

/// The directory of the embedded interpreter's `os` module (its standard library).
fn python_stdlib() -> Option<PathBuf> {
    use pyo3::prelude::*;
    Python::attach(|py| -> PyResult<PathBuf> {
        let file: String = py.import("os")?.getattr("__file__")?.extract()?;
        Ok(PathBuf::from(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default())
    })
    .ok()
}

/// The sandbox as detected at start: the config, the report, and what each task gets.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: SandboxConfig,
    report: SandboxReport,
}

impl Sandbox {
    /// Detects which layers stand, once, at start: makes this process non-dumpable, lays the data
    /// directory out for task uids (when the worker is root), checks that a task uid can read what
    /// the child needs, and reads what the kernel offers.
    pub fn detect(config: &SandboxConfig, needs: &RuntimeNeeds) -> Sandbox {
        let mut unreadable: Vec<String> = needs
            .read
            .iter()
            .filter_map(|(what, path)| access::unreadable(what, path))
            .collect();
        if let Some(data_dir) = &needs.data_dir {
            let blocked = if needs.lay_out_data_dir && rustix::process::geteuid().is_root() {
                access::secure_data_dir(data_dir).unwrap_or_else(|e| {
                    Some(format!("{}: cannot set its modes: {e}", data_dir.display()))
                })
            } else {
                access::blocked_ancestor(data_dir)
            };
            if let Some(why) = blocked {
                unreadable.push(format!("the data directory: {why}"));
            }
        }
        let facts = HostFacts::read(unreadable, needs.memory_limit_bytes);
        Sandbox {
            config: config.clone(),
            report: layers::report(config, &facts),
        }
    }

    /// The report of the layers.
    pub fn report(&self) -> &SandboxReport {
        &self.report
    }

    /// The sandbox for one task: a leased uid when that layer stands.
    pub fn jail(&self) -> Result<Jail, String> {
        let lease = if self.report.stands(Layer::TaskUid) {
            Some(uid::lease(self.config.uid_base, self.config.uid_count)?)
        } else {
            None
        };
        let plan = ChildPlan {
            uid: lease.as_ref().map(uid::UidLease::uid),
            seccomp: self.report.stands(Layer::Seccomp),
            no_new_privs: self.report.stands(Layer::NoNewPrivs),
            network_namespace: self.report.stands(Layer::NetworkNamespace),
            loopback: false,
            join_network_fd: None,
            memory_limit_bytes: None,
        };
        Ok(Jail {
            plan,
            env_allow: self.config.env_allow.clone(),
            _lease: lease,
        })
    }
}

/// One task's sandbox, held for the run (the uid lease is released when it drops).
#[derive(Debug)]
pub struct Jail {
    plan: ChildPlan,
    env_allow: Vec<String>,
    /// Held for the run: the uid is free again when the jail drops.
    _lease: Option<uid::UidLease>,
}

impl Jail {
    /// The task's uid, when it has one.
    pub fn uid(&self) -> Option<u32> {
        self.plan.uid
    }

    /// What the child applies to itself, with the run's memory limit.
    pub fn plan(&self, memory_limit_bytes: Option<u64>) -> ChildPlan {
        ChildPlan {
            memory_limit_bytes,
            ..self.plan.clone()
        }
    }

    /// The script's environment, from the worker's.
    pub fn child_env(&self, task_dir: &Path) -> Vec<(String, String)> {
        env::child_env(std::env::vars(), &self.env_allow, task_dir)
    }

    /// Before the run: kills what the uid may have left, copies `dataset` into the task directory
    /// when the uid cannot read it where it is (returns the path the child reads), and hands the
    /// task directory (and `writable` inside it) to the uid.
    pub async fn before_run(
        &self,
        worker_exe: &Path,
        task_dir: &Path,
        dataset: &Path,
        writable: &[&Path],
    ) -> Result<PathBuf, String> {
        let Some(uid) = self.plan.uid else {
            let dir = task_dir.to_path_buf();
            for sub in [env::HOME_DIR, env::TMP_DIR] {
                let _ = std::fs::create_dir_all(dir.join(sub));
            }
            return Ok(dataset.to_path_buf());
        };
        uid::reap(worker_exe, uid, true).await?;
        let staged = if dataset.starts_with(task_dir) {
            dataset.to_path_buf()
        } else {
            uid::stage_copy(dataset, &task_dir.join("exec-dataset"))
                .map_err(|e| format!("copying the dataset into the task directory: {e}"))?
        };
        uid::hand_over(task_dir, writable, uid)
            .map_err(|e| format!("handing {} to uid {uid}: {e}", task_dir.display()))?;
        Ok(staged)
    }

    /// Kills every process of the task uid (nothing without one).
    pub async fn kill_all(&self, worker_exe: &Path) -> Result<(), String> {
        match self.plan.uid {
            Some(uid) => uid::reap(worker_exe, uid, false).await,
            None => Ok(()),
        }
    }

    /// After the run: kills every process of the uid, takes the task directory back, deletes what
    /// the uid left in the shared temporary directories, and the script's `HOME` and `TMPDIR`
    /// (scratch that may hold plaintext the script left there).
    pub async fn after_run(&self, worker_exe: &Path, task_dir: &Path) -> Result<(), String> {
        if let Some(uid) = self.plan.uid {
            uid::reap(worker_exe, uid, false).await?;
            uid::take_back(task_dir)
                .map_err(|e| format!("taking {} back: {e}", task_dir.display()))?;
            uid::reap(worker_exe, uid, true).await?;
        }
        for sub in [env::HOME_DIR, env::TMP_DIR] {
            uid::remove_any(&task_dir.join(sub))
                .map_err(|e| format!("removing the script's {sub} directory: {e}"))?;
        }
        Ok(())
    }
}

/// What the child applies to itself before the script (passed in [`PLAN_ENV`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildPlan {
    /// Become this uid (and gid), dropping every group.
    pub uid: Option<u32>,
    /// Install the seccomp filters.
    pub seccomp: bool,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
    /// Enter a fresh network namespace (as root, before the uid switch).
    pub network_namespace: bool,
    /// With `network_namespace`: bring the namespace's loopback up (the ranks of a multi-rank task
    /// talk over it; a single process has no use for it).
    #[serde(default)]
    pub loopback: bool,
    /// With `network_namespace`: join the namespace of rank 0 of the same task, whose pidfd the
    /// parent passes at this descriptor number, instead of making one ([`net::join`]).
    #[serde(default)]
    pub join_network_fd: Option<i32>,
    /// Cap the data segment (`RLIMIT_DATA`) at this many bytes, set by the child on itself before
    /// the uid switch (lowering a limit needs no privilege, unlike the parent's `prlimit` on a child
    /// that already switched uid, which needs `CAP_SYS_RESOURCE`: not in a default Docker container).
    pub memory_limit_bytes: Option<u64>,
}

impl ChildPlan {
    /// The plan the parent passed, if any.
    pub fn from_env() -> Result<Option<ChildPlan>, String> {
        match std::env::var(PLAN_ENV) {
            Ok(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| format!("{PLAN_ENV}: {e}")),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(format!("{PLAN_ENV}: {e}")),
        }
    }
}

/// Child side: applies `plan` to this (single-threaded) process, in order: memory limit, network
/// namespace (as root), uid switch, `no_new_privs`, seccomp. Any step that fails fails the task: a
/// listed wall never silently falls.
pub fn enter(plan: &ChildPlan) -> Result<(), String> {
    if let Some(limit) = plan.memory_limit_bytes {
        let rlimit = rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        rustix::process::setrlimit(rustix::process::Resource::Data, rlimit)
            .map_err(|e| format!("setting RLIMIT_DATA to {limit} bytes: {e}"))?;
    }
    match (plan.network_namespace, plan.join_network_fd) {
        (true, Some(pidfd)) => net::join(pidfd)?,
        (true, None) => net::enter_new(plan.loopback)?,
        (false, _) => {}
    }
    if let Some(uid) = plan.uid {
        uid::become_uid(uid)?;
    }
    if plan.no_new_privs || plan.seccomp {
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
    }
    if plan.seccomp {
        seccomp::install()?;
    }
    Ok(())
}
