//! Confidential datasets and the v2 request (issue 19), each attack against a real worker on a real
//! anvil with the real contracts: a dataset sealed to the attested dataset key stays ciphertext in
//! the worker's data directory, a swapped ciphertext and another customer's envelope are refused,
//! and a v2 request whose model or parameters were rewritten after signing is refused.
use std::path::Path;
use std::time::Duration;

use alloy::primitives::B256;
use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;
use sealtune_protocol::envelope::{self, EnvelopeWriter, HEADER_LEN};
use serde_json::Value;

const MARKER: &str = "zq-confidential-marker-7f3a";

/// The dataset key the worker attests: `tee_keys` checked against the signer and bound by the
/// attestation document for a fresh nonce.
async fn dataset_key(stack: &Stack) -> k256::PublicKey {
    stack.attested_dataset_key([0x42; 32]).await
}

/// Customer `who`'s dataset with `records` records, each carrying the marker.
fn marked_dataset(records: usize) -> Vec<u8> {
    (0..records)
        .flat_map(|i| {
            format!(
                "{{\"instruction\":\"Say the secret.\",\"input\":\"{i}\",\"output\":\"{MARKER}-{i}\"}}\n"
            )
            .into_bytes()
        })
        .collect()
}

/// `plain` sealed by customer `who` to `key`, in 1 KiB chunks (several chunks for small data).
fn sealed(who: usize, key: &k256::PublicKey, plain: &[u8]) -> Vec<u8> {
    let mut w =
        EnvelopeWriter::new(Vec::new(), &k256_key(who), key, &mut rand_core::OsRng, 10).unwrap();
    std::io::Write::write_all(&mut w, plain).unwrap();
    w.finish().unwrap()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file()
                && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// The failure reason of task `id` once it failed.
async fn failed(stack: &Stack, who: usize, id: &str) -> String {
    let t = wait_state(stack, who, id, &["Failed"], Duration::from_secs(120)).await;
    t["failReason"].as_str().unwrap_or_default().to_owned()
}

/// The marker strings of a dataset uploaded sealed appear nowhere in the worker's data directory
/// (store, database, task directories), neither after the upload nor after the task trained on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_dataset_is_ciphertext_in_the_data_dir_and_trains() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    let key = dataset_key(&stack).await;
    let data_dir = stack.dir.path().join("data");
    // Control: the scan finds a plaintext upload.
    let control = uploaded(
        &stack,
        3,
        format!("{{\"text\":\"{MARKER}-control\"}}\n").into_bytes(),
    )
    .await;
    assert_eq!(
        files_containing(&data_dir, MARKER.as_bytes()).len(),
        1,
        "{control}"
    );
    let control_path = data_dir
        .join("store/objects")
        .join(control.trim_start_matches("0x"));
    std::fs::remove_file(control_path).unwrap();

    let r = upload(&stack, 2, sealed(2, &key, &marked_dataset(6))).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["encrypted"], true, "{answer}");
    let hash = answer["datasetHash"].as_str().unwrap().to_owned();
    assert_eq!(
        files_containing(&data_dir, MARKER.as_bytes()),
        Vec::<String>::new()
    );

    let id = created(&stack, 2, &task_body(2, &hash, 1, PARAMS)).await;
    let t = wait_state(&stack, 2, &id, &["Delivered"], Duration::from_secs(120)).await;
    assert!(
        t["tokens"].as_u64().unwrap() > 0,
        "counted from the plaintext: {t}"
    );
    assert_eq!(
        files_containing(&data_dir, MARKER.as_bytes()),
        Vec::<String>::new(),
        "plaintext left in the data directory after the task"
    );
}

/// A ciphertext chunk swapped for one of another envelope of the same customer (same key, same
/// header checks) is refused at setup, and the task fails without training.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_ciphertext_is_refused() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    let key = dataset_key(&stack).await;
    let plain = marked_dataset(40);
    let (a, b) = (sealed(2, &key, &plain), sealed(2, &key, &plain));
    let mut swapped = a.clone();
    let chunk = 1024 + envelope::TAG_LEN;
    swapped[HEADER_LEN + chunk..HEADER_LEN + 2 * chunk]
        .copy_from_slice(&b[HEADER_LEN + chunk..HEADER_LEN + 2 * chunk]);
    let hash = uploaded(&stack, 2, swapped).await;
    let id = created(&stack, 2, &task_body(2, &hash, 1, PARAMS)).await;
    let reason = failed(&stack, 2, &id).await;
    assert!(
        reason.contains("chunk 1 of the dataset envelope does not authenticate"),
        "{reason}"
    );
    let data_dir = stack.dir.path().join("data");
    assert_eq!(
        files_containing(&data_dir, MARKER.as_bytes()),
        Vec::<String>::new()
    );
}

