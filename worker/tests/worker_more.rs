//! The rest of issue 6's list, against a real worker (real anvil + contracts, real SQLite, the real
//! embedded Python): a script that hangs (training timeout) or exits 0 writing nothing, malformed
//! datasets refused at setup with the record named, request-size and download-rate limits,
//! retention, `config check`, a TEE signer change across a restart, and the state counters of
//! `/metrics`.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use sealtune_e2e::chain::*;
use sealtune_e2e::process::processes_mentioning;
use sealtune_e2e::stack::*;
use serde_json::Value;

/// The customer's sub-account balance with the provider.
async fn account_balance(stack: &Stack, who: usize) -> alloy::primitives::U256 {
    stack
        .serving(who)
        .getAccount(signer(who).address(), stack.provider_address())
        .call()
        .await
        .unwrap()
        .balance
}

/// The value of one Prometheus sample line, e.g. `sealtune_task_states_total{state="Failed"}`.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

async fn metrics(stack: &Stack) -> String {
    stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_silent_scripts_fail_cleanly_and_the_next_task_runs() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            training_timeout: "5s",
            ..Default::default()
        },
    )
    .await;
    let mode = stack.dir.path().join("script-mode");
    stack
        .env
        .push(("QUICK_SCRIPT_MODE_FILE".into(), mode.display().to_string()));
    stack.worker = None;
    stack.start_worker(None).await;
    stack.fund(2, 10, 5).await;

    // A script that never returns: stopped at training_timeout, the task fails with the reason.
    std::fs::write(&mode, "hang").unwrap();
    let started = Instant::now();
    let hung = submit(&stack, 2, 1).await;
    let t = wait_state(
        &stack,
        2,
        &hung,
        &["Failed", "Delivered"],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Failed",
        "{}",
        task_log(&stack, 2, &hung).await
    );
    let reason = t["failReason"].as_str().unwrap();
    assert!(reason.contains("longer than the limit of 5 s"), "{reason}");
    let log = task_log(&stack, 2, &hung).await;
    assert!(
        log.contains("hanging on purpose"),
        "the script's output reached the log:\n{log}"
    );
    assert!(log.contains("longer than the limit of 5 s"), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped at the timeout, not the hour"
    );
    assert!(
        processes_mentioning(&hung).is_empty(),
        "the executor child was killed: {:?}",
        processes_mentioning(&hung)
    );
    assert_eq!(
        account_balance(&stack, 2).await,
        ether(5),
        "nothing charged"
    );
    assert!(t["modelRootHash"].is_null());

    // A script that exits 0 and writes nothing: a clear failure, not an empty deliverable.
    std::fs::write(&mode, "nothing").unwrap();
    let silent = submit(&stack, 2, 2).await;
    let t = wait_state(
        &stack,
        2,
        &silent,
        &["Failed", "Delivered"],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Failed",
        "{}",
        task_log(&stack, 2, &silent).await
    );
    let reason = t["failReason"].as_str().unwrap();
    assert!(
        reason.contains("wrote nothing to the output directory")
            && reason.contains("sealed no model"),
        "{reason}"
    );
    assert!(task_log(&stack, 2, &silent).await.contains("wrote nothing"));
    assert_eq!(
        account_balance(&stack, 2).await,
        ether(5),
        "nothing charged"
    );

    // The lane is free again: the next task trains and is delivered.
    std::fs::write(&mode, "ok").unwrap();
    let good = submit(&stack, 2, 3).await;
    let t = wait_state(
        &stack,
        2,
        &good,
        &["Failed", "Delivered"],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Delivered",
        "{}",
        task_log(&stack, 2, &good).await
    );

    // /metrics counts the states entered.
    let m = metrics(&stack).await;
    assert_eq!(
        metric(&m, "sealtune_tasks_created_total "),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sealtune_task_states_total{state=\"Failed\"} "),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sealtune_task_states_total{state=\"Delivered\"} "),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sealtune_task_states_total{state=\"Training\"} "),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sealtune_task_states_total{state=\"Trained\"} "),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "sealtune_pending_tasks "), Some(0.0), "{m}");
}

