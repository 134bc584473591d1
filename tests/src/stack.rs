//! A real provider stack for end-to-end tests: anvil with the contracts deployed, the `sealtune-worker`
//! binary serving with the (named, insecure) dev attestation source and a quick training script, and
//! the customer's HTTP calls against it (upload, create, get, wait, download), signed as anvil's dev
//! accounts. The provider is dev account 1, the owner 0; tests use 2 and 3 as customers.
//!
//! The stack's directory is laid out for the worker's training sandbox ([`sandbox_ready_tempdir`]):
//! a task uid can traverse it to the data directory and read the scripts, not the config.
//!
//! Cargo gives the worker binary's path (`CARGO_BIN_EXE_sealtune-worker`) only to the worker crate's
//! own tests and benches, so it is a parameter: `Stack::start(env!("CARGO_BIN_EXE_sealtune-worker"), opts)`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::DynProvider;
use sealtune_contracts::bindings::FineTuningServing::{self, FineTuningServingInstance};
use sealtune_contracts::bindings::LedgerManager::{self, LedgerManagerInstance};
use sealtune_contracts::{Deployment, FINE_TUNING_SERVICE_NAME};

use crate::chain::{Anvil, DEV_CHAIN_ID, DEV_KEYS, ether, k256_key, signer};
use crate::process::{ChildGuard, spawn_tied};
use crate::tools::free_port;

/// The model hash the stack's worker serves (`quick-test-model`).
pub const MODEL_HASH: &str = "0x2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b";
/// The worker's price per token, in wei.
pub const PRICE: u64 = 1_000_000_000;
/// Training parameters for a two-step run.
pub const PARAMS: &str = r#"{"neftune_noise_alpha":5,"num_train_epochs":1,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":2}"#;

/// A training script that needs no model: writes an "adapter" and reports progress. Its mode
/// (`QUICK_SCRIPT_MODE`, a `behaviour` file in the task directory, or the file named by
/// `QUICK_SCRIPT_MODE_FILE`, read at each run): `ok`, `crash` (raises), `slow` (6 s), `hang`
/// (sleeps an hour), `spawn` (starts `sleep 3600`, prints `spawned <its pid>` and hangs), `nothing`
/// (exits 0 without writing any output), `seal` (seals the same files in
/// the executor child through the embedded `sealtune` module, as the real script does with
/// `seal_model`, without torch: nothing is written to the output directory), `big` (writes 3 MiB of
/// random weights: a sealed file of a dozen 0G Storage segments).
pub const QUICK_SCRIPT: &str = r#"
import argparse, json, os, sys
p = argparse.ArgumentParser()
for a in ("--data_path", "--model_path", "--config_path", "--output_dir"):
    p.add_argument(a, required=True)
args = p.parse_args()
params = json.load(open(args.config_path))
mode = os.environ.get("QUICK_SCRIPT_MODE", "ok")
marker = os.path.join(os.path.dirname(args.output_dir), "behaviour")
if os.path.exists(marker):
    mode = open(marker).read().strip()
mode_file = os.environ.get("QUICK_SCRIPT_MODE_FILE")
if mode_file and os.path.exists(mode_file):
    mode = open(mode_file).read().strip()
if mode == "hang":
    import time
    print("hanging on purpose", flush=True)
    time.sleep(3600)
if mode == "spawn":
    import subprocess, time
    child = subprocess.Popen(["sleep", "3600"])
    print(f"spawned {child.pid}", flush=True)
    time.sleep(3600)
if mode == "nothing":
    print("exiting 0 without writing anything")
    sys.exit(0)
if mode == "crash":
    raise RuntimeError("the script crashed on purpose")
if mode == "slow":
    import time
    time.sleep(6)
weights = b"weights-" + json.dumps(params, sort_keys=True).encode()
if mode == "big":
    weights = os.urandom(3 << 20)
if mode == "seal":
    from sealtune import _native
    stream = _native.SealStream.live()
    stream.add_file("adapter_model.safetensors", weights)
    stream.add_file("adapter_config.json", json.dumps({"r": 8}).encode())
    stream.finish()
    print("quick script sealed in the child")
    sys.exit(0)
