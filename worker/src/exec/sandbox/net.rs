//! The network namespace of a run: a fresh one per task, with only a loopback interface. A task of
//! one process gets it with its loopback down (no network at all); the ranks of a multi-rank task
//! (`exec::ranks`) share one, its loopback up, so `torch.distributed` (gloo's TCP, NCCL's sockets)
//! reaches the other ranks at `127.0.0.1` and nothing else: rank 0 creates it, the others join it.
//! Every step runs in the child as root, before the uid switch and seccomp.
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

/// How long a rank waits for rank 0's namespace to exist.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// Enters a fresh network namespace; with `loopback`, brings its `lo` up.
pub fn enter_new(loopback: bool) -> Result<(), String> {
    // SAFETY: unshare(CLONE_NEWNET) takes no pointers; the process is single-threaded here and
    // only its network namespace changes (no file-descriptor-table or fs-struct sharing is
    // undone, which is what makes `unshare` unsafe in general).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!(
            "entering a network namespace: {}",
            std::io::Error::last_os_error()
        ));
    }
    if loopback {
        loopback_up()?;
    }
    Ok(())
}

/// Joins the network namespace of rank 0 of the same task, given as a pidfd the parent opened on
/// rank 0 right after spawning it (inherited as descriptor `pidfd`; closed here). A pidfd names that
/// one process for good: were rank 0 to end and its pid be reused by another process (another
/// container's, in its own namespace with a network), a join by pid would enter *that* namespace;
/// a join by pidfd fails instead. The rank waits until rank 0 has left the worker's namespace, and
/// never stays in it.
pub fn join(pidfd: i32) -> Result<(), String> {
    // SAFETY: the parent passes an open pidfd at this number, inherited for this purpose only and
    // used nowhere else in this process; taking ownership closes it when the join is done.
    #[allow(unsafe_code)]
    let pidfd = {
        rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(pidfd) })
            .map_err(|e| format!("rank 0's process descriptor {pidfd} is not open: {e}"))?;
        unsafe { OwnedFd::from_raw_fd(pidfd) }
    };
    // thread-self: the calling thread's namespace (the child is single-threaded; a test is not).
    let ours = namespace_of("thread-self")?;
    let deadline = Instant::now() + JOIN_WAIT;
    loop {
        match rustix::thread::move_into_thread_name_spaces(
            pidfd.as_fd(),
            rustix::thread::ThreadNameSpaceType::NETWORK,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::SRCH) => {
                return Err("rank 0 ended before this rank joined its network namespace".into());
            }
            Err(e) => return Err(format!("joining rank 0's network namespace: {e}")),
        }
        if namespace_of("thread-self")? != ours {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "rank 0 did not enter its network namespace within {} s",
                JOIN_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The identity of a process's network namespace (`net:[inode]`).
fn namespace_of(pid: &str) -> Result<std::path::PathBuf, String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("reading the network namespace of {pid}: {e}"))
}

/// `ip link set lo up`, with the `SIOCSIFFLAGS` ioctl (needs `CAP_NET_ADMIN` in the namespace).
fn loopback_up() -> Result<(), String> {
    // Any AF_INET socket carries the ioctl; binding the wildcard needs no interface up.
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))
        .map_err(|e| format!("bringing the loopback up: {e}"))?;
    // SAFETY: `ifreq` is plain old data, valid when zeroed.
    #[allow(unsafe_code)]
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one `ifreq`, which lives for the call; the descriptor is open.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if rc != 0 {
        return Err(format!(
            "bringing the loopback up: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