/// A zip holding one entry with this name and content.
fn zip_with(name: &str, content: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file(name, opts).unwrap();
        z.write_all(content).unwrap();
        z.finish().unwrap();
    }
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datasets_fail_at_setup_naming_the_record() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    let good = r#"{"instruction":"Say hi.","output":"hi"}"#;
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "invalid JSON on line 3",
            format!("{good}\n{good}\n{{\"instruction\": \"cut\n{good}\n").into_bytes(),
            &["line 3"],
        ),
        (
            "a record of the wrong shape on line 2",
            format!("{good}\n{{\"foo\":1}}\n").into_bytes(),
            &["line 2"],
        ),
        ("blank lines only", b"\n\n  \n".to_vec(), &["no record"]),
        (
            "a zip entry escaping with ../",
            zip_with("../evil.jsonl", format!("{good}\n").as_bytes()),
            &["../evil.jsonl", "unsafe path"],
        ),
    ];
    for (i, (what, bytes, needles)) in cases.into_iter().enumerate() {
        let id = submit_with(&stack, 2, 1 + i as u64, bytes).await;
        let t = wait_state(
            &stack,
            2,
            &id,
            &["Failed", "SetUp", "Training", "Delivered"],
            Duration::from_secs(60),
        )
        .await;
        let log = task_log(&stack, 2, &id).await;
        assert_eq!(t["progress"], "Failed", "{what}: {log}");
        let reason = t["failReason"].as_str().unwrap();
        assert!(reason.contains("dataset rejected"), "{what}: {reason}");
        for n in needles {
            assert!(reason.contains(n), "{what}: the reason names {n}: {reason}");
            assert!(log.contains(n), "{what}: the log names {n}: {log}");
        }
        assert!(
            !log.contains("training started"),
            "{what}: refused at setup, never trained:\n{log}"
        );
        assert!(t["tokens"].is_null() || t["tokens"] == 0, "{what}: {t}");
    }
    // An empty file is refused at upload already, with a JSON error, and nothing is stored.
    let objects = stack.dir.path().join("data/store/objects");
    let before = std::fs::read_dir(&objects).unwrap().count();
    let r = upload(&stack, 2, Vec::new()).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("empty"), "{e}");
    assert_eq!(std::fs::read_dir(&objects).unwrap().count(), before);
    assert_eq!(
        account_balance(&stack, 2).await,
        ether(5),
        "nothing charged"
    );
}

