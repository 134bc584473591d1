//! The `sealtune` binary itself: `--json` documents, exit codes, bad inputs, the config file, and
//! the customer flow against a real anvil (the provider's byte path is the fixture of `common`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alloy::primitives::{U256, keccak256};
use common::Env;
use sealtune_e2e::ether;
use sealtune_e2e::provider_fixture::now_ms;
use sealtune_protocol::deliverable::{self, SealOptions};
use serde_json::Value;

const KEY2: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

/// The binary with a clean environment: no SEALTUNE_* variables, an empty HOME (no config file).
fn sealtune(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sealtune"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SEALTUNE_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).env_remove("XDG_CONFIG_HOME");
    c
}

fn run(cmd: &mut Command) -> (i32, Value, String) {
    let out: Output = cmd.output().expect("run sealtune");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{stderr}"),
    )
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn root_hash_matches_the_protocol_vectors() {
    // PROTOCOL.md §6 (the protocol crate's storage vectors).
    let vectors: [(Vec<u8>, &str); 6] = [
        (
            vec![0x61],
            "0x200e594efa2ab0b924e60f9bb9445f75b8d058f0de13b35a83c71d494b0a15ca",
        ),
        (
            vec![0; 256],
            "0xd397b3b043d87fcd6fad1291ff0bfd16401c274896d8c63a923727f077b8e0b5",
        ),
        (
            vec![1; 257],
            "0xef9f8272433b95cfd89fe13ea1e4ed1ea8aa61e1a3653a935e8d0fda3de6d857",
        ),
        (
            pattern(262_144),
            "0x4d533607c0f4423a9287d761e7394aa61552adb7d6a080cdb278ddb65b2eacb7",
        ),
        (
            pattern(262_145),
            "0x1458412a6ece9f4f9dc83ade0c68037378ef3e10fe484cea5d451cc10c9212d0",
        ),
        (
            pattern(1_000_000),
            "0x285b8efcda042d36b5ca0bf41e92e2fbd5d623d160377484559bc8435021e5ff",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = vectors
        .iter()
        .enumerate()
        .map(|(i, (data, _))| {
            let p = dir.path().join(format!("v{i}.bin"));
            std::fs::write(&p, data).unwrap();
            p
        })
        .collect();
    let out = sealtune(dir.path())
        .arg("root-hash")
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<&str> = vectors.iter().map(|(_, r)| *r).collect();
    assert_eq!(lines, expected);

    let (code, json, all) = run(sealtune(dir.path())
        .args(["--json", "root-hash"])
        .arg(&files[3]));
    assert_eq!(code, 0, "{all}");
    assert_eq!(json[0]["root"], expected[3]);
    assert_eq!(json[0]["size"], 262_144);
    assert_eq!(json[0]["chunks"], 1024);
}

#[test]
fn root_hash_refuses_empty_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let (code, _, all) = run(sealtune(dir.path()).arg("root-hash").arg(&empty));
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("empty"), "{all}");
    let (code, json, _) = run(sealtune(dir.path())
        .args(["--json", "root-hash"])
        .arg(&empty));
    assert_eq!(code, 2);
    assert_eq!(json["error"]["kind"], "root_hash");
    let (code, json, _) = run(sealtune(dir.path())
        .args(["--json", "root-hash"])
        .arg(dir.path().join("nope")));
    assert_eq!(code, 2);
    assert_eq!(json["error"]["kind"], "invalid_input");
    // No file at all is a usage error from the argument parser.
    let (code, _, _) = run(sealtune(dir.path()).arg("root-hash"));
    assert_eq!(code, 2);
}

