//! `sealtune gateway` (the customer's OpenAI-compatible fine-tuning API) against the main job's
//! stack: anvil with the real contracts, a real `sealtune-worker` (dev attestation, the torch-free
//! quick script), real SQLite on both sides, and clients no one here wrote:
//!
//! * the official `openai` Python package uploads a file, creates a job, waits for success, pages
//!   the events, downloads the decrypted adapter, lists checkpoints, and gets OpenAI-shaped errors
//!   for an unknown model, a bad file and the cancel of a finished job;
//! * a job survives a gateway restart (the runner stopped mid-job, a new gateway on the same state
//!   resumes following the task and delivers);
//! * `curl` commands copied unchanged from OPEA's fine-tuning README (seed 004) upload, create,
//!   list, retrieve, cancel and list checkpoints;
//! * every byte the gateway sends to the chain and to the provider goes through recording relays:
//!   none carries the customer's key.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealtune_client::attest::VerifyProviderOptions;
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::flow::Client;
use sealtune_client::gateway::{Gateway, GatewayConfig, ModelRef, Running, SystemClock};
use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;
use sealtune_e2e::tools::venv_python;
use serde_json::Value;

/// The port OPEA's README uses (its curl commands name it); the gateway's default.
const OPEA_PORT: u16 = 8015;

