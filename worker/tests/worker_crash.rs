//! Crash-safe sealing and clean stops, against a real worker: the worker killed (abort, or a real
//! `SIGKILL`) between every sealing step, with the sealed file damaged or replaced while it is
//! down, still delivers a model the customer decrypts; a crash between settling and recording it
//! records what the chain charged; `SIGTERM` during training requeues the task and a stalled HTTP
//! client cannot hold the stop; a training process left behind by a dead worker is killed by the
//! next one before the task trains again. The matrix runs the torch-free stand-in script
//! (`QUICK_SCRIPT`, sealing in the child or not); the stock LoRA script runs once.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use sealtune_e2e::chain::*;
use sealtune_e2e::process::processes_mentioning;
use sealtune_e2e::stack::*;
use sealtune_protocol::deliverable;
use tokio::io::AsyncWriteExt as _;

/// What a case does to the sealed file while the worker is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Nothing.
    None,
    /// Cut the file in place to half its length (a write the crash interrupted).
    Truncate,
    /// Replace it with the same output sealed under a key that was never committed.
    Foreign,
}

/// One crash: where, how the script seals, abort or `SIGKILL`, what is damaged, and how many
/// times the task trains in all.
#[derive(Debug, Clone, Copy)]
struct Crash {
    point: &'static str,
    /// `seal`: the script seals in the executor child; `ok`: finalize seals its output directory.
    mode: &'static str,
    kill: bool,
    damage: Damage,
    trainings: usize,
}

const fn crash(
    point: &'static str,
    mode: &'static str,
    kill: bool,
    damage: Damage,
    trainings: usize,
) -> Crash {
    Crash {
        point,
        mode,
        kill,
        damage,
        trainings,
    }
}

/// Every step between training and delivery, on both sealing paths, abort and `SIGKILL` in turn.
const CRASHES: [Crash; 13] = [
    // Sealed in the executor child.
    crash("after-model-key", "seal", false, Damage::None, 1),
    crash("after-seal-written", "seal", true, Damage::None, 2),
    crash("after-seal-committed", "seal", false, Damage::None, 1),
    crash("after-seal-renamed", "seal", true, Damage::None, 1),
    crash("after-sign", "seal", false, Damage::None, 1),
    crash("after-import", "seal", true, Damage::None, 1),
    // A partial file is discarded; the child sealed (no output to seal again): trained again.
    crash("after-seal-renamed", "seal", false, Damage::Truncate, 2),
    // Sealed by finalize from the output directory.
    crash("after-seal-written", "ok", false, Damage::None, 1),
    crash("after-seal-committed", "ok", true, Damage::None, 1),
    crash("after-seal-renamed", "ok", false, Damage::None, 1),
    crash("after-sign", "ok", true, Damage::None, 1),
    crash("after-import", "ok", false, Damage::None, 1),
    // A file sealed under a key never committed is discarded and the output sealed again.
    crash("after-seal-renamed", "ok", true, Damage::Foreign, 1),
];

fn task_dir(stack: &Stack, id: &str) -> PathBuf {
    stack.dir.path().join("data/tasks").join(id)
}

fn damage(dir: &Path, how: Damage) {
    let sealed = dir.join("model.sealed");
    match how {
        Damage::None => {}
        Damage::Truncate => {
            let len = std::fs::metadata(&sealed).unwrap().len();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&sealed)
                .unwrap();
            f.set_len(len / 2).unwrap();
        }
        Damage::Foreign => {
            let output = dir.join("output");
            assert!(output.is_dir(), "finalize seals the output directory");
            deliverable::seal_dir_to_file(
                &output,
                &sealed,
                &mut deliverable::OsRng,
                &Default::default(),
            )
            .unwrap();
        }
    }
}

/// The worker's pid.
fn worker_pid(stack: &Stack) -> rustix::process::Pid {
    let worker = stack.worker.as_ref().expect("the worker runs");
    rustix::process::Pid::from_raw(worker.0.id() as i32).unwrap()
}

