//! Which walls stand on this machine: the facts read once at start ([`HostFacts::read`]) and the
//! pure mapping from facts and config to the [`SandboxReport`] ([`report`]), unit-tested with
//! made-up facts.

use serde::Serialize;

use super::SandboxConfig;

/// One layer of the sandbox, in the report's fixed order (core layers first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The script's environment is cleared and refilled from an allowlist (core).
    EnvAllowlist,
    /// The script runs as a per-task unprivileged uid with no supplementary groups (core).
    TaskUid,
    /// `PR_SET_NO_NEW_PRIVS`: no set-uid binary or file capability raises the script's rights (core).
    NoNewPrivs,
    /// A seccomp-bpf filter refuses ptrace, mounts, namespaces, keyrings and other escapes (core).
    Seccomp,
    /// The worker is not dumpable: `/proc/<worker>/{environ,mem,maps}` stay closed (core).
    ParentNotDumpable,
    /// Every process of the task's uid is killed when the task ends (`kill(-1)` as that uid) (core).
    KillTaskUid,
    /// The script's data segment is capped (`RLIMIT_DATA`) (core).
    MemoryLimit,
    /// A network namespace with only a loopback (extra).
    NetworkNamespace,
    /// A user namespace (extra; not used by this version).
    UserNamespace,
    /// A mount namespace (extra; not used by this version).
    MountNamespace,
    /// A PID namespace (extra; not used by this version).
    PidNamespace,
    /// Landlock filesystem rules (extra; not used by this version).
    Landlock,
}

impl Layer {
    /// Whether a missing layer is a start-up error in production attestation modes.
    pub fn is_core(self) -> bool {
        self < Layer::NetworkNamespace
    }
}

/// One layer's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerStatus {
    /// Which layer.
    pub layer: Layer,
    /// Core (must stand in production) or extra.
    pub core: bool,
    /// Whether it stands for every task this worker runs.
    pub standing: bool,
    /// What it does here, or why it is missing and what to change.
    pub detail: String,
}

/// The sandbox's layers as detected at start, core first, in [`Layer`] order (the document is
/// deterministic: the same machine and config give the same bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxReport {
    /// Every layer, standing or not.
    pub layers: Vec<LayerStatus>,
}

/// Core layers are missing (see [`SandboxReport::require_core`]).
#[derive(Debug, thiserror::Error)]
#[error("the training sandbox is missing core layers: {}", .0.join("; "))]
pub struct MissingCore(pub Vec<String>);

impl SandboxReport {
    /// Fails, naming each missing core layer and why, unless every core layer stands. The worker
    /// calls it at start when the attestation source is not `dev`.
    pub fn require_core(&self) -> Result<(), MissingCore> {
        let missing = self.missing_core();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MissingCore(missing))
        }
    }

    /// `"<layer>: <why>"` for each missing core layer.
    pub fn missing_core(&self) -> Vec<String> {
        self.layers
            .iter()
            .filter(|l| l.core && !l.standing)
            .map(|l| format!("{}: {}", l.name(), l.detail))
            .collect()
    }

    /// The walls as the measured config document records them (name, core, standing), in the
    /// report's fixed order; the detail text (machine-specific wording) is left out.
    pub fn walls(&self) -> Vec<sealtune_protocol::attestation::Wall> {
        self.layers
            .iter()
            .map(|l| sealtune_protocol::attestation::Wall {
                name: l.name(),
                core: l.core,
                present: l.standing,
            })
            .collect()
    }

    /// Whether `layer` stands.
    pub fn stands(&self, layer: Layer) -> bool {
        self.layers.iter().any(|l| l.layer == layer && l.standing)
    }

    /// One line per layer (`✓`/`✗`, core/extra, name, detail), for logs and `config check`.
    pub fn lines(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|l| {
                format!(
                    "{} {} {}: {}",
                    if l.standing { "✓" } else { "✗" },
                    if l.core { "core " } else { "extra" },
                    l.name(),
                    l.detail
                )
            })
            .collect()
    }
}