/// Waits until we are not in the last seconds of a wall-clock minute (the download limiter counts
/// per calendar minute).
async fn away_from_minute_boundary() {
    while now() % 60 >= 50 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_and_downloads_are_rate_limited() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            extra_limits: "max_body_bytes = 4096\ndownloads_per_minute = 2",
            ..Default::default()
        },
    )
    .await;
    stack.fund(2, 10, 5).await;
    let user = signer(2).address().to_checksum(None);

    // A JSON body over max_body_bytes: 413 with a JSON error, no task created.
    let hash = upload(&stack, 2, dataset_jsonl(4))
        .await
        .json::<Value>()
        .await
        .unwrap()["datasetHash"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut body = task_body(2, &hash, 1, PARAMS);
    body["padding"] = Value::from("x".repeat(8 << 10));
    let r = create(&stack, 2, &body).await;
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("length limit"), "{e}");
    let r = stack
        .http
        .post(stack.url(&format!(
            "/v1/user/{user}/task/{}/cancel",
            uuid::Uuid::nil()
        )))
        .header("content-type", "application/json")
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "every JSON route has the limit");
    let tasks: Value = stack
        .http
        .get(stack.url(&format!("/v1/user/{user}/task")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks, Value::Array(vec![]), "nothing created");

    // A small one goes through and is delivered; the third download in a minute is refused.
    let id = submit(&stack, 2, 1).await;
    wait_state(&stack, 2, &id, &["Delivered"], Duration::from_secs(90)).await;
    away_from_minute_boundary().await;
    for i in 0..2 {
        let r = download(&stack, 2, &id).await;
        assert_eq!(r.status(), 200, "download {i}");
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    let r = download(&stack, 2, &id).await;
    assert_eq!(r.status(), 429);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("at most 2 per minute"),
        "{e}"
    );
    // Another customer is not limited by this one (their own task is unknown to them: 404, not 429).
    assert_eq!(download(&stack, 3, &id).await.status(), 404);
    let m = metrics(&stack).await;
    assert_eq!(
        metric(
            &m,
            "sealtune_http_responses_total{route=\"/v1/user/{addr}/task/{id}/lora\",status=\"429\"} "
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_files_of_ended_tasks_and_lora_answers_410() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            extra_limits: "retention = \"1s\"",
            ..Default::default()
        },
    )
    .await;
    stack.fund(2, 10, 5).await;
    let id = submit(&stack, 2, 1).await;
    let t = wait_state(
        &stack,
        2,
        &id,
        &["Delivered", "Failed"],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Delivered",
        "{}",
        task_log(&stack, 2, &id).await
    );
    let data = stack.dir.path().join("data");
    let task_dir = data.join("tasks").join(&id);
    let root: B256 = t["modelRootHash"].as_str().unwrap().parse().unwrap();
    let dataset: B256 = t["datasetHash"].as_str().unwrap().parse().unwrap();
    let object = |h: &B256| data.join("store/objects").join(hex::encode(h));
    assert!(task_dir.is_dir() && object(&root).is_file() && object(&dataset).is_file());
    // Delivered is not ended: a second later everything is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        object(&root).is_file(),
        "a delivered model is kept until the task ends"
    );
    away_from_minute_boundary().await;
    assert_eq!(download(&stack, 2, &id).await.status(), 200);

    // The customer acknowledges, the worker settles; the retention lane (period min(60 s, 1 s)) cleans.
    stack.acknowledge(2, &id).await;
    wait_state(&stack, 2, &id, &["Finished"], Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !task_log(&stack, 2, &id)
        .await
        .contains("retention period over")
    {
        assert!(
            Instant::now() < deadline,
            "not cleaned within 20 s:\n{}",
            task_log(&stack, 2, &id).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!task_dir.exists(), "task directory deleted");
    assert!(!object(&root).exists(), "deliverable deleted");
    assert!(!object(&dataset).exists(), "dataset deleted");
    let r = download(&stack, 2, &id).await;
    assert_eq!(r.status(), 410);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("retention period"),
        "{e}"
    );
    // The record and its log stay: the customer still reads what happened.
    assert_eq!(get_task(&stack, 2, &id).await["progress"], "Finished");
}

