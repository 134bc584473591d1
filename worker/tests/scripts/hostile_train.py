"""A hostile training script (stdlib only): tries every escape the training sandbox must stop and
prints what worked as one line, `HOSTILE-REPORT {json}`, then writes a small output so the task can
finish. Targets (paths, pids, the canary) come from the JSON file `$HOSTILE_TARGETS` names (the
script itself runs from the worker's measured copy).

Each attempt is reported as {"ok": bool, "error": "<errno name or message>"}; "ok": true means the
escape WORKED. The test asserts that every attempt failed, with the expected error.
"""
import argparse, ctypes, errno, json, os, platform, socket, sys, time

p = argparse.ArgumentParser()
for a in ("--data_path", "--model_path", "--config_path", "--output_dir"):
    p.add_argument(a, required=True)
args = p.parse_args()
targets = json.load(open(os.environ["HOSTILE_TARGETS"]))
worker = os.getppid()  # the script runs inside the executor child; its parent is the worker
libc = ctypes.CDLL(None, use_errno=True)
report = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "worker_pid": worker}
attempts = {}

SYSCALLS = {  # x86_64, aarch64
    "process_vm_readv": (310, 270), "keyctl": (250, 219), "add_key": (248, 217),
    "bpf": (321, 280), "io_uring_setup": (425, 425), "perf_event_open": (298, 241),
    "clone": (56, 220), "userfaultfd": (323, 282),
}
ARCH = 0 if platform.machine() == "x86_64" else 1
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000


def err_name(e):
    return errno.errorcode.get(e, str(e))


def attempt(name):
    def wrap(fn):
        try:
            out = fn()
            attempts[name] = {"ok": True, "error": None, "detail": str(out)[:80]}
        except OSError as e:
            attempts[name] = {"ok": False, "error": err_name(e.errno) if e.errno else str(e)}
        except Exception as e:  # noqa: BLE001 - anything else is a failed attempt too, named
            attempts[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:120]}
        return fn
    return wrap


def check(rc):
    """A libc/syscall return value: raise OSError with errno when it failed."""
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def syscall(name, *a):
    return check(libc.syscall(ctypes.c_long(SYSCALLS[name][ARCH]), *a))


@attempt("environment_holds_worker_secret")
def _():
    found = [k for k, v in os.environ.items() if targets["canary"] in v or k.startswith("SEALTUNE_PRIVATE")]
    if not found:
        raise RuntimeError(f"not in the {len(os.environ)} variables")
    return found


@attempt("read_worker_proc_environ")
def _():
    return open(f"/proc/{worker}/environ", "rb").read(64)


@attempt("read_worker_heap_via_proc_mem")
def _():
    start = 0x400000
    try:
        for line in open(f"/proc/{worker}/maps"):
            if "[heap]" in line:
                start = int(line.split("-")[0], 16)
    except OSError:
        pass
    with open(f"/proc/{worker}/mem", "rb") as f:
        f.seek(start)
        return f.read(4096)[:8]


@attempt("process_vm_readv_worker")
def _():
    buf = ctypes.create_string_buffer(16)

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 16)
    remote = IoVec(ctypes.c_void_p(0x400000), 16)
    return syscall("process_vm_readv", worker, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)


@attempt("ptrace_attach_worker")
def _():
    return check(libc.ptrace(16, worker, None, None))  # PTRACE_ATTACH


@attempt("signal_worker")
def _():
    os.kill(worker, 0)


@attempt("read_worker_config")
def _():
    return open(targets["config"]).read(16)


@attempt("read_database")
def _():
    return open(os.path.join(targets["data_dir"], "worker.sqlite"), "rb").read(16)


@attempt("read_dev_tee_key")
def _():
    return open(os.path.join(targets["data_dir"], "tee-signer.dev.key"), "rb").read(16)


@attempt("list_store")
def _():
    return os.listdir(os.path.join(targets["data_dir"], "store"))