os.makedirs(args.output_dir, exist_ok=True)
with open(os.path.join(args.output_dir, "adapter_model.safetensors"), "wb") as f:
    f.write(weights)
with open(os.path.join(args.output_dir, "adapter_config.json"), "w") as f:
    json.dump({"r": 8}, f)
print("quick script done")
"#;

/// The running stack.
pub struct Stack {
    /// The chain.
    pub anvil: Anvil,
    /// Where the contracts are.
    pub deployment: Deployment,
    /// The worker's directory: config, quick script, data, log.
    pub dir: tempfile::TempDir,
    /// The worker's config file.
    pub config_path: PathBuf,
    /// The worker's loopback port.
    pub port: u16,
    /// The worker's HTTPS port ([`StackOptions::tls`]): then the registered `serving_url` is
    /// `https://127.0.0.1:<tls_port>`.
    pub tls_port: Option<u16>,
    /// The worker process, when running.
    pub worker: Option<ChildGuard>,
    /// An HTTP client for the worker's API.
    pub http: reqwest::Client,
    /// Extra environment for the next worker start (e.g. QUICK_SCRIPT_MODE).
    pub env: Vec<(String, String)>,
    bin: PathBuf,
}

/// What a stack is started with.
pub struct StackOptions {
    /// `limits.ack_timeout`.
    pub ack_timeout: &'static str,
    /// `limits.queue_size`.
    pub queue_size: u32,
    /// `limits.max_upload_bytes`.
    pub max_upload_bytes: u64,
    /// The contracts' refund lock time, in seconds.
    pub lock_time: u64,
    /// Set the deployer's (account 0's) nonce before deploying, to land the contracts at known
    /// addresses: with 11, LedgerManager is account 0's CREATE address at nonce 11 and
    /// FineTuningServing the one at nonce 12, `0xA51c1fc2…`, the address the official SDK's read-only broker
    /// hard-codes for chain 31337 (its `list-providers` takes no contract address).
    pub deployer_nonce: Option<u64>,
    /// `limits.training_timeout`.
    pub training_timeout: &'static str,
    /// More `[limits]` lines (TOML), e.g. `retention = "1s"`.
    pub extra_limits: &'static str,
    /// `sandbox.uid_base`: a test that watches what happens to its task uid's processes takes a
    /// range of its own, since the lease directory is machine-wide and a parallel test's worker
    /// leasing the same uid kills that uid's leftovers first. `None`: the worker's default.
    pub uid_base: Option<u32>,
    /// More lines of the model entry (TOML), e.g. `lora_ranges = { r = [1, 16] }`.
    pub model_extra: &'static str,
    /// Serve HTTPS too (`tls_listen`, a key derived in the TEE) and register the `https://` URL.
    pub tls: bool,
}

/// What [`Stack::v2_body`] signs.
#[derive(Debug, Clone, Copy)]
pub struct V2Request<'a> {
    /// `datasetHash`.
    pub dataset_hash: &'a str,
    /// The model hash the signature names (the body always carries [`MODEL_HASH`]).
    pub signed_model: alloy::primitives::B256,
    /// `trainingParams`.
    pub params: &'a str,
    /// The request nonce.
    pub nonce: u64,
    /// Whether the worker waits for the task to be created on chain before answering.
    pub wait: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            ack_timeout: "6h",
            queue_size: 5,
            max_upload_bytes: 1 << 20,
            lock_time: 3600,
            deployer_nonce: None,
            training_timeout: "60s",
            extra_limits: "",
            uid_base: None,
            model_extra: "",
            tls: false,
        }
    }
}