/// Runs `sealtune-worker config check` with no SEALTUNE_* variables but `env`.
fn config_check(config: &Path, json: bool, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealtune-worker"));
    cmd.args(["config", "check", "--config"]).arg(config);
    if json {
        cmd.arg("--json");
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("SEALTUNE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_reports_each_problem_by_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.py"), QUICK_SCRIPT).unwrap();
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    let config = |key: &str, weights: &str| {
        format!(
            r#"
serving_url = "http://127.0.0.1:3080"
{key}
[chain]
serving = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ledger = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
[[service.models]]
name = "m1"
hash = "{MODEL_HASH}"
training_script = "train.py"
weights = {{ path = "{weights}" }}
[attestation]
source = "dev"
"#
        )
    };
    let key_line = format!("private_key = \"{}\"", DEV_KEYS[1]);
    let path = dir.path().join("worker.toml");

    // Valid: exit 0 (relative paths resolve against the file's directory).
    std::fs::write(&path, config(&key_line, "weights")).unwrap();
    let (code, out, err) = config_check(&path, false, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is valid (1 models)"), "{out}");
    let (code, out, _) = config_check(&path, true, &[]);
    assert_eq!(code, 0);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ok"], true);
    assert_eq!(j["problems"], Value::Array(vec![]));
    assert_eq!(j["config"]["service"]["models"][0]["name"], "m1");
    assert_eq!(
        j["config"]["limits"]["retention"], "259200s",
        "defaults are shown"
    );
    assert!(
        !out.contains(&DEV_KEYS[1][2..]),
        "the wallet key is never printed"
    );

    // No wallet key and a weights directory that does not exist: exit 1, each named.
    std::fs::write(&path, config("", "/nonexistent/weights")).unwrap();
    let (code, out, err) = config_check(&path, false, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("`private_key`") && err.contains("SEALTUNE_PRIVATE_KEY"),
        "{err}"
    );
    assert!(
        err.contains("model `m1`") && err.contains("/nonexistent/weights"),
        "{err}"
    );
    let (code, out, _) = config_check(&path, true, &[]);
    assert_eq!(code, 1);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ok"], false);
    let problems: Vec<&str> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("private_key")));
    assert!(problems.iter().any(|p| p.contains("weights directory")));

    // The key from the environment fixes the first problem only.
    let (code, _, err) = config_check(&path, false, &[("SEALTUNE_PRIVATE_KEY", DEV_KEYS[1])]);
    assert_eq!(code, 1);
    assert!(
        !err.contains("private_key") && err.contains("weights directory"),
        "{err}"
    );

    // A malformed wallet key, an unknown key and a bad duration are named too.
    std::fs::write(&path, config("private_key = \"0x1234\"", "weights")).unwrap();
    let (code, _, err) = config_check(&path, false, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("`private_key`: not a 32-byte hex private key"),
        "{err}"
    );
    std::fs::write(
        &path,
        config(&format!("{key_line}\nretension = \"1d\""), "weights"),
    )
    .unwrap();
    let (code, _, err) = config_check(&path, false, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("retension"), "{err}");
    std::fs::write(
        &path,
        config(&key_line, "weights") + "[limits]\nretention = \"1w\"\n",
    )
    .unwrap();
    let (code, _, err) = config_check(&path, false, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown unit `w`"), "{err}");
}

