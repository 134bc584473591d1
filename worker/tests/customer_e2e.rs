//! The customer's side, end to end, with sealtune's own client library against a real worker:
//! verify the provider (dev quote, explicitly allowed), upload + create (the client signs), follow the
//! task, download with the hash and tag-signature checks, acknowledge, wait for the settlement, decrypt
//! and unzip — and two customers queued behind each other.
use std::sync::Arc;
use std::time::Duration;

use sealtune_client::attest::VerifyProviderOptions;
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::flow::{Client, CreateTaskRequest, DatasetSource, VerifyMode};
use sealtune_client::progress::NoProgress;
use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;

fn customer(stack: &Stack, who: usize) -> Client {
    let chain = Chain::connect(
        &stack.anvil.endpoint,
        Contracts {
            ledger: stack.deployment.ledger,
            serving: stack.deployment.serving,
        },
        Some(signer(who)),
    )
    .unwrap();
    Client::new(chain).unwrap()
}

fn now_ms() -> u64 {
    now() * 1000
}

async fn run_task(stack: &Stack, who: usize, dir: &std::path::Path) -> String {
    let c = customer(stack, who);
    let data = dir.join(format!("data-{who}.jsonl"));
    std::fs::write(&data, dataset_jsonl(5 + who)).unwrap();
    let req = CreateTaskRequest {
        provider: stack.provider_address(),
        model: "quick-test-model".into(),
        dataset: DatasetSource::File(data),
        training_params: PARAMS.into(),
        max_fee: None,
        wait: true,
        verify: VerifyMode::Verify(VerifyProviderOptions {
            now: now(),
            nonce: [who as u8; 32],
            collateral: None,
            allow_dev_quote: true,
            ..Default::default()
        }),
    };
    let created = c
        .create_task(&req, now_ms(), Arc::new(NoProgress))
        .await
        .expect("create-task");
    created.task_id
}

async fn finish_task(stack: &Stack, who: usize, id: &str, dir: &std::path::Path) -> Vec<u8> {
    let c = customer(stack, who);
    wait_state(stack, who, id, &["Delivered"], Duration::from_secs(120)).await;
    let t = c.task(stack.provider_address(), Some(id)).await.unwrap();
    assert_eq!(t.progress.as_deref(), Some("Delivered"));
    let enc = dir.join(format!("model-{who}.enc"));
    c.download_model(
        stack.provider_address(),
        id,
        &enc,
        true,
        now_ms(),
        &NoProgress,
    )
    .await
    .expect("download + checks + acknowledge");
    c.wait_settled(
        stack.provider_address(),
        id,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await
    .expect("the worker settles after the acknowledgement");
    let out = dir.join(format!("model-{who}"));
    c.decrypt_model(
        stack.provider_address(),
        id,
        &enc,
        &dir.join(format!("model-{who}.zip")),
        Some(&out),
        &NoProgress,
    )
    .await
    .expect("decrypt");
    std::fs::read(out.join("output_model/adapter_model.safetensors")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_customers_queued_both_get_their_own_model() {
    let stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let a = run_task(&stack, 2, dir.path()).await;
    let b = run_task(&stack, 3, dir.path()).await;
    let wa = finish_task(&stack, 2, &a, dir.path()).await;
    let wb = finish_task(&stack, 3, &b, dir.path()).await;
    assert!(wa.starts_with(b"weights-") && wb.starts_with(b"weights-"));
    // Each customer's key opens only their own model: customer 3 cannot decrypt customer 2's.
    let c3 = customer(&stack, 3);
    let err = c3
        .decrypt_model(
            stack.provider_address(),
            &a,
            &dir.path().join("model-2.enc"),
            &dir.path().join("x.zip"),
            None,
            &NoProgress,
        )
        .await
        .expect_err("another customer's deliverable");
    assert!(
        !dir.path().join("x.zip").exists(),
        "no plaintext left: {err}"
    );
}
