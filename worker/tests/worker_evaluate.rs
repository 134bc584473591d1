//! Evaluating a delivered model (docs/PROTOCOL.md §10) through the real worker, chain and sandbox:
//! a model trained and settled, then evaluated by its owner with the model key re-wrapped to the
//! attested dataset key; a torch-free stand-in (`worker/tests/scripts/evaluate_standin.py`) reports
//! known numbers. Each attack first: another customer's request, an official-form request, a key
//! sealed for another task, a key that does not open the deliverable (nothing charged); then the
//! worker killed during the evaluation run, restarted, and the evaluation delivered once: the signed
//! report carries exactly what the script computed, its numbers stay out of the task log until the
//! settlement, and an edited report fails verification.
use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use sealtune_client::attest::VerifyProviderOptions;
use sealtune_client::chain::{Chain, Contracts};
use sealtune_client::evaluate::{EvaluateRequest, read_signed};
use sealtune_client::flow::{Client, DatasetSource};
use sealtune_client::progress::NoProgress;
use sealtune_e2e::chain::*;
use sealtune_e2e::stack::*;
use sealtune_protocol::deliverable::{DeliverableKey, OsRng};
use sealtune_protocol::evaluation::{
    EvaluationParams, REPORT_FILE, SignedEvaluation, seal_model_key,
};
use serde_json::Value;

/// The dataset key the worker attests (checked against the signer, bound for our nonce).
async fn dataset_key(stack: &Stack) -> k256::PublicKey {
    stack.attested_dataset_key([0x24; 32]).await
}

/// The `trainingParams` of customer `who`'s evaluation of `task` with `key`, sealed for
/// `(sealed_user, sealed_task)`.
fn eval_params(
    tee: &k256::PublicKey,
    key: &DeliverableKey,
    sealed_user: Address,
    sealed_task: &str,
    task: &str,
) -> String {
    EvaluationParams {
        evaluate: task.to_owned(),
        model_key: format!(
            "0x{}",
            hex::encode(seal_model_key(
                &mut OsRng,
                tee,
                key,
                sealed_user,
                sealed_task
            ))
        ),
    }
    .to_text()
}

/// A v2 create-task body of customer `who` for the stack's model.
fn v2_body(stack: &Stack, who: usize, dataset_hash: &str, nonce: u64, params: &str) -> Value {
    stack.v2_body(
        who,
        V2Request {
            dataset_hash,
            signed_model: MODEL_HASH.parse().unwrap(),
            params,
            nonce,
            wait: true,
        },
    )
}

/// The refusal of a create-task `body`: its status and error text.
async fn refused(stack: &Stack, who: usize, body: &Value) -> (u16, String) {
    let r = create(stack, who, body).await;
    let status = r.status().as_u16();
    let e: Value = r.json().await.unwrap();
    (status, e["error"].as_str().unwrap_or_default().to_owned())
}