/// The asset rule: a usage file or script outside the asset roots (the reviewer's
/// `usage_file = "/etc/passwd"`), a symlink leading out, the config file itself, or a file in the
/// data directory is refused by `config check` and by `serve`, naming the key and the rule; a valid
/// config reports its config hash, which changes with a script's bytes.
#[test]
fn config_check_and_serve_refuse_assets_outside_the_measured_places() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.py"), QUICK_SCRIPT).unwrap();
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    std::fs::write(dir.path().join("weights/tokenizer.json"), "{}").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("usage.zip")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("worker.sqlite"), "secret rows").unwrap();
    let config = |extra: &str| {
        format!(
            r#"
serving_url = "http://127.0.0.1:3080"
private_key = "{key}"
data_dir = "data"
[chain]
serving = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ledger = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
[[service.models]]
name = "m1"
hash = "{MODEL_HASH}"
training_script = "train.py"
weights = {{ path = "weights" }}
{extra}
[attestation]
source = "dev"
"#,
            key = DEV_KEYS[1]
        )
    };
    let path = dir.path().join("worker.toml");
    let hash_of = |out: &str| {
        let j: Value = serde_json::from_str(out).unwrap();
        j["config_hash"].as_str().unwrap().to_owned()
    };

    std::fs::write(&path, config("")).unwrap();
    let (code, out, err) = config_check(&path, true, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let first = hash_of(&out);
    // A bare file name as the config path: the asset root is still the file's directory.
    let bare = Command::new(env!("CARGO_BIN_EXE_sealtune-worker"))
        .args(["config", "check", "--json", "--config", "worker.toml"])
        .current_dir(dir.path())
        .env_remove("SEALTUNE_CONFIG")
        .output()
        .unwrap();
    let bare_out = String::from_utf8_lossy(&bare.stdout);
    assert!(
        bare.status.success(),
        "{bare_out}{}",
        String::from_utf8_lossy(&bare.stderr)
    );
    assert_eq!(hash_of(&bare_out), first);
    std::fs::write(
        dir.path().join("train.py"),
        format!("{QUICK_SCRIPT}\n# changed\n"),
    )
    .unwrap();
    let (_, out, _) = config_check(&path, true, &[]);
    assert_ne!(
        hash_of(&out),
        first,
        "the script's bytes are part of the config hash"
    );

    for (extra, expected) in [
        (
            r#"usage_file = "/etc/passwd""#,
            "resolves to /etc/passwd, outside the asset roots",
        ),
        (
            r#"usage_file = "usage.zip""#,
            "resolves to /etc/passwd, outside the asset roots",
        ),
        (
            r#"usage_file = "worker.toml""#,
            "resolves into the config file",
        ),
        (
            r#"usage_file = "data/worker.sqlite""#,
            "resolves into the data directory",
        ),
        (
            r#"tokenizer_path = "/etc/passwd""#,
            "resolves to /etc/passwd, outside the asset roots",
        ),
    ] {
        std::fs::write(&path, config(extra)).unwrap();
        let (code, out, err) = config_check(&path, false, &[]);
        assert_eq!(code, 1, "{extra}: {out}{err}");
        assert!(
            err.contains("config key `service.models[0]."),
            "{extra}: {err}"
        );
        assert!(err.contains(expected), "{extra}: {err}");
        // `serve` refuses it too, before it touches the chain or serves anything.
        let out = Command::new(env!("CARGO_BIN_EXE_sealtune-worker"))
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("SEALTUNE_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}: serve started");
        assert!(err.contains(expected), "{extra}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tee_signer_is_logged_registered_and_old_deliverables_are_handled() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;
    // Two models sealed under the first signer: A will be acknowledged, B will not.
    let a = submit(&stack, 2, 1).await;
    wait_state(&stack, 2, &a, &["Delivered"], Duration::from_secs(90)).await;
    let b = submit(&stack, 3, 1).await;
    wait_state(&stack, 3, &b, &["Delivered"], Duration::from_secs(90)).await;
    let old = stack
        .serving(2)
        .getService(stack.provider_address())
        .call()
        .await
        .unwrap();
    assert!(old.teeSignerAcknowledged);

    // The worker stops; meanwhile customer 2 acknowledges A (checked under the old signer).
    stack.worker = None;
    stack.acknowledge(2, &a).await;
    let (balance_a, balance_b) = (
        account_balance(&stack, 2).await,
        account_balance(&stack, 3).await,
    );

    // Restart with a changed config (a measured limit): the key path includes the config hash, so
    // the worker comes back with another TEE signer, which the owner must acknowledge again.
    let config = std::fs::read_to_string(&stack.config_path).unwrap();
    let changed = config.replace("queue_size = 5", "queue_size = 4");
    assert_ne!(changed, config);
    std::fs::write(&stack.config_path, changed).unwrap();
    stack.start_worker(None).await;
    let new_signer: Address = stack
        .http
        .get(stack.url("/v1/quote"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["signer"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_signer, old.teeSignerAddress);

    let log = stack.worker_log();
    assert!(
        log.contains(&format!(
            "the TEE signer changed from {} to {new_signer}",
            old.teeSignerAddress
        )),
        "{log}"
    );
    let service = stack
        .serving(2)
        .getService(stack.provider_address())
        .call()
        .await
        .unwrap();
    assert_eq!(
        service.teeSignerAddress, new_signer,
        "re-registered with the new signer"
    );
    assert!(
        !service.teeSignerAcknowledged,
        "the owner must acknowledge the new signer"
    );
    for (who, id) in [(2, &a), (3, &b)] {
        let tlog = task_log(&stack, who, id).await;
        assert!(
            tlog.contains(&format!(
                "this task's model was sealed under {}",
                old.teeSignerAddress
            )),
            "{tlog}"
        );
    }
    let quote: Value = stack
        .http
        .get(stack.url("/v1/quote"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        quote
            .to_string()
            .to_lowercase()
            .contains(&new_signer.to_string().to_lowercase()[2..]),
        "{quote}"
    );

    // A later restart with the same key reports no change again.
    stack.worker = None;
    let before = stack.worker_log().matches("TEE signer changed").count();
    stack.start_worker(None).await;
    assert_eq!(
        stack.worker_log().matches("TEE signer changed").count(),
        before,
        "reported once"
    );

    // Once the owner acknowledges the new signer, both settle, signed by the new key: A (the
    // customer accepted it) with the full fee and the key; B at once, not after the 6 h timeout,
    // and without charge: its customer cannot check a model signed by a signer no longer on chain.
    stack.ack_signer().await;
    for (who, id) in [(2, &a), (3, &b)] {
        let t = wait_state(
            &stack,
            who,
            id,
            &["Finished", "Failed"],
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            t["progress"],
            "Finished",
            "{}",
            task_log(&stack, who, id).await
        );
    }
    let fee: alloy::primitives::U256 = get_task(&stack, 2, &a).await["fee"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(fee > alloy::primitives::U256::ZERO);
    assert_eq!(
        account_balance(&stack, 2).await,
        balance_a - fee,
        "A: full fee"
    );
    assert_eq!(account_balance(&stack, 3).await, balance_b, "B: no charge");
    let tlog = task_log(&stack, 3, &b).await;
    assert!(tlog.contains("settling without charge"), "{tlog}");
    let deliverable = stack
        .serving(3)
        .getDeliverable(signer(3).address(), stack.provider_address(), b.clone())
        .call()
        .await
        .unwrap();
    assert!(deliverable.settled && deliverable.encryptedSecret.is_empty());
}

/// A task row that this version cannot read (here: a `fee` that is not a number, as a damaged
/// database or a foreign writer could leave it) fails that one task with the column named, and does
/// not block the training lane: the next customer's task still trains and is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_task_row_fails_that_task_and_the_lane_goes_on() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;
    // Stop right after setup, so the row waits in `SetUp` for the training lane.
    stack.worker = None;
    stack.start_worker(Some("after-setup")).await;
    let damaged = submit(&stack, 2, 1).await;
    assert!(
        stack.wait_worker_exit(Duration::from_secs(60)).await,
        "the worker aborts at the crash point:\n{}",
        stack.worker_log()
    );
    let db = stack.dir.path().join("data/worker.sqlite");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", db.display()));
    let progress: String = sqlx::query_scalar("SELECT progress FROM tasks WHERE id = ?")
        .bind(&damaged)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(progress, "SetUp");
    sqlx::query("UPDATE tasks SET fee = 'not-a-number' WHERE id = ?")
        .bind(&damaged)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    stack.start_worker(None).await;
    let next = submit(&stack, 3, 1).await;
    let t = wait_state(
        &stack,
        3,
        &next,
        &["Delivered", "Failed"],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        t["progress"],
        "Delivered",
        "the lane went on: {}",
        task_log(&stack, 3, &next).await
    );

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (progress, reason): (String, Option<String>) =
        sqlx::query_as("SELECT progress, fail_reason FROM tasks WHERE id = ?")
            .bind(&damaged)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(progress, "Failed", "{}", stack.worker_log());
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("column `fee`") && reason.contains(&damaged),
        "the reason names the task and the column: {reason}"
    );
}