impl Stack {
    /// Starts anvil, deploys the contracts, writes the worker's config and starts the worker binary
    /// `bin` (pass `env!("CARGO_BIN_EXE_sealtune-worker")`); the owner acknowledges its TEE signer.
    pub async fn start(bin: impl Into<PathBuf>, opts: StackOptions) -> Stack {
        let anvil = Anvil::start(DEV_CHAIN_ID);
        if let Some(nonce) = opts.deployer_nonce {
            anvil.set_nonce(signer(0).address(), nonce).await;
        }
        let deployment = sealtune_contracts::deploy(
            &anvil.signing(&signer(0)),
            &sealtune_contracts::DeployConfig {
                lock_time_secs: opts.lock_time,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("deploy: {e}"));
        let dir = sandbox_ready_tempdir();
        let script = dir.path().join("quick_train.py");
        std::fs::write(&script, QUICK_SCRIPT).unwrap_or_else(|e| panic!("quick script: {e}"));
        let port = free_port();
        let tls_port = opts.tls.then(free_port);
        let config = worker_config(&anvil, &deployment, &dir, (port, tls_port), &opts);
        let config_path = dir.path().join("worker.toml");
        write_private(&config_path, &config);
        let mut stack = Stack {
            anvil,
            deployment,
            dir,
            config_path,
            port,
            tls_port,
            worker: None,
            http: reqwest::Client::new(),
            env: Vec::new(),
            bin: bin.into(),
        };
        stack.start_worker(None).await;
        stack.ack_signer().await;
        stack
    }

    /// The dataset key the worker attests: `tee_keys` from `/v1/quote?nonce=…`, checked against the
    /// attestation document for `nonce` (signed by the TEE signer, bound by `dataset_key_hash`).
    pub async fn attested_dataset_key(&self, nonce: [u8; 32]) -> k256::PublicKey {
        let body: serde_json::Value = self
            .http
            .get(self.url(&format!("/v1/quote?nonce={}", hex::encode(nonce))))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let doc = sealtune_protocol::attestation::AttestationDocument::from_json(
            &body["attestation_document"],
        )
        .unwrap();
        assert_eq!(doc.nonce.as_slice(), nonce);
        let keys: sealtune_protocol::attestation::TeeKeys =
            serde_json::from_value(body["tee_keys"].clone()).unwrap();
        keys.verify_bound(&doc).unwrap()
    }

    /// A create-task body in sealtune's request v2 form, signed by customer `who` for this stack's
    /// provider and serving contract (`signed_model`: the model hash the signature names).
    pub fn v2_body(&self, who: usize, request: V2Request<'_>) -> serde_json::Value {
        let body = sealtune_protocol::api::CreateTaskBody {
            user_address: signer(who).address().to_checksum(None),
            pre_trained_model_hash: MODEL_HASH.into(),
            dataset_hash: request.dataset_hash.into(),
            training_params: request.params.into(),
            fee: Some("0".into()),
            nonce: request.nonce.to_string(),
            signature: String::new(),
            wait: request.wait,
            dataset_type: None,
            request_version: Some(2),
        };
        let wire = sealtune_protocol::request::CreateTask::from_wire(
            &body.user_address,
            &body.nonce,
            &body.dataset_hash,
            "0",
        )
        .unwrap();
        let signed = sealtune_protocol::request_v2::TaskRequest::for_body(
            &body,
            &wire,
            self.provider_address(),
            request.signed_model,
            request.dataset_hash.parse().unwrap(),
        );
        let domain = sealtune_protocol::request_v2::domain(DEV_CHAIN_ID, self.deployment.serving);
        let mut value = serde_json::to_value(&body).unwrap();
        value["signature"] = signed.sign(&k256_key(who), &domain).to_hex_v27().into();
        value
    }

    /// `http://127.0.0.1:<port><path>` on the worker.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The worker's log file (stdout and stderr of every start).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// Starts the worker (optionally with a test crash point) and waits for /healthz.
    pub async fn start_worker(&mut self, crash_at: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("worker log: {e}"));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("worker log: {e}"));
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match crash_at {
            Some(p) => cmd.env("SEALTUNE_TEST_CRASH_AT", p),
            None => cmd.env_remove("SEALTUNE_TEST_CRASH_AT"),
        };
        let child = spawn_tied(cmd)
            .unwrap_or_else(|e| panic!("start sealtune-worker ({}): {e}", self.bin.display()));
        self.worker = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.worker_exit() {
                panic!(
                    "worker exited with {status} at start:\n{}",
                    self.worker_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "worker did not start:\n{}",
                self.worker_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn worker_exit(&mut self) -> Option<std::process::ExitStatus> {
        let worker = self
            .worker
            .as_mut()
            .unwrap_or_else(|| panic!("the worker was not started"));
        worker
            .0
            .try_wait()
            .unwrap_or_else(|e| panic!("worker status: {e}"))
    }

    /// The worker's log so far.
    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits for the worker process to exit (a crash point) and returns whether it died abnormally.
    pub async fn wait_worker_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.worker_exit() {
                return !status.success();
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit:\n{}",
                self.worker_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// FineTuningServing, called as dev account `who`.
    pub fn serving(&self, who: usize) -> FineTuningServingInstance<DynProvider> {
        FineTuningServing::new(self.deployment.serving, self.anvil.wallet(&signer(who)))
    }

    /// LedgerManager, called as dev account `who`.
    pub fn ledger(&self, who: usize) -> LedgerManagerInstance<DynProvider> {
        LedgerManager::new(self.deployment.ledger, self.anvil.wallet(&signer(who)))
    }

    /// The provider's (the worker's) address: dev account 1.
    pub fn provider_address(&self) -> Address {
        signer(1).address()
    }

    /// Customer `who` acknowledges the deliverable `id` on chain (the transaction must succeed).
    pub async fn acknowledge(&self, who: usize, id: &str) {
        crate::send!(
            self.serving(who)
                .acknowledgeDeliverable(self.provider_address(), id.to_owned())
        )
        .unwrap_or_else(|e| panic!("acknowledgeDeliverable({id}): {e}"));
    }

    /// The TEE signer the worker's attestation (`GET /v1/quote`) names.
    pub async fn quoted_signer(&self) -> Address {
        let q: serde_json::Value = sent(self.http.get(self.url("/v1/quote")))
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("/v1/quote is not JSON: {e}"));
        q["signer"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no signer in /v1/quote: {q}"))
    }

    /// The owner acknowledges the TEE signer the worker's quote names (stands in for verifying that
    /// quote), through `acknowledgeTEESignerByOwnerFor`: it fails if the service names another one.
    pub async fn ack_signer(&self) {
        let owner = self.anvil.wallet(&signer(0));
        sealtune_contracts::acknowledge_tee_signer(
            &owner,
            &self.deployment,
            self.provider_address(),
            self.quoted_signer().await,
        )
        .await
        .unwrap_or_else(|e| panic!("acknowledge TEE signer: {e}"));
    }

    /// Customer `who` opens a ledger and funds the provider's sub-account.
    pub async fn fund(&self, who: usize, ledger_eth: u64, sub_eth: u64) {
        let ledger = self.ledger(who);
        crate::send!(ledger.addLedger(String::new()).value(ether(ledger_eth)))
            .unwrap_or_else(|e| panic!("addLedger: {e}"));
        crate::send!(ledger.transferFund(
            self.provider_address(),
            FINE_TUNING_SERVICE_NAME.into(),
            ether(sub_eth),
        ))
        .unwrap_or_else(|e| panic!("transferFund: {e}"));
    }

    /// The ether balance of `who`.
    pub async fn balance(&self, who: Address) -> U256 {
        self.anvil.balance(who).await
    }
}

/// A temporary directory laid out as the worker's training sandbox needs it: traversable by a task
/// uid (0711, not listable), so the data directory inside it and the scripts in it (0644) can be
/// reached, while the worker's config in it stays private ([`write_private`]).
pub fn sandbox_ready_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.path().display()));
    dir
}

