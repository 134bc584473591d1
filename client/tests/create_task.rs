//! `create-task` against the fixture: the provider is verified first, the request is signed in the
//! form asked for (checked by the fixture with `sealtune_protocol::request`), the dataset upload is
//! signed and its hash cross-checked, and every refusal happens before anything is sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use alloy::primitives::{U256, keccak256};
use common::Env;
use sealtune_client::ClientError;
use sealtune_client::attest::VerifyProviderOptions;
use sealtune_client::error::exit;
use sealtune_client::flow::{CreateTaskRequest, DatasetSource, VerifyMode, official_nonce};
use sealtune_client::progress::NoProgress;
use sealtune_e2e::ether;
use sealtune_e2e::provider_fixture::{DevQuote, MODEL_HASH, now_ms};
use sealtune_e2e::trials::{self, Isolation};
use sealtune_protocol::request::CreateTaskForm;

/// One anvil with the contracts and the provider fixture for the whole binary; each case starts from the
/// freshly registered state with a fixture that has recorded nothing.
fn main() -> std::process::ExitCode {
    trials::run(
        Env::new(),
        sealtune_e2e::cases![
            create_task_signs_the_official_form_or_the_fee_bound_form,
            create_task_refuses_before_sending_anything,
            dataset_upload_is_signed_and_its_hash_cross_checked,
        ],
        Isolation::SnapshotAnd(|env| &env.anvil, Env::reset),
    )
}

const PARAMS: &str = r#"{"neftune_noise_alpha":5,"num_train_epochs":1,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":-1}"#;
const DATASET: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";

fn request(env: &Env, max_fee: Option<U256>, verify: bool) -> CreateTaskRequest {
    CreateTaskRequest {
        provider: env.provider.address(),
        model: "SmolLM2-135M-Instruct".into(),
        dataset: DatasetSource::Hash(DATASET.into()),
        training_params: PARAMS.into(),
        dataset_type: None,
        max_fee,
        wait: false,
        verify: if verify {
            VerifyMode::Verify(VerifyProviderOptions {
                now: now_ms() / 1000,
                nonce: [9; 32],
                allow_dev_quote: true,
                policy: Some(Box::new(
                    sealtune_verifier::policy::shipped::named("dev")
                        .unwrap()
                        .unwrap(),
                )),
                ..Default::default()
            })
        } else {
            VerifyMode::Skip
        },
    }
}

