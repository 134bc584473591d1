//! The training sandbox against a hostile script, through the real worker (dev attestation, one
//! stack): `scripts/hostile_train.py` tries every escape a reviewer found with a dev worker (the
//! worker's environment, `/proc/<worker>/{environ,mem}`, the config with the wallet key, the
//! database, the dev TEE key, other customers' objects and other tasks' directories, writing into
//! the data directory, a `setsid` daemon, the guest agent's socket and `GetKey`) and the kernel
//! escapes the seccomp filter refuses (ptrace, mounts, namespaces, keyrings, ...). Every attempt
//! must fail with its specific error, the task must end cleanly, the worker keep serving, and no
//! process of the task's uid (nor a file it left in /tmp or /dev/shm) survive it.
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sealtune_e2e::chain::DEV_KEYS;
use sealtune_e2e::process::live_processes_of;
use sealtune_e2e::stack::*;
use serde_json::Value;

const HOSTILE: &str = include_str!("scripts/hostile_train.py");
const CANARY: &str = "canary-7c1e4b-provider-secret";

/// Every attempt of the hostile script and the error that must stop it.
fn expected_failures() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            "environment_holds_worker_secret",
            "RuntimeError: not in the",
        ),
        ("read_worker_proc_environ", "EACCES"),
        ("read_worker_heap_via_proc_mem", "EACCES"),
        ("process_vm_readv_worker", "EPERM"),
        ("ptrace_attach_worker", "EPERM"),
        ("signal_worker", "EPERM"),
        ("read_worker_config", "EACCES"),
        ("read_database", "EACCES"),
        ("read_dev_tee_key", "EACCES"),
        ("list_store", "EACCES"),
        ("read_other_customers_object", "EACCES"),
        ("list_task_directories", "EACCES"),
        ("read_other_task_directory", "EACCES"),
        ("write_data_dir", "EACCES"),
        ("guest_agent_get_key", "EACCES"),
        ("setuid_root", "EPERM"),
        ("no_new_privs_unset", "RuntimeError: no_new_privs is set"),
        ("mount_tmpfs", "EPERM"),
        ("unshare_user_namespace", "EPERM"),
        ("unshare_mount_namespace", "EPERM"),
        ("clone_new_user_pid_namespace", "EPERM"),
        ("keyring_session_id", "EPERM"),
        ("add_key", "EPERM"),
        ("bpf", "EPERM"),
        ("io_uring_setup", "EPERM"),
        ("userfaultfd", "EPERM"),
    ])
}

/// A root-only Unix socket standing in for the dstack guest agent; counts the connections it accepts.
fn fake_guest_agent(path: &std::path::Path) -> Arc<AtomicUsize> {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    accepted
}

