//! A real stack for worker tests: anvil with the contracts deployed, a funded customer, and the
//! `sealtune-worker` binary serving with the (named, insecure) dev attestation source.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use sealtune_contracts::bindings::FineTuningServing::{self, FineTuningServingInstance};
use sealtune_contracts::bindings::LedgerManager::{self, LedgerManagerInstance};
use sealtune_contracts::{Deployment, FINE_TUNING_SERVICE_NAME};
use sealtune_e2e::{Anvil, ChildGuard, free_port, repo_root};

/// anvil's well-known dev keys (mnemonic "test test … junk").
pub const KEYS: [&str; 4] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

pub const MODEL_HASH: &str = "0x2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b2b5b";
pub const PRICE: u64 = 1_000_000_000;

pub fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18u64))
}

pub fn signer(i: usize) -> PrivateKeySigner {
    KEYS[i].parse().unwrap()
}

pub fn k256_key(i: usize) -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&hex::decode(&KEYS[i][2..]).unwrap()).unwrap()
}

/// A training script that needs no model: writes an "adapter" and reports progress. Its mode
/// (`QUICK_SCRIPT_MODE`, a `behaviour` file in the task directory, or the file named by
/// `QUICK_SCRIPT_MODE_FILE`, read at each run): `ok`, `crash` (raises), `slow` (6 s), `hang`
/// (sleeps an hour), `nothing` (exits 0 without writing any output).
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
if mode == "nothing":
    print("exiting 0 without writing anything")
    sys.exit(0)
if mode == "crash":
    raise RuntimeError("the script crashed on purpose")
if mode == "slow":
    import time
    time.sleep(6)
os.makedirs(args.output_dir, exist_ok=True)
with open(os.path.join(args.output_dir, "adapter_model.safetensors"), "wb") as f:
    f.write(b"weights-" + json.dumps(params, sort_keys=True).encode())
with open(os.path.join(args.output_dir, "adapter_config.json"), "w") as f:
    json.dump({"r": 8}, f)
print("quick script done")
"#;

pub struct Stack {
    pub anvil: Anvil,
    pub deployment: Deployment,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub port: u16,
    pub worker: Option<ChildGuard>,
    pub http: reqwest::Client,
    /// Extra environment for the next worker start (e.g. QUICK_SCRIPT_MODE).
    pub env: Vec<(String, String)>,
}

pub struct StackOptions {
    pub ack_timeout: &'static str,
    pub queue_size: u32,
    pub max_upload_bytes: u64,
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
        }
    }
}