#[test]
fn bad_inputs_are_refused_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let chain = [
        "--rpc",
        "http://127.0.0.1:9",
        "--ledger",
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "--serving",
        "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    ];

    // Missing key: configuration error, with how to give one.
    let (code, json, all) =
        run(sealtune(dir.path())
            .args(chain)
            .args(["--json", "create-account", "--amount", "3"]));
    assert_eq!(code, 3, "{all}");
    assert_eq!(json["error"]["kind"], "config");
    assert!(json["error"]["message"].as_str().unwrap().contains("--key"));

    // Malformed key: refused without echoing it.
    let (code, _, all) = run(sealtune(dir.path()).args(chain).args([
        "--key",
        "0xdeadbeefsecret",
        "create-account",
        "--amount",
        "3",
    ]));
    assert_eq!(code, 3, "{all}");
    assert!(!all.contains("deadbeefsecret"), "{all}");

    // Bad address, bad checksum, bad amount: usage errors before anything is sent.
    let (code, _, all) = run(sealtune(dir.path()).args(chain).args([
        "--key",
        KEY2,
        "transfer-fund",
        "--provider",
        "0x12",
        "--amount",
        "1",
    ]));
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("40 hex digits"), "{all}");
    let (code, _, all) = run(sealtune(dir.path()).args(chain).args([
        "--key",
        KEY2,
        "transfer-fund",
        "--provider",
        "0x70997970c51812dc3A010C7d01b50e0d17dc79C8",
        "--amount",
        "1",
    ]));
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("checksum"), "{all}");
    let (code, json, _) = run(sealtune(dir.path()).args(chain).args([
        "--json",
        "--key",
        KEY2,
        "deposit-fund",
        "--amount=-1",
    ]));
    assert_eq!(code, 2);
    assert_eq!(json["error"]["kind"], "invalid_input");
    // Under --json even argument-parser errors are one JSON document.
    let (code, json, _) = run(sealtune(dir.path()).args(["--json", "deposit-fund"]));
    assert_eq!(code, 2);
    assert_eq!(json["error"]["kind"], "usage");

    // A bad contract address in the settings.
    let (code, _, all) = run(sealtune(dir.path()).args([
        "--rpc",
        "http://127.0.0.1:9",
        "--ledger",
        "nope",
        "--serving",
        "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        "list-service",
    ]));
    assert_eq!(code, 2, "{all}");

    // Nothing listens on the RPC port: unreachable.
    let (code, json, all) = run(sealtune(dir.path())
        .args(chain)
        .args(["--json", "list-service"]));
    assert_eq!(code, 7, "{all}");
    assert!(
        json["error"]["hint"].as_str().unwrap().contains("--rpc"),
        "{all}"
    );

    // A config file with an unknown key is a configuration error.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "rpc = \"http://127.0.0.1:9\"\nprivate_key = \"0x00\"\n",
    )
    .unwrap();
    let (code, _, all) = run(sealtune(dir.path())
        .arg("--config")
        .arg(&cfg)
        .arg("list-service"));
    assert_eq!(code, 3, "{all}");
    assert!(all.contains("unknown field"), "{all}");
}

