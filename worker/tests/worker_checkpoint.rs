//! Sealed checkpoints and resume, against a real worker (`pipeline::checkpoint`): a torch-free
//! stand-in trainer (`tests/scripts/checkpoint_standin.py`) checkpoints through the `sealtune`
//! module every 2 steps; the worker is `SIGKILL`ed right after it sealed and recorded the first
//! checkpoint, and restarted:
//!
//! * while it is down, the sealed checkpoint is in the task directory and the plaintext marker the
//!   script wrote into every checkpoint is nowhere under the data directory;
//! * after the restart the script resumes from step 2 (it reads the step and the marker back from
//!   the unsealed checkpoint) and reports steps 3 to 6 only; the scratch directory is the task
//!   uid's, 0700, and another uid can neither list it nor read the checkpoint in it;
//! * the owner lists the checkpoints (step, loss, time, size), another customer gets a 404;
//! * once delivered, the task's checkpoints (rows, sealed files, scratch) are gone;
//! * a sealed checkpoint tampered with while the worker is down is refused: the task log says so and
//!   the task trains from step 1, and is delivered;
//! * a checkpoint holding a link (to `/etc/shadow`) is not sealed: the worker, root, never reads
//!   through what the script left, so nothing outside the task can come back to it at a resume;
//! * a task that fails after a checkpoint keeps none (rows, sealed files, scratch).
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::flow::Client;
use sealtune_e2e::chain::signer;
use sealtune_e2e::stack::*;
use sealtune_worker::exec::scratch;

const MARKER: &[u8] = b"PLAINTEXT-CHECKPOINT-MARKER-7f3a";
const NOBODY: u32 = 65534;