/// Whether process `pid` is alive (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Polls the task log of `id` until it holds `needle`.
async fn wait_log(stack: &Stack, who: usize, id: &str, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let log = task_log(stack, who, id).await;
        if log.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the task log:\n{log}\nworker log:\n{}",
            stack.worker_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills the worker between every step from training to delivery (abort and `SIGKILL`, both sealing
/// paths, the sealed file cut or replaced while the worker is down), restarts it, and checks that
/// the customer decrypts what was delivered, the task trained again only when no committed seal
/// survived, and it was settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_every_sealing_step_the_customer_decrypts_what_was_delivered() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    for (i, c) in CRASHES.into_iter().enumerate() {
        let who = 2 + (i % 2);
        if i < 2 {
            stack.fund(who, 20, 10).await;
        }
        stack.worker = None;
        stack.env = vec![("QUICK_SCRIPT_MODE".into(), c.mode.into())];
        let at = if c.kill {
            format!("{}:kill", c.point)
        } else {
            c.point.to_owned()
        };
        stack.start_worker(Some(&at)).await;
        let id = submit(&stack, who, 100 + i as u64).await;
        assert!(
            stack.wait_worker_exit(Duration::from_secs(120)).await,
            "{c:?}: the worker died at the crash point"
        );
        damage(&task_dir(&stack, &id), c.damage);
        stack.start_worker(None).await;
        let t = wait_state(
            &stack,
            who,
            &id,
            &["Delivered", "Failed"],
            Duration::from_secs(120),
        )
        .await;
        let log = task_log(&stack, who, &id).await;
        assert_eq!(t["progress"], "Delivered", "{c:?}: {log}");
        let adapter = download_ack_decrypt(&stack, who, &id).await;
        assert!(
            adapter.starts_with(b"weights-"),
            "{c:?}: the script's output"
        );
        assert_eq!(
            log.matches("training started").count(),
            c.trainings,
            "{c:?}: trained again only when no committed seal survived:\n{log}"
        );
        assert_eq!(
            settlements(&stack, &id).await.len(),
            1,
            "{c:?}: settled exactly once"
        );
    }
}

/// A `SIGKILL` between `settleFees` and recording it, on the penalty path: the fee recorded after
/// the restart is what the `FeesSettled` event says was charged (30 %), not the task's fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_settling_and_recording_it_records_the_fee_the_chain_charged() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            ack_timeout: "3s",
            ..Default::default()
        },
    )
    .await;
    stack.fund(2, 10, 5).await;
    stack.worker = None;
    stack.start_worker(Some("after-settle:kill")).await;
    let id = submit(&stack, 2, 1).await;
    assert!(stack.wait_worker_exit(Duration::from_secs(120)).await);
    let events = settlements(&stack, &id).await;
    assert_eq!(events.len(), 1, "settled before the kill");
    assert!(!events[0].acknowledged);
    stack.start_worker(None).await;
    let t = wait_state(&stack, 2, &id, &["Finished"], Duration::from_secs(60)).await;
    let full = U256::from(t["tokens"].as_u64().unwrap()) * U256::from(PRICE);
    assert_eq!(events[0].fee, full * U256::from(30u64) / U256::from(100u64));
    assert_eq!(
        t["settledFee"],
        events[0].fee.to_string(),
        "the recorded fee is the chain's"
    );
    assert!(
        task_log(&stack, 2, &id)
            .await
            .contains("settlement found on chain")
    );
    assert_eq!(
        settlements(&stack, &id).await.len(),
        1,
        "never settled twice"
    );
}

/// `SIGTERM` while the script trains and a client holds a request open (headers sent, the body
/// stalled): the worker stops within its grace period, the training process dies, and the task is
/// queued again (not failed, the stopped attempt not counted) and delivered after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_training_requeues_the_task_and_a_stalled_client_cannot_hold_the_stop() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    let mode = stack.dir.path().join("script-mode");
    std::fs::write(&mode, "hang").unwrap();
    stack.env = vec![("QUICK_SCRIPT_MODE_FILE".into(), mode.display().to_string())];
    stack.worker = None;
    stack.start_worker(None).await;
    stack.fund(2, 10, 5).await;
    let id = submit(&stack, 2, 1).await;
    wait_log(
        &stack,
        2,
        &id,
        "hanging on purpose",
        Duration::from_secs(120),
    )
    .await;

    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", stack.port))
        .await
        .unwrap();
    let path = format!("/v1/user/{}/task", signer(3).address().to_checksum(None));
    stalled
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: worker\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{\"userAddress\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    rustix::process::kill_process(worker_pid(&stack), rustix::process::Signal::TERM).unwrap();
    let stopping = Instant::now();
    assert!(
        !stack.wait_worker_exit(Duration::from_secs(30)).await,
        "a clean exit"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "stopped in {:?}",
        stopping.elapsed()
    );
    assert_eq!(
        processes_mentioning(&id),
        Vec::<String>::new(),
        "the training process was stopped with the worker"
    );
    drop(stalled);

    std::fs::write(&mode, "ok").unwrap();
    stack.start_worker(None).await;
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    let log = task_log(&stack, 2, &id).await;
    assert_eq!(t["progress"], "Delivered", "{log}");
    assert!(log.contains("queued again"), "{log}");
    assert_eq!(
        log.matches("training (attempt 1)").count(),
        2,
        "the stopped attempt is not counted:\n{log}"
    );
    assert!(
        download_ack_decrypt(&stack, 2, &id)
            .await
            .starts_with(b"weights-")
    );
}