impl LayerStatus {
    /// The layer's snake_case name, as serialized.
    pub fn name(&self) -> String {
        serde_json::to_value(self.layer)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// What the machine offers, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The worker's effective uid.
    pub euid: u32,
    /// Whether `prctl(PR_GET_NO_NEW_PRIVS)` works (Linux ≥ 3.5).
    pub no_new_privs: bool,
    /// Seccomp filters with the `errno` action, or why not.
    pub seccomp: Result<(), String>,
    /// Making the worker non-dumpable, or why it failed.
    pub not_dumpable: Result<(), String>,
    /// `CAP_SYS_ADMIN` in the worker's effective set (needed for a network namespace as root).
    pub cap_sys_admin: bool,
    /// `/proc/sys/user/max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// The Landlock ABI version, or why there is none.
    pub landlock_abi: Result<i64, String>,
    /// What a task uid could not read or traverse (the runtime, the models, the data dir), with the fix.
    pub unreadable: Vec<String>,
    /// The memory limit every task gets (`RLIMIT_DATA`), 0 for none.
    pub memory_limit_bytes: u64,
}

impl HostFacts {
    /// Reads the facts of this process and machine; makes this process non-dumpable on the way.
    pub fn read(unreadable: Vec<String>, memory_limit_bytes: u64) -> HostFacts {
        let not_dumpable =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
                .map_err(|e| format!("prctl(PR_SET_DUMPABLE, 0): {e}"));
        HostFacts {
            euid: rustix::process::geteuid().as_raw(),
            no_new_privs: rustix::thread::no_new_privs().is_ok(),
            seccomp: seccomp_available(),
            not_dumpable,
            cap_sys_admin: cap_effective().is_some_and(|caps| caps & (1 << 21) != 0),
            max_user_namespaces: std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            landlock_abi: landlock_abi(),
            unreadable,
            memory_limit_bytes,
        }
    }
}

fn seccomp_available() -> Result<(), String> {
    let actions =
        std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").map_err(|e| {
            format!(
                "the kernel has no seccomp filters (/proc/sys/kernel/seccomp/actions_avail: {e})"
            )
        })?;
    if actions.split_whitespace().any(|a| a == "errno") {
        Ok(())
    } else {
        Err(format!(
            "the kernel's seccomp lacks the errno action (has: {})",
            actions.trim()
        ))
    }
}

/// `CapEff` of this process.
fn cap_effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
fn landlock_abi() -> Result<i64, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: with a null attribute pointer and size 0 this call only returns the ABI version; it
    // reads and writes no memory of ours.
    #[allow(unsafe_code)]
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi > 0 {
        Ok(abi)
    } else {
        Err(format!("not offered: {}", std::io::Error::last_os_error()))
    }
}

/// The report for `facts` under `config`.
pub fn report(config: &SandboxConfig, facts: &HostFacts) -> SandboxReport {
    let uid = task_uid(config, facts);
    let uid_stands = uid.is_ok();
    let mut layers = vec![
        status(
            Layer::EnvAllowlist,
            true,
            format!(
                "cleared; {} default names{}",
                super::env::DEFAULT_ALLOWED.len(),
                if config.env_allow.is_empty() {
                    String::new()
                } else {
                    format!(" and {}", config.env_allow.join(", "))
                }
            ),
        ),
        match uid {
            Ok(detail) => status(Layer::TaskUid, true, detail),
            Err(why) => status(Layer::TaskUid, false, why),
        },
        status(
            Layer::NoNewPrivs,
            facts.no_new_privs,
            if facts.no_new_privs {
                "set in the executor before the script".into()
            } else {
                "prctl(PR_SET_NO_NEW_PRIVS) is not offered by this kernel".into()
            },
        ),
        match &facts.seccomp {
            Ok(()) => status(
                Layer::Seccomp,
                true,
                "deny list with EPERM (ptrace, process_vm_*, mount API, unshare/setns/clone(CLONE_NEW*), keyrings, bpf, perf, io_uring, modules, kexec, handles); clone3 answers ENOSYS".into(),
            ),
            Err(why) => status(Layer::Seccomp, false, why.clone()),
        },
        match &facts.not_dumpable {
            Ok(()) => status(Layer::ParentNotDumpable, true, "PR_SET_DUMPABLE 0 at start".into()),
            Err(why) => status(Layer::ParentNotDumpable, false, why.clone()),
        },
        status(
            Layer::KillTaskUid,
            uid_stands,
            if uid_stands {
                "kill(-1, SIGKILL) as the task uid before and after every run".into()
            } else {
                "needs the per-task uid; only the script's process group is killed".into()
            },
        ),
        status(
            Layer::MemoryLimit,
            facts.memory_limit_bytes > 0,
            if facts.memory_limit_bytes > 0 {
                format!("RLIMIT_DATA {} bytes", facts.memory_limit_bytes)
            } else {
                "no limit (limits.executor_memory_bytes = 0)".into()
            },
        ),
    ];
    layers.extend(extra_layers(config, facts, uid_stands));
    SandboxReport { layers }
}

fn status(layer: Layer, standing: bool, detail: String) -> LayerStatus {
    LayerStatus {
        layer,
        core: layer.is_core(),
        standing,
        detail,
    }
}

/// Whether the per-task uid layer stands, with its detail, or why not.
fn task_uid(config: &SandboxConfig, facts: &HostFacts) -> Result<String, String> {
    if facts.euid != 0 {
        return Err(format!(
            "the worker runs as uid {}, not root: it cannot switch a script to another uid (run the worker as root in its image)",
            facts.euid
        ));
    }
    if config.uid_count == 0 {
        return Err("sandbox.uid_count is 0".into());
    }
    if !facts.unreadable.is_empty() {
        return Err(format!(
            "a task uid could not read what the script needs: {}",
            facts.unreadable.join("; ")
        ));
    }
    Ok(format!(
        "uids {}..{} (gid = uid, no supplementary groups), one per running task",
        config.uid_base,
        config.uid_base.saturating_add(config.uid_count)
    ))
}