/// Polls the task log of `id` until it holds `needle`; returns the log.
async fn wait_log(stack: &Stack, who: usize, id: &str, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = task_log(stack, who, id).await;
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the task log:\n{log}\nworker log:\n{}",
            stack.worker_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every regular file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && std::fs::read(entry.path())
                    .unwrap_or_default()
                    .windows(needle.len())
                    .any(|w| w == needle)
            {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

/// `GET /v1/user/<who>/task/<id>/checkpoints`: the status and the body.
async fn checkpoints(stack: &Stack, who: usize, id: &str) -> (u16, serde_json::Value) {
    let url = stack.url(&format!(
        "/v1/user/{}/task/{id}/checkpoints",
        signer(who).address().to_checksum(None)
    ));
    let r = stack.http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Customer `who`'s client library (what `sealtune list-checkpoints` calls).
fn customer(stack: &Stack, who: usize) -> Client {
    let contracts = Contracts {
        ledger: stack.deployment.ledger,
        serving: stack.deployment.serving,
    };
    let chain = Chain::connect(&stack.anvil.endpoint, contracts, Some(signer(who))).unwrap();
    Client::new(chain).unwrap()
}

/// Runs `cmd` as `nobody` (another uid than the task's): whether it succeeded.
fn as_nobody(program: &str, arg: &Path) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The part of the log after the first `from`.
fn after<'a>(log: &'a str, from: &str) -> &'a str {
    &log[log
        .find(from)
        .unwrap_or_else(|| panic!("no `{from}` in:\n{log}"))..]
}

/// Starts a run of customer `who`'s task that the worker survives only until its first sealed
/// checkpoint (`after-checkpoint-sealed:kill`); returns the task id once the worker is dead.
async fn killed_after_first_checkpoint(stack: &mut Stack, who: usize) -> String {
    stack.worker = None;
    stack
        .start_worker(Some("after-checkpoint-sealed:kill"))
        .await;
    let id = submit(stack, who, 1).await;
    assert!(
        stack.wait_worker_exit(Duration::from_secs(120)).await,
        "the worker reached its crash point:\n{}",
        stack.worker_log()
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_training_resumes_from_the_last_sealed_checkpoint_and_a_tampered_one_is_refused()
 {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/checkpoint_standin.py"),
        stack.dir.path().join("quick_train.py"),
    )
    .unwrap();
    let config = std::fs::read_to_string(&stack.config_path).unwrap();
    let config = config.replacen(
        "weights = { hf = ",
        "checkpoint_steps = 2\nweights = { hf = ",
        1,
    );
    std::fs::write(&stack.config_path, config).unwrap();
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;

    // 1. Killed right after the first checkpoint (step 2) was sealed and recorded.
    stack.worker = None;
    stack
        .start_worker(Some("after-checkpoint-sealed:kill"))
        .await;
    // Another script and config: another TEE signer, which the owner acknowledges.
    stack.ack_signer().await;
    let id = submit(&stack, 2, 1).await;
    assert!(stack.wait_worker_exit(Duration::from_secs(120)).await);
    let data = stack.dir.path().join("data");
    let sealed = data.join("tasks").join(&id).join("checkpoints/2.sealed");
    assert!(sealed.is_file(), "the sealed checkpoint of step 2 is kept");
    assert_eq!(
        files_holding(&data, MARKER),
        Vec::<String>::new(),
        "no plaintext checkpoint on disk"
    );

    // 2. Restarted: resumes from step 2; the scratch is private to the task uid.
    stack.start_worker(None).await;
    let log = wait_log(&stack, 2, &id, "resumed at step 2", Duration::from_secs(60)).await;
    let dir = scratch::task_scratch(&data, &id, "checkpoints");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700, "{log}");
    assert_ne!(meta.uid(), 0, "the task uid's");
    assert!(log.contains(&format!("checkpoint dir mode 700 uid {}", meta.uid())));
    assert!(
        !as_nobody("ls", &dir),
        "another uid cannot list the scratch"
    );
    assert!(
        !as_nobody("cat", &dir.join("checkpoint-2/trainer_state.json")),
        "another uid cannot read the resumed checkpoint"
    );
    let (status, listed) = checkpoints(&stack, 2, &id).await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["step"], 2, "{listed}");
    assert_eq!(
        listed[0]["loss"], 0.5,
        "the loss reported at step 2: {listed}"
    );
    assert!(listed[0]["sealedBytes"].as_u64().unwrap() > MARKER.len() as u64 * 64);
    assert!(listed[0]["createdAt"].as_i64().unwrap() > 0);
    assert_eq!(checkpoints(&stack, 3, &id).await.0, 404, "owner only");
    let by_client = customer(&stack, 2)
        .checkpoints(stack.provider_address(), &id)
        .await
        .unwrap();
    assert_eq!((by_client[0].step, by_client[0].loss), (2, Some(0.5)));

    let t = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(60),
    )
    .await;
    let log = task_log(&stack, 2, &id).await;
    assert_eq!(t["progress"], "Delivered", "{log}");
    let resumed = after(&log, "resuming from the sealed checkpoint of step 2");
    assert!(
        resumed.contains("step 3/6") && resumed.contains("step 6/6"),
        "{log}"
    );
    assert!(
        !resumed.contains("step 1/6") && !resumed.contains("step 2/6"),
        "steps before the checkpoint are not repeated:\n{log}"
    );
    assert!(resumed.contains("checkpoint of step 4 sealed"), "{log}");
    // Gone once the task trained.
    assert_eq!(checkpoints(&stack, 2, &id).await.1, serde_json::json!([]));
    assert!(!data.join("tasks").join(&id).join("checkpoints").exists());
    assert!(!dir.exists(), "no scratch left");
    assert_eq!(files_holding(&data, MARKER), Vec::<String>::new());

    // 3. A sealed checkpoint edited while the worker is down is refused: training from step 1.
    let id = killed_after_first_checkpoint(&mut stack, 3).await;
    let sealed = data.join("tasks").join(&id).join("checkpoints/2.sealed");
    let mut bytes = std::fs::read(&sealed).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&sealed, bytes).unwrap();
    stack.start_worker(None).await;
    let t = wait_state(
        &stack,
        3,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(60),
    )
    .await;
    let log = task_log(&stack, 3, &id).await;
    assert_eq!(t["progress"], "Delivered", "{log}");
    let refused = after(&log, "the sealed checkpoint of step 2 is refused");
    assert!(refused.contains("training starts from step 0"), "{log}");
    assert!(
        refused.contains("step 1/6"),
        "trained from the start:\n{log}"
    );
    assert!(!log.contains("resumed at step"), "{log}");

    // 4. A link in a checkpoint: not sealed, nothing recorded; the training goes on.
    let mode = stack.dir.path().join("standin-mode");
    std::fs::write(&mode, "link").unwrap();
    stack
        .env
        .push(("QUICK_SCRIPT_MODE_FILE".into(), mode.display().to_string()));
    stack.worker = None;
    stack.start_worker(None).await;
    stack.fund(4, 10, 5).await;
    let id = submit(&stack, 4, 1).await;
    let log = wait_log(
        &stack,
        4,
        &id,
        "checkpoint of step 4 not sealed",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        after(&log, "checkpoint of step 2 not sealed").contains("symbolic link"),
        "{log}"
    );
    assert_eq!(checkpoints(&stack, 4, &id).await.1, serde_json::json!([]));
    assert!(
        !data
            .join("tasks")
            .join(&id)
            .join("checkpoints/2.sealed")
            .exists()
    );
    let t = wait_state(
        &stack,
        4,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Delivered",
        "{}",
        task_log(&stack, 4, &id).await
    );

    // 5. A task that fails after its checkpoints were sealed keeps none of them.
    std::fs::write(&mode, "fail").unwrap();
    stack.fund(5, 10, 5).await;
    let id = submit(&stack, 5, 1).await;
    let t = wait_state(
        &stack,
        5,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(60),
    )
    .await;
    let log = task_log(&stack, 5, &id).await;
    assert_eq!(t["progress"], "Failed", "{log}");
    assert!(log.contains("checkpoint of step 4 sealed"), "{log}");
    assert_eq!(
        checkpoints(&stack, 5, &id).await.1,
        serde_json::json!([]),
        "{log}"
    );
    assert!(!data.join("tasks").join(&id).join("checkpoints").exists());
    assert!(
        !scratch::worker_scratch(&data).join(&id).exists(),
        "no scratch left"
    );
}

