//! Customers who use the official 0G tools: the unmodified `0g-compute-cli` (npm
//! `@0gfoundation/0g-compute-ts-sdk` 0.9.0, as installed by scripts/setup) drives a whole task against
//! sealtune's contracts and worker on a local anvil — list providers and models, verify, fund,
//! `create-task --dataset-path`, `get-task`/`get-log` until delivered, `acknowledge-model`, the worker's
//! settlement, `decrypt-model` — and the decrypted zip is what the worker's script produced. Then
//! sealtune's own client (the `sealtune` command line, run in-process) does the same on the same stack,
//! and the on-chain results of both (deliverable, `FeesSettled`, sub-account, ledger) have the same shape
//! (sealtune's client seals the dataset to the attested dataset key and signs request v2; the tokens
//! and the fee are the same as the official CLI's plaintext upload).
//!
//! What the official CLI assumes and how this test meets it (details in docs/compatibility.md):
//! - the key comes only from `$HOME/.0g-compute-cli/config.json` (no environment variable): the test
//!   gives the CLI its own HOME;
//! - `list-providers`/`list-models` use a read-only broker that ignores `--fine-tuning-ca` and reads the
//!   contract at the SDK's hard-coded address for the chain id: anvil runs as chain 31337 ("hardhat")
//!   and the contracts are deployed with the deployer's nonce set so FineTuningServing lands there;
//! - the SDK resolves the inference contract at start even for fine-tuning: `INFERENCE_CA` is the
//!   fine-tuning contract (its ledger registry entry answers the lookup);
//! - `create-task --dataset-path` first runs the bundled `0g-storage-client` against the public 0G
//!   testnet and falls back to the TEE upload when that fails: the time it costs is measured and printed.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256, address, keccak256};
use clap::Parser as _;
use sealtune_e2e::chain::*;
use sealtune_e2e::node_tool;
use sealtune_e2e::stack::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Where the official SDK's read-only broker looks for FineTuningServing on chain 31337
/// (`CONTRACT_ADDRESSES.hardhat.fineTuning` in the SDK): the CREATE address of anvil's account 0 at nonce 12.
const SDK_HARDHAT_FINE_TUNING: Address = address!("A51c1fc2f0D1a1b8494Ed1FE312d7C3a78Ed91C0");
/// The official CLI's customer and sealtune's customer.
const OFFICIAL: usize = 3;
const SEALTUNE: usize = 2;
const MODEL_NAME: &str = "quick-test-model";
/// Every CLI call is bounded: a prompt the test did not expect must fail the test, not hang it.
const CLI_TIMEOUT: Duration = Duration::from_secs(180);

/// The official CLI with its own HOME (its only key source) and the local contracts.
struct OfficialCli {
    home: tempfile::TempDir,
    rpc: String,
    ledger: String,
    serving: String,
}

impl OfficialCli {
    fn new(stack: &Stack, who: usize) -> OfficialCli {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".0g-compute-cli");
        std::fs::create_dir_all(&dir).unwrap();
        let config = json!({"privateKey": DEV_KEYS[who], "rpcEndpoint": stack.anvil.endpoint, "network": "custom"});
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        OfficialCli {
            home,
            rpc: stack.anvil.endpoint.clone(),
            ledger: stack.deployment.ledger.to_checksum(None),
            serving: stack.deployment.serving.to_checksum(None),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(node_tool("0g-compute-cli"));
        c.args(args)
            .args([
                "--rpc",
                &self.rpc,
                "--ledger-ca",
                &self.ledger,
                "--fine-tuning-ca",
                &self.serving,
            ])
            .current_dir(self.home.path())
            .env("HOME", self.home.path())
            .env("INFERENCE_CA", &self.serving)
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .env_remove("ZG_DEV_MODE")
            .env_remove("ZG_RPC_ENDPOINT")
            .env_remove("RPC_ENDPOINT")
            .env_remove("LEDGER_CA")
            .env_remove("FINE_TUNING_CA")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs one command; panics with its output when it fails; returns stdout and stderr together.
    async fn run(&self, args: &[&str]) -> String {
        let started = Instant::now();
        let out = tokio::time::timeout(CLI_TIMEOUT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("0g-compute-cli {args:?} did not finish in {CLI_TIMEOUT:?}"))
            .expect("run 0g-compute-cli");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "0g-compute-cli {args:?} failed with {}:\n{text}",
            out.status
        );
        eprintln!(
            "0g-compute-cli {} took {:.1} s",
            args.iter().take(2).copied().collect::<Vec<_>>().join(" "),
            started.elapsed().as_secs_f64()
        );
        text
    }
}