/// The stack with the stand-in as the model's evaluation script (a new measured config: its
/// signer acknowledged again).
async fn evaluating_stack() -> Stack {
    let mut stack = Stack::start(
        env!("CARGO_BIN_EXE_sealtune-worker"),
        StackOptions::default(),
    )
    .await;
    let script = stack.dir.path().join("evaluate_standin.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/evaluate_standin.py"),
        &script,
    )
    .unwrap();
    let config = std::fs::read_to_string(&stack.config_path).unwrap();
    let config = config.replacen(
        "training_script = ",
        &format!(
            "evaluation_script = \"{}\"\ntraining_script = ",
            script.display()
        ),
        1,
    );
    std::fs::write(&stack.config_path, config).unwrap();
    stack.worker = None;
    stack.start_worker(None).await;
    stack.ack_signer().await;
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_model_is_evaluated_for_its_owner_only_and_the_signed_report_is_what_the_script_computed()
 {
    let mut stack = evaluating_stack().await;
    stack.fund(2, 10, 5).await;
    stack.fund(3, 10, 5).await;
    let (owner, other) = (signer(2).address(), signer(3).address());

    // A model trained, delivered and settled: its owner holds its key.
    let trained = submit(&stack, 2, 1).await;
    wait_state(
        &stack,
        2,
        &trained,
        &["Delivered"],
        Duration::from_secs(120),
    )
    .await;
    download_ack_decrypt(&stack, 2, &trained).await;
    let key = settled_model_key(&stack, 2, &trained).await;
    let tee = dataset_key(&stack).await;
    let data = uploaded(&stack, 2, dataset_jsonl(3)).await;
    let good = eval_params(&tee, &key, owner, &trained, &trained);

    // Another customer cannot evaluate my task, even holding a key sealed for them.
    let data3 = uploaded(&stack, 3, dataset_jsonl(3)).await;
    let theirs = eval_params(&tee, &key, other, &trained, &trained);
    let (status, e) = refused(&stack, 3, &v2_body(&stack, 3, &data3, 1, &theirs)).await;
    assert_eq!((status, e.contains("not found")), (404, true), "{e}");
    // Someone else posing as me (my address, their signature) learns nothing about my tasks.
    let probe = eval_params(&tee, &key, owner, "another-task", &trained);
    let mut posing = v2_body(&stack, 3, &data, 2, &probe);
    posing["userAddress"] = owner.to_checksum(None).into();
    let r = create(&stack, 2, &posing).await;
    let status = r.status().as_u16();
    let e = r.text().await.unwrap();
    assert_eq!(status, 401, "{e}");
    assert!(!e.contains(&trained), "{e}");
    // The official form does not bind the parameters: refused.
    let official = task_body(2, &data, 2, &good);
    let (status, e) = refused(&stack, 2, &official).await;
    assert_eq!((status, e.contains("request v2")), (400, true), "{e}");
    // A key sealed for another of my tasks (or copied from another request) is refused.
    let elsewhere = eval_params(&tee, &key, owner, "another-task", &trained);
    let (status, e) = refused(&stack, 2, &v2_body(&stack, 2, &data, 2, &elsewhere)).await;
    assert_eq!((status, e.contains("was sealed for")), (400, true), "{e}");

    // A key that does not open the deliverable: the task fails at setup, nothing is charged.
    let wrong = DeliverableKey::from_bytes([0x5a; 32]);
    let wrong = eval_params(&tee, &wrong, owner, &trained, &trained);
    let bad = created(&stack, 2, &v2_body(&stack, 2, &data, 2, &wrong)).await;
    let t = wait_state(&stack, 2, &bad, &["Failed"], Duration::from_secs(60)).await;
    let reason = t["failReason"].as_str().unwrap();
    assert!(
        reason.contains("the model key does not open the deliverable")
            && reason.contains("wrong key"),
        "{reason}"
    );
    assert!(settlements(&stack, &bad).await.is_empty());
    let d = stack
        .serving(2)
        .getDeliverable(owner, stack.provider_address(), bad.clone())
        .call()
        .await;
    assert!(
        d.is_err() || d.is_ok_and(|d| d.id.is_empty()),
        "nothing announced for a refused key"
    );

    // The worker killed during the evaluation run: restarted, it evaluates again and delivers once.
    stack.worker = None;
    stack.start_worker(Some("during-training")).await;
    let eval = created(&stack, 2, &v2_body(&stack, 2, &data, 3, &good)).await;
    assert!(
        stack.wait_worker_exit(Duration::from_secs(60)).await,
        "the worker did not stop at the crash point"
    );
    stack.start_worker(None).await;
    let t = wait_state(&stack, 2, &eval, &["Delivered"], Duration::from_secs(120)).await;
    let log = task_log(&stack, 2, &eval).await;
    assert!(
        log.contains("training again") || log.contains("attempt 2"),
        "{log}"
    );
    // The numbers are released by the settlement, not by the log.
    for leak in ["1.25", "3.25", "eval_loss"] {
        assert!(!log.contains(leak), "{leak} leaked into the log:\n{log}");
    }
    // Billed: the evaluation dataset counted once at the model's price.
    let tokens = t["tokens"].as_u64().unwrap();
    assert!(tokens > 0);
    let fee: U256 = t["fee"].as_str().unwrap().parse().unwrap();
    assert_eq!(fee, U256::from(tokens) * U256::from(PRICE));

    let out = download_ack_unpack(&stack, 2, &eval).await;
    let settled = settlements(&stack, &eval).await;
    assert_eq!(settled.len(), 1, "settled once");
    assert_eq!(settled[0].fee, fee);
    let files: Vec<_> = std::fs::read_dir(out.path().join("out/output_model"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files,
        vec![REPORT_FILE.to_owned()],
        "the report is the only output"
    );
    let signed: SignedEvaluation = serde_json::from_slice(
        &std::fs::read(out.path().join("out/output_model").join(REPORT_FILE)).unwrap(),
    )
    .unwrap();
    let domain = sealtune_protocol::eip712::domain(DEV_CHAIN_ID, stack.deployment.serving);
    let (report, signer_) = signed.verify(&domain).unwrap();
    let service = stack
        .serving(2)
        .getService(stack.provider_address())
        .call()
        .await
        .unwrap();
    assert_eq!(signer_, service.teeSignerAddress);
    let known = [
        ("base_eval_loss", 3.25),
        ("base_perplexity", 25.75),
        ("eval_loss", 1.25),
        ("perplexity", 3.5),
    ];
    assert_eq!(report.metrics, known.map(|(k, v)| (k.to_owned(), v)).into());
    assert!(report.is_finetune, "an adapter of the base is a fine-tune");
    assert_eq!(
        (report.task_id.as_str(), report.evaluated_task_id.as_str()),
        (eval.as_str(), trained.as_str())
    );
    assert_eq!(report.user, owner);
    assert_eq!(report.tokens_billed, tokens);
    assert_eq!(format!("{:#x}", report.dataset_hash), data.to_lowercase());
    let evaluated = stack
        .serving(2)
        .getDeliverable(owner, stack.provider_address(), trained.clone())
        .call()
        .await
        .unwrap();
    assert_eq!(
        report.evaluated_root_hash.as_slice(),
        evaluated.modelRootHash.as_ref()
    );
    let (code, out_) = verify_cli(&stack, &signed).await;
    assert_eq!(code, 0, "{out_}");
    // Any edited field fails (here and in `sealtune-verify report`).
    let edited = SignedEvaluation {
        document: signed
            .document
            .replacen("\"eval_loss\":1.25", "\"eval_loss\":1.0", 1),
        ..signed.clone()
    };
    let (code, out_) = verify_cli(&stack, &edited).await;
    assert_eq!(code, 1, "{out_}");
    assert!(out_.contains("report signature"), "{out_}");
    for (from, to) in [
        ("\"eval_loss\":1.25", "\"eval_loss\":1.0"),
        ("\"is_finetune\":true", "\"is_finetune\":false"),
    ] {
        assert!(signed.document.contains(from), "{}", signed.document);
        let edited = SignedEvaluation {
            document: signed.document.replacen(from, to, 1),
            ..signed.clone()
        };
        let result = edited.verify(&domain);
        assert!(
            !matches!(result, Ok((_, s)) if s == service.teeSignerAddress),
            "{from} → {to} verified"
        );
    }

    // The customer library does the same: evaluates its own delivered model, checks the report
    // against the chain, and refuses an edited one.
    let trained = submit(&stack, 3, 1).await;
    wait_state(
        &stack,
        3,
        &trained,
        &["Delivered"],
        Duration::from_secs(120),
    )
    .await;
    download_ack_decrypt(&stack, 3, &trained).await;
    let c = customer(&stack, 3);
    let data = stack.dir.path().join("eval-3.jsonl");
    std::fs::write(&data, dataset_jsonl(4)).unwrap();
    let req = EvaluateRequest {
        provider: stack.provider_address(),
        task_id: trained.clone(),
        dataset: DatasetSource::File(data),
        max_fee: None,
        wait: true,
        verify: VerifyProviderOptions {
            now: now(),
            nonce: [3; 32],
            collateral: None,
            allow_dev_quote: true,
            policy: Some(Box::new(
                sealtune_verifier::policy::shipped::named("dev")
                    .unwrap()
                    .unwrap(),
            )),
            ..Default::default()
        },
    };
    let created = c
        .evaluate(&req, now() * 1000, std::sync::Arc::new(NoProgress))
        .await
        .expect("evaluate");
    assert_eq!(created.signature_form, "v2");
    wait_state(
        &stack,
        3,
        &created.task_id,
        &["Delivered"],
        Duration::from_secs(120),
    )
    .await;
    let out = download_ack_unpack(&stack, 3, &created.task_id).await;
    let signed = read_signed(&out.path().join("out")).unwrap();
    let report = c
        .check_evaluation(stack.provider_address(), &signed)
        .await
        .unwrap();
    assert_eq!(report.evaluated_task_id, trained);
    assert_eq!(report.metrics["eval_loss"], 1.25);
    let edited = SignedEvaluation {
        document: signed
            .document
            .replacen("\"eval_loss\":1.25", "\"eval_loss\":0.5", 1),
        ..signed.clone()
    };
    let e = c
        .check_evaluation(stack.provider_address(), &edited)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("signed by"), "{e}");
    // Another customer's report does not pass as mine.
    let e = customer(&stack, 2)
        .check_evaluation(stack.provider_address(), &signed)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not 0x"), "{e}");
}

/// `sealtune-verify report` on `signed`: its exit code and output.
async fn verify_cli(stack: &Stack, signed: &SignedEvaluation) -> (i32, String) {
    use clap::Parser as _;
    let file = stack.dir.path().join("evaluation-under-test.json");
    std::fs::write(&file, serde_json::to_vec(signed).unwrap()).unwrap();
    let args = [
        "sealtune-verify".to_owned(),
        "report".to_owned(),
        "--file".to_owned(),
        file.to_str().unwrap().to_owned(),
        "--rpc".to_owned(),
        stack.anvil.endpoint.clone(),
        "--serving".to_owned(),
        stack.deployment.serving.to_string(),
        "--provider".to_owned(),
        stack.provider_address().to_string(),
    ];
    tokio::task::spawn_blocking(move || {
        let cli = sealtune_verifier::cli::Cli::parse_from(args);
        let mut out = Vec::new();
        let code = sealtune_verifier::cli::run(&cli, now(), &mut out)
            .unwrap_or_else(|e| panic!("sealtune-verify report: {e}"));
        (code, String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .unwrap()
}

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