/// What a `SIGKILL`ed worker leaves running is killed by the restarted worker before it trains the
/// task again in the same directory: the executor itself when its parent-death signal is off (the
/// named test switch: the first layer assumed failed), and, with it on, what the script started
/// (the executor died with the worker, its script's `sleep` did not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_kills_what_its_predecessor_left_running() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            // Its own uids: another test's worker leasing uid 61000 would kill the orphan first.
            uid_base: Some(62_000),
            ..Default::default()
        },
    )
    .await;
    let mode = stack.dir.path().join("script-mode");
    std::fs::write(&mode, "hang").unwrap();
    let mode_env = (
        "QUICK_SCRIPT_MODE_FILE".to_owned(),
        mode.display().to_string(),
    );
    stack.env = vec![
        mode_env.clone(),
        (
            sealtune_worker::exec::TEST_SURVIVE_WORKER_ENV.into(),
            "1".into(),
        ),
    ];
    stack.worker = None;
    stack.start_worker(None).await;
    stack.fund(2, 10, 5).await;
    let id = submit(&stack, 2, 1).await;
    wait_log(
        &stack,
        2,
        &id,
        "hanging on purpose",
        Duration::from_secs(120),
    )
    .await;
    let executor: i32 = processes_mentioning(&id)
        .iter()
        .find(|p| p.contains(" exec "))
        .and_then(|p| p.split(':').next()?.parse().ok())
        .expect("the executor runs");

    rustix::process::kill_process(worker_pid(&stack), rustix::process::Signal::KILL).unwrap();
    assert!(stack.wait_worker_exit(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        alive(executor),
        "without its parent-death signal the executor outlives the worker"
    );

    std::fs::write(&mode, "ok").unwrap();
    stack.env = vec![mode_env];
    stack.start_worker(None).await;
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    let log = task_log(&stack, 2, &id).await;
    assert_eq!(t["progress"], "Delivered", "{log}");
    assert!(!alive(executor), "the leftover was killed");
    let killed = log
        .find(&format!("(executor pid {executor})"))
        .unwrap_or_else(|| panic!("no kill in the log:\n{log}"));
    assert!(
        killed < log.rfind("training started").unwrap(),
        "killed before the task trained again:\n{log}"
    );
    assert!(
        download_ack_decrypt(&stack, 2, &id)
            .await
            .starts_with(b"weights-")
    );

    // The parent-death signal on: the executor dies with the worker, what its script started stays.
    std::fs::write(&mode, "spawn").unwrap();
    stack.fund(3, 10, 5).await;
    let id = submit(&stack, 3, 1).await;
    wait_log(&stack, 3, &id, "spawned ", Duration::from_secs(120)).await;
    let log = task_log(&stack, 3, &id).await;
    let orphan: i32 = log
        .split("spawned ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("the pid of the script's `sleep`");
    rustix::process::kill_process(worker_pid(&stack), rustix::process::Signal::KILL).unwrap();
    assert!(stack.wait_worker_exit(Duration::from_secs(10)).await);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !processes_mentioning(&id).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(processes_mentioning(&id), Vec::<String>::new());
    assert!(
        alive(orphan),
        "the script's `sleep` outlives the worker and the executor"
    );

    std::fs::write(&mode, "ok").unwrap();
    stack.start_worker(None).await;
    let t = wait_state(
        &stack,
        3,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    let log = task_log(&stack, 3, &id).await;
    assert_eq!(t["progress"], "Delivered", "{log}");
    assert!(!alive(orphan), "the orphan was killed:\n{log}");
    assert!(log.contains("killed 1 process(es)"), "{log}");
}

/// The stock LoRA script on SmolLM2-135M, sealing in the child, with the worker `SIGKILL`ed
/// between sealing and recording it: the committed seal is used after the restart (one training)
/// and the customer decrypts the adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_script_killed_between_sealing_and_recording_it_delivers_what_the_customer_decrypts()
 {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            training_timeout: "600s",
            ..Default::default()
        },
    )
    .await;
    // The stack's model runs `quick_train.py`: it becomes the stock script.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/training/lora_causal_lm.py"),
        stack.dir.path().join("quick_train.py"),
    )
    .unwrap();
    stack.fund(2, 10, 5).await;
    stack.worker = None;
    stack.start_worker(Some("after-seal-renamed:kill")).await;
    // Another script is another measured config, hence another TEE signer: the owner acknowledges it.
    stack.ack_signer().await;
    let id = submit(&stack, 2, 1).await;
    assert!(stack.wait_worker_exit(Duration::from_secs(600)).await);
    stack.start_worker(None).await;
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    let log = task_log(&stack, 2, &id).await;
    assert_eq!(t["progress"], "Delivered", "{log}");
    assert_eq!(log.matches("training started").count(), 1, "{log}");
    let adapter = download_ack_decrypt(&stack, 2, &id).await;
    let header = u64::from_le_bytes(adapter[..8].try_into().unwrap()) as usize;
    let meta: serde_json::Value = serde_json::from_slice(&adapter[8..8 + header]).unwrap();
    assert!(
        meta.as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("lora_A")),
        "a LoRA adapter: {meta}"
    );
}