/// Writes `text` to `path`, readable by its owner only (0600): the worker's config holds its wallet key.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn worker_config(
    anvil: &Anvil,
    deployment: &Deployment,
    dir: &tempfile::TempDir,
    (port, tls_port): (u16, Option<u16>),
    opts: &StackOptions,
) -> String {
    let url_lines = match tls_port {
        Some(t) => {
            format!("tls_listen = \"127.0.0.1:{t}\"\nserving_url = \"https://127.0.0.1:{t}\"")
        }
        None => format!("serving_url = \"http://127.0.0.1:{port}\""),
    };
    format!(
        r#"
data_dir = "{data}"
listen = "127.0.0.1:{port}"
{url_lines}
private_key = "{key}"

[chain]
rpc = "{rpc}"
serving = "{serving}"
ledger = "{ledger}"
poll_interval = "1s"

[service]
price_per_token = "{PRICE}"

[[service.models]]
name = "quick-test-model"
hash = "{MODEL_HASH}"
data_type = "text"
training_script = "{script}"
description = "SmolLM2-135M tokenizer with a quick test script"
weights = {{ hf = "HuggingFaceTB/SmolLM2-135M-Instruct" }}
{model_extra}

[limits]
ack_timeout = "{ack}"
queue_size = {queue}
max_upload_bytes = {upload}
training_timeout = "{train}"
{extra_limits}

[sandbox]
env_allow = ["QUICK_SCRIPT_MODE", "QUICK_SCRIPT_MODE_FILE"]
{uid_base}

[attestation]
source = "dev"
"#,
        data = dir.path().join("data").display(),
        key = DEV_KEYS[1],
        rpc = anvil.endpoint,
        serving = deployment.serving,
        ledger = deployment.ledger,
        script = dir.path().join("quick_train.py").display(),
        ack = opts.ack_timeout,
        queue = opts.queue_size,
        upload = opts.max_upload_bytes,
        train = opts.training_timeout,
        extra_limits = opts.extra_limits,
        model_extra = opts.model_extra,
        uid_base = opts
            .uid_base
            .map_or_else(String::new, |b| format!("uid_base = {b}\nuid_count = 16")),
    )
}

/// Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A small instruction dataset (JSONL).
pub fn dataset_jsonl(records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..records {
        out.extend_from_slice(
            format!(
                "{{\"instruction\":\"Add the numbers.\",\"input\":\"{i} + {i}\",\"output\":\"{}\"}}\n",
                2 * i
            )
            .as_bytes(),
        );
    }
    out
}

fn user_path(who: usize, rest: &str) -> String {
    format!("/v1/user/{}{rest}", signer(who).address().to_checksum(None))
}

async fn sent(r: reqwest::RequestBuilder) -> reqwest::Response {
    r.send()
        .await
        .unwrap_or_else(|e| panic!("request to the worker: {e}"))
}

/// Customer `who` uploads a dataset (signed upload form).
pub async fn upload(stack: &Stack, who: usize, bytes: Vec<u8>) -> reqwest::Response {
    let addr = signer(who).address().to_checksum(None);
    let ts = now();
    let sig = sealtune_protocol::request::sign_dataset_upload(&k256_key(who), &addr, ts);
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("data.jsonl"),
        )
        .text("signature", sig.to_hex_v27())
        .text("timestamp", ts.to_string());
    sent(
        stack
            .http
            .post(stack.url(&user_path(who, "/dataset")))
            .multipart(form),
    )
    .await
}

/// A create-task body for customer `who`, signed in the official (fee-less) form.
pub fn task_body(who: usize, dataset_hash: &str, nonce: u64, params: &str) -> serde_json::Value {
    let user = signer(who).address();
    let task = sealtune_protocol::request::CreateTask {
        user,
        nonce: U256::from(nonce),
        dataset_hash: dataset_hash.to_owned(),
        fee: U256::ZERO,
    };
    let sig = task.sign(
        &k256_key(who),
        sealtune_protocol::request::CreateTaskForm::WithoutFee,
    );
    serde_json::json!({
        "userAddress": user.to_checksum(None),
        "preTrainedModelHash": MODEL_HASH,
        "datasetHash": dataset_hash,
        "trainingParams": params,
        "fee": "0",
        "nonce": nonce.to_string(),
        "signature": sig.to_hex_v27(),
        "wait": true,
    })
}