/// The one real-training test of checkpoints: the stock LoRA script on SmolLM2-135M (6 steps, a
/// sealed checkpoint every 2) and the worker `SIGKILL`ed mid-interval (once step 3 was reported).
/// After the restart the Trainer resumes from the last sealed checkpoint: the first step reported is
/// the one after it, the steps before it are not trained again, and the work lost is less than one
/// checkpoint interval. The adapter is delivered and decrypts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_lora_script_killed_mid_interval_resumes_from_its_last_sealed_checkpoint() {
    const EVERY: u64 = 2;
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            training_timeout: "600s",
            ..Default::default()
        },
    )
    .await;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/training/lora_causal_lm.py"),
        stack.dir.path().join("quick_train.py"),
    )
    .unwrap();
    let config = std::fs::read_to_string(&stack.config_path).unwrap();
    let config = config.replacen(
        "weights = { hf = ",
        &format!("checkpoint_steps = {EVERY}\nweights = {{ hf = "),
        1,
    );
    std::fs::write(&stack.config_path, config).unwrap();
    stack.fund(2, 10, 5).await;
    stack.worker = None;
    stack.start_worker(None).await;
    stack.ack_signer().await;
    let params = PARAMS.replace("\"max_steps\":2", "\"max_steps\":6");
    let hash = uploaded(&stack, 2, dataset_jsonl(16)).await;
    let id = created(&stack, 2, &task_body(2, &hash, 1, &params)).await;

    // Killed once step 3 is reported: past the checkpoint of step 2, before the one of step 4.
    let before = wait_log(&stack, 2, &id, "step 3/6", Duration::from_secs(600)).await;
    stack.worker = None;
    let restarted = Instant::now();
    assert!(before.contains("checkpoint of step 2 sealed"), "{before}");
    let reached = (1..=6u64)
        .filter(|s| before.contains(&format!("step {s}/6")))
        .max()
        .unwrap();

    stack.start_worker(None).await;
    const RESUMING: &str = "resuming from the sealed checkpoint of step ";
    let log = wait_log(&stack, 2, &id, RESUMING, Duration::from_secs(600)).await;
    let from: u64 = after(&log, RESUMING)[RESUMING.len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let next = format!("step {}/6", from + 1);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !after(&task_log(&stack, 2, &id).await, RESUMING).contains(&next) {
        assert!(Instant::now() < deadline, "no {next} after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resume_time = restarted.elapsed();
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(600),
    )
    .await;
    let log = task_log(&stack, 2, &id).await;
    assert_eq!(t["progress"], "Delivered", "{log}");
    let resumed = after(&log, RESUMING);
    assert!(from >= 2 && from.is_multiple_of(EVERY), "{log}");
    assert!(
        reached - from < EVERY,
        "at most one checkpoint interval lost (reached {reached}, resumed from {from}):\n{log}"
    );
    assert!(
        resumed.contains(&format!("resuming from checkpoint-{from}")),
        "{log}"
    );
    for s in 1..=from {
        assert!(
            !resumed.contains(&format!("step {s}/6")),
            "step {s} is not trained again:\n{log}"
        );
    }
    assert!(resumed.contains(&format!("step {}/6", from + 1)), "{log}");
    assert!(resumed.contains("step 6/6"), "{log}");
    eprintln!(
        "BENCH resume: kill to the first resumed step ({next}) {:.1} s; reached step {reached}, resumed from {from}",
        resume_time.as_secs_f64()
    );
    for line in log.lines().filter(|l| {
        l.contains("sealed (") || l.contains("opened in") || l.contains("trainer wrote")
    }) {
        eprintln!("BENCH {line}");
    }
    let adapter = download_ack_decrypt(&stack, 2, &id).await;
    assert!(adapter.len() > 8, "an adapter");
}