/// A TCP relay to `target` that records every byte clients send through it.
struct Relay {
    url: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

async fn relay(target: SocketAddr) -> Relay {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = sent.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = ri.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = wo.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut ro, &mut wi).await;
                    let _ = wi.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Relay { url, sent }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

async fn start_gateway(stack: &Stack, rpc: &str, state: &Path) -> Running {
    start_gateway_as(stack, rpc, state, 2, OPEA_PORT).await
}

/// A gateway holding dev account `who`'s key, on `port` (0: any).
async fn start_gateway_as(
    stack: &Stack,
    rpc: &str,
    state: &Path,
    who: usize,
    port: u16,
) -> Running {
    let chain = Chain::connect(
        rpc,
        Contracts {
            ledger: stack.deployment.ledger,
            serving: stack.deployment.serving,
        },
        Some(signer(who)),
    )
    .unwrap();
    let verify = VerifyProviderOptions {
        allow_dev_quote: true,
        policy: Some(Box::new(
            sealtune_verifier::policy::shipped::named("dev")
                .unwrap()
                .unwrap(),
        )),
        ..Default::default()
    };
    let mut config = GatewayConfig::new(
        SocketAddr::from(([127, 0, 0, 1], port)),
        state.to_path_buf(),
        verify,
    );
    config.default_provider = Some(stack.provider_address());
    config.aliases.insert(
        "meta-llama/Llama-2-7b-chat-hf".into(),
        ModelRef {
            provider: None,
            model: "quick-test-model".into(),
        },
    );
    config.poll_interval = Duration::from_millis(500);
    Gateway::start(Client::new(chain).unwrap(), config, Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("gateway on port {port}: {e}"))
}

fn gw_url(path: &str) -> String {
    format!("http://127.0.0.1:{OPEA_PORT}{path}")
}

async fn get_json(http: &reqwest::Client, path: &str) -> Value {
    http.get(gw_url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls job `id` until `done(job)`; panics with its events after `within`.
async fn wait_job(
    http: &reqwest::Client,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let job = get_json(http, &format!("/v1/fine_tuning/jobs/{id}")).await;
        if done(&job) {
            return job;
        }
        if Instant::now() > deadline {
            let events =
                get_json(http, &format!("/v1/fine_tuning/jobs/{id}/events?limit=100")).await;
            panic!("job {id}: {job:#}\nevents: {events:#}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Run one of OPEA's curl commands in `dir` as a reader of its README does: `your_ip` set in the
/// environment, the `${fine_tuning_job_id}` placeholder (inside single quotes there, so the shell
/// never expands it) filled with the job id as a JSON string. Returns the answer.
fn opea(dir: &Path, command: &str, job: Option<&str>) -> Value {
    let script = match job {
        Some(id) => command.replace("${fine_tuning_job_id}", &format!("\"{id}\"")),
        None => command.to_owned(),
    };
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("your_ip", "127.0.0.1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn assert_openai_error(e: &Value, status: u64, code: &str, param: Option<&str>) {
    assert_eq!(e["status"], status, "{e:#}");
    let body = &e["body"];
    assert_eq!(body["code"], code, "{e:#}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{e:#}"
    );
    assert!(body["type"].is_string(), "{e:#}");
    if let Some(p) = param {
        assert_eq!(body["param"], p, "{e:#}");
    }
}

/// The adapter the quick script wrote holds its training parameters: the hyperparameters arrived.
fn assert_adapter_trained_with(model_dir: &Path, params: &[&str]) {
    let weights = std::fs::read(model_dir.join("output_model/adapter_model.safetensors")).unwrap();
    let text = String::from_utf8_lossy(&weights);
    assert!(text.starts_with("weights-"), "{text}");
    for p in params {
        assert!(text.contains(p), "{p} not in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_package_and_seed_curls_fine_tune_through_the_gateway_without_sending_the_key() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    // The gateway reaches the provider through a recording relay: the worker registers it as its URL.
    let provider_relay = relay(addr_of(&stack.url(""))).await;
    let mode = stack.dir.path().join("script-mode");
    std::fs::write(&mode, "ok").unwrap();
    stack.env = vec![
        ("QUICK_SCRIPT_MODE_FILE".into(), mode.display().to_string()),
        ("SEALTUNE_SERVING_URL".into(), provider_relay.url.clone()),
    ];
    stack.worker = None;
    stack.start_worker(None).await;
    stack.ack_signer().await;
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;
    let rpc_relay = relay(addr_of(&stack.anvil.endpoint)).await;
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("gateway-state");
    let http = reqwest::Client::new();

    // 1. The official openai package.
    let gw = start_gateway(&stack, &rpc_relay.url, &state).await;
    let data = work.path().join("train.jsonl");
    std::fs::write(&data, dataset_jsonl(8)).unwrap();
    let result = work.path().join("result.zip");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/scripts/openai_gateway.py"
    );
    let out = std::process::Command::new(venv_python())
        .arg(script)
        .arg(gw_url("/v1"))
        .arg(&data)
        .arg(&result)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai script:\n{}\n{}\nworker log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        stack.worker_log()
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = &report["job"];
    assert_eq!(job["status"], "succeeded", "{report:#}");
    assert_eq!(job["object"], "fine_tuning.job");
    assert_eq!(job["hyperparameters"]["n_epochs"], 1);
    assert_eq!(job["hyperparameters"]["batch_size"], "auto");
    assert!(job["trained_tokens"].as_u64().unwrap() > 0, "{job:#}");
    assert_eq!(report["file"]["purpose"], "fine-tune");
    assert!(
        report["first_page_has_more"].as_bool().unwrap(),
        "{report:#}"
    );
    assert_eq!(report["first_page_len"], 2);
    let events = report["events"].as_array().unwrap();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(events.len() > 4, "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("verified with the INSECURE dev attestation")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("clamped to 0.00001")),
        "{messages:?}"
    );
    // A sealtune worker attests a dataset key: the training file travels sealed to it.
    assert!(
        messages
            .iter()
            .any(|m| m.contains("sealed to the provider's attested dataset key")),
        "{messages:?}"
    );
    // The signed training report was checked before acknowledging (the stand-in script computes
    // no eval loss: absent, not invented).
    assert!(
        messages.iter().any(|m| m.contains(
            "training report is signed by its on-chain TEE signer and names the delivered root: eval loss absent"
        )),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("acknowledged on chain")),
        "{messages:?}"
    );
    // The result file is the decrypted adapter, trained with the translated hyperparameters.
    let model_dir = Path::new(job["fine_tuned_model"].as_str().unwrap());
    assert_adapter_trained_with(
        model_dir,
        &["\"num_train_epochs\": 1", "\"learning_rate\": 1e-05"],
    );
    let job_id = job["id"].as_str().unwrap();
    assert_eq!(
        std::fs::read(&result).unwrap(),
        std::fs::read(state.join("jobs").join(job_id).join("model.zip")).unwrap()
    );
    assert_eq!(
        report["checkpoints"][0]["fine_tuned_model_checkpoint"],
        job["fine_tuned_model"]
    );
    assert_eq!(report["listed"][0], job_id);
    let errors = &report["errors"];
    assert_openai_error(
        &errors["unknown_model"],
        400,
        "model_not_available",
        Some("model"),
    );
    assert!(
        errors["unknown_model"]["body"]["message"]
            .as_str()
            .unwrap()
            .contains("offers: quick-test-model"),
        "{errors:#}"
    );
    assert_openai_error(
        &errors["bad_file"],
        400,
        "invalid_file_format",
        Some("file"),
    );
    assert_openai_error(
        &errors["cancel_finished"],
        400,
        "job_already_finished",
        None,
    );
    assert_openai_error(
        &errors["unknown_job"],
        404,
        "fine_tuning_job_not_found",
        None,
    );
    stack_settled(&stack, &http, job_id).await;

    // A customer without a sub-account with the provider: refused before anything is sent, with
    // the command that funds it.
    let broke_state = work.path().join("broke");
    let broke = start_gateway_as(&stack, &stack.anvil.endpoint, &broke_state, 4, 0).await;
    let base = format!("http://{}", broke.addr);
    let f: Value = http
        .post(format!("{base}/v1/files"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("purpose", "fine-tune")
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(dataset_jsonl(3)).file_name("t.jsonl"),
                ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .post(format!("{base}/v1/fine_tuning/jobs"))
        .json(&serde_json::json!({ "model": "quick-test-model", "training_file": f["id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "insufficient_balance", "{e:#}");
    assert_eq!(e["error"]["type"], "insufficient_quota", "{e:#}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "sealtune transfer-fund --provider {}",
            stack.provider_address()
        )),
        "{message}"
    );
    broke.stop();

    // 2. A job survives a gateway restart: stopped once its task exists, resumed by a new gateway.
    let file: Value = http
        .post(gw_url("/v1/files"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("purpose", "fine-tune")
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(dataset_jsonl(6)).file_name("again.jsonl"),
                ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created: Value = http
        .post(gw_url("/v1/fine_tuning/jobs"))
        .json(&serde_json::json!({ "model": "quick-test-model", "training_file": file["id"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    wait_job(&http, &id, Duration::from_secs(60), |j| {
        j["metadata"]["task_id"].is_string()
    })
    .await;
    gw.stop();
    let gw = start_gateway(&stack, &rpc_relay.url, &state).await;
    let done = wait_job(&http, &id, Duration::from_secs(180), |j| {
        j["status"] != "queued" && j["status"] != "running" && j["status"] != "validating_files"
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let events = get_json(
        &http,
        &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"),
    )
    .await;
    assert!(
        events
            .to_string()
            .contains("the gateway restarted: resuming"),
        "{events:#}"
    );
    stack_settled(&stack, &http, &id).await;

    // 3. OPEA's curl commands, unchanged. Another customer's task holds the worker (a hanging
    // script), so the gateway's task waits in the queue, where it can be cancelled.
    std::fs::write(&mode, "hang").unwrap();
    let blocker = submit(&stack, 3, 1).await;
    wait_state(&stack, 3, &blocker, &["Training"], Duration::from_secs(60)).await;
    let cwd = work.path().join("opea");
    std::fs::create_dir_all(&cwd).unwrap();
    let alpaca: Vec<Value> = (0..6)
        .map(|i| serde_json::json!({"instruction": "Add the numbers.", "input": format!("{i} + {i}"), "output": format!("{}", 2 * i)}))
        .collect();
    std::fs::write(
        cwd.join("alpaca_data.json"),
        serde_json::to_vec_pretty(&alpaca).unwrap(),
    )
    .unwrap();
    let uploaded = opea(&cwd, OPEA_UPLOAD, None);
    assert_eq!(uploaded["filename"], "alpaca_data.json", "{uploaded:#}");
    assert!(
        uploaded["status_details"]
            .as_str()
            .unwrap()
            .contains("JSON array of 6 records")
    );
    let created = opea(&cwd, OPEA_CREATE, None);
    assert_eq!(
        created["model"], "meta-llama/Llama-2-7b-chat-hf",
        "{created:#}"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    wait_job(&http, &id, Duration::from_secs(60), |j| {
        j["status"] == "queued" && j["metadata"]["task_id"].is_string()
    })
    .await;
    let listed = opea(&cwd, OPEA_LIST, Some(&id));
    assert_eq!(listed["object"], "list");
    assert_eq!(listed["data"][0]["id"], id.as_str());
    let retrieved = opea(&cwd, OPEA_RETRIEVE, Some(&id));
    assert_eq!(retrieved["id"], id.as_str());
    assert_eq!(retrieved["status"], "queued");
    let cancelled = opea(&cwd, OPEA_CANCEL, Some(&id));
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    let task = cancelled["metadata"]["task_id"].as_str().unwrap();
    wait_state(&stack, 2, task, &["Failed"], Duration::from_secs(30)).await;
    let checkpoints = opea(&cwd, OPEA_CHECKPOINTS, Some(&id));
    assert_eq!(checkpoints, serde_json::json!([]));
    gw.stop();

    // 4. The relays saw the gateway's whole conversation with the chain and the provider; the key
    // is nowhere in it.
    let key_hex = DEV_KEYS[2].trim_start_matches("0x");
    let key = hex::decode(key_hex).unwrap();
    for (name, relay) in [("chain", &rpc_relay), ("provider", &provider_relay)] {
        let sent = relay.sent.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&sent).to_ascii_lowercase();
        assert!(
            sent.len() > 1000,
            "{name}: the relay saw {} bytes",
            sent.len()
        );
        assert!(!text.contains(key_hex), "{name}: the key was sent");
        assert!(
            !sent.windows(key.len()).any(|w| w == key.as_slice()),
            "{name}: the raw key was sent"
        );
    }
    let provider_text = String::from_utf8_lossy(&provider_relay.sent.lock().unwrap()).into_owned();
    assert!(
        provider_text.contains("/dataset") && provider_text.contains("/lora"),
        "the provider relay carried the flow"
    );
}

/// Job `id`'s deliverable is settled (the worker's task is Finished), so the customer may start another.
async fn stack_settled(stack: &Stack, http: &reqwest::Client, id: &str) {
    let job = get_json(http, &format!("/v1/fine_tuning/jobs/{id}")).await;
    let task = job["metadata"]["task_id"].as_str().unwrap();
    wait_state(stack, 2, task, &["Finished"], Duration::from_secs(60)).await;
}

// OPEA's fine-tuning README (seed 004), §3.1–3.3, as written there.
const OPEA_UPLOAD: &str = r#"curl http://${your_ip}:8015/v1/files -X POST -H "Content-Type: multipart/form-data" -F "file=@./alpaca_data.json" -F purpose="fine-tune""#;
const OPEA_CREATE: &str = r#"curl http://${your_ip}:8015/v1/fine_tuning/jobs \
  -X POST \
  -H "Content-Type: application/json" \
  -d '{
    "training_file": "alpaca_data.json",
    "model": "meta-llama/Llama-2-7b-chat-hf"
  }'"#;
const OPEA_LIST: &str = r#"curl http://${your_ip}:8015/v1/fine_tuning/jobs -X GET"#;
const OPEA_RETRIEVE: &str = r#"curl http://localhost:8015/v1/fine_tuning/jobs/retrieve -X POST -H "Content-Type: application/json" -d '{"fine_tuning_job_id": ${fine_tuning_job_id}}'"#;
const OPEA_CANCEL: &str = r#"curl http://localhost:8015/v1/fine_tuning/jobs/cancel -X POST -H "Content-Type: application/json" -d '{"fine_tuning_job_id": ${fine_tuning_job_id}}'"#;
const OPEA_CHECKPOINTS: &str = r#"curl http://${your_ip}:8015/v1/finetune/list_checkpoints -X POST -H "Content-Type: application/json" -d '{"fine_tuning_job_id": ${fine_tuning_job_id}}'"#;