/// Customer `who` posts a create-task `body`.
pub async fn create(stack: &Stack, who: usize, body: &serde_json::Value) -> reqwest::Response {
    sent(
        stack
            .http
            .post(stack.url(&user_path(who, "/task")))
            .json(body),
    )
    .await
}

/// Customer `who` reads task `id` (must succeed).
pub async fn get_task(stack: &Stack, who: usize, id: &str) -> serde_json::Value {
    let r = sent(
        stack
            .http
            .get(stack.url(&user_path(who, &format!("/task/{id}")))),
    )
    .await;
    assert!(r.status().is_success(), "get task: {}", r.status());
    r.json()
        .await
        .unwrap_or_else(|e| panic!("task {id} is not JSON: {e}"))
}

/// Customer `who` reads the log of task `id`.
pub async fn task_log(stack: &Stack, who: usize, id: &str) -> String {
    let r = sent(
        stack
            .http
            .get(stack.url(&user_path(who, &format!("/task/{id}/log")))),
    )
    .await;
    r.text().await.unwrap_or_default()
}

/// Polls until the task reaches one of `states`; panics with the logs after `within`.
pub async fn wait_state(
    stack: &Stack,
    who: usize,
    id: &str,
    states: &[&str],
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let t = get_task(stack, who, id).await;
        let p = t["progress"].as_str().unwrap_or("").to_owned();
        if states.contains(&p.as_str()) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} stuck in {p} (wanted {states:?}); task log:\n{}\nworker log:\n{}",
            task_log(stack, who, id).await,
            stack.worker_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Customer `who` downloads the sealed model of task `id` (signed download request).
pub async fn download(stack: &Stack, who: usize, id: &str) -> reqwest::Response {
    let uuid: uuid::Uuid = id.parse().unwrap_or_else(|e| panic!("task id {id}: {e}"));
    let ts = now();
    let sig = sealtune_protocol::request::sign_lora_download(&k256_key(who), &uuid, ts);
    sent(
        stack
            .http
            .post(stack.url(&user_path(who, &format!("/task/{id}/lora"))))
            .json(&serde_json::json!({"signature": sig.to_hex_v27(), "timestamp": ts})),
    )
    .await
}

/// Customer `who` uploads `dataset` (must succeed); returns its `datasetHash`.
pub async fn uploaded(stack: &Stack, who: usize, dataset: Vec<u8>) -> String {
    let r = upload(stack, who, dataset).await;
    assert_eq!(r.status(), 200, "upload");
    json_field(r, "datasetHash").await
}

/// Customer `who` posts a create-task `body` (must be accepted); returns the task id.
pub async fn created(stack: &Stack, who: usize, body: &serde_json::Value) -> String {
    let r = create(stack, who, body).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    json_field(r, "id").await
}

async fn json_field(r: reqwest::Response, field: &str) -> String {
    let v: serde_json::Value = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("the worker's answer is not JSON: {e}"));
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_owned()
}

/// Customer `who` uploads `dataset` and creates a task with `nonce` (both must succeed); returns its id.
pub async fn submit_with(stack: &Stack, who: usize, nonce: u64, dataset: Vec<u8>) -> String {
    let hash = uploaded(stack, who, dataset).await;
    created(stack, who, &task_body(who, &hash, nonce, PARAMS)).await
}

/// [`submit_with`] a six-record dataset.
pub async fn submit(stack: &Stack, who: usize, nonce: u64) -> String {
    submit_with(stack, who, nonce, dataset_jsonl(6)).await
}