/// Run a blocking command from an async test while the fixture keeps serving.
async fn run_async(mut cmd: Command) -> (i32, Value, String) {
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_flow_through_the_binary() {
    let env = Env::new().await;
    let home = tempfile::tempdir().unwrap();
    // Settings from the config file, the key from the environment.
    let cfg = home.path().join(".config/sealtune/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "rpc = \"{}\"\nledger = \"{}\"\nserving = \"{}\"\n",
            env.rpc(),
            env.deployment.ledger,
            env.deployment.serving
        ),
    )
    .unwrap();
    let key = format!("0x{}", hex::encode(env.user.credential().to_bytes()));
    let cmd = |args: &[&str]| {
        let mut c = sealtune(home.path());
        c.env("SEALTUNE_KEY", &key).arg("--json").args(args);
        c
    };
    let provider = env.provider.address().to_checksum(None);

    let (code, json, all) = run_async(cmd(&["list-service"])).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(
        json[0]["provider"].as_str().unwrap().to_lowercase(),
        provider.to_lowercase()
    );
    assert_eq!(json[0]["price_per_token"], "1000");

    // Too little: a typed revert, exit 4, the next step in the hint.
    let (code, json, all) = run_async(cmd(&["create-account", "--amount", "1"])).await;
    assert_eq!(code, 4, "{all}");
    assert_eq!(json["error"]["revert"], "MinimumDepositRequired");

    let (code, json, all) = run_async(cmd(&["create-account", "--amount", "3"])).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(json["ledger"]["available_balance"], ether(3).to_string());
    let (code, json, all) = run_async(cmd(&["deposit-fund", "--amount", "1.5"])).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(
        json["ledger"]["total_balance"],
        (ether(9) / U256::from(2u8)).to_string()
    );

    let (code, json, all) = run_async(cmd(&[
        "transfer-fund",
        "--provider",
        "0x4242424242424242424242424242424242424242",
        "--amount",
        "1",
    ]))
    .await;
    assert_eq!(code, 4, "{all}");
    assert_eq!(json["error"]["kind"], "unknown_provider");
    let (code, json, all) = run_async(cmd(&[
        "transfer-fund",
        "--provider",
        &provider,
        "--amount",
        "2",
    ]))
    .await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(json["sub_account"]["balance"], ether(2).to_string());
    assert_eq!(
        json["ledger"]["available_balance"],
        (ether(5) / U256::from(2u8)).to_string()
    );

    let (code, json, all) = run_async(cmd(&["get-account"])).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(json["sub_accounts"][0]["balance"], ether(2).to_string());
    assert_eq!(
        json["ledger"]["total_balance"],
        (ether(9) / U256::from(2u8)).to_string()
    );

    // verify-provider: the fixture serves a dev attestation.
    let (code, json, all) = run_async(cmd(&["verify-provider", "--provider", &provider])).await;
    assert_eq!(code, 6, "a dev quote needs --allow-dev-quote: {all}");
    assert_eq!(json["verified"], false);
    // The shipped release policy is the default: it is for TDX quotes, not for a dev answer.
    let (code, json, all) = run_async(cmd(&[
        "verify-provider",
        "--provider",
        &provider,
        "--allow-dev-quote",
    ]))
    .await;
    assert_eq!(code, 6, "the release policy refuses a dev answer: {all}");
    let policy_link = json["report"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "policy")
        .cloned()
        .unwrap_or_default();
    assert_eq!(policy_link["ok"], false, "{all}");
    assert!(
        policy_link["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("is for TDX quotes"),
        "{all}"
    );
    let (code, json, all) = run_async(cmd(&[
        "verify-provider",
        "--provider",
        &provider,
        "--allow-dev-quote",
        "--policy",
        "dev",
    ]))
    .await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(json["verified"], true);
    assert_eq!(json["dev_quote"], true);
    assert!(
        all.contains("WARNING"),
        "--allow-dev-quote must be loud: {all}"
    );
    // The provider's published config hash pinned: holds; another one fails the `policy config` link.
    let fixture_hash = sealtune_e2e::provider_fixture::FIXTURE_CONFIG_HASH.to_string();
    let other_hash = format!("0x{}", "0d".repeat(32));
    for (hash, expected) in [(fixture_hash.as_str(), 0), (other_hash.as_str(), 6)] {
        let (code, json, all) = run_async(cmd(&[
            "verify-provider",
            "--provider",
            &provider,
            "--allow-dev-quote",
            "--policy",
            "dev",
            "--config-hash",
            hash,
        ]))
        .await;
        assert_eq!(code, expected, "{all}");
        let config_link = json["report"]["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "policy config")
            .cloned()
            .unwrap_or_default();
        assert_eq!(config_link["ok"], expected == 0, "{all}");
    }
    // No policy at all: only with --no-policy, and the report says UNPINNED.
    let (code, _, all) = run_async(cmd(&[
        "verify-provider",
        "--provider",
        &provider,
        "--allow-dev-quote",
        "--no-policy",
    ]))
    .await;
    assert_eq!(code, 0, "{all}");
    assert!(all.contains("UNPINNED: no policy"), "{all}");

    // A deliverable: download (checked, then acknowledged), settlement, decryption.
    let task = "7a4a3bd4-4a8b-4b7e-bf0e-3f8d6c2a9e11";
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("adapter_model.safetensors"), pattern(70_000)).unwrap();
    let sealed = work.path().join("sealed.bin");
    let s = deliverable::seal_dir_to_file(
        &model,
        &sealed,
        &mut rand_core::OsRng,
        &SealOptions::default(),
    )
    .unwrap();
    deliverable::finish(
        &sealed,
        &deliverable::sign_tags(env.tee.credential(), &s.tag_digest),
    )
    .unwrap();
    let root = keccak256(std::fs::read(&sealed).unwrap()).to_vec();
    env.deliver(env.user.address(), task, &root).await;
    env.fixture.serve_file(task, &sealed);

    let (code, json, all) = run_async(cmd(&[
        "query-progress",
        "--provider",
        &provider,
        "--task-id",
        "not-a-uuid",
    ]))
    .await;
    assert_eq!(code, 2, "{all}");
    assert_eq!(json["error"]["kind"], "invalid_input");

    let enc = work.path().join("model.enc");
    let enc_s = enc.to_str().unwrap();
    let (code, json, all) = run_async(cmd(&[
        "download-model",
        "--provider",
        &provider,
        "--task-id",
        task,
        "--output",
        enc_s,
    ]))
    .await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(json["acknowledged"], true);
    assert_eq!(json["check"]["root_kind"], "keccak");
    assert_eq!(
        json["source"], "tee",
        "no storage node given: from the provider"
    );

    let zip = work.path().join("model.zip");
    let out_dir = work.path().join("out");
    let decrypt = |wait: &str| {
        cmd(&[
            "decrypt-model",
            "--provider",
            &provider,
            "--task-id",
            task,
            "--encrypted",
            enc_s,
            "--output",
            zip.to_str().unwrap(),
            "--unzip",
            out_dir.to_str().unwrap(),
            "--wait",
            wait,
        ])
    };
    let (code, json, all) = run_async(decrypt("0")).await;
    assert_eq!(code, 8, "not settled yet: {all}");
    assert_eq!(json["error"]["kind"], "not_ready");

    let pk = k256::PublicKey::from(env.user.credential().verifying_key());
    let secret = sealtune_protocol::ecies::wrap_key(&mut rand_core::OsRng, &pk, &s.key);
    env.settle_signed(
        env.user.address(),
        task,
        &root,
        &secret,
        U256::from(now_ms()),
        U256::from(5u8),
    )
    .await;
    let (code, json, all) = run_async(decrypt("10")).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(json["files"], 1);
    assert_eq!(
        std::fs::read(out_dir.join("output_model/adapter_model.safetensors")).unwrap(),
        pattern(70_000)
    );
}

#[test]
fn estimate_counts_with_the_model_tokenizer_and_prices_the_fee() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"instruction": "Say hi", "input": "", "output": "Hello there!"}"#, "\n",
            r#"{"text": "The quick brown fox jumps over the lazy dog."}"#, "\n",
            r#"{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}"#, "\n",
        ),
    )
    .unwrap();
    let params = dir.path().join("params.json");
    std::fs::write(
        &params,
        r#"{"num_train_epochs": 2, "learning_rate": 0.0002}"#,
    )
    .unwrap();
    // The tokenizer comes from the offline Hugging Face cache that scripts/env points HF_HUB_CACHE at.
    assert!(
        std::env::var_os("HF_HUB_CACHE").is_some(),
        "HF_HUB_CACHE is unset: run the tests with `. scripts/env` (it points at the converted models)"
    );
    let mut c = sealtune(dir.path());
    c.args([
        "--json",
        "estimate",
        "--model",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "--price-per-token",
        "10neuron",
        "--count-instruction",
    ])
    .arg("--dataset-path")
    .arg(&data)
    .arg("--config-path")
    .arg(&params);
    let (code, json, all) = run(&mut c);
    assert_eq!(code, 0, "{all}");
    assert_eq!(json["records"], 3);
    assert_eq!(json["epochs"], 2);
    let tokens = json["tokens"].as_u64().unwrap();
    // The official count skips `instruction` and chat prompts; the variant counts them.
    let with_instruction = json["tokens_with_instruction"].as_u64().unwrap();
    assert!(tokens > 0 && with_instruction > tokens, "{json}");
    let tokenizer = PathBuf::from(json["tokenizer"].as_str().unwrap());
    let counter = sealtune_protocol::tokens::TokenCounter::from_file(&tokenizer).unwrap();
    let expected = counter.count_text("").unwrap()
        + counter.count_text("Hello there!").unwrap()
        + counter
            .count_text("The quick brown fox jumps over the lazy dog.")
            .unwrap()
        + counter.count_text("4").unwrap();
    assert_eq!(tokens, expected);
    assert_eq!(json["fee"], (tokens * 10 * 2).to_string());

    // An unknown model is not downloaded: a clear error.
    let mut c = sealtune(dir.path());
    c.args([
        "estimate",
        "--model",
        "nobody/nothing",
        "--price-per-token",
        "1neuron",
        "--dataset-path",
    ])
    .arg(&data);
    let (code, _, all) = run(&mut c);
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("--tokenizer"), "{all}");
}