/// The value of a row `│ field │ value │` in the CLI's tables.
fn table_value(out: &str, field: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let cells: Vec<&str> = line
            .split(['│', '|'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        match cells.as_slice() {
            [f, v, ..] if *f == field => Some((*v).to_owned()),
            _ => None,
        }
    })
}

/// The text after `marker` on the first line that has it.
fn after(out: &str, marker: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim().to_owned()))
}

/// Every file of a directory, by relative path.
fn files_under(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The decrypted zip holds exactly the files the worker's script wrote (`output_model/<relative path>`).
fn assert_zip_is_the_worker_output(stack: &Stack, id: &str, zip: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    sealtune_protocol::deliverable::unzip_safely(zip, &out, &Default::default())
        .expect("a valid zip");
    let produced = files_under(&stack.dir.path().join("data/tasks").join(id).join("output"));
    assert!(!produced.is_empty(), "the worker kept the training output");
    assert_eq!(
        files_under(&out.join("output_model")),
        produced,
        "the decrypted model is what the worker produced"
    );
    let adapter = produced
        .iter()
        .find(|(p, _)| p.ends_with("adapter_model.safetensors"))
        .expect("the script's adapter");
    assert!(adapter.1.starts_with(b"weights-"));
}

/// Decrypts the downloaded file with sealtune's protocol crate (the independent implementation).
async fn protocol_decrypt(stack: &Stack, who: usize, id: &str, encrypted: &Path) -> Vec<u8> {
    let d = stack
        .serving(who)
        .getDeliverable(
            signer(who).address(),
            stack.provider_address(),
            id.to_owned(),
        )
        .call()
        .await
        .unwrap();
    let secret = k256::SecretKey::from_slice(&hex::decode(&DEV_KEYS[who][2..]).unwrap()).unwrap();
    let key = sealtune_protocol::ecies::unwrap_key(&secret, &d.encryptedSecret)
        .expect("the customer unwraps the model key");
    let service = stack
        .serving(who)
        .getService(stack.provider_address())
        .call()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("model.zip");
    sealtune_protocol::deliverable::open_file(encrypted, &zip, &key, service.teeSignerAddress)
        .expect("tag signature by the TEE signer");
    std::fs::read(zip).unwrap()
}

/// What one customer's finished task left on chain.
#[derive(Debug)]
struct OnChain {
    fee: U256,
    nonce: U256,
    tokens: u64,
}

/// Checks the on-chain results of a finished, acknowledged task and returns its fee and nonce.
async fn check_on_chain(
    stack: &Stack,
    who: usize,
    id: &str,
    encrypted: &Path,
    deposited: U256,
    transferred: U256,
) -> OnChain {
    let user = signer(who).address();
    let task = get_task(stack, who, id).await;
    let tokens = task["tokens"]
        .as_u64()
        .expect("the worker reports the token count");
    let nonce: U256 = task["nonce"].as_str().unwrap().parse().unwrap();
    let d = stack
        .serving(who)
        .getDeliverable(user, stack.provider_address(), id.to_owned())
        .call()
        .await
        .unwrap();
    assert_eq!(d.id, id, "deliverable id is the task's UUID text");
    assert_eq!(d.modelRootHash.len(), 32);
    assert_eq!(
        d.modelRootHash.as_ref(),
        keccak256(std::fs::read(encrypted).unwrap()).as_slice(),
        "root hash = keccak of the download"
    );
    assert_eq!(d.encryptedSecret.len(), 129, "ECIES-wrapped AES key");
    assert!(d.acknowledged && d.settled);
    assert!(d.timestamp > alloy::primitives::Uint::ZERO);
    let events = settlements(stack, id).await;
    assert_eq!(events.len(), 1, "settled exactly once");
    let e = &events[0];
    assert_eq!((e.user, e.provider), (user, stack.provider_address()));
    assert!(e.acknowledged);
    assert_eq!(
        e.fee,
        U256::from(tokens) * U256::from(PRICE),
        "tokens × price × 1 epoch"
    );
    assert_eq!(e.nonce, nonce, "the task's nonce is written on chain");
    let account = stack
        .serving(who)
        .getAccount(user, stack.provider_address())
        .call()
        .await
        .unwrap();
    assert_eq!(account.nonce, nonce);
    assert_eq!(
        account.balance,
        transferred - e.fee,
        "the sub-account paid the fee"
    );
    assert_eq!(account.pendingRefund, U256::ZERO);
    let ledger = stack.ledger(who).getLedger(user).call().await.unwrap();
    assert_eq!(
        ledger.totalBalance,
        deposited - e.fee,
        "the ledger's total follows the spend"
    );
    assert_eq!(ledger.availableBalance, deposited - transferred);
    OnChain {
        fee: e.fee,
        nonce,
        tokens,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_cli_drives_a_whole_task_and_sealtune_client_matches() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            deployer_nonce: Some(11),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        stack.deployment.serving, SDK_HARDHAT_FINE_TUNING,
        "deployed where the SDK's read-only broker looks"
    );
    let provider = stack.provider_address().to_checksum(None);
    let work = tempfile::tempdir().unwrap();
    let dataset = work.path().join("dataset.jsonl");
    std::fs::write(&dataset, dataset_jsonl(6)).unwrap();
    let params = work.path().join("params.json");
    std::fs::write(&params, PARAMS).unwrap();
    let dataset_hash = keccak256(std::fs::read(&dataset).unwrap()).to_string();

    // ---- 1. The official CLI. ----
    let cli = OfficialCli::new(&stack, OFFICIAL);
    let out = cli.run(&["fine-tuning", "list-providers"]).await;
    assert!(
        out.contains(&provider),
        "list-providers shows the sealtune provider:\n{out}"
    );
    let out = cli.run(&["fine-tuning", "list-models"]).await;
    assert!(
        out.contains(MODEL_NAME),
        "list-models shows the provider's model:\n{out}"
    );

    let out = cli
        .run(&[
            "fine-tuning",
            "verify",
            "--provider",
            &provider,
            "--output-dir",
            cli.home.path().to_str().unwrap(),
        ])
        .await;
    assert!(
        out.contains("Docker Compose Verification: ✅ PASSED"),
        "the SDK's compose-hash check passes:\n{out}"
    );
    assert!(
        out.contains("TEE Signer Address Verification: ✅ PASSED"),
        "the SDK's report_data check passes:\n{out}"
    );
    assert!(
        cli.home
            .path()
            .join("fine_tuning_attestation_report.json")
            .is_file()
    );

    cli.run(&["add-account", "--amount", "5"]).await;
    cli.run(&["deposit", "--amount", "1"]).await;
    cli.run(&[
        "transfer-fund",
        "--provider",
        &provider,
        "--service",
        "fine-tuning",
        "--amount",
        "2",
    ])
    .await;

    // create-task --dataset-path: 0G Storage first (it cannot work here), then the TEE upload.
    let started = Instant::now();
    let mut child = cli
        .command(&[
            "fine-tuning",
            "create-task",
            "--provider",
            &provider,
            "--model",
            MODEL_NAME,
            "--dataset-path",
            dataset.to_str().unwrap(),
            "--config-path",
            params.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start 0g-compute-cli create-task");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let lines = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut v = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            v.push((started.elapsed(), l));
        }
        v
    });
    let errs = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let status = tokio::time::timeout(CLI_TIMEOUT, child.wait())
        .await
        .expect("create-task finished")
        .unwrap();
    let lines = lines.await.unwrap();
    let errs = errs.await.unwrap();
    let text: String = lines
        .iter()
        .map(|(_, l)| format!("{l}\n"))
        .collect::<String>()
        + &errs;
    assert!(status.success(), "create-task failed:\n{text}");
    let at = |needle: &str| {
        lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    };
    let storage_try =
        at("Uploading dataset to 0G Storage").expect("the CLI tries 0G Storage first");
    let fallback = at("Falling back to direct TEE upload")
        .unwrap_or_else(|| panic!("the CLI fell back to the TEE upload:\n{text}"));
    eprintln!(
        "official CLI create-task: the 0G Storage attempt took {:.1} s before the TEE upload; the whole command {:.1} s",
        (fallback - storage_try).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        after(&text, "Dataset uploaded to TEE (fallback), hash:").as_deref(),
        Some(dataset_hash.as_str()),
        "{text}"
    );
    let id = after(&text, "Created Task ID:").unwrap_or_else(|| panic!("no task id:\n{text}"));
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert!(
        text.contains("Provider signer already acknowledged"),
        "funding acknowledged the TEE signer:\n{text}"
    );

    // get-task / get-log until delivered.
    let deadline = Instant::now() + Duration::from_secs(150);
    let task_out = loop {
        let out = cli
            .run(&[
                "fine-tuning",
                "get-task",
                "--provider",
                &provider,
                "--task",
                &id,
            ])
            .await;
        let progress = table_value(&out, "Progress").unwrap_or_default();
        if progress == "Delivered" {
            break out;
        }
        assert!(
            progress != "Failed" && Instant::now() < deadline,
            "task {id} is {progress}:\n{out}\n{}",
            task_log(&stack, OFFICIAL, &id).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(table_value(&task_out, "ID").as_deref(), Some(id.as_str()));
    assert_eq!(
        table_value(&task_out, "Dataset Hash").as_deref(),
        Some(dataset_hash.as_str())
    );
    assert_eq!(
        table_value(&task_out, "Pre-trained Model Hash").as_deref(),
        Some(MODEL_HASH)
    );
    let log = cli
        .run(&[
            "fine-tuning",
            "get-log",
            "--provider",
            &provider,
            "--task",
            &id,
        ])
        .await;
    for needle in [
        "setup done",
        "training started",
        "model sealed",
        "delivered",
    ] {
        assert!(log.contains(needle), "get-log lacks {needle}:\n{log}");
    }

    // acknowledge-model: download through the provider, then acknowledge on chain.
    let encrypted = work.path().join("official-model.enc");
    let out = cli
        .run(&[
            "fine-tuning",
            "acknowledge-model",
            "--provider",
            &provider,
            "--task-id",
            &id,
            "--data-path",
            encrypted.to_str().unwrap(),
            "--download-method",
            "tee",
        ])
        .await;
    assert!(out.contains("Acknowledged model"), "{out}");
    assert!(
        encrypted.is_file(),
        "the CLI saved the encrypted model:\n{out}"
    );
    wait_state(
        &stack,
        OFFICIAL,
        &id,
        &["Finished"],
        Duration::from_secs(60),
    )
    .await;

    let zip = work.path().join("official-model.zip");
    let out = cli
        .run(&[
            "fine-tuning",
            "decrypt-model",
            "--provider",
            &provider,
            "--task-id",
            &id,
            "--encrypted-model",
            encrypted.to_str().unwrap(),
            "--output",
            zip.to_str().unwrap(),
        ])
        .await;
    assert!(out.contains("Decrypted model"), "{out}");
    assert_zip_is_the_worker_output(&stack, &id, &zip);
    assert_eq!(
        std::fs::read(&zip).unwrap(),
        protocol_decrypt(&stack, OFFICIAL, &id, &encrypted).await,
        "the CLI and sealtune decrypt the same zip"
    );
    let official = check_on_chain(&stack, OFFICIAL, &id, &encrypted, ether(6), ether(2)).await;
    assert_eq!(
        official.nonce % U256::from(10_000u64),
        U256::from(40u64),
        "the CLI's nonce is Date.now()*10000+40"
    );

    // ---- 2. sealtune's own client, same stack, same dataset. ----
    let rpc = stack.anvil.endpoint.clone();
    let (ledger, serving) = (
        stack.deployment.ledger.to_string(),
        stack.deployment.serving.to_string(),
    );
    let sealtune = |args: Vec<String>| {
        let mut full: Vec<String> = [
            "sealtune",
            "--json",
            "--rpc",
            &rpc,
            "--ledger",
            &ledger,
            "--serving",
            &serving,
            "--key",
            DEV_KEYS[SEALTUNE],
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        full.extend(args);
        let cli = sealtune_client::cli::Cli::try_parse_from(&full)
            .unwrap_or_else(|e| panic!("{full:?}: {e}"));
        async move {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let env = sealtune_client::cli::RunEnv {
                now_ms,
                random: keccak256(now_ms.to_be_bytes()).0,
                progress: false,
            };
            match sealtune_client::cli::run(&cli, &env).await {
                Ok(out) => {
                    assert_eq!(out.exit_code, 0, "sealtune {full:?}: {}", out.human);
                    out.json
                }
                Err(e) => panic!("sealtune {full:?} failed: {e}"),
            }
        }
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    sealtune(s(&["create-account", "--amount", "5"])).await;
    sealtune(s(&["deposit-fund", "--amount", "1"])).await;
    sealtune(s(&[
        "transfer-fund",
        "--provider",
        &provider,
        "--amount",
        "2",
    ]))
    .await;
    let services = sealtune(s(&["list-service"])).await;
    assert!(
        services.to_string().contains(&provider.to_lowercase()),
        "{services}"
    );
    let created = sealtune(s(&[
        "create-task",
        "--provider",
        &provider,
        "--model",
        MODEL_NAME,
        "--dataset-path",
        dataset.to_str().unwrap(),
        "--config-path",
        params.to_str().unwrap(),
        "--allow-dev-quote",
        "--policy",
        "dev",
    ]))
    .await;
    let id2 = created["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    // The worker attests a dataset key: sealtune's client seals the dataset to it (so the hash is
    // the envelope's, not the plaintext's the official CLI uploaded) and signs request v2.
    assert_eq!(created["upload"]["encrypted"], true, "{created}");
    assert_ne!(created["dataset_hash"], dataset_hash.as_str());
    assert_eq!(
        created["signature_form"], "v2",
        "a provider that attests a dataset key gets the v2 request"
    );
    wait_state(
        &stack,
        SEALTUNE,
        &id2,
        &["Delivered"],
        Duration::from_secs(150),
    )
    .await;
    let progress = sealtune(s(&[
        "query-progress",
        "--provider",
        &provider,
        "--task-id",
        &id2,
    ]))
    .await;
    assert_eq!(progress["progress"], "Delivered", "{progress}");
    let encrypted2 = work.path().join("sealtune-model.enc");
    let downloaded = sealtune(s(&[
        "download-model",
        "--provider",
        &provider,
        "--task-id",
        &id2,
        "--output",
        encrypted2.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(downloaded["acknowledged"], true, "{downloaded}");
    wait_state(
        &stack,
        SEALTUNE,
        &id2,
        &["Finished"],
        Duration::from_secs(60),
    )
    .await;
    let zip2 = work.path().join("sealtune-model.zip");
    sealtune(s(&[
        "decrypt-model",
        "--provider",
        &provider,
        "--task-id",
        &id2,
        "--encrypted",
        encrypted2.to_str().unwrap(),
        "--output",
        zip2.to_str().unwrap(),
    ]))
    .await;
    assert_zip_is_the_worker_output(&stack, &id2, &zip2);
    let ours = check_on_chain(&stack, SEALTUNE, &id2, &encrypted2, ether(6), ether(2)).await;

    // Same dataset, same model, same parameters: same tokens and fee, whichever client.
    assert_eq!(ours.tokens, official.tokens);
    assert_eq!(ours.fee, official.fee);
    assert_eq!(
        ours.nonce % U256::from(10_000u64),
        U256::from(40u64),
        "sealtune uses the official nonce form"
    );
}