fn extra_layers(config: &SandboxConfig, facts: &HostFacts, uid: bool) -> Vec<LayerStatus> {
    let net = if config.network {
        status(
            Layer::NetworkNamespace,
            false,
            "not applied: sandbox.network = true".into(),
        )
    } else if facts.euid == 0 && facts.cap_sys_admin && uid {
        status(
            Layer::NetworkNamespace,
            true,
            "a fresh network namespace (loopback only, down) per task".into(),
        )
    } else {
        status(
            Layer::NetworkNamespace,
            false,
            "not offered: needs root with CAP_SYS_ADMIN and the per-task uid (a default Docker container has no CAP_SYS_ADMIN)".into(),
        )
    };
    let userns = match facts.max_user_namespaces {
        Some(n) if n > 0 => format!("offered by the kernel (max {n}) but not used by this version"),
        _ => "not offered by the kernel".into(),
    };
    let landlock = match &facts.landlock_abi {
        Ok(abi) => format!(
            "kernel ABI {abi} offered but not used by this version (before ABI 8 it cannot stop connect() to a path socket)"
        ),
        Err(why) => why.clone(),
    };
    vec![
        net,
        status(Layer::UserNamespace, false, userns),
        status(
            Layer::MountNamespace,
            false,
            "not used by this version: file access is limited by the task uid's permissions".into(),
        ),
        status(
            Layer::PidNamespace,
            false,
            "not used by this version: the task's processes are found and killed by uid".into(),
        ),
        status(Layer::Landlock, false, landlock),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_in_a_vm() -> HostFacts {
        HostFacts {
            euid: 0,
            no_new_privs: true,
            seccomp: Ok(()),
            not_dumpable: Ok(()),
            cap_sys_admin: true,
            max_user_namespaces: Some(1000),
            landlock_abi: Ok(7),
            unreadable: Vec::new(),
            memory_limit_bytes: 1 << 30,
        }
    }

    #[test]
    fn every_core_layer_stands_for_root_with_a_readable_runtime() {
        let r = report(&SandboxConfig::default(), &root_in_a_vm());
        r.require_core().unwrap();
        assert!(r.stands(Layer::NetworkNamespace));
        let order: Vec<Layer> = r.layers.iter().map(|l| l.layer).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "fixed order, core first");
        assert_eq!(order.len(), 12);
        assert!(!r.stands(Layer::Landlock));
    }

    #[test]
    fn a_worker_that_is_not_root_misses_the_uid_layers() {
        let facts = HostFacts {
            euid: 1000,
            cap_sys_admin: false,
            ..root_in_a_vm()
        };
        let r = report(&SandboxConfig::default(), &facts);
        let e = r.require_core().unwrap_err().to_string();
        assert!(e.contains("task_uid: the worker runs as uid 1000"), "{e}");
        assert!(e.contains("kill_task_uid"), "{e}");
        assert!(!r.stands(Layer::NetworkNamespace));
    }

    #[test]
    fn an_unreadable_runtime_is_named_with_its_fix() {
        let facts = HostFacts {
            unreadable: vec!["/root blocks traversal (mode 0700): fix it".into()],
            ..root_in_a_vm()
        };
        let e = report(&SandboxConfig::default(), &facts)
            .require_core()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/root blocks traversal"), "{e}");
    }

    #[test]
    fn a_docker_default_container_keeps_the_core_and_lacks_the_network_namespace() {
        let facts = HostFacts {
            cap_sys_admin: false,
            landlock_abi: Err("not offered".into()),
            max_user_namespaces: None,
            ..root_in_a_vm()
        };
        let r = report(&SandboxConfig::default(), &facts);
        r.require_core().unwrap();
        assert!(!r.stands(Layer::NetworkNamespace));
    }

    #[test]
    fn missing_seccomp_or_memory_limit_is_a_missing_core_layer() {
        let facts = HostFacts {
            seccomp: Err("no seccomp".into()),
            memory_limit_bytes: 0,
            ..root_in_a_vm()
        };
        let missing = report(&SandboxConfig::default(), &facts).missing_core();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].starts_with("seccomp: no seccomp"));
        assert!(missing[1].starts_with("memory_limit"));
    }

    #[test]
    fn the_report_serializes_in_a_fixed_shape() {
        let r = report(&SandboxConfig::default(), &root_in_a_vm());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["layers"][0]["layer"], "env_allowlist");
        assert_eq!(v["layers"][1]["layer"], "task_uid");
        assert_eq!(v["layers"][1]["core"], true);
        assert_eq!(v["layers"][11]["layer"], "landlock");
        assert_eq!(v["layers"][11]["core"], false);
        let keys: Vec<&String> = v["layers"][0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["layer", "core", "standing", "detail"],
            "declaration order"
        );
    }
}