fn hostile_report(log: &str) -> Value {
    let line = log
        .lines()
        .find_map(|l| l.split_once("HOSTILE-REPORT ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no HOSTILE-REPORT in the task log:\n{log}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn task_uid(log: &str) -> u32 {
    log.lines()
        .find_map(|l| {
            l.split_once("training in the sandbox as uid ")
                .map(|(_, u)| u)
        })
        .and_then(|u| u.trim().parse().ok())
        .unwrap_or_else(|| panic!("the task ran without a task uid:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_script_escapes_nothing_and_leaves_nothing_running() {
    // Without root there is no per-task uid: fail rather than pass without checking anything.
    assert!(
        rustix::process::geteuid().is_root(),
        "the hostile-script suite needs a worker running as root (the per-task uid), as CI and the image do"
    );
    let mut stack = Stack::start(env!("CARGO_BIN_EXE_sealtune-worker"), Default::default()).await;
    let dir = stack.dir.path().to_path_buf();
    let data_dir = dir.join("data");

    // Another customer's task first: its directory and its dataset in the store are the targets.
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;
    let victim = submit(&stack, 2, 1).await;
    wait_state(&stack, 2, &victim, &["Delivered"], Duration::from_secs(120)).await;
    let other_object = std::fs::read_dir(data_dir.join("store/objects"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file())
        .expect("the victim's dataset is in the store");

    // The hostile script replaces the model's training script.
    std::fs::write(dir.join("quick_train.py"), HOSTILE).unwrap();
    let socket = dir.join("dstack.sock");
    let targets = serde_json::json!({
        "canary": CANARY,
        "config": stack.config_path,
        "data_dir": data_dir,
        "other_object": other_object,
        "other_task": victim,
        "dstack_socket": socket,
        "worker_port": stack.port,
    });
    std::fs::write(dir.join("hostile_targets.json"), targets.to_string()).unwrap();

    // The worker restarts with the hostile script, the guest agent's socket configured and secrets
    // in its environment.
    let agent_calls = fake_guest_agent(&socket);
    let config = std::fs::read_to_string(&stack.config_path)
        .unwrap()
        .replace(
            "source = \"dev\"",
            &format!("source = \"dev\"\ndstack_socket = \"{}\"", socket.display()),
        )
        .replace(
            "env_allow = [\"QUICK_SCRIPT_MODE\", \"QUICK_SCRIPT_MODE_FILE\"]",
            "env_allow = [\"QUICK_SCRIPT_MODE\", \"QUICK_SCRIPT_MODE_FILE\", \"HOSTILE_TARGETS\"]",
        );
    assert!(config.contains("HOSTILE_TARGETS"), "{config}");
    write_private(&stack.config_path, &config);
    stack
        .env
        .push(("PROVIDER_SECRET_TOKEN".into(), CANARY.into()));
    stack
        .env
        .push(("SEALTUNE_PRIVATE_KEY".into(), DEV_KEYS[1].into()));
    stack.env.push((
        "HOSTILE_TARGETS".into(),
        dir.join("hostile_targets.json").display().to_string(),
    ));
    // The script is measured at start (a copy of its bytes is what runs): the worker restarts to
    // take it, and the new config is a new TEE signer, which the owner acknowledges.
    stack.worker = None;
    stack.start_worker(None).await;
    stack.ack_signer().await;
    let worker_log = stack.worker_log();
    assert!(
        worker_log.contains("✓ core  task_uid"),
        "the task uid layer must stand here:\n{worker_log}"
    );
    let netns = worker_log.contains("✓ extra network_namespace");

    let hostile = submit(&stack, 3, 1).await;
    let t = wait_state(
        &stack,
        3,
        &hostile,
        &["Delivered", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    let log = task_log(&stack, 3, &hostile).await;
    assert_eq!(t["progress"], "Delivered", "the task ends cleanly:\n{log}");

    let report = hostile_report(&log);
    let uid = task_uid(&log);
    assert_eq!(report["uid"], uid, "{report}");
    assert_eq!(report["gid"], uid, "{report}");
    assert_eq!(report["groups"], serde_json::json!([]), "{report}");
    let attempts = report["attempts"].as_object().unwrap();
    let expected = expected_failures();
    assert_eq!(
        attempts.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "every attempt ran"
    );
    let mut escaped = Vec::new();
    for (name, want) in &expected {
        let got = &attempts[*name];
        let error = got["error"].as_str().unwrap_or("");
        if got["ok"] != false || !error.starts_with(want) {
            escaped.push(format!("{name}: wanted {want}, got {got}"));
        }
    }
    assert!(
        escaped.is_empty(),
        "attempts that did not fail as they must:\n{}",
        escaped.join("\n")
    );
    if netns {
        assert_eq!(
            report["extras"]["reach_worker_http"]["ok"], false,
            "{report}"
        );
    }

    assert_eq!(
        agent_calls.load(Ordering::SeqCst),
        0,
        "the guest agent was reached"
    );
    assert!(!data_dir.join("pwned").exists());
    let daemon = report["daemon_pid"].as_i64().unwrap();
    assert!(daemon > 0, "{report}");
    assert!(
        !std::path::Path::new(&format!("/proc/{daemon}")).exists()
            || std::fs::read_to_string(format!("/proc/{daemon}/status"))
                .is_ok_and(|s| s.contains("State:\tZ")),
        "the setsid daemon {daemon} survived the task"
    );
    assert_eq!(
        live_processes_of(uid),
        Vec::<String>::new(),
        "processes of uid {uid} survived"
    );
    let leftovers = report["leftovers"].as_array().unwrap();
    assert!(!leftovers.is_empty(), "{report}");
    for path in leftovers {
        let path = path.as_str().unwrap();
        assert!(
            !std::path::Path::new(path).exists(),
            "{path} outlived the task"
        );
    }

    // The worker keeps serving.
    let health = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success());
}