async fn create_task_signs_the_official_form_or_the_fee_bound_form(env: &Env) {
    let c = env.client(&env.user);
    let provider = env.provider.address();
    c.chain.create_account(ether(3), "").await.unwrap();
    c.chain
        .transfer_fund(provider, ether(2), None)
        .await
        .unwrap();
    let now = now_ms();

    let t = c
        .create_task(&request(env, None, true), now, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(t.provider_verified && t.dev_quote);
    assert_eq!(t.signature_form, "0g");
    assert_eq!(t.nonce, official_nonce(now));
    let got = env.fixture.tasks();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, t.task_id);
    assert_eq!(got[0].user, env.user.address());
    assert_eq!(got[0].form, CreateTaskForm::WithoutFee);
    assert_eq!(got[0].fee_ceiling, None);
    assert_eq!(
        got[0].model_hash, MODEL_HASH,
        "the model name was resolved through /v1/model"
    );
    assert_eq!(got[0].dataset_hash, DATASET);
    assert_eq!(got[0].training_params, PARAMS);

    let ceiling = ether(1) / U256::from(10u8);
    let t = c
        .create_task(
            &request(env, Some(ceiling), false),
            now + 1,
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(t.signature_form, "fee-bound");
    assert!(!t.provider_verified);
    let got = env.fixture.tasks();
    assert_eq!(got[1].form, CreateTaskForm::WithFee);
    assert_eq!(got[1].fee_ceiling, Some(ceiling));
}

async fn create_task_refuses_before_sending_anything(env: &Env) {
    let c = env.client(&env.user);
    let provider = env.provider.address();
    let none = Arc::new(NoProgress);

    // No sub-account.
    let e = c
        .create_task(&request(env, None, false), now_ms(), none.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NoSubAccount(_)), "{e}");
    assert!(e.hint().unwrap().contains("sealtune transfer-fund"));

    c.chain.create_account(ether(3), "").await.unwrap();
    c.chain
        .transfer_fund(provider, ether(1), None)
        .await
        .unwrap();

    // A fee ceiling above what the sub-account can pay.
    let e = c
        .create_task(&request(env, Some(ether(2)), false), now_ms(), none.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::BalanceTooLow { .. }), "{e}");
    assert!(
        e.hint().unwrap().contains("transfer-fund"),
        "{:?}",
        e.hint()
    );

    // The attestation binds another signer.
    env.fixture.set_quote_mode(DevQuote::WrongSigner);
    let e = c
        .create_task(&request(env, None, true), now_ms(), none.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Attestation(_)), "{e}");
    assert_eq!(e.exit_code(), exit::VERIFICATION);
    env.fixture.set_quote_mode(DevQuote::WithNonce);

    // A dev attestation without --allow-dev-quote.
    let mut req = request(env, None, true);
    if let VerifyMode::Verify(o) = &mut req.verify {
        o.allow_dev_quote = false;
    }
    let e = c
        .create_task(&req, now_ms(), none.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Attestation(_)), "{e}");

    // Bad inputs.
    let mut req = request(env, None, false);
    req.training_params = "not json".into();
    assert_eq!(
        c.create_task(&req, now_ms(), none.clone())
            .await
            .unwrap_err()
            .exit_code(),
        exit::USAGE
    );
    let mut req = request(env, None, false);
    req.dataset = DatasetSource::Hash("0x1234".into());
    assert_eq!(
        c.create_task(&req, now_ms(), none.clone())
            .await
            .unwrap_err()
            .exit_code(),
        exit::USAGE
    );
    let req = request(env, Some(U256::ZERO), false);
    assert_eq!(
        c.create_task(&req, now_ms(), none.clone())
            .await
            .unwrap_err()
            .exit_code(),
        exit::USAGE
    );

    // A busy provider needs `wait`.
    env.fixture.set_pending(2);
    let e = c
        .create_task(&request(env, None, false), now_ms(), none.clone())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), exit::NOT_READY, "{e}");
    assert!(e.to_string().contains("--wait"));
    assert!(
        env.fixture.tasks().is_empty(),
        "nothing reached the provider"
    );
    let mut req = request(env, None, false);
    req.wait = true;
    let t = c.create_task(&req, now_ms(), none).await.unwrap();
    assert_eq!(t.queued_behind, 2);
    assert!(env.fixture.tasks()[0].wait);
}

async fn dataset_upload_is_signed_and_its_hash_cross_checked(env: &Env) {
    let c = env.client(&env.user);
    let provider = env.provider.address();
    c.chain.create_account(ether(3), "").await.unwrap();
    c.chain
        .transfer_fund(provider, ether(1), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.jsonl");
    let bytes: Vec<u8> = (0..2000)
        .flat_map(|i| {
            format!("{{\"instruction\":\"q{i}\",\"input\":\"\",\"output\":\"a{i}\"}}\n")
                .into_bytes()
        })
        .collect();
    std::fs::write(&data, &bytes).unwrap();

    let mut req = request(env, None, false);
    req.dataset = DatasetSource::File(data.clone());
    let t = c
        .create_task(&req, now_ms(), Arc::new(NoProgress))
        .await
        .unwrap();
    let upload = t.upload.unwrap();
    assert_eq!(upload.bytes, bytes.len() as u64);
    assert_eq!(upload.dataset_hash, keccak256(&bytes).to_string());
    assert_eq!(
        env.fixture.uploads(),
        vec![("train.jsonl".to_string(), bytes.clone())]
    );
    assert_eq!(
        env.fixture.tasks()[0].dataset_hash,
        keccak256(&bytes).to_string()
    );

    // An empty dataset is refused locally.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, b"").unwrap();
    let e = c
        .upload_dataset(provider, &empty, now_ms(), Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), exit::USAGE, "{e}");
    assert_eq!(env.fixture.uploads().len(), 1);
}
