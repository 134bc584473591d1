//! A task run as several ranks (`exec::spawn_ranks`, torchrun's environment contract), with small
//! scripts and no training (the stock LoRA script on 2 ranks is in `exec_lora.rs`): the ranks meet
//! over gloo on loopback inside the sandbox, only rank 0 seals, every rank's events reach the task,
//! and the first rank to fail or die stops the others, fails the run with its reason and leaves no
//! process of the task's uid behind.

mod exec_support;

use std::time::{Duration, Instant};

use exec_support::*;
use sealtune_e2e::process::live_processes_of;
use sealtune_protocol::events::Event;
use sealtune_worker::exec::ExecError;
use tokio_util::sync::CancellationToken;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the rank tests need root (the per-task uid): run the suite as root, as CI and the image do"
    );
}

/// The task uid a rank printed as `uid=<n>` (rank 1's line comes through as `rank 1: uid=<n>`).
fn printed_uid(events: &[Event]) -> u32 {
    logs(events)
        .iter()
        .find_map(|(_, l)| {
            l.split_once("uid=")
                .and_then(|(_, u)| u.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no rank printed its uid: {:#?}", logs(events)))
}

/// Waits (a little) for the processes of `uid` to be gone: `after_run` killed them, the kernel may
/// still be reaping.
fn none_left(uid: u32) {
    for _ in 0..50 {
        if live_processes_of(uid).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "processes of uid {uid} survived: {:?}",
        live_processes_of(uid)
    );
}

#[tokio::test]
async fn two_ranks_meet_over_gloo_and_only_rank_0_seals() {
    require_root();
    let script = r#"
import os, torch, torch.distributed as dist, sealtune
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
assert world == 2 and os.environ["LOCAL_RANK"] == str(rank), dict(os.environ)
assert os.environ["MASTER_ADDR"] == "127.0.0.1", os.environ["MASTER_ADDR"]
dist.init_process_group("gloo")
t = torch.tensor([rank + 1.0])
dist.all_reduce(t)
assert t.item() == 3.0, t
sealtune.report(step=1, total=1, loss=float(t.item()))
print(f"uid={os.getuid()}", flush=True)
done = sealtune.seal_model({"w": torch.ones(2)})
assert done["sealed"] == (rank == 0), done
assert os.listdir(sealtune.task_context().output_dir) == [], "rank 1 saved a plaintext model"
dist.barrier()
dist.destroy_process_group()
"#;
    let task = Task::new(script, DATASET).with_seal();
    let (result, events) =
        run_ranks(&task, 2, Duration::from_secs(120), CancellationToken::new()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}\n{:#?}", logs(&events)));

    let sealed = outcome.sealed.expect("rank 0 sealed the model");
    assert_eq!(sealed.chunks, 1);
    let progress: Vec<_> = non_logs(&events)
        .into_iter()
        .filter(|e| matches!(e, Event::Progress { .. }))
        .collect();
    assert_eq!(
        progress.len(),
        1,
        "only rank 0's progress is the task's: {progress:?}"
    );
    let lines = logs(&events);
    assert!(
        lines
            .iter()
            .any(|(_, l)| l == "rank 1: step 1/1, loss 3.0000"),
        "rank 1's progress reaches the task log: {lines:#?}"
    );
    assert!(
        lines.iter().any(|(_, l)| l.starts_with("rank 1: uid=")),
        "{lines:#?}"
    );
    none_left(printed_uid(&events));
}

#[tokio::test]
async fn a_rank_killed_mid_run_stops_the_others_and_fails_the_run() {
    require_root();
    let script = r#"
import os, signal, time
rank = int(os.environ["RANK"])
print(f"uid={os.getuid()}", flush=True)
if rank == 1:
    time.sleep(1)
    os.kill(os.getpid(), signal.SIGKILL)
while True:  # rank 0 would wait for rank 1 forever
    time.sleep(0.1)
"#;
    let task = Task::new(script, DATASET).with_seal();
    let started = Instant::now();
    let (result, events) =
        run_ranks(&task, 2, Duration::from_secs(120), CancellationToken::new()).await;
    match result {
        Err(ExecError::Rank {
            rank: 1,
            world: 2,
            source,
        }) => assert!(matches!(*source, ExecError::OutOfMemory), "{source:?}"),
        other => panic!("{other:?}\n{:#?}", logs(&events)),
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "rank 0 was not stopped when rank 1 died"
    );
    assert!(!task.root().join("model.sealed").exists());
    none_left(printed_uid(&events));
}

#[tokio::test]
async fn the_first_rank_to_fail_gives_the_reason() {
    require_root();
    let script = r#"
import os, time
rank = int(os.environ["RANK"])
print(f"uid={os.getuid()}", flush=True)
if rank == 0:
    time.sleep(1)
    raise ValueError("rank zero broke")
time.sleep(600)
"#;
    let task = Task::new(script, DATASET);
    let (result, events) =
        run_ranks(&task, 2, Duration::from_secs(120), CancellationToken::new()).await;
    let err = result.expect_err("rank 0 failed");
    assert_eq!(
        err.to_string(),
        "rank 0 of 2: the training script failed: ValueError: rank zero broke"
    );
    none_left(printed_uid(&events));
}

#[tokio::test]
async fn a_cancel_stops_every_rank() {
    require_root();
    let script = r#"
import os, time, sealtune
print(f"uid={os.getuid()}", flush=True)
open(os.path.join(sealtune.task_context().output_dir, "ready-" + os.environ["RANK"]), "w").close()
time.sleep(600)
"#;
    let task = Task::new(script, DATASET);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let output = task.spec.output_dir.clone();
    tokio::spawn(async move {
        // Once both ranks run their script (a loaded machine takes a while to start Python).
        for _ in 0..1200 {
            if output.join("ready-0").exists() && output.join("ready-1").exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        trigger.cancel();
    });
    let (result, events) = run_ranks(&task, 2, Duration::from_secs(300), cancel).await;
    assert!(matches!(result, Err(ExecError::Cancelled)), "{result:?}");
    none_left(printed_uid(&events));
}

/// A process in a network namespace of its own (`unshare -n sleep 60`), once it is in it.
fn spawn_in_own_netns() -> std::process::Child {
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut child = std::process::Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .spawn()
        .expect("unshare (util-linux)");
    for _ in 0..100 {
        if std::fs::read_link(format!("/proc/{}/ns/net", child.id())).is_ok_and(|ns| ns != ours) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("unshare -n never left our network namespace");
}

/// The attack on a join by pid: rank 0 ends, the kernel hands its pid to another process in a
/// network namespace with a network (another container of the CVM), and a rank that joins "the
/// namespace of pid N" enters that one. The ranks join through a pidfd opened on rank 0 instead:
/// the pid is reused here for real (`ns_last_pid`), and the join through the pidfd is refused.
#[test]
fn a_rank_joins_rank_0_by_pidfd_never_whoever_reuses_its_pid() {
    require_root();
    let mut rank0 = spawn_in_own_netns();
    let pid = rank0.id();
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    rank0.kill().unwrap();
    rank0.wait().unwrap();
    // Another process takes the pid (other processes of the machine may take it first: retry).
    let stranger = (0..50)
        .find_map(|_| {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
            let mut child = spawn_in_own_netns();
            if child.id() == pid {
                return Some(child);
            }
            child.kill().unwrap();
            child.wait().unwrap();
            None
        })
        .expect("could not get the pid reused in 50 tries");
    let strangers_ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(
        strangers_ns,
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        "a join by pid {pid} would now enter the stranger's namespace"
    );

    let raw = std::os::fd::IntoRawFd::into_raw_fd(pidfd);
    let joined = std::thread::spawn(move || {
        let result = sealtune_worker::exec::sandbox::net::join(raw);
        (
            result,
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        )
    })
    .join()
    .unwrap();
    let mut stranger = stranger;
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    assert_eq!(
        joined.0,
        Err("rank 0 ended before this rank joined its network namespace".to_string())
    );
    assert_ne!(
        joined.1, strangers_ns,
        "the rank entered the stranger's namespace"
    );

    // The same join through the pidfd of a live rank 0 enters its namespace.
    let mut live = spawn_in_own_netns();
    let live_ns = std::fs::read_link(format!("/proc/{}/ns/net", live.id())).unwrap();
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(live.id() as i32).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    let raw = std::os::fd::IntoRawFd::into_raw_fd(pidfd);
    let joined = std::thread::spawn(move || {
        let result = sealtune_worker::exec::sandbox::net::join(raw);
        (
            result,
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        )
    })
    .join()
    .unwrap();
    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(joined, (Ok(()), live_ns));
}
