//! The seccomp-bpf filters the child installs on itself before the script runs (after
//! `no_new_privs`, so an unprivileged process may install them; inherited by every thread and
//! process the script starts, and irremovable).
//!
//! Default allow, with a deny list of the calls that escape or look into other processes, not a
//! tight allowlist: the script is arbitrary Python with torch and CUDA, whose needs are large and
//! move with every release. Denied with `EPERM`:
//! * other processes' memory: `ptrace`, `process_vm_readv`, `process_vm_writev`, `kcmp`;
//! * mounts and namespaces: `mount`, `umount2`, `pivot_root`, `chroot`, `unshare`, `setns`, the new
//!   mount API (`open_tree`, `move_mount`, `fsopen`, `fsconfig`, `fsmount`, `fspick`,
//!   `mount_setattr`), and `clone` with any `CLONE_NEW*` flag;
//! * kernel keyrings: `keyctl`, `add_key`, `request_key`;
//! * kernel attack surface a training script never needs: `bpf`, `perf_event_open`, `userfaultfd`,
//!   `io_uring_*` (its operations bypass seccomp), modules, `kexec_*`, `open_by_handle_at`,
//!   `name_to_handle_at`, `swapon`/`swapoff`, `reboot`, `acct`, `quotactl`, `syslog`, `iopl`/`ioperm`.
//!
//! `clone3` passes its flags in memory, out of a filter's reach: a second filter answers it with
//! `ENOSYS`, which makes glibc fall back to `clone`, where the flags are checked.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Every `CLONE_NEW*` flag: a `clone` carrying any of them is refused.
const CLONE_NEW_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The calls refused outright (see the module docs).
fn denied() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    calls
}

fn arch() -> Result<seccompiler::TargetArch, String> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: unsupported architecture: {e:?}"))
}

/// The deny-list filter (`EPERM`).
pub fn deny_filter() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied().into_iter().map(|nr| (nr, Vec::new())).collect();
    let clone_rules = CLONE_NEW_FLAGS
        .iter()
        .map(|flag| {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*flag),
                *flag,
            )
            .map_err(|e| e.to_string())?;
            SeccompRule::new(vec![cond]).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    filter.try_into().map_err(|e| format!("seccomp: {e:?}"))
}

/// The `clone3` filter (`ENOSYS`, so that glibc falls back to `clone`).
pub fn clone3_filter() -> Result<BpfProgram, String> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    filter.try_into().map_err(|e| format!("seccomp: {e:?}"))
}

/// Installs both filters on the calling thread (the child, single-threaded at that point).
pub fn install() -> Result<(), String> {
    let deny = deny_filter()?;
    let clone3 = clone3_filter()?;
    seccompiler::apply_filter(&clone3)
        .map_err(|e| format!("installing the seccomp filter: {e}"))?;
    seccompiler::apply_filter(&deny).map_err(|e| format!("installing the seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_compile_for_this_machine() {
        assert!(!deny_filter().unwrap().is_empty());
        assert!(!clone3_filter().unwrap().is_empty());
    }
}