/// The `FeesSettled` events of deliverable `id`, oldest first.
pub async fn settlements(stack: &Stack, id: &str) -> Vec<FineTuningServing::FeesSettled> {
    use alloy::providers::Provider as _;
    use alloy::sol_types::SolEvent as _;
    let filter = alloy::rpc::types::Filter::new()
        .address(stack.deployment.serving)
        .event_signature(FineTuningServing::FeesSettled::SIGNATURE_HASH)
        .from_block(0);
    stack
        .anvil
        .reader()
        .get_logs(&filter)
        .await
        .unwrap_or_else(|e| panic!("eth_getLogs: {e}"))
        .iter()
        .filter_map(|l| FineTuningServing::FeesSettled::decode_log_data(l.data()).ok())
        .filter(|e| e.deliverableId == id)
        .collect()
}

/// Customer `who` downloads the model of task `id`, checks its hash against the chain, acknowledges
/// it, waits for the settlement, unwraps the key from the chain, decrypts (the tag signature must be
/// the TEE signer's) and unzips; returns the adapter the quick script wrote.
pub async fn download_ack_decrypt(stack: &Stack, who: usize, id: &str) -> Vec<u8> {
    let out = download_ack_unpack(stack, who, id).await;
    std::fs::read(
        out.path()
            .join("out/output_model/adapter_model.safetensors"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// [`download_ack_decrypt`]'s whole check, returning the directory the deliverable was unpacked
/// into (its `out/output_model/` holds the delivered files).
pub async fn download_ack_unpack(stack: &Stack, who: usize, id: &str) -> tempfile::TempDir {
    let user = signer(who).address();
    let r = download(stack, who, id).await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap_or_else(|e| panic!("{e}"));
    let d = stack
        .serving(who)
        .getDeliverable(user, stack.provider_address(), id.to_owned())
        .call()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        d.modelRootHash.as_ref(),
        alloy::primitives::keccak256(&bytes).as_slice(),
        "the download is what was announced"
    );
    assert!(!d.acknowledged && !d.settled);
    stack.acknowledge(who, id).await;
    wait_state(stack, who, id, &["Finished"], Duration::from_secs(60)).await;
    let d = stack
        .serving(who)
        .getDeliverable(user, stack.provider_address(), id.to_owned())
        .call()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.settled && d.acknowledged);
    let secret = k256::SecretKey::from_slice(
        &hex::decode(&DEV_KEYS[who][2..]).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let key = sealtune_protocol::ecies::unwrap_key(&secret, &d.encryptedSecret)
        .expect("the customer unwraps the model key");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sealed = dir.path().join("model.sealed");
    std::fs::write(&sealed, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let service = stack
        .serving(who)
        .getService(stack.provider_address())
        .call()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let zip = dir.path().join("model.zip");
    sealtune_protocol::deliverable::open_file(&sealed, &zip, &key, service.teeSignerAddress)
        .expect("the tag signature is the TEE signer's");
    let out = dir.path().join("out");
    sealtune_protocol::deliverable::unzip_safely(&zip, &out, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// The model key of task `id` of customer `who`, unwrapped from the settled deliverable on chain.
pub async fn settled_model_key(
    stack: &Stack,
    who: usize,
    id: &str,
) -> sealtune_protocol::deliverable::DeliverableKey {
    let d = stack
        .serving(who)
        .getDeliverable(
            signer(who).address(),
            stack.provider_address(),
            id.to_owned(),
        )
        .call()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let secret = k256::SecretKey::from_slice(
        &hex::decode(&DEV_KEYS[who][2..]).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    sealtune_protocol::ecies::unwrap_key(&secret, &d.encryptedSecret)
        .unwrap_or_else(|e| panic!("unwrapping the model key: {e}"))
}

/// A zip of the given entries, stored (not compressed).
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for (name, bytes) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

/// A zip of at least 100 MiB: one JSONL file of ~1 KiB text records, stored (the dataset of the
/// create-task → `SetUp` figures).
pub fn zip_of_100mib() -> Vec<u8> {
    let line = format!(
        "{{\"text\":\"{}\"}}\n",
        "the quick brown fox jumps over the lazy dog ".repeat(24)
    );
    let jsonl = line.repeat((100 << 20) / line.len() + 1);
    let zip = zip_of(&[("data/train.jsonl", jsonl.as_bytes())]);
    assert!(zip.len() >= 100 << 20);
    zip
}