/// Customer 3 uploads customer 2's envelope (seen on 0G Storage or in transit): refused at upload.
/// Re-labelled with customer 3 as owner and re-signed by 3, the upload is accepted (the header is
/// 3's) but the body no longer authenticates: the task fails at setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_envelope_is_refused() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(3, 10, 5).await;
    let key = dataset_key(&stack).await;
    let a = sealed(2, &key, &marked_dataset(6));
    let r = upload(&stack, 3, a.clone()).await;
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains(&format!(
            "belongs to {}, not {}",
            signer(2).address(),
            signer(3).address()
        )),
        "{e}"
    );
    let mut header = envelope::EnvelopeHeader::parse(&a).unwrap();
    header.owner = signer(3).address();
    header.signature = sealtune_protocol::request::personal_sign(&k256_key(3), &header.digest());
    let mut relabelled = header.to_bytes();
    relabelled.extend_from_slice(&a[HEADER_LEN..]);
    let hash = uploaded(&stack, 3, relabelled).await;
    let id = created(&stack, 3, &task_body(3, &hash, 1, PARAMS)).await;
    let reason = failed(&stack, 3, &id).await;
    assert!(
        reason.contains("chunk 0 of the dataset envelope does not authenticate"),
        "{reason}"
    );
}

/// A v2 create-task body naming the stack's model, signed by customer `who` (EIP-712 over chain,
/// serving contract, provider, `signed_model`, params hash, options hash, dataset hash, fee
/// ceiling, nonce).
fn v2_body(
    stack: &Stack,
    who: usize,
    dataset_hash: &str,
    signed_model: B256,
    params: &str,
) -> Value {
    stack.v2_body(
        who,
        V2Request {
            dataset_hash,
            signed_model,
            params,
            nonce: 5,
            wait: false,
        },
    )
}

/// Under v2, a body whose `trainingParams` (10 epochs: ten times the fee; a LoRA `r`), fee ceiling or
/// `preTrainedModelHash` (the customer signed another model; the body names the stack's) was
/// rewritten after signing is refused with a clear error; the body as signed is accepted (the
/// official form stays accepted: every other test of the suite uses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_request_rewritten_after_signing_is_refused() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    let hash = uploaded(&stack, 2, dataset_jsonl(6)).await;
    let offered: B256 = MODEL_HASH.parse().unwrap();
    let signed = v2_body(&stack, 2, &hash, offered, PARAMS);
    let mut params = signed.clone();
    params["trainingParams"] = PARAMS
        .replace("\"num_train_epochs\":1", "\"num_train_epochs\":10")
        .into();
    let model = v2_body(&stack, 2, &hash, B256::repeat_byte(0x3c), PARAMS);
    let mut fee = signed.clone();
    fee["fee"] = "1".into();
    // `datasetType` is sealtune's option: its canonical form is in the options hash.
    let mut dataset_type = signed.clone();
    dataset_type["datasetType"] = "pretrain".into();
    // A LoRA option is part of `trainingParams`: a relay raising the signed `r` (within the
    // provider's range, so only the signature stops it) is refused.
    let with_r = PARAMS.replace('}', r#","lora_config":{"r":8}}"#);
    let mut lora_r = v2_body(&stack, 2, &hash, offered, &with_r);
    lora_r["trainingParams"] = with_r.replace(r#""r":8"#, r#""r":64"#).into();
    for (what, body) in [
        ("trainingParams", params),
        ("trainingParams r", lora_r),
        ("model", model),
        ("fee", fee),
        ("datasetType", dataset_type),
    ] {
        let r = create(&stack, 2, &body).await;
        let status = r.status();
        let e: Value = r.json().await.unwrap();
        assert_eq!(status, 401, "{what}: {e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("rewritten after signing"),
            "{what}: {e}"
        );
    }
    let id = created(&stack, 2, &signed).await;
    wait_state(&stack, 2, &id, &["Delivered"], Duration::from_secs(120)).await;
}

/// A figure, not a rule: the create-task → `SetUp` latency of a funded task on a 100 MiB zip
/// sealed to the dataset key (fetch, open, checks, token count); the plaintext figure is
/// `worker_intake.rs`'s `figure_create_task_to_setup_latency_100mib`. Run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn figure_create_task_to_setup_latency_100mib_sealed() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions {
            max_upload_bytes: 128 << 20,
            ..Default::default()
        },
    )
    .await;
    stack.fund(2, 10, 5).await;
    let key = dataset_key(&stack).await;
    // The same dataset as the plaintext figure.
    let zip = zip_of_100mib();
    let mut envelope = Vec::new();
    sealtune_protocol::envelope::seal(
        &mut zip.as_slice(),
        &mut envelope,
        &k256_key(2),
        &key,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let hash = uploaded(&stack, 2, envelope).await;
    let started = std::time::Instant::now();
    let id = created(&stack, 2, &task_body(2, &hash, 1, PARAMS)).await;
    let t = loop {
        let t = get_task(&stack, 2, &id).await;
        if !["Init", "SettingUp"].contains(&t["progress"].as_str().unwrap_or("")) {
            break t;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "FIGURE create-task -> {} for a 100 MiB zip sealed ({} tokens): {:.2} s",
        t["progress"],
        t["tokens"],
        started.elapsed().as_secs_f64()
    );
    assert_ne!(t["progress"], "Failed", "{t}");
}
