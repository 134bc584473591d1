//! The network namespace of a run: a fresh one per task, with only a loopback interface. A task of
//! one process gets it with its loopback down (no network at all); the ranks of a multi-rank task
//! (`exec::ranks`) share one, its loopback up, so `torch.distributed` (gloo's TCP, NCCL's sockets)
//! reaches the other ranks at `127.0.0.1` and nothing else: rank 0 creates it, the others join it.
//! Every step runs in the child as root, before the uid switch and seccomp.
use std::os::fd::AsRawFd as _;
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

/// Joins the network namespace of `pid` (rank 0 of the same task), once it has left this one: a
/// rank never joins the worker's own namespace.
pub fn join(pid: i32) -> Result<(), String> {
    let ours = namespace_of("self")?;
    let deadline = Instant::now() + JOIN_WAIT;
    let target = loop {
        let theirs = namespace_of(&pid.to_string())?;
        if theirs != ours {
            break theirs;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "rank 0 (pid {pid}) did not enter its network namespace within {} s",
                JOIN_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let file = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("opening rank 0's network namespace: {e}"))?;
    // SAFETY: setns takes a descriptor we own (open for the call's duration) and a namespace type;
    // the process is single-threaded here, which setns(CLONE_NEWNET) needs no more than that.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!(
            "joining rank 0's network namespace: {}",
            std::io::Error::last_os_error()
        ));
    }
    if namespace_of("self")? != target {
        return Err("joined a network namespace other than rank 0's".into());
    }
    Ok(())
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
