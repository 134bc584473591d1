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
        dataset_type: None,
        max_fee: None,
        wait: true,
        verify: VerifyMode::Verify(VerifyProviderOptions {
            now: now(),
            nonce: [who as u8; 32],
            collateral: None,
            allow_dev_quote: true,
            policy: Some(Box::new(
                sealtune_verifier::policy::shipped::named("dev")
                    .unwrap()
                    .unwrap(),
            )),
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

/// The dev policy on the main job's stack (a real worker with the dev source): it passes with the
/// provider's published config hash pinned, and fails naming the link when the config hash or the
/// compose hash differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_policy_pins_the_compose_and_config_hashes_of_a_real_worker() {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    let c = customer(&stack, 2);
    let provider = stack.provider_address();
    // The provider publishes its measured config at GET /v1/config; the customer recomputes the
    // hash from the document.
    let config = stack
        .http
        .get(stack.url("/v1/config"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let published = sealtune_verifier::policy::shipped::config_hash_of(&config).unwrap();
    let opts = |config_hashes: Vec<[u8; 32]>| VerifyProviderOptions {
        now: now(),
        nonce: [0x42; 32],
        allow_dev_quote: true,
        policy: Some(Box::new(
            sealtune_verifier::policy::shipped::named("dev")
                .unwrap()
                .unwrap(),
        )),
        config_hashes,
        ..Default::default()
    };
    let failed = |v: &sealtune_client::attest::ProviderVerification, name: &str| {
        v.report
            .links
            .iter()
            .find(|l| l.name == name && l.required && !l.ok)
            .map(|l| l.detail.clone())
            .unwrap_or_default()
    };

    let v = c
        .verify_provider(provider, &opts(vec![published]))
        .await
        .unwrap();
    assert!(v.verified, "{}", v.render_human());
    assert!(v.report.link("policy app").unwrap().ok);
    assert!(v.report.link("policy config").unwrap().ok);

    // Another config hash pinned than the one the worker runs with.
    let v = c
        .verify_provider(provider, &opts(vec![[0x0d; 32]]))
        .await
        .unwrap();
    assert!(!v.verified, "{}", v.render_human());
    assert!(
        failed(&v, "policy config").contains(&format!(
            "config hash {} is not one of",
            hex::encode(published)
        )),
        "{}",
        v.render_human()
    );

    // The worker restarted serving another app-compose than the published one.
    let compose = stack.dir.path().join("other-app-compose.json");
    let published_compose =
        std::fs::read_to_string(sealtune_e2e::repo_root().join("deploy/app-compose.json")).unwrap();
    let other =
        published_compose.replace("sealtune/sealtune-worker@sha256:", "evil/worker@sha256:");
    assert_ne!(
        other, published_compose,
        "the published compose names the image by digest"
    );
    std::fs::write(&compose, other).unwrap();
    let mut toml = std::fs::read_to_string(&stack.config_path).unwrap();
    toml.push_str(&format!("app_compose = \"{}\"\n", compose.display()));
    std::fs::write(&stack.config_path, toml).unwrap();
    stack.worker = None;
    stack.start_worker(None).await;
    stack.ack_signer().await;
    let config = stack
        .http
        .get(stack.url("/v1/config"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let now_published = sealtune_verifier::policy::shipped::config_hash_of(&config).unwrap();
    let v = c
        .verify_provider(provider, &opts(vec![now_published]))
        .await
        .unwrap();
    assert!(!v.verified, "{}", v.render_human());
    let detail = failed(&v, "policy app");
    assert!(
        detail.contains("compose hash") && detail.contains("is not one of"),
        "{}",
        v.render_human()
    );
    // The compose the worker serves still matches its own event log: only the pin fails.
    assert!(
        v.report.link("compose hash").unwrap().ok,
        "{}",
        v.render_human()
    );
}