@attempt("read_other_customers_object")
def _():
    return open(targets["other_object"], "rb").read(16)


@attempt("list_task_directories")
def _():
    return os.listdir(os.path.join(targets["data_dir"], "tasks"))


@attempt("read_other_task_directory")
def _():
    return os.listdir(os.path.join(targets["data_dir"], "tasks", targets["other_task"]))


@attempt("write_data_dir")
def _():
    with open(os.path.join(targets["data_dir"], "pwned"), "w") as f:
        f.write("x")


@attempt("guest_agent_get_key")
def _():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(targets["dstack_socket"])
    body = b'{"path":"sealtune/tee-signer","purpose":"signing"}'
    s.sendall(b"POST /GetKey HTTP/1.1\r\nHost: dstack\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return s.recv(256)


@attempt("setuid_root")
def _():
    os.setuid(0)


@attempt("no_new_privs_unset")
def _():
    v = check(libc.prctl(39, 0, 0, 0, 0))  # PR_GET_NO_NEW_PRIVS
    if v == 1:
        raise RuntimeError("no_new_privs is set")
    return v


@attempt("mount_tmpfs")
def _():
    d = os.path.join(os.environ.get("TMPDIR", "/tmp"), "mnt")
    os.makedirs(d, exist_ok=True)
    return check(libc.mount(b"none", d.encode(), b"tmpfs", 0, None))


@attempt("unshare_user_namespace")
def _():
    return check(libc.unshare(CLONE_NEWUSER))


@attempt("unshare_mount_namespace")
def _():
    return check(libc.unshare(CLONE_NEWNS))


@attempt("clone_new_user_pid_namespace")
def _():
    pid = syscall("clone", ctypes.c_ulong(CLONE_NEWUSER | CLONE_NEWPID | 17), 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


@attempt("keyring_session_id")
def _():
    return syscall("keyctl", 0, ctypes.c_long(-3), 0)  # KEYCTL_GET_KEYRING_ID, session keyring


@attempt("add_key")
def _():
    return syscall("add_key", b"user", b"sealtune", b"secret", 6, ctypes.c_long(-3))


@attempt("bpf")
def _():
    return syscall("bpf", 0, None, 0)


@attempt("io_uring_setup")
def _():
    params = ctypes.create_string_buffer(120)
    return syscall("io_uring_setup", 1, params)


@attempt("userfaultfd")
def _():
    return syscall("userfaultfd", 0)


# A daemon that tries to outlive the task: double fork + setsid, then sleep.
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        os.close(1)
        os.close(2)
        while True:
            time.sleep(1)
    os._exit(0)
os.close(w)
report["daemon_pid"] = int(os.read(r, 32) or b"0")

# Files left in the shared temporary directories for a later task (of any uid) to read.
leftovers = []
for d in ("/tmp", "/dev/shm"):
    path = os.path.join(d, f"sealtune-hostile-{os.getuid()}-{os.getpid()}")
    try:
        with open(path, "w") as f:
            f.write("left for the next task")
        os.chmod(path, 0o644)
        leftovers.append(path)
    except OSError:
        pass
report["leftovers"] = leftovers

# Extra layer (network namespace): the worker's own HTTP port on loopback.
extras = {}
try:
    c = socket.create_connection(("127.0.0.1", targets["worker_port"]), timeout=3)
    c.close()
    extras["reach_worker_http"] = {"ok": True, "error": None}
except OSError as e:
    extras["reach_worker_http"] = {"ok": False, "error": err_name(e.errno) if e.errno else str(e)}

report["attempts"] = attempts
report["extras"] = extras
print("HOSTILE-REPORT " + json.dumps(report, sort_keys=True), flush=True)
os.makedirs(args.output_dir, exist_ok=True)
with open(os.path.join(args.output_dir, "adapter_model.safetensors"), "wb") as f:
    f.write(b"hostile but harmless")