pub fn client(anvil: &Anvil, who: &PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(who.clone())
        .connect_http(anvil.endpoint.parse().unwrap())
        .erased()
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Stack {
        let anvil = Anvil::start(31337);
        let owner = ProviderBuilder::new()
            .wallet(signer(0))
            .connect_http(anvil.endpoint.parse().unwrap());
        if let Some(nonce) = opts.deployer_nonce {
            let _: serde_json::Value = owner
                .raw_request(
                    "anvil_setNonce".into(),
                    (signer(0).address(), U256::from(nonce)),
                )
                .await
                .expect("anvil_setNonce");
        }
        let deployment = sealtune_contracts::deploy(
            &owner,
            &sealtune_contracts::DeployConfig {
                lock_time_secs: opts.lock_time,
                ..Default::default()
            },
        )
        .await
        .expect("deploy");
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("quick_train.py");
        std::fs::write(&script, QUICK_SCRIPT).unwrap();
        let port = free_port();
        let config = format!(
            r#"
data_dir = "{data}"
listen = "127.0.0.1:{port}"
serving_url = "http://127.0.0.1:{port}"
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

[limits]
ack_timeout = "{ack}"
queue_size = {queue}
max_upload_bytes = {upload}
training_timeout = "{train}"
{extra_limits}

[attestation]
source = "dev"
"#,
            data = dir.path().join("data").display(),
            key = KEYS[1],
            rpc = anvil.endpoint,
            serving = deployment.serving,
            ledger = deployment.ledger,
            script = script.display(),
            ack = opts.ack_timeout,
            queue = opts.queue_size,
            upload = opts.max_upload_bytes,
            train = opts.training_timeout,
            extra_limits = opts.extra_limits,
        );
        let config_path = dir.path().join("worker.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut stack = Stack {
            anvil,
            deployment,
            dir,
            config_path,
            port,
            worker: None,
            http: reqwest::Client::new(),
            env: Vec::new(),
        };
        stack.start_worker(None).await;
        stack.ack_signer().await;
        stack
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// Starts the worker (optionally with a test crash point) and waits for /healthz.
    pub async fn start_worker(&mut self, crash_at: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealtune-worker"));
        cmd.args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match crash_at {
            Some(p) => cmd.env("SEALTUNE_TEST_CRASH_AT", p),
            None => cmd.env_remove("SEALTUNE_TEST_CRASH_AT"),
        };
        self.worker = Some(ChildGuard(cmd.spawn().expect("start sealtune-worker")));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.worker.as_mut().unwrap().0.try_wait().unwrap() {
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

    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits for the worker process to exit (a crash point) and returns whether it died abnormally.
    pub async fn wait_worker_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.worker.as_mut().unwrap().0.try_wait().unwrap() {
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

    pub fn serving(&self, who: usize) -> FineTuningServingInstance<DynProvider> {
        FineTuningServing::new(self.deployment.serving, client(&self.anvil, &signer(who)))
    }

    pub fn ledger(&self, who: usize) -> LedgerManagerInstance<DynProvider> {
        LedgerManager::new(self.deployment.ledger, client(&self.anvil, &signer(who)))
    }

    pub fn provider_address(&self) -> Address {
        signer(1).address()
    }

    /// Customer `who` acknowledges the deliverable `id` on chain (the transaction must succeed).
    pub async fn acknowledge(&self, who: usize, id: &str) {
        let r = self
            .serving(who)
            .acknowledgeDeliverable(self.provider_address(), id.to_owned())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status(), "acknowledgeDeliverable({id}) reverted");
    }

    /// The owner acknowledges the worker's TEE signer (stands in for verifying its quote).
    pub async fn ack_signer(&self) {
        let owner = client(&self.anvil, &signer(0));
        sealtune_contracts::acknowledge_tee_signer(
            &owner,
            &self.deployment,
            self.provider_address(),
        )
        .await
        .expect("acknowledge TEE signer");
    }

    /// Customer `who` opens a ledger and funds the provider's sub-account.
    pub async fn fund(&self, who: usize, ledger_eth: u64, sub_eth: u64) {
        let ledger = self.ledger(who);
        ledger
            .addLedger(String::new())
            .value(ether(ledger_eth))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let r = ledger
            .transferFund(
                self.provider_address(),
                FINE_TUNING_SERVICE_NAME.into(),
                ether(sub_eth),
            )
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(r.status());
    }

    pub async fn balance(&self, who: Address) -> U256 {
        client(&self.anvil, &signer(0))
            .get_balance(who)
            .await
            .unwrap()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
    stack
        .http
        .post(stack.url(&format!("/v1/user/{addr}/dataset")))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

pub const PARAMS: &str = r#"{"neftune_noise_alpha":5,"num_train_epochs":1,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":2}"#;

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

pub async fn create(stack: &Stack, who: usize, body: &serde_json::Value) -> reqwest::Response {
    let addr = signer(who).address().to_checksum(None);
    stack
        .http
        .post(stack.url(&format!("/v1/user/{addr}/task")))
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn get_task(stack: &Stack, who: usize, id: &str) -> serde_json::Value {
    let addr = signer(who).address().to_checksum(None);
    let r = stack
        .http
        .get(stack.url(&format!("/v1/user/{addr}/task/{id}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "get task: {}", r.status());
    r.json().await.unwrap()
}

pub async fn task_log(stack: &Stack, who: usize, id: &str) -> String {
    let addr = signer(who).address().to_checksum(None);
    stack
        .http
        .get(stack.url(&format!("/v1/user/{addr}/task/{id}/log")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls until the task reaches one of `states`; panics with the log after `within`.
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

pub async fn download(stack: &Stack, who: usize, id: &str) -> reqwest::Response {
    let addr = signer(who).address().to_checksum(None);
    let uuid: uuid::Uuid = id.parse().unwrap();
    let ts = now();
    let sig = sealtune_protocol::request::sign_lora_download(&k256_key(who), &uuid, ts);
    stack
        .http
        .post(stack.url(&format!("/v1/user/{addr}/task/{id}/lora")))
        .json(&serde_json::json!({"signature": sig.to_hex_v27(), "timestamp": ts}))
        .send()
        .await
        .unwrap()
}

pub fn repo() -> PathBuf {
    repo_root()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
